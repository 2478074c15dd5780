"""One archived file's check: re-read it from disk, compare with the hash recorded at ingest,
turn a decode result into a verify status. The outcome goes into the catalog through
`Catalog.record_check`.

The comparison is always against `files.xxh3_128`, the hash taken when the file was ingested;
a verify never rewrites it, so a file that rots slowly cannot drift its own reference.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass

from ingest.catalog import Row
from ingest.fsio import FileIO, uncached_hash
from ingest.kinds import IMAGE_KINDS
from ingest.model import Copy, FileRecord, Kind, Status

_DECODE_KINDS = frozenset(str(k) for k in IMAGE_KINDS)


@dataclass(slots=True)
class HashCheck:
    status: Status  # verified, corrupt or missing
    detail: str
    digest: str | None  # what the disk holds now, when it could be read
    bytes_read: int
    mtime_ns: int | None  # the file's mtime now, when it exists
    seconds: float


def hash_check(abs_path: str, row: Row, io: FileIO) -> HashCheck:
    t0 = time.perf_counter()

    def done(status: Status, detail: str, digest: str | None = None, nbytes: int = 0,
             mtime: int | None = None) -> HashCheck:
        return HashCheck(status, detail, digest, nbytes, mtime, time.perf_counter() - t0)

    try:
        st = os.lstat(abs_path)
    except FileNotFoundError:
        return done(Status.MISSING, "no longer there")
    except OSError as e:
        return done(Status.CORRUPT, f"could not be read: {e.strerror or e}")
    if not stat.S_ISREG(st.st_mode):
        return done(Status.CORRUPT, "is no longer a regular file", mtime=st.st_mtime_ns)
    try:
        # Read even when the size differs: the hash it has now goes into the MHL as `failed`.
        digest, nbytes = uncached_hash(abs_path, io)
    except OSError as e:
        return done(Status.CORRUPT, f"could not be read: {e.strerror or e}",
                    mtime=st.st_mtime_ns)
    status, detail = compare(row, digest, nbytes)
    return done(status, detail, digest, nbytes, st.st_mtime_ns)


def compare(row: Row, digest: str, nbytes: int) -> tuple[Status, str]:
    """What bytes read now say against the catalog row's size and hash from ingest."""
    if nbytes != row.size:
        return Status.CORRUPT, f"size is now {nbytes} bytes, was {row.size} at ingest"
    if digest != row.xxh3_128:
        return Status.CORRUPT, (f"content changed since ingest (xxh3-128 now {digest}, "
                                f"was {row.xxh3_128})")
    return Status.VERIFIED, ""


def wants_decode(row: Row) -> bool:
    return (row.kind or "") in _DECODE_KINDS


def decode_request(abs_path: str, kind: str) -> dict:
    return {"path": abs_path, "kind": kind, "card_path": None, "preview": None,
            "capture_time": None}


def apply_decode(rec: FileRecord, result: dict) -> None:
    """The hash already matched the original, so the bytes are those ingested: a decode that
    fails now failed then. Only a clear `damaged` verdict flags the file; a decoder that cannot
    judge (unsupported, crashed, timed out) leaves it verified by hash, and says so."""
    dec = result.get("decode") or {}
    rec.decode = {k: dec.get(k) for k in ("decoder", "ok", "error", "checks", "seconds",
                                          "verdict")}
    verdict = dec.get("verdict")
    if verdict == "ok":
        return
    if verdict == "damaged":
        rec.status = Status.DAMAGED
        rec.detail = (f"matches its original hash but does not decode "
                      f"({dec.get('error') or 'decode failed'}): it was already damaged when it "
                      "was ingested")
    else:
        reason = dec.get("error") or f"decoder {verdict}"
        rec.detail = f"hash matches the original; the decode check could not judge it ({reason})"


def new_record(root: str, rel: str, row: Row) -> FileRecord:
    try:
        kind = Kind(row.kind or "other")
    except ValueError:
        kind = Kind.OTHER
    return FileRecord(path=rel, kind=kind, size=row.size, mtime_ns=row.mtime_ns,
                      xxh3_128=row.xxh3_128, status=Status.SKIPPED,
                      capture_time=row.capture_time, camera_make=row.camera_make,
                      camera_model=row.camera_model, copies=[Copy(root, rel, False, "existing")])
