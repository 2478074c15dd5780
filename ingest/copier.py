"""Copy one card file to every destination in a single read, verify, and commit.

Per attempt: read the card once in chunks, hashing and writing each chunk to a hidden partial in
every destination that needs the file. Each partial is then fsynced and re-read from disk in a
verifier thread, so the next card file is already being copied while this one is proven; another
verifier thread reads the card file a second time, past the page cache (source verification).
Only a partial whose read-back matches, of a card read the second read agrees with, is renamed
to its final name; its catalog row follows once its folder is fsynced (rows are written in
batches: one transaction, not one per file). A partial that fails is removed and the card is
read again for the destinations still missing, up to `retries`. Nothing here raises for a
per-file problem: the outcome is a `CopyOutcome`.
"""

from __future__ import annotations

import errno
import os
import re
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from datetime import datetime

from ingest import fsio
from ingest.catalog import GOOD, LOST, Catalog, Row
from ingest.config import OffloadConfig
from ingest.layout import with_suffix
from ingest.metadata import CaptureInfo, capture_info
from ingest.mhl import make_hasher
from ingest.model import SourceFile
from ingest.quarantine import put_back, quarantine

# A destination that fails with one of these will fail every later file too.
_DEAD_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.ENOENT, errno.ENODEV, errno.EIO,
                errno.EACCES, errno.EPERM, errno.ENXIO,
                # a network share or FUSE mount that went away
                errno.ENOTCONN, errno.ESHUTDOWN, errno.ESTALE, errno.EHOSTDOWN}
ROWS_PER_BATCH = 64
UNSTABLE_CARD = "the card returned different data on two reads of this file"
# How a file's card bytes were proven (FileRecord.source_verify): a second card read past the
# page cache agreed with the one written; or the read matched the hash an earlier verified read
# of this card file recorded (a re-run: two reads, at two times); or source verification was off.
SECOND_READ, EARLIER_READ, SOURCE_CHECK_OFF = "second_read", "earlier_read", "off"


@dataclass(slots=True)
class Destination:
    """Run-time state of one destination root."""

    root: str
    catalog: Catalog
    token: str  # unique per run: names this run's partials
    started: datetime | None = None  # when the run started: names its quarantine folder
    device: int = 0
    dead: str | None = None  # why this destination stopped taking files
    files: int = 0
    bytes: int = 0
    cleaned: set[str] = field(default_factory=set)  # folders made and swept in this run
    seq: int = 0  # numbers this run's partials
    # committed (renamed, folder not yet fsynced / row not yet written) in this run
    pending_rows: list[dict] = field(default_factory=list)
    pending_dirs: set[str] = field(default_factory=set)
    pending_by_digest: dict[str, str] = field(default_factory=dict)
    pending_by_path: dict[str, str] = field(default_factory=dict)
    # Copies this run proved by a read-back from disk (its own, or a twin re-read): path ->
    # digest. A duplicate of one of these needs no second re-read.
    proven: dict[str, str] = field(default_factory=dict)
    # Copies renamed into place whose folder fsync or catalog row failed: not proven durable
    # (a power cut may take their names), so the run does not count them.
    unrecorded: set[str] = field(default_factory=set)

    def lookup(self, query: Callable, *args):
        """A catalog query that cannot abort the run: a destination whose catalog can no
        longer be read (the disk died, the share dropped) stops taking files, and the others
        go on. None when it failed."""
        try:
            return query(*args)
        except (sqlite3.Error, OSError) as e:
            self.catalog_lost(e)
            return None

    def catalog_lost(self, e: Exception) -> str:
        """Stop this destination: its catalog failed. Returns why it stopped."""
        self.dead = self.dead or (f"its catalog can no longer be read ({e}): reconnect it and "
                                  "run again")
        return self.dead

    def flush(self) -> None:
        """Make this run's renames durable, then record them: a row never precedes its file.
        A destination that fails here (gone, read-only) stops taking files; its renamed
        copies are complete and a re-run adopts them."""
        if not self.pending_rows:
            return
        try:
            for folder in sorted(self.pending_dirs):
                fsio.fsync_dir(folder)
            self.catalog.add_many(self.pending_rows)
        except (OSError, sqlite3.Error) as e:
            self.dead = self.dead or f"could not record copies in {self.root}: {e}"
            self.unrecorded.update(row["path"] for row in self.pending_rows)
        self.pending_rows, self.pending_dirs = [], set()
        self.pending_by_digest.clear()
        self.pending_by_path.clear()


@dataclass(slots=True)
class Placed:
    path: str  # relative to the destination root
    action: str  # copied | existing
    row_status: str | None = None  # status of an existing catalog row
    latest: str | None = None  # that row's latest check result (`last_result`)


@dataclass(slots=True)
class CopyOutcome:
    digest: str | None = None
    info: CaptureInfo | None = None
    placed: dict[str, Placed] = field(default_factory=dict)  # dest root -> copy
    failed: dict[str, str] = field(default_factory=dict)  # dest root -> reason
    attempts: int = 0
    mismatches: int = 0
    unreadable: str | None = None
    seconds: float = 0.0
    extra_hashes: dict[str, str] = field(default_factory=dict)  # format -> hex (ASC MHL)
    # Archived copies of this content that failed their re-read, so the card file was copied
    # again: (destination root, path, finding, detail).
    bad_twins: list[tuple[str, str, str, str]] = field(default_factory=list)
    quarantined: dict[str, str] = field(default_factory=dict)  # dest root -> kept bytes' path
    card_reads: int = 0  # every read of the file from the card, verifying ones included
    card_mismatches: int = 0  # attempts voided because two card reads disagreed
    source_check: str | None = None  # SECOND_READ | EARLIER_READ | SOURCE_CHECK_OFF once settled


class SourceReadError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class _Twin:
    """An archived copy with the card file's content, which may make a new copy unneeded."""

    row_id: int | None  # None: copied earlier in this run, its row not yet written
    path: str
    row_status: str
    proven: bool  # read back from disk in this run already
    latest: str | None = None  # the row's latest check result

    def placed(self) -> Placed:
        return Placed(self.path, "existing", self.row_status, self.latest)


@dataclass(frozen=True, slots=True)
class _Proof:
    """What a verifier thread found: the partial's digest as the disk holds it, or that an
    archived twin still holds the content (the partial is then dropped unproven)."""

    digest: str | None = None
    nbytes: int = 0
    twin_ok: bool = False
    twin_finding: tuple[str, str] | None = None  # (result, detail) when the twin failed


@dataclass(slots=True)
class _Target:
    dest: Destination
    rel: str  # intended path inside the destination
    partial: str = ""
    fd: int | None = None
    error: str | None = None
    check: Future | None = None  # a _Proof from the verifier thread
    twin: _Twin | None = None


class CopyJob:
    """One card file on its way to every destination: `start` (read and write, caller's
    thread), then `finish` once the verifier threads are done (commit, or copy again)."""

    def __init__(self, src: SourceFile, dests: list[Destination], cfg: OffloadConfig,
                 session_id: str, volume: str | None, place: Callable[[CaptureInfo], str],
                 verifier: Executor, extra_formats: tuple[str, ...] = (),
                 decode_next: bool = False):
        self.src, self.cfg, self.session_id, self.volume = src, cfg, session_id, volume
        # The decode check reads the first verified copy right after it is proven: the first
        # destination's, unless that one failed (then it is re-read from disk; only slower).
        self.decode_next = decode_next
        self.place, self.verifier, self.extra_formats = place, verifier, extra_formats
        self.dests = dests
        self.out = CopyOutcome()
        self.t0 = time.perf_counter()
        for d in dests:
            _check_still_there(d)
        self.pending = [d for d in dests if not d.dead]
        for d in dests:
            if d.dead:
                self.out.failed[d.root] = f"destination unavailable: {d.dead}"
        self.hinted = _hint_existing(src, self.pending)
        self.hint_checks: dict[str, Future] = {}  # dest root -> the hinted copy's re-read
        # A re-run's copy that fails its re-read costs one more card read, not a retry.
        self.extra_reads = 0
        self.targets: dict[str, _Target] = {}
        self.digest: str | None = None  # this attempt's card read, not yet settled
        self.card_check: Future | None = None  # this attempt's second card read

    # -- one attempt ----------------------------------------------------------------------
    def start(self) -> None:
        out = self.out
        self.targets, self.digest = {}, None
        for root, row in self.hinted.items():
            # A re-run's copy of this very card file is trusted only once re-read from disk:
            # it may have rotted at the same size since. The read overlaps the card's.
            if root not in self.hint_checks:
                self.hint_checks[root] = self.verifier.submit(
                    _check_twin, root, row.path, row.xxh3_128, row.size, self.cfg.io)
        while self.pending and out.attempts <= self.cfg.retries + self.extra_reads:
            out.attempts += 1
            write_to = [d for d in self.pending if d.root not in self.hinted]
            out.card_reads += 1
            try:
                # With nothing to write, the read is settled only by the hash an earlier verified
                # read recorded: it must come from the card, not from pages cached since.
                digest, targets = _read_and_write(self.src, write_to, self.cfg, out, self.place,
                                                  self.extra_formats, uncached=not write_to)
            except SourceReadError as e:
                out.unreadable = str(e)
                continue
            if out.digest is not None and digest != out.digest:
                # The content settled earlier (two reads agreed) and this read differs: this
                # read is the odd one out. Read again, as for a copy that did not read back.
                _discard(targets)
                out.card_mismatches += 1
                out.unreadable = UNSTABLE_CARD
                continue
            out.unreadable = None
            self.targets, self.digest = targets, digest
            if out.digest is None and targets:
                if self.cfg.source_verify:
                    # Started after the first read is closed, so the two reads are independent.
                    out.card_reads += 1
                    self.card_check = self.verifier.submit(fsio.reread_source,
                                                           self.src.abspath, self.cfg.io)
                else:
                    out.digest, out.source_check = digest, SOURCE_CHECK_OFF
            for t in targets.values():
                if t.fd is not None and not t.error:
                    keep = self.decode_next and t.dest is self.dests[0]
                    t.twin = _existing(t.dest, digest, self.src.size)
                    if t.dest.dead:  # its catalog could not be read
                        t.error = t.dest.dead
                        _close_and_remove(t)
                        continue
                    if t.twin is None:
                        t.check = self.verifier.submit(_prove, t.fd, t.partial,
                                                       self.src.mtime_ns, self.cfg.io, keep)
                    elif not t.twin.proven:
                        # The twin is re-read first; the partial is proven only if it fails.
                        t.check = self.verifier.submit(
                            _prove_unless_twin, t.fd, t.partial, self.src.mtime_ns, self.cfg.io,
                            keep, t.dest.root, t.twin.path, digest, self.src.size)
            return

    def ready(self) -> bool:
        return all(t.check is None or t.check.done() for t in self.targets.values()) and \
            all(f.done() for f in self.hint_checks.values()) and \
            (self.card_check is None or self.card_check.done())

    def finish(self) -> CopyOutcome:
        """Commit what verified; copy again (synchronously) for what did not."""
        while True:
            self._settle()
            if not self.pending or self.out.attempts > self.cfg.retries + self.extra_reads:
                break
            self.start()
            if self.digest is None:  # the card could not be read in the attempts left
                break
        out = self.out
        for d in self.pending:  # never silently short of a destination
            out.failed.setdefault(d.root, out.unreadable or d.dead or
                                  "the copy could not be proven in the attempts allowed")
        out.seconds = time.perf_counter() - self.t0
        out.placed = {d.root: out.placed[d.root] for d in self.dests if d.root in out.placed}
        return out

    def _settle(self) -> None:
        out, digest = self.out, self.digest
        if digest is None:
            return
        if not self._source_settled(digest):
            return
        still = []
        for d in self.pending:
            if d.root in self.hinted:
                row = self.hinted.pop(d.root)
                finding = self.hint_checks.pop(d.root).result()
                if finding is not None:
                    self._twin_failed(d, _Twin(row.id, row.path, row.status, False), finding)
                    if not d.dead:
                        self.extra_reads = 1
                        still.append(d)  # copy it again; the commit keeps the damaged bytes
                elif row.xxh3_128 == digest:
                    d.proven[row.path] = digest
                    if out.digest is None:  # this read agrees with an earlier verified one
                        out.digest, out.source_check = digest, EARLIER_READ
                    out.placed[d.root] = Placed(row.path, "existing", row.status,
                                                row.last_result)
                else:
                    still.append(d)  # same name, size and time but other content: copy it
                continue
            tgt = self.targets.get(d.root)
            if tgt is None or tgt.error:
                out.failed[d.root] = tgt.error if tgt else "not written"
                if not d.dead:
                    still.append(d)
                continue
            placed = self._commit_target(tgt, digest)
            if placed:
                out.placed[d.root] = placed
                out.failed.pop(d.root, None)
            elif not d.dead:
                still.append(d)
        self.pending, self.targets, self.digest = still, {}, None

    def _source_settled(self, digest: str) -> bool:
        """Whether this attempt's card read may be trusted: its second read agreed (or the
        content had settled before, or verification is off). When the second read disagrees
        or fails, nothing this attempt wrote counts: its partials are dropped unrenamed and the
        card is read again for every destination."""
        check, self.card_check = self.card_check, None
        if check is None:
            return True
        try:
            second, nbytes = check.result()
        except OSError as e:  # says nothing about the bytes: a read error, not a mismatch
            second, nbytes = None, -1
            self.out.unreadable = f"read error on the card: {e.strerror or e}"
        if second == digest and nbytes == self.src.size:
            self.out.digest, self.out.source_check = digest, SECOND_READ
            return True
        if second == digest:  # two reads agree, on another size than the card listed
            self.out.unreadable = (f"the file is {nbytes} bytes on the card now, "
                                   f"{self.src.size} when the card was listed: it changed")
        elif second is not None:
            self.out.card_mismatches += 1
            self.out.unreadable = UNSTABLE_CARD
        _discard(self.targets)
        self.targets, self.digest = {}, None
        return False

    def _twin_failed(self, d: Destination, twin: _Twin, finding: tuple[str, str]) -> None:
        """The archive's copy of this content failed its re-read: say so in the catalog (so
        `status` stops counting it and the commit may replace it) and in the report."""
        result, detail = finding
        self.out.bad_twins.append((d.root, twin.path, result, detail))
        if twin.row_id is None or result not in LOST:
            return  # not readable now (permissions, a busy disk): no finding about its bytes
        self._record(d, twin.row_id, result, f"re-read by ingest offload: {detail}")

    def _record(self, d: Destination, row_id: int, result: str, detail: str) -> None:
        try:
            d.catalog.record_finding(row_id, result, detail, self.cfg.clock().isoformat(),
                                     self.session_id)
        except sqlite3.Error as e:
            d.dead = d.dead or f"its catalog can no longer be written ({e}): run again"

    def _commit_target(self, t: _Target, digest: str) -> Placed | None:
        src, out, d = self.src, self.out, t.dest
        twin = t.twin
        if twin is not None and twin.proven:
            # Copied or re-read earlier in this run: already proven; drop the partial.
            _close_and_remove(t)
            return twin.placed()
        try:
            proof = t.check.result()
        except OSError as e:
            t.fd = None  # closed by the verifier
            _fail(t, e)
            out.failed[d.root] = t.error
            return None
        t.fd = None
        if proof.twin_ok:
            # The same content is archived here (another card, or a re-run) and still reads
            # back intact: keep that one.
            _close_and_remove(t)
            d.proven[twin.path] = digest
            return twin.placed()
        if proof.twin_finding is not None:
            self._twin_failed(d, twin, proof.twin_finding)
        back, nbytes = proof.digest, proof.nbytes
        if back != digest or nbytes != src.size:
            out.mismatches += 1
            out.failed[d.root] = (f"copy at {d.root} did not match the card when read back "
                                  f"({nbytes} of {src.size} bytes)")
            _close_and_remove(t)
            return None
        try:
            final_rel, adopted, kept = _commit(t, digest, src.size, src.rel, self.cfg,
                                               self.session_id)
        except (OSError, sqlite3.Error) as e:
            _fail(t, e)
            out.failed[d.root] = t.error
            return None
        d.proven[final_rel] = digest
        if kept:
            out.quarantined[d.root] = kept
        if adopted:
            row = d.lookup(d.catalog.by_path, final_rel)
            if row and row.xxh3_128 == digest:
                latest = row.last_result
                if latest in LOST:
                    # Found bad once, back intact now (just re-read): the catalog says so, or
                    # status would hold the card back for ever over a copy that is fine.
                    self._record(d, row.id, "verified", "re-read intact by ingest offload")
                    latest = "verified"
                return Placed(final_rel, "existing", row.status, latest)
        info = out.info
        d.pending_rows.append(dict(
            path=final_rel, size=src.size, mtime_ns=src.mtime_ns, digest=digest,
            kind=str(src.kind), capture_time=info.time.isoformat() if info and info.time else None,
            make=info.make if info else None, model=info.model if info else None,
            source_volume=self.volume, source_path=src.rel, session_id=self.session_id,
            status="copied", now=self.cfg.clock().isoformat()))
        d.pending_dirs.add(os.path.dirname(t.partial))
        d.pending_by_digest.setdefault(digest, final_rel)
        d.pending_by_path[final_rel] = digest
        if len(d.pending_rows) >= ROWS_PER_BATCH:
            d.flush()
        if not adopted:
            d.files += 1
            d.bytes += src.size
        return Placed(final_rel, "existing" if adopted else "copied")


def _check_still_there(d: Destination) -> None:
    """An unmounted disk leaves its empty mount point behind, on another device: writing
    there would fill the system disk with copies that are not on the destination at all."""
    if d.dead or not d.device:
        return
    try:
        dev = os.stat(d.root).st_dev
    except OSError as e:
        d.dead = f"destination {d.root} is gone ({e.strerror or e}): reconnect it and run again"
        return
    if dev != d.device:
        d.dead = (f"destination {d.root} is no longer the disk it was (unmounted?): reconnect "
                  "it and run again")


def _prove(fd: int, partial: str, mtime_ns: int, io: fsio.FileIO,
           keep_cached: bool = False) -> _Proof:
    """Verifier thread: make the partial durable, then hash it as the disk holds it."""
    try:
        io.fsync(fd)
    finally:
        os.close(fd)
    fsio.set_mtime(partial, mtime_ns)
    return _Proof(*fsio.uncached_hash(partial, io, keep_cached=keep_cached))


def _prove_unless_twin(fd: int, partial: str, mtime_ns: int, io: fsio.FileIO, keep: bool,
                       root: str, twin_path: str, digest: str, size: int) -> _Proof:
    """Verifier thread: a twin that still reads back intact makes the partial unneeded;
    otherwise the partial is proven as any other, and the twin's finding goes with it."""
    finding = _check_twin(root, twin_path, digest, size, io)
    if finding is None:
        os.close(fd)
        return _Proof(twin_ok=True)
    proof = _prove(fd, partial, mtime_ns, io, keep)
    return _Proof(proof.digest, proof.nbytes, twin_finding=finding)


def _check_twin(root: str, path: str, digest: str, size: int,
                io: fsio.FileIO) -> tuple[str, str] | None:
    """Re-read an archived copy from disk, past the page cache. None when it still holds
    `digest`; else (`missing` or `corrupt`, what was found). Never raises: a twin that
    vanished or changed in the middle of a run is a finding, not an error."""
    try:
        back, nbytes = fsio.uncached_hash(os.path.join(root, path), io)
    except FileNotFoundError:
        return "missing", "it is no longer there"
    except OSError as e:  # says nothing of its bytes: not trusted, not recorded as corrupt
        return "unreadable", f"it could not be read ({e.strerror or e})"
    if nbytes != size:
        return "corrupt", f"it is now {nbytes} bytes, was {size} when archived"
    if back != digest:
        return "corrupt", "its content changed since it was archived"
    return None


def _hash_or_none(path: str) -> str | None:
    try:
        return fsio.uncached_hash(path)[0]
    except OSError:
        return None  # unreadable: not a file this copy may adopt


def _existing(d: Destination, digest: str, size: int) -> _Twin | None:
    if size == 0:
        return None  # every empty file has the same content; each keeps its own name
    if digest in d.pending_by_digest:
        return _Twin(None, d.pending_by_digest[digest], "copied", proven=True)
    for row in d.lookup(d.catalog.by_hash, digest) or ():
        if _present(d.root, row):
            return _Twin(row.id, row.path, row.status, d.proven.get(row.path) == digest,
                         row.last_result)
    return None


def _archived(d: Destination, rel: str) -> bool:
    # Unknown when the catalog cannot be read: keep the file (it may be an archived copy).
    return rel in d.pending_by_path or d.lookup(d.catalog.by_path, rel) is not None or \
        d.dead is not None


def _hint_existing(src: SourceFile, dests: list[Destination]) -> dict[str, Row]:
    """Destinations whose catalog already holds this card file (same card path, size and
    mtime, proven good, still on disk): they get no write, only a hash comparison."""
    hints = {}
    for d in dests:
        for row in d.lookup(d.catalog.by_source, src.rel, src.size, src.mtime_ns) or ():
            if row.status in GOOD and _present(d.root, row):
                hints[d.root] = row
                break
    return hints


def _present(root: str, row: Row) -> bool:
    if row.last_result in LOST:
        return False
    try:
        return os.stat(os.path.join(root, row.path)).st_size == row.size
    except OSError:
        return False


def _read_and_write(src: SourceFile, dests: list[Destination], cfg: OffloadConfig,
                    out: CopyOutcome, place, extra_formats: tuple[str, ...] = (),
                    uncached: bool = False) -> tuple[str, dict[str, _Target]]:
    io = cfg.io
    extra = {}
    if extra_formats:
        extra = {fmt: make_hasher(fmt) for fmt in extra_formats}
    targets: dict[str, _Target] = {}
    try:
        fd = io.open_source(src.abspath)
    except OSError as e:
        raise SourceReadError(f"could not open on the card: {e.strerror or e}") from e
    try:
        if uncached:
            fsio.drop_cache(fd)
        h = fsio.new_hasher()
        first = True
        while True:
            try:
                chunk = io.read(fd, cfg.chunk_size)
            except OSError as e:
                _discard(targets)
                raise SourceReadError(f"read error on the card: {e.strerror or e}") from e
            if first:
                if out.info is None:
                    out.info = capture_info(chunk, src.kind, src.mtime_ns)
                rel = place(out.info)
                for d in dests:
                    targets[d.root] = _open_target(d, rel)
                first = False
            if not chunk:
                break
            h.update(chunk)
            for hx in extra.values():
                hx.update(chunk)
            for t in targets.values():
                if t.fd is not None:
                    _write(t, chunk, io)
    finally:
        fsio.close_read_only(fd)
    out.extra_hashes = {fmt: hx.hexdigest() for fmt, hx in extra.items()}
    return h.hexdigest(), targets


def _open_target(d: Destination, rel: str) -> _Target:
    t = _Target(d, rel)
    folder, _, name = rel.rpartition("/")
    try:
        abs_folder = os.path.join(d.root, folder) if folder else d.root
        if abs_folder not in d.cleaned:
            fsio.makedirs_synced(d.root, folder)
            # A card may hold a file named like a partial; once archived, its row protects it.
            fsio.remove_stale_partials(abs_folder, keep=lambda n: d.token in n or _archived(
                d, f"{folder}/{n}" if folder else n))
            d.cleaned.add(abs_folder)
        # Unique per attempt: two card files bound for one name (a collision) may be in
        # flight at once, and a retry must not meet its own earlier partial.
        d.seq += 1
        t.partial = os.path.join(abs_folder, fsio.partial_name(name, f"{d.token}-{d.seq}"))
        t.fd = os.open(t.partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError as e:
        _fail(t, e)
    return t


def _write(t: _Target, chunk: bytes, io: fsio.FileIO) -> None:
    try:
        io.write(t.fd, chunk)
    except OSError as e:
        _fail(t, e)


def _fail(t: _Target, e: OSError | sqlite3.Error) -> None:
    if isinstance(e, sqlite3.Error):
        t.error = t.dest.catalog_lost(e)
        _close_and_remove(t)
        return
    reason = f"{e.strerror or e} while writing to {t.dest.root}"
    if e.errno == errno.ENOSPC:
        reason = f"destination full ({t.dest.root}): free space or use another disk"
    elif e.errno == errno.EROFS:
        reason = f"destination is read-only ({t.dest.root})"
    t.error = reason
    if e.errno in _DEAD_ERRNOS or not os.path.isdir(t.dest.root):
        t.dest.dead = reason
    _close_and_remove(t)


def _close_and_remove(t: _Target) -> None:
    if t.fd is not None:
        try:
            os.close(t.fd)
        except OSError:
            pass
        t.fd = None
    if t.partial:
        try:
            os.unlink(t.partial)
        except OSError:
            pass


def _discard(targets: dict[str, _Target]) -> None:
    """Drop an attempt's partials unrenamed. One whose read-back is under way is left to its
    verifier thread until it is done (that thread closes the descriptor)."""
    for t in targets.values():
        if t.check is not None:
            try:
                t.check.result()
            except OSError:
                pass
            t.fd = None
        _close_and_remove(t)


def _commit(t: _Target, digest: str, size: int, card_rel: str, cfg: OffloadConfig,
            session: str) -> tuple[str, bool, str | None]:
    """Rename the verified partial to a final name that holds no other content.

    Returns (final relative path, adopted, kept): adopted means an identical file already sat
    there (a crash between rename and catalog write), so the partial is dropped and that file
    is used; kept is where the bytes of a damaged copy it replaced were moved (quarantine).
    """
    io = cfg.io
    folder, _, name = t.rel.rpartition("/")
    abs_folder = os.path.dirname(t.partial)
    d = t.dest
    # First the card folder's name (readable, and shared by a RAW+JPEG pair and its sidecars),
    # then the content hash, which no other file can share.
    card_folder = re.sub(r"[^\w.-]+", "_", card_rel.rpartition("/")[0].rpartition("/")[2])
    candidates = [name] + ([with_suffix(name, card_folder)] if card_folder else [])
    for candidate in (*candidates, with_suffix(name, digest[:8]), with_suffix(name, digest)):
        final = os.path.join(abs_folder, candidate)
        rel = f"{folder}/{candidate}" if folder else candidate
        if rel in d.pending_by_path:
            continue  # renamed into place earlier in this run, row not yet written
        if os.path.lexists(final):
            if os.path.isfile(final) and os.path.getsize(final) == size \
                    and _hash_or_none(final) == digest:
                _close_and_remove(t)
                return rel, True, None
            row = d.catalog.by_path(rel)
            if not (row and row.xxh3_128 == digest and row.last_result in LOST):
                continue  # a different file owns this name: never overwrite it
            # This copy of the very same original was found corrupt: replace it, but keep
            # its bytes (an editor's rewrite is also "corrupt"), and only then take the name.
            reason = (f"found {row.last_result} and replaced by ingest offload from the card "
                      f"file {card_rel}")
            kept = quarantine(d.root, rel, reason=reason, at=cfg.clock(), session=session,
                              started=d.started)
            try:
                io.rename(t.partial, final)
            except OSError:
                if kept:
                    put_back(d.root, kept, rel, reason=f"replacement failed; {reason}",
                             at=cfg.clock(), session=session)
                raise
            return rel, False, kept
        io.rename(t.partial, final)
        return rel, False, None
    raise OSError(errno.EEXIST, f"no free name for {name}")
