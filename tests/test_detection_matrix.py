"""The seeded detection matrix (issue 21): damage aimed at the coded image data of every real
camera sample, decoded the way an offload decodes it, and what the decode check said.

Every sample in ../shared/samples/{raw,jpeg,heif} gets, inside its coded image data (located by
fixtures/damage.py: strips and tiles, the JPEG scan, the HEVC items, CRW and QuickTake data, all
of a headerless raw):
- truncation at several fractions of the image data;
- zero and 0xFF fills of 512 B, 4 KiB, 16 KiB, 64 KiB and 1 MiB at seeded random offsets
  (sizes larger than the data are skipped);
- bit-flip bursts (8 bits within 64 bytes, 64 bits within 4 KiB) and single bit flips.
Each damaged copy goes through `DecodePool` worker processes running `run_task`, as the pipeline
runs it, and becomes one row of docs/detection.md (tests/detection_table.py). Caught = verdict
"damaged"; "unsupported" is not caught and is listed on its own.

What is asserted (per sample, so a failure names the format):
- the undamaged sample decodes "ok" (else every catch would be meaningless);
- no damaged copy crashes or hangs its worker;
- truncation is always caught, except the cases in TRUNCATION_BLIND;
- the aim: at least 95 % of 4 KiB zero/0xFF fills caught in compressed data (lossless-JPEG
  DNG, CRW Huffman data, KDC and QuickTake 150 RADC, JPEG, HEIF).
Uncompressed data (Magic Lantern DNG, Coolscan NEF, QuickTake 100, the headerless C330, the
CRW's low bits) and single bit flips are recorded only: there the checksum is the protection.

CI runs a seeded sample (one offset per cell, 5 per fill byte on the 4 KiB line: about 25
cases per sample); INGEST_FULL_MATRIX=1 runs the full matrix (40 per fill byte on the 4 KiB line,
so 80 per sample, 8 on the other sizes, 12 bursts per window, 16 single flips) that renders
the committed docs/detection.md:
    INGEST_FULL_MATRIX=1 INGEST_WRITE_DETECTION=1 .venv/bin/python -m pytest -q \
        -p no:cacheprovider tests/test_detection_matrix.py tests/test_legit_scenes.py
"""

from __future__ import annotations

import os
import random
import resource
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from detection_table import AIM, AIM_SIZE, COMMAND, DOC
from reliability_table import FULL_MATRIX_ENV

from conftest import SAMPLES, samples_dir
from fixtures import damage as dmg
from ingest.decode.pool import DecodePool

FULL = os.environ.get(FULL_MATRIX_ENV) == "1"
KINDS = {"raw": "raw", "jpeg": "jpeg", "heif": "heif"}  # samples folder -> decode kind
FILL_SIZES = (512, 4096, 16384, 65536, 1 << 20)
# Offsets per cell (per fill byte): the 4 KiB line carries the aim, so it gets the most. The CI
# sample is sized for 2 cores: a HEIF decode costs 1-2 CPU s, so 4 HEIF samples x 25 cases are
# most of its time.
FILL_OFFSETS = {AIM_SIZE: 40 if FULL else 5}
OTHER_FILL_OFFSETS = 8 if FULL else 1
TRUNCATIONS = (0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999) if FULL else (0.1, 0.5, 0.9, 0.99)
BURSTS = ((64, 8), (4096, 64))  # (window bytes, bits flipped in it)
BURST_OFFSETS = 12 if FULL else 1
SINGLE_FLIPS = 16 if FULL else 1
# The CI matrix must finish well within this on 2 cores (the full one may take longer).
CI_BUDGET_SECONDS = 240
JOBS = max(2, os.cpu_count() or 2)
TIMEOUT = 60.0

ZERO, FF, TRUNC, BURST, FLIP = "zero fill", "0xFF fill", "truncation", "bit-flip burst", \
    "single bit flip"

# Why a decode cannot be expected to see damage in these data; they are recorded, never held to
# a catch rate (docs/detection.md, "Damage only the checksum can catch").
UNCOMPRESSED = ("uncompressed samples: every byte value is a legal pixel and nothing in the "
                "data can break, so a decode sees only what the content checks happen to "
                "recognise (a constant run outside the image's own range); the checksum is "
                "what catches the rest")
BLIND_FLIP = ("one flipped bit in entropy-coded data often stays a valid code and only changes "
              "a coefficient or a difference (a decoder that loses sync raises, one that does "
              "not cannot know); in uncompressed data it is one pixel's value: the checksum is "
              "the protection")
BLIND_BURST_UNCOMPRESSED = ("flipped bits in uncompressed samples change pixel values within "
                            "their legal range: nothing breaks, the checksum is the protection")


@dataclass(frozen=True)
class Coding:
    fmt: str           # the matrix row
    coding: str        # how the image data is coded
    blind: str = ""    # non-empty: a decode cannot see fills here (uncompressed data)


# Per sample file: its part(s) of coded image data, named as fixtures.damage.image_data_parts
# names them ("*" for its only part).
SAMPLE_CODINGS: dict[str, dict[str, Coding]] = {
    "nikon-d5000-lossless.dng": {"*": Coding("DNG (lossless JPEG)", "lossless JPEG tiles")},
    "blackmagic-pocket-cinema-4k.dng": {"*": Coding("DNG (lossy JPEG)",
                                                    "12-bit DCT JPEG tiles (CinemaDNG)")},
    "canon-550d-magiclantern.dng": {"*": Coding("DNG (uncompressed)", "uncompressed 14-bit",
                                                UNCOMPRESSED)},
    "nikon-coolscan-iv-ed-scanner.nef": {"*": Coding("NEF (uncompressed scan)",
                                                     "uncompressed 16-bit RGB", UNCOMPRESSED)},
    "canon-eos-d30.CRW": {
        "Canon Huffman": Coding("CRW (Huffman data)", "Canon Huffman"),
        "uncompressed low bits": Coding(
            "CRW (low bits)", "2 low bits per sample, uncompressed",
            "the CRW's low bits are stored raw, 2 bits per sample: damage there changes each "
            "sample by at most 3 and breaks no code; a content check may still recognise a "
            "filled run's exact pattern, but the checksum is the protection")},
    "kodak-dc50.KDC": {"*": Coding("KDC (Kodak DC50)", "Kodak RADC (Huffman)")},
    "apple-quicktake150.QTK": {"*": Coding("QTK (QuickTake 150)", "Kodak RADC (Huffman)")},
    "apple-quicktake100.QTK": {"*": Coding(
        "QTK (QuickTake 100)", "fixed 4-bit DPCM steps",
        "QuickTake 100 data is a fixed-rate 4-bit DPCM code in which every nibble is a valid "
        "step, so any bytes decode to plausible 8-bit values (no redundancy to break); the "
        "checksum is the protection")},
    "kodak-c330-headerless.raw": {"*": Coding(
        "headerless raw (Kodak C330)", "uncompressed 16-bit, no header",
        "no header and no structure: every 16-bit value 0..65535 is a legal sample, a run of "
        "0x0000 or 0xFFFF a plausible stretch of black or clipped pixels; the checksum is the "
        "protection")},
}
KIND_CODINGS = {"jpeg": Coding("JPEG", "Huffman-coded DCT (entropy-coded scan)"),
                "heif": Coding("HEIF/HEIC", "HEVC image items")}

# Truncations a decode provably cannot show: (sample, kept fraction) -> why. Each must also fail
# to be caught, or the entry is stale (the test says so).
TRUNCATION_BLIND: dict[tuple[str, float], str] = {
    ("kodak-c330-headerless.raw", f): (
        "a headerless raw has no header, no length field and no end marker: LibRaw knows the "
        "C330 only by its exact file size (2,247,168 bytes), so a shorter copy is an "
        "unidentifiable headerless file (verdict `unsupported`), never provably a cut C330; "
        "only the checksum shows the missing bytes")
    for f in (0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999)}


@dataclass
class Case:
    sample: str
    fmt: str
    coding: str
    kind: str
    size: int | str
    offset: int | str
    blind: str
    damage: object            # callable(path) -> description
    fraction: float | None = None  # truncation: the share of the image data kept
    key: int = 0
    result: dict = field(default_factory=dict)


def _samples() -> list[Path]:
    out: list[Path] = []
    for sub in KINDS:
        if (SAMPLES / sub).is_dir():
            out += sorted(p for p in (SAMPLES / sub).iterdir() if p.is_file())
    return out


def _coding(path: Path, part: str, only: bool) -> Coding:
    kind = KINDS[path.parent.name]
    if kind in KIND_CODINGS:
        return KIND_CODINGS[kind]
    known = SAMPLE_CODINGS.get(path.name)
    if known is None:
        return Coding(f"RAW {path.suffix.lstrip('.').upper()} (unclassified)", part,
                      "not classified yet: add it to SAMPLE_CODINGS in "
                      "tests/test_detection_matrix.py")
    return known["*"] if only and "*" in known else known[part]


def _spans(ranges: list[tuple[int, int]], gap: int = 64) -> list[tuple[int, int]]:
    """(start, end) of runs of ranges at most `gap` bytes apart (tile padding)."""
    out: list[list[int]] = []
    for off, length in sorted(ranges):
        if out and off <= out[-1][1] + gap:
            out[-1][1] = max(out[-1][1], off + length)
        else:
            out.append([off, off + length])
    return [(a, b) for a, b in out]


def _offset(rng: random.Random, spans: list[tuple[int, int]], size: int) -> int | None:
    """A uniform random offset at which `size` bytes lie inside one span; None: none fits."""
    room = [(a, b - a - size + 1) for a, b in spans if b - a >= size]
    total = sum(n for _, n in room)
    if not total:
        return None
    pick = rng.randrange(total)
    for start, n in room:
        if pick < n:
            return start + pick
        pick -= n
    raise AssertionError("unreachable")


def _cases(path: Path) -> list[Case]:
    parts = dmg.image_data_parts(path)
    cases: list[Case] = []
    for part, ranges in parts:
        c = _coding(path, part, len(parts) == 1)
        spans = _spans(ranges)
        lo, hi = spans[0][0], spans[-1][1]

        def add(kind, size, offset, damage, blind=c.blind, c=c, fraction=None):
            cases.append(Case(path.name, c.fmt, c.coding, kind, size, offset, blind, damage,
                              fraction))

        for f in TRUNCATIONS:
            keep = lo + int(f * (hi - lo))
            add(TRUNC, f"{f:.1%} kept".replace(".0%", "%"), keep,
                lambda p, k=keep: dmg.truncate_at(p, k),
                blind=TRUNCATION_BLIND.get((path.name, f), ""), fraction=f)
        for size in FILL_SIZES:
            for byte, kind in ((0x00, ZERO), (0xFF, FF)):
                rng = random.Random(f"{path.name}|{part}|{kind}|{size}")
                for _ in range(FILL_OFFSETS.get(size, OTHER_FILL_OFFSETS)):
                    off = _offset(rng, spans, size)
                    if off is None:
                        break
                    add(kind, size, off,
                        lambda p, o=off, n=size, b=byte: dmg.fill_block(p, o, n, b))
        for window, nbits in BURSTS:
            rng = random.Random(f"{path.name}|{part}|burst|{window}")
            for _ in range(BURST_OFFSETS):
                off, seed = _offset(rng, spans, window), rng.randrange(1 << 32)
                if off is None:
                    break
                add(BURST, window, f"{off} (seed {seed}, {nbits} bits)",
                    lambda p, o=off, w=window, n=nbits, s=seed: dmg.flip_burst(p, o, w, n, s),
                    blind=BLIND_BURST_UNCOMPRESSED if c.blind else "")
        rng = random.Random(f"{path.name}|{part}|flip")
        for _ in range(SINGLE_FLIPS):
            off, seed = _offset(rng, spans, 1), rng.randrange(1 << 32)
            add(FLIP, 1, f"{off} (seed {seed})",
                lambda p, o=off, s=seed: dmg.flip_bits(p, [o], s), blind=BLIND_FLIP)
    return cases


def _req(path: Path, kind: str) -> dict:
    return {"path": str(path), "kind": kind, "card_path": None, "preview": None,
            "capture_time": None}


@dataclass
class Matrix:
    clean: dict[str, dict]
    cases: dict[str, list[Case]]
    seconds: float      # wall clock
    cpu_seconds: float  # this process and its decode workers


def _cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), \
        resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


@pytest.fixture(scope="module")
def matrix(tmp_path_factory) -> Matrix:
    """Damage, decode and collect every case once: damaged copies are written just before they
    are submitted and removed as soon as their verdict is in (the pool holds at most
    2 x JOBS at a time), so the disk holds a handful of copies, not thousands."""
    samples = _samples()
    if not samples:
        samples_dir("raw")  # skips, naming where the samples were looked for
    work = tmp_path_factory.mktemp("detection")
    started, cpu_started = time.monotonic(), _cpu()
    clean: dict[str, dict] = {}
    by_sample: dict[str, list[Case]] = {}
    keys: dict[int, tuple[Case | None, Path | None, str]] = {}
    n = 0
    with DecodePool(JOBS, timeout=TIMEOUT) as pool:
        pool.start()

        def collect(results):
            for key, result in results:
                case, copy, name = keys.pop(key)
                if case is None:
                    clean[name] = result
                else:
                    case.result = result
                    copy.unlink(missing_ok=True)

        for path in samples:
            kind = KINDS[path.parent.name]
            n += 1
            keys[n] = (None, None, path.name)
            pool.submit(n, _req(path, kind))
            by_sample[path.name] = cases = _cases(path)
            for case in cases:
                n += 1
                case.key = n
                copy = work / f"{n:06d}-{path.name}"
                shutil.copyfile(path, copy)
                case.damage(copy)
                keys[n] = (case, copy, path.name)
                pool.submit(n, _req(copy, kind))
                collect(pool.poll())
        collect(pool.drain())
    # The workers are gone (joined) once the pool is closed, so RUSAGE_CHILDREN counts them.
    seconds, cpu = time.monotonic() - started, _cpu() - cpu_started
    total = sum(len(c) for c in by_sample.values())
    print(f"\ndetection matrix ({'full' if FULL else 'CI sample'}): {total} damaged copies of "
          f"{len(samples)} samples decoded in {seconds:.1f} s with {JOBS} workers ({cpu:.0f} CPU s); decode "
          "CPU seconds per sample: " + ", ".join(
              f"{name} {sum(c.result['decode'].get('seconds', 0) for c in cases):.1f}"
              for name, cases in by_sample.items()))
    return Matrix(clean, by_sample, seconds, cpu)


def _check_fired(result: dict) -> str:
    decode = result.get("decode") or {}
    failed = [c["name"] for c in decode.get("checks", []) if not c["ok"]]
    return failed[0] if failed else ""


def _verdict(case: Case) -> str:
    return case.result["decode"]["verdict"]


def _params(require_aim: bool = False):
    out = []
    for path in _samples():
        kind = KINDS[path.parent.name]
        codings = ([KIND_CODINGS[kind]] if kind in KIND_CODINGS
                   else list(SAMPLE_CODINGS.get(path.name, {}).values())
                   or [_coding(path, "", True)])
        fmt = codings[0].fmt.split(" (")[0]
        marks = ()
        if require_aim and all(c.blind for c in codings):
            marks = pytest.mark.skip(reason=f"{path.name}: {codings[0].coding}; only the "
                                     "checksum protects these data (recorded, no catch rate)")
        out.append(pytest.param(path.name, id=f"{fmt}-{path.name}", marks=marks))
    return out or [pytest.param(None, id="no-samples")]


def _sample(matrix: Matrix, name: str | None) -> list[Case]:
    if name is None:
        samples_dir("raw")
    return matrix.cases[name]


@pytest.mark.parametrize("name", _params())
def test_matrix(matrix, detection, name):
    """Records every case of one sample; the sample itself decodes ok and no damaged copy crashed
    or hung its worker."""
    cases = _sample(matrix, name)
    for case in cases:
        decode = case.result["decode"]
        detection.damage(case.fmt, case.sample, case.kind, case.size, case.offset,
                         decode["verdict"], _check_fired(case.result),
                         (decode.get("error") or "")[:300], coding=case.coding, blind=case.blind)
    assert matrix.clean[name]["decode"]["verdict"] == "ok", matrix.clean[name]["decode"]
    broken = [f"{c.kind} {c.size} at {c.offset}: {_verdict(c)} ({c.result['decode']['error']})"
              for c in cases if _verdict(c) in ("crashed", "timeout")]
    assert not broken, f"{name}: the decoder crashed or hung on damaged copies:\n" + \
        "\n".join(broken)


@pytest.mark.parametrize("name", _params())
def test_truncation_is_caught(matrix, name):
    missed, stale = [], []
    for case in _sample(matrix, name):
        if case.kind != TRUNC:
            continue
        blind = TRUNCATION_BLIND.get((name, case.fraction))
        caught = _verdict(case) == "damaged"
        if blind is None and not caught:
            missed.append(f"{case.size} (cut at {case.offset}): {_verdict(case)} "
                          f"({case.result['decode']['error']})")
        if blind is not None and caught:
            stale.append(f"{case.size}: caught now; drop it from TRUNCATION_BLIND")
    assert not missed, f"{name}: truncation not caught:\n" + "\n".join(missed)
    assert not stale, "\n".join(stale)


@pytest.mark.parametrize("name", _params(require_aim=True))
def test_small_fills_in_compressed_data_are_caught(matrix, name):
    """The aim: at least 95 % of 4 KiB zero/0xFF fills caught where the data are compressed."""
    fills = [c for c in _sample(matrix, name)
             if c.kind in (ZERO, FF) and c.size == AIM_SIZE and not c.blind]
    assert fills, f"{name}: no 4 KiB fill fits its compressed data"
    caught = sum(_verdict(c) == "damaged" for c in fills)
    misses = [f"{c.kind} at {c.offset}: {_verdict(c)}" for c in fills if _verdict(c) != "damaged"]
    assert caught >= AIM * len(fills), (
        f"{name} ({fills[0].fmt}): {caught}/{len(fills)} 4 KiB fills caught "
        f"({100 * caught / len(fills):.0f} %, aim {AIM:.0%}); missed:\n" + "\n".join(misses[:20]))


def test_ci_matrix_stays_within_budget(matrix):
    """CI has 2 cores and 4 minutes for the whole matrix; the full one may take longer.

    Judged by CPU time (this process and its workers) over 2 cores, not by the wall clock: on a
    shared machine other work stretches the wall clock, not the matrix's cost."""
    if not matrix.cases:
        samples_dir("raw")
    if not FULL:
        on_two_cores = matrix.cpu_seconds / 2
        assert on_two_cores < CI_BUDGET_SECONDS, (
            f"the CI matrix needs {matrix.cpu_seconds:.0f} CPU s: {on_two_cores:.0f} s on 2 cores "
            f"(wall clock here: {matrix.seconds:.0f} s)")


def test_detection_doc_is_generated():
    """docs/detection.md exists, was written by the plugin from a full matrix, and names every
    sample format there is now."""
    assert DOC.is_file(), f"{DOC} missing: run {COMMAND}"
    text = DOC.read_text(encoding="utf-8")
    assert text.startswith("# Detection:")
    assert "Generated by the test suite; do not edit by hand." in text
    assert COMMAND in text
    assert "matrix: full (INGEST_FULL_MATRIX=1)" in text
    for heading in ("## The matrix: format × damage × size", "## Per sample",
                    "## Which check caught it", "## Legitimate scenes",
                    "## Damage only the checksum can catch"):
        assert heading in text, heading
    for path in _samples():
        assert f"`{path.name}`" in text, f"{path.name} is not in {DOC.name}: regenerate it"
