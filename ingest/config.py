"""Everything a run needs is passed in here: no module reads global settings."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ingest.fsio import CHUNK, FileIO
from ingest.layout import Layout
from ingest.safety import st_dev


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class OffloadConfig:
    source: str
    destinations: list[str]
    layout: Layout = field(default_factory=lambda: Layout.parse(None))
    retries: int = 2
    # Read each card file a second time, past the page cache, and prove a copy only when both
    # card reads and its read-back agree: a flaky reader or cable can hand over one wrong bit
    # that the read-back (of what was written) and a decode cannot see.
    source_verify: bool = True
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    decode: bool = True
    previews: bool = True
    preview_size: int = 2048
    decode_timeout: float = 120.0
    chunk_size: int = CHUNK
    clock: Callable[[], datetime] = utc_now
    io: FileIO = field(default_factory=FileIO)
    s3_endpoint: str | None = None  # for s3:// destinations; else the AWS environment
    # Safe to format needs this many proven copies on separate devices other than the card's.
    min_copies: int = 2
    # Which device a path lives on (`ingest.safety.st_dev`); copies count once per device.
    device_of: Callable[[str], int] = st_dev
    json_path: str | None = None  # "-" for stdout
    html_path: str | None = None
    junit_path: str | None = None
    # Also keep JSON and HTML reports, and an ASC MHL generation, inside each destination.
    destination_reports: bool = True
    # Called with (event, **info) for progress; the CLI draws bars from it. Never required.
    progress: Callable[..., None] | None = None
