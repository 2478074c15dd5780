"""The lossless-JPEG tile proof (ingest/decode/lj92.py) against tiles whose coding is known.

The tiles are written by fixtures/dng.py's own LJ92 encoder with each of T.81's seven
predictors; LibRaw decoding them back to exactly the samples written shows the encoder is
right, so the proof is tested against an independent reading of the standard, not against
itself. Needs no camera samples.
"""

from __future__ import annotations

import numpy as np
import pytest
import rawpy

from fixtures import damage as dmg
from fixtures import dng
from ingest.decode import lj92
from ingest.decode.raw import read_structure
from ingest.decode.task import run_task

CAMERA = dng.Camera("Fixture", "LJ92", "Fixture LJ92", (1, 0, 0, 0, 1, 0, 0, 0, 1))
TILE = (240, 256)


def _frame(case: str, h: int = 500, w: int = 700) -> tuple[np.ndarray, int]:
    rng = np.random.default_rng(len(case))
    if case == "noise12":
        return rng.integers(0, 4096, (h, w)).astype(np.uint16), 12
    # A smooth 14-bit scene with sensor-like noise: differences stay small, as in real files.
    ramp = np.linspace(600, 14000, w)[None, :] + np.linspace(0, 1500, h)[:, None]
    return np.round(ramp + rng.normal(0, 12, (h, w))).clip(0, 16383).astype(np.uint16), 14


def _write(tmp_path, case: str, predictor: int):
    data, bits = _frame(case)
    path = dng.write_dng(tmp_path / f"{case}-p{predictor}.dng", data, CAMERA, black=0,
                         white=(1 << bits) - 1, bits=bits, lj92_tile=TILE,
                         lj92_predictor=predictor)
    with rawpy.imread(str(path)) as raw:  # the encoder is right by LibRaw's reading
        assert np.array_equal(raw.raw_image, data)
    return path, data


@pytest.mark.parametrize("predictor", range(1, 8))
@pytest.mark.parametrize("case", ["noise12", "smooth14"])
def test_every_tile_of_a_sound_file_is_exact(tmp_path, case, predictor):
    path, data = _write(tmp_path, case, predictor)
    raw_bytes = path.read_bytes()
    ifd = read_structure(raw_bytes, str(path)).tiff.raw_ifd()
    result = lj92.check_tiles(raw_bytes, ifd.ranges, data, ifd.tile_width)
    assert result.bad == [] and result.unchecked == 0
    assert result.checked == len(ifd.ranges) == 9  # 3x3 tiles, five of them edge tiles
    dec = run_task({"path": str(path), "kind": "raw"})["decode"]
    assert dec["verdict"] == "ok", dec["error"]
    assert "9 of 9 tiles exact" in next(c["detail"] for c in dec["checks"]
                                        if c["name"] == "lj92_tiles")


@pytest.mark.parametrize("predictor", [1, 4, 6])
@pytest.mark.parametrize("fill", [0x00, 0xFF])
def test_a_filled_block_in_any_full_tile_is_damage(tmp_path, predictor, fill):
    """Tiles 0, 1, 3 and 4 of the 3x3 grid are whole; the others are edge tiles, whose cropped
    padding is never proof enough to call them damaged (see the next test)."""
    path, _ = _write(tmp_path, "smooth14", predictor)
    ranges = read_structure(path.read_bytes(), str(path)).tiff.raw_ifd().ranges
    sound = path.read_bytes()
    caught = []
    for index in (0, 1, 3, 4):
        offset, count = ranges[index]
        path.write_bytes(sound)
        dmg.fill_block(path, offset + count // 2, min(512, count // 4), fill)
        assert path.read_bytes() != sound
        dec = run_task({"path": str(path), "kind": "raw"})["decode"]
        caught.append((index, dec["verdict"], dec["error"]))
    missed = [(i, e) for i, v, e in caught if v != "damaged"]
    assert not missed, missed


def test_an_edge_tile_that_no_padding_fits_is_unchecked_without_proof_of_the_padding(tmp_path):
    """Edge tiles padded by repeating the last two columns and rows (keeping the CFA phase),
    all in a clipped area: several paddings fit each alike, so none is proven the writer's,
    and a fill in an edge tile is left unchecked (an outside review's false alarm)."""
    data, bits = _frame("smooth14")
    data[:, -200:] = 16383  # the right edge clipped: paddings give the same bits there
    data[-20:, :] = 16383   # and the bottom edge
    tiles = []
    for top in range(0, 500, 240):
        for left in range(0, 700, 256):
            block = data[top:top + 240, left:left + 256]
            rows = np.arange(240)
            cols = np.arange(256)
            h, w = block.shape
            rows = np.where(rows < h, rows, h - 2 + (rows - h) % 2)
            cols = np.where(cols < w, cols, w - 2 + (cols - w) % 2)
            tiles.append(dng.lj92_encode(block[np.ix_(rows, cols)], bits))
    blob, ranges = b"", []
    for t in tiles:
        ranges.append((len(blob), len(t)))
        blob += t
    result = lj92.check_tiles(blob, ranges, data, 256)
    assert result.bad == [] and result.checked == 9
    # What LibRaw would make of damage in the bottom-right edge tile: other samples from the
    # same number of stored bits.
    misread = data.copy()
    misread[480:, 512:] = np.random.default_rng(1).integers(0, 4096, misread[480:, 512:].shape)
    result = lj92.check_tiles(blob, ranges, misread, 256)
    assert result.bad == [] and result.unchecked == 1 and result.checked == 8


def test_an_edge_tile_misfit_is_damage_once_the_writers_padding_is_proven(tmp_path):
    """The D5000-like case: noisy edge tiles padded with zeros; only zero padding fits them, so
    it is the writer's, and an edge tile that no longer fits is damaged."""
    data, bits = _frame("noise12")
    tiles = []
    for top in range(0, 500, 240):
        for left in range(0, 700, 256):
            block = data[top:top + 240, left:left + 256]
            block = np.pad(block, ((0, 240 - block.shape[0]), (0, 256 - block.shape[1])))
            tiles.append(dng.lj92_encode(block, bits))
    blob, ranges = b"", []
    for t in tiles:
        ranges.append((len(blob), len(t)))
        blob += t
    assert lj92.check_tiles(blob, ranges, data, 256).checked == 9
    misread = data.copy()
    misread[480:, 512:] = np.random.default_rng(1).integers(0, 4096, misread[480:, 512:].shape)
    result = lj92.check_tiles(blob, ranges, misread, 256)
    assert result.checked == 8 and len(result.bad) == 1, result
    assert "padding (constant)" in result.bad[0]


def test_a_tile_whose_header_is_gone_is_damage_whatever_the_heap_held(tmp_path):
    path, _ = _write(tmp_path, "smooth14", 1)
    offset, _ = read_structure(path.read_bytes(), str(path)).tiff.raw_ifd().ranges[1]
    dmg.fill_block(path, offset, 64, 0x00)
    dec = run_task({"path": str(path), "kind": "raw"})["decode"]
    assert dec["verdict"] == "damaged"
    assert "lj92_tiles" in dec["error"] or "LibRaw" in dec["error"], dec["error"]


def test_no_tile_that_fits_means_no_judgement():
    """A writer whose tiles this model does not describe (here: samples that are not what was
    coded, as behind a linearisation curve) is not called damaged on a misfit alone."""
    coded = np.full((16, 32), 1000, np.uint16)
    tile = dng.lj92_encode(coded, 12)
    image = coded + (np.arange(32, dtype=np.uint16) % 3)  # what a curve made of the values
    result = lj92.check_tiles(tile, [(0, len(tile))], image, 32)
    assert result.checked == 0 and len(result.bad) == 1
