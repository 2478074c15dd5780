"""Damage detection: content checks on synthetic sensor frames (both sides), and a matrix of
damage applied to copies of real and synthetic files.

What each claimed detection relies on (measured; see shared/notes/observed-damage.md):
- truncation, destroyed header: LibRaw raises (IOError/DataError/FileUnsupported) or the TIFF
  walk finds data claimed past the end; libjpeg-turbo strict raises "Premature end";
- 64 KiB fills in compressed RAW data: LibRaw raises, or (LJ92 DNG) leaves whole tiles at zero,
  which the constant-span check flags; in uncompressed Bayer data: zero/0xFF spans below the
  noise floor / above the white level;
- 4 KiB bursts of bit flips and 16 scattered flips in compressed data: an invalid Huffman code.

Not claimed, only counted (no decoder can see them, or only sometimes; the hash does):
bit flips in uncompressed data, single flips in entropy-coded data, fills in QuickTake 100 data
(its decoder interpolates 8-bit samples into plausible values), a zero fill in the scanner NEF
(zero is its legitimate border value), and a QuickTake file cut by 1 %.
"""

from __future__ import annotations

import random
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from conftest import SAMPLES
from fixtures import damage as dmg
from ingest.decode.pool import WORKER_ENV, DecodePool
from ingest.decode.sensor import (
    MIN_BELOW_BLACK_RUN,
    _span_stats,
    below_black_check,
    low_bits_check,
    nonzero_check,
    ramp_check,
)
from ingest.decode.task import run_task

# --- synthetic frames ---------------------------------------------------------------------------


def _bayer(h=240, w=320, black=512, white=4095, level=0.3, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    signal = black + level * (white - black) * rng.uniform(0.2, 1.0, (h, w))
    noisy = signal + rng.normal(0, 4, (h, w)) + np.sqrt(signal - black) * rng.normal(0, 1, (h, w))
    return np.clip(np.round(noisy), 0, white).astype(np.uint16)


def _span_ok(frame, **kw) -> bool:
    return ramp_check(frame, **kw)["ok"]


def test_clean_frame_passes():
    assert _span_ok(_bayer(), black=512, white=4095)
    assert nonzero_check(_bayer())["ok"]


def _blown_sky(black: int, clip: int, h: int = 240, w: int = 320) -> np.ndarray:
    """A sky that brightens towards the top and clips there: noisy signal cut at `clip`."""
    rng = np.random.default_rng(9)
    ramp = np.linspace(2.0, 0.2, h)[:, None] * (clip - black)  # top rows far past the clip
    signal = black + ramp + rng.normal(0, 1, (h, w)) * np.sqrt(ramp + 16)
    return np.clip(np.round(signal), 0, clip).astype(np.uint16)


def test_clipped_highlights_pass():
    frame = _blown_sky(black=512, clip=4095)
    assert (frame.min(axis=1) == 4095).sum() > 50  # whole rows blown out at the white level
    assert _span_ok(frame, black=512, white=4095)


def test_clipping_above_the_reported_white_level_passes():
    # D5000-like: white level 3840 in metadata, yet the ADC clips at 4095.
    frame = _blown_sky(black=0, clip=4095)
    assert _span_ok(frame, black=0, white=3840)
    assert _span_ok(np.full((100, 200), 4095, np.uint16), black=0, white=3840)  # all blown


def test_dark_frames_pass():
    rng = np.random.default_rng(5)
    biased = np.round(512 + rng.normal(0, 3, (240, 320))).astype(np.uint16)
    assert _span_ok(biased, black=512, white=4095) and nonzero_check(biased)["ok"]
    # A camera that subtracts black in-camera clips half of its noise to exactly zero.
    clipped = np.clip(np.round(rng.normal(0, 2, (240, 320))), 0, None).astype(np.uint16)
    assert _span_ok(clipped, black=0, white=4095) and nonzero_check(clipped)["ok"]


def test_small_crop_passes():
    assert _span_ok(_bayer(h=24, w=36), black=512, white=4095)


def test_scanner_border_passes():
    rng = np.random.default_rng(2)
    stack = np.zeros((300, 400, 4), np.uint16)
    stack[..., :3] = rng.integers(2000, 50000, (300, 400, 3))
    stack[:30] = 0                            # unexposed film border: rows of exact zeros
    stack[:, :12] = 0
    stack[-20:] = 0
    assert _span_ok(stack, black=0, white=255, colors=3)
    assert nonzero_check(stack, 3)["ok"]      # the zero 4th plane is ignored


def _below_ok(frame, **kw) -> bool:
    return below_black_check(frame, **kw)["ok"]


def test_constant_spans_never_decide_alone():
    # Zero rows under a data floor of ~90 on a black-0 sensor are what a zero fill looks
    # like, and what a studio black backdrop crushed to 0 looks like: not decisive.
    frame = _bayer(black=0, white=4095, level=0.5)
    frame = np.maximum(frame, 90)
    frame[100:110] = 0
    assert _span_ok(frame, black=0, white=3840) and _below_ok(frame, black=0)
    # 0xFF bytes in 14-bit data read 16383, the ADC's own maximum: a blown sky can be there.
    frame = _bayer(black=2056, white=15000)
    frame[60:80] = 16383
    assert _span_ok(frame, black=2056, white=15000) and _below_ok(frame, black=2056)
    detail = ramp_check(frame, black=2056, white=15000)["detail"]
    assert "constant spans (clipping or a flat scene: not a finding)" in detail


def test_zero_fill_under_a_real_black_offset_fails():
    frame = _bayer(black=2056, white=15000)
    frame[60:62] = 0
    assert not _below_ok(frame, black=2056)
    # One 512-byte sector of 14-bit data: 292 samples in the middle of a row.
    frame = _bayer(h=120, w=2400, black=2056, white=15000)
    frame[60, 1000:1292] = 0
    detail = below_black_check(frame, black=2056)["detail"]
    assert "292 samples in runs under half the black level 2056" in detail
    assert "row 60, column 1000" in detail
    stack = np.stack([_bayer(black=512, white=4095, seed=i) for i in range(3)], axis=2)
    stack[30, 10:200, 1] = 0
    assert "in plane 1" in below_black_check(stack, black=512, colors=3)["detail"]


def test_below_black_needs_a_run_and_an_offset_the_data_has():
    frame = _bayer(black=2056, white=15000)
    frame[50, 100:100 + MIN_BELOW_BLACK_RUN - 1] = 0       # shorter than a run
    frame[70, ::37] = 0                                    # dead pixels
    assert _below_ok(frame, black=2056)
    frame[90, 100:100 + MIN_BELOW_BLACK_RUN] = 0
    assert not _below_ok(frame, black=2056)
    # A black tag of 2048 on data whose true offset is 0 (a wrong tag): the data says so.
    wrong = _bayer(black=0, white=4095, level=0.05)
    wrong[10:12] = 0
    assert _below_ok(wrong, black=2048)
    assert "not trusted" in below_black_check(wrong, black=2048)["detail"]
    assert _below_ok(np.zeros((50, 50), np.uint16), black=8)  # no real offset to fall under


def test_ramps_from_a_broken_predictor_chain_fail():
    # Zeros in lossless-JPEG data decode to a fixed difference per sample: an exact ramp
    # per CFA colour that wraps past 65535 (seen in the D5000 DNG with a 64 KiB zero block).
    frame = _bayer(black=0, white=4095)
    cols = np.arange(frame.shape[1]) // 2
    frame[100:110] = (727 - 63 * cols).astype(np.uint16)[None, :]
    assert not _span_ok(frame, black=0, white=3840)


@pytest.mark.parametrize("shape,chunk,dtype", [
    ((60, 333), 64, np.uint16), ((40, 512), 128, np.uint16), ((30, 100, 3), 24, np.uint16),
    ((20, 50), 10, np.uint16), ((16, 12), 12, np.uint16), ((10, 7), 7, np.uint16),
    ((8, 64), 16, np.uint16), ((24, 96), 32, np.int32), ((400, 64), 16, np.uint16)])
def test_span_screen_finds_what_a_full_pass_finds(shape, chunk, dtype):
    # Constant spans and ramps are screened on their first samples, then checked in full; the
    # result must be the same as a min, a max and a ramp test over every sample.
    rng = np.random.default_rng(sum(shape) + chunk)
    frame = rng.integers(0, 4096, shape).astype(dtype)
    if shape[0] >= 400:  # a blown sky: most spans constant, so most pass the screen
        frame[: shape[0] // 2] = 4095
    planes = [frame] if frame.ndim == 2 else [frame[..., i] for i in range(frame.shape[2])]
    for plane in planes:
        h, w = plane.shape
        cw = min(chunk, w)
        for i in range(max(5, h // 3)):
            r, c = int(rng.integers(h)), int(rng.integers(w // cw)) * cw
            trap = i % 5
            if trap == 0:    # a constant span
                plane[r, c:c + cw] = rng.integers(4096)
            elif trap == 1:  # a ramp per CFA colour, wrapping
                plane[r, c:c + cw] = (rng.integers(65536) - 37 * np.arange(cw) // 2) % 65536
            elif trap == 2:  # constant at the start only: passes the screen, not the check
                plane[r, c:c + min(cw, 20)] = 7
            elif trap == 3:  # a ramp at the start only
                plane[r, c:c + min(cw, 20)] = 100 + 3 * np.arange(min(cw, 20))
            else:            # one colour flat, the other sloping: still a ramp
                plane[r, c:c + cw] = np.where(np.arange(cw) % 2, 50 + 5 * np.arange(cw), 900)
        spans, const, ramp, per_row, extremes = _span_stats(plane, chunk)
        assert per_row == w // cw
        full = plane[:, :per_row * cw].reshape(h, per_row, cw).reshape(-1, cw).astype(np.int64)
        want_const = full.min(axis=1) == full.max(axis=1)
        step = (full[:, 2:] - full[:, :-2]) % 65536
        curve = (step[:, 2:] - step[:, :-2]) % 65536
        want_ramp = (~curve.any(axis=1) & step.any(axis=1)) if cw >= 8 else want_const & False
        assert want_const.any() and (cw < 8 or want_ramp.any())
        assert (const == want_const).all() and (ramp == want_ramp).all()
        if extremes is not None:  # computed when many spans pass the screen: exact too
            assert (extremes[0] == full.min(axis=1)).all()
            assert (extremes[1] == full.max(axis=1)).all()
        assert (extremes is not None) == (cw < 16 or h >= 400)


def test_ramps_are_judged_only_in_single_plane_sensor_data():
    # A demosaiced (LinearRaw) image may hold a real gradient; a CFA sensor never does.
    stack = np.stack([_bayer(black=512, white=4095, seed=i) for i in range(3)], axis=2)
    stack[100:110, :, 0] = (100 + 3 * np.arange(stack.shape[1])).astype(np.uint16)[None, :]
    assert _span_ok(stack, black=512, white=4095, colors=3)
    frame = _bayer(black=512, white=4095)
    frame[100:110] = (100 + 3 * np.arange(frame.shape[1])).astype(np.uint16)[None, :]
    assert not _span_ok(frame, black=512, white=4095)


def test_crw_low_bits_overwritten_fail():
    frame = _bayer(black=126, white=4095)
    assert low_bits_check(frame)["ok"]
    frame[100:101, 20:300] &= ~np.uint16(3)     # a fill in the low-bit area: low bits all 0
    detail = low_bits_check(frame)["detail"]
    assert not low_bits_check(frame)["ok"] and "(first at row 100, column " in detail
    # Legitimate: a blown region (constant, low bits constant too) and a camera that stores
    # no low bits at all.
    blown = _blown_sky(black=126, clip=4095)
    assert low_bits_check(blown)["ok"]
    assert low_bits_check(_bayer(black=126, white=4095) & ~np.uint16(3))["ok"]


def test_mostly_zero_is_noted_per_plane_but_decides_nothing():
    # A lens-cap frame after in-camera dark-frame subtraction on a black-0 sensor is zeros.
    result = nonzero_check(np.zeros((100, 100), np.uint16))
    assert result["ok"] and "mostly zero" in result["detail"]
    stack = np.zeros((100, 100, 4), np.uint16)
    stack[..., 0] = 1000
    stack[..., 1] = 1000                      # plane 2 is empty
    result = nonzero_check(stack, 3)
    assert result["ok"] and "100.0%, 100.0%, 0.0%" in result["detail"]


# --- the damage matrix --------------------------------------------------------------------------

COMPRESSED_RAW = {"apple-quicktake150.QTK", "blackmagic-pocket-cinema-4k.dng",
                  "canon-eos-d30.CRW", "kodak-dc50.KDC", "nikon-d5000-lossless.dng"}
NOT_CLAIMED = {  # (file, damage class) -> why
    ("apple-quicktake100.QTK", "fill00"): "QT100 decoder turns any bytes into plausible values",
    ("apple-quicktake100.QTK", "fillFF"): "QT100 decoder turns any bytes into plausible values",
    ("nikon-coolscan-iv-ed-scanner.nef", "fill00"): "zero is the scanner border's real value",
    # 0xFF bytes in uncompressed data read as the format's largest value, where a blown
    # highlight or a film scan's clipped edge also sits: only the checksum can tell.
    ("nikon-coolscan-iv-ed-scanner.nef", "fillFF"): "65535 is the scanner's own clip level",
    ("canon-550d-magiclantern.dng", "fillFF"): "16383 is the 14-bit ADC's own maximum",
    ("apple-quicktake100.QTK", "trunc99"): "LibRaw decodes a QuickTake file cut by 1 %",
    ("apple-quicktake150.QTK", "trunc99"): "LibRaw decodes a QuickTake file cut by 1 %",
    # Headerless and uncompressed: only its exact size identifies it, so there is no header
    # to destroy and no structure a fill could break; its 16-bit values span 0..65535, so a
    # run of 0x0000 or 0xFFFF is a plausible stretch of black or clipped pixels.
    ("kodak-c330-headerless.raw", "header"): "no header: the first bytes are pixels",
    ("kodak-c330-headerless.raw", "fill00"): "uncompressed, no structure; zero is a real value",
    ("kodak-c330-headerless.raw", "fillFF"): "uncompressed, no structure; 65535 is a real value",
}


def _kind(path: Path) -> str:
    return "jpeg" if path.suffix.lower() == ".jpg" else "raw"


def _image_range(path: Path, data: bytes) -> tuple[int, int]:
    """(start, end) of the image data, where damage is aimed."""
    if _kind(path) == "jpeg":
        return dmg.jpeg_scan_range(data)
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        ranges = dmg.tiff_strip_ranges(path)
        return min(o for o, _ in ranges), max(o + c for o, c in ranges)
    return len(data) // 8, len(data) * 7 // 8  # CRW, QTK: the data fills the file


def _cases(path: Path, data: bytes) -> list[tuple[str, str, object]]:
    """(class, label, function that damages a copy in place)."""
    start, end = _image_range(path, data)
    rng = random.Random(path.name)
    cases: list[tuple[str, str, object]] = []
    for f in (0.3, 0.6, 0.9, 0.99):
        cases.append((f"trunc{round(f * 100)}", f"truncate {f}", lambda p, f=f: dmg.truncate(p, f)))
    length = min(65536, (end - start) // 4)
    for pos in (0.3, 0.7):
        off = start + int((end - start - length) * pos)
        for byte, cls in ((0x00, "fill00"), (0xFF, "fillFF")):
            cases.append((cls, f"{cls} {length} B at {off}",
                          lambda p, o=off, b=byte: dmg.fill_block(p, o, length, b)))
    for seed in range(2):
        off = rng.randrange(start, end - 4096)
        cases.append(("burst4k", f"4 KiB of flips at {off}",
                      lambda p, o=off, s=seed: dmg.flip_bits(p, list(range(o, o + 4096)), s)))
        offs = sorted(rng.sample(range(start, end), 16))
        cases.append(("flip16", "16 scattered flips",
                      lambda p, o=offs, s=seed: dmg.flip_bits(p, o, s)))
        one = [rng.randrange(start, end)]
        cases.append(("flip1", "1 flip", lambda p, o=one, s=seed: dmg.flip_bits(p, o, s)))
    cases.append(("header", "first 512 bytes zeroed", lambda p: dmg.destroy_header(p, 512)))
    return cases


def _claimed(name: str, kind: str, cls: str, synthetic_uncompressed: bool) -> bool:
    if (name, cls) in NOT_CLAIMED or cls == "flip1":
        return False
    if cls in ("burst4k", "flip16"):
        return kind == "jpeg" and cls == "burst4k" or name in COMPRESSED_RAW
    return not (synthetic_uncompressed and (cls.startswith("flip") or cls == "fillFF"))


def _sources(built_card) -> list[Path]:
    root, manifest = built_card
    real = []
    if SAMPLES.is_dir():
        real = sorted((SAMPLES / "raw").iterdir()) + sorted((SAMPLES / "jpeg").iterdir())
    ok_synthetic = [r for r in manifest.images if r not in manifest.damaged]
    dng = next(r for r in ok_synthetic if r.endswith(".DNG"))
    jpg = next(r for r in ok_synthetic if r.endswith(".JPG"))
    return real + [root / dng, root / jpg]


def _req(path: Path) -> dict:
    return {"path": str(path), "kind": _kind(path), "card_path": None, "preview": None,
            "capture_time": None}


def _verdict(path: Path) -> str:
    return run_task(_req(path))["decode"]["verdict"]


def test_damage_matrix(tmp_path, built_card):
    """Every claimed damage case flagged, no clean file flagged; the full table is printed.

    Runs through DecodePool, as the pipeline does: worker processes with the pool's
    environment (see test_stale_heap_does_not_hide_undecoded_tiles).
    """
    cases: dict[str, tuple[str, str, bool]] = {}  # copy path -> (file, class, claimed)
    reqs: list[tuple[str, dict]] = []
    for src in _sources(built_card):
        data = src.read_bytes()
        synthetic = not str(src).startswith(str(SAMPLES))
        reqs.append((f"clean {src}", _req(src)))
        for n, (cls, label, damage) in enumerate(_cases(src, data)):
            copy = tmp_path / f"{n:02d}-{cls}-{src.name}"
            shutil.copyfile(src, copy)
            damage(copy)
            claimed = _claimed(src.name, _kind(src), cls, synthetic and src.name.endswith(".DNG"))
            cases[str(copy)] = (f"{src.name}: {label}", cls, claimed)
            reqs.append((str(copy), _req(copy)))
    with DecodePool(2) as pool:
        for key, req in reqs:
            pool.submit(key, req)
        results = dict(pool.drain())
    table: Counter = Counter()
    missed, surprises = [], []
    false_positives = [k for k, r in results.items()
                       if k.startswith("clean ") and r["decode"]["verdict"] != "ok"]
    for key, (label, cls, claimed) in cases.items():
        flagged = results[key]["decode"]["verdict"] != "ok"
        table[(cls, claimed, flagged)] += 1
        if claimed and not flagged:
            missed.append(label)
        if not claimed and flagged:
            surprises.append(label)
    print("\ndamage class   claimed: flagged/total   not claimed: flagged/total")
    for cls in sorted({c for c, _, _ in table}):
        yes = table[(cls, True, True)], table[(cls, True, True)] + table[(cls, True, False)]
        no = table[(cls, False, True)], table[(cls, False, True)] + table[(cls, False, False)]
        print(f"{cls:14s} {yes[0]:>4d}/{yes[1]:<4d}                {no[0]:>4d}/{no[1]:<4d}")
    print(f"clean files: {sum(k.startswith('clean ') for k in results)}, flagged: "
          f"{len(false_positives)}; flagged beyond the claim: {len(surprises)}")
    assert false_positives == []
    assert missed == [], "\n".join(missed)
    assert sum(v for (_, c, _), v in table.items() if c) >= 150  # the real samples were there


def test_stale_heap_does_not_hide_undecoded_tiles(tmp_path):
    """LibRaw leaves LJ92 tiles it cannot decode uninitialised: after other decodes in the same
    process they hold old pixels. The tile proof (decode/lj92.py) finds them from the stored
    bytes, so neither a pool worker nor this long-lived test process needs the C library to
    zero its heap (MALLOC_PERTURB_ is glibc-only, and no longer set)."""
    raw_dir = SAMPLES / "raw"
    if not raw_dir.is_dir():
        pytest.skip(f"real camera samples not found at {raw_dir}")
    assert "MALLOC_PERTURB_" not in WORKER_ENV
    src = raw_dir / "nikon-d5000-lossless.dng"
    bad = tmp_path / "zeroed.dng"
    shutil.copyfile(src, bad)
    dmg.fill_block(bad, 2862009, 65536, 0x00)  # inside the raw tiles: no LibRaw error
    warm = [p for p in sorted(raw_dir.iterdir())] * 2 + [src]
    with DecodePool(1) as pool:
        for n, path in enumerate(warm):
            pool.submit(n, _req(path))
        pool.submit("bad", _req(bad))
        results = dict(pool.drain())
    assert all(results[n]["decode"]["verdict"] == "ok" for n in range(len(warm)))
    assert results["bad"]["decode"]["verdict"] == "damaged"
    assert "lj92_tiles" in results["bad"]["decode"]["error"]
    # The same in this process, whose heap nothing zeroes: decode the others first.
    for path in warm:
        run_task(_req(path))
    here = run_task(_req(bad))["decode"]
    assert here["verdict"] == "damaged" and "lj92_tiles" in here["error"]


@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.8])
def test_truncated_synthetic_card_files(tmp_path, built_card, fraction):
    root, manifest = built_card
    for rel in manifest.images[:6]:
        if rel in manifest.damaged:
            continue
        copy = tmp_path / Path(rel).name
        shutil.copyfile(root / rel, copy)
        dmg.truncate(copy, fraction)
        assert _verdict(copy) == "damaged", rel


def test_card_damaged_jpeg_is_flagged(built_card):
    root, manifest = built_card
    assert manifest.damaged
    for rel in manifest.damaged:
        assert _verdict(root / rel) == "damaged", manifest.damage_notes[rel]


def test_reduced_scale_strict_jpeg_decode_sees_the_same_damage(tmp_path):
    """The JPEG check decodes at a reduced DCT scale (M/8, picked for the preview); it must
    fail exactly where a full decode fails, since the entropy decoder walks every Huffman code
    at any scale."""
    import simplejpeg

    def strict_ok(data: bytes, **scale) -> bool:
        try:
            simplejpeg.decode_jpeg(data, strict=True, **scale)
        except ValueError:
            return False
        return True

    jpeg_dir = SAMPLES / "jpeg"
    if not jpeg_dir.is_dir():
        pytest.skip(f"real camera samples not found at {jpeg_dir}")
    outcomes = Counter()
    for src in sorted(jpeg_dir.iterdir()):
        for cls, _label, damage in _cases(src, src.read_bytes()):
            copy = tmp_path / src.name
            shutil.copyfile(src, copy)
            damage(copy)
            data = copy.read_bytes()
            full = strict_ok(data)
            width = simplejpeg.decode_jpeg_header(src.read_bytes())[1]
            for m in range(1, 8):  # every scale libjpeg-turbo offers below 8/8
                scaled = strict_ok(data, min_width=-(-width * m // 8), min_height=1)
                assert scaled == full, (src.name, cls, f"{m}/8")
            outcomes[full] += 1
    assert outcomes[False] > 50 and outcomes[True] > 5  # both outcomes were exercised
