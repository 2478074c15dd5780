"""The off-site stage: what `ingest offload`, `ingest verify` and `ingest status` call for an
s3:// destination.

The card is still read once. A file goes to S3 only after its local copy has been committed
and proven equal to the card's hash; the upload reads that local copy:

1. upload to `<prefix>/.ingest/partials/<session>-<n>-<name>` (a single PUT, or parts that
   are aborted when anything fails), asking the server for a SHA-256 that is compared with
   the one computed while reading;
2. re-download the partial and hash it (xxh3-128): it must equal the card's hash;
3. server-side copy to the final key. CopyObject is atomic: the final key appears complete
   or not at all, and only ever holds bytes that were re-downloaded and proven. The copy is
   checked by size and by the server's checksum against the partial's (or, where the server
   keeps none, by a second re-download);
4. remove the partial, and add the catalog row.

A run killed at any step leaves at most a partial (removed, with any unfinished multipart
upload, when the next run opens the destination) or a final object without a catalog row
(adopted by the next run after it is re-downloaded and found identical). No catalog row ever
names an object that was not proven, and no incomplete object ever carries a final name.

The catalog of an S3 destination is `<prefix>/.ingest/catalog.sqlite`: downloaded when the
destination is opened (or created), updated here, and uploaded every CHECKPOINT_ROWS files
and when it is closed, each time beside the old one and copied over it.

How the offload drives it (pipeline.py): `ingest.remote.split_destinations` before
preflight; per s3:// URL `RemoteDestination(url, endpoint=..., clock=...).open(session,
source=..., volume=...)`; `start_record(rec)` after each local commit (returns a future, or
None when there is no verified local copy); once decodes are collected,
`record(rec, future.result())`; then
`finish(records)` and `close()`; `write_report(report)` once the report exists.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import secrets
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from ingest import __version__
from ingest.catalog import LOST, STATE_DIR, Catalog, Row, catalog_path, open_readonly
from ingest.config import utc_now
from ingest.layout import with_suffix
from ingest.model import FLAGGED, Copy, FileRecord, Status
from ingest.preflight import UsageError
from ingest.remote import is_remote, redact, require_s3
from ingest.remote.s3 import (
    CATALOG_KEY,
    PART_SIZE,
    PARTIALS,
    REPORTS,
    STATE,
    S3Store,
    checksum_of,
)
from ingest.safety import store_device_id

CHECKPOINT_ROWS = 64  # catalog uploads during a run: a killed run loses at most these rows
RETRIES = 1  # a failed upload or a mismatch is tried again this many times
# Files in flight at once. Each costs about five requests in a row (HEAD, PUT, GET, COPY,
# DELETE), so on a remote store latency, not bandwidth, bounds a single stream.
UPLOADS = 4
_IGNORED = (f"{STATE}/", "ascmhl/")


class PutResult(NamedTuple):
    verified: bool
    detail: str  # why it failed, or a note ("already there as ...")
    path: str  # key relative to the destination prefix; "" when nothing was placed
    action: str  # copied | existing | failed
    kept: str | None = None  # where the object it replaced was copied first (quarantine)


class _Failed(Exception):
    """One attempt at one file failed; the text is the record's detail."""


class RemoteDestination:
    """An s3:// destination for one run. With `background=True` (the offload), uploads run on
    `uploads` threads of their own, overlapping the copying of later card files, and
    `start`/`start_record` return futures; the catalog (SQLite, one connection) is touched
    from one thread only. Attributes `root`, `device`, `files`, `bytes` and `dead` match
    `copier.Destination`, so reports list it like a local one."""

    def __init__(self, url: str, *, endpoint: str | None = None,
                 clock: Callable[[], datetime] = utc_now, store: S3Store | None = None,
                 part_size: int = PART_SIZE, background: bool = True,
                 retries: int = RETRIES, uploads: int = UPLOADS):
        require_s3(url)
        self.store = store or S3Store(url, endpoint, part_size=part_size)
        self.root = self.store.url
        self.clock = clock
        self.retries = retries
        self.device = ""
        self.dead: str | None = None
        self.files = 0
        self.bytes = 0
        self.catalog: Catalog | None = None
        self.session = ""
        self._tmp: str | None = None
        self._seq = itertools.count(1)
        self._since_checkpoint = 0
        self._locked = False
        self._executor = ThreadPoolExecutor(1, "s3-catalog") if background else None
        self._uploads = ThreadPoolExecutor(max(1, uploads), "s3-upload") if background \
            else None
        # Puts of one name or one content wait for each other: two different files must not
        # race for a free name, nor one content be uploaded twice.
        self._inflight: dict[str, Future] = {}
        self._lock = threading.Lock()

    # life cycle ---------------------------------------------------------------------------
    def open(self, session: str, *, command: str = "offload", source: str | None = None,
             volume: str | None = None, require_catalog: bool = False) -> RemoteDestination:
        """Check access, take the lock, sweep what a killed run left, fetch the catalog.
        Raises UsageError or LockedError (exit 2) before anything is written."""
        return self._do(self._open, session, command, source, volume, require_catalog)

    def _open(self, session, command, source, volume, require_catalog) -> RemoteDestination:
        store = self.store
        store.check_access()
        self.device = store.device
        self.session = session
        store.acquire_lock(f"ingest {command}")
        self._locked = True
        try:
            self._sweep()
            self._tmp = tempfile.mkdtemp(prefix="ingest-s3-")
            os.makedirs(os.path.join(self._tmp, STATE_DIR))
            found = store.get_file(store.loc.key(CATALOG_KEY), catalog_path(self._tmp))
            if require_catalog and not found:
                raise UsageError(f"archive {self.root} has no ingest catalog ({CATALOG_KEY}): "
                                 "give a prefix that ingest offloaded to")
            try:
                self.catalog = Catalog(self._tmp, label=self.root)
                self.catalog.start_session(session, command, source, volume,
                                           self.clock().isoformat(), __version__)
            except sqlite3.DatabaseError as e:
                raise UsageError(f"the catalog of {self.root} cannot be read ({e})") from None
        except BaseException:
            self._release()
            raise
        return self

    def _sweep(self) -> None:
        """Partials and unfinished multipart uploads of a run that was killed. We hold the
        lock, so none of them belongs to a running ingest."""
        under = self.store.loc.key(PARTIALS)
        for key in self.store.list(under):
            self.store.delete(key)
        try:
            self.store.abort_uploads(under)
        except Exception:  # noqa: BLE001 - a store without ListMultipartUploads
            pass

    def close(self) -> None:
        """Upload the catalog (beside the old one, then copied over it) and let go of the
        lock. A catalog that cannot be uploaded leaves `dead` set; the objects are there and
        the next run adopts them after re-downloading them."""
        try:
            if self._uploads is not None:
                self._uploads.shutdown(wait=True)
            self._do(self._close)
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None

    def _close(self) -> None:
        try:
            if self.catalog is not None:
                self.catalog.finish_session(self.session, self.clock().isoformat())
                self._upload_catalog()
        except Exception as e:  # noqa: BLE001
            self.dead = self.dead or f"could not upload the catalog: {self._why(e)}"
        finally:
            self._release()

    def _release(self) -> None:
        if self.catalog is not None:
            self.catalog.close()
            self.catalog = None
        if self._locked:
            self.store.release_lock()
            self._locked = False
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> RemoteDestination:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _do(self, fn, *args):
        """Run on the catalog's thread (here, without background threads)."""
        if self._executor is None:
            return fn(*args)
        return self._executor.submit(fn, *args).result()

    # one file -----------------------------------------------------------------------------
    def start(self, local_path: str, rel_path: str, digest: str, size: int, mtime_ns: int,
              **row: str | None) -> Future:
        """`put_verified` on the destination's thread; the future's result is a PutResult.
        `row` may give kind, capture_time, make, model, source_volume, source_path."""
        if self._uploads is None:
            done: Future = Future()
            done.set_result(self._put(local_path, rel_path, digest, size, mtime_ns, row))
            return done
        keys = (f"path:{rel_path}", f"hash:{digest}")
        with self._lock:
            earlier = [f for k in keys if (f := self._inflight.get(k)) and not f.done()]
            future = self._uploads.submit(self._put_after, earlier, local_path, rel_path,
                                          digest, size, mtime_ns, row)
            for k in keys:
                self._inflight[k] = future
        return future

    def _put_after(self, earlier: list[Future], *args) -> PutResult:
        # Submitted before this one to a FIFO pool, so already running: no deadlock.
        for f in earlier:
            f.exception()
        return self._put(*args)

    def put_verified(self, local_path: str, rel_path: str, digest: str, size: int,
                     mtime_ns: int, **row: str | None) -> PutResult:
        """Copy a local file already proven equal to the card (`digest`, xxh3-128) to
        `<prefix>/<rel_path>` (or a suffixed name when another object holds that one), prove
        the object, and catalog it. Never raises for a per-file problem."""
        return self.start(local_path, rel_path, digest, size, mtime_ns, **row).result()

    def start_record(self, rec: FileRecord) -> Future | None:
        """The upload for an offload record, from its first verified local copy; None when
        the record has none (its status already says why)."""
        source = next((c for c in rec.copies if c.verified and not is_remote(c.destination)),
                      None)
        if source is None or not rec.xxh3_128:
            return None
        return self.start(os.path.join(source.destination, source.path), source.path,
                          rec.xxh3_128, rec.size, rec.mtime_ns, kind=str(rec.kind),
                          capture_time=rec.capture_time, make=rec.camera_make,
                          model=rec.camera_model, source_path=rec.path)

    def record(self, rec: FileRecord, result: PutResult | None) -> None:
        """Put an upload's outcome on its record: one more copy, and `needs_recopy` with the
        reason when the off-site copy failed (unless the file is already flagged worse)."""
        if result is None:
            rec.copies.append(Copy(self.root, "", False, "failed"))
            return
        rec.copies.append(Copy(self.root, result.path, result.verified, result.action,
                               result.kept))
        if result.verified:
            return
        why = f"off-site copy to {self.root} failed: {result.detail}"
        if rec.status in FLAGGED:
            rec.detail = f"{rec.detail}; {why}" if rec.detail else why
        else:
            rec.status = Status.NEEDS_RECOPY
            rec.detail = f"{why}. Run the same command again"

    def finish(self, records: list[FileRecord]) -> None:
        """Each copy's final status into the remote catalog, as `_Run.finish` does locally.
        Call it once every upload's result is on its record."""
        with self._lock:
            pending = list(self._inflight.values())
        for f in pending:
            f.exception()
        self._do(self._finish, records)

    def _finish(self, records: list[FileRecord]) -> None:
        if self.catalog is None:
            return
        items = []
        for r in records:
            for c in r.copies:
                if c.destination != self.root or not c.verified:
                    continue
                if r.status is Status.DUPLICATE:
                    if c.action == "copied":  # new here, and proven: count it as such
                        items.append((c.path, str(Status.VERIFIED), None))
                    continue
                items.append((c.path, str(r.status), r.detail or None))
        if items:
            self.catalog.set_status_many(items, self.clock().isoformat(), self.session)

    def write_report(self, report: dict) -> None:
        """A copy of the run's JSON report in `<prefix>/.ingest/reports/`."""
        self._do(self._write_report, report)

    def _write_report(self, report: dict) -> None:
        stamp = datetime.fromisoformat(report["started_at"]).strftime("%Y%m%d-%H%M%S")
        key = self.store.loc.key(f"{REPORTS}{report['command']}-{stamp}.json")
        try:
            self.store.put_bytes(key, (json.dumps(report, indent=2) + "\n").encode())
        except Exception as e:  # noqa: BLE001 - the report is also written where asked
            self.dead = self.dead or f"could not write the report: {self._why(e)}"

    # the upload ---------------------------------------------------------------------------
    def _put(self, local_path: str, rel: str, digest: str, size: int, mtime_ns: int,
             row: dict) -> PutResult:
        if self.catalog is None:
            return PutResult(False, "the destination is not open", "", "failed")
        if self.dead:
            return PutResult(False, f"destination unavailable: {self.dead}", "", "failed")
        attempts, last = 0, ""
        while attempts <= self.retries:
            attempts += 1
            try:
                found = self._existing(rel, digest, size)
                if found:
                    return found
                final, adopt, kept = self._free_name(rel, digest, size)
                if adopt:
                    self._do(self._add_row, final, digest, size, mtime_ns, row, None, None)
                    return PutResult(True, "an identical object was already there", final,
                                     "existing")
                etag, checksum = self._upload_proven(local_path, final, digest, size)
                self._do(self._add_row, final, digest, size, mtime_ns, row, etag, checksum)
                with self._lock:
                    self.files += 1
                    self.bytes += size
                note = "" if attempts == 1 else f"uploaded again ({attempts} attempts)"
                return PutResult(True, note, final, "copied", kept)
            except _Failed as e:
                last = str(e)
            except Exception as e:  # noqa: BLE001 - a per-file failure is a status
                last = self._why(e)
                if _fatal(e):
                    self.dead = last
                    break
        tries = f" (tried {attempts} times)" if attempts > 1 else ""
        return PutResult(False, f"{last}{tries}", "", "failed")

    def _existing(self, rel: str, digest: str, size: int) -> PutResult | None:
        """A copy of this content already in the destination, proven now: downloaded again
        and hashed, since an object can be overwritten or damaged at its catalogued size. One
        that fails is recorded as such (so the name may be reused) and the file is uploaded."""
        store = self.store
        for r in self._do(self._rows_for, rel, digest):
            if r.last_result in LOST or r.size != size:
                continue
            try:
                back, nbytes = store.hash_object(store.loc.key(r.path))
            except Exception as e:  # noqa: BLE001 - a gone object is a finding, not an error
                if store.size_of(store.loc.key(r.path)) is not None:
                    raise  # the object is there: the failure was the download's
                finding = ("missing", f"re-read by ingest offload: it is no longer there ({e})")
            else:
                if back == digest and nbytes == size:
                    note = "" if r.path == rel else f"already in the archive as {r.path}"
                    return PutResult(True, note, r.path, "existing")
                finding = ("corrupt", "re-read by ingest offload: its content changed since "
                           "it was archived")
            self._do(self.catalog.record_finding, r.id, finding[0], finding[1],
                     self.clock().isoformat(), self.session)
        return None

    def _rows_for(self, rel: str, digest: str) -> list[Row]:
        cat = self.catalog
        rows = [r for r in [cat.by_path(rel)] if r and r.xxh3_128 == digest]
        return rows + [r for r in cat.by_hash(digest) if r.path != rel]

    def _free_name(self, rel: str, digest: str, size: int) -> tuple[str, bool, str | None]:
        """(key relative to the prefix, adopt, kept): the card's layout name unless another
        object holds it; an identical object there (a run killed before recording it) is
        adopted; kept is where a damaged copy of ours that the name held was copied first."""
        folder, _, name = rel.rpartition("/")
        store = self.store
        for candidate in (name, with_suffix(name, digest[:8]), with_suffix(name, digest)):
            final = f"{folder}/{candidate}" if folder else candidate
            head = store.head(store.loc.key(final))
            if head is None:
                return final, False, None
            row = self._do(self.catalog.by_path, final)
            if row and row.xxh3_128 == digest and row.last_result in LOST:
                # Our own copy, found bad: replace it, but keep its bytes first (server-side
                # copy), as a local destination moves them to its quarantine.
                kept = f"{STATE_DIR}/quarantine/{self.session}/{final}"
                store.copy(store.loc.key(final), store.loc.key(kept), int(head["ContentLength"]))
                return final, False, kept
            if int(head["ContentLength"]) == size \
                    and store.hash_object(store.loc.key(final))[0] == digest:
                return final, True, None
        raise OSError(errno.EEXIST, f"no free name for {name} in {self.root}")

    def _upload_proven(self, local_path: str, final: str, digest: str,
                       size: int) -> tuple[str | None, str | None]:
        """Steps 1-4 of the module doc. Returns (ETag, server checksum) of the final object."""
        store = self.store
        base = os.path.basename(final)[:100]
        partial = store.loc.key(f"{PARTIALS}{self.session}-{next(self._seq)}-{base}")
        final_key = store.loc.key(final)
        try:
            up = store.upload(local_path, partial)
            if up.xxh3_128 != digest or up.size != size:
                raise _Failed(f"the local copy {local_path} changed after it was verified "
                              f"(read {up.size} of {size} bytes, xxh3-128 {up.xxh3_128})")
            sent, etag = up.server, up.etag
            if sent is None:  # not in the upload's answer (a multipart completion): ask
                head = store.head(partial) or {}
                sent, etag = checksum_of(head), head.get("ETag", etag)
            if sent and sent.algorithm == "sha256" \
                    and sent.value not in (up.sha256, up.composite):
                raise _Failed(f"the server's SHA-256 of the upload ({sent.value}) is not that "
                              "of the local copy: the data changed on the way")
            back, nbytes = store.hash_object(partial)
            if back != digest or nbytes != size:
                raise _Failed(f"the uploaded object did not match the card when downloaded "
                              f"again ({nbytes} of {size} bytes)")
            landed = store.copy(partial, final_key, size)
            got = checksum_of(landed)
            if not (sent and got and got.algorithm == sent.algorithm):
                head = store.head(final_key)  # the copy's answer did not say: look
                if head is None or int(head["ContentLength"]) != size:
                    raise _Failed("the server-side copy to the final name is missing or "
                                  "short")
                landed, got = head, checksum_of(head)
            if not self._same(sent, etag, got, landed.get("ETag"), final_key, digest):
                store.delete(final_key)
                raise _Failed("the server-side copy to the final name did not match the "
                              "proven upload; it was removed")
        finally:
            try:
                store.delete(partial)
            except Exception:  # noqa: BLE001 - swept when the destination is next opened
                pass
        return landed.get("ETag"), str(got) if got else None

    def _same(self, sent, etag: str | None, got, landed_etag: str | None, final_key: str,
              digest: str) -> bool:
        """Is the copied object the proven partial? By the server's checksum where it keeps
        one; else by a single-part ETag (an MD5 a plain copy keeps); else by downloading."""
        if sent and got and got.algorithm == sent.algorithm:
            return got.value == sent.value
        if etag and "-" not in etag and landed_etag == etag:
            return True
        return self.store.hash_object(final_key)[0] == digest

    def _add_row(self, path: str, digest: str, size: int, mtime_ns: int, row: dict,
                 etag: str | None, checksum: str | None) -> None:
        now = self.clock().isoformat()
        with self.catalog.db:
            self.catalog._insert(
                path=path, size=size, mtime_ns=mtime_ns, digest=digest,
                kind=row.get("kind") or "other", capture_time=row.get("capture_time"),
                make=row.get("make"), model=row.get("model"),
                source_volume=row.get("source_volume"), source_path=row.get("source_path"),
                session_id=self.session, status="copied", now=now)
            self.catalog.record_object(path, size, etag, checksum, now)
        self._since_checkpoint += 1
        if self._since_checkpoint >= CHECKPOINT_ROWS:
            try:
                self._upload_catalog()
            except Exception:  # noqa: BLE001 - tried again at the next checkpoint and at close
                pass

    def _upload_catalog(self) -> None:
        db = self.catalog.db
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the main file alone holds every row
        self.store.put_file_atomic(self.catalog.path, self.store.loc.key(CATALOG_KEY),
                                   f"{self.session}-catalog-{secrets.token_hex(3)}")
        self._since_checkpoint = 0

    def _why(self, e: BaseException) -> str:
        text = str(e) or type(e).__name__
        return redact(f"{text}", self.store.secrets())


def _fatal(e: BaseException) -> bool:
    """Errors after which every later file would fail too: stop trying this destination."""
    if isinstance(e, PermissionError):
        return True
    name = type(e).__name__
    return name in ("EndpointConnectionError", "NoCredentialsError", "NoSuchBucket",
                    "InvalidAccessKeyId", "SignatureDoesNotMatch")


# --- ingest verify s3://... ------------------------------------------------------------------


def verify_remote(url: str, cfg):
    """`ingest verify s3://bucket/prefix`: every catalogued object downloaded again, hashed
    against the card's hash and decode-checked, within the same budgets as a local archive;
    the checks go into the remote catalog. Returns a `VerifyResult`."""
    from ingest.pipeline import build_report, write_reports
    from ingest.power import lower_priority
    from ingest.verify.run import VerifyResult, _budget_note, _skipped, verify_facts

    require_s3(url)
    if cfg.backend == "dask" or cfg.scheduler:
        raise UsageError("--scheduler and --backend dask check archives on a file system; "
                         "verify an s3:// archive without them")
    if cfg.repair:
        raise UsageError("--repair cannot restore into an s3:// archive yet: run the offload "
                         "again from the card or from a local archive that holds the file")
    priority = lower_priority() if cfg.low_priority else []
    started = cfg.clock()
    session = started.strftime("%Y%m%dT%H%M%SZ-") + secrets.token_hex(3)
    emit = cfg.progress or (lambda *a, **k: None)
    dest = RemoteDestination(url, endpoint=cfg.s3_endpoint, clock=cfg.clock, background=False)
    dest.open(session, command="verify", require_catalog=True)
    try:
        with ExitStack() as stack:
            run = _RemoteRun(cfg, [dest], session, started, emit, stack, dest=dest)
            stack.callback(run.remove_downloads)
            due, over, untracked = run.plan()
            emit("planned", files=len(due), bytes=sum(i.row.size for i in due if i.present))
            run.check_all(due)
        records = run.records
        records += [_skipped(i, _budget_note(cfg.max_bytes)) for i in over]
        records += [_skipped(i, f"not checked: {run.stop_reason}") for i in run.not_started]
        records += _untracked(dest.root, untracked)
        finished = cfg.clock()
    finally:
        dest.close()
    report = build_report("verify", None, [dest], records, None, started, finished, cfg)
    report["verify"] = verify_facts(
        cfg, run, (finished - started).total_seconds(), outside_subset=run.outside_subset,
        over_budget=len(over), repaired=0, repair=False, low_priority=priority,
        backend="local", scheduler=None)
    write_reports(report, [], cfg)
    if cfg.destination_reports:
        dest.write_report(report)
    return VerifyResult(report, records, [dest.root])


def _untracked(root: str, listing: dict[str, int]) -> list[FileRecord]:
    from ingest.kinds import classify

    return [FileRecord(path=rel, kind=classify(rel.rpartition("/")[2]), size=size,
                       status=Status.UNTRACKED, detail=f"in {root} but not in its catalog",
                       copies=[Copy(root, rel, False, "existing")])
            for rel, size in sorted(listing.items())]


def _remote_run_class():
    """`_Run` with the per-file read done by downloading: defined on first use, so that
    importing this module does not import the verify run."""
    from ingest.verify import check
    from ingest.verify.check import HashCheck
    from ingest.verify.plan import Item, _order_key, _within_bytes, in_subset
    from ingest.verify.run import _Pending, _Run

    @dataclass(slots=True)
    class RemoteRun(_Run):
        dest: RemoteDestination | None = None
        tmp: str | None = None
        outside_subset: int = 0
        downloads: dict[int, str] = field(default_factory=dict)  # record id -> temp copy

        def remove_downloads(self) -> None:
            if self.tmp:
                shutil.rmtree(self.tmp, ignore_errors=True)

        def plan(self) -> tuple[list[Item], list[Item], dict[str, int]]:
            dest, cfg = self.dest, self.cfg
            loc = dest.store.loc
            listing = {loc.rel(k): size for k, size in dest.store.list(loc.key("")).items()}
            listing = {rel: s for rel, s in listing.items() if not rel.startswith(_IGNORED)}
            checked = dest.catalog.last_checks()
            items = []
            for row in dest.catalog.all_rows():
                listing_size = listing.pop(row.path, None)
                if not in_subset(row.path, cfg.subset):
                    self.outside_subset += 1
                    continue
                item = Item(root=dest.root, row=row, rel=row.path,
                            present=listing_size is not None,
                            last_checked=checked.get(row.id),
                            failed=(row.last_result or "") in {str(s) for s in FLAGGED})
                items.append((_order_key(item, 0), item))
            items.sort(key=lambda pair: pair[0])
            due, over = _within_bytes([i for _, i in items], cfg.max_bytes)
            return due, over, listing

        def _check_one(self, item: Item) -> None:
            rec = check.new_record(item.root, item.rel, item.row)
            self.records.append(rec)
            self.emit("file_start", root=item.root, path=item.rel, size=item.row.size)
            keep = self.cfg.decode and check.wants_decode(item.row)
            hc, local = self._download_check(item, keep)
            self.bytes_read += hc.bytes_read
            rec.status, rec.detail, rec.seconds = hc.status, hc.detail, round(hc.seconds, 6)
            if hc.status is Status.VERIFIED and local:
                self.downloads[id(rec)] = local
                self._submit(_Pending(rec, item, hc), local)
            else:
                if local:
                    os.unlink(local)
                self._finish(_Pending(rec, item, hc))

        def _download_check(self, item: Item, keep: bool) -> tuple[HashCheck, str | None]:
            import time

            t0 = time.perf_counter()
            key = self.dest.store.loc.key(item.rel)
            local = None
            try:
                if keep:
                    if self.tmp is None:
                        self.tmp = tempfile.mkdtemp(prefix="ingest-verify-s3-")
                    local = os.path.join(self.tmp, f"{id(item)}-{os.path.basename(item.rel)}")
                    with open(local, "wb") as sink:
                        digest, nbytes = self.dest.store.hash_object(key, sink)
                else:
                    digest, nbytes = self.dest.store.hash_object(key)
            except FileNotFoundError:
                return HashCheck(Status.MISSING, "no longer there", None, 0, None,
                                 time.perf_counter() - t0), local
            except Exception as e:  # noqa: BLE001 - a per-file failure is a status
                return HashCheck(Status.CORRUPT, f"could not be read: {self.dest._why(e)}",
                                 None, 0, None, time.perf_counter() - t0), local
            row = item.row
            status, detail = Status.VERIFIED, ""
            if nbytes != row.size:
                status, detail = Status.CORRUPT, (f"size is now {nbytes} bytes, was "
                                                  f"{row.size} at ingest")
            elif digest != row.xxh3_128:
                status, detail = Status.CORRUPT, (f"content changed since ingest (xxh3-128 now "
                                                  f"{digest}, was {row.xxh3_128})")
            return HashCheck(status, detail, digest, nbytes, row.mtime_ns,
                             time.perf_counter() - t0), local

        def _collect(self, block: bool) -> None:
            before = set(self.pending)
            _Run._collect(self, block)
            for key in before - set(self.pending):
                path = self.downloads.pop(key, None)
                if path:
                    os.unlink(path)

        def _repair(self, p, archive) -> None:
            p.rec.detail += ("; an s3:// archive is not repaired in place: run the offload "
                             "again from a copy that holds the file")

    return RemoteRun


def _RemoteRun(*args, **kwargs):  # noqa: N802 - reads as the class it builds
    return _remote_run_class()(*args, **kwargs)


# --- ingest status CARD ... s3://... ---------------------------------------------------------


class RemoteArchive:
    """Read-only view of an s3:// destination for `ingest status`: catalog rows by content
    hash, and whether each copy is still there with its catalogued size. Nothing is written
    and no lock is taken."""

    def __init__(self, url: str, *, endpoint: str | None = None, store: S3Store | None = None):
        require_s3(url)
        self.store = store or S3Store(url, endpoint)
        self.root = self.store.url
        self.store.check_access()
        self.device_label = self.store.device
        self.device_id = store_device_id(self.device_label)  # as the offload counts it
        self._tmp = tempfile.mkdtemp(prefix="ingest-status-s3-")
        path = os.path.join(self._tmp, "catalog.sqlite")
        try:
            if not self.store.get_file(self.store.loc.key(CATALOG_KEY), path):
                raise UsageError(f"destination {self.root} has no ingest catalog "
                                 f"({CATALOG_KEY}): nothing was offloaded there yet")
            self.db = open_readonly(path, label=self.root)
        except sqlite3.DatabaseError as e:
            self.close()
            raise UsageError(f"destination {self.root}: its catalog cannot be read ({e})") \
                from None
        except BaseException:
            self.close()
            raise

    def by_hash(self, digest: str) -> list[Row]:
        return self.db.by_hash(digest)

    def size_of(self, rel: str) -> int | None:
        """The object's size now, or None when it is gone (or cannot be asked about)."""
        try:
            return self.store.size_of(self.store.loc.key(rel))
        except Exception:  # noqa: BLE001 - status reports it as missing, not safe
            return None

    def problem(self, row: Row) -> str | None:
        """None when the object is there with its catalogued size. What the catalog row's
        status and latest finding say is judged by `status`, as for a local copy."""
        size = self.size_of(row.path)
        if size is None:
            return "listed in the catalog but missing from the bucket"
        if size != row.size:
            return f"object size {size} differs from the catalog's {row.size}: run ingest verify"
        return None

    def close(self) -> None:
        db = getattr(self, "db", None)
        if db is not None:
            db.close()
        shutil.rmtree(self._tmp, ignore_errors=True)
