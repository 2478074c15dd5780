"""The typed library API. The CLI calls these; so can a script.

    from ingest import api
    result = api.offload("/media/card", ["/mnt/a", "/mnt/b"])
    result.exit_code, result.report["summary"]
"""

from __future__ import annotations

from collections.abc import Callable

from ingest.accept import accept as _accept
from ingest.config import OffloadConfig
from ingest.layout import Layout
from ingest.pipeline import RunResult
from ingest.pipeline import offload as _offload
from ingest.status import card_status
from ingest.verify import VerifyConfig
from ingest.verify.run import verify as _verify


def offload(source: str, destinations: list[str], *, layout: str | None = None,
            retries: int = 2, jobs: int | None = None, decode: bool = True,
            previews: bool = True, preview_size: int = 2048, json_path: str | None = None,
            junit_path: str | None = None, html_path: str | None = None,
            destination_reports: bool = True, progress: Callable[..., None] | None = None,
            **overrides) -> RunResult:
    """Copy `source` to every destination, verify each copy from disk, decode-check images.

    Raises `ingest.preflight.UsageError` (bad source/destination), `ingest.layout.LayoutError`
    and `ingest.lock.LockedError`; every per-file problem is a status in the result instead.
    """
    cfg = OffloadConfig(source=source, destinations=list(destinations),
                        layout=Layout.parse(layout), retries=retries, decode=decode,
                        previews=previews and decode, preview_size=preview_size,
                        json_path=json_path, junit_path=junit_path, html_path=html_path,
                        destination_reports=destination_reports, progress=progress, **overrides)
    if jobs:
        cfg.jobs = jobs
    return _offload(cfg)


def status(source: str, destinations: list[str], *, min_copies: int = 2, **overrides):
    """Is the card safe to format? See `ingest.status.card_status`."""
    return card_status(source, list(destinations), min_copies=min_copies, **overrides)


def accept(source: str, destinations: list[str], files: list[str], reason: str | None, *,
           undo: bool = False, **overrides):
    """Record card files as known losses. See `ingest.accept.accept`."""
    return _accept(source, list(destinations), list(files), reason, undo=undo, **overrides)


def verify(archives: list[str], **options):
    """Re-check archives against their catalogs. Options are the fields of
    `ingest.verify.VerifyConfig` (jobs, decode, max_seconds, max_bytes, subset, repair, ...)."""
    return _verify(VerifyConfig(archives=list(archives), **options))
