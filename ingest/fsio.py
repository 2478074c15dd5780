"""File-system primitives: read the card read-only, write partials, re-read from disk, commit.

Read-back must come from the disk, not from the page cache, or it proves nothing. On Linux the
copy is fsynced (so its pages are clean) and then dropped from the cache with
posix_fadvise(DONTNEED) before it is read again; on macOS the read uses F_NOCACHE. What stays out
of reach: a drive's own volatile cache, and a controller that lies about fsync. A page that
another process holds mapped is also not dropped.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sys
import tempfile
from collections.abc import Callable

import xxhash

CHUNK = 4 * 1024 * 1024
PARTIAL_SUFFIX = ".ingest-partial"


def new_hasher():
    return xxhash.xxh3_128()


class FileIO:
    """The only way the engine touches files; tests wrap it to inject faults."""

    def open_source(self, path: str) -> int:
        flags = os.O_RDONLY | getattr(os, "O_NOATIME", 0) | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(path, flags)
        except PermissionError:
            # O_NOATIME needs ownership of the file; fall back without it (still read-only).
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        return fd

    def prefetch(self, path: str) -> None:
        """Ask the kernel to start reading a card file we will copy next, and return at once.

        Per-file readahead stops at the end of each file, so without this the copy thread
        waits on the card at the start of every file (2.2 s of a 6 s copy of the 1 GB
        benchmark card). Only a hint: any error is left for the real read to report. It can
        block while the disk is busy, so the pipeline calls it from a thread of its own."""
        if not hasattr(os, "posix_fadvise"):
            return
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            return
        try:  # readahead does not touch atime: no O_NOATIME needed
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
        except OSError:
            pass
        finally:
            close_read_only(fd)

    def read(self, fd: int, size: int) -> bytes:
        return os.read(fd, size)

    def open_partial(self, path: str) -> int:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)

    def write(self, fd: int, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def rename(self, src: str, dst: str) -> None:
        os.rename(src, dst)


def uncached_hash(path: str, io: FileIO | None = None, keep_cached: bool = False
                  ) -> tuple[str, int]:
    """xxh3-128 of a file as the disk holds it. Returns (hex, bytes).

    `keep_cached` leaves the pages just read from disk in the cache, for a decode check that
    reads the same file next: those are the bytes this hash proved, so reading them again
    from disk would prove nothing more and cost a second disk read."""
    io = io or FileIO()
    fd = os.open(path, os.O_RDONLY)
    try:
        return _hash_from_disk(fd, io, keep_cached)
    finally:
        close_read_only(fd)


def reread_source(path: str, io: FileIO | None = None) -> tuple[str, int]:
    """xxh3-128 of a card file read again from the card, past the page cache: the pages the
    copy's read left behind are dropped first, so this read is the card's second answer, not
    the first one remembered. Opened as the copy's read is (read-only, no atime)."""
    io = io or FileIO()
    fd = io.open_source(path)
    try:
        return _hash_from_disk(fd, io, keep_cached=False)
    finally:
        close_read_only(fd)


def _hash_from_disk(fd: int, io: FileIO, keep_cached: bool) -> tuple[str, int]:
    drop_cache(fd)
    if sys.platform == "darwin":
        fcntl.fcntl(fd, fcntl.F_NOCACHE, 1)
    h = new_hasher()
    total = 0
    while chunk := io.read(fd, CHUNK):
        h.update(chunk)
        total += len(chunk)
    if not keep_cached:
        drop_cache(fd)  # keep an archive check from flushing the user's cache
    return h.hexdigest(), total


def close_read_only(fd: int) -> None:
    """Close a descriptor that was only read. On a device that died while the file was open
    (a pulled card, a dropped share: FUSE's flush fails with EIO or ENOTCONN) close() itself
    fails; for a read nothing is lost by that (the descriptor is gone either way), and the
    error must not replace the read's own outcome."""
    try:
        os.close(fd)
    except OSError:
        pass


def unreachable(root: str, device: int) -> str | None:
    """Why the device under `root` no longer answers (unmounted: its mount point is on another
    device now; a dead disk or a dropped share: the folder cannot be read), or None. Asked
    after a file failed, to tell a gone card or archive from one bad file."""
    try:
        if os.stat(root).st_dev != device:
            return "it is no longer mounted"
        os.listdir(root)  # a directory read reaches the device itself
    except OSError as e:
        return e.strerror or str(e)
    return None


def drop_cache(fd: int) -> None:
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def makedirs_synced(root: str, rel_folder: str) -> str:
    """Create a folder under root and fsync each new level, so a crash cannot lose the entry."""
    path = root
    for part in [p for p in rel_folder.split("/") if p]:
        parent, path = path, os.path.join(path, part)
        try:
            os.mkdir(path)
        except FileExistsError:
            if not os.path.isdir(path):
                raise NotADirectoryError(errno.ENOTDIR, "exists and is not a folder", path) from None
            continue
        fsync_dir(parent)
    return path


NAME_MAX = 255  # bytes, on every file system a camera card or archive disk uses


def partial_name(final_name: str, token: str) -> str:
    # Hidden, recognisable, and unique per attempt so two attempts never share a partial.
    name = f".{final_name}.{token}{PARTIAL_SUFFIX}"
    if len(os.fsencode(name)) <= NAME_MAX:
        return name
    # A card name near the length limit leaves no room for the decoration: use its hash.
    short = xxhash.xxh3_64_hexdigest(os.fsencode(final_name))
    return f".{short}.{token}{PARTIAL_SUFFIX}"


def remove_stale_partials(folder: str, keep: Callable[[str], bool] = lambda n: False) -> int:
    """Remove partials a killed run left in `folder`. The destination lock makes this safe."""
    removed = 0
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    for name in names:
        if name.startswith(".") and name.endswith(PARTIAL_SUFFIX) and not keep(name):
            try:
                os.unlink(os.path.join(folder, name))
                removed += 1
            except OSError:
                pass
    return removed


def set_mtime(path: str, mtime_ns: int) -> None:
    os.utime(path, ns=(mtime_ns, mtime_ns))


def write_atomic(path, data: bytes) -> None:
    """A report or manifest appears whole or not at all: temp file, fsync, rename, fsync dir.
    The temporary name ends in .tmp (never .mhl/.xml/.html), so no reader mistakes it."""
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(folder)
