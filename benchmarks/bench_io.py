"""I/O throughput: hashing, ingest's single-read copy, and the uncached read-back.

Run: .venv/bin/python -m pytest benchmarks/bench_io.py --benchmark-only
Each figure is printed at the end as MB/s (from the median round) and kept in extra_info.
Files live in pytest's tmp folder, i.e. on the disk that holds /tmp.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from ingest import api, fsio

HASH_BYTES = 64 * 1024 * 1024
FILE_BYTES = 256 * 1024 * 1024
COPY_ROUNDS = 3
READ_ROUNDS = 5


def evict(path: Path) -> None:
    """Take a file's clean pages out of the page cache, so the next read comes from disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


@pytest.fixture(scope="module")
def big_card(tmp_path_factory) -> Path:
    """A card holding one 256 MiB clip of random bytes (a video: hashed, never decoded)."""
    card = tmp_path_factory.mktemp("card")
    clip = card / "DCIM" / "100BENCH" / "C0001.MP4"
    clip.parent.mkdir(parents=True)
    rng = np.random.default_rng(7)
    with open(clip, "wb") as f:
        for _ in range(FILE_BYTES // (16 << 20)):
            f.write(rng.bytes(16 << 20))
        f.flush()
        os.fsync(f.fileno())
    return card


def test_hash_xxh3_128(benchmark, rate):
    buf = np.random.default_rng(1).bytes(HASH_BYTES)

    def digest():
        h = fsio.new_hasher()
        h.update(buf)
        return h.hexdigest()

    result = benchmark(digest)
    assert len(result) == 32
    rate(MB_per_s=lambda s: HASH_BYTES / s / 1e6)


@pytest.mark.parametrize("n_dests", [1, 2], ids=["1dest", "2dests"])
def test_copy_offload(benchmark, rate, big_card, tmp_path, n_dests):
    """api.offload(decode=False): one card read, written to every destination, fsynced,
    read back uncached and renamed; the card file is evicted before each round."""
    clip = next(big_card.rglob("*.MP4"))
    made: list[Path] = []

    def setup():
        for old in made:
            shutil.rmtree(old, ignore_errors=True)  # keep one round's copies on disk at most
        scratch = tmp_path / f"round{len(made)}"
        made.append(scratch)
        dests = [scratch / f"dest{i}" for i in range(n_dests)]
        for d in dests:
            d.mkdir(parents=True)
        evict(clip)
        return (str(big_card), [str(d) for d in dests]), {
            "decode": False, "previews": False, "destination_reports": False}

    result = benchmark.pedantic(api.offload, setup=setup, rounds=COPY_ROUNDS, iterations=1)
    assert result.exit_code == 0
    assert [str(r.status) for r in result.records] == ["verified"]
    assert len(result.records[0].copies) == n_dests
    rate(MB_per_s=lambda s: FILE_BYTES / s / 1e6)


def test_copy_floor(benchmark, rate, big_card, tmp_path):
    """What the copy alone costs on this disk: read, write, fsync, no verification."""
    clip = next(big_card.rglob("*.MP4"))
    target = tmp_path / "copy.MP4"

    def setup():
        target.unlink(missing_ok=True)
        evict(clip)

    def copy():
        with open(clip, "rb") as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, fsio.CHUNK)
            dst.flush()
            os.fsync(dst.fileno())

    benchmark.pedantic(copy, setup=setup, rounds=COPY_ROUNDS, iterations=1)
    assert target.stat().st_size == FILE_BYTES
    rate(MB_per_s=lambda s: FILE_BYTES / s / 1e6)


def test_read_back_uncached(benchmark, rate, big_card):
    """fsio.uncached_hash: drop the file's pages, then hash it as the disk holds it."""
    clip = next(big_card.rglob("*.MP4"))
    digest, nbytes = benchmark.pedantic(fsio.uncached_hash, args=(str(clip),),
                                        setup=lambda: evict(clip), rounds=READ_ROUNDS,
                                        iterations=1)
    assert nbytes == FILE_BYTES and len(digest) == 32
    rate(MB_per_s=lambda s: FILE_BYTES / s / 1e6)
