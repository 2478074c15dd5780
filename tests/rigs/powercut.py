"""A power-cut rig: a FUSE file system over a backing folder that loses unsynced data.

It behaves like a journalling file system that orders metadata but not data (as ext4
with `data=writeback`): what a program does to NAMES reaches the backing folder at once, the
bytes it writes reach it only when that file is fsynced. A "power cut" at a seeded operation
SIGKILLs the process under test before that operation is carried out, drops every unsynced
byte, and unmounts. The backing folder then holds exactly what the disk would hold after a
power loss, and a test checks it, or runs the program again on it.

What reaches the backing folder when:

- at once (metadata, as a journal commits it): create (an empty file), mkdir, rename (a file
  renamed before its data was synced keeps the size its data had on disk: zero for a new
  file), unlink, rmdir, link, symlink, chmod, chown, utimens, and truncate/ftruncate/O_TRUNC
  to a size (a size change is journalled: a file cut shorter is shorter, one made longer
  reads zeros past the data that was synced);
- only on fsync or fdatasync of that file (FUSE's fsync, datasync flag or not): the data
  written, and with it the size it gives the file. flush and release (close) persist
  nothing, nor does fsync of a folder (names are durable already, so this rig cannot find
  a missing folder fsync; it finds a missing or misordered FILE fsync);
- reads, getattr and readdir see the unsynced data and sizes, as a page cache would;
- times: utimens reaches the disk at once; a write's new mtime goes with its data;
- a clean unmount (no cut) writes everything back, as `umount` would.

Unsynced data is kept in this process's memory per backing inode (so it follows a rename),
and is forgotten when the inode dies (unlinked and closed) or at the cut.

Counting and the cut: every operation that changes something is counted, by kind (`create`,
`mkdir`, `write`, `truncate`, `fsync`, `fsyncdir`, `rename`, `unlink`, `rmdir`, `link`,
`symlink`, `chmod`, `chown`, `utimens`) and in all (`any`). With `cut=(kind, n)`, the n-th
operation of that kind is not carried out: the rig SIGKILLs the process group of the pid in
the victim file (the process under test and its workers: a power cut stops them all), drops
what is unsynced, answers that operation and any later one with EIO, and unmounts. Without a
cut it only counts, which a test uses to learn how many operations a whole run makes.
`cut=(kind, n, text)` counts only the operations of that kind whose path contains `text`
(a rename's path is "OLD -> NEW"): `("rename", 1, "/ascmhl/")` cuts before the first
rename into the ASC MHL folder, wherever it falls in the run.

POSIX and flock locks are left to the kernel (local to this machine, as for one host), and
shared mmap works (SQLite's WAL index, `-shm`), through the page cache.

Runs in a process of its own (single-threaded FUSE loop):

    with PowerCutRig(backing, mountpoint, cut=("fsync", 7)) as rig:
        proc = subprocess.Popen([...], start_new_session=True)
        rig.set_victim(proc.pid)
        proc.wait()
    rig.stats   # counts; the cut: kind, n, `any` (all ops so far), path, the pid killed,
                # the files whose unsynced data was dropped (`dropped`), the last operations

`missing()` says why the rig cannot run here (no /dev/fuse, fusermount3 or mfusepy).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter, deque
from pathlib import Path

KINDS = ("create", "mkdir", "write", "truncate", "fsync", "fsyncdir", "rename", "unlink",
         "rmdir", "link", "symlink", "chmod", "chown", "utimens")


# --- the file system (runs in the rig's own process) ----------------------------------------


class _Inode:
    """The page cache of one backing file: its whole current content while it is cached."""

    __slots__ = ("data", "dirty", "times", "wrote_at", "path")

    def __init__(self, data: bytearray, path: str):
        self.data = data
        self.dirty = False  # holds bytes (or a size) the backing file does not
        self.times: tuple[int, int] | None = None  # set by utimens after the last write
        self.wrote_at = 0
        self.path = path  # last known name, for the report


class _Handle:
    __slots__ = ("fd", "ino", "path")

    def __init__(self, fd: int, ino: int, path: str):
        self.fd, self.ino, self.path = fd, ino, path


def _operations(backing: str, cut: tuple | None, victim: str, stats_path: str):
    import mfusepy

    fuse_error = mfusepy.FuseOSError

    class PowerCutFS(mfusepy.Operations):
        use_ns = True

        def __init__(self):
            self.root = os.path.realpath(backing)
            self.cut = cut
            self.counts: Counter[str] = Counter()
            self.cache: dict[int, _Inode] = {}  # backing inode -> its cached content
            self.handles: dict[int, _Handle] = {}
            self.open_count: Counter[int] = Counter()
            self.next_fh = 1
            self.recent: deque[list] = deque(maxlen=16)  # [op, times in a row]
            self.synced_bytes = 0
            self.cut_done: dict | None = None
            self.hits = 0  # operations that match the cut point so far
            self.written_at_unmount: list[dict] = []

        # -- counting and the cut ----------------------------------------------------------
        def _op(self, kind: str, path: str | None) -> None:
            if self.cut_done is not None:
                raise fuse_error(errno.EIO)
            self.counts[kind] += 1
            self.counts["any"] += 1
            line = f"{kind} {path}"
            if self.recent and self.recent[-1][0] == line:
                self.recent[-1][1] += 1  # 60 writes to one file: one line
            else:
                self.recent.append([line, 1])
            if self.cut and self.cut[0] in (kind, "any") and \
                    (len(self.cut) < 3 or self.cut[2] in (path or "")):
                self.hits += 1
                if self.hits == self.cut[1]:
                    self._power_cut(kind, path)
                    raise fuse_error(errno.EIO)

        def _power_cut(self, kind: str, path: str | None) -> None:
            pid = _read_victim(victim)
            killed = None
            if pid:
                try:
                    os.killpg(pid, signal.SIGKILL)  # its session: its workers die with it
                    killed = pid
                except ProcessLookupError:
                    try:
                        os.kill(pid, signal.SIGKILL)
                        killed = pid
                    except ProcessLookupError:
                        pass
            dropped = [{"path": n.path, "bytes": len(n.data)}
                       for n in self.cache.values() if n.dirty]
            self.cache.clear()  # the page cache is gone: nothing unsynced reaches the disk
            self.cut_done = {"kind": kind, "n": self.counts[kind], "any": self.counts["any"],
                             "hits": self.hits,
                             "path": path, "killed": killed, "dropped": dropped,
                             "last_ops": [f"{line} (x{n})" if n > 1 else line
                                          for line, n in self.recent]}
            self.write_stats()
            mfusepy.fuse_exit()  # stop answering: the loop ends and the mount goes

        def destroy(self, path):
            """A clean unmount (no cut) writes back what is cached, as `umount` would."""
            if self.cut_done is not None:
                return
            for ino, node in list(self.cache.items()):
                if not node.dirty:
                    continue
                self.written_at_unmount.append({"path": node.path, "bytes": len(node.data)})
                try:
                    fd = os.open(self._real(node.path), os.O_WRONLY | os.O_NOFOLLOW)
                except OSError:
                    continue  # no name left: nothing a disk would show
                try:
                    if os.fstat(fd).st_ino == ino:
                        self._write_back(fd, node)
                finally:
                    os.close(fd)

        def write_stats(self) -> None:
            out = {"counts": dict(self.counts), "cut": self.cut_done,
                   "synced_bytes": self.synced_bytes,
                   "written_at_unmount": self.written_at_unmount,
                   "unsynced_at_end": [{"path": n.path, "bytes": len(n.data)}
                                       for n in self.cache.values() if n.dirty]}
            tmp = stats_path + ".tmp"
            with open(tmp, "w") as fh:
                json.dump(out, fh)
            os.replace(tmp, stats_path)

        # -- helpers -----------------------------------------------------------------------
        def _real(self, path: str) -> str:
            return os.path.join(self.root, path.lstrip("/"))

        def _cached(self, ino: int, fd: int, path: str) -> _Inode:
            node = self.cache.get(ino)
            if node is None:
                size = os.fstat(fd).st_size
                node = _Inode(bytearray(os.pread(fd, size, 0)) if size else bytearray(), path)
                self.cache[ino] = node
            return node

        def _forget_if_dead(self, ino: int) -> None:
            if self.open_count[ino]:
                return
            self.open_count.pop(ino, None)
            self.cache.pop(ino, None)

        def _flush(self, h: _Handle) -> None:
            node = self.cache.get(h.ino)
            if node is None or not node.dirty:
                return
            # fsync through a read-only descriptor syncs the file too: write through a
            # descriptor of our own (the file may have no name left).
            fd = os.open(f"/proc/self/fd/{h.fd}", os.O_WRONLY)
            try:
                self._write_back(fd, node)
            finally:
                os.close(fd)

        def _write_back(self, fd: int, node: _Inode) -> None:
            os.ftruncate(fd, len(node.data))
            view = memoryview(node.data)
            done = 0
            while done < len(view):
                done += os.pwrite(fd, view[done:], done)
            self.synced_bytes += len(view)
            # Writing changed the backing file's times; keep the ones the program saw.
            if node.times is not None:
                os.utime(fd, ns=node.times)
            elif node.wrote_at:
                os.utime(fd, ns=(node.wrote_at, node.wrote_at))
            node.dirty = False

        def _stat(self, st: os.stat_result) -> dict:
            out = {k: getattr(st, k) for k in ("st_mode", "st_nlink", "st_uid", "st_gid",
                                                "st_size", "st_ino", "st_rdev", "st_blksize")}
            out.update(st_atime=st.st_atime_ns, st_mtime=st.st_mtime_ns,
                       st_ctime=st.st_ctime_ns, st_blocks=st.st_blocks)
            node = self.cache.get(st.st_ino)
            if node is not None and node.dirty:
                out["st_size"] = len(node.data)
                out["st_blocks"] = (len(node.data) + 511) // 512
                if node.times is not None:
                    out["st_atime"], out["st_mtime"] = node.times
                elif node.wrote_at:
                    out["st_mtime"] = out["st_ctime"] = node.wrote_at
            return out

        def _new_handle(self, fd: int, path: str) -> int:
            ino = os.fstat(fd).st_ino
            fh = self.next_fh
            self.next_fh += 1
            self.handles[fh] = _Handle(fd, ino, path)
            self.open_count[ino] += 1
            node = self.cache.get(ino)
            if node is not None:
                node.path = path
            return fh

        def _alive(self) -> None:
            if self.cut_done is not None:
                raise fuse_error(errno.EIO)

        # -- metadata ----------------------------------------------------------------------
        def getattr(self, path, fh=None):
            self._alive()
            if fh is not None and fh in self.handles:
                return self._stat(os.fstat(self.handles[fh].fd))
            return self._stat(os.lstat(self._real(path)))

        def access(self, path, amode):
            self._alive()
            if not os.access(self._real(path), amode):
                raise fuse_error(errno.EACCES)
            return 0

        def readdir(self, path, fh):
            self._alive()
            return [".", "..", *os.listdir(self._real(path))]

        def readlink(self, path):
            self._alive()
            return os.readlink(self._real(path))

        def statfs(self, path):
            self._alive()
            sv = os.statvfs(self._real(path))
            return {k: getattr(sv, k) for k in (
                "f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files",
                "f_flag", "f_frsize", "f_namemax")}

        def mkdir(self, path, mode):
            self._op("mkdir", path)
            os.mkdir(self._real(path), mode)
            return 0

        def rmdir(self, path):
            self._op("rmdir", path)
            os.rmdir(self._real(path))
            return 0

        def mknod(self, path, mode, dev):
            self._op("create", path)
            os.mknod(self._real(path), mode, dev)
            return 0

        def symlink(self, target, source):
            self._op("symlink", target)
            os.symlink(source, self._real(target))
            return 0

        def link(self, target, source):
            self._op("link", target)
            os.link(self._real(source), self._real(target))
            return 0

        def unlink(self, path):
            self._op("unlink", path)
            real = self._real(path)
            st = os.lstat(real)
            os.unlink(real)
            if st.st_nlink <= 1:
                self._forget_if_dead(st.st_ino)
            return 0

        def rename(self, old, new):
            self._op("rename", f"{old} -> {new}")
            real_new = self._real(new)
            try:
                replaced = os.lstat(real_new)
            except FileNotFoundError:
                replaced = None
            os.rename(self._real(old), real_new)
            if replaced is not None and replaced.st_nlink <= 1 and \
                    not os.path.isdir(real_new):
                self._forget_if_dead(replaced.st_ino)
            moved = self.cache.get(os.lstat(real_new).st_ino)
            if moved is not None:
                moved.path = new
            return 0

        def chmod(self, path, mode):
            self._op("chmod", path)
            os.chmod(self._real(path), mode)
            return 0

        def chown(self, path, uid, gid):
            self._op("chown", path)
            os.lchown(self._real(path), uid, gid)
            return 0

        def utimens(self, path, times=None):
            self._op("utimens", path)
            real = self._real(path)
            now = time.time_ns()
            atime, mtime = times if times else (now, now)
            os.utime(real, ns=(atime, mtime), follow_symlinks=False)
            node = self.cache.get(os.lstat(real).st_ino)
            if node is not None:
                node.times = (atime, mtime)
            return 0

        def truncate(self, path, length, fh=None):
            self._op("truncate", path)
            if fh is not None and fh in self.handles:
                h = self.handles[fh]
                self._truncate(h.fd, h.ino, h.path, length)
            else:
                fd = os.open(self._real(path), os.O_WRONLY)
                try:
                    self._truncate(fd, os.fstat(fd).st_ino, path, length)
                finally:
                    os.close(fd)
            return 0

        def _truncate(self, fd: int, ino: int, path: str, length: int) -> None:
            # The size is metadata: it is journalled at once, for the backing file too.
            node = self.cache.get(ino)
            if node is not None:
                if length < len(node.data):
                    del node.data[length:]
                else:
                    node.data.extend(bytes(length - len(node.data)))
            os.ftruncate(fd, length)

        # -- files -------------------------------------------------------------------------
        def _open_backing(self, real: str, flags: int, mode: int = 0o644) -> int:
            acc = flags & os.O_ACCMODE
            keep = flags & (os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
            # The kernel gives O_APPEND writes their offset; pwrite must not append again.
            return os.open(real, keep | (os.O_RDONLY if acc == os.O_RDONLY else os.O_RDWR),
                           mode)

        def create(self, path, mode, fi=None):
            self._op("create", path)
            flags = fi if isinstance(fi, int) else os.O_WRONLY
            fd = self._open_backing(self._real(path), flags | os.O_CREAT, mode)
            return self._new_handle(fd, path)

        def open(self, path, flags):
            self._alive()
            fd = self._open_backing(self._real(path), flags)
            fh = self._new_handle(fd, path)
            if flags & os.O_TRUNC:
                self._op("truncate", path)
                h = self.handles[fh]
                self._truncate(h.fd, h.ino, path, 0)
            return fh

        def read(self, path, size, offset, fh):
            self._alive()
            h = self.handles[fh]
            node = self.cache.get(h.ino)
            if node is not None:
                return bytes(node.data[offset:offset + size])
            return os.pread(h.fd, size, offset)

        def write(self, path, data, offset, fh):
            self._op("write", path)
            h = self.handles[fh]
            node = self._cached(h.ino, h.fd, h.path)
            end = offset + len(data)
            if offset > len(node.data):
                node.data.extend(bytes(offset - len(node.data)))
            node.data[offset:end] = data
            node.dirty = True
            node.times = None
            node.wrote_at = time.time_ns()
            return len(data)

        def fsync(self, path, datasync, fh):
            self._op("fsync", path)
            self._flush(self.handles[fh])
            return 0

        def fsyncdir(self, path, datasync, fh):
            self._op("fsyncdir", path)
            return 0  # names are durable the moment they change

        def flush(self, path, fh):
            self._alive()
            return 0  # close() does not make data durable

        def release(self, path, fh):
            h = self.handles.pop(fh, None)
            if h is None:
                return 0
            self.open_count[h.ino] -= 1
            try:
                linked = os.fstat(h.fd).st_nlink > 0
            finally:
                os.close(h.fd)
            node = self.cache.get(h.ino)
            if not self.open_count[h.ino] and (not linked or (node and not node.dirty)):
                self._forget_if_dead(h.ino)  # dead, or clean: the disk holds what it holds
            return 0

    return PowerCutFS()


def _read_victim(path: str, wait: float = 5.0) -> int | None:
    deadline = time.monotonic() + wait
    while True:
        try:
            text = Path(path).read_text().strip()
            if text:
                return int(text)
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            return None
        time.sleep(0.02)


def serve(backing: str, mountpoint: str, cut: tuple | None, victim: str,
          stats: str) -> None:
    """The rig's process: mount, answer until unmounted or cut, write the stats."""
    import mfusepy

    ops = _operations(backing, cut, victim, stats)
    try:
        # hard_remove: an open file that is unlinked is unlinked (libfuse would otherwise
        # rename it to .fuse_hidden*, a name no real disk would keep after a power cut).
        mfusepy.FUSE(ops, mountpoint, foreground=True, nothreads=True, fsname="powercut",
                     hard_remove=True, auto_unmount=True, attr_timeout=0, entry_timeout=0)
    finally:
        if ops.cut_done is None:  # a cut wrote its stats already
            ops.write_stats()


# --- the test side -------------------------------------------------------------------------


class RigError(RuntimeError):
    pass


class PowerCutRig:
    """Mounts the rig over `backing` at `mountpoint` in its own process; always unmounts."""

    def __init__(self, backing: Path, mountpoint: Path, cut: tuple | None = None,
                 log: Path | None = None):
        if cut is not None and (cut[0] not in (*KINDS, "any") or cut[1] < 1 or len(cut) > 3):
            raise ValueError(f"not a cut point: {cut!r}")
        self.backing, self.mount = Path(backing), Path(mountpoint)
        self.cut = cut
        work = self.mount.parent
        tag = self.mount.name
        self.victim = work / f".{tag}.victim"
        self.stats_path = work / f".{tag}.stats.json"
        self.log = log or work / f".{tag}.rig.log"
        self.proc: subprocess.Popen | None = None
        self.stats: dict = {}

    def start(self, timeout: float = 10.0) -> PowerCutRig:
        self.mount.mkdir(parents=True, exist_ok=True)
        for p in (self.victim, self.stats_path):
            p.unlink(missing_ok=True)
        argv = [sys.executable, __file__, str(self.backing), str(self.mount),
                str(self.victim), str(self.stats_path)]
        if self.cut:
            argv += [self.cut[0], str(self.cut[1]), *self.cut[2:]]
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=out, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not os.path.ismount(self.mount):
            if self.proc.poll() is not None:
                raise RigError(f"the rig exited ({self.proc.returncode}): "
                               + self.log.read_text()[-2000:])
            if time.monotonic() > deadline:
                self.stop()
                raise RigError("the rig did not mount in time")
            time.sleep(0.02)
        return self

    def set_victim(self, pid: int) -> None:
        """The process (and its process group) the cut kills."""
        tmp = self.victim.with_suffix(".tmp")
        tmp.write_text(str(pid))
        os.replace(tmp, self.victim)

    @property
    def cut_happened(self) -> bool:
        return bool(self.stats.get("cut"))

    def wait_cut(self, timeout: float = 10.0) -> bool:
        """After the victim died: wait for the rig to finish its cut and go."""
        if self.proc is None:
            return False
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def stop(self) -> dict:
        """Unmount (if the cut has not already), wait for the rig, and read its stats."""
        if self.proc is not None:
            if self.proc.poll() is None and os.path.ismount(self.mount):
                subprocess.run(["fusermount3", "-u", str(self.mount)], capture_output=True)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if os.path.ismount(self.mount):  # the rig died without unmounting
            subprocess.run(["fusermount3", "-u", "-z", str(self.mount)], capture_output=True)
        try:
            self.stats = json.loads(self.stats_path.read_text())
        except (OSError, ValueError):
            self.stats = {}
        return self.stats

    def __enter__(self) -> PowerCutRig:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":
    _backing, _mount, _victim, _stats = sys.argv[1:5]
    _cut = (sys.argv[5], int(sys.argv[6]), *sys.argv[7:8]) if len(sys.argv) > 6 else None
    serve(_backing, _mount, _cut, _victim, _stats)
