"""The sample card is what every other test stands on: check it is what it claims to be."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import wave
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import exifread
import numpy as np
import pytest
import rawpy
import simplejpeg
from PIL import Image

from fixtures import damage
from fixtures.card import CardManifest, build_card

CHECKOUT = Path(__file__).resolve().parents[1]
SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"
CLUTTER_MARKERS = (".Trashes/", ".Spotlight-V100/", "System Volume Information/", "/._DSC_0001.JPG")


@pytest.fixture(scope="module")
def card(tmp_path_factory) -> CardManifest:
    return build_card(tmp_path_factory.mktemp("card"), seed=0)


def _all_files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def _dngs(m: CardManifest) -> list[str]:
    return [f for f in m.images if f.endswith(".DNG")]


def _jpegs(m: CardManifest) -> list[str]:
    return [f for f in m.images if f.endswith(".JPG")]


def _exif(path: Path) -> dict:
    with open(path, "rb") as fh:
        return exifread.process_file(fh, details=False)


# --- structure --------------------------------------------------------------------------------

def test_card_layout_and_inventory(card: CardManifest):
    on_disk = _all_files(card.root)
    assert on_disk == set(card.files) | set(card.clutter)
    assert not set(card.files) & set(card.clutter)
    assert set(card.files) == set(card.images) | set(card.sidecars) | set(card.videos)
    folders = {f.rsplit("/", 1)[0] for f in card.files}
    assert folders == {"DCIM/100NIKON", "DCIM/101NIKON", "DCIM/100CANON"}
    assert 20 <= len(card.files) <= 30
    assert sum((card.root / f).stat().st_size for f in card.files) < 15_000_000
    exts = Counter(f.rsplit(".", 1)[1] for f in card.files)
    assert {"DNG", "JPG", "XMP", "WAV"} <= set(exts)
    assert {f.rsplit(".", 1)[1] for f in card.videos} == {"MOV", "MP4"}
    for marker in CLUTTER_MARKERS:
        assert any(marker in "/" + c for c in card.clutter), marker


def test_makes_and_models_differ_between_folders(card: CardManifest):
    makes = {}
    for rel in card.images:
        makes.setdefault(rel.split("/")[1], set()).add(str(_exif(card.root / rel)["Image Make"]))
    assert makes == {"100NIKON": {"NIKON CORPORATION"}, "101NIKON": {"NIKON CORPORATION"},
                     "100CANON": {"Canon"}}


def test_collisions_are_different_files_on_the_same_day(card: CardManifest):
    assert card.collisions
    cameras = set()
    for group in card.collisions:
        assert len({g.rsplit("/", 1)[1] for g in group}) == 1
        assert len({card.captured[g].date() for g in group}) == 1
        contents = {(card.root / g).read_bytes() for g in group}
        assert len(contents) == len(group)
        cameras |= {g.split("/")[1] for g in group}
    assert {"100NIKON", "100CANON"} <= cameras
    assert any(g[0].endswith(".DNG") for g in card.collisions)
    assert any(g[0].endswith(".JPG") for g in card.collisions)


def test_pairs_and_sidecars_share_stems(card: CardManifest):
    assert len(card.pairs) >= 3
    for raw, jpg in card.pairs:
        assert raw.endswith(".DNG") and jpg.endswith(".JPG")
        assert raw[:-4] == jpg[:-4]
        assert card.captured[raw] == card.captured[jpg]
        assert str(_exif(card.root / raw)["EXIF DateTimeOriginal"]) == str(
            _exif(card.root / jpg)["EXIF DateTimeOriginal"])
    image_stems = {f[:-4] for f in card.images}
    for side in card.sidecars:
        assert side[:-4] in image_stems, side


def test_capture_days_and_mtimes(card: CardManifest):
    assert len({t.date() for t in card.captured.values()}) >= 2
    for rel in card.files:
        expected = time.mktime(card.captured[rel].timetuple())
        assert os.stat(card.root / rel).st_mtime == pytest.approx(expected, abs=1e-3), rel


# --- decoders ---------------------------------------------------------------------------------

def test_every_dng_unpacks_and_carries_metadata(card: CardManifest):
    dngs = _dngs(card)
    assert len(dngs) >= 6
    for rel in dngs:
        path = card.root / rel
        with rawpy.imread(str(path)) as raw:
            data = raw.raw_image.copy()
            black = raw.black_level_per_channel[0]
            white = raw.white_level
            assert raw.raw_pattern.shape == (2, 2)
            assert 400 <= data.shape[0] <= 800 and 600 <= data.shape[1] <= 1200
            assert data.min() >= black and data.max() == white  # clipped sun, nothing above
            assert 0 < np.count_nonzero(data == white) < data.size // 20
            assert data.std() > 100  # shapes and gradients, not a flat field
            rgb = raw.postprocess(half_size=True)
            assert sorted(rgb.shape[:2]) == sorted(s // 2 for s in data.shape)
            assert raw.other.timestamp == card.captured[rel]
        tags = _exif(path)
        assert str(tags["EXIF DateTimeOriginal"]) == card.captured[rel].strftime(
            "%Y:%m:%d %H:%M:%S")
        assert str(tags["Image Make"]) and str(tags["Image Model"])


def test_dng_previews_jpeg_for_some_bitmap_for_others(card: CardManifest):
    with_jpeg = set(card.jpeg_previews)
    assert with_jpeg and set(_dngs(card)) - with_jpeg
    for rel in _dngs(card):
        with rawpy.imread(str(card.root / rel)) as raw:
            thumb = raw.extract_thumb()
        if rel in with_jpeg:
            assert thumb.format == rawpy.ThumbFormat.JPEG
            pixels = simplejpeg.decode_jpeg(thumb.data, strict=True)
            assert max(pixels.shape[:2]) == 640
        else:
            assert thumb.format == rawpy.ThumbFormat.BITMAP


def test_a_rotated_dng_postprocesses_to_portrait(card: CardManifest):
    rotated = [r for r in _dngs(card)
               if str(_exif(card.root / r)["Image Orientation"]).startswith("Rotated")]
    assert rotated
    with rawpy.imread(str(card.root / rotated[0])) as raw:
        rgb = raw.postprocess(half_size=True)
    assert rgb.shape[0] > rgb.shape[1]


def test_jpegs_decode_strictly_except_the_damaged_one(card: CardManifest):
    assert len(card.damaged) == 1
    bad = card.damaged[0]
    assert bad in _jpegs(card) and bad not in {p for g in card.collisions for p in g}
    orientations = set()
    for rel in _jpegs(card):
        data = (card.root / rel).read_bytes()
        tags = _exif(card.root / rel)
        assert "EXIF DateTimeOriginal" in tags and "Image Model" in tags
        orientations.add(tags["Image Orientation"].values[0])
        with Image.open(card.root / rel) as im:
            im.load()  # Pillow accepts all of them, the damaged one included
        if rel == bad:
            with pytest.raises(ValueError, match="Corrupt JPEG"):
                simplejpeg.decode_jpeg(data, strict=True)
        else:
            assert simplejpeg.decode_jpeg(data, strict=True).shape[2] == 3
    assert {1, 6, 8} <= orientations


def test_sidecars_and_videos_are_valid(card: CardManifest):
    for rel in card.sidecars:
        path = card.root / rel
        if rel.endswith(".WAV"):
            with wave.open(str(path)) as w:
                assert w.getnframes() > 0 and w.getnchannels() == 1
        else:
            root = ET.fromstring(path.read_bytes())
            assert root.tag == "{adobe:ns:meta/}xmpmeta"
    for rel in card.videos:
        data = (card.root / rel).read_bytes()
        assert data[4:8] == b"ftyp" and len(data) > 100_000


# --- determinism and options ------------------------------------------------------------------

def test_same_seed_same_bytes_other_seed_differs(card: CardManifest, tmp_path):
    again = build_card(tmp_path / "again", seed=0)
    other = build_card(tmp_path / "other", seed=1)
    assert again.files == card.files and again.clutter == card.clutter
    for rel in card.files + card.clutter:
        assert (again.root / rel).read_bytes() == (card.root / rel).read_bytes(), rel
    assert other.files == card.files
    differ = [r for r in card.images
              if (other.root / r).read_bytes() != (card.root / r).read_bytes()]
    assert differ == card.images


def test_cli_no_damage_changes_only_the_damaged_file(card: CardManifest, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "fixtures.card", str(tmp_path / "c"), "--seed", "0", "--no-damage"],
        cwd=CHECKOUT, capture_output=True, text=True, check=True)
    assert "damaged" not in out.stdout and "collision" in out.stdout
    clean = tmp_path / "c"
    assert _all_files(clean) == _all_files(card.root)
    changed = [r for r in card.files if (clean / r).read_bytes() != (card.root / r).read_bytes()]
    assert changed == card.damaged
    simplejpeg.decode_jpeg((clean / card.damaged[0]).read_bytes(), strict=True)


def test_scale_multiplies_frames(card: CardManifest, tmp_path):
    big = build_card(tmp_path / "big", seed=0, scale=2)
    assert len(big.files) == 2 * len(card.files)
    assert len(big.collisions) == 2 * len(card.collisions)
    assert len(big.damaged) == 1 and len(set(big.files)) == len(big.files)


# --- damage helpers ---------------------------------------------------------------------------

@pytest.fixture
def dng_copy(card: CardManifest, tmp_path) -> Path:
    return Path(shutil.copy(card.root / _dngs(card)[0], tmp_path / "x.DNG"))


@pytest.fixture
def jpeg_copy(card: CardManifest, tmp_path) -> Path:
    good = next(j for j in _jpegs(card) if j not in card.damaged)
    return Path(shutil.copy(card.root / good, tmp_path / "x.JPG"))


def test_truncate_keeps_the_fraction_and_unpack_fails(dng_copy: Path):
    before = dng_copy.read_bytes()
    note = damage.truncate(dng_copy, 0.5)
    after = dng_copy.read_bytes()
    assert len(after) == len(before) // 2 and before.startswith(after)
    assert str(len(after)) in note
    with rawpy.imread(str(dng_copy)) as raw, pytest.raises(rawpy.LibRawIOError):
        raw.raw_image  # noqa: B018 - the access is what unpacks
    with pytest.raises(ValueError):
        damage.truncate(dng_copy, 1.5)


def test_fill_block_in_strips_leaves_zero_rows(dng_copy: Path):
    ranges = damage.tiff_strip_ranges(dng_copy)
    with rawpy.imread(str(dng_copy)) as raw:
        h, w = raw.raw_image.shape
    assert sum(c for _, c in ranges) == h * w * 2 and len(ranges) > 1
    before = dng_copy.read_bytes()
    offset = ranges[1][0]
    damage.fill_block(dng_copy, offset, 4 * w * 2)
    after = dng_copy.read_bytes()
    assert after[offset:offset + 8 * w] == bytes(8 * w)
    assert after[:offset] == before[:offset] and after[offset + 8 * w:] == before[offset + 8 * w:]
    with rawpy.imread(str(dng_copy)) as raw:
        assert np.count_nonzero((raw.raw_image == 0).all(axis=1)) == 4
    with pytest.raises(ValueError):
        damage.fill_block(dng_copy, len(after) - 1, 2)


def test_flip_bits_changes_one_bit_per_offset(jpeg_copy: Path):
    before = jpeg_copy.read_bytes()
    offsets = [100, 5000, 20000]
    damage.flip_bits(jpeg_copy, offsets, seed=7)
    after = jpeg_copy.read_bytes()
    diff = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
    assert diff == offsets
    assert all(bin(before[i] ^ after[i]).count("1") == 1 for i in offsets)
    jpeg_copy.write_bytes(before)
    damage.flip_bits(jpeg_copy, offsets, seed=7)
    assert jpeg_copy.read_bytes() == after  # the seed picks the bits


def test_destroy_header_makes_the_file_unidentifiable(dng_copy: Path):
    before = dng_copy.read_bytes()
    damage.destroy_header(dng_copy, 256)
    after = dng_copy.read_bytes()
    assert after[:256] == bytes(256) and after[256:] == before[256:]
    with pytest.raises(rawpy.LibRawFileUnsupportedError):
        rawpy.imread(str(dng_copy))


def test_jpeg_scan_range_brackets_the_entropy_data(jpeg_copy: Path):
    data = jpeg_copy.read_bytes()
    start, end = damage.jpeg_scan_range(data)
    sos = data.rfind(b"\xff\xda", 0, start)
    assert start == sos + 2 + int.from_bytes(data[sos + 2:sos + 4], "big")
    assert data[end:end + 2] == b"\xff\xd9" and end == len(data) - 2
    # Bytes after EOI (phones append them) must not move the end.
    assert damage.jpeg_scan_range(data + b"\xff\xd9junk\xff\xd9") == (start, end)
    damage.fill_block(jpeg_copy, (start + end) // 2, 4096)
    with pytest.raises(ValueError):
        simplejpeg.decode_jpeg(jpeg_copy.read_bytes(), strict=True)
    with pytest.raises(ValueError):
        damage.jpeg_scan_range(data[: (start + end) // 2])


def test_locators_on_real_samples():
    if not SAMPLES.is_dir():
        pytest.skip(f"real camera samples not found at {SAMPLES}")
    for path in sorted((SAMPLES / "jpeg").iterdir()):
        data = path.read_bytes()
        start, end = damage.jpeg_scan_range(data)
        assert 0 < start < end and data[end:end + 2] == b"\xff\xd9", path.name
    dng = SAMPLES / "raw" / "canon-550d-magiclantern.dng"
    if dng.exists():
        ranges = damage.tiff_strip_ranges(dng)
        with rawpy.imread(str(dng)) as raw:
            h, w = raw.raw_image.shape
        # Magic Lantern writes 14-bit packed, uncompressed: the strips hold exactly that.
        assert sum(c for _, c in ranges) == h * w * 14 // 8
