"""Counts per status and the one-line verdict, shared by every report."""

from __future__ import annotations

from collections.abc import Iterable

from ingest.model import FLAGGED, FileRecord, Status
from ingest.safety import CardVerdict


def summarize(records: Iterable[FileRecord], command: str, *, card: CardVerdict | None = None,
              held_back: int = 0) -> dict:
    """`card`: the offload's verdict on the card (`ingest.safety.card_verdict`), the same rule
    `ingest status` applies. `held_back`: card entries the run could not reach or copy (too
    deep, unlistable, not a regular file); they have no record but hold the card back."""
    records = list(records)
    by_status: dict[str, dict[str, int]] = {}
    for r in records:
        s = by_status.setdefault(str(r.status), {"files": 0, "bytes": 0})
        s["files"] += 1
        s["bytes"] += r.size
    flagged = [r for r in records if r.status in FLAGGED]
    accepted = by_status.get(Status.ACCEPTED, {"files": 0})["files"]
    total = len(records)
    if card is not None:
        safe, verdict, accepted = card.safe_to_format, card.line, card.accepted
    else:
        safe = not flagged
        checked = total - by_status.get(Status.SKIPPED, {"files": 0})["files"] \
            - by_status.get(Status.UNTRACKED, {"files": 0})["files"]
        tail = f", and {accepted} accepted as lost" if accepted else ""
        verdict = (f"{_need(len(flagged))} attention" if flagged
                   else f"All {checked - accepted} checked {_files(checked - accepted)} are "
                   f"intact{tail}")
    out = {
        "files": total,
        "bytes": sum(r.size for r in records),
        "by_status": dict(sorted(by_status.items())),
        "flagged": len(flagged),
        "accepted": accepted,
        "held_back": held_back,
        "safe_to_format": safe,
        "verdict": verdict,
    }
    if card is not None:
        # Files that hold the card back, as `ingest status` counts them (held_back counts
        # the card entries that have no file record).
        out["not_safe"] = card.held - held_back
    return out


def _need(n: int) -> str:
    return "1 file needs" if n == 1 else f"{n} files need"


def _files(n: int) -> str:
    return "file" if n == 1 else "files"
