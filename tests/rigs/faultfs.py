"""A pass-through FUSE file system that injects real faults below Python, for tests.

    python tests/rigs/faultfs.py BACKING MOUNTPOINT --control SOCKET

Everything under MOUNTPOINT is BACKING's, served by this process through the kernel's FUSE
layer, so the program under test meets real system calls that fail, real bytes that differ,
and a real file system that vanishes, not a wrapped Python call. The faults are set and read
back over a Unix socket while the mount is in use (one JSON request per connection, one JSON
answer), and every fault injected is counted (a vanished file system shows as its daemon's death
by SIGKILL), so a test can assert that its fault really fired.

Faults (`set` replaces all of them, and starts every count and trigger again at zero):

    read_flip   [{"path": GLOB, "offset": N, "bit": B, "times": K}]
                flip bit B of byte N of a matching file in what the first K reads covering
                byte N return (times null: every such read); the file itself is untouched
    write_flip  [{"path": GLOB, "offset": N, "bit": B, "times": K}]
                the same for data written: the backing file gets the flipped bit
    read_eio    [GLOB, ...]   every read of a matching file fails with EIO
    die         {} or {"after": TRIGGER}   the device dies: from then on every operation
                fails with EIO (at once, or once the trigger is reached)
    vanish      {} or {"after": TRIGGER}   the daemon SIGKILLs itself; the kernel then
                answers ENOTCONN ("Transport endpoint is not connected") until unmounted
    trace       ["open", ...]   not a fault: log these operations as events (with the
                requesting thread's id), to see what a program under test did

    TRIGGER     {"op": NAME, "path": GLOB, "count": N}   after N operations NAME (read,
                write, rename, open, create, ...) on matching paths succeeded, or
                {"op": NAME, "bytes": N}                 after N bytes read or written;
                with "main_thread": true only operations a process's main thread asked for
                count (FUSE tells which thread asked)

GLOB is an fnmatch pattern (`*` crosses `/`) for the path inside the mount, without a leading
slash. A file is known by the path it was opened under (renames later do not change that).

`FaultMount` at the end is the test side: it starts this daemon, waits for the mount, sends
requests, and unmounts (fusermount3 -u, else -uz) and reaps the daemon when done.
"""

from __future__ import annotations

import errno
import fnmatch
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter

# --- the daemon -------------------------------------------------------------------------------


class _Trigger:
    """Counts matching operations from the moment it is armed; `due` once the limit is met."""

    def __init__(self, spec: dict | None):
        spec = spec or {}
        self.op, self.glob = spec.get("op"), spec.get("path", "*")
        self.count, self.bytes = spec.get("count"), spec.get("bytes")
        self.main_thread = spec.get("main_thread", False)
        self.seen = 0
        # No "after": due at once.
        self.due = self.op is None

    def tick(self, op: str, rel: str, nbytes: int, pid: int) -> None:
        if self.due or op != self.op or not fnmatch.fnmatchcase(rel, self.glob):
            return
        if self.main_thread and not _is_main_thread(pid):
            return
        self.seen += nbytes if self.bytes is not None else 1
        limit = self.bytes if self.bytes is not None else self.count
        self.due = self.seen >= limit


def _is_main_thread(tid: int) -> bool:
    """Whether the thread that made a request is its process's main thread (FUSE names the
    thread, not the process)."""
    try:
        with open(f"/proc/{tid}/status", encoding="ascii") as fh:
            return any(line.split() == ["Tgid:", str(tid)] for line in fh)
    except OSError:
        return False


class _State:
    """The faults in force and what was injected; shared by the FUSE threads and the socket."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.set({})

    def set(self, faults: dict) -> None:
        unknown = set(faults) - {"read_flip", "write_flip", "read_eio", "die", "vanish", "trace"}
        if unknown:
            raise ValueError(f"unknown faults: {sorted(unknown)}")
        with self.lock:
            # Each flip rule keeps its own budget of reads/writes left to corrupt.
            self.read_flip = [dict(r, left=r.get("times", 1)) for r in faults.get("read_flip", [])]
            self.write_flip = [dict(r, left=r.get("times", 1))
                               for r in faults.get("write_flip", [])]
            self.read_eio = list(faults.get("read_eio", []))
            self.die = _Trigger(faults["die"].get("after")) if "die" in faults else None
            self.vanish = _Trigger(faults["vanish"].get("after")) if "vanish" in faults else None
            self.counts: Counter = Counter()
            self.events: list[dict] = []  # the first injections, for a failing test's message
            self.trace = faults.get("trace", [])  # ops to log as events too (opens, renames...)

    def report(self) -> dict:
        with self.lock:
            return {"counts": dict(self.counts), "events": list(self.events),
                    "dead": bool(self.die and self.die.due)}

    def note(self, fault: str, **where) -> None:
        """Caller holds the lock."""
        self.counts[fault] += 1
        if len(self.events) < 500:
            self.events.append(dict(where, fault=fault, at=time.time()))


def _flip(data: bytes, offset: int, rules: list[dict], rel: str, state: _State,
          fault: str, pid: int) -> bytes:
    """Flip the rules' bit in `data` (which sits at `offset` in file `rel`) where one applies."""
    out = None
    for rule in rules:
        at = rule["offset"] - offset
        if rule["left"] == 0 or not 0 <= at < len(data) or \
                not fnmatch.fnmatchcase(rel, rule["path"]):
            continue
        if rule["left"] is not None:
            rule["left"] -= 1
        out = bytearray(data) if out is None else out
        out[at] ^= 1 << rule.get("bit", 0)
        state.note(fault, path=rel, offset=rule["offset"], request=[offset, len(data)], pid=pid)
    return data if out is None else bytes(out)


def serve(backing: str, mountpoint: str, control: str) -> None:
    import mfusepy as fuse  # only the daemon needs it: the test side imports this module too

    state = _State()
    backing = os.path.realpath(backing)

    class FaultFS(fuse.Operations):
        use_ns = True  # times in integer nanoseconds, as the engine sets them
        # Ops on an open file or folder may come without a path (always where it was unlinked
        # while open): they use the fd it was opened as, and the name it was opened under.
        flag_nopath = flag_nullpath_ok = True

        def __init__(self) -> None:
            self.names: dict[int, str] = {}  # fd -> the path it was opened under

        # Every operation passes the gate first: a dead device fails all of them, and a
        # vanishing one takes the whole daemon down with it, mid-request.
        def _gate(self, op: str, rel: str) -> None:
            with state.lock:
                if state.vanish is not None and state.vanish.due:
                    os.kill(os.getpid(), signal.SIGKILL)
                if state.die is not None and state.die.due:
                    state.note("dead_eio", op=op, path=rel, pid=fuse.fuse_get_context()[2])
                    raise fuse.FuseOSError(errno.EIO)

        def _done(self, op: str, rel: str, nbytes: int = 0) -> None:
            pid = fuse.fuse_get_context()[2]
            with state.lock:
                state.counts[f"op_{op}"] += 1
                if op in state.trace and len(state.events) < 5000:
                    state.events.append({"op": op, "path": rel, "bytes": nbytes, "pid": pid,
                                         "at": time.time()})
                for trigger in (state.die, state.vanish):
                    if trigger is not None:
                        trigger.tick(op, rel, nbytes, pid)

        def _real(self, path: str) -> str:
            return os.path.join(backing, path.lstrip("/"))

        def _rel(self, path: str | None, fd: int | None = None) -> str:
            if fd is not None and fd in self.names:
                return self.names[fd]
            return (path or "").lstrip("/")

        # -- metadata --
        def getattr(self, path, fh=None):
            self._gate("getattr", self._rel(path, fh))
            st = os.fstat(fh) if fh is not None else os.lstat(self._real(path))
            attrs = {k: getattr(st, k) for k in ("st_mode", "st_ino", "st_nlink", "st_uid",
                                                  "st_gid", "st_size", "st_blocks")}
            attrs.update(st_atime=st.st_atime_ns, st_mtime=st.st_mtime_ns,
                         st_ctime=st.st_ctime_ns)
            return attrs

        def access(self, path, amode):
            self._gate("access", self._rel(path))
            if not os.access(self._real(path), amode):
                raise fuse.FuseOSError(errno.EACCES)
            return 0

        def statfs(self, path):
            self._gate("statfs", self._rel(path))
            sv = os.statvfs(self._real(path))
            return {k: getattr(sv, k) for k in ("f_bsize", "f_frsize", "f_blocks", "f_bfree",
                                                 "f_bavail", "f_files", "f_ffree", "f_favail",
                                                 "f_flag", "f_namemax")}

        def chmod(self, path, mode):
            self._gate("chmod", self._rel(path))
            os.chmod(self._real(path), mode)
            return 0

        def chown(self, path, uid, gid):
            self._gate("chown", self._rel(path))
            os.lchown(self._real(path), uid, gid)
            return 0

        def utimens(self, path, times=None):
            self._gate("utimens", self._rel(path))
            os.utime(self._real(path), ns=times)
            return 0

        def truncate(self, path, length, fh=None):
            self._gate("truncate", self._rel(path, fh))
            if fh is not None:
                os.ftruncate(fh, length)
            else:
                os.truncate(self._real(path), length)
            return 0

        def readlink(self, path):
            self._gate("readlink", self._rel(path))
            return os.readlink(self._real(path))

        # -- names --
        def _name_op(self, op: str, path: str, call, *args) -> int:
            rel = self._rel(path)
            self._gate(op, rel)
            call(*args)
            self._done(op, rel)
            return 0

        def mkdir(self, path, mode):
            return self._name_op("mkdir", path, os.mkdir, self._real(path), mode)

        def rmdir(self, path):
            return self._name_op("rmdir", path, os.rmdir, self._real(path))

        def unlink(self, path):
            return self._name_op("unlink", path, os.unlink, self._real(path))

        def symlink(self, target, source):
            return self._name_op("symlink", target, os.symlink, source, self._real(target))

        def link(self, target, source):
            return self._name_op("link", target, os.link, self._real(source), self._real(target))

        def rename(self, old, new):
            # Counted under the old name: a committed copy is a partial renamed to its name.
            return self._name_op("rename", old, os.rename, self._real(old), self._real(new))

        def mknod(self, path, mode, dev):
            return self._name_op("mknod", path, os.mknod, self._real(path), mode, dev)

        # -- directories --
        def opendir(self, path):
            rel = self._rel(path)
            self._gate("opendir", rel)
            fd = os.open(self._real(path), os.O_RDONLY | os.O_DIRECTORY)
            self.names[fd] = rel
            return fd

        def readdir(self, path, fh):
            rel = self._rel(path, fh)
            self._gate("readdir", rel)
            # With use_ino each entry needs its inode: glibc skips an entry whose inode is 0.
            out = [(".", {"st_ino": 1}, 0), ("..", {"st_ino": 1}, 0)]
            with os.scandir(self._real(rel)) as entries:
                for e in entries:
                    mode = e.stat(follow_symlinks=False).st_mode
                    out.append((e.name, {"st_ino": e.inode(), "st_mode": mode}, 0))
            return out

        def fsyncdir(self, path, datasync, fh):
            self._gate("fsyncdir", self._rel(path, fh))
            os.fsync(fh)
            return 0

        def releasedir(self, path, fh):
            self.names.pop(fh, None)
            os.close(fh)  # never refused: the kernel ignores the answer, the fd must go
            return 0

        # -- files --
        def open(self, path, flags):
            rel = self._rel(path)
            self._gate("open", rel)
            fd = os.open(self._real(path), flags)
            self.names[fd] = rel
            self._done("open", rel)
            return fd

        def create(self, path, mode, flags):
            rel = self._rel(path)
            self._gate("create", rel)
            fd = os.open(self._real(path), flags | os.O_CREAT, mode)
            self.names[fd] = rel
            self._done("create", rel)
            return fd

        def read(self, path, size, offset, fh):
            rel = self._rel(path, fh)
            self._gate("read", rel)
            pid = fuse.fuse_get_context()[2]  # the reading thread, for the test's message
            with state.lock:
                if any(fnmatch.fnmatchcase(rel, g) for g in state.read_eio):
                    state.note("read_eio", path=rel, offset=offset, pid=pid)
                    raise fuse.FuseOSError(errno.EIO)
            data = os.pread(fh, size, offset)
            with state.lock:
                data = _flip(data, offset, state.read_flip, rel, state, "read_flip", pid)
            self._done("read", rel, len(data))
            return data

        def write(self, path, data, offset, fh):
            rel = self._rel(path, fh)
            self._gate("write", rel)
            pid = fuse.fuse_get_context()[2]
            with state.lock:
                flipped = _flip(data, offset, state.write_flip, rel, state, "write_flip", pid)
            os.pwrite(fh, flipped, offset)
            self._done("write", rel, len(data))
            return len(data)

        def flush(self, path, fh):
            # close() reports this answer: a dead device makes close fail, as it can for real.
            self._gate("flush", self._rel(path, fh))
            return 0

        def fsync(self, path, datasync, fh):
            self._gate("fsync", self._rel(path, fh))
            os.fsync(fh)
            return 0

        def release(self, path, fh):
            self.names.pop(fh, None)
            os.close(fh)  # never refused: the kernel ignores the answer, the fd must go
            return 0

    _serve_control(control, state)
    os.chdir("/")  # never hold the mount point busy
    os.umask(0)  # the kernel has applied the caller's umask to every mode it passes
    # kernel_cache: keep a file's page cache across opens, as a block device does. Without it
    # FUSE drops the cache on every open, which would hide whether the program under test
    # really reads past the page cache (posix_fadvise DONTNEED) when it says it does.
    # hard_remove: unlinking an open file removes it, instead of leaving .fuse_hidden* files.
    # use_ino: the backing files' inode numbers. No auto_unmount: a killed daemon must leave
    # its mount behind answering ENOTCONN, as a crashed FUSE file system does.
    fuse.FUSE(FaultFS(), mountpoint, foreground=True, fsname="faultfs", kernel_cache=True,
              hard_remove=True, use_ino=True)


def _serve_control(path: str, state: _State) -> None:
    """Answer one JSON request per connection on a Unix socket, from a thread of its own."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(8)

    def loop() -> None:
        while True:
            conn, _ = server.accept()
            with conn, conn.makefile("rwb") as stream:
                try:
                    req = json.loads(stream.readline())
                    if req["cmd"] == "set":
                        state.set(req["faults"])
                    answer = {"ok": True, **state.report()}
                except Exception as e:  # a bad request is the test's bug: say which
                    answer = {"ok": False, "error": f"{type(e).__name__}: {e}"}
                stream.write(json.dumps(answer).encode() + b"\n")

    threading.Thread(target=loop, name="control", daemon=True).start()


# --- the test side ----------------------------------------------------------------------------


class FaultMount:
    """BACKING served at MOUNTPOINT by the fault daemon for the length of a `with` block."""

    def __init__(self, backing, mountpoint, timeout: float = 15.0):
        self.backing, self.mountpoint = str(backing), str(mountpoint)
        self.timeout = timeout
        self.proc: subprocess.Popen | None = None
        # A socket path must fit in 108 bytes; pytest's folders may not.
        self.dir = tempfile.mkdtemp(prefix="faultfs-")
        self.control = os.path.join(self.dir, "control")
        self.log = os.path.join(self.dir, "daemon.log")

    def __enter__(self) -> FaultMount:
        os.makedirs(self.mountpoint, exist_ok=True)
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), self.backing, self.mountpoint,
                 "--control", self.control], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True)
        deadline = time.monotonic() + self.timeout
        try:
            while not (os.path.ismount(self.mountpoint) and os.path.exists(self.control)):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"faultfs did not mount {self.mountpoint}: "
                                       f"{self.daemon_log()[-2000:]}")
                time.sleep(0.02)
            self.request({"cmd": "get"})
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- talking to the daemon --
    def request(self, req: dict) -> dict:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(self.control)
            s.sendall(json.dumps(req).encode() + b"\n")
            answer = json.loads(s.makefile("rb").readline())
        if not answer["ok"]:
            raise ValueError(answer["error"])
        return answer

    def set(self, **faults) -> dict:
        """Replace the faults in force (none: a healthy pass-through); counts start at 0."""
        return self.request({"cmd": "set", "faults": faults})

    def counts(self) -> dict:
        """What was injected since the last `set`: {"counts": {...}, "events": [...], ...}."""
        return self.request({"cmd": "get"})

    def daemon_log(self) -> str:
        try:
            with open(self.log, encoding="utf-8", errors="replace") as fh:
                return fh.read()
        except OSError:
            return ""

    def killed(self) -> bool:
        """The daemon died of SIGKILL (a `vanish` fault fired, or `kill` was called)."""
        return self.proc is not None and self.proc.poll() == -signal.SIGKILL

    def kill(self) -> None:
        """The file system vanishes now: its daemon is killed, its mount stays (ENOTCONN)."""
        self.proc.kill()
        self.proc.wait()

    def close(self) -> None:
        """Unmount and reap the daemon, whatever state it is in; leaves nothing behind."""
        if self.proc is not None and self.proc.poll() is None:
            done = subprocess.run(["fusermount3", "-u", self.mountpoint], capture_output=True)
            if done.returncode != 0:  # busy: detach it now, the kernel finishes later
                subprocess.run(["fusermount3", "-uz", self.mountpoint], capture_output=True)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        from rigs import in_mount_table

        if in_mount_table(self.mountpoint):  # a killed daemon's mount, answering ENOTCONN
            subprocess.run(["fusermount3", "-uz", self.mountpoint], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def main(argv: list[str]) -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("backing")
    p.add_argument("mountpoint")
    p.add_argument("--control", required=True, help="Unix socket path for the test's requests")
    args = p.parse_args(argv)
    serve(args.backing, args.mountpoint, args.control)


if __name__ == "__main__":
    main(sys.argv[1:])
