"""`ingest verify` and `ingest schedule`: thin click commands over `ingest.verify.run` and
`ingest.schedule`."""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Callable

import click

from ingest.cli.common import EXIT_USAGE, NoProgress, make_console


def _parsed(parse: Callable[[str], object]):
    """A click callback that turns our parsers' ValueError into a usage error (exit 2)."""

    def callback(ctx, param, value):
        if value is None:
            return None
        try:
            return parse(value)
        except ValueError as e:
            raise click.BadParameter(str(e)) from None

    return callback


def _guard(fn: Callable[[], int]) -> int:
    """Expected environment errors become one line and exit code 2, never a traceback."""
    from ingest.lock import LockedError  # lazy: keeps ingest --help fast
    from ingest.preflight import UsageError  # lazy: keeps ingest --help fast

    try:
        return fn()
    except (UsageError, LockedError) as e:
        click.echo(f"ingest: {e}", err=True)
    except sqlite3.DatabaseError as e:
        click.echo(f"ingest: a catalog cannot be read: {e}", err=True)
    except KeyboardInterrupt:
        click.echo("\ningest: interrupted; every file checked so far is recorded, and the next "
                   "run continues from there", err=True)
        return 130
    except OSError as e:
        if os.environ.get("INGEST_DEBUG"):
            raise
        click.echo(f"ingest: {e.strerror or e}{': ' + e.filename if e.filename else ''}",
                   err=True)
    return EXIT_USAGE


def _durations(text: str) -> float:
    from ingest.verify.plan import parse_duration  # lazy: keeps ingest --help fast

    return parse_duration(text)


def _duration_text(text: str) -> str:
    _durations(text)  # checked now, passed on as typed
    return text.strip()


def _times(text: str) -> tuple[int, int]:
    from ingest.schedule import parse_time  # lazy: keeps ingest --help fast

    return parse_time(text)


def _sizes(text: str) -> int:
    from ingest.verify.plan import parse_size  # lazy: keeps ingest --help fast

    return parse_size(text)


def _subsets(text: str) -> tuple[int, int]:
    from ingest.verify.plan import parse_subset  # lazy: keeps ingest --help fast

    return parse_subset(text)


@click.command()
@click.argument("archives", nargs=-1, required=True, type=click.Path())
@click.option("--jobs", type=click.IntRange(1, 256), default=None,
              help="Decode worker processes (default: number of cores).")
@click.option("--no-decode", is_flag=True, help="Check hashes only; skip the image decode check.")
@click.option("--max-duration", metavar="DURATION", callback=_parsed(_durations),
              help="Start no new file after this long: 90s, 30m, 2h, 1h30m.")
@click.option("--max-bytes", metavar="SIZE", callback=_parsed(_sizes),
              help="Read at most this much: 500M, 50G, 2T (powers of 1024; 50GB = 50*10^9).")
@click.option("--subset", metavar="N/T", callback=_parsed(_subsets),
              help="Check only bucket N of T; T runs with N=1..T check every file once.")
@click.option("--repair", is_flag=True,
              help="Restore a corrupt or missing file from a good copy in another archive.")
@click.option("--low-priority", is_flag=True, help="Run at idle CPU and disk priority.")
@click.option("--stop-on-battery", type=click.IntRange(1, 100), metavar="PCT", default=None,
              help="Stop cleanly when on battery below PCT percent.")
@click.option("--backend", type=click.Choice(["local", "dask"]), default="local",
              show_default=True,
              help="dask: hash and decode on a Dask cluster (a local one unless --scheduler).")
@click.option("--scheduler", metavar="tcp://HOST:PORT", default=None,
              help="Run the checks on this Dask scheduler's workers; each must see ARCHIVE "
                   "at the same path. Implies --backend dask.")
@click.option("--s3-endpoint", metavar="URL", default=None,
              help="S3-compatible endpoint for s3:// archives (default: AWS_ENDPOINT_URL_S3, "
                   "AWS_ENDPOINT_URL, ~/.aws/config, else AWS).")
@click.option("--json", "json_path", metavar="PATH", help="Write the JSON report here (- for stdout).")
@click.option("--junit", "junit_path", metavar="PATH", help="Write a JUnit XML report here.")
@click.option("--html", "html_path", metavar="PATH", help="Write the HTML report here too.")
def verify(archives, jobs, no_decode, max_duration, max_bytes, subset, repair, low_priority,
           stop_on_battery, backend, scheduler, s3_endpoint, json_path, junit_path, html_path):
    """Re-read every file in each ARCHIVE and prove it unchanged since ingest.

    \b
    Exit codes: 0 all checked files intact, 1 a file is corrupt, missing or damaged,
    2 usage or environment error.
    """

    def go() -> int:
        from ingest.verify import VerifyConfig  # lazy: keeps ingest --help fast
        from ingest.verify.run import verify as run_verify  # lazy: keeps ingest --help fast

        cfg = VerifyConfig(archives=list(archives), decode=not no_decode,
                           max_seconds=max_duration, max_bytes=max_bytes, subset=subset,
                           repair=repair, low_priority=low_priority,
                           stop_on_battery=stop_on_battery, json_path=json_path,
                           junit_path=junit_path, html_path=html_path,
                           backend="dask" if scheduler else backend, scheduler=scheduler,
                           s3_endpoint=s3_endpoint)
        if jobs:
            cfg.jobs = jobs
        show = sys.stdout.isatty() and json_path != "-"
        # Wrapped at the terminal's width, unlike the other commands: verify's output has
        # always been, and sharing the helper is not to change it.
        console = make_console(soft_wrap=False)
        bar = _Bar(console) if show else None
        cfg.progress = bar
        with bar or NoProgress():
            result = run_verify(cfg)
        if json_path != "-":
            _summary(console, result.report, list(archives), repair)
        return result.exit_code

    sys.exit(_guard(go))


def _summary(console, report: dict, archives: list[str], repaired: bool) -> None:
    from rich.markup import escape  # lazy: keeps ingest --help fast

    from ingest.report.terminal import render_summary  # lazy: keeps ingest --help fast

    info = report.get("verify") or {}
    fixable = any("; good copy at " in (f.get("detail") or "") for f in report["files"])
    nxt = ["ingest", "verify", *archives, "--repair"] if fixable and not repaired else None
    render_summary(console, report, nxt)
    if info.get("stopped"):
        console.print(f"[yellow]Stopped early: {escape(info['stopped'])}[/]; "
                      f"{info.get('not_started', 0)} files are left for the next run")
    if info.get("over_budget"):
        console.print(f"{info['over_budget']} files are beyond this run's byte budget; "
                      "a later run checks them first")


def _Bar(console):  # noqa: N802 - reads like the class it makes
    """Verify's bar: files checked of the files due."""
    from ingest.report.terminal import EventBar  # lazy: keeps ingest --help fast

    return EventBar(console, "verifying", start="planned", total_key="files",
                    step="file_checked", by_bytes=False)


@click.command()
@click.argument("archives", nargs=-1, required=True, type=click.Path())
@click.option("--print", "kind", type=click.Choice(["cron", "systemd", "launchd"]),
              required=True, help="Which scheduler to print the schedule for.")
@click.option("--at", "at", default="02:30", show_default=True, metavar="HH:MM",
              callback=_parsed(_times),
              help="Time of day to run.")
@click.option("--max-duration", default="30m", show_default=True, metavar="DURATION",
              callback=_parsed(_duration_text),
              help="Time budget of each nightly run.")
@click.option("--stop-on-battery", default=20, show_default=True, type=click.IntRange(1, 100),
              metavar="PCT", help="Stop when on battery below this charge.")
@click.option("--json", "json_path", metavar="PATH", default=None,
              help="Where each run writes its JSON report (default: a per-user log folder).")
def schedule(archives, kind, at, max_duration, stop_on_battery, json_path):
    """Print a nightly schedule that runs `ingest verify` on each ARCHIVE. Installs nothing."""

    def go() -> int:
        from ingest import schedule as sched  # lazy: keeps ingest --help fast
        from ingest.verify.run import check_archives  # lazy: keeps ingest --help fast

        roots = check_archives(list(archives))
        # launchd exists only on macOS: its log paths are macOS ones wherever this runs.
        platform = "darwin" if kind == "launchd" else sys.platform
        plan = sched.build(roots, at=at, max_duration=max_duration,
                           stop_on_battery=stop_on_battery, json_path=json_path,
                           platform=platform)
        click.echo(sched.render(kind, plan), nl=False)
        return 0

    sys.exit(_guard(go))
