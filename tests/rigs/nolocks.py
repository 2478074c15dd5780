"""A file system that refuses POSIX record locks: a FUSE passthrough over a backing folder
whose every fcntl lock request (F_SETLK, F_SETLKW, F_GETLK) fails with ENOLCK ("No locks
available"), as on an NFS mount whose lock service is down or a share mounted without lock
support. Everything else passes through to the backing folder, including shared mmap. flock()
is not handled here, so the kernel keeps it local (ingest's destination lock still works).

    with nolocks_mount(tmp_path / "backing", tmp_path / "mnt") as mnt:
        ...

The file system runs in a process of its own (`python nolocks.py BACKING MOUNT`, single-threaded
FUSE loop); the context manager unmounts it and waits for it. `missing()` says why it cannot
run here.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def nolocks_mount(backing: Path, mount: Path) -> Iterator[Path]:
    backing.mkdir(parents=True, exist_ok=True)
    mount.mkdir(parents=True, exist_ok=True)
    log = mount.parent / f"{mount.name}.nolocks.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, __file__, str(backing), str(mount)],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    from rigs import in_mount_table, wait_mounted

    try:
        wait_mounted(mount, proc, log, "the no-locks file system")
        yield mount
    finally:
        if in_mount_table(mount):
            subprocess.run(["fusermount3", "-u", str(mount)], capture_output=True, timeout=30)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        if in_mount_table(mount):
            subprocess.run(["fusermount3", "-u", "-z", str(mount)], capture_output=True,
                           timeout=30)


def _serve(backing: str, mount: str) -> None:
    import mfusepy
    from mfusepy import FuseOSError

    def oserror(fn):
        def wrapped(self, path, *args):
            try:
                return fn(self, os.path.join(backing, path.lstrip("/")), *args)
            except OSError as e:
                raise FuseOSError(e.errno or errno.EIO) from None
        wrapped.__name__ = fn.__name__
        return wrapped

    class NoLocks(mfusepy.Operations):
        use_ns = True

        @oserror
        def getattr(self, path, fh=None):
            st = os.lstat(path)
            out = {k: getattr(st, k) for k in ("st_mode", "st_nlink", "st_uid", "st_gid",
                                                "st_size", "st_ino", "st_dev")}
            out.update(st_atime=st.st_atime_ns, st_mtime=st.st_mtime_ns, st_ctime=st.st_ctime_ns)
            return out

        @oserror
        def access(self, path, amode):
            if not os.access(path, amode):
                raise FuseOSError(errno.EACCES)
            return 0

        @oserror
        def readdir(self, path, fh):
            return [".", "..", *os.listdir(path)]

        @oserror
        def mkdir(self, path, mode):
            os.mkdir(path, mode)
            return 0

        @oserror
        def rmdir(self, path):
            os.rmdir(path)
            return 0

        @oserror
        def unlink(self, path):
            os.unlink(path)
            return 0

        def rename(self, old, new):
            try:
                os.rename(os.path.join(backing, old.lstrip("/")),
                          os.path.join(backing, new.lstrip("/")))
            except OSError as e:
                raise FuseOSError(e.errno or errno.EIO) from None
            return 0

        @oserror
        def chmod(self, path, mode):
            os.chmod(path, mode)
            return 0

        @oserror
        def chown(self, path, uid, gid):
            os.chown(path, uid, gid)
            return 0

        @oserror
        def utimens(self, path, times=None):
            if times is None:
                os.utime(path)
            else:
                os.utime(path, ns=tuple(int(t) for t in times))
            return 0

        @oserror
        def truncate(self, path, length, fh=None):
            if fh is not None:
                os.ftruncate(fh, length)
            else:
                os.truncate(path, length)
            return 0

        @oserror
        def open(self, path, flags):
            return os.open(path, flags & ~(os.O_CREAT | os.O_EXCL))

        @oserror
        def create(self, path, mode, fi=None):
            return os.open(path, os.O_RDWR | os.O_CREAT, mode)

        def read(self, path, size, offset, fh):
            return os.pread(fh, size, offset)

        def write(self, path, data, offset, fh):
            return os.pwrite(fh, data, offset)

        def flush(self, path, fh):
            return 0

        def release(self, path, fh):
            os.close(fh)
            return 0

        def fsync(self, path, datasync, fh):
            (os.fdatasync if datasync else os.fsync)(fh)
            return 0

        @oserror
        def statfs(self, path):
            sv = os.statvfs(path)
            return {k: getattr(sv, k) for k in ("f_bsize", "f_frsize", "f_blocks", "f_bfree",
                                                "f_bavail", "f_files", "f_ffree", "f_favail",
                                                "f_flag", "f_namemax")}

        def lock(self, path, fh, cmd, lock):
            raise FuseOSError(errno.ENOLCK)  # what this rig is for

    mfusepy.FUSE(NoLocks(), mount, foreground=True, nothreads=True, fsname="nolocks")


if __name__ == "__main__":
    _serve(os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]))
