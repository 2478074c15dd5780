"""`ingest verify`: re-read archived files from disk and prove them unchanged since ingest.

Modules: `plan` (what is due, in which order, within which budget), `check` (one file's hash
re-read, decode verdict and catalog record), `repair` (find and restore a good copy from a
sibling archive), `run` (the only module that knows the order of the stages).

This module holds only the run's configuration, so importing the package stays cheap.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from ingest.config import utc_now
from ingest.fsio import FileIO
from ingest.power import Battery, read_battery


@dataclass(slots=True)
class VerifyConfig:
    archives: list[str]
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    decode: bool = True
    decode_timeout: float = 120.0
    max_seconds: float | None = None  # no new file is started once this much time has passed
    max_bytes: int | None = None
    subset: tuple[int, int] | None = None  # (n, t): this run checks bucket n of t
    repair: bool = False
    low_priority: bool = False  # lowers the calling process's priority for the rest of its life
    stop_on_battery: int | None = None  # percent; stop when on battery below it
    battery: Callable[[], Battery | None] = read_battery
    # The only source of time for budgets and check timestamps, so tests can drive it.
    clock: Callable[[], datetime] = utc_now
    io: FileIO = field(default_factory=FileIO)
    json_path: str | None = None  # "-" for stdout
    junit_path: str | None = None
    html_path: str | None = None
    # Also keep JSON/HTML reports and an ASC MHL generation inside each archive.
    destination_reports: bool = True
    # Called with (event, **info): planned, file_start, file_checked, stopped. Never required.
    progress: Callable[..., None] | None = None
    # "local" (decode worker processes here) or "dask" (hash and decode on a Dask cluster:
    # `scheduler` when given, else a cluster of `jobs` worker processes on this machine).
    backend: str = "local"
    scheduler: str | None = None  # tcp://HOST:PORT of a running Dask scheduler
    # S3-compatible endpoint for s3:// archives; None: botocore's own chain (AWS_ENDPOINT_URL_S3,
    # AWS_ENDPOINT_URL, ~/.aws/config), else AWS itself.
    s3_endpoint: str | None = None
