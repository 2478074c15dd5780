"""What the commands share: exit codes, the console, and expected errors as one line."""

from __future__ import annotations

import os
import sys

import click

EXIT_OK, EXIT_FLAGGED, EXIT_USAGE = 0, 1, 2


def make_console(stderr: bool = False, soft_wrap: bool = True):
    from rich.console import Console  # lazy: keeps ingest --help fast

    # soft_wrap: paths and the "Next:" command must stay whole lines to copy and paste.
    return Console(stderr=stderr, highlight=False, soft_wrap=soft_wrap)


def fail(message: str) -> None:
    click.echo(f"ingest: {message}", err=True)
    sys.exit(EXIT_USAGE)


def run_guarded(fn):
    """Turn expected environment errors into one line and exit code 2, never a traceback."""
    from ingest.layout import LayoutError  # lazy: keeps ingest --help fast
    from ingest.lock import LockedError  # lazy: keeps ingest --help fast
    from ingest.preflight import UsageError  # lazy: keeps ingest --help fast

    try:
        return fn()
    except (UsageError, LayoutError, LockedError) as e:
        fail(str(e))
    except KeyboardInterrupt:
        click.echo("\ningest: interrupted; run the same command again to continue where it "
                   "stopped", err=True)
        sys.exit(130)
    except OSError as e:
        if os.environ.get("INGEST_DEBUG"):
            raise
        fail(f"{e.strerror or e}{': ' + e.filename if e.filename else ''}")


def worker_count(value: int | None) -> int:
    """--jobs as given, else one decode worker per core."""
    return value if value and value > 0 else (os.cpu_count() or 1)


class NoProgress:
    """Stands in for a progress bar (a context manager) when output is not a terminal."""

    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
