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
import sqlite3
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ingest import __version__
from ingest.catalog import CATALOG_NAME, STATE_DIR, Catalog
from ingest.copier import Destination
from ingest.fsio import unreachable
from ingest.kinds import classify
from ingest.lock import DestinationLock
from ingest.model import FLAGGED_VERIFY, Copy, FileRecord, Status
from ingest.pipeline import PREVIEW_DIR, build_report, write_reports
from ingest.power import battery_stop_reason, lower_priority
from ingest.preflight import UsageError, check_catalogued
from ingest.safety import CopyEvidence, FileEvidence, judge, newest
from ingest.verify import VerifyConfig, check, repair
from ingest.verify.check import HashCheck
from ingest.verify.plan import Item, build_plan

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


def verify(cfg: VerifyConfig) -> VerifyResult:
    if any("://" in a for a in cfg.archives):
        from ingest.remote.stage import verify_remote

        if len(cfg.archives) != 1:
            raise UsageError("verify a remote archive (s3://...) in a command of its own")
        return verify_remote(cfg.archives[0], cfg)
    if cfg.backend == "dask" or cfg.scheduler:
        from ingest.verify.dask_backend import require_cluster

        require_cluster()  # before any lock or catalog is touched
    roots = check_archives(cfg.archives)
    priority = lower_priority() if cfg.low_priority else []
    started = cfg.clock()
    session = started.strftime("%Y%m%dT%H%M%SZ-") + secrets.token_hex(3)
    emit = cfg.progress or (lambda *a, **k: None)

    with ExitStack() as stack:
        for root in roots:
            stack.enter_context(DestinationLock(root, "ingest verify"))
        archives = [_open(stack, root, session, started) for root in roots]
        plan = build_plan([(a.root, a.catalog) for a in archives], cfg.subset, cfg.max_bytes)
        emit("planned", files=len(plan.due),
             bytes=sum(i.row.size for i in plan.due if i.present))
        run = _Run(cfg, archives, session, started, emit, stack)
        run.check_all(plan.due)
        records = run.records
        records += [_skipped(i, _budget_note(cfg.max_bytes)) for i in plan.over_budget]
        records += [_skipped(i, f"not checked: {run.stop_reason}") for i in run.not_started]
        records += [r for a in archives for r in _untracked(a.root, plan.untracked[a.root])]
        finished = cfg.clock()
        for a in archives:
            if a.dead:
                continue
            try:
                # FULL for the last commit: its fsync makes every check record of the run
                # durable (at NORMAL a power cut could lose the run's WAL, not only the last few).
                a.catalog.db.execute("PRAGMA synchronous=FULL")
                a.catalog.finish_session(session, finished.isoformat())
            except sqlite3.Error as e:
                _stopped(a, f"its catalog can no longer be written ({e})")
        if cfg.destination_reports:
            _add_mhl_generations(archives, run.facts, finished)

    report = build_report("verify", None, archives, records, None, started, finished, cfg,
                          decoders=getattr(run.pool, "versions", None))
    report["verify"] = verify_facts(
        cfg, run, (finished - started).total_seconds(),
        outside_subset=sum(plan.outside_subset.values()), over_budget=len(plan.over_budget),
        repaired=sum(a.files for a in archives), repair=cfg.repair, low_priority=priority,
        backend="dask" if cfg.backend == "dask" or cfg.scheduler else "local",
        scheduler=cfg.scheduler)
    write_reports(report, [a.root for a in archives if not a.dead], cfg)
    return VerifyResult(report, records, roots)


def verify_facts(cfg: VerifyConfig, run, seconds: float, *, outside_subset: int,
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


def _open(stack: ExitStack, root: str, session: str, started: datetime) -> Destination:
    try:
        catalog = stack.enter_context(Catalog(root))
        # Check records are committed one file at a time. In WAL mode NORMAL keeps every commit
        # through a killed process; a power cut before the run's last commit (made FULL, so
        # synced) can lose the records since the last checkpoint, which merely get checked
        # again. FULL's fsync per commit would halve the speed on small files.
        if catalog.wal:  # a rollback journal (a share where WAL cannot work) stays FULL
            catalog.db.execute("PRAGMA synchronous=NORMAL")
        check.ensure_schema(catalog.db)
        repair.ensure_schema(catalog.db)
        catalog.start_session(session, "verify", None, None, started.isoformat(), __version__)
    except sqlite3.DatabaseError as e:
        raise UsageError(f"the catalog of {root} cannot be read ({e}): restore "
                         f"{STATE_DIR}/{CATALOG_NAME} from a backup") from None
    # `files`/`bytes` count what this run wrote there: the repairs.
    return Destination(root, catalog, token=session, device=os.stat(root).st_dev)


@dataclass(slots=True)
class _Fact:
    """What an MHL generation needs about one checked file."""

    root: str
    rel: str
    digest: str | None
    size: int
    mtime_ns: int
    at: datetime


@dataclass(slots=True)
class _Pending:
    rec: FileRecord
    item: Item
    hc: HashCheck


@dataclass(slots=True)
class _Run:
    cfg: VerifyConfig
    archives: list[Destination]
    session: str
    started: datetime
    emit: Callable[..., None]
    stack: ExitStack
    records: list[FileRecord] = field(default_factory=list)
    not_started: list[Item] = field(default_factory=list)
    facts: list[_Fact] = field(default_factory=list)
    pending: dict[int, _Pending] = field(default_factory=dict)
    pool: DecodePool | None = None
    stop_reason: str | None = None
    checked: int = 0
    bytes_read: int = 0

    def check_all(self, due: list[Item]) -> None:
        if self.cfg.backend == "dask" or self.cfg.scheduler:
            self._check_on_dask(due)
            return
        for i, item in enumerate(due):
            if self.stop_before(due, i):
                break
            self._check_one(item)
            self._collect(block=False)
        self._collect(block=True)

    def _check_on_dask(self, due: list[Item]) -> None:
        """Hook-up of `DaskBackend` until the run drives any `CheckBackend`: results applied
        as `_check_one`/`_collect` apply them; on a lost cluster, what it did not answer is
        not checked (skipped with the reason, first in the next run)."""
        from ingest.verify.dask_backend import DaskBackend
        from ingest.verify.tasks import BackendLost, CheckTask

        sent: dict[int, tuple[FileRecord, Item]] = {}

        def tasks():
            for i, item in enumerate(due):
                if self.stop_before(due, i):  # asked only when the backend has room
                    return
                rec = check.new_record(item.root, item.rel, item.row)
                self.records.append(rec)  # in send order; filled in when it comes back
                sent[i] = (rec, item)
                self.emit("file_start", root=item.root, path=item.rel, size=item.row.size)
                yield CheckTask(i, item.root, item.rel, item.row,
                                self.cfg.decode and check.wants_decode(item.row), self.cfg.io)

        with DaskBackend(self.cfg) as backend:
            try:
                for res in backend.results(tasks()):
                    rec, item = sent.pop(res.key)
                    hc = res.hash
                    self.bytes_read += hc.bytes_read
                    rec.status, rec.detail = hc.status, hc.detail
                    rec.seconds = round(hc.seconds, 6)
                    if res.decode is not None:
                        check.apply_decode(rec, res.decode)
                    self._finish(_Pending(rec, item, hc))
            except BackendLost as e:
                lost = {id(rec) for rec, _ in sent.values()}
                self.records[:] = [r for r in self.records if id(r) not in lost]
                self.not_started = [item for _, item in sent.values()] + self.not_started
                self.stop_reason = str(e)
                self.emit("stopped", reason=str(e), remaining=len(self.not_started))

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

    # one file -----------------------------------------------------------------------------
    def _check_one(self, item: Item) -> None:
        rec = check.new_record(item.root, item.rel, item.row)
        self.records.append(rec)  # in check order; filled in when the file is done
        archive = self._archive(item.root)
        if archive.dead:
            _not_checked(rec, archive)
            return
        abs_path = os.path.join(item.root, item.rel)
        self.emit("file_start", root=item.root, path=item.rel, size=item.row.size)
        hc = check.hash_check(abs_path, item.row, self.cfg.io)
        self.bytes_read += hc.bytes_read
        rec.status, rec.detail, rec.seconds = hc.status, hc.detail, round(hc.seconds, 6)
        if hc.status is Status.VERIFIED and self.cfg.decode and check.wants_decode(item.row):
            self._submit(_Pending(rec, item, hc), abs_path)
        else:
            self._finish(_Pending(rec, item, hc))

    def _submit(self, p: _Pending, abs_path: str) -> None:
        if self.pool is None:
            # Started only when the first image needs it: a --no-decode run or a folder of
            # videos spawns no workers.
            from ingest.decode.pool import DecodePool

            self.pool = self.stack.enter_context(
                DecodePool(self.cfg.jobs, timeout=self.cfg.decode_timeout))
        key = id(p.rec)
        self.pending[key] = p
        self.pool.submit(key, check.decode_request(abs_path, p.item.row.kind or ""))

    def _collect(self, block: bool) -> None:
        if self.pool is None:
            return
        for key, result in (self.pool.drain() if block else self.pool.poll()):
            p = self.pending.pop(key)
            check.apply_decode(p.rec, result)
            self._finish(p)

    def _finish(self, p: _Pending) -> None:
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
        preview = os.path.join(item.root, STATE_DIR, PREVIEW_DIR, item.rel + ".jpg")
        if os.path.isfile(preview):
            rec.preview = item.rel + ".jpg"
        now = self.cfg.clock()
        if not _record(archive, item, self.session, now, finding, rec.detail or None):
            _not_checked(rec, archive)
            return
        self.facts.append(_Fact(item.root, item.rel, hc.digest, hc.bytes_read or item.row.size,
                                hc.mtime_ns or item.row.mtime_ns, now))
        self.checked += 1
        self.emit("file_checked", root=item.root, path=item.rel, size=item.row.size,
                  status=str(rec.status))

    def _repair(self, p: _Pending, archive: Destination) -> None:
        rec, item = p.rec, p.item
        good, notes = repair.find_good_copy(item.row, item.rel, self._siblings(item.root),
                                            self.cfg.io, own=item.root)
        if good is None:
            why = "; ".join(notes) or "no other archive is known: name one on the command line"
            rec.detail += f"; no good copy found ({why})"
            return
        where = f"{good.root}/{good.rel}"
        rec.detail += f"; good copy at {where}"
        if not self.cfg.repair:
            return
        # The finding goes into the history first, so the catalog shows what was repaired.
        now = self.cfg.clock()
        if not _record(archive, item, self.session, now, str(rec.status), rec.detail):
            return
        was = f"was {rec.status}: {rec.detail.split('; ')[0]}"
        done = repair.restore(good, item.root, item.rel, item.row, self.session, self.cfg.io,
                              reason=f"replaced by ingest verify --repair from {where} ({was})",
                              at=now, started=self.started)
        rec.copies[0].quarantined = done.quarantined
        if done.error:
            if not _gone(archive):  # a gone archive: _finish says so instead
                rec.detail += f", but {done.error}"
            return
        rec.detail = f"repaired from {where} ({was})"
        if done.quarantined:
            # The replaced bytes may be someone's edit: say where to find them.
            rec.detail += f"; the replaced file is kept at {item.root}/{done.quarantined}"
        rec.status = Status.RECOPIED
        p.hc.digest, p.hc.mtime_ns = item.row.xxh3_128, item.row.mtime_ns
        p.hc.bytes_read = item.row.size
        archive.files += 1
        archive.bytes += item.row.size

    def _siblings(self, root: str) -> list[str]:
        """Other archives of this run first (already checked to exist), then the peers this
        archive's catalog remembers from its offloads, then this archive itself: an offload
        that found its copy damaged wrote a fresh one beside it."""
        out = [a.root for a in self.archives if a.root != root]
        for peer in repair.recorded_peers(self._archive(root).catalog):
            if peer != root and peer not in out:
                out.append(peer)
        return [*out, root]

    def _archive(self, root: str) -> Destination:
        return next(a for a in self.archives if a.root == root)


def _gone(archive: Destination) -> bool:
    """After a file could not be read: is it the whole archive that went away (unmounted, a
    dead disk, a dropped share)? Then no finding about that file or any later one is true.
    An object store (s3://) answers per object: a missing object is a finding there."""
    if "://" in archive.root:
        return False
    why = unreachable(archive.root, archive.device)
    if why:
        _stopped(archive, why)
    return why is not None


def _stopped(archive: Destination, why: str) -> None:
    archive.dead = archive.dead or (f"the archive stopped responding ({why}): reconnect it and "
                                    "run the same command again")


def _not_checked(rec: FileRecord, archive: Destination) -> None:
    rec.status, rec.detail = Status.SKIPPED, f"not checked: {archive.dead}"
    rec.copies[0].verified = False


def _record(archive: Destination, item: Item, session: str, now: datetime, finding: str,
            detail: str | None) -> bool:
    """The check goes into the archive's catalog; False when the catalog can no longer be
    written (the archive went away), which stops that archive, not the run."""
    try:
        check.record_check(archive.catalog, item.row.id, session, now.isoformat(), finding,
                           detail)
        return True
    except sqlite3.Error as e:
        if not _gone(archive):
            _stopped(archive, f"its catalog can no longer be written: {e}")
        return False


def _apply_acceptance(rec: FileRecord, item: Item, archives: list[Destination],
                      archive: Destination, hc: HashCheck) -> None:
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


def _acceptance_in(archive: Destination, row):
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


def _untracked(root: str, rels: list[str]) -> list[FileRecord]:
    out = []
    for rel in rels:
        try:
            st = os.lstat(os.path.join(root, rel))
        except OSError:
            continue  # gone since the walk
        out.append(FileRecord(path=rel, kind=classify(rel.rpartition("/")[2]),
                              size=st.st_size, mtime_ns=st.st_mtime_ns,
                              status=Status.UNTRACKED, detail=f"in {root} but not in its catalog",
                              copies=[Copy(root, rel, False, "existing")]))
    return out


def _add_mhl_generations(archives: list[Destination], facts: list[_Fact], now) -> None:
    """One in-place generation per archive. Only paths an earlier generation recorded get an
    entry: ascmhl takes `verified`/`failed` on an unknown path for a new file. The action is
    judged against the history's own xxh128, as `ascmhl verify` would judge it."""
    from ingest.mhl import MhlEntry, add_generation, read_history, representable

    for a in archives:
        if a.dead:
            continue
        history = read_history(Path(a.root))
        entries = []
        for f in facts:
            reference = dict(history.get(f.rel, [])).get("xxh128")
            if f.root != a.root or f.digest is None or reference is None \
                    or not representable(f.rel):
                continue
            action = "verified" if f.digest.lower() == reference.lower() else "failed"
            entries.append(MhlEntry(f.rel, f.size, f.mtime_ns, f.digest, action, f.at))
        if not entries:
            continue
        try:
            add_generation(Path(a.root), entries, process="in-place", tool_version=__version__,
                           now=now)
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
