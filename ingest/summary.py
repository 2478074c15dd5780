"""Counts per status and the one-line verdict, shared by every report."""

from __future__ import annotations

from collections.abc import Iterable

from ingest.model import FLAGGED, FileRecord, Status


def summarize(records: Iterable[FileRecord], n_destinations: int, command: str,
              min_copies: int = 2, held_back: int = 0) -> dict:
    """`held_back`: card entries the run could not reach or copy (too deep, unlistable, not a
    regular file). They have no record, but the card may not be formatted while they exist."""
    records = list(records)
    by_status: dict[str, dict[str, int]] = {}
    for r in records:
        s = by_status.setdefault(str(r.status), {"files": 0, "bytes": 0})
        s["files"] += 1
        s["bytes"] += r.size
    flagged = [r for r in records if r.status in FLAGGED]
    total = len(records)
    if command == "offload":
        safe = not flagged and not held_back and n_destinations >= min_copies
        verdict = _offload_verdict(total, len(flagged), n_destinations, min_copies)
        if held_back and not flagged:
            verdict = (f"{held_back} card {'entry' if held_back == 1 else 'entries'} could not "
                       "be copied (see 'not copied'): do not format this card")
    else:
        safe = not flagged
        checked = total - by_status.get(Status.SKIPPED, {"files": 0})["files"] \
            - by_status.get(Status.UNTRACKED, {"files": 0})["files"]
        verdict = (f"{_need(len(flagged))} attention" if flagged
                   else f"All {checked} checked {_files(checked)} are intact")
    return {
        "files": total,
        "bytes": sum(r.size for r in records),
        "by_status": dict(sorted(by_status.items())),
        "flagged": len(flagged),
        "held_back": held_back,
        "safe_to_format": safe,
        "verdict": verdict,
    }


def _need(n: int) -> str:
    return "1 file needs" if n == 1 else f"{n} files need"


def _files(n: int) -> str:
    return "file" if n == 1 else "files"


def _offload_verdict(total: int, flagged: int, places: int, min_copies: int) -> str:
    if flagged:
        return f"{_need(flagged)} attention: do not format this card"
    if total == 0:
        return "The card holds no files to copy"
    if places < min_copies:
        return (f"All {total} {_files(total)} are verified, but in only {places} "
                f"place{'s' if places != 1 else ''}: keep the card until there are {min_copies}")
    return f"All {total} {_files(total)} are safe in {places} places"
