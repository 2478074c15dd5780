"""`ingest status SOURCE DEST...`: the "safe to format this card?" command, and `ingest
accept`, which records the files whose loss the photographer accepts."""

from __future__ import annotations

import sys

import click

from ingest.cli.common import make_console, run_guarded


@click.command()
@click.argument("source", type=click.Path())
@click.argument("destinations", nargs=-1, required=True, type=click.Path())
@click.option("--min-copies", default=2, show_default=True, type=click.IntRange(1, 64),
              help="Copies on separate devices each file needs before the card may be formatted.")
@click.option("--json", "json_path", metavar="PATH", help="Write the JSON report here (- for stdout).")
@click.option("--s3-endpoint", metavar="URL", default=None,
              help="S3-compatible endpoint for s3:// destinations.")
def status(source, destinations, min_copies, json_path, s3_endpoint):
    """Say whether SOURCE (a card) is safe to format: every file verified on enough devices.

    \b
    Each card file is hashed and looked up by content in every DESTINATION's catalog, so
    renamed or re-foldered copies count. The archive is not re-read: use `ingest verify`.
    Exit codes: 0 safe to format, 1 not safe, 2 usage or environment error.
    """

    def go():
        from ingest.report.status_terminal import (  # lazy: keeps ingest --help fast
            HashProgress,
            render_status,
        )
        from ingest.status import card_status  # lazy: keeps ingest --help fast

        show = sys.stdout.isatty() and json_path != "-"
        console = make_console()
        progress = HashProgress(console) if show else None
        if progress:
            with progress:
                result = card_status(source, list(destinations), min_copies=min_copies,
                                     progress=progress, s3_endpoint=s3_endpoint)
        else:
            result = card_status(source, list(destinations), min_copies=min_copies,
                                 s3_endpoint=s3_endpoint)
        if json_path:
            from ingest.report.json_report import write_json  # lazy: keeps ingest --help fast

            write_json(result.report, json_path)
        if json_path != "-":
            render_status(console, result.report)
        return result.exit_code

    sys.exit(run_guarded(go))


@click.command()
@click.argument("source", type=click.Path())
@click.argument("destinations", nargs=-1, required=True, type=click.Path())
@click.option("--file", "files", multiple=True, required=True, metavar="PATH",
              help="A card file, relative to the card as ingest status lists it (repeatable).")
@click.option("--reason", metavar="TEXT", help="Why the loss is accepted; shown in every report.")
@click.option("--undo", is_flag=True, help="Take an acceptance back.")
@click.option("--json", "json_path", metavar="PATH", help="Write the JSON report here (- for stdout).")
def accept(source, destinations, files, reason, undo, json_path):
    """Record that card FILEs are known to be lost or damaged, and that you accept it.

    \b
    From then on `ingest status` lists them as accepted instead of holding the card back,
    and `ingest verify` reports them as accepted instead of failing, for as long as they do
    not change. Only files that are really damaged can be accepted: one that can still be
    copied is refused. Exit codes: 0 recorded, 2 nothing recorded (see the message).
    """

    def go():
        from rich.markup import escape  # lazy: keeps ingest --help fast

        from ingest.accept import accept as run_accept  # lazy: keeps ingest --help fast

        result = run_accept(source, list(destinations), list(files), reason, undo=undo)
        if json_path:
            from ingest.report.json_report import write_json  # lazy: keeps ingest --help fast

            write_json(result.report, json_path)
        if json_path != "-":
            console = make_console()
            for f in result.report["files"]:
                verb = "no longer accepted" if undo else "accepted as lost"
                console.print(escape(f"{f['path']}: {verb} ({f['reason']})"))
            console.print(f"[bold]{escape(result.report['summary']['verdict'])}[/]")
            if not undo:
                console.print("ingest status and ingest verify now list these files as "
                              "accepted; ingest accept --undo takes that back.")
        return result.exit_code

    sys.exit(run_guarded(go))
