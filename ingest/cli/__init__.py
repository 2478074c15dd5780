"""The command line: a thin layer over `ingest.api`, one module per command.

    common.py   what the commands share: exit codes, the console, errors as one line
    offload.py  ingest offload          demo.py     ingest demo
    status.py   ingest status, accept   verify.py   ingest verify, schedule

`ingest --help` imports only click and these modules: every heavy library, and most of
ingest itself, is imported inside the command that needs it.
"""

from __future__ import annotations

import os

import click

from ingest.cli import demo, offload, status, verify


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ingest")
def cli() -> None:
    """Copy camera cards to several destinations and prove every copy intact.

    \b
    Exit codes: 0 every file verified (status says whether the card is safe to format),
    1 a file needs attention, 2 usage or environment error.
    """


for command in (offload.offload, demo.demo, status.status, status.accept, verify.verify,
                verify.schedule):
    cli.add_command(command)


def main() -> None:
    # Where numpy is imported in this process (verify's Dask backend imports joblib, which
    # imports it), its OpenBLAS starts a thread per core that spins for nothing (0.1 CPU-s
    # per run, taken from the decode workers); this process does no linear algebra. Set
    # before any import of numpy, and only for the command.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    cli(prog_name="ingest")
