"""`ingest demo`: the click command over `ingest.demo`."""

from __future__ import annotations

import sys

import click

from ingest.cli.common import make_console, run_guarded, worker_count


@click.command()
@click.argument("directory", required=False, type=click.Path(), default="ingest-demo")
@click.option("--jobs", type=click.IntRange(1, 256), default=None)
def demo(directory, jobs):
    """Build a sample card with one damaged file in DIRECTORY and offload it to two places."""
    from ingest.demo import run_demo  # lazy: keeps ingest --help fast

    def go():
        return run_demo(directory, jobs=worker_count(jobs), console=make_console())

    sys.exit(run_guarded(go))
