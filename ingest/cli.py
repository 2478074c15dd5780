"""The command line: a thin layer over `ingest.api`. Heavy libraries load only when used."""

from __future__ import annotations

import os
import sys

import click

EXIT_OK, EXIT_FLAGGED, EXIT_USAGE = 0, 1, 2


def _console(stderr: bool = False):
    from rich.console import Console

    # soft_wrap: paths and the "Next:" command must stay whole lines to copy and paste.
    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _fail(message: str) -> None:
    click.echo(f"ingest: {message}", err=True)
    sys.exit(EXIT_USAGE)


def _run(fn):
    """Turn expected environment errors into one line and exit code 2, never a traceback."""
    from ingest.layout import LayoutError
    from ingest.lock import LockedError
    from ingest.preflight import UsageError

    try:
        return fn()
    except (UsageError, LayoutError, LockedError) as e:
        _fail(str(e))
    except KeyboardInterrupt:
        click.echo("\ningest: interrupted; run the same command again to continue where it "
                   "stopped", err=True)
        sys.exit(130)
    except OSError as e:
        if os.environ.get("INGEST_DEBUG"):
            raise
        _fail(f"{e.strerror or e}{': ' + e.filename if e.filename else ''}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ingest")
def cli() -> None:
    """Copy camera cards to several destinations and prove every copy intact.

    \b
    Exit codes: 0 every file verified (status says whether the card is safe to format),
    1 a file needs attention, 2 usage or environment error.
    """


def _jobs(value: int | None) -> int:
    return value if value and value > 0 else (os.cpu_count() or 1)


@cli.command()
@click.argument("source", type=click.Path())
@click.argument("destinations", nargs=-1, required=True, type=click.Path())
@click.option("--json", "json_path", metavar="PATH", help="Write the JSON report here (- for stdout).")
@click.option("--junit", "junit_path", metavar="PATH", help="Write a JUnit XML report here.")
@click.option("--html", "html_path", metavar="PATH", help="Write the HTML contact sheet here too.")
@click.option("--layout", default=None, metavar="TEMPLATE",
              help="Destination layout: a template such as '{year}/{year}-{month}-{day}/{filename}' "
                   "(the default), or 'mirror' to keep the card's folders.")
@click.option("--retries", default=2, show_default=True, type=click.IntRange(0, 20),
              help="Copy again this many times when a copy does not match the card.")
@click.option("--jobs", type=click.IntRange(1, 256), default=None,
              help="Decode worker processes (default: number of cores).")
@click.option("--no-decode", is_flag=True, help="Skip the decode check (hash verification only).")
@click.option("--no-source-verify", is_flag=True,
              help="Read each card file once, not twice: trust the reader not to hand over a "
                   "wrong bit (the copy is still read back from the destination).")
@click.option("--no-previews", is_flag=True, help="Do not write JPEG previews.")
@click.option("--preview-size", default=2048, show_default=True, type=click.IntRange(64, 16384),
              help="Largest long edge of previews in pixels (a JPEG's preview is its own decode "
                   "at a reduced scale: 2/3 of this or more).")
@click.option("--s3-endpoint", metavar="URL", default=None,
              help="S3-compatible endpoint for s3:// destinations (default: AWS_ENDPOINT_URL_S3, "
                   "AWS_ENDPOINT_URL, ~/.aws/config, else AWS).")
@click.option("--min-copies", default=2, show_default=True, type=click.IntRange(1, 64),
              help="Copies on separate devices each file needs before the card is safe to "
                   "format (as for ingest status).")
def offload(source, destinations, json_path, junit_path, html_path, layout, retries, jobs,
            no_decode, no_source_verify, no_previews, preview_size, s3_endpoint, min_copies):
    """Copy SOURCE (a card or folder) to every DESTINATION, verify, and report.

    \b
    The last line says whether the card is safe to format, by the rule ingest status uses:
    every file proven on --min-copies separate devices other than the card's.
    """
    from ingest import api

    def go():
        show = sys.stdout.isatty() and json_path != "-"
        console = _console()
        progress = None
        if show:
            from ingest.report.terminal import Progress

            progress = Progress(console)
        # Warnings (destinations that share a device) are said before the first copy, while
        # the photographer can still stop and pick another disk; on stderr when stdout is JSON.
        events = _Events(progress, console if json_path != "-" else _console(stderr=True))
        with progress or _Null():
            result = api.offload(
                source, list(destinations), layout=layout, retries=retries, jobs=_jobs(jobs),
                decode=not no_decode, previews=not no_previews and not no_decode,
                preview_size=preview_size, json_path=json_path, junit_path=junit_path,
                html_path=html_path, progress=events, s3_endpoint=s3_endpoint,
                min_copies=min_copies, source_verify=not no_source_verify)
        if json_path != "-":
            _summary(result.report, ["ingest", "offload", *sys.argv[2:]], source, destinations,
                     console)
        return result.exit_code

    sys.exit(_run(go))


def _summary(report, rerun, source, destinations, console) -> None:
    from ingest.report.terminal import render_summary

    render_summary(console, report, next_command(report, rerun, source, destinations))


def next_command(report: dict, rerun: list[str], source: str,
                 destinations) -> list[str] | None:
    """The command to run next: `ingest status` when nothing is flagged, the same offload when
    a re-run can clear what is, and none when it cannot (damage that is on the card, a file
    no decoder here can prove): suggesting a re-run there contradicts the advice printed."""
    from ingest.model import RERUN_HELPS

    if not report["summary"]["flagged"]:
        return ["ingest", "status", source, *destinations]
    held = any(s["holds_back"] for s in report.get("skipped", []))
    if held or any(f["status"] in RERUN_HELPS for f in report["files"]):
        return rerun
    return None


class _Events:
    """The run's events: warnings printed at once, everything else to the progress bar."""

    def __init__(self, bar, console):
        self.bar, self.console = bar, console

    def __call__(self, event: str, **info) -> None:
        if event == "warning":
            from rich.markup import escape

            self.console.print(f"[yellow]Warning: {escape(info['text'])}[/]")
        elif self.bar is not None:
            self.bar(event, **info)


class _Null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


@cli.command()
@click.argument("directory", required=False, type=click.Path(), default="ingest-demo")
@click.option("--jobs", type=click.IntRange(1, 256), default=None)
def demo(directory, jobs):
    """Build a sample card with one damaged file in DIRECTORY and offload it to two places."""
    from ingest.demo import run_demo

    def go():
        return run_demo(directory, jobs=_jobs(jobs), console=_console())

    sys.exit(_run(go))


def _register() -> None:
    from ingest.cli_status import accept, status
    from ingest.cli_verify import schedule, verify

    cli.add_command(status)
    cli.add_command(accept)
    cli.add_command(verify)
    cli.add_command(schedule)


_register()


def main() -> None:
    # Where numpy is imported in this process (verify's Dask backend imports joblib, which
    # imports it), its OpenBLAS starts a thread per core that spins for nothing (0.1 CPU-s
    # per run, taken from the decode workers); this process does no linear algebra. Set
    # before any import of numpy, and only for the command.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    cli(prog_name="ingest")
