"""`ingest offload SOURCE DEST...`: the click command over `ingest.api.offload`, and the
command it says to run next."""

from __future__ import annotations

import sys

import click

from ingest.cli.common import NoProgress, make_console, run_guarded, worker_count


@click.command()
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
    from ingest import api  # lazy: keeps ingest --help fast

    def go():
        show = sys.stdout.isatty() and json_path != "-"
        console = make_console()
        progress = None
        if show:
            from ingest.report.terminal import Progress  # lazy: keeps ingest --help fast

            progress = Progress(console)
        # Warnings (destinations that share a device) are said before the first copy, while
        # the photographer can still stop and pick another disk; on stderr when stdout is JSON.
        events = _Events(progress, console if json_path != "-" else make_console(stderr=True))
        with progress or NoProgress():
            result = api.offload(
                source, list(destinations), layout=layout, retries=retries, jobs=worker_count(jobs),
                decode=not no_decode, previews=not no_previews and not no_decode,
                preview_size=preview_size, json_path=json_path, junit_path=junit_path,
                html_path=html_path, progress=events, s3_endpoint=s3_endpoint,
                min_copies=min_copies, source_verify=not no_source_verify)
        if json_path != "-":
            _summary(result.report, ["ingest", "offload", *sys.argv[2:]], source, destinations,
                     console)
        return result.exit_code

    sys.exit(run_guarded(go))


def _summary(report, rerun, source, destinations, console) -> None:
    from ingest.report.terminal import render_summary  # lazy: keeps ingest --help fast

    render_summary(console, report, next_command(report, rerun, source, destinations))


def next_command(report: dict, rerun: list[str], source: str,
                 destinations) -> list[str] | None:
    """The command to run next: `ingest status` when nothing is flagged, the same offload when
    a re-run can clear what is, and none when it cannot (damage that is on the card, a file
    no decoder here can prove): suggesting a re-run there contradicts the advice printed."""
    from ingest.model import RERUN_HELPS  # lazy: keeps ingest --help fast

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
            from rich.markup import escape  # lazy: keeps ingest --help fast

            self.console.print(f"[yellow]Warning: {escape(info['text'])}[/]")
        elif self.bar is not None:
            self.bar(event, **info)
