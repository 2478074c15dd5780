"""The verify run: the only module that knows the order of verify's stages.

check the archives -> lock them all -> plan (walk, subset, order, byte budget) -> for each due
file, while time and battery allow: re-read and hash it (main thread) -> decode images in worker
processes, overlapped with the next reads -> look for a good copy of a corrupt or missing file,
and restore it on --repair -> record the check in the catalog the moment the file is done ->
skipped and untracked records -> one ASC MHL generation per archive -> reports.

Every per-file problem ends as a status on its record; only a bad archive argument, a lock
held by another run or an unreadable catalog raise.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ingest import __version__
from ingest.catalog import CATALOG_NAME, STATE_DIR
from ingest.kinds import classify
from ingest.mhl import FOLDER as MHL_FOLDER
from ingest.mhl import MhlEntry, add_generation, read_history, representable
from ingest.model import FLAGGED_VERIFY, Copy, FileRecord, Status
from ingest.power import battery_stop_reason, lower_priority
from ingest.preflight import UsageError, check_catalogued
from ingest.report.build import PREVIEW_DIR, build_report, write_reports
from ingest.safety import CopyEvidence, FileEvidence, judge, newest
from ingest.store import Replace, Store, open_store
from ingest.store.urls import canonical, is_object_store
from ingest.verify import VerifyConfig, check, repair
from ingest.verify.check import HashCheck
from ingest.verify.plan import Item, build_plan
from ingest.verify.repair import GoodCopy
from ingest.verify.tasks import BackendLost, CheckResult, CheckTask, Read, read_for_check

if TYPE_CHECKING:
    from ingest.decode.pool import DecodePool


@dataclass(slots=True)
class VerifyResult:
    report: dict
    records: list[FileRecord]
    archives: list[str]

    @property
    def exit_code(self) -> int:
        # An archive that stopped responding mid-run is a problem to act on, even though
        # none of its files is known bad.
        dead = any(d.get("error") for d in self.report.get("destinations", []))
        return 1 if dead or any(r.status in FLAGGED_VERIFY for r in self.records) else 0


def check_archives(paths: list[str]) -> list[str]:
    """Real paths of the archives, or UsageError with one line the user can act on."""
    return check_catalogued(paths, "archive",
                            none="give at least one archive (a folder that ingest offloaded to)",
                            no_catalog="give a folder that ingest offloaded to")


def open_archives(cfg: VerifyConfig) -> list[Store]:
    """The archives as stores, in the order given: folders checked first (one line, exit 2,
    before anything is opened), object stores as named."""
    if not cfg.archives:
        check_archives([])
    named = [a for a in cfg.archives if not is_object_store(a)]
    folders = iter(check_archives(named) if named else [])
    stores: list[Store] = []
    for name in cfg.archives:
        if is_object_store(name):
            store = open_store(canonical(name), endpoint=cfg.s3_endpoint, clock=cfg.clock,
                               background=False)
        else:
            store = open_store(next(folders), clock=cfg.clock)
        if store.url in [s.url for s in stores]:
            raise UsageError(f"archive {store.url} is given twice")
        stores.append(store)
    return stores


def verify(cfg: VerifyConfig) -> VerifyResult:
    dask = cfg.backend == "dask" or cfg.scheduler
    if dask:
        # lazy: optional extra (pip install 'ingest[cluster]')
        from ingest.verify.dask_backend import require_cluster

        require_cluster()  # before any lock or catalog is touched
    stores = open_archives(cfg)
    priority = lower_priority() if cfg.low_priority else []
    started = cfg.clock()
    session = started.strftime("%Y%m%dT%H%M%SZ-") + secrets.token_hex(3)
    emit = cfg.progress or (lambda *a, **k: None)

    with ExitStack() as stack:
        for store in stores:
            _open(stack, store, session, started)
        plan = build_plan([(s.url, s.catalog, s.contents()) for s in stores], cfg.subset,
                          cfg.max_bytes)
        emit("planned", files=len(plan.due),
             bytes=sum(i.row.size for i in plan.due if i.present))
        run = VerifyRun(cfg, stores, session, started, emit, stack)
        run.check_all(plan.due)
        records = run.records
        records += [_skipped(i, _budget_note(cfg.max_bytes)) for i in plan.over_budget]
        records += [_skipped(i, f"not checked: {run.stop_reason}") for i in run.not_started]
        records += [r for s in stores for r in _untracked(s, plan.untracked[s.url])]
        finished = cfg.clock()
        for store in stores:
            if store.dead:
                continue
            try:
                # FULL for the last commit: its fsync makes every check record of the run
                # durable (at NORMAL a power cut could lose the run's WAL, not only the last few).
                store.catalog.db.execute("PRAGMA synchronous=FULL")
                store.catalog.finish_session(session, finished.isoformat())
            except sqlite3.Error as e:
                _stopped(store, f"its catalog can no longer be written ({e})")
        if cfg.destination_reports:
            _add_mhl_generations(stores, run.facts, finished)
    report = build_report("verify", None, stores, records, None, started, finished, cfg,
                          decoders=run.versions)
    report["verify"] = verify_facts(
        cfg, run, (finished - started).total_seconds(),
        outside_subset=sum(plan.outside_subset.values()), over_budget=len(plan.over_budget),
        repaired=sum(s.files for s in stores), repair=cfg.repair, low_priority=priority,
        backend="dask" if dask else "local", scheduler=cfg.scheduler)
    alive = [s for s in stores if not s.dead]
    write_reports(report, [s.url for s in alive if not s.remote], cfg,
                  stores=[s for s in alive if s.remote])
    return VerifyResult(report, records, [s.url for s in stores])


def verify_facts(cfg: VerifyConfig, run: VerifyRun, seconds: float, *, outside_subset: int,
                 over_budget: int, repaired: int, repair: bool, low_priority,
                 backend: str, scheduler: str | None) -> dict:
    """The report's `verify` section: budgets, why the run stopped, and how far it got."""
    return {
        "subset": f"{cfg.subset[0]}/{cfg.subset[1]}" if cfg.subset else None,
        "max_seconds": cfg.max_seconds, "max_bytes": cfg.max_bytes,
        "stopped": run.stop_reason, "checked": run.checked, "bytes_read": run.bytes_read,
        "files_per_second": round(run.checked / seconds, 2) if seconds > 0 else None,
        "outside_subset": outside_subset, "over_budget": over_budget,
        "not_started": len(run.not_started), "repaired": repaired, "decode": cfg.decode,
        "repair": repair, "low_priority": low_priority, "backend": backend,
        "scheduler": scheduler,
    }


def _open(stack: ExitStack, store: Store, session: str, started: datetime) -> None:
    """Lock, catalog and session; UsageError (exit 2) when the catalog cannot be read."""
    try:
        store.open(session, command="verify", require_catalog=True, started=started)
    except sqlite3.DatabaseError as e:
        raise UsageError(f"the catalog of {store.url} cannot be read ({e}): restore "
                         f"{STATE_DIR}/{CATALOG_NAME} from a backup") from None
    stack.callback(store.close)
    catalog = store.catalog
    try:
        # Check records are committed one file at a time. In WAL mode NORMAL keeps every commit
        # through a killed process; a power cut before the run's last commit (made FULL, so
        # synced) can lose the records since the last checkpoint, which merely get checked
        # again. FULL's fsync per commit would halve the speed on small files. (An object
        # store's catalog is a local copy, uploaded when the store is closed.)
        if catalog.wal:  # a rollback journal (a share where WAL cannot work) stays FULL
            catalog.db.execute("PRAGMA synchronous=NORMAL")
    except sqlite3.DatabaseError as e:
        raise UsageError(f"the catalog of {store.url} cannot be read ({e}): restore "
                         f"{STATE_DIR}/{CATALOG_NAME} from a backup") from None


@dataclass(slots=True)
class Fact:
    """What an MHL generation needs about one checked file."""

    root: str
    rel: str
    digest: str | None
    size: int
    mtime_ns: int
    at: datetime


@dataclass(slots=True)
class Pending:
    """A file sent to the check backend: its record (filled in when the result comes back)
    and its plan item."""

    rec: FileRecord
    item: Item
    hc: HashCheck | None = None


@dataclass(slots=True)
class VerifyRun:
    """The per-file half of a verify: feeds the check backend, applies each result to its
    record, repairs, and records the check in the catalog the moment a file is done."""

    cfg: VerifyConfig
    archives: list[Store]
    session: str
    started: datetime
    emit: Callable[..., None]
    stack: ExitStack
    records: list[FileRecord] = field(default_factory=list)
    not_started: list[Item] = field(default_factory=list)
    facts: list[Fact] = field(default_factory=list)
    sent: dict[int, Pending] = field(default_factory=dict)
    previews: dict[str, set[str]] = field(default_factory=dict)  # root -> preview names
    versions: dict | None = None
    peers: dict[str, Store | None] = field(default_factory=dict)  # opened once per run
    lookups: repair.Lookups = field(default_factory=repair.Lookups)
    stop_reason: str | None = None
    checked: int = 0
    bytes_read: int = 0

    def check_all(self, due: list[Item]) -> None:
        cfg = self.cfg
        self.stack.callback(self.lookups.close)
        self.previews = {s.url: set(s.contents(f"{STATE_DIR}/{PREVIEW_DIR}").values())
                         for s in self.archives}
        if cfg.backend == "dask" or cfg.scheduler:
            # lazy: optional extra (pip install 'ingest[cluster]')
            from ingest.verify.dask_backend import DaskBackend

            backend = DaskBackend(cfg)
        else:
            backend = LocalChecks(cfg, {s.url: s for s in self.archives})
        try:
            for result in backend.results(self._tasks(due)):
                self.apply(result)
        except BackendLost as e:
            self._lost(str(e))
        finally:
            self.versions = backend.versions
            backend.close()

    def _tasks(self, due: list[Item]) -> Iterator[CheckTask]:
        """Pulled by the backend one file at a time: the budget is asked before each."""
        for i, item in enumerate(due):
            if self.stop_before(due, i):
                return
            rec = check.new_record(item.root, item.rel, item.row)
            self.records.append(rec)  # in check order; filled in when the file is done
            archive = self._archive(item.root)
            if archive.dead:
                _not_checked(rec, archive)
                continue
            self.sent[i] = Pending(rec, item)
            self.emit("file_start", root=item.root, path=item.rel, size=item.row.size)
            yield CheckTask(i, item.root, item.rel, item.row,
                            self.cfg.decode and check.wants_decode(item.row), self.cfg.io,
                            self.cfg.s3_endpoint if archive.remote else None)

    def stop_before(self, due: list, i: int) -> bool:
        """True when a budget or the battery says stop before `due[i]`; records what is left."""
        reason = self._stop_reason()
        if reason:
            self.stop_reason = reason
            self.not_started = due[i:]
            self.emit("stopped", reason=reason, remaining=len(self.not_started))
        return bool(reason)

    def _stop_reason(self) -> str | None:
        cfg = self.cfg
        if cfg.max_seconds is not None:
            if (cfg.clock() - self.started).total_seconds() >= cfg.max_seconds:
                return f"the time budget of {_duration(cfg.max_seconds)} is used up"
        if cfg.stop_on_battery is not None:
            return battery_stop_reason(cfg.stop_on_battery, cfg.battery())
        return None

    def _lost(self, reason: str) -> None:
        """Files sent to a backend that failed are not checked: they become `skipped` with
        the reason, like files a budget left out, and the next run checks them first."""
        lost = {id(p.rec) for p in self.sent.values()}
        self.records[:] = [r for r in self.records if id(r) not in lost]
        self.not_started = [p.item for p in self.sent.values()] + list(self.not_started)
        self.sent.clear()
        self.stop_reason = reason
        self.emit("stopped", reason=reason, remaining=len(self.not_started))

    # one file -----------------------------------------------------------------------------
    def apply(self, result: CheckResult) -> None:
        p = self.sent.pop(result.key)
        hc = result.hash
        p.hc = hc
        self.bytes_read += hc.bytes_read
        p.rec.status, p.rec.detail, p.rec.seconds = hc.status, hc.detail, round(hc.seconds, 6)
        if result.decode is not None:
            check.apply_decode(p.rec, result.decode)
        self._finish(p)

    def _finish(self, p: Pending) -> None:
        rec, item, hc = p.rec, p.item, p.hc
        archive = self._archive(item.root)
        if archive.dead or (hc.digest is None and rec.status in (Status.CORRUPT, Status.MISSING)
                            and _gone(archive)):
            # Not a finding about this file: its disk went away (before this file was read,
            # while it was decoded, or as it was read). Nothing is recorded.
            _not_checked(rec, archive)
            return
        # A decode found these bytes bad once: at ingest (damaged on the card) or in a verify.
        found_bad = item.row.last_result == Status.DAMAGED or \
            item.row.status == Status.DAMAGED_ON_CARD
        if rec.status is Status.VERIFIED and found_bad and \
                (rec.decode or {}).get("verdict") != "ok":
            # A hash check (or a decoder that could not judge) cannot clear a decode finding.
            rec.status = Status.DAMAGED
            rec.detail = ("matches its original hash, but an earlier check found it does not "
                          "decode, and this run did not decode it again")
        if rec.status in (Status.CORRUPT, Status.MISSING):
            self._repair(p, archive)
        if archive.dead:  # the repair found it gone
            _not_checked(rec, archive)
            return
        finding = str(rec.status)  # what the catalog keeps, even for an accepted loss
        if rec.flagged:
            # Records name paths relative to their archive; the terminal and HTML show only
            # the path, so the detail says which archive holds the problem.
            rec.detail = f"in {item.root}: {rec.detail}"
            if rec.status is Status.DAMAGED:
                _apply_acceptance(rec, item, [a for a in self.archives if not a.dead], archive,
                                  hc)
        copy = rec.copies[0]
        copy.verified = rec.status in (Status.VERIFIED, Status.RECOPIED, Status.DAMAGED,
                                       Status.ACCEPTED)
        copy.action = {Status.CORRUPT: "failed", Status.MISSING: "failed",
                       Status.RECOPIED: "copied"}.get(rec.status, "existing")
        if item.rel + ".jpg" in self.previews.get(item.root, ()):
            rec.preview = item.rel + ".jpg"
        now = self.cfg.clock()
        if not _record(archive, item, self.session, now, finding, rec.detail or None):
            _not_checked(rec, archive)
            return
        self.facts.append(Fact(item.root, item.rel, hc.digest, hc.bytes_read or item.row.size,
                                hc.mtime_ns or item.row.mtime_ns, now))
        self.checked += 1
        self.emit("file_checked", root=item.root, path=item.rel, size=item.row.size,
                  status=str(rec.status))

    def _repair(self, p: Pending, archive: Store) -> None:
        rec, item = p.rec, p.item
        # A download of a good object is kept beside the archive it restores when that is a
        # folder: on the same disk, not in a temporary folder that may be RAM and too small.
        near = None if archive.remote else os.path.join(archive.url, STATE_DIR)
        try:
            tmp = self.stack.enter_context(tempfile.TemporaryDirectory(
                prefix="ingest-repair-", dir=near if near and os.path.isdir(near) else None))
        except OSError:
            tmp = self.stack.enter_context(tempfile.TemporaryDirectory(prefix="ingest-repair-"))
        good, notes = repair.find_good_copy(item.row, item.rel, self._siblings(archive),
                                            self.cfg.io, own=archive, tmp=tmp,
                                            lookups=self.lookups)
        if good is None:
            why = "; ".join(notes) or "no other archive is known: name one on the command line"
            rec.detail += f"; no good copy found ({why})"
            return
        try:
            self._restore(p, archive, good)
        finally:
            good.discard()

    def _restore(self, p: Pending, archive: Store, good: GoodCopy) -> None:
        rec, item = p.rec, p.item
        where = good.where
        rec.detail += f"; good copy at {where}"
        if not self.cfg.repair:
            return
        # The finding goes into the history first, so the catalog shows what was repaired.
        now = self.cfg.clock()
        if not _record(archive, item, self.session, now, str(rec.status), rec.detail):
            return
        was = f"was {rec.status}: {rec.detail.split('; ')[0]}"
        row = item.row
        done = archive.put_proven(
            good.local, item.rel, row.xxh3_128, row.size, row.mtime_ns,
            replace=Replace(f"replaced by ingest verify --repair from {where} ({was})", now,
                            self.session, self.started), io=self.cfg.io)
        rec.copies[0].quarantined = done.kept
        if not done.verified:
            if not _gone(archive):  # a gone archive: _finish says so instead
                rec.detail += f", but {done.detail}"
            return
        rec.detail = f"repaired from {where} ({was})"
        if done.kept:
            # The replaced bytes may be someone's edit: say where to find them.
            rec.detail += f"; the replaced file is kept at {item.root}/{done.kept}"
        rec.status = Status.RECOPIED
        p.hc.digest, p.hc.mtime_ns = row.xxh3_128, row.mtime_ns
        p.hc.bytes_read = row.size

    def _siblings(self, archive: Store) -> list[Store]:
        """Other archives of this run first (already checked to exist), then the peers this
        archive's catalog remembers from its offloads, then this archive itself: an offload
        that found its copy damaged wrote a fresh one beside it."""
        out = [a for a in self.archives if a is not archive]
        known = {a.url for a in self.archives}
        for peer in archive.catalog.recorded_peers():
            if peer in known:
                continue
            known.add(peer)
            if peer not in self.peers:
                try:
                    self.peers[peer] = open_store(peer, endpoint=self.cfg.s3_endpoint,
                                                  clock=self.cfg.clock, background=False)
                except UsageError:
                    self.peers[peer] = None  # one this machine cannot use (an extra missing)
            if self.peers[peer] is not None:
                out.append(self.peers[peer])
        return [*out, archive]

    def _archive(self, root: str) -> Store:
        return next(a for a in self.archives if a.url == root)


class LocalChecks:
    """The check backend on this machine: each file re-read and hashed here (the disk or the
    network is the bottleneck, not the CPU), images decoded in the decode pool's worker
    processes, overlapped with the next reads."""

    def __init__(self, cfg: VerifyConfig, stores: dict[str, Store]):
        self.cfg = cfg
        self.stores = stores
        self.pool: DecodePool | None = None
        self.reads: dict[int, tuple[CheckTask, Read]] = {}
        self.tmp: str | None = None

    @property
    def versions(self) -> dict | None:
        return getattr(self.pool, "versions", None)

    def results(self, tasks: Iterable[CheckTask]) -> Iterator[CheckResult]:
        for task in tasks:
            store = self.stores[task.archive]
            if store.remote and task.decode and self.tmp is None:
                self.tmp = tempfile.mkdtemp(prefix="ingest-verify-")
            read = read_for_check(store, task.rel, task.row, task.io, keep=task.decode,
                                  tmp=self.tmp)
            if read.hash.status is Status.VERIFIED and task.decode and read.local:
                self._decode(task, read)
            else:
                read.discard()
                yield CheckResult(task.key, read.hash, None)
            yield from self._collect(block=False)
        yield from self._collect(block=True)

    def _decode(self, task: CheckTask, read: Read) -> None:
        if self.pool is None:
            # Started only when the first image needs it: a --no-decode run or a folder of
            # videos spawns no workers.
            # lazy: loky and psutil only when the first image needs decoding
            from ingest.decode.pool import DecodePool

            self.pool = DecodePool(self.cfg.jobs, timeout=self.cfg.decode_timeout)
        self.reads[task.key] = (task, read)
        self.pool.submit(task.key, check.decode_request(read.local, task.row.kind or ""))

    def _collect(self, block: bool) -> Iterator[CheckResult]:
        if self.pool is None:
            return
        for key, result in (self.pool.drain() if block else self.pool.poll()):
            task, read = self.reads.pop(key)
            read.discard()
            yield CheckResult(key, read.hash, result)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
        for _task, read in self.reads.values():
            read.discard()
        self.reads.clear()
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)


def _gone(archive: Store) -> bool:
    """After a file could not be read: is it the whole archive that went away (unmounted, a
    dead disk, a dropped share, an endpoint that stopped answering)? Then no finding about
    that file or any later one is true. A store that answers says the failure was the file's."""
    why = archive.unreachable()
    if why:
        _stopped(archive, why)
    return why is not None


def _stopped(archive: Store, why: str) -> None:
    archive.dead = archive.dead or (f"the archive stopped responding ({why}): reconnect it and "
                                    "run the same command again")


def _not_checked(rec: FileRecord, archive: Store) -> None:
    rec.status, rec.detail = Status.SKIPPED, f"not checked: {archive.dead}"
    rec.copies[0].verified = False


def _record(archive: Store, item: Item, session: str, now: datetime, finding: str,
            detail: str | None) -> bool:
    """The check goes into the archive's catalog; False when the catalog can no longer be
    written (the archive went away), which stops that archive, not the run."""
    try:
        archive.catalog.record_check(item.row.id, session, now.isoformat(), finding, detail)
        return True
    except sqlite3.Error as e:
        if not _gone(archive):
            _stopped(archive, f"its catalog can no longer be written: {e}")
        return False


def _apply_acceptance(rec: FileRecord, item: Item, archives: list[Store],
                      archive: Store, hc: HashCheck) -> None:
    """A `damaged` copy (it hashes as at ingest, but does not decode) of a file the
    photographer accepted as lost (`ingest accept`) is `accepted`, by the rule every command
    shares, while its content is what was accepted. A corrupt or missing copy never is: those
    are new losses of what was left, for `--repair`."""
    row = item.row
    # The latest event across this run's archives, as status weighs it: an undo in one
    # catalog takes back the acceptance in all.
    acceptance = newest(_acceptance_in(a, row) for a in archives) if row.source_path else None
    if acceptance is None or acceptance.digest != row.xxh3_128:
        return  # none, taken back, or about other content (another card's file of that name)
    copy = CopyEvidence(item.root, item.rel, archive.device, proven=True)
    verdict = judge(FileEvidence(item.rel, hc.digest, [copy], [(str(rec.status), rec.detail)],
                                 acceptance), card_device=None, min_copies=1)
    if verdict.accepted:
        rec.status, rec.detail = Status.ACCEPTED, "; ".join(verdict.reasons)
        rec.acceptance = acceptance.to_json()


def _acceptance_in(archive: Store, row):
    try:
        return archive.catalog.acceptance(row.source_path, row.size, row.mtime_ns)
    except sqlite3.Error:  # that archive went away: its events are not seen this run
        if not _gone(archive):
            _stopped(archive, "its catalog can no longer be read")
        return None


def _skipped(item: Item, note: str) -> FileRecord:
    rec = check.new_record(item.root, item.rel, item.row)
    rec.detail = note
    return rec


def _untracked(store: Store, rels: list[str]) -> list[FileRecord]:
    out = []
    root = store.url
    for rel in rels:
        path = store.local_path(rel)
        try:
            if path is None:  # an object: its size is all the store says
                size, mtime_ns = store.size(rel), 0
                if size is None:
                    continue
            else:
                st = os.lstat(path)
                size, mtime_ns = st.st_size, st.st_mtime_ns
        except OSError:
            continue  # gone since the walk
        out.append(FileRecord(path=rel, kind=classify(rel.rpartition("/")[2]),
                              size=size, mtime_ns=mtime_ns,
                              status=Status.UNTRACKED, detail=f"in {root} but not in its catalog",
                              copies=[Copy(root, rel, False, "existing")]))
    return out


def _add_mhl_generations(archives: list[Store], facts: list[Fact], now) -> None:
    """One in-place generation per archive. Only paths an earlier generation recorded get an
    entry: ascmhl takes `verified`/`failed` on an unknown path for a new file. The action is
    judged against the history's own xxh128, as `ascmhl verify` would judge it."""
    for a in archives:
        if a.dead or not any(f.root == a.url for f in facts):
            continue
        try:
            # A folder's history is written in place; an object store's is fetched, extended
            # and its new and changed files written back.
            with a.folder(MHL_FOLDER) as root:
                history = read_history(Path(root))
                entries = []
                for f in facts:
                    reference = dict(history.get(f.rel, [])).get("xxh128")
                    if f.root != a.url or f.digest is None or reference is None \
                            or not representable(f.rel):
                        continue
                    action = "verified" if f.digest.lower() == reference.lower() else "failed"
                    entries.append(MhlEntry(f.rel, f.size, f.mtime_ns, f.digest, action, f.at))
                if entries:
                    add_generation(Path(root), entries, process="in-place",
                                   tool_version=__version__, now=now)
        except OSError as e:
            a.dead = f"could not write the ASC MHL history: {e.strerror or e}"


def _budget_note(max_bytes: int | None) -> str:
    return f"not due in this run: the byte budget of {_bytes(max_bytes or 0)} is used up"


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _duration(seconds: float) -> str:
    if seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"
