"""Preview time per image: the embedded JPEG path against a half-size render from sensor data.

Run: .venv/bin/python -m pytest benchmarks/bench_preview.py --benchmark-only
The RAW is opened and unpacked once per file outside the timing, as in run_task, where the
preview reuses the open rawpy object of the decode check.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import rawpy

from ingest.decode.raw import verify_raw
from ingest.preview import PreviewRequest, preview_from_raw

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples" / "raw"
RAWS = sorted(SAMPLES.iterdir()) if SAMPLES.is_dir() else []
SIZE = 1024  # the embedded previews of the samples are 1280 and 1440 px


@pytest.fixture(params=RAWS, ids=lambda p: p.name)
def decoded(request):
    path = request.param
    dec = verify_raw(str(path), path.read_bytes())
    if dec.raw is None:
        pytest.skip(f"{path.name} did not decode")
    yield path, dec
    dec.raw.close()


@pytest.mark.parametrize("source", ["embedded", "rendered"])
def test_preview_time(benchmark, tmp_path, decoded, source):
    if not RAWS:
        pytest.skip(f"real samples not found at {SAMPLES}")
    path, dec = decoded
    if source == "embedded" and (dec.thumb is None or max(dec.thumb.shape[:2]) < SIZE):
        pytest.skip(f"{path.name} has no embedded preview of {SIZE} px or more")
    thumb = dec.thumb if source == "embedded" else None
    req = PreviewRequest((str(tmp_path / "p.jpg"),), SIZE, 85, "2024-05-11T10:02:47")
    benchmark.extra_info["file"] = path.name
    result = benchmark(preview_from_raw, dec.raw, thumb, req)
    assert result["source"] == source


def test_decode_reference(benchmark):
    """The decode check alone on the largest sample, to put the preview times in proportion."""
    if not RAWS:
        pytest.skip(f"real samples not found at {SAMPLES}")
    path = max(RAWS, key=lambda p: p.stat().st_size)
    data = path.read_bytes()

    def decode():
        raw = rawpy.RawPy()
        raw.open_buffer(io.BytesIO(data))
        raw.raw_image  # noqa: B018 - forces the unpack
        raw.close()

    benchmark(decode)
