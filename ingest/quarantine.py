"""Keep the bytes that a repair replaces, inside the archive, instead of destroying them.

A file that verify calls corrupt may have been changed on purpose by another program (an
editor that rewrote a DNG's metadata); only a person can tell. So before a good copy is
renamed over it, the file is moved to `<root>/.ingest/quarantine/<run>/<its path>` and a line
saying why is appended to `<root>/.ingest/quarantine/<run>/quarantine.jsonl`.

The move is one `os.rename` inside the archive's file system: it copies nothing and cannot
leave half a file. `.ingest/` is not archive content, so verify and catalog rebuilds never
walk into the quarantine.
"""

from __future__ import annotations

import json
import os
import posixpath
from datetime import UTC, datetime

from ingest import fsio
from ingest.catalog import STATE_DIR

QUARANTINE_DIR = "quarantine"
RECORD_NAME = "quarantine.jsonl"
_STAMP = "%Y%m%dT%H%M%SZ"


def run_folder(at: datetime, session: str) -> str:
    """The quarantine folder of one run, relative to the archive root (POSIX).

    Named `<UTC time>-<session>` so folders sort by time. Verify's session ids already start
    with their own start time, which is then not written twice."""
    stamp = at.astimezone(UTC).strftime(_STAMP)
    name = session if session.startswith(stamp + "-") else f"{stamp}-{session}"
    return f"{STATE_DIR}/{QUARANTINE_DIR}/{name}"


def quarantine(root: str, rel: str, *, reason: str, at: datetime, session: str,
               started: datetime | None = None) -> str | None:
    """Move `root/rel` into this run's quarantine folder and note why.

    `rel` is POSIX and relative to `root`. `at` is when the move happens (written to the
    note); `started` is when the run started (names the folder, so one run's files share a
    folder and a note file; default `at`).

    Returns where the file now is, relative to `root` (POSIX), or None when there was no file
    at `root/rel` (nothing to keep). Raises OSError when the file could not be kept; the file
    is then still at `root/rel`."""
    parts = rel.split("/")
    if not rel or rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"not a path inside the archive: {rel!r}")
    src = os.path.join(root, *parts)
    try:
        size = os.lstat(src).st_size
    except FileNotFoundError:
        return None
    folder = run_folder(started or at, session)
    target = _free_name(root, f"{folder}/{rel}")
    target_dir = fsio.makedirs_synced(root, posixpath.dirname(target))
    dst = os.path.join(root, *target.split("/"))
    os.rename(src, dst)
    # The new entry is made durable before the old one's removal, so a crash in between can
    # leave the file in both folders' views but never in neither.
    fsio.fsync_dir(target_dir)
    fsio.fsync_dir(os.path.dirname(src))
    note = {"path": rel, "quarantined": target, "size": size,
            "time": at.astimezone(UTC).isoformat(), "reason": reason, "session": session}
    try:
        _append(os.path.join(root, *folder.split("/"), RECORD_NAME), note)
    except OSError:
        # Bytes without a note saying why would puzzle whoever finds them: undo the move, so
        # the caller can leave everything as it was.
        try:
            os.rename(dst, src)
            fsio.fsync_dir(os.path.dirname(src))
            fsio.fsync_dir(target_dir)
        except OSError as undo:
            raise OSError(undo.errno, f"the file was moved to {target} but no note could be "
                          f"written and it could not be moved back ({undo.strerror})") from None
        raise
    return target


def put_back(root: str, quarantined: str, rel: str, *, reason: str, at: datetime,
             session: str) -> None:
    """Undo `quarantine` (for a replacement that failed after the move): move the file back
    to `root/rel` and note it in the same folder's note file. Raises OSError on failure."""
    src = os.path.join(root, *quarantined.split("/"))
    dst = os.path.join(root, *rel.split("/"))
    os.rename(src, dst)
    fsio.fsync_dir(os.path.dirname(dst))
    fsio.fsync_dir(os.path.dirname(src))
    folder = _run_folder_of(quarantined)
    try:
        _append(os.path.join(root, *folder.split("/"), RECORD_NAME),
                {"path": rel, "quarantined": None, "put_back_from": quarantined,
                 "time": at.astimezone(UTC).isoformat(), "reason": reason, "session": session})
    except OSError:
        pass  # the file is back where it was; a stale note is the lesser harm


def read_notes(root: str, folder: str) -> list[dict]:
    """The notes of one run's quarantine folder (relative to root), oldest first."""
    path = os.path.join(root, *folder.split("/"), RECORD_NAME)
    try:
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def _run_folder_of(quarantined: str) -> str:
    return "/".join(quarantined.split("/")[:3])


def _free_name(root: str, target: str) -> str:
    """`target`, or `target.1`, `target.2`... when this run already kept a file there: a
    rename onto an existing name would destroy the bytes kept first."""
    candidate, n = target, 0
    while os.path.lexists(os.path.join(root, *candidate.split("/"))):
        n += 1
        candidate = f"{target}.{n}"
    return candidate


def _append(path: str, note: dict) -> None:
    line = (json.dumps(note, sort_keys=True) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fsio.FileIO().write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    fsio.fsync_dir(os.path.dirname(path))  # the note file may be new
