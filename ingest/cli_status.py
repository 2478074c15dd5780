"""`ingest status SOURCE DEST...`: the "safe to format this card?" command.

Registered in `ingest.cli` with `cli.add_command(status)`. The helpers of `ingest.cli` are
imported inside the command, because `ingest.cli` imports this module.
"""

from __future__ import annotations

import sys

import click


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
    from ingest.cli import _console, _run

    def go():
        from ingest.report.status_terminal import HashProgress, render_status
        from ingest.status import card_status

        show = sys.stdout.isatty() and json_path != "-"
        console = _console()
        progress = HashProgress(console) if show else None
        if progress:
            with progress:
                result = card_status(source, list(destinations), min_copies=min_copies,
                                     progress=progress, s3_endpoint=s3_endpoint)
        else:
            result = card_status(source, list(destinations), min_copies=min_copies,
                                 s3_endpoint=s3_endpoint)
        if json_path:
            from ingest.report.json_report import write_json

            write_json(result.report, json_path)
        if json_path != "-":
            render_status(console, result.report)
        return result.exit_code

    sys.exit(_run(go))
