"""The repeated-garbage signature of lossy (DCT) DNG tiles (ingest/decode/dct_tiles.py).

A zero fill inside a tile's entropy-coded data can decode as valid Huffman codes to the end of
the tile: no error from LibRaw or FFmpeg. What it leaves is the same AC coefficients decoded
block after block with only the differential DC moving: a run of 8x8 blocks along a block row
with one identical, richly textured shape. These tests pin that such runs are caught, and that
legitimate content (noise, clipped or black areas, smooth gradients) never raises it.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import samples_dir
from fixtures import dng
from fixtures.damage import image_data_ranges
from ingest.decode import dct_tiles
from ingest.decode.raw import verify_raw

TILE = 256


def _write_dng(path: Path, width: int, height: int, tile: int, tiles: list[bytes]) -> Path:
    """A CFA DNG of JPEG tiles (compression 7), as the Blackmagic cameras store lossy tiles."""
    return dng.write_pretiled_dng(path, width, height, tile, tiles, samples=1, bits=8,
                                  compression=7, photometric=32803, make="Blackmagic Design",
                                  model="Pocket Cinema Camera 4K", white=255)


def _jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    """One grey (one-component, 8-bit baseline) JPEG tile."""
    buf = io.BytesIO()
    Image.fromarray(image.clip(0, 255).astype(np.uint8), "L").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _scene_dng(tmp_path: Path, name: str, make_tile) -> Path:
    tiles = [_jpeg(make_tile(i)) for i in range(4)]
    return _write_dng(tmp_path / f"{name}.dng", 2 * TILE, 2 * TILE, TILE, tiles)


def _dct_check(result: dict) -> dict:
    return next(c for c in result["checks"] if c["name"] == "dct_tiles")


# --- the rule on decoded blocks -----------------------------------------------------------------

def _row_of_blocks(shape: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` blocks of one AC shape, the level drifting per block, each sample off by the
    one LSB of rounding an IDCT may add: what the decoder makes of repeated coefficients."""
    blocks = [shape + 2000 - 9 * k + rng.integers(0, 2, (8, 8)) for k in range(count)]
    row = np.hstack(blocks)
    noise = rng.normal(2000, 40, (8, 8 * 40))  # real content after the run
    return np.vstack([np.hstack([row, noise]), rng.normal(2000, 40, (8, row.shape[1] + 320))])


@pytest.mark.parametrize("count", [16, 40, 150])
def test_a_run_of_one_textured_block_is_found(count: int) -> None:
    rng = np.random.default_rng(count)
    shape = rng.normal(0, 30, (8, 8)).round()
    image = (_row_of_blocks(shape, count, rng).clip(0, 4095).astype(np.uint16) << 4)
    assert dct_tiles.repeated_blocks(image, 12) >= count


def test_a_run_shorter_than_the_threshold_is_not_decisive() -> None:
    rng = np.random.default_rng(7)
    image = _row_of_blocks(rng.normal(0, 30, (8, 8)).round(), dct_tiles.RUN_BLOCKS - 1, rng)
    assert dct_tiles.repeated_blocks(image.clip(0, 4095).astype(np.uint16) << 4, 12) \
        < dct_tiles.RUN_BLOCKS


def test_repeated_smooth_or_flat_blocks_never_count() -> None:
    """A ramp repeats its low-frequency AC exactly block after block; flat blocks repeat
    trivially. Neither is the texture decoded garbage has."""
    y, x = np.mgrid[0:64, 0:2048]
    for image in (40 + 0.6 * (x % 8) * 4 + 0 * y,          # a sawtooth of 8-pixel ramps
                  1000 + 3.0 * x + 2.0 * y,                  # a plane
                  np.full((64, 2048), 4095), np.zeros((64, 2048))):
        assert dct_tiles.repeated_blocks(image.astype(np.uint16) << 4, 12) == 0


def test_noise_never_repeats() -> None:
    rng = np.random.default_rng(3)
    for sigma in (1.0, 3.0, 30.0):
        image = rng.normal(2000, sigma, (256, 2048)).round().astype(np.uint16) << 4
        assert dct_tiles.repeated_blocks(image, 12) == 0


# --- hand-written lossy DNGs --------------------------------------------------------------------

_RNG = np.random.default_rng(11)
_Y, _X = np.mgrid[0:TILE, 0:TILE]
SCENES = {
    "noisy-photo": lambda i: _RNG.normal(110, 25, (TILE, TILE)),
    "clipped-sky-over-noise": lambda i: np.where(_Y < TILE // 2, 255.0,
                                                 _RNG.normal(120, 20, (TILE, TILE))),
    "gradient-with-noise": lambda i: 40 + 0.6 * _X + _RNG.normal(0, 2, (TILE, TILE)),
}
# Legitimate and tiny once compressed (a lens cap, a blown frame): the size check must know
# the tiles are lossy (a DC and an end-of-block code per block), not lossless JPEG.
SCENES_FLAT = {
    "pure-black": lambda i: np.zeros((TILE, TILE)),
    "flat-clipped": lambda i: np.full((TILE, TILE), 255.0),
    "noise-free-gradient": lambda i: 40 + 0.6 * _X + 0.2 * _Y,
}


@pytest.mark.parametrize("name", sorted(SCENES))
def test_legitimate_scenes_verify_ok(tmp_path: Path, name: str) -> None:
    path = _scene_dng(tmp_path, name, SCENES[name])
    result = verify_raw(str(path), path.read_bytes()).result
    assert _dct_check(result)["ok"], _dct_check(result)
    assert result["verdict"] == "ok", result["error"]


@pytest.mark.parametrize("name", sorted(SCENES_FLAT))
def test_flat_and_smooth_scenes_verify_ok(tmp_path: Path, name: str) -> None:
    path = _scene_dng(tmp_path, name, SCENES_FLAT[name])
    data = path.read_bytes()
    assert dct_tiles.decode_errors(data, image_data_ranges(path)) == []
    result = verify_raw(str(path), data).result
    assert result["verdict"] == "ok", result["error"]
    assert "lossy JPEG" in next(c["detail"] for c in result["checks"] if c["name"] == "data_size")


def test_zero_fills_in_a_hand_written_tile_are_all_caught(tmp_path: Path) -> None:
    """An 8-bit grey tile: FFmpeg's strict decode alone catches about a third of these."""
    rng = np.random.default_rng(5)
    path = _write_dng(tmp_path / "big.dng", 1024, 1024, 1024,
                      [_jpeg(rng.normal(110, 25, (1024, 1024)))])
    data = path.read_bytes()
    ((offset, count),) = image_data_ranges(path)
    pick = random.Random(3)
    for _ in range(12):
        at = offset + pick.randrange(700, count - 4096)
        damaged = data[:at] + bytes(4096) + data[at + 4096:]
        assert dct_tiles.decode_errors(damaged, [(offset, count)]), at


# --- the Blackmagic sample ----------------------------------------------------------------------

def _blackmagic() -> tuple[Path, bytes]:
    path = samples_dir("raw") / "blackmagic-pocket-cinema-4k.dng"
    return path, path.read_bytes()


def test_the_clean_sample_raises_nothing() -> None:
    path, data = _blackmagic()
    assert dct_tiles.decode_errors(data, image_data_ranges(path)) == []
    result = verify_raw(path.name, data).result
    assert result["verdict"] == "ok", result["error"]


# 4 KiB zero fills that decode without any error (LibRaw nor strict FFmpeg) and were passed.
FORMERLY_MISSED = [1645578, 1443853, 3073380]


@pytest.mark.parametrize("at", FORMERLY_MISSED)
def test_a_fill_that_decodes_cleanly_is_damaged(at: int) -> None:
    path, data = _blackmagic()
    damaged = data[:at] + bytes(4096) + data[at + 4096:]
    result = verify_raw(path.name, damaged).result
    assert result["verdict"] == "damaged"
    check = _dct_check(result)
    assert not check["ok"] and "repeat one textured block" in check["detail"], check


@pytest.mark.parametrize("fill", [0x00, 0xFF])
def test_seeded_fills_inside_the_tiles_are_all_caught(fill: int) -> None:
    path, data = _blackmagic()
    ranges = image_data_ranges(path)
    pick = random.Random(20261203 + fill)
    for _ in range(40):
        offset, count = ranges[pick.randrange(len(ranges))]
        at = offset + pick.randrange(0, count - 4096)
        damaged = data[:at] + bytes([fill]) * 4096 + data[at + 4096:]
        assert dct_tiles.decode_errors(damaged, ranges), (hex(fill), at)


def test_a_flat_colour_through_a_cfa_packed_in_each_block_is_no_finding():
    """A writer that packs a 2x2 CFA into each 8x8 block: a flat colour, quantised clean,
    repeats one textured block exactly; a period-2 pattern has no even-frequency energy, so
    it is not the decoded-garbage signature (an outside review's case)."""
    cfa = np.tile(np.array([[180, 90], [90, 40]], dtype=np.uint8), (64, 512))
    assert dct_tiles.repeated_blocks(cfa, 8) == 0
    garbage = np.tile(_RNG.integers(0, 255, (8, 8)).astype(np.uint8), (16, 64))
    assert dct_tiles.repeated_blocks(garbage, 8) >= dct_tiles.RUN_BLOCKS
