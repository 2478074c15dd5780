"""Decode cost per megapixel on the real samples: the bare decoder against ingest's check.

Run: .venv/bin/python -m pytest benchmarks/bench_decode.py --benchmark-only
- RAW: rawpy unpack alone (open + raw_image: the CPU floor of e2e step b) and ingest's
  `verify_raw` (unpack plus the structure, size, constant-span, non-zero and embedded-preview
  checks), each as ms per megapixel of the stored raw frame; and the content checks alone
  (constant spans and non-zero share, on the unpacked frame);
- JPEG: simplejpeg strict decode at full size (e2e step b) and ingest's `verify_jpeg` as it
  runs without previews (strict decode at the smallest DCT scale).
Preview times are in bench_preview.py. Files are read into memory outside the timing.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import rawpy
import simplejpeg

from ingest.decode.jpeg import verify_jpeg
from ingest.decode.raw import read_structure, verify_raw
from ingest.decode.sensor import content_checks, sensor_levels

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"
RAWS = sorted((SAMPLES / "raw").iterdir()) if (SAMPLES / "raw").is_dir() else []
JPEGS = sorted((SAMPLES / "jpeg").iterdir()) if (SAMPLES / "jpeg").is_dir() else []
MISSING = f"real samples not found at {SAMPLES}"


def _ids(p: Path) -> str:
    return p.name


def _unpack(data: bytes) -> tuple[int, int]:
    with rawpy.RawPy() as raw:
        raw.open_buffer(io.BytesIO(data))
        return raw.raw_image.shape[:2]


def _raw_megapixels(data: bytes) -> float:
    with rawpy.RawPy() as raw:
        raw.open_buffer(io.BytesIO(data))
        return raw.sizes.raw_height * raw.sizes.raw_width / 1e6


def _jpeg_megapixels(data: bytes) -> float:
    height, width, _cs, _sub = simplejpeg.decode_jpeg_header(data)
    return height * width / 1e6


@pytest.mark.parametrize("path", RAWS or [None], ids=_ids if RAWS else None)
def test_raw_unpack(benchmark, rate, path):
    if path is None:
        pytest.skip(MISSING)
    data = path.read_bytes()
    mp = _raw_megapixels(data)
    shape = benchmark(_unpack, data)
    assert shape[0] * shape[1] > 0
    benchmark.extra_info["megapixels"] = round(mp, 2)
    rate(ms_per_MP=lambda s: s * 1000 / mp)


@pytest.mark.parametrize("path", RAWS or [None], ids=_ids if RAWS else None)
def test_raw_ingest_check(benchmark, rate, path):
    if path is None:
        pytest.skip(MISSING)
    data = path.read_bytes()
    mp = _raw_megapixels(data)

    def check():
        dec = verify_raw(str(path), data)
        if dec.raw is not None:
            dec.raw.close()
        return dec.result["verdict"]

    assert benchmark(check) == "ok"
    benchmark.extra_info["megapixels"] = round(mp, 2)
    rate(ms_per_MP=lambda s: s * 1000 / mp)


@pytest.mark.parametrize("clipped", [False, True], ids=["as shot", "top half clipped"])
@pytest.mark.parametrize("path", RAWS or [None], ids=_ids if RAWS else None)
def test_raw_content_checks(benchmark, rate, path, clipped):
    """As verify_raw calls them; "top half clipped" sets half the frame to the white level,
    so most spans are constant and the checks take their slow path (clipping, fills)."""
    if path is None:
        pytest.skip(MISSING)
    data = path.read_bytes()
    mp = _raw_megapixels(data)
    with rawpy.RawPy() as raw:
        raw.open_buffer(io.BytesIO(data))
        stored, visible = raw.raw_image.copy(), raw.raw_image_visible.copy()
        raw_ifd = read_structure(data, str(path)).tiff.raw_ifd()
        levels = sensor_levels(raw, raw_ifd.tile_width if raw_ifd is not None else 0)
    if clipped:
        for frame in (stored, visible):
            frame[: frame.shape[0] // 2] = levels.white

    def checks():
        return [c["ok"] for c in content_checks(stored, visible, levels)]

    spans_ok, nonzero_ok = benchmark(checks)
    assert nonzero_ok and (spans_ok or clipped)  # the real samples are whole
    benchmark.extra_info["megapixels"] = round(mp, 2)
    rate(ms_per_MP=lambda s: s * 1000 / mp)


@pytest.mark.parametrize("path", JPEGS or [None], ids=_ids if JPEGS else None)
def test_jpeg_strict_full(benchmark, rate, path):
    if path is None:
        pytest.skip(MISSING)
    data = path.read_bytes()
    mp = _jpeg_megapixels(data)
    pixels = benchmark(simplejpeg.decode_jpeg, data, strict=True)
    assert pixels.shape[0] * pixels.shape[1] == round(mp * 1e6)
    benchmark.extra_info["megapixels"] = round(mp, 2)
    rate(ms_per_MP=lambda s: s * 1000 / mp)


@pytest.mark.parametrize("path", JPEGS or [None], ids=_ids if JPEGS else None)
def test_jpeg_ingest_check(benchmark, rate, path):
    if path is None:
        pytest.skip(MISSING)
    data = path.read_bytes()
    mp = _jpeg_megapixels(data)
    result = benchmark(verify_jpeg, data, None)
    assert result.result["verdict"] == "ok"
    benchmark.extra_info["megapixels"] = round(mp, 2)
    rate(ms_per_MP=lambda s: s * 1000 / mp)
