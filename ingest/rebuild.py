"""Rebuild a destination's catalog from the files on disk and its ASC MHL history.

The catalog is an index; the archive is the files, and the ASC MHL history is the record of
what each file was when it was archived. When the catalog is corrupt (SQLite cannot read it) or
gone, every file is re-hashed from the disk (page cache dropped) and compared with the hash the
history recorded first:

- the hash matches   -> `verified`: proven against the original. The card it came from is not
  known any more (no source path), so a re-run from that card finds it by hash, not by name.
- the hash differs   -> `corrupt`: the row keeps the history's hash, which is the original, so
  `ingest verify` flags the file, `--repair` restores it from another copy, and a re-run of the
  offload replaces it from the card.
- no history entry   -> `rebuilt`: the hash is taken now and proves nothing about the original.
  A re-run of the offload with the card turns it into `verified` when the card matches.

Files the history names that are no longer on disk are reported as missing; they get no row,
because a row must never point at a missing file. Nothing is deleted: a corrupt catalog is moved
aside as `catalog.sqlite.corrupt-<UTC time>` (with its -wal and -shm files), and the rebuild is
written to `.ingest/reports/rebuild-<UTC time>.json` as well as returned.

A missing catalog triggers a rebuild only where the destination shows that ingest or an ASC MHL
tool has used it (an `ascmhl/` history, or `.ingest/reports` or `.ingest/previews`): a folder of
photos used as a destination for the first time is not hashed in full before the first copy
(an offload re-run adopts identical files anyway).

The caller holds the destination's lock (ingest.lock.DestinationLock).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from ingest import __version__, fsio
from ingest.catalog import STATE_DIR, Catalog, catalog_path
from ingest.config import utc_now
from ingest.kinds import classify, is_system_dir, is_system_file
from ingest.metadata import capture_info
from ingest.mhl import FOLDER as HISTORY_FOLDER
from ingest.mhl import make_hasher, read_history, verify_chain
from ingest.report.json_report import write_json

VERIFIED = "verified"
CORRUPT = "corrupt"
REBUILT = "rebuilt"
# Traces that this destination was used before, so a missing catalog means a lost one.
_USED_MARKERS = ("reports", "previews")


@dataclass(slots=True)
class RebuildReport:
    root: str
    reason: str  # why the catalog was rebuilt: "corrupt: <sqlite error>", "missing", "empty"
    started_at: str
    finished_at: str = ""
    seconds: float = 0.0
    moved_aside: list[str] = field(default_factory=list)  # the old catalog files, kept
    verified: list[str] = field(default_factory=list)  # match the ASC MHL history
    corrupt: list[str] = field(default_factory=list)  # differ from the ASC MHL history
    rebuilt: list[str] = field(default_factory=list)  # no history entry: hash taken now
    missing: list[str] = field(default_factory=list)  # in the history, not on disk
    unreadable: list[str] = field(default_factory=list)  # could not be read: no row
    history_problems: list[str] = field(default_factory=list)  # from the chain check
    report_path: str | None = None

    @property
    def files(self) -> int:
        return len(self.verified) + len(self.corrupt) + len(self.rebuilt)

    @property
    def flagged(self) -> bool:
        return bool(self.corrupt or self.missing or self.unreadable)

    def to_json(self) -> dict:
        d = asdict(self)
        d["files"] = self.files
        return d

    def summary(self) -> str:
        return (f"catalog of {self.root} rebuilt ({self.reason}): {self.files} files, "
                f"{len(self.verified)} match the ASC MHL history, {len(self.corrupt)} do not, "
                f"{len(self.rebuilt)} have no history entry, {len(self.missing)} missing"
                + (f"; old catalog kept as {self.moved_aside[0]}" if self.moved_aside else ""))


def open_or_rebuild(dest_root: str, clock: Callable[[], datetime] = utc_now,
                    progress: Callable[..., None] | None = None
                    ) -> tuple[Catalog, RebuildReport | None]:
    """Open the destination's catalog; rebuild it first when it is corrupt, or missing (or
    empty) in a destination that was used before. Returns the open catalog and the rebuild's
    report (None when the catalog was fine)."""
    path = catalog_path(dest_root)
    reason = None
    if os.path.exists(path):
        try:
            cat = Catalog(dest_root)
        except sqlite3.DatabaseError as e:
            reason = f"corrupt: {e}"
        else:
            try:
                reason = _problem(cat, dest_root)
            except sqlite3.DatabaseError as e:
                reason = f"corrupt: {e}"
            if reason is None:
                return cat, None
            cat.close()
    elif _was_used(dest_root):
        reason = "missing"
    if reason is None:
        return Catalog(dest_root), None
    report = rebuild_catalog(dest_root, clock, reason=reason, progress=progress)
    return Catalog(dest_root), report


def _problem(cat: Catalog, root: str) -> str | None:
    found = cat.quick_check()
    if found != "ok":
        return f"corrupt: {found}"
    if cat.is_empty() and _was_used(root):
        return "empty"  # e.g. truncated to 0 bytes: SQLite reads that as a new database
    return None


def _was_used(root: str) -> bool:
    if os.path.isdir(os.path.join(root, HISTORY_FOLDER)):
        return True
    return any(os.path.isdir(os.path.join(root, STATE_DIR, m)) for m in _USED_MARKERS)


def rebuild_catalog(dest_root: str, clock: Callable[[], datetime] = utc_now, *,
                    reason: str = "requested", progress: Callable[..., None] | None = None
                    ) -> RebuildReport:
    """Move any existing catalog aside and build a new one from the disk and the history."""
    started = clock()
    t0 = time.perf_counter()
    emit = progress or (lambda *a, **k: None)
    report = RebuildReport(root=dest_root, reason=reason, started_at=started.isoformat())
    report.moved_aside = _move_aside(dest_root, started)
    root = Path(dest_root)
    history = read_history(root)
    report.history_problems = verify_chain(root) if (root / HISTORY_FOLDER).is_dir() else []
    session = "rebuild-" + started.strftime("%Y%m%dT%H%M%SZ")
    seen: set[str] = set()
    with Catalog(dest_root) as cat:
        cat.start_session(session, "rebuild", None, None, started.isoformat(), __version__)
        for rel in _archive_files(dest_root):
            seen.add(rel)
            emit("rebuild_file", path=rel)
            _add_row(cat, dest_root, rel, dict(history.get(rel, [])), report, session, clock)
        report.missing = sorted(p for p in history if p not in seen)
        finished = clock()
        cat.set_meta({"rebuilt_at": finished.isoformat(), "rebuilt_because": reason})
        cat.finish_session(session, finished.isoformat())
    report.finished_at = finished.isoformat()
    report.seconds = round(time.perf_counter() - t0, 3)
    report.report_path = _write_report(dest_root, report, finished)
    return report


def _move_aside(root: str, now: datetime) -> list[str]:
    """Rename the catalog and its WAL and shared-memory files; never delete them."""
    path = catalog_path(root)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    suffix = f".corrupt-{stamp}"
    n = 1
    while any(os.path.lexists(p + suffix) for p in (path, path + "-wal", path + "-shm")):
        n += 1
        suffix = f".corrupt-{stamp}-{n}"
    moved = []
    for p in (path, path + "-wal", path + "-shm"):
        if os.path.lexists(p):
            os.rename(p, p + suffix)
            moved.append(p + suffix)
    if moved:
        fsio.fsync_dir(os.path.dirname(path))
    return moved


def _archive_files(root: str):
    """Every archived file, relative and POSIX: not ingest's state, not histories, not partials,
    not OS clutter, not links."""
    for dirpath, dirnames, filenames in os.walk(root):
        at_root = dirpath == root
        dirnames[:] = sorted(d for d in dirnames
                             if d != HISTORY_FOLDER and not is_system_dir(d)
                             and not (at_root and d == STATE_DIR)
                             and not os.path.islink(os.path.join(dirpath, d)))
        for name in sorted(filenames):
            if is_system_file(name) or (name.startswith(".")
                                        and name.endswith(fsio.PARTIAL_SUFFIX)):
                continue
            path = os.path.join(dirpath, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            yield os.path.relpath(path, root).replace(os.sep, "/")


def _hash(path: str, fmt: str | None) -> tuple[str, str | None, int, bytes]:
    """xxh3-128, the history's own format if another, byte count and the first chunk, from one
    read of the disk (page cache dropped first, as for a copy's read-back)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fsio.drop_cache(fd)
        h = fsio.new_hasher()
        other = make_hasher(fmt) if fmt and fmt != "xxh128" else None
        total, head = 0, b""
        while chunk := os.read(fd, fsio.CHUNK):
            if not head:
                head = chunk
            h.update(chunk)
            if other is not None:
                other.update(chunk)
            total += len(chunk)
        fsio.drop_cache(fd)
    finally:
        os.close(fd)
    return h.hexdigest(), other.hexdigest() if other else None, total, head


def _add_row(cat: Catalog, root: str, rel: str, recorded: dict[str, str], report: RebuildReport,
             session: str, clock) -> None:
    path = os.path.join(root, rel)
    fmt = "xxh128" if "xxh128" in recorded else next(iter(recorded), None)
    try:
        st = os.stat(path)
        digest, other, nbytes, head = _hash(path, fmt)
    except OSError as e:
        report.unreadable.append(f"{rel}: {e.strerror or e}")
        return
    kind = classify(rel.rpartition("/")[2])
    info = _capture(head, kind, st.st_mtime_ns)
    row_hash, status = digest, REBUILT
    detail = ("catalog rebuilt: no ASC MHL history entry, so this hash was taken now and is "
              "not proven against the original; re-run the offload with the card to prove it")
    if fmt:
        expected = recorded[fmt].lower()
        actual = (digest if fmt == "xxh128" else other or "").lower()
        if actual == expected:
            status = VERIFIED
            detail = f"catalog rebuilt: matches the ASC MHL history ({fmt})"
        else:
            status = CORRUPT
            # Keep the original: the history's hash when it is ours, so verify flags the copy.
            row_hash = expected if fmt == "xxh128" else digest
            detail = (f"catalog rebuilt: the ASC MHL history recorded {fmt} {expected}, the "
                      f"file now gives {actual}: this copy changed since it was archived")
    now = clock().isoformat()
    cat.add(path=rel, size=nbytes, mtime_ns=st.st_mtime_ns, digest=row_hash, kind=str(kind),
            capture_time=info.time.isoformat() if info and info.time else None,
            make=info.make if info else None, model=info.model if info else None,
            source_volume=None, source_path=None, session_id=session, status=status, now=now)
    cat.set_status(rel, status, detail, now, session)
    {VERIFIED: report.verified, CORRUPT: report.corrupt, REBUILT: report.rebuilt}[status].append(rel)


def _capture(head: bytes, kind, mtime_ns: int):
    try:
        return capture_info(head, kind, mtime_ns)
    except Exception:  # noqa: BLE001 - metadata is a convenience here, never a reason to stop
        return None


def _write_report(root: str, report: RebuildReport, now: datetime) -> str | None:
    target = os.path.join(root, STATE_DIR, "reports", f"rebuild-{now:%Y%m%d-%H%M%S}.json")
    try:
        write_json({"schema": "ingest-rebuild/1", **report.to_json(), "report_path": target},
                   target)
    except OSError:
        return None  # the returned report still carries everything
    return target

