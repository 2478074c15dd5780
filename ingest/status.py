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
from typing import Protocol

from ingest import __version__, fsio
from ingest.catalog import GOOD, LOST, ReadOnlyCatalog, Row, catalog_path, open_readonly
from ingest.config import utc_now
from ingest.discover import discover
from ingest.model import ADVICE, FLAGGED, SourceFile, Status
from ingest.preflight import UsageError, check_catalogued, check_source
from ingest.safety import (
    ACCEPTED,
    Acceptance,
    CopyEvidence,
    DeviceNames,
    FileEvidence,
    FileVerdict,
    card_fingerprint,
    card_verdict,
    device_or_none,
    judge,
    newest,
    shared_device_warnings,
    st_dev,
    usable_devices,
)
from ingest.store import open_store
from ingest.store.urls import canonical, is_object_store

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
    local = [d for d in destinations if not is_object_store(d)]
    urls = [d for d in destinations if is_object_store(d)]
    roots = _check_destinations(local) if local or not urls else []
    io = io or fsio.FileIO()
    emit = progress or (lambda *a, **k: None)
    started = clock()
    names = DeviceNames()
    card_device = device_of(real_source)
    catalogs = [_open_catalog(dest, root) for dest, root in zip(local, roots, strict=True)]
    remotes = _open_remotes(urls, s3_endpoint)
    for ra in remotes:
        names.extra[ra.device_id] = ra.device_label
    try:
        found = discover(real_source)
        emit("discovered", files=len(found.files), bytes=sum(f.size for f in found.files))
        files = []
        verdicts = []
        archive = Archive(list(zip(roots, catalogs, strict=True)), remotes, device_of, names,
                          card_device, found.files)
        for src in found.files:
            emit("file_start", path=src.rel, size=src.size)
            check = archive.evidence(src, io)
            verdict = judge(check.evidence, card_device=card_device, min_copies=min_copies,
                            names=names)
            verdicts.append(verdict)
            files.append(check.to_json(verdict, names))
            emit("file_hashed", path=src.rel, size=src.size)
    finally:
        for cat in catalogs:
            cat.close()
        for ra in remotes:
            ra.close()
    skipped = [{"path": s.rel, "reason": s.reason,
                "holds_back": not s.reason.startswith(_HARMLESS_SKIP_PREFIX)}
               for s in found.skipped]
    dest_devices = [device_or_none(device_of, r) for r in roots]
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
    # The offload's own warnings, from the same function: two outputs, one story.
    report["warnings"] = shared_device_warnings(
        card_device, [(d["root"], d["device_id"]) for d in report["destinations"]],
        min_copies, names)
    report["summary"] = _summary(files, skipped, min_copies, verdicts)
    report["next"] = _next_step(report, source, destinations, card_device, dest_devices)
    return StatusResult(report)


# destinations and catalogs ------------------------------------------------------------------
def _check_destinations(destinations: list[str]) -> list[str]:
    return check_catalogued(destinations, "destination",
                            none="give at least one destination",
                            no_catalog="nothing was offloaded there yet")


def _open_catalog(dest: str, root: str) -> ReadOnlyCatalog:
    """Read-only: status must work on a write-protected archive disk and never change it (a
    writable open would migrate an older catalog)."""
    try:
        return open_readonly(catalog_path(root), label=dest)
    except sqlite3.Error as e:
        raise UsageError(f"destination {dest}: its catalog cannot be read ({e})") from None


def _open_remotes(urls: list[str], endpoint: str | None) -> list:
    """Object stores: their catalogs live in the store; read-only here."""
    views = []
    try:
        for url in urls:
            store = open_store(canonical(url), endpoint=endpoint, background=False)
            views.append(store.open_readonly())
    except BaseException:
        for view in views:
            view.close()
        raise
    return views


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


class CatalogView(Protocol):
    """What a card file's evidence is read from: a destination's catalog, read-only or not."""

    def by_hash(self, digest: str) -> list[Row]: ...

    def acceptance(self, card_path: str, size: int, mtime_ns: int) -> Acceptance | None: ...


@dataclass(slots=True)
class Archive:
    """The destinations a card file is looked up in, and how their devices are told apart."""

    catalogs: list[tuple[str, CatalogView]]  # (root, catalog)
    remotes: list
    device_of: Callable[[str], int]
    names: DeviceNames
    card_device: int | None
    card_files: list[SourceFile]  # the card's listing, for `card_fingerprint`

    def evidence(self, src: SourceFile, io: fsio.FileIO) -> FileCheck:
        """Hash the card file (read-only) and gather every catalogued copy of its content,
        each in its latest known state, and any acceptance of it."""
        digest, error = _hash(src.abspath, io)
        check = FileCheck(src, FileEvidence(src.rel, digest))
        if error:
            check.evidence.problems.append((Status.UNREADABLE.value, error))
        else:
            for root, cat in self.catalogs:
                check.add_rows(root, cat.by_hash(digest), self.device_of)
            for ra in self.remotes:
                check.add_remote_rows(ra, ra.by_hash(digest))
        check.evidence.acceptance = newest(
            [cat.acceptance(src.rel, src.size, src.mtime_ns) for _, cat in self.catalogs])
        if check.evidence.acceptance is not None:
            check.evidence.card = card_fingerprint(self.card_files, src.mtime_ns)
        return check




@dataclass(slots=True)
class FileCheck:
    """Gathers one card file's evidence from the catalogs for `safety.judge`."""

    src: SourceFile
    evidence: FileEvidence
    statuses: list[str] = field(default_factory=list)  # catalog statuses, for the JSON

    def add_rows(self, root: str, rows: list[Row], device_of) -> None:
        for row in rows:
            problem = self._row_problem(row, root)
            device = None
            if problem is None:
                problem, device = _check_present(os.path.join(root, row.path), row.size,
                                                 device_of)
            self._add(root, row, device, problem)

    def add_remote_rows(self, ra, rows: list[Row]) -> None:
        for row in rows:
            problem = self._row_problem(row, ra.root) or ra.problem(row)
            self._add(ra.root, row, ra.device_id, problem)

    def _add(self, root: str, row: Row, device: int | None, problem: str | None) -> None:
        # A copy on the card's own device is proven all the same; `judge` does not count it.
        self.evidence.copies.append(CopyEvidence(root, row.path, device,
                                                 proven=problem is None, problem=problem))
        self.statuses.append(row.status)

    def _row_problem(self, row: Row, root: str) -> str | None:
        """Why this catalogued copy does not count, from the catalog alone. The problems of
        the file itself (a flagged offload status, a copy that does not decode) go to the
        evidence: such a copy still holds the card's bytes, proven by its read-back, which is
        what keeps an accepted loss kept."""
        latest = row.last_result or ""
        when = (row.last_verified_at or "")[:10]
        found = f"ingest verify found it {latest} on {when}" if when else \
            f"its last check found it {latest}"
        if latest in LOST:
            return f"{found}: {_LATEST_ADVICE[latest]}"
        if latest == Status.DAMAGED:
            self._problem(Status.DAMAGED, f"the copy at {root} matches the card but does not "
                          f"decode ({found}): the file was damaged when it was copied")
        if row.status in FLAGGED:
            detail = row.detail or ADVICE.get(row.status, "")
            if row.status == Status.DAMAGED_ON_CARD:
                text = detail if detail.startswith("damaged on the card") else \
                    f"damaged on the card: {detail}"
            else:
                text = f"{row.status.replace('_', ' ')} at {root}: {detail}"
            self._problem(row.status, text)
        elif row.status not in GOOD:
            return (f"not proven yet (catalog status {row.status}): the offload that wrote it "
                    "did not finish its checks")
        return None

    def _problem(self, status: str, text: str) -> None:
        if (str(status), text) not in self.evidence.problems:
            self.evidence.problems.append((str(status), text))

    def to_json(self, verdict: FileVerdict, names: DeviceNames) -> dict:
        ev = self.evidence
        out = {
            "path": self.src.rel,
            "kind": str(self.src.kind),
            "size": self.src.size,
            "xxh3_128": ev.digest,
            "status": ACCEPTED if verdict.accepted else SAFE if verdict.safe else NOT_SAFE,
            "copies": [{"destination": c.destination, "path": c.path,
                        "device": names.label(c.device) if c.device is not None else None,
                        "device_id": c.device, "verified": c.proven,
                        "counts": c in verdict.counting, "catalog_status": status,
                        "problem": c.problem or (None if c in verdict.counting or not c.proven
                                                 else _on_card(names.label(c.device)))}
                       for c, status in zip(ev.copies, self.statuses, strict=True)],
            "devices": verdict.devices,
            "detail": "; ".join(verdict.reasons),
            "reasons": list(verdict.reasons),  # the first is the headline the terminal groups by
            # What a user can do: the key decides the advice and the next command.
            "reason": None if verdict.safe and not verdict.accepted else verdict.key,
        }
        if ev.acceptance is not None:
            out["acceptance"] = {**ev.acceptance.to_json(), "covers_current": verdict.accepted}
        return out


_LATEST_ADVICE = {
    Status.CORRUPT: "run ingest verify --repair, or offload the card again",
    Status.MISSING: "run ingest verify --repair, or offload the card again",
    Status.DAMAGED: "look for another copy",
}


def _on_card(device: str) -> str:
    """A proven copy that `judge` does not count: it can only be on the card's own device."""
    return f"on the card's own device ({device}): formatting the card erases it"


def _check_present(abspath: str, size: int, device_of) -> tuple[str | None, int | None]:
    """(why the copy does not count or None, its device)."""
    try:
        st = os.stat(abspath)
        device = device_of(abspath)
    except OSError:
        return "listed in the catalog but missing from the destination", None
    if st.st_size != size:
        return (f"size on disk {st.st_size} differs from the catalog's {size}: run ingest "
                "verify"), device
    return None, device


# verdict ------------------------------------------------------------------------------------
def _summary(files: list[dict], skipped: list[dict], min_copies: int,
             verdicts: list[FileVerdict]) -> dict:
    held_skips = [s for s in skipped if s["holds_back"]]
    card = card_verdict(verdicts, held_back=len(held_skips))
    not_safe = sum(1 for f in files if f["status"] == NOT_SAFE)
    return {
        "files": len(files),
        "bytes": sum(f["size"] for f in files),
        "safe": len(files) - not_safe,
        "not_safe": not_safe,
        "accepted": card.accepted,
        "skipped_held_back": len(held_skips),
        "min_copies": min_copies,
        "safe_to_format": card.safe_to_format,
        "verdict": card.line,
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
        if len(usable_devices(card_device, dest_devices)) < report["min_copies"]:
            command.append("/path/on/another/disk")  # the warnings above say why
    return {"command": command, "advice": advice}
