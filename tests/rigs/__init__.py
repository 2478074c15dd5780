"""Real file systems and services for tests: loop-mounted images, FUSE mounts, daemons.

What every FUSE rig needs is here, once. The rig modules that also run as a daemon script
(`python tests/rigs/faultfs.py ...`) import it inside their test-side functions: as a script,
`rigs` is not importable, and the daemon does not need it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path


def fuse_missing() -> str | None:
    """Why a FUSE rig (mfusepy over libfuse 3) cannot run here, or None: for a skip."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is absent"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is not installed (Debian: fuse3)"
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as e:  # OSError: libfuse3 itself is absent
        return f"mfusepy (with libfuse 3) cannot be loaded: {e}"
    return None


def in_mount_table(path) -> bool:
    """In the mount table: os.path.ismount is False for a FUSE mount whose daemon died (stat
    gives ENOTCONN), which still has to be unmounted."""
    want = os.path.realpath(path)
    with open("/proc/self/mounts", encoding="utf-8", errors="surrogateescape") as fh:
        for line in fh:
            # the table writes a space as \040 (octal escapes)
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), line.split()[1])
            if point == want:
                return True
    return False


def wait_mounted(mount, proc: subprocess.Popen, log: Path, what: str,
                 error: type[Exception] = RuntimeError, seconds: float = 15) -> None:
    """Wait until `proc` (a FUSE daemon or sshfs) has `mount` in the mount table; raise
    `error` with the last line of its log when it died or took longer than `seconds`."""
    deadline = time.monotonic() + seconds
    while not in_mount_table(mount):
        if proc.poll() is not None or time.monotonic() > deadline:
            why = log.read_text(errors="replace").strip().splitlines()[-1:] or ["timeout"]
            raise error(f"{what} did not mount: {why[0]}")
        time.sleep(0.05)
