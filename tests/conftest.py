"""Shared test fixtures: a generated sample card, destinations, and the real samples folder."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ingest import fsio

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"

# Reliability table: each fault test records a row; INGEST_WRITE_RELIABILITY=1 writes
# docs/reliability.md at the end of the session (tests/reliability_table.py).
pytest_plugins = ["reliability_table", "detection_table"]


def samples_dir(sub: str = "") -> Path:
    path = SAMPLES / sub
    if not path.is_dir():
        pytest.skip(f"real camera samples not found at {path} (../shared/samples beside the "
                    "checkout); these tests need them")
    return path


@pytest.fixture(scope="session")
def built_card(tmp_path_factory) -> tuple[Path, object]:
    from fixtures.card import build_card

    root = tmp_path_factory.mktemp("card-template")
    return root, build_card(root, seed=7, damaged=True)


@pytest.fixture()
def card(built_card, tmp_path) -> Path:
    """A fresh copy of the sample card per test, with mtimes kept."""
    src, _ = built_card
    dst = tmp_path / "card"
    shutil.copytree(src, dst, symlinks=True)
    return dst


@pytest.fixture()
def manifest(built_card):
    return built_card[1]


@pytest.fixture()
def dests(tmp_path) -> list[Path]:
    out = [tmp_path / "dest-A", tmp_path / "dest-B"]
    for d in out:
        d.mkdir()
    return out


@pytest.fixture()
def disks(tmp_path):
    """Two destinations on real separate devices: a tmpfs mounted for each. Two folders on one
    disk count as one copy, so only these make a card safe to format. Needs root (CI is)."""
    mounted = []
    out = []
    try:
        for name in ("disk-A", "disk-B"):
            point = tmp_path / name
            point.mkdir()
            if os.geteuid() != 0:
                pytest.skip("mounting a tmpfs for a second device needs root")
            r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512m", "tmpfs", str(point)],
                               capture_output=True, text=True)
            if r.returncode != 0:
                pytest.skip(f"cannot mount a tmpfs for a second device: {r.stderr.strip()}")
            mounted.append(point)
            out.append(point)
        yield out
    finally:
        for point in mounted:
            subprocess.run(["umount", "-l", str(point)], capture_output=True)


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under root (links not followed): sha256 and mtime_ns, to prove it unchanged."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                out[rel] = ("link:" + os.readlink(p), 0)
                continue
            if not p.is_file():
                out[rel] = ("special", 0)
                continue
            out[rel] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
    return out


def partials(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".ingest-partial")]


class CardReadErrors(fsio.FileIO):
    """EIO on reading the card file whose path ends with `name`: `failures` times, or always
    (None). The file is known by the inode opened through open_source, not by its fd number,
    which the read-back of copies and the prefetcher reuse once the card file is closed."""

    def __init__(self, name: str, failures: int | None = None):
        self.name, self.failures, self.raised = name, failures, 0
        self._opened: dict[int, tuple[str, int]] = {}

    def open_source(self, path):
        fd = super().open_source(path)
        self._opened[fd] = (path, os.fstat(fd).st_ino)
        return fd

    def read(self, fd, size):
        path, ino = self._opened.get(fd, ("", None))
        if path.endswith(self.name) and os.fstat(fd).st_ino == ino and self.failures != 0:
            if self.failures is not None:
                self.failures -= 1
            self.raised += 1
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return super().read(fd, size)
