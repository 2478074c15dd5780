"""One writer per destination: a second `ingest` on the same destination is refused.

flock is released by the kernel when its holder dies, so a lock left by a killed run is stale by
construction and is simply taken over; the file's text only names the holder for the message.
"""

from __future__ import annotations

import fcntl
import os
import socket

from ingest.catalog import STATE_DIR

LOCK_NAME = "lock"


class LockedError(RuntimeError):
    pass


class DestinationLock:
    def __init__(self, dest_root: str, command: str):
        self.path = os.path.join(dest_root, STATE_DIR, LOCK_NAME)
        self.command = command
        self.fd: int | None = None

    def acquire(self) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "another ingest"
            os.close(fd)
            raise LockedError(
                f"{os.path.dirname(os.path.dirname(self.path))} is in use by {holder}; "
                "wait for it to finish, or stop it first") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}: {self.command}\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        """Never raises: on a destination that died mid-run (pulled out, share dropped) the
        lock file cannot be emptied or even closed cleanly, and that must not cost the run its
        report. The kernel drops the flock with the descriptor; a holder's name left in the
        file only names a dead run, and the next run takes the lock over."""
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        for step in (lambda: os.ftruncate(fd, 0), lambda: fcntl.flock(fd, fcntl.LOCK_UN),
                     lambda: os.close(fd)):
            try:
                step()
            except OSError:
                pass

    def __enter__(self) -> DestinationLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
