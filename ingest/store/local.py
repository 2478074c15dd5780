"""A local folder as a `Store`: the archive a photographer keeps on a disk or a mounted share.

The offload's fast path (one card read written to every local partial, copier.py) works on
the folder directly; this class is what verify, status and repair need of it. Reads go past
the page cache (fsio.uncached_hash); every write is partial -> fsync -> read-back or
temp -> fsync -> rename, so a final name only ever holds whole, proven bytes.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import BinaryIO

from ingest import __version__, fsio
from ingest.catalog import (
    STATE_DIR,
    Catalog,
    ReadOnlyCatalog,
    catalog_path,
    db_text,
    open_readonly,
)
from ingest.config import utc_now
from ingest.lock import DestinationLock
from ingest.mhl import FOLDER as MHL_FOLDER
from ingest.preflight import UsageError
from ingest.quarantine import put_back, quarantine
from ingest.store.base import PutResult, Replace

IGNORED_DIRS = frozenset({STATE_DIR, MHL_FOLDER})


class LocalStore:
    remote = False

    def __init__(self, root: str, *, clock: Callable[[], datetime] | None = None):
        self.root = self.url = root
        self.clock = clock or utc_now
        self.io = fsio.FileIO()
        self.catalog: Catalog | None = None
        self.dead: str | None = None
        self.files = 0  # what this run wrote here (repairs), as reports count it
        self.bytes = 0
        self.session = ""
        self._lock: DestinationLock | None = None
        self._device: int | None = None

    @property
    def device(self) -> int:
        """The device the folder was on when this run first asked (so that a disk swapped
        under the same mount point reads as gone, see `fsio.unreachable`)."""
        if self._device is None:
            self._device = os.stat(self.root).st_dev
        return self._device

    @property
    def device_id(self) -> int:
        return self.device

    @property
    def device_label(self) -> str:
        return f"device {self.device}"

    # life cycle ---------------------------------------------------------------------------
    def open(self, session: str, *, command: str, source: str | None = None,
             volume: str | None = None, require_catalog: bool = False,
             started: datetime | None = None) -> LocalStore:
        """Take the lock and open the catalog (UsageError / LockedError, exit 2)."""
        self.device  # noqa: B018 - the device it is on now, before anything can change it
        lock = DestinationLock(self.root, f"ingest {command}")
        lock.acquire()
        self._lock = lock
        self.session = session
        try:
            self.catalog = Catalog(self.root)
            self.catalog.start_session(session, command, source, volume,
                                       (started or self.clock()).isoformat(), __version__)
        except BaseException:
            self.close()
            raise
        return self

    def unreachable(self) -> str | None:
        """After a read failed: why the whole folder cannot be reached now (unmounted, a
        dead disk, a dropped share, another disk under the same mount point), or None."""
        return fsio.unreachable(self.root, self.device)

    def open_readonly(self, *, allow_newer: bool = False) -> ReadOnlyCatalog:
        try:
            return open_readonly(catalog_path(self.root), timeout=5 if allow_newer else 30,
                                 allow_newer=allow_newer)
        except sqlite3.Error as e:  # one line, exit 2 (a newer catalog says so itself)
            raise UsageError(f"destination {self.root}: its catalog cannot be read ({e})") \
                from None

    def close(self) -> None:
        if self.catalog is not None:
            self.catalog.close()
            self.catalog = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # reading ------------------------------------------------------------------------------
    def contents(self, under: str = "") -> dict[str, str]:
        """Catalog form of each path -> path on disk. Our own state (.ingest/), ASC MHL
        histories and partials of an unfinished copy are not archive content; the catalog
        form differs only for names that are not UTF-8."""
        top = os.path.join(self.root, *under.split("/")) if under else self.root
        found: dict[str, str] = {}
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = sorted(d for d in dirnames if under or d not in IGNORED_DIRS)
            rel_dir = os.path.relpath(dirpath, top).replace(os.sep, "/")
            prefix = "" if rel_dir == "." else rel_dir + "/"
            for name in filenames:
                if name.endswith(fsio.PARTIAL_SUFFIX):
                    continue
                rel = prefix + name
                found[db_text(rel)] = rel
        return found

    def size(self, rel: str) -> int | None:
        try:
            return os.lstat(self.local_path(rel)).st_size
        except OSError:
            return None

    def read_hash(self, rel: str, io: fsio.FileIO | None = None,
                  sink: BinaryIO | None = None) -> tuple[str, int]:
        path = self.local_path(rel)
        if sink is None:
            return fsio.uncached_hash(path, io or self.io)
        h, total = fsio.new_hasher(), 0
        with open(path, "rb") as f:
            fsio.drop_cache(f.fileno())
            while chunk := f.read(fsio.CHUNK):
                h.update(chunk)
                total += len(chunk)
                sink.write(chunk)
        return h.hexdigest(), total

    def local_path(self, rel: str) -> str:
        return os.path.join(self.root, *rel.split("/"))

    # writing ------------------------------------------------------------------------------
    def put_proven(self, local_path: str, rel: str, digest: str, size: int, mtime_ns: int, *,
                   replace: Replace | None = None, io: fsio.FileIO | None = None,
                   **row: str | None) -> PutResult:
        """Only a restore (`replace`) comes here: an offload's local copies take the card's
        fast path (copier.py), which writes every local destination from one card read."""
        if replace is None:
            raise ValueError("a local folder is filled by the offload's copier")
        done = _restore(local_path, self.root, rel, digest, size, mtime_ns, io or self.io,
                        replace)
        if done.verified:
            self.files += 1
            self.bytes += size
        return done

    def write_small(self, rel: str, data: bytes) -> None:
        fsio.write_atomic(self.local_path(rel), data)

    def read_small(self, rel: str) -> bytes | None:
        try:
            with open(self.local_path(rel), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    @contextmanager
    def folder(self, rel: str) -> Iterator[str]:
        yield self.root  # the files themselves, written in place


def _not_restored(detail: str, kept: str | None = None) -> PutResult:
    return PutResult(False, detail, "", "failed", kept)


def _restore(local_path: str, root: str, rel: str, digest: str, size: int, mtime_ns: int,
             io: fsio.FileIO, why: Replace) -> PutResult:
    """Restore `root/rel` from the local file `local_path` (proven equal to `digest`), keeping
    the file it replaces in the quarantine. A restore that fails at any step leaves the
    archive as it was, unless the detail says otherwise (a failure after the final rename).
    `why.session` names the partial and the quarantine folder (see `ingest.quarantine`)."""
    token, reason, at, started = why.session, why.reason, why.at, why.started
    folder, _, name = rel.rpartition("/")
    partial = ""
    kept: str | None = None
    try:
        abs_folder = fsio.makedirs_synced(root, folder)
        fsio.remove_stale_partials(abs_folder, keep=lambda n: token in n)
        partial = os.path.join(abs_folder, fsio.partial_name(name, token))
        if os.path.lexists(partial):
            os.unlink(partial)
        copied = _copy(local_path, partial, io)
        if copied != digest:
            _remove(partial)
            return _not_restored(f"the copy at {local_path} changed while it was read; "
                            "nothing was restored")
        fsio.set_mtime(partial, mtime_ns)
        back, nbytes = fsio.uncached_hash(partial, io)
        if back != digest or nbytes != size:
            _remove(partial)
            return _not_restored("the restored copy did not match the original when read back from "
                            "disk; nothing was restored (check the disk)")
        # Last, so a restore that fails earlier has nothing to undo.
        try:
            kept = quarantine(root, rel, reason=reason, at=at, session=token, started=started)
        except OSError as e:
            _remove(partial)
            return _not_restored("could not keep the file it would replace "
                            f"({e.strerror or e}); nothing was restored")
        io.rename(partial, os.path.join(abs_folder, name))
        fsio.fsync_dir(abs_folder)
    except OSError as e:
        _remove(partial)
        error = f"could not restore: {e.strerror or e}"
        if kept is None:
            return _not_restored(error)
        return _undo_quarantine(error, root, kept, rel, token, at)
    return PutResult(True, "", rel, "copied", kept)


def _undo_quarantine(error: str, root: str, kept: str, rel: str, token: str,
                     at: datetime) -> PutResult:
    """After a failure that followed the quarantine: put the kept file back if its name is
    still free, so the archive is as it was."""
    if os.path.lexists(os.path.join(root, *rel.split("/"))):
        # Only the folder's fsync failed: the good copy is in place, under that name.
        return _not_restored(f"{error} after the good copy was renamed into place; the file it "
                        f"replaced is kept at {kept}", kept)
    try:
        put_back(root, kept, rel, reason="put back: its replacement could not be renamed "
                 "into place", at=at, session=token)
    except OSError as e:
        return _not_restored(f"{error}; the file it would replace is kept at {kept} and could not "
                        f"be put back ({e.strerror or e})", kept)
    return _not_restored(f"{error}; nothing was changed")


def _copy(src: str, partial: str, io: fsio.FileIO) -> str:
    """Copy in one read, hashing what was read; returns that hash."""
    h = fsio.new_hasher()
    src_fd = os.open(src, os.O_RDONLY)
    try:
        dst_fd = io.open_partial(partial)
        try:
            while chunk := io.read(src_fd, fsio.CHUNK):
                h.update(chunk)
                io.write(dst_fd, chunk)
            io.fsync(dst_fd)
        finally:
            os.close(dst_fd)
    finally:
        os.close(src_fd)
    return h.hexdigest()


def _remove(path: str) -> None:
    if path:
        try:
            os.unlink(path)
        except OSError:
            pass
