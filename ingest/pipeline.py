"""The offload run: the only module that knows the order of the stages.

discover -> copy+verify each file (main thread, one card read per file) -> decode check and
preview in worker processes, overlapped with the copying of later files -> final status ->
catalog status -> reports. Every per-file problem ends as a status on its record.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from ingest import __version__, fsio
from ingest.catalog import GOOD, STATE_DIR
from ingest.config import OffloadConfig
from ingest.copier import CopyJob, CopyOutcome, Destination
from ingest.discover import Discovery, discover, stem_of
from ingest.kinds import IMAGE_KINDS
from ingest.lock import DestinationLock
from ingest.mhl import FOLDER as MHL_FOLDER
from ingest.mhl import MhlEntry, add_generation, read_history, representable
from ingest.model import CARD_STOPPED, Copy, FileRecord, Kind, SourceFile, Status
from ingest.preflight import UsageError, check_destinations, check_source, remove_stale_probes
from ingest.rebuild import open_or_rebuild
from ingest.report.build import PREVIEW_DIR, build_report, write_reports
from ingest.safety import (
    CHANGED_SINCE_ACCEPTED,
    CardVerdict,
    CopyEvidence,
    DeviceNames,
    FileEvidence,
    card_fingerprint,
    card_verdict,
    device_or_none,
    judge,
    newest,
    shared_device_warnings,
    store_device_id,
)
from ingest.store import open_store
from ingest.store.urls import split_destinations
from ingest.volume import volume_identity


@dataclass(slots=True)
class RunResult:
    report: dict
    records: list[FileRecord]
    discovery: Discovery
    destinations: list[Destination] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        held = any(s.holds_back for s in self.discovery.skipped)
        # A destination that stopped mid-run is a problem to act on even when every file
        # reached enough others.
        stopped = any(d.dead for d in self.destinations)
        return 1 if held or stopped or any(r.flagged for r in self.records) else 0


def offload(cfg: OffloadConfig) -> RunResult:
    source = check_source(cfg.source)
    local, remote_urls = split_destinations(cfg.destinations)
    roots = check_destinations(source, local)
    started = cfg.clock()
    session = started.strftime("%Y%m%dT%H%M%SZ-") + secrets.token_hex(3)
    volume = volume_identity(source)
    emit = cfg.progress or (lambda *a, **k: None)
    if cfg.min_copies < 1:
        raise UsageError("--min-copies must be at least 1")

    with ExitStack() as stack:
        for root in roots:
            stack.enter_context(DestinationLock(root, f"ingest offload {source}"))
            remove_stale_probes(root)
        dests = []
        rebuilds = []
        for root in roots:
            # A corrupt or deleted catalog is rebuilt from the files and the ASC MHL history
            # (the old file is kept aside), and the rebuild goes into the report.
            cat, rebuilt = open_or_rebuild(root, cfg.clock)
            stack.enter_context(cat)  # its close never raises: a dead disk keeps the report
            if rebuilt:
                rebuilds.append(rebuilt.to_json())
            cat.start_session(session, "offload", source, volume, started.isoformat(), __version__)
            dests.append(Destination(root, cat, token=session, started=started,
                                     device=os.stat(root).st_dev))
        for d in dests:  # so a later `ingest verify --repair` knows where the siblings are
            d.catalog.record_peers(roots + remote_urls, session, started.isoformat())
        remotes = [_open_remote(url, cfg, session, source, volume, stack)
                   for url in remote_urls]
        for remote in remotes:
            remote.remember_peers(roots + remote_urls, started.isoformat())
        devices = _Devices.look(cfg, source, roots, remotes)
        for warning in devices.warnings:  # before the first copy, while it can be changed
            emit("warning", text=warning)

        found = discover(source)
        pool = _start_decoder(cfg, found, stack)
        emit("discovered", files=len(found.files), bytes=sum(f.size for f in found.files))
        records: list[FileRecord] = []
        run = _Run(cfg, dests, session, volume, emit, remotes, pool)
        watch = CardWatch(source)
        if found.histories:
            run.history = read_history(Path(source))
        with pool or nullcontext(), ThreadPoolExecutor(VERIFIER_THREADS, "read-back") as verifier, \
                ThreadPoolExecutor(1, "prefetch") as prefetcher:
            window: deque[tuple[SourceFile, CopyJob]] = deque()
            ahead = _Prefetch(found.files, cfg.io, prefetcher)
            for i, src in enumerate(found.files):
                if watch.gone:
                    _drain(window, run, records, watch)
                    records.append(watch.not_read(src))
                    continue
                ahead.before(i)
                if src.kind is Kind.SIDECAR:
                    _drain(window, run, records, watch)  # it follows its image's final name
                window.append((src, run.start_copy(src, verifier)))
                while window and (window[0][1].ready() or _too_much(window)):
                    records.append(watch.saw(run.finish_copy(*window.popleft())))
                run.collect(block=False)
            _drain(window, run, records, watch)
            ahead.cancel()
            for d in dests:
                d.flush()  # a destination whose catalog fails here is marked dead
            run.collect(block=True)
        _drop_unrecorded(records, dests)
        for rec, remote, upload in run.uploads:
            remote.record(rec, upload.result() if upload else None)
        run.finish(records)
        for remote in remotes:
            remote.finish(records)
        # After the catalogs took each file's own finding, so an acceptance taken back
        # later leaves the finding there to see.
        card = _judge(records, dests, devices, cfg, found)

        finished = cfg.clock()
        for d in dests:
            if not d.dead:
                try:
                    d.catalog.finish_session(session, finished.isoformat())
                except sqlite3.Error as e:
                    d.dead = f"its catalog can no longer be written ({e}): run again"
        if cfg.destination_reports:
            _add_mhl_generations(dests, records, finished)
            for remote in remotes:
                _fill_object_store(remote, records, finished)
    report = build_report("offload", source, dests + remotes, records, found, started,
                          finished, cfg, decoders=getattr(run.pool, "versions", None),
                          card=card)
    report["min_copies"] = cfg.min_copies
    report["source_device"] = devices.names.label(devices.card)
    for entry in report["destinations"]:
        dev = devices.of.get(entry["root"])
        entry["device_name"] = devices.names.label(dev) if dev is not None else None
        entry["on_card_device"] = dev is not None and dev == devices.card
    report["warnings"] = devices.warnings
    if watch.gone:
        report["source_error"] = watch.to_json(records)
    if rebuilds:
        report["rebuilds"] = rebuilds
    write_reports(report, [d.root for d in dests if not d.dead], cfg,
                  stores=[r for r in remotes if not r.dead])
    return RunResult(report, records, found, dests)


def _nonempty(path: str) -> bool:
    """An empty preview is what a power cut left of one written before previews were fsynced."""
    try:
        return os.path.isfile(path) and os.path.getsize(path) > 0
    except OSError:
        return False


class CardWatch:
    """Tells a card that stopped responding (pulled out, a dying reader, a FUSE or network
    mount gone) from one unreadable file. After each unreadable file the card's root is asked
    again; once it fails, the files not yet read are not tried (each would fail the same way,
    after its retries) and the run ends with one line saying so."""

    def __init__(self, source: str):
        self.source = source
        self.device = os.stat(source).st_dev
        self.gone: str | None = None  # why, once the card stopped responding
        self.streak: list[FileRecord] = []  # unreadable files since the last one that was read

    def saw(self, rec: FileRecord) -> FileRecord:
        if rec.status is not Status.UNREADABLE:
            self.streak = []
            return rec
        self.streak.append(rec)
        self.gone = self.gone or fsio.unreachable(self.source, self.device)
        if self.gone:  # those failed because the card went: one cause, said once
            for r in self.streak:
                r.detail = f"{CARD_STOPPED} ({self.gone}); first tried: {r.detail}"
            self.streak = []
        return rec

    def not_read(self, src: SourceFile) -> FileRecord:
        return FileRecord(path=src.rel, kind=src.kind, size=src.size, mtime_ns=src.mtime_ns,
                          status=Status.UNREADABLE, detail=f"{CARD_STOPPED} ({self.gone})")

    def to_json(self, records: list[FileRecord]) -> dict:
        stopped = [r for r in records if r.status is Status.UNREADABLE
                   and r.detail.startswith(CARD_STOPPED)]
        done = sum(r.status in GOOD for r in records)
        return {"error": self.gone, "files_done": done, "files_not_read": len(stopped),
                "message": (f"The card stopped responding ({self.gone}) after {done} of "
                            f"{len(records)} files. Those {done} are copied and verified; "
                            "re-insert the card and run the same command again to copy the "
                            f"other {len(stopped)}.")}


@dataclass(slots=True)
class _Devices:
    """Which device the card and each destination are on, for the safe-to-format rule."""

    card: int | None
    of: dict[str, int | None]  # destination root -> device
    names: DeviceNames
    warnings: list[str]

    @classmethod
    def look(cls, cfg: OffloadConfig, source: str, roots: list[str], remotes: list) -> _Devices:
        names = DeviceNames()
        card = device_or_none(cfg.device_of, source)
        of = {root: device_or_none(cfg.device_of, root) for root in roots}
        for remote in remotes:
            of[remote.root] = store_device_id(remote.device)
            names.extra[of[remote.root]] = remote.device
        return cls(card, of, names, shared_device_warnings(
            card, list(of.items()), cfg.min_copies, names))


def _judge(records: list[FileRecord], dests: list[Destination], devices: _Devices,
           cfg: OffloadConfig, found: Discovery) -> CardVerdict:
    """Each file's verdict by `ingest.safety`'s rule, from what this run proved. A flagged file
    the photographer accepted as lost (`ingest accept`), unchanged since, becomes `accepted`."""
    verdicts = []
    stopped = {d.root for d in dests if d.dead}
    for rec in records:
        # A catalog that died with its disk stops that destination; no acceptance counts from it.
        acceptance = newest([d.lookup(d.catalog.acceptance, rec.path, rec.size, rec.mtime_ns)
                             for d in dests if not d.dead])
        # A destination that died during the run may be a disk that is failing: the copies
        # it took before are not counted towards safe to format until a run sees it again.
        ev = FileEvidence(rec.path, rec.xxh3_128, [
            CopyEvidence(c.destination, c.path, devices.of.get(c.destination),
                         c.verified and c.destination not in stopped)
            for c in rec.copies], [(str(rec.status), rec.detail)] if rec.flagged else [],
            acceptance, card_fingerprint(found.files, rec.mtime_ns) if acceptance else None)
        verdict = judge(ev, card_device=devices.card, min_copies=cfg.min_copies,
                        names=devices.names)
        if verdict.accepted and rec.flagged:
            rec.detail = f"{acceptance.describe()}; this run found: {rec.status}: {rec.detail}"
            rec.status = Status.ACCEPTED
            rec.acceptance = acceptance.to_json()
        elif not verdict.safe and (verdict.stale or verdict.key == CHANGED_SINCE_ACCEPTED):
            why = verdict.stale or verdict.reasons[0]
            rec.detail = f"{rec.detail}; {why}" if rec.detail else why
        verdicts.append(verdict)
    return card_verdict(verdicts, held_back=sum(s.holds_back for s in found.skipped))


def _drop_unrecorded(records: list[FileRecord], dests: list[Destination]) -> None:
    """Copies whose folder fsync or catalog row failed (the destination died between rename
    and record) are not proven durable: they stop counting, and their files need a re-run."""
    lost = {(d.root, p): d.dead for d in dests for p in d.unrecorded}
    for rec in records:
        why = [lost[(c.destination, c.path)] for c in rec.copies
               if (c.destination, c.path) in lost]
        if not why:
            continue
        for c in rec.copies:
            if (c.destination, c.path) in lost:
                c.verified, c.action = False, "failed"
        if not rec.flagged:
            rec.status = Status.NEEDS_RECOPY
            rec.detail = "; ".join(why)


def _start_decoder(cfg: OffloadConfig, found: Discovery, stack: ExitStack):
    """The decode workers, started before the first file is copied, so that their start
    (a fresh interpreter importing the decoders) overlaps the first copies. A card with
    nothing to decode starts none."""
    if not cfg.decode or not any(f.kind in IMAGE_KINDS for f in found.files):
        return None
    from ingest.decode.pool import DecodePool  # lazy: loky and psutil only for a card with images

    # Only `jobs` decodes run at once (memory stays bounded in the workers); the waiting
    # requests are a few paths each, so copying never waits for decoding.
    pool = DecodePool(cfg.jobs, timeout=cfg.decode_timeout, max_in_flight=1_000_000)
    stack.callback(pool.close)  # also when opening a catalog fails
    return pool.start()


def _open_remote(url: str, cfg: OffloadConfig, session: str, source: str, volume, stack):
    """An object-store destination, filled from each file's verified local copy."""
    remote = open_store(url, endpoint=cfg.s3_endpoint, clock=cfg.clock)
    remote.open(session, command="offload", source=source, volume=volume)
    stack.callback(remote.close)
    return remote


def _fill_object_store(remote, records: list[FileRecord], finished) -> None:
    """What a folder destination gets beside its copies, an object store gets here: the
    previews of the files uploaded in this run (from a local copy's previews folder, a few
    at a time: on a remote store latency bounds each one) and one ASC MHL generation. A
    failure here costs neither the copies nor the run: it is the destination's error in the
    report."""
    previews: list[tuple[str, str]] = []  # (local preview, name in the store)
    for rec in records:
        up = next((c for c in rec.copies if c.destination == remote.url and c.verified
                   and c.action == "copied"), None)
        if up is None or not rec.preview:
            continue
        local = (os.path.join(c.destination, STATE_DIR, PREVIEW_DIR, rec.preview)
                 for c in rec.copies if c.verified and c.destination != remote.url)
        path = next((p for p in local if _nonempty(p)), None)
        if path:
            previews.append((path, f"{STATE_DIR}/{PREVIEW_DIR}/{up.path}.jpg"))

    def upload(item: tuple[str, str]) -> None:
        with open(item[0], "rb") as f:
            remote.write_small(item[1], f.read())

    try:
        with ThreadPoolExecutor(PREVIEW_UPLOADS, "preview-upload") as pool:
            list(pool.map(upload, previews))
        if not any(c.destination == remote.url and c.verified
                   for r in records for c in r.copies):
            return  # nothing went there: no need to fetch its history
        with remote.folder(MHL_FOLDER) as root:
            _transfer_generation(Path(root), remote.url, records, finished)
    except (OSError, ValueError) as e:
        remote.dead = remote.dead or f"could not write previews or the ASC MHL history: {e}"


class _Run:
    """Per-run state the stages share: destinations, sidecar placement, in-flight decodes."""

    def __init__(self, cfg: OffloadConfig, dests: list[Destination], session: str,
                 volume: str | None, emit, remotes: list | None = None, pool=None):
        self.cfg = cfg
        self.dests = dests
        self.session = session
        self.volume = volume
        self.emit = emit
        self.stems: dict[tuple[str, str], str] = {}  # (card folder, stem) -> dest rel stem path
        self.pool = pool  # a DecodePool when the run decodes
        self.pending: dict[int, tuple[FileRecord, SourceFile]] = {}
        self.previews: dict[int, str] = {}
        self.history: dict[str, list[tuple[str, str]]] = {}  # the card's ASC MHL hashes
        self.remotes = remotes or []
        self.uploads: list[tuple] = []  # (record, remote destination, upload future)

    # copy ---------------------------------------------------------------------------------
    def _history_format(self, src: SourceFile) -> str | None:
        recorded = dict(self.history.get(src.rel, []))
        return "xxh128" if "xxh128" in recorded else next(iter(recorded), None)

    def start_copy(self, src: SourceFile, verifier) -> CopyJob:
        self.emit("file_start", path=src.rel, size=src.size)
        fmt = self._history_format(src)
        job = CopyJob(src, self.dests, self.cfg, self.session, self.volume,
                      place=lambda info: self._place(src, info), verifier=verifier,
                      extra_formats=(fmt,) if fmt and fmt != "xxh128" else (),
                      decode_next=self.cfg.decode and src.kind in IMAGE_KINDS)
        job.start()
        return job

    def finish_copy(self, src: SourceFile, job: CopyJob) -> FileRecord:
        rec = FileRecord(path=src.rel, kind=src.kind, size=src.size, mtime_ns=src.mtime_ns)
        out = job.finish()
        _apply_copy(rec, src, out)
        if not (self.cfg.decode and src.kind in IMAGE_KINDS):
            _carry_findings(rec, out)
        fmt = self._history_format(src)
        if fmt and out.digest:
            _check_history(rec, fmt, dict(self.history[src.rel])[fmt], out)
        self._follow_final_name(src, rec)
        for remote in self.remotes:  # off-site copies upload while later files are copied
            self.uploads.append((rec, remote, remote.start_record(rec)))
        self.emit("file_copied", path=src.rel, size=src.size, status=str(rec.status))
        if any(c.verified for c in rec.copies) and src.kind in IMAGE_KINDS and \
                self.cfg.decode and rec.status is not Status.DUPLICATE:
            self._submit(rec, src)
        elif rec.status is Status.DUPLICATE and src.kind in IMAGE_KINDS:
            rel = rec.copies[0].path + ".jpg"  # the preview an earlier run made, if any
            if _nonempty(os.path.join(rec.copies[0].destination, STATE_DIR, PREVIEW_DIR, rel)):
                rec.preview = rel
        elif src.kind not in IMAGE_KINDS and rec.xxh3_128:
            rec.decode = {"decoder": None, "ok": None, "error": None, "checks": [],
                          "seconds": 0.0, "verdict": "not_decoded",
                          "note": f"{src.kind}: verified by hash only; there is no decoder for it"}
        return rec

    def _place(self, src: SourceFile, info) -> str:
        folder, _, name = src.rel.rpartition("/")
        key = (folder, stem_of(name))
        if src.kind is Kind.SIDECAR and key in self.stems:
            # A sidecar follows its image: same destination folder, same (possibly suffixed) stem.
            ext = name[len(stem_of(name)):]
            return self.stems[key] + ext
        rel = self.cfg.layout.path_for(src.rel, str(src.kind), info)
        if src.kind is not Kind.SIDECAR and key not in self.stems:
            head, _, fname = rel.rpartition("/")
            self.stems[key] = (f"{head}/" if head else "") + stem_of(fname)
        return rel

    def _follow_final_name(self, src: SourceFile, rec: FileRecord) -> None:
        """If the image had to take a suffixed name, its sidecars take the same one."""
        if src.kind is Kind.SIDECAR or not rec.copies or not rec.copies[0].verified:
            return
        folder, _, name = src.rel.rpartition("/")
        key = (folder, stem_of(name))
        head, _, fname = rec.copies[0].path.rpartition("/")
        if fname.rpartition(".")[0] != stem_of(name) or key not in self.stems:
            self.stems[key] = (f"{head}/" if head else "") + fname.rpartition(".")[0]

    # decode -------------------------------------------------------------------------------
    def _submit(self, rec: FileRecord, src: SourceFile) -> None:
        first = next(c for c in rec.copies if c.verified)
        req = {"path": os.path.join(first.destination, first.path), "kind": str(src.kind),
               "card_path": src.abspath, "capture_time": rec.capture_time, "preview": None,
               "alternates": [os.path.join(c.destination, c.path) for c in rec.copies
                              if c.verified and c is not first]}
        if self.cfg.previews:
            rel = first.path + ".jpg"
            req["preview"] = {
                "out": [os.path.join(c.destination, STATE_DIR, PREVIEW_DIR, rel)
                        for c in rec.copies if c.verified],
                "size": self.cfg.preview_size, "quality": 85}
            self.previews[id(rec)] = rel
        self.pending[id(rec)] = (rec, src)
        self.pool.submit(id(rec), req)

    def collect(self, block: bool) -> None:
        if self.pool is None:
            return
        for key, result in (self.pool.drain() if block else self.pool.poll()):
            rec, src = self.pending.pop(key)
            _apply_decode(rec, result)
            if result.get("preview") and result["preview"].get("written"):
                rec.preview = self.previews.get(key)
            self.emit("file_decoded", path=rec.path, status=str(rec.status))

    # finish -------------------------------------------------------------------------------
    def finish(self, records: list[FileRecord]) -> None:
        """Write each copy's final status to its catalog, so a re-run knows what is done."""
        now = self.cfg.clock().isoformat()
        for d in self.dests:
            items = [(c.path, str(r.status), r.detail or None) for r in records
                     for c in r.copies if c.destination == d.root and c.verified
                     and r.status is not Status.DUPLICATE]
            if items and not d.dead:
                try:
                    d.catalog.set_status_many(items, now, self.session)
                except sqlite3.Error as e:
                    d.dead = f"its catalog can no longer be written ({e}): run again"


# Files whose copies are being proven while the next ones are copied. Bounded so that a crash
# leaves little unrecorded work and memory stays flat.
VERIFIER_THREADS = 4
# Previews sent to an object store at once, at the end of an offload.
PREVIEW_UPLOADS = 4
# Card files whose reading the kernel is asked to start before the copy thread gets to them.
PREFETCH_FILES = 2
WINDOW_FILES = 32
WINDOW_BYTES = 512 * 1024 * 1024


class _Prefetch:
    """Read-ahead hints for the next card files, from a thread of their own: a hint can block
    while the disk is busy. At most PREFETCH_FILES wait, so a stalling reader gets no more."""

    def __init__(self, files: list[SourceFile], io, executor: ThreadPoolExecutor):
        self.files, self.io, self.executor = files, io, executor
        self.hints: deque = deque()
        self.next = 1  # the first file is read at once, never hinted

    def before(self, i: int) -> None:
        """Called as file i is about to be copied."""
        while self.hints and self.hints[0].done():
            self.hints.popleft()
        self.next = max(self.next, i + 1)
        end = min(i + PREFETCH_FILES + 1, len(self.files))
        while self.next < end and len(self.hints) < PREFETCH_FILES:
            path = self.files[self.next].abspath
            self.hints.append(self.executor.submit(self.io.prefetch, path))
            self.next += 1

    def cancel(self) -> None:
        for hint in self.hints:
            hint.cancel()


def _too_much(window: deque) -> bool:
    return len(window) > WINDOW_FILES or sum(s.size for s, _ in window) > WINDOW_BYTES


def _drain(window: deque, run: _Run, records: list[FileRecord], watch: CardWatch) -> None:
    while window:
        records.append(watch.saw(run.finish_copy(*window.popleft())))


def _apply_copy(rec: FileRecord, src: SourceFile, out: CopyOutcome) -> None:
    rec.xxh3_128 = out.digest
    rec.attempts = out.attempts
    rec.card_reads, rec.source_verify = out.card_reads, out.source_check
    rec.seconds = out.seconds
    if out.info:
        rec.capture_time = out.info.time.isoformat() if out.info.time else None
        rec.camera_make, rec.camera_model = out.info.make, out.info.model
    rec.copies = [Copy(root, p.path, True, p.action, out.quarantined.get(root))
                  for root, p in out.placed.items()]
    if out.unreadable and not out.placed:
        rec.status = Status.UNREADABLE
        rec.detail = f"{out.unreadable} (tried {out.attempts} times)"
        return
    if out.failed:
        rec.status = Status.NEEDS_RECOPY
        rec.copies += [Copy(root, "", False, "failed") for root in out.failed]
        rec.detail = "; ".join(sorted(set(out.failed.values())))
        return
    damaged = sorted(f"{root}/{p.path}" for root, p in out.placed.items()
                     if p.action == "existing" and p.latest == Status.DAMAGED)
    if damaged:
        # Proven the same bytes as the card, which verify found do not decode: the card holds
        # that damage too. Never a `duplicate` or `verified` that reads as "nothing to do".
        rec.status = Status.DAMAGED
        rec.detail = (f"ingest verify found the archived {', '.join(damaged)} does not "
                      "decode, and the card holds the same bytes")
        return
    if all(p.action == "existing" for p in out.placed.values()):
        paths = ", ".join(sorted({p.path for p in out.placed.values()}))
        if all(p.row_status in GOOD for p in out.placed.values()):
            rec.status = Status.DUPLICATE
            rec.detail = f"already in the archive as {paths}"
            return
    if out.bad_twins or out.quarantined:
        rec.status = Status.RECOPIED
        found = "; ".join(f"{root}/{path} was {result}: {detail}"
                          for root, path, result, detail in out.bad_twins) or \
            "ingest verify had found it corrupt or missing"
        rec.detail = f"the archive held a damaged copy ({found}); copied again from the card"
        if out.quarantined:
            rec.detail += "; the damaged bytes are kept at " + ", ".join(
                f"{root}/{kept}" for root, kept in out.quarantined.items())
    elif out.card_mismatches:
        rec.status = Status.RECOPIED
        rec.detail = (f"two reads of the card gave different data (a flaky reader, cable or "
                      f"card?); read again until they agreed ({out.card_reads} reads)")
    elif out.mismatches or out.attempts > 1:
        rec.status = Status.RECOPIED
        rec.detail = (f"a copy did not match the card when read back; copied again "
                      f"({out.attempts} attempts)")
    else:
        rec.status = Status.VERIFIED


# Findings an earlier offload's decode made about this very content.
_CARRIED = (Status.DAMAGED_ON_CARD, Status.UNVERIFIED)


def _carry_findings(rec: FileRecord, out: CopyOutcome) -> None:
    """A file this run does not decode (--no-decode, or no decoder for its kind) keeps what an
    earlier decode found about the same bytes: a hash check cannot clear `damaged_on_card`."""
    if rec.status not in (Status.VERIFIED, Status.DUPLICATE):
        return
    found = [s for s in _CARRIED if any(p.action == "existing" and p.row_status == s
                                        for p in out.placed.values())]
    if found:
        rec.status = found[0]
        rec.detail = (f"an earlier offload found it {found[0].replace('_', ' ')}, and this run "
                      "did not decode it again")


def _check_history(rec: FileRecord, fmt: str, expected: str, out: CopyOutcome) -> None:
    actual = out.digest if fmt == "xxh128" else out.extra_hashes.get(fmt)
    match = actual is not None and actual.lower() == expected.lower()
    rec.history = {"format": fmt, "recorded": expected, "match": match}
    if not match and rec.status is not Status.UNREADABLE:
        rec.status = Status.DAMAGED_ON_CARD
        rec.detail = (f"the card's ASC MHL history recorded {fmt} {expected}, but the card now "
                      f"gives {actual}: the file changed on the card since it was recorded. "
                      "Keep the card and do not format it")


def _add_mhl_generations(dests: list[Destination], records: list[FileRecord], now) -> None:
    """One ASC MHL generation per destination for the files this run copied there."""
    for d in (d for d in dests if not d.dead):
        try:
            _transfer_generation(Path(d.root), d.root, records, now)
        except (OSError, ValueError) as e:
            d.dead = d.dead or f"could not write the ASC MHL history: {e}"


def _transfer_generation(history_root: Path, destination: str, records: list[FileRecord],
                         now) -> None:
    """Append one `transfer` generation to the ASC MHL history under `history_root` for the
    copies of `records` in `destination`. Copies a killed run made come back as `existing`:
    they join the history once."""
    copies = [(r, c) for r in records for c in r.copies
              if c.destination == destination and c.verified and representable(c.path)]
    known = read_history(history_root) if any(c.action == "existing" for _, c in copies) \
        else {}
    entries = [MhlEntry(c.path, r.size, r.mtime_ns, r.xxh3_128, "original", now)
               for r, c in copies if c.action == "copied" or c.path not in known]
    if entries:
        add_generation(history_root, entries, process="transfer", tool_version=__version__,
                       now=now)


def _apply_decode(rec: FileRecord, result: dict) -> None:
    dec = result.get("decode") or {}
    rec.decode = {k: dec.get(k) for k in ("decoder", "ok", "error", "checks", "seconds",
                                          "verdict")}
    card = result.get("card_decode")
    if card is not None:
        rec.decode["card"] = {k: card.get(k) for k in ("decoder", "ok", "error", "verdict")}
    verdict = dec.get("verdict")
    if verdict == "ok":
        return
    if rec.flagged:
        # A copy already failed: keep that reason first; the decode's finding follows.
        copy_problem = rec.status, rec.detail
        _judge_decode(rec, dec, card, verdict)
        if rec.status is not Status.DAMAGED_ON_CARD:
            rec.status = copy_problem[0]
        rec.detail = f"{copy_problem[1]}; also: {rec.detail}"
        return
    _judge_decode(rec, dec, card, verdict)


def _judge_decode(rec: FileRecord, dec: dict, card: dict | None, verdict: str) -> None:
    if verdict == "unsupported":
        rec.status = Status.UNVERIFIED
        rec.detail = f"not decodable here: {dec.get('error')}"
    elif verdict == "not_read":
        rec.status = Status.NEEDS_RECOPY
        rec.detail = (f"its copies could no longer be read for the decode check "
                      f"({dec.get('error')}): reconnect the destination and run again")
    elif verdict in ("crashed", "timeout"):
        rec.status = Status.UNVERIFIED
        rec.detail = dec.get("error") or f"decoder {verdict}"
    elif card is not None and card.get("verdict") == "ok":
        # The copy's bytes equal the card's (same hash), yet only the card decodes: the read
        # itself must have been unstable. Copy again.
        rec.status = Status.NEEDS_RECOPY
        rec.detail = f"copy does not decode but the card does: {dec.get('error')}"
    else:
        rec.status = Status.DAMAGED_ON_CARD
        rec.detail = (f"damaged on the card: {dec.get('error')}. Re-copying won't help: keep "
                      "the card and do not format it; try another reader or recovery software")
