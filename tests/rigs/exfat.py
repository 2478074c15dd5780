"""A real exFAT volume for tests: an image file on a loop device, mounted through exfat-fuse.

Camera cards are exFAT (SDXC, CFexpress); exFAT is also case-insensitive, keeps no owner or
mode bits, no symlinks, and times in 10 ms steps. `exfat_volume` makes one and always cleans up:
unmounted, loop device detached, even when the test fails.

    with exfat_volume(tmp_path / "card.img", tmp_path / "card") as vol:
        ...                       # vol.mount is a writable exFAT folder
        vol.remount(read_only=True)

`missing()` says why it cannot be done here (no /dev/fuse, no loop device, a tool absent, not
root), for a skip with a reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TOOLS = ("losetup", "mkfs.exfat", "mount.exfat-fuse", "umount")
# These live in sbin, which a non-login shell's PATH may leave out: look there too, so that an
# installed tool is never reported missing (and the test skipped) for want of a PATH entry.
_SEARCH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])


def _which(tool: str) -> str | None:
    return shutil.which(tool, path=_SEARCH)


def missing() -> str | None:
    """None when an exFAT loop mount can be made here, else why not."""
    if os.geteuid() != 0:
        return "attaching a loop device needs root"
    absent = [t for t in TOOLS if _which(t) is None]
    if absent:
        return f"not installed: {', '.join(absent)} (Debian: exfatprogs, exfat-fuse, mount)"
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is absent"
    if not os.path.exists("/dev/loop-control") and not os.path.exists("/dev/loop0"):
        return "no loop devices (/dev/loop-control, /dev/loop*)"
    return None


def _run(tool: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([_which(tool) or tool, *args], capture_output=True, text=True,
                          timeout=60)


def _first_line(r: subprocess.CompletedProcess) -> str:
    return ((r.stderr or r.stdout).strip().splitlines() or [f"exit {r.returncode}"])[0]


class ExfatError(RuntimeError):
    pass


class ExfatVolume:
    """One image file, its loop device while attached, and where it is mounted."""

    def __init__(self, image: Path, mount: Path):
        self.image, self.mount = Path(image), Path(mount)
        self.loop: str | None = None
        self.read_only = False

    def create(self, size_mib: int = 64, label: str = "CARD") -> None:
        with open(self.image, "wb") as fh:
            fh.truncate(size_mib << 20)
        r = _run("mkfs.exfat", "-L", label, str(self.image))
        if r.returncode != 0:
            raise ExfatError(f"mkfs.exfat: {_first_line(r)}")

    def attach(self) -> str:
        r = _run("losetup", "-f", "--show", str(self.image))
        if r.returncode != 0:
            raise ExfatError(f"losetup: {_first_line(r)}")
        self.loop = r.stdout.strip()
        return self.loop

    def mount_fs(self, read_only: bool = False) -> None:
        self.mount.mkdir(parents=True, exist_ok=True)
        opts = ["-o", "ro"] if read_only else []
        r = _run("mount.exfat-fuse", *opts, str(self.loop), str(self.mount))
        if r.returncode != 0 or not self._mounted():
            raise ExfatError(f"mount.exfat-fuse: {_first_line(r)}")
        self.read_only = read_only

    def remount(self, read_only: bool) -> None:
        """Unmount (which flushes everything to the image) and mount again."""
        self.unmount()
        self.mount_fs(read_only=read_only)

    def _mounted(self) -> bool:
        return os.path.ismount(self.mount)

    def unmount(self) -> None:
        # exfat-fuse on a block device is a fuseblk mount: umount waits for the daemon to write
        # everything back and let go of the device. A busy mount is retried, then detached lazily.
        for _ in range(50):
            if not self._mounted():
                return
            if _run("umount", str(self.mount)).returncode == 0:
                return
            time.sleep(0.1)
        _run("umount", "-l", str(self.mount))

    def detach(self) -> None:
        if self.loop is None:
            return
        for _ in range(50):
            if _run("losetup", "-d", self.loop).returncode == 0:
                break
            time.sleep(0.1)
        self.loop = None

    def close(self) -> None:
        try:
            self.unmount()
        finally:
            self.detach()


@contextmanager
def exfat_volume(image: Path, mount: Path, *, size_mib: int = 64,
                 label: str = "CARD") -> Iterator[ExfatVolume]:
    """A fresh exFAT volume mounted read-write at `mount`; unmounted and detached afterwards."""
    vol = ExfatVolume(image, mount)
    vol.create(size_mib, label)
    try:
        vol.attach()
        vol.mount_fs()
        yield vol
    finally:
        vol.close()


def fill(vol: ExfatVolume, src: Path) -> None:
    """Copy a card folder onto the volume with its files' modification times (exFAT keeps
    them to 10 ms, so what the volume reports is the card's time, not the source's). Owner
    and mode bits are not copied: exFAT has none."""
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        rel = Path(dirpath).relative_to(src)
        (vol.mount / rel).mkdir(parents=True, exist_ok=True)
        for name in sorted(filenames):
            st = os.stat(Path(dirpath) / name)
            shutil.copyfile(Path(dirpath) / name, vol.mount / rel / name)
            os.utime(vol.mount / rel / name, ns=(st.st_atime_ns, st.st_mtime_ns))
