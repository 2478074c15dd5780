"""`ingest status`: is this card safe to format?

Every file on the card is hashed once (read-only) and looked up by content in each
destination's catalog, so a copy counts wherever the layout put it and whatever it is named.
A copy counts when its catalog row is proven good and the file is still there with the
catalogued size. The archive is not re-read here: that is `ingest verify`'s job, and the
report says so. Copies are counted per device, because two folders on one disk die together,
and a copy on the card's own device is erased by the very format this command is asked about.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import quote

from ingest import __version__, fsio
from ingest.catalog import GOOD, Row, catalog_path
from ingest.config import utc_now
from ingest.discover import discover
from ingest.model import ADVICE, FLAGGED, Status
from ingest.preflight import UsageError, check_catalogued, check_source

SAFE, NOT_SAFE = "safe", "not_safe"
ARCHIVE_NOTE = ("Copies were checked by catalog and size on disk, not re-read here: "
                "`ingest verify DEST` re-hashes the archive.")
# Reasons from `discover` for entries that hold no photo data of their own.
_HARMLESS_SKIP_PREFIX = "symlink"


@dataclass(slots=True)
class StatusResult:
    report: dict

    @property
    def exit_code(self) -> int:
        return 0 if self.report["summary"]["safe_to_format"] else 1


def st_dev(path: str) -> int:
    return os.stat(path).st_dev


def card_status(source: str, destinations: list[str], *, min_copies: int = 2,
                io: fsio.FileIO | None = None, clock: Callable[[], datetime] = utc_now,
                device_of: Callable[[str], int] = st_dev,
                progress: Callable[..., None] | None = None,
                s3_endpoint: str | None = None) -> StatusResult:
    """Say whether `source` may be formatted. Reads the card and the catalogs, writes nothing.

    Raises `UsageError` for a missing source or destination, or a destination without a
    catalog; every per-file problem is a `not_safe` record in the report instead.
    `device_of(path)` names the device a path lives on (tests simulate separate disks with it).
    """
    if min_copies < 1:
        raise UsageError("--min-copies must be at least 1")
    real_source = check_source(source)
    local = [d for d in destinations if "://" not in d]
    urls = [d for d in destinations if "://" in d]
    roots = _check_destinations(local) if local or not urls else []
    io = io or fsio.FileIO()
    emit = progress or (lambda *a, **k: None)
    started = clock()
    names = _DeviceNames()
    card_device = device_of(real_source)
    catalogs = [_open_catalog(dest, root) for dest, root in zip(local, roots, strict=True)]
    remotes = _open_remotes(urls, s3_endpoint)
    for ra in remotes:
        names.extra[ra.device_id] = ra.device_label
    try:
        found = discover(real_source)
        emit("discovered", files=len(found.files), bytes=sum(f.size for f in found.files))
        files = []
        for src in found.files:
            emit("file_start", path=src.rel, size=src.size)
            check = _FileCheck(src.rel, str(src.kind), src.size)
            check.digest, error = _hash(src.abspath, io)
            if error:
                check.read_error = error
            else:
                for root, cat in zip(roots, catalogs, strict=True):
                    check.add_rows(root, cat.by_hash(check.digest), device_of, names,
                                   card_device)
                for ra in remotes:
                    check.add_remote_rows(ra, ra.by_hash(check.digest))
            files.append(check.to_json(min_copies, names))
            emit("file_hashed", path=src.rel, size=src.size)
    finally:
        for cat in catalogs:
            cat.close()
        for ra in remotes:
            ra.close()
    skipped = [{"path": s.rel, "reason": s.reason,
                "holds_back": not s.reason.startswith(_HARMLESS_SKIP_PREFIX)}
               for s in found.skipped]
    dest_devices = [_device_or_none(device_of, r) for r in roots]
    finished = clock()
    report = {
        "schema": "ingest-report/1",
        "command": "status",
        "tool_version": __version__,
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat(),
        "seconds": round((finished - started).total_seconds(), 3),
        "source": real_source,
        "source_device": names.label(card_device),
        "destinations": [{"root": r, "device": names.label(d) if d is not None else None,
                          "device_id": d, "on_card_device": d == card_device}
                         for r, d in zip(roots, dest_devices, strict=True)]
        + [{"root": ra.root, "device": ra.device_label, "device_id": ra.device_id,
            "on_card_device": False} for ra in remotes],
        "min_copies": min_copies,
        "archive_check": ARCHIVE_NOTE,
        "skipped_system_files": len(found.system_files),
        "skipped": skipped,
        "files": files,
    }
    report["summary"] = _summary(files, skipped, min_copies)
    report["next"] = _next_step(report, source, destinations, card_device, dest_devices)
    return StatusResult(report)


# destinations and catalogs ------------------------------------------------------------------
def _check_destinations(destinations: list[str]) -> list[str]:
    return check_catalogued(destinations, "destination",
                            none="give at least one destination",
                            no_catalog="nothing was offloaded there yet")


class _ReadOnlyCatalog:
    """The catalog opened read-only: status must work on a write-protected archive disk and
    must never change it. `Catalog()` would create tables and write a meta row."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db
        self._columns = ", ".join(Row.__slots__)

    def by_hash(self, digest: str) -> list[Row]:
        cur = self.db.execute(f"SELECT {self._columns} FROM files WHERE xxh3_128=? ORDER BY id",
                              (digest,))
        return [Row(*r) for r in cur]

    def close(self) -> None:
        self.db.close()


def _open_catalog(dest: str, root: str) -> _ReadOnlyCatalog:
    uri = "file:" + quote(catalog_path(root))
    # A WAL database opened read-only needs its -shm file; on a read-only mount it cannot be
    # made, and nothing can be writing there either, so the file is read as immutable.
    last: sqlite3.Error | None = None
    for mode in ("?mode=ro", "?mode=ro&immutable=1"):
        try:
            db = sqlite3.connect(uri + mode, uri=True, timeout=30)
            db.execute("SELECT count(*) FROM files").fetchone()
            return _ReadOnlyCatalog(db)
        except sqlite3.Error as e:
            last = e
    raise UsageError(f"destination {dest}: its catalog cannot be read ({last})")


def _open_remotes(urls: list[str], endpoint: str | None) -> list:
    """s3:// archives: their catalogs live in the bucket (ingest.remote); read-only here."""
    if not urls:
        return []
    from ingest.remote.stage import RemoteArchive

    return [RemoteArchive(url, endpoint=endpoint) for url in urls]


# devices ----------------------------------------------------------------------------------
class _DeviceNames:
    """Names a device id the way the user knows it (`/dev/sdb1`), from the mount table."""

    def __init__(self, mountinfo: str = "/proc/self/mountinfo"):
        self.names: dict[tuple[int, int], str] = {}
        self.extra: dict[int, str] = {}  # object stores: negative ids, never a disk's
        try:
            with open(mountinfo, encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            lines = []
        for line in lines:
            head, _, tail = line.partition(" - ")
            fields, rest = head.split(), tail.split()
            if len(fields) < 5 or len(rest) < 2:
                continue
            try:
                major, minor = (int(x) for x in fields[2].split(":"))
            except ValueError:
                continue
            fstype, what = rest[0], rest[1]
            name = what if what.startswith("/dev/") else f"{fstype} at {fields[4]}"
            self.names.setdefault((major, minor), name)

    def label(self, dev: int) -> str:
        if dev in self.extra:
            return self.extra[dev]
        key = (os.major(dev), os.minor(dev)) if dev >= 0 else (-1, -1)
        return self.names.get(key) or f"device {key[0]}:{key[1]}"


def _device_or_none(device_of: Callable[[str], int], path: str) -> int | None:
    try:
        return device_of(path)
    except OSError:
        return None


# one file ---------------------------------------------------------------------------------
def _hash(path: str, io: fsio.FileIO) -> tuple[str | None, str | None]:
    """(xxh3-128 hex, None) or (None, why the card could not be read)."""
    try:
        fd = io.open_source(path)
    except OSError as e:
        return None, f"could not be opened on the card: {e.strerror or e}"
    try:
        h = fsio.new_hasher()
        while chunk := io.read(fd, fsio.CHUNK):
            h.update(chunk)
        return h.hexdigest(), None
    except OSError as e:
        return None, f"read error on the card: {e.strerror or e}"
    finally:
        os.close(fd)


@dataclass(slots=True)
class _Copy:
    destination: str
    path: str
    catalog_status: str
    device: int | None = None
    verified: bool = False  # proven good by the catalog, and present with its size
    counts: bool = False  # verified and not on the card's own device
    problem: str | None = None


@dataclass(slots=True)
class _FileCheck:
    path: str
    kind: str
    size: int
    digest: str | None = None
    read_error: str | None = None
    copies: list[_Copy] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)  # flagged catalog statuses, with detail
    flag_statuses: set[str] = field(default_factory=set)

    def add_rows(self, root: str, rows: list[Row], device_of, names: _DeviceNames,
                 card_device: int) -> None:
        for row in rows:
            c = _Copy(root, row.path, row.status)
            self.copies.append(c)
            if row.status in FLAGGED:
                self._flag(row, root)
                c.problem = f"catalog status {row.status}"
            elif row.status not in GOOD:
                c.problem = (f"not proven yet (catalog status {row.status}): the offload that "
                             "wrote it did not finish its checks")
            else:
                self._check_present(c, os.path.join(root, row.path), row.size, device_of,
                                    names, card_device)

    def add_remote_rows(self, ra, rows: list[Row]) -> None:
        for row in rows:
            c = _Copy(ra.root, row.path, row.status, device=ra.device_id)
            self.copies.append(c)
            if row.status in FLAGGED:
                self._flag(row, ra.root)
                c.problem = f"catalog status {row.status}"
                continue
            c.problem = ra.problem(row)
            c.verified = c.counts = c.problem is None

    def _flag(self, row: Row, root: str) -> None:
        detail = row.detail or ADVICE.get(row.status, "")
        if row.status == Status.DAMAGED_ON_CARD:
            text = detail if detail.startswith("damaged on the card") else \
                f"damaged on the card: {detail}"
        else:
            text = f"{row.status.replace('_', ' ')} at {root}: {detail}"
        if text not in self.flags:
            self.flags.append(text)
        self.flag_statuses.add(row.status)

    @staticmethod
    def _check_present(c: _Copy, abspath: str, size: int, device_of, names: _DeviceNames,
                       card_device: int) -> None:
        try:
            st = os.stat(abspath)
            c.device = device_of(abspath)
        except OSError:
            c.problem = "listed in the catalog but missing from the destination"
            return
        if st.st_size != size:
            c.problem = (f"size on disk {st.st_size} differs from the catalog's {size}: "
                         "run ingest verify")
            return
        c.verified = True
        if c.device == card_device:
            c.problem = (f"on the card's own device ({names.label(c.device)}): formatting "
                         "the card erases it")
        else:
            c.counts = True

    def reasons(self, min_copies: int, names: _DeviceNames) -> list[str]:
        if self.read_error:
            return [self.read_error]
        if self.flags:
            return list(self.flags)  # copies of a flagged file are beside the point
        if not self.copies:
            return ["not copied"]
        out = []
        counting = [c for c in self.copies if c.counts]
        devices = sorted({c.device for c in counting})
        if len(devices) >= min_copies:
            return out
        if len(counting) >= min_copies:
            where = ", ".join(names.label(d) for d in devices)
            if len(devices) == 1:
                both = "both" if len(counting) == 2 else "all"
                out.append(f"{len(counting)} copies but {both} on the same device ({where})")
            else:
                out.append(f"{len(counting)} copies but on only {len(devices)} devices "
                           f"({where}), needs {min_copies}")
        else:
            n = len(counting)
            line = f"{n} verified {'copy' if n == 1 else 'copies'}, needs {min_copies}"
            on_card = sum(1 for c in self.copies if c.verified and not c.counts)
            if on_card:
                line += (f" ({on_card} more on the card's own device, which formatting "
                         "erases)")
            out.append(line)
        out += [f"copy {c.destination}/{c.path} {c.problem}" for c in self.copies
                if c.problem and not c.verified]
        return out

    def to_json(self, min_copies: int, names: _DeviceNames) -> dict:
        reasons = self.reasons(min_copies, names)
        return {
            "path": self.path,
            "kind": self.kind,
            "size": self.size,
            "xxh3_128": self.digest,
            "status": NOT_SAFE if reasons else SAFE,
            "copies": [{"destination": c.destination, "path": c.path,
                        "device": names.label(c.device) if c.device is not None else None,
                        "device_id": c.device, "verified": c.verified, "counts": c.counts,
                        "catalog_status": c.catalog_status, "problem": c.problem}
                       for c in self.copies],
            "devices": len({c.device for c in self.copies if c.counts}),
            "detail": "; ".join(reasons),
            "reasons": reasons,  # the first is the headline the terminal groups files by
            # What a user can do: the key decides the advice and the next command.
            "reason": _reason_key(self, reasons),
        }


def _reason_key(check: _FileCheck, reasons: list[str]) -> str | None:
    if not reasons:
        return None
    if check.read_error:
        return Status.UNREADABLE.value
    for status in (Status.DAMAGED_ON_CARD, Status.UNREADABLE, Status.DAMAGED,
                   Status.UNVERIFIED, Status.NEEDS_RECOPY, Status.CORRUPT, Status.MISSING):
        if status in check.flag_statuses:
            return status.value
    return "not_copied" if not check.copies else "too_few_copies"


# verdict ------------------------------------------------------------------------------------
def _files(n: int) -> str:
    return "file" if n == 1 else "files"


def _summary(files: list[dict], skipped: list[dict], min_copies: int) -> dict:
    held = [f for f in files if f["status"] == NOT_SAFE]
    held_skips = [s for s in skipped if s["holds_back"]]
    n_held = len(held) + len(held_skips)
    safe = n_held == 0
    if not safe:
        verb = "is" if n_held == 1 else "are"
        verdict = f"NOT safe to format: {n_held} {_files(n_held)} {verb} held back"
    elif not files:
        verdict = "Safe to format: the card holds no files to copy"
    else:
        k = min(f["devices"] for f in files)
        subject = "the 1 file has" if len(files) == 1 else f"all {len(files)} files have"
        verdict = (f"Safe to format: {subject} {k} verified {'copy' if k == 1 else 'copies'} "
                   f"on {k} {'device' if k == 1 else 'devices'}")
    return {
        "files": len(files),
        "bytes": sum(f["size"] for f in files),
        "safe": len(files) - len(held),
        "not_safe": len(held),
        "skipped_held_back": len(held_skips),
        "min_copies": min_copies,
        "safe_to_format": safe,
        "verdict": verdict,
    }


# Problems that another offload run to these destinations can fix.
_OFFLOAD_FIXES = {"not_copied", "too_few_copies", Status.NEEDS_RECOPY.value,
                  Status.CORRUPT.value, Status.MISSING.value}


def _next_step(report: dict, source: str, destinations: list[str], card_device: int,
               dest_devices: list[int | None]) -> dict:
    """The one command to run next, and advice for what no command can fix."""
    if report["summary"]["safe_to_format"]:
        return {"command": None, "advice": []}
    held = [f for f in report["files"] if f["status"] == NOT_SAFE]
    keys = {f["reason"] for f in held}
    advice = [f"{k.replace('_', ' ')}: {ADVICE[k]}" for k in sorted(keys) if k in ADVICE]
    if any(s["holds_back"] for s in report["skipped"]):
        advice.append("Some entries on the card could not be read or copied (listed above): "
                      "check them before formatting.")
    command = None
    if keys & _OFFLOAD_FIXES:
        command = ["ingest", "offload", source, *destinations]
        usable = {d for d in dest_devices if d is not None and d != card_device}
        if len(usable) < report["min_copies"]:
            command.append("/path/on/another/disk")
            advice.append(f"The destinations sit on {len(usable)} "
                          f"{'device' if len(usable) == 1 else 'devices'} apart from the card; "
                          f"add one on another disk to reach {report['min_copies']}.")
    return {"command": command, "advice": advice}
