"""Which catalogued files a verify run checks, in which order, and within which budget.

Order: files whose last result was a problem first (so a fix is confirmed, or a worsening seen,
as soon as possible), then files never re-verified since ingest (oldest ingest first), then
the least recently re-verified. Ties go by archive, then path, so a plan is deterministic.

Budgets: the byte budget is applied here, as a prefix of that order; the time budget is
applied while running (see run.py), because only then is the time known.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

import xxhash

from ingest.catalog import Catalog, Row
from ingest.model import FLAGGED

FAILED_RESULTS = frozenset(str(s) for s in FLAGGED)

# GNU coreutils' convention: a bare letter or KiB-style suffix is a power of 1024, an
# SI "KB"-style suffix a power of 1000. So 50G = 50 GiB and 50GB = 50 * 10^9 bytes.
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])(i?b)?|b)?\s*$", re.IGNORECASE)
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[smh])+|\d+(?:\.\d+)?")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smh])")
_POWERS = {"k": 1, "m": 2, "g": 3, "t": 4}
_SECONDS = {"s": 1, "m": 60, "h": 3600}
_ESCAPED_BYTE = re.compile(r"\\x([89a-f][0-9a-f])")
_EPOCH = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Item:
    """One catalogued file that this run may check."""

    root: str
    row: Row
    rel: str  # the file's path on disk, relative to root (row.path may be an escaped form)
    present: bool  # seen by the archive walk; a file that is not there costs no bytes
    last_checked: str | None  # when verify last checked it; None: never since ingest
    failed: bool  # its last result (offload or verify) was a problem


@dataclass(slots=True)
class Plan:
    due: list[Item] = field(default_factory=list)
    over_budget: list[Item] = field(default_factory=list)
    outside_subset: dict[str, int] = field(default_factory=dict)  # root -> files left out
    untracked: dict[str, list[str]] = field(default_factory=dict)  # root -> paths on disk


# --- option parsing ------------------------------------------------------------------------


def parse_duration(text: str) -> float:
    """'90s', '30m', '1h', '1h30m' or bare seconds, to seconds."""
    cleaned = text.strip().lower()
    if not _DURATION.fullmatch(cleaned):
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 30m, 2h or 1h30m)")
    if cleaned[-1].isdigit():
        seconds = float(cleaned)
    else:
        seconds = sum(float(n) * _SECONDS[u] for n, u in _DURATION_PART.findall(cleaned))
    if seconds <= 0:
        raise ValueError(f"duration must be more than zero: {text!r}")
    return seconds


def parse_size(text: str) -> int:
    """'50G' (GiB), '50GB' (10^9), '1.5T', '4096'. K/M/G/T and KiB.. are powers of 1024."""
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"not a size: {text!r} (use e.g. 500M, 50G or 2T)")
    number, letter, suffix = m.groups()
    base = 1000 if suffix and suffix.lower() == "b" else 1024
    value = float(number) * base ** _POWERS.get((letter or "").lower(), 0)
    if value < 1:
        raise ValueError(f"size must be at least one byte: {text!r}")
    return int(value)


def parse_subset(text: str) -> tuple[int, int]:
    """'n/t': this run checks bucket n (1-based) of t."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise ValueError(f"not a subset: {text!r} (use n/t with 1 <= n <= t, e.g. 3/7)")
    return int(m.group(1)), int(m.group(2))


def in_subset(catalog_path: str, subset: tuple[int, int] | None) -> bool:
    """A file's bucket depends only on its catalog path, so the t runs n=1..t of one archive
    partition it exactly, whatever else changes between the runs."""
    if subset is None:
        return True
    n, t = subset
    return xxhash.xxh3_64_intdigest(catalog_path.encode("utf-8", "surrogateescape")) % t == n - 1


# --- the archive on disk -------------------------------------------------------------------


def disk_path(catalog_path: str) -> str:
    """The on-disk name for a catalog path, undoing `db_text`'s escape of bytes that are not
    UTF-8 (a name that really holds a backslash-x sequence would be misread; none do on cards).
    """
    if "\\x" not in catalog_path:
        return catalog_path
    return _ESCAPED_BYTE.sub(lambda m: chr(0xDC00 + int(m.group(1), 16)), catalog_path)


# --- the plan ------------------------------------------------------------------------------


def build_plan(archives: list[tuple[str, Catalog, dict[str, str]]],
               subset: tuple[int, int] | None, max_bytes: int | None) -> Plan:
    """`archives`: (root, its catalog, what it holds: `Store.files()`) for each archive."""
    plan = Plan()
    items: list[tuple[tuple, Item]] = []
    for index, (root, catalog, listing) in enumerate(archives):
        on_disk = dict(listing)
        checked = catalog.last_checks()
        plan.outside_subset[root] = 0
        for row in catalog.all_rows():
            rel = on_disk.pop(row.path, None)
            if not in_subset(row.path, subset):
                plan.outside_subset[root] += 1
                continue
            item = Item(root=root, row=row, rel=rel if rel is not None else disk_path(row.path),
                        present=rel is not None, last_checked=checked.get(row.id),
                        failed=(row.last_result or "") in FAILED_RESULTS)
            items.append((_order_key(item, index), item))
        plan.untracked[root] = sorted(on_disk.values())
    items.sort(key=lambda pair: pair[0])
    plan.due, plan.over_budget = _within_bytes([item for _, item in items], max_bytes)
    return plan


def _order_key(item: Item, archive_index: int) -> tuple:
    if item.failed:
        group, when = 0, item.last_checked or item.row.ingested_at
    elif item.last_checked is None:
        group, when = 1, item.row.ingested_at
    else:
        group, when = 2, item.last_checked
    return group, _parse_time(when), archive_index, item.row.path


def _parse_time(text: str | None) -> datetime:
    # Parsed rather than compared as text: offsets and fractional seconds vary in form.
    try:
        moment = datetime.fromisoformat(text or "")
    except ValueError:
        return _EPOCH
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _within_bytes(ordered: list[Item], max_bytes: int | None) -> tuple[list[Item], list[Item]]:
    """The longest prefix of the order that fits. The first file is always due, even when it
    alone is larger than the budget: otherwise one big video would block every later run."""
    if max_bytes is None:
        return ordered, []
    total = 0
    for i, item in enumerate(ordered):
        cost = item.row.size if item.present else 0
        if i > 0 and total + cost > max_bytes:
            return ordered[:i], ordered[i:]
        total += cost
    return ordered, []
