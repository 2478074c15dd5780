"""An object store (S3, or any fsspec file system) as a `Store`: the proofs that stand between
an upload and a final name, the catalog kept in the store, and the read-only view for status.

The card is still read once. A file goes to an object store only after its local copy has
been committed and proven equal to the card's hash; the upload reads that local copy:

1. upload to `<prefix>/.ingest/partials/<session>-<n>-<name>` (S3: a single PUT, or parts
   that are aborted when anything fails, asking the server for a SHA-256 that is compared with
   the one computed while reading);
2. re-download the partial and hash it (xxh3-128): it must equal the card's hash;
3. copy to the final key. S3's CopyObject is atomic: the final key appears complete or not at
   all, and only ever holds bytes that were re-downloaded and proven. The copy is checked by
   the server's checksum against the partial's where the server keeps one (S3), else by a
   second download (copy-then-verify: any other fsspec file system);
4. remove the partial, and add the catalog row.

A run killed at any step leaves at most a partial (removed, with any unfinished multipart
upload, when the next run opens the destination) or a final object without a catalog row
(adopted by the next run after it is re-downloaded and found identical). No catalog row ever
names an object that was not proven, and no incomplete object ever carries a final name.

The catalog is `<prefix>/.ingest/catalog.sqlite`: downloaded when the store is opened (or
created), updated here, and uploaded every CHECKPOINT_ROWS files and when it is closed, each
time beside the old one and copied over it.

The offload drives it (pipeline.py): `open_store(url).open(session, command=...)`;
`start_record(rec)` after each local commit (a future, or None when there is no verified
local copy); once decodes are collected, `record(rec, future.result())`; then
`finish(records)` and `close()`. Verify and repair use the `Store` calls.
"""

from __future__ import annotations

import errno
import itertools
import os
import secrets
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from typing import BinaryIO

from ingest import __version__
from ingest.catalog import (
    LOST,
    STATE_DIR,
    Catalog,
    ReadOnlyCatalog,
    Row,
    catalog_path,
    open_readonly,
)
from ingest.config import utc_now
from ingest.layout import with_suffix
from ingest.mhl import FOLDER as MHL_FOLDER
from ingest.model import FLAGGED, Copy, FileRecord, Status
from ingest.preflight import UsageError
from ingest.safety import store_device_id
from ingest.store.base import PutResult, Replace
from ingest.store.client import CATALOG_KEY, PARTIALS, STATE, ObjectClient
from ingest.store.s3 import checksum_of
from ingest.store.urls import is_object_store, redact

CHECKPOINT_ROWS = 64  # catalog uploads during a run: a killed run loses at most these rows
RETRIES = 1  # a failed upload or a mismatch is tried again this many times
# Files in flight at once. Each costs about five requests in a row (HEAD, PUT, GET, COPY,
# DELETE), so on a remote store latency, not bandwidth, bounds a single stream.
UPLOADS = 4
_IGNORED = (f"{STATE}/", f"{MHL_FOLDER}/")


class _Failed(Exception):
    """One attempt at one file failed; the text is the record's detail."""


class ObjectStore:
    """An object-store destination for one run. With `background=True` (the offload), uploads run on
    `uploads` threads of their own, overlapping the copying of later card files, and
    `start`/`start_record` return futures; the catalog (SQLite, one connection) is touched
    from one thread only. Attributes `root`, `device`, `files`, `bytes` and `dead` match
    `copier.Destination`, so reports list it like a local one."""

    remote = True

    def __init__(self, client: ObjectClient, *, clock: Callable[[], datetime] | None = None,
                 background: bool = True, retries: int = RETRIES, uploads: int = UPLOADS):
        self.client = client
        self.root = self.url = client.url
        self.clock = clock or utc_now
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
             volume: str | None = None, require_catalog: bool = False,
             started: datetime | None = None) -> ObjectStore:
        """Check access, take the lock, sweep what a killed run left, fetch the catalog.
        Raises UsageError or LockedError (exit 2) before anything is written. The session
        is stamped with the time the catalog was fetched (`started` is not used: a store
        reached over a network may take a while to open)."""
        return self._do(self._open, session, command, source, volume, require_catalog)

    def _open(self, session, command, source, volume, require_catalog) -> ObjectStore:
        store = self.client
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

    def remember_peers(self, roots: list[str], now: str) -> None:
        """The other destinations of this offload, so that `verify --repair` of this store
        alone knows where to look for a good copy (see verify/repair.py)."""
        self._do(lambda: self.catalog.record_peers(roots, self.session, now, own=self.url))

    def _sweep(self) -> None:
        """Partials and unfinished multipart uploads of a run that was killed. We hold the
        lock, so none of them belongs to a running ingest."""
        under = self.client.loc.key(PARTIALS)
        for key in self.client.list(under):
            self.client.delete(key)
        try:
            self.client.abort_uploads(under)
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
            self.client.release_lock()
            self._locked = False
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> ObjectStore:
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
        source = next((c for c in rec.copies
                       if c.verified and not is_object_store(c.destination)),
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
        store = self.client
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
        store = self.client
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

    def _upload_proven(self, local_path: str, final: str, digest: str, size: int,
                       before_final: Callable[[], None] | None = None
                       ) -> tuple[str | None, str | None]:
        """Steps 1-4 of the module doc. Returns (ETag, server checksum) of the final object.
        `before_final` runs once the partial is proven, just before the copy to `final`."""
        store = self.client
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
            if before_final is not None:
                before_final()
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
        return self.client.hash_object(final_key)[0] == digest

    def _add_row(self, path: str, digest: str, size: int, mtime_ns: int, row: dict,
                 etag: str | None, checksum: str | None) -> None:
        self.catalog.add_object(
            etag=etag, checksum=checksum, path=path, size=size, mtime_ns=mtime_ns,
            digest=digest, kind=row.get("kind") or "other", capture_time=row.get("capture_time"),
            make=row.get("make"), model=row.get("model"),
            source_volume=row.get("source_volume"), source_path=row.get("source_path"),
            session_id=self.session, status="copied", now=self.clock().isoformat())
        self._since_checkpoint += 1
        if self._since_checkpoint >= CHECKPOINT_ROWS:
            try:
                self._upload_catalog()
            except Exception:  # noqa: BLE001 - tried again at the next checkpoint and at close
                pass

    def _upload_catalog(self) -> None:
        db = self.catalog.db
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the main file alone holds every row
        self.client.put_file_atomic(self.catalog.path, self.client.loc.key(CATALOG_KEY),
                                   f"{self.session}-catalog-{secrets.token_hex(3)}")
        self._since_checkpoint = 0

    def _why(self, e: BaseException) -> str:
        text = str(e) or type(e).__name__
        return redact(f"{text}", self.client.secrets())


    # the Store calls ----------------------------------------------------------------------
    @property
    def device_label(self) -> str:
        return self.client.device

    @property
    def device_id(self) -> int:
        return store_device_id(self.client.device)

    def contents(self, under: str = "") -> dict[str, str]:
        try:
            return self._contents(under)
        except Exception as e:  # noqa: BLE001 - the client's errors, as OSError, redacted
            raise OSError(self._why(e)) from None

    def _contents(self, under: str) -> dict[str, str]:
        loc = self.client.loc
        if under:
            base = f"{under.strip('/')}/"
            return {(r := loc.rel(k)[len(base):]): r
                    for k in self.client.list(loc.key(base)) if loc.rel(k).startswith(base)}
        out = {}
        for key in self.client.list(loc.key("")):
            rel = loc.rel(key)
            if not rel.startswith(_IGNORED):
                out[rel] = rel
        return out

    def size(self, rel: str) -> int | None:
        try:
            return self.client.size_of(self.client.loc.key(rel))
        except Exception:  # noqa: BLE001 - cannot be asked about: not there for this purpose
            return None

    def read_hash(self, rel: str, io=None, sink: BinaryIO | None = None) -> tuple[str, int]:
        """A download: the store's bytes as it serves them now. FileNotFoundError when the
        object is gone; any other failure as OSError with a redacted text."""
        try:
            return self.client.hash_object(self.client.loc.key(rel), sink)
        except FileNotFoundError:
            raise
        except Exception as e:  # noqa: BLE001
            raise OSError(self._why(e)) from None

    def local_path(self, rel: str) -> str | None:
        return None

    def put_proven(self, local_path: str, rel: str, digest: str, size: int, mtime_ns: int, *,
                   replace: Replace | None = None, io=None,
                   **row: str | None) -> PutResult:
        if replace is None:
            return self.put_verified(local_path, rel, digest, size, mtime_ns, **row)
        return self._do(self._restore, local_path, rel, digest, size, mtime_ns, replace)

    def _restore(self, local_path: str, rel: str, digest: str, size: int, mtime_ns: int,
                 why: Replace) -> PutResult:
        """`verify --repair` into this store: exactly `rel` gets the proven bytes. What the
        name held is copied into the quarantine (its bytes may be someone's edit) only once
        the upload is proven, just before the copy over it: a restore that fails earlier
        leaves the store as it was and keeps nothing."""
        store = self.client
        kept: list[str] = []

        def keep_old() -> None:
            head = store.head(store.loc.key(rel))
            if head is None:
                return  # a missing file: nothing to keep
            where = f"{STATE}/quarantine/{why.session}/{rel}"
            store.copy(store.loc.key(rel), store.loc.key(where), int(head["ContentLength"]))
            kept.append(where)
            store.put_bytes_atomic(f"{why.reason}\n".encode(),
                                   store.loc.key(where + ".why.txt"), f"{why.session}-why")

        try:
            etag, checksum = self._upload_proven(local_path, rel, digest, size, keep_old)
        except _Failed as e:
            return self._not_restored(str(e), kept)
        except Exception as e:  # noqa: BLE001 - a per-file failure is a status
            return self._not_restored(self._why(e), kept)
        if self.catalog is not None:
            with self.catalog.db:
                self.catalog.record_object(rel, size, etag, checksum, self.clock().isoformat())
        self.files += 1
        self.bytes += size
        return PutResult(True, "", rel, "copied", kept[0] if kept else None)

    @staticmethod
    def _not_restored(error: str, kept: list[str]) -> PutResult:
        if not kept:
            return PutResult(False, f"could not restore: {error}; nothing was changed", "",
                             "failed")
        return PutResult(False, f"could not restore: {error}; the object it would replace is "
                         f"kept at {kept[0]}", "", "failed", kept[0])

    def write_small(self, rel: str, data: bytes) -> None:
        """Beside the old one, then copied over it; OSError with a redacted text."""
        try:
            self.client.put_bytes_atomic(data, self.client.loc.key(rel),
                                         f"{self.session or 'w'}-{secrets.token_hex(3)}")
        except Exception as e:  # noqa: BLE001
            raise OSError(self._why(e)) from None

    def read_small(self, rel: str) -> bytes | None:
        try:
            return self.client.read_bytes(self.client.loc.key(rel))
        except FileNotFoundError:
            return None
        except Exception as e:  # noqa: BLE001 - the client's errors, as OSError, redacted
            raise OSError(self._why(e)) from None

    def unreachable(self) -> str | None:
        """After a read failed: why the whole store cannot be reached now, or None (then the
        failure is about that object alone, a finding)."""
        try:
            self.client.check_access()
        except UsageError as e:
            return str(e)
        return None

    @contextmanager
    def folder(self, rel: str) -> Iterator[str]:
        tmp = tempfile.mkdtemp(prefix="ingest-folder-")
        try:
            before: dict[str, bytes] = {}
            for name in self.contents(rel):
                data = self.read_small(f"{rel}/{name}")
                if data is not None:
                    before[name] = data
                    path = os.path.join(tmp, rel, *name.split("/"))
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    with open(path, "wb") as f:
                        f.write(data)
            yield tmp
            top = os.path.join(tmp, rel)
            for folder, _dirs, names in os.walk(top):
                for name in sorted(names):
                    path = os.path.join(folder, name)
                    sub = os.path.relpath(path, top).replace(os.sep, "/")
                    with open(path, "rb") as f:
                        data = f.read()
                    if before.get(sub) != data:
                        self.write_small(f"{rel}/{sub}", data)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def open_readonly(self, *, allow_newer: bool = False) -> ObjectReadOnly:
        return ObjectReadOnly(self, allow_newer=allow_newer)


class ObjectReadOnly:
    """What `ingest status` reads of an object store: its catalog (a downloaded copy, opened
    read-only) and whether each copy is still there with its catalogued size. Nothing is
    written and no lock is taken."""

    def __init__(self, store: ObjectStore, *, allow_newer: bool = False):
        self.store = store
        self.url = self.root = store.url
        store.client.check_access()
        self.device_label = store.device_label
        self.device_id = store.device_id  # as the offload counts it
        self._tmp = tempfile.mkdtemp(prefix="ingest-status-")
        self.catalog: ReadOnlyCatalog | None = None
        path = os.path.join(self._tmp, "catalog.sqlite")
        try:
            if not store.client.get_file(store.client.loc.key(CATALOG_KEY), path):
                raise UsageError(f"destination {self.url} has no ingest catalog "
                                 f"({CATALOG_KEY}): nothing was offloaded there yet")
            self.catalog = open_readonly(path, label=self.url, allow_newer=allow_newer)
        except UsageError:
            self.close()
            raise
        except sqlite3.DatabaseError as e:
            self.close()
            raise UsageError(f"destination {self.url}: its catalog cannot be read ({e})") \
                from None
        except BaseException:
            self.close()
            raise

    def by_hash(self, digest: str) -> list[Row]:
        return self.catalog.by_hash(digest)

    def acceptance(self, card_path: str, size: int, mtime_ns: int):
        return self.catalog.acceptance(card_path, size, mtime_ns)

    def problem(self, row: Row) -> str | None:
        """None when the object is there with its catalogued size. What the catalog row's
        status and latest finding say is judged by `status`, as for a local copy."""
        size = self.store.size(row.path)
        if size is None:
            return "listed in the catalog but missing from the bucket"
        if size != row.size:
            return f"object size {size} differs from the catalog's {row.size}: run ingest verify"
        return None

    def close(self) -> None:
        if self.catalog is not None:
            self.catalog.close()
            self.catalog = None
        shutil.rmtree(self._tmp, ignore_errors=True)


def _fatal(e: BaseException) -> bool:
    """Errors after which every later file would fail too: stop trying this destination."""
    if isinstance(e, PermissionError):
        return True
    name = type(e).__name__
    return name in ("EndpointConnectionError", "NoCredentialsError", "NoSuchBucket",
                    "InvalidAccessKeyId", "SignatureDoesNotMatch")
