"""HEIF/HEIC verification (ingest/decode/heif.py) against the real phone and camera samples.

libheif (libde265) conceals damaged HEVC data, so these tests hold the strict path to what it
promises: seeded 4 KiB zero and 0xFF fills inside the coded image data of every real sample are
reported as damaged (at least 95 % of them; the rates are printed), truncation and broken boxes
are damaged, damage in a Samsung motion photo's clip is damaged, and legitimate files (the
untouched samples, flat or transparent or 10-bit images written by pillow-heif) stay "ok".
"""

from __future__ import annotations

import io
import random
import struct

import numpy as np
import pillow_heif
import pytest
from PIL import Image, features

from conftest import samples_dir
from ingest.decode import DAMAGED, OK, UNSUPPORTED
from ingest.decode.heif import coded_data_ranges, motion_photo_clip, strict_checks, verify_heif
from ingest.decode.isobmff import parse_heif, parse_hvcc, top_level_boxes

IPHONE = "photoprism-apple-iphone15pro-iphone_15_pro.heic"
SAMSUNG = "immich-samsung-sm-s906u-samsung-one-ui-6.heic"
NOKIA = "exifsamples-nokia8.3-HMD_Nokia_8.3_5G.heif"
CANON = "exiv2-canon-eosr5-Canon.HIF"
SAMPLES = [IPHONE, SAMSUNG, NOKIA, CANON]
FILL = 4096
# Fills per sample and fill byte. The rate tests call strict_checks(), the half of verify_heif
# that decides the verdict (libheif only adds pixels, and a catch when it raises), to keep the
# suite quick; other tests go through verify_heif itself.
OFFSETS = 20


@pytest.fixture(scope="module")
def samples() -> dict[str, bytes]:
    folder = samples_dir("heif")
    found = {name: (folder / name).read_bytes() for name in SAMPLES if (folder / name).exists()}
    if len(found) != len(SAMPLES):
        pytest.skip(f"HEIF samples missing from {folder}: {sorted(set(SAMPLES) - set(found))}")
    return found


def _filled(data: bytes, offset: int, value: int, size: int = FILL) -> bytes:
    out = bytearray(data)
    end = min(len(out), offset + size)
    out[offset:end] = bytes([value]) * (end - offset)
    return bytes(out)


def _offsets(ranges: list[tuple[int, int]], count: int, seed: str) -> list[int]:
    """Seeded offsets, uniform over the bytes of the given ranges."""
    rng = random.Random(seed)
    total = sum(length for _, length in ranges)
    out = []
    for _ in range(count):
        k = rng.randrange(total)
        for start, length in ranges:
            if k < length:
                out.append(start + k)
                break
            k -= length
    return out


def _failed(result: dict) -> list[str]:
    return [c["name"] for c in result["checks"] if not c["ok"]]


@pytest.mark.parametrize("name", SAMPLES)
def test_real_sample_verifies_ok(samples, name):
    dec = verify_heif(samples[name])
    assert dec.result["verdict"] == OK, dec.result["error"]
    assert dec.pixels is not None and dec.pixels.ndim == 3
    names = [c["name"] for c in dec.result["checks"]]
    assert {"structure", "nal units", "hevc decode", "coverage", "decode"} <= set(names)
    assert ("motion photo" in names) == (name == SAMSUNG)


def test_coded_data_ranges_are_the_image_items(samples):
    for name, data in samples.items():
        ranges = coded_data_ranges(data)
        heif = parse_heif(data)
        hevc = [i for i in heif.items.values() if i.type == "hvc1"]
        assert len(ranges) == sum(len(i.extents) for i in hevc)
        for (a, la), (b, _) in zip(ranges, ranges[1:], strict=False):
            assert a + la <= b, f"{name}: ranges overlap"
        assert all(0 < start and start + length <= len(data) for start, length in ranges)
        # Exif/XMP items are not image data.
        for item in heif.items.values():
            if item.type in ("Exif", "mime"):
                ((start, _),) = item.extents
                assert not any(s <= start < s + n for s, n in ranges), name
        clip = motion_photo_clip(data)
        if clip:
            assert all(s + n <= clip[0] or s >= clip[0] + clip[1] for s, n in ranges)
    # The grid tiles, thumbnail and HDR gain map of the iPhone photo: nearly its whole mdat.
    iphone = samples[IPHONE]
    mdat = next(b for b in top_level_boxes(iphone)[0] if b.type == "mdat")
    assert sum(n for _, n in coded_data_ranges(iphone)) > 0.98 * (mdat.end - mdat.body)


@pytest.mark.parametrize("fill", [0x00, 0xFF], ids=["zero", "0xFF"])
@pytest.mark.parametrize("name", SAMPLES)
def test_fills_in_coded_data_are_damaged(samples, name, fill):
    data = samples[name]
    offsets = _offsets(coded_data_ranges(data), OFFSETS, f"{name}-{fill}")
    missed, caught_by = [], {}
    for offset in offsets:
        checks, unsupported = strict_checks(_filled(data, offset, fill))
        failed = [c["name"] for c in checks if not c["ok"]]
        if failed:
            caught_by[failed[0]] = caught_by.get(failed[0], 0) + 1
        else:
            missed.append((offset, unsupported))
    rate = 1 - len(missed) / len(offsets)
    print(f"{name} {fill:#04x} fill: {rate:.0%} caught, first failed check {caught_by}")
    assert rate >= 0.95, f"missed {missed}"


def test_fill_in_the_gain_map_is_damaged(samples):
    """The HDR gain map is a monochrome auxiliary image: its undecoded blocks are zero like a
    legitimately black gain map would be, so only the second decode over another picture can
    tell them apart."""
    data = samples[IPHONE]
    heif = parse_heif(data)
    (gain_map,) = heif.refs["auxl"]
    ((start, length),) = heif.items[gain_map].extents
    for offset in _offsets([(start, length)], 3, "gain map"):
        result = verify_heif(_filled(data, offset, 0xFF)).result
        assert result["verdict"] == DAMAGED, offset
        assert "coverage" in _failed(result) or "nal units" in _failed(result)
        assert f"item {gain_map}" in result["error"]


@pytest.mark.parametrize("name", SAMPLES)
def test_truncation_is_damaged(samples, name):
    data = samples[name]
    ranges = coded_data_ranges(data)
    middle = ranges[len(ranges) // 2][0] + 100
    for cut in sorted({len(data) - 1, len(data) - 5000, middle, ranges[0][0] + 10}):
        result = verify_heif(data[:cut]).result
        assert result["verdict"] == DAMAGED, (cut, result)
        assert "structure" in _failed(result)


def test_damage_in_the_motion_photo_clip_is_damaged(samples):
    data = samples[SAMSUNG]
    start, length = motion_photo_clip(data)
    assert data[start + 4:start + 8] == b"ftyp" and length == 3_226_469
    rng = random.Random("clip")
    for fill in (0x00, 0xFF):
        for _ in range(2):
            offset = start + rng.randrange(length - FILL)
            checks, _ = strict_checks(_filled(data, offset, fill))
            assert [c["name"] for c in checks if not c["ok"]] == ["motion photo"], (fill, offset)
    result = verify_heif(_filled(data, start + length // 3, 0xFF)).result
    assert result["verdict"] == DAMAGED and _failed(result) == ["motion photo"]
    assert "never decoded" in result["error"] or "NAL" in result["error"], result["error"]
    # A clip cut short inside its box is truncation of the file.
    cut = verify_heif(data[:start + length // 2]).result
    assert cut["verdict"] == DAMAGED and "structure" in _failed(cut)


def test_broken_boxes_are_damaged(samples):
    data = samples[CANON]
    meta = next(b for b in top_level_boxes(data)[0] if b.type == "meta")
    # meta claims to reach past its parent (the file is one box longer than it is).
    too_long = bytearray(data)
    struct.pack_into(">I", too_long, meta.start, meta.end - meta.start + 8)
    result = verify_heif(bytes(too_long)).result
    assert result["verdict"] == DAMAGED and "structure" in _failed(result)
    # An iloc extent pointing past the end of the file.
    far = bytearray(data)
    start, _ = coded_data_ranges(data)[0]
    at = far.find(struct.pack(">I", start), meta.start, meta.end)
    assert at > 0
    struct.pack_into(">I", far, at, len(data) + 10)
    result = verify_heif(bytes(far)).result
    assert result["verdict"] == DAMAGED and "structure" in _failed(result)
    assert "outside the file" in result["error"]
    # A NAL length prefix that no longer tiles the item's data.
    wrong = bytearray(data)
    (length,) = struct.unpack_from(">I", wrong, start)
    struct.pack_into(">I", wrong, start, length + 1)
    result = verify_heif(bytes(wrong)).result
    assert result["verdict"] == DAMAGED and _failed(result)[0] == "nal units"


def _pillow_heif(img: Image.Image | pillow_heif.HeifFile, **kwargs) -> bytes:
    heif = img if isinstance(img, pillow_heif.HeifFile) else pillow_heif.from_pillow(img)
    buf = io.BytesIO()
    heif.save(buf, **kwargs)
    return buf.getvalue()


def _legit_files() -> dict[str, bytes]:
    rng = np.random.default_rng(5)
    noise = rng.integers(0, 255, (300, 401, 3), dtype=np.uint8)
    half_clear = np.dstack([noise[:256, :256], np.where(np.arange(256)[:, None] < 128, 0, 255)
                            .repeat(256, 1).astype(np.uint8)])
    deep = (rng.integers(0, 65535, (200, 300, 3))).astype(np.uint16)
    return {
        "flat black": _pillow_heif(Image.new("RGB", (640, 480), (0, 0, 0)), quality=80),
        "flat white": _pillow_heif(Image.new("RGB", (640, 480), (255, 255, 255)), quality=80),
        "flat green": _pillow_heif(Image.new("RGB", (640, 480), (0, 255, 0)), quality=80),
        "black greyscale": _pillow_heif(Image.new("L", (300, 200), 0), quality=80),
        "fully transparent": _pillow_heif(Image.new("RGBA", (256, 256), (0, 0, 0, 0)),
                                          quality=80),
        "half transparent": _pillow_heif(Image.fromarray(half_clear), quality=80),
        "odd-sized noise": _pillow_heif(Image.fromarray(noise[:37, :53]), quality=80),
        "lossless": _pillow_heif(Image.fromarray(noise), quality=-1),
        "10-bit black": _pillow_heif(pillow_heif.from_bytes(
            "RGB;16", (300, 200), np.zeros((200, 300, 3), np.uint16).tobytes()), quality=80),
        "10-bit noise": _pillow_heif(pillow_heif.from_bytes("RGB;16", (300, 200), deep.tobytes()),
                                     quality=80),
    }


def test_legitimate_pillow_heif_files_verify_ok():
    files = _legit_files()
    for name, data in files.items():
        dec = verify_heif(data)
        assert dec.result["verdict"] == OK, (name, dec.result["error"])
    # The 10-bit files really hold 10-bit HEVC, and the alpha plane is a second HEVC item.
    ten = files["10-bit black"]
    depths = {parse_hvcc(ten, box).bit_depth_luma for item in parse_heif(ten).items.values()
              for kind, box, _ in item.properties if kind == "hvcC"}
    assert depths == {10}
    assert len(coded_data_ranges(files["fully transparent"])) == 2


@pytest.mark.skipif(not features.check("avif"), reason="this Pillow cannot write AVIF")
def test_av1_items_are_unsupported_not_damaged():
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 40)).save(buf, "AVIF")
    result = verify_heif(buf.getvalue()).result
    assert result["verdict"] == UNSUPPORTED
    assert "AV1" in result["error"]
    # Truncation is still damage: the boxes show it whatever the codec.
    assert verify_heif(buf.getvalue()[:-20]).result["verdict"] == DAMAGED
