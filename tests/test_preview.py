"""Previews written by run_task: upright, fitted, dated, atomic, and honest about damage."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from conftest import SAMPLES, samples_dir
from fixtures import damage as dmg
from ingest.decode.task import run_task
from ingest.preview import EMBEDDED_MIN_LONG_EDGE, exif_bytes

WHEN = "2024-05-11T10:02:47"
RED, BLUE = (255, 0, 0), (0, 0, 255)


def _task(path: Path, kind: str, outs: list[Path], size: int = 2048, when: str | None = WHEN):
    req = {"path": str(path), "kind": kind, "card_path": None, "capture_time": when,
           "preview": {"out": [str(o) for o in outs], "size": size, "quality": 85}}
    return run_task(req)


def _marked_jpeg(path: Path, orientation: int, w: int = 300, h: int = 200,
                 icc: bool = False) -> None:
    """Stored pixels: grey, a red block at the stored top-left, blue at the stored top-right.
    With `icc`, an sRGB profile too, which sends the preview through Pillow."""
    a = np.full((h, w, 3), 128, np.uint8)
    a[:40, :40] = RED
    a[:40, -40:] = BLUE
    exif = Image.Exif()
    exif[0x0112] = orientation
    extra = {}
    if icc:
        from PIL import ImageCms

        extra["icc_profile"] = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(a).save(path, "JPEG", quality=95, exif=exif.tobytes(), **extra)


def _near(pixel, colour) -> bool:
    return all(abs(int(p) - c) < 40 for p, c in zip(pixel, colour, strict=True))


@pytest.mark.parametrize(("orientation", "red_at", "blue_at"), [
    (1, "top-left", "top-right"),
    (2, "top-right", "top-left"),       # mirrored
    (3, "bottom-right", "bottom-left"),  # turned 180
    (4, "bottom-left", "bottom-right"),  # flipped
    (5, "top-left", "bottom-left"),     # transposed
    (6, "top-right", "bottom-right"),   # stored top-left ends up top-right when turned CW
    (7, "bottom-right", "top-right"),   # transversed
    (8, "bottom-left", "top-left"),
])
@pytest.mark.parametrize("icc", [False, True], ids=["array-path", "pillow-path"])
def test_jpeg_preview_is_upright_with_swapped_dims(tmp_path, orientation, red_at, blue_at, icc):
    src = tmp_path / "in.jpg"
    _marked_jpeg(src, orientation, icc=icc)
    out = tmp_path / "p" / "in.jpg"
    res = _task(src, "jpeg", [out])
    assert res["decode"]["verdict"] == "ok"
    with Image.open(out) as im:
        assert 0x0112 not in im.getexif()
        rgb = np.asarray(im.convert("RGB"))
    h, w = rgb.shape[:2]
    assert (w, h) == ((300, 200) if orientation <= 4 else (200, 300))
    assert (res["preview"]["width"], res["preview"]["height"]) == (w, h)
    corners = {"top-left": rgb[5, 5], "top-right": rgb[5, w - 6],
               "bottom-left": rgb[h - 6, 5], "bottom-right": rgb[h - 6, w - 6]}
    assert _near(corners[red_at], RED) and _near(corners[blue_at], BLUE)


def test_long_edge_fitted_never_upscaled(tmp_path):
    src = tmp_path / "in.jpg"
    _marked_jpeg(src, 6, w=1600, h=1000)
    res = _task(src, "jpeg", [tmp_path / "a.jpg"], size=400)
    assert (res["preview"]["width"], res["preview"]["height"]) == (250, 400)
    res = _task(src, "jpeg", [tmp_path / "b.jpg"], size=4000)
    assert (res["preview"]["width"], res["preview"]["height"]) == (1000, 1600)


def test_capture_time_in_exif_and_same_file_at_every_destination(tmp_path):
    src = tmp_path / "in.jpg"
    _marked_jpeg(src, 1)
    outs = [tmp_path / "A" / "x" / "in.jpg", tmp_path / "B" / "y" / "in.jpg"]
    res = _task(src, "jpeg", outs, when="2024-05-11T10:02:47+02:00")
    assert res["preview"]["written"] == [str(o) for o in outs]
    assert outs[0].read_bytes() == outs[1].read_bytes()
    with Image.open(outs[0]) as im:
        sub = im.getexif().get_ifd(0x8769)
    assert sub[0x9003] == "2024:05:11 10:02:47"
    assert sub[0x9011] == "+02:00"
    for out in outs:  # atomic writes leave no temporary names behind
        assert sorted(p.name for p in out.parent.iterdir()) == ["in.jpg"]


def test_unparsable_capture_time_still_writes_a_preview():
    exif = Image.Exif()
    exif.load(exif_bytes("not a date"))
    assert 0x9003 not in exif.get_ifd(0x8769)


# --- RAW: embedded vs rendered ------------------------------------------------------------------

def test_raw_embedded_preview_when_large_enough(tmp_path):
    src = samples_dir("raw") / "nikon-d5000-lossless.dng"
    res = _task(src, "raw", [tmp_path / "a.jpg"], size=2048)
    assert res["preview"]["source"] == "embedded"  # 1280 px >= min(2048, 1024)
    assert (res["preview"]["width"], res["preview"]["height"]) == (1280, 850)
    res = _task(src, "raw", [tmp_path / "b.jpg"], size=512)
    assert res["preview"]["source"] == "embedded"
    # The embedded JPEG is decoded at the largest M/8 scale that fits: 3/8 of 1280 px.
    assert (res["preview"]["width"], res["preview"]["height"]) == (480, 319)


def test_raw_rendered_when_no_or_small_embedded_preview(tmp_path):
    raw_dir = samples_dir("raw")
    ml = _task(raw_dir / "canon-550d-magiclantern.dng", "raw", [tmp_path / "a.jpg"])
    assert ml["preview"]["source"] == "rendered"
    kodak = _task(raw_dir / "kodak-dc50.KDC", "raw", [tmp_path / "b.jpg"])  # 96 px bitmap
    assert kodak["preview"]["source"] == "rendered"
    # half_size halves Bayer data only: the 3-colour scanner NEF renders at full size.
    scan = _task(raw_dir / "nikon-coolscan-iv-ed-scanner.nef", "raw", [tmp_path / "c.jpg"])
    assert (scan["preview"]["width"], scan["preview"]["height"]) == (869, 593)


def test_synthetic_dng_threshold_and_orientation(tmp_path, built_card):
    root, manifest = built_card
    with_preview = root / manifest.jpeg_previews[0]
    big = _task(with_preview, "raw", [tmp_path / "a.jpg"], size=2048)
    assert big["preview"]["source"] == "rendered"  # 640 px preview < 1024
    small = _task(with_preview, "raw", [tmp_path / "b.jpg"], size=600)
    assert small["preview"]["source"] == "embedded"  # 640 px >= min(600, 1024)
    assert EMBEDDED_MIN_LONG_EDGE == 1024
    dngs = [root / r for r in manifest.images if r.endswith(".DNG")]
    rotated = [p for p in dngs if tifffile.TiffFile(p).pages[0].tags.get(274).value == 6]
    assert rotated, "the sample card has a portrait DNG"
    res = _task(rotated[0], "raw", [tmp_path / "c.jpg"])
    assert res["preview"]["height"] > res["preview"]["width"]


@pytest.mark.parametrize("path", sorted((SAMPLES / "raw").glob("*")) +
                         sorted((SAMPLES / "jpeg").glob("*")), ids=lambda p: p.name)
def test_previews_for_real_samples(tmp_path, path):
    samples_dir()
    kind = "jpeg" if path.suffix.lower() == ".jpg" else "raw"
    out = tmp_path / "prev" / (path.name + ".jpg")
    res = _task(path, kind, [out], size=1024)
    pv = res["preview"]
    assert res["preview_error"] is None and pv["partial"] is False
    assert pv["source"] in (("image",) if kind == "jpeg" else ("embedded", "rendered"))
    with Image.open(out) as im:
        im.load()
        assert im.format == "JPEG" and im.mode == "RGB"
        assert im.size == (pv["width"], pv["height"]) and max(im.size) <= 1024
        assert im.getexif().get_ifd(0x8769)[0x9003] == "2024:05:11 10:02:47"


# --- damaged files ------------------------------------------------------------------------------

def test_damaged_jpeg_gives_partial_preview(tmp_path):
    src = samples_dir("jpeg") / "canon-powershot-sx60hs.jpg"
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(src.read_bytes())
    start, end = dmg.jpeg_scan_range(bad.read_bytes())
    dmg.fill_block(bad, (start + end) // 2, 65536, 0x00)
    res = _task(bad, "jpeg", [tmp_path / "p.jpg"], size=512)
    assert res["decode"]["verdict"] == "damaged"
    assert res["preview"]["partial"] is True and res["preview"]["source"] == "image"
    assert (tmp_path / "p.jpg").exists()


def test_destroyed_jpeg_has_no_preview_and_says_why(tmp_path):
    bad = tmp_path / "bad.jpg"
    _marked_jpeg(bad, 1)
    dmg.destroy_header(bad, 512)
    res = _task(bad, "jpeg", [tmp_path / "p.jpg"])
    assert res["decode"]["verdict"] == "damaged"
    assert res["preview"] is None and res["preview_error"].startswith("no preview")
    assert not (tmp_path / "p.jpg").exists()


def test_truncated_raw_falls_back_to_its_embedded_preview(tmp_path):
    src = samples_dir("raw") / "nikon-d5000-lossless.dng"
    bad = tmp_path / "cut.dng"
    bad.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    res = _task(bad, "raw", [tmp_path / "p.jpg"])
    assert res["decode"]["verdict"] == "damaged"
    assert res["preview"]["source"] == "embedded" and res["preview"]["partial"] is True


def test_stub_without_any_image_has_no_preview(tmp_path):
    stub = samples_dir("stubs") / "exiftool-stub-nikon.nef"
    res = _task(stub, "raw", [tmp_path / "p.jpg"])
    assert res["preview"] is None and "did not decode" in res["preview_error"]


def test_preview_of_a_heif_is_written(tmp_path):
    import pillow_heif

    img = Image.fromarray(np.random.default_rng(1).integers(0, 255, (90, 160, 3), np.uint8))
    buf = io.BytesIO()
    pillow_heif.from_pillow(img).save(buf, quality=80)
    src = tmp_path / "a.heic"
    src.write_bytes(buf.getvalue())
    res = _task(src, "heif", [tmp_path / "p.jpg"], size=100)
    assert res["decode"]["verdict"] == "ok"
    assert (res["preview"]["width"], res["preview"]["height"]) == (100, 56)


def test_preview_of_a_16_bit_tiff_is_written(tmp_path):
    src = tmp_path / "scan.tif"
    ramp = np.linspace(0, 65535, 400 * 300 * 3).reshape(300, 400, 3).astype(np.uint16)
    tifffile.imwrite(src, ramp, photometric="rgb")
    res = _task(src, "tiff", [tmp_path / "p.jpg"], size=200)
    assert res["decode"]["verdict"] == "ok"
    assert (res["preview"]["width"], res["preview"]["height"]) == (200, 150)
    with Image.open(tmp_path / "p.jpg") as im:
        assert np.asarray(im).max() > 200  # 16-bit data scaled to 8 bits, not clipped to black


def _column_ramp(width: int, height: int) -> Image.Image:
    """Each pixel holds its own column number (R + 256 * G) and row number (B)."""
    x = np.arange(width)
    a = np.zeros((height, width, 3), np.uint8)
    a[..., 0], a[..., 1] = x % 256, x // 256
    a[..., 2] = (np.arange(height) % 256)[:, None]
    return Image.fromarray(a, "RGB")


@pytest.mark.parametrize("width, nearest", [(2064, True), (2088, True), (2100, False),
                                            (3000, False), (4500, False)])
def test_fit_takes_nearest_only_for_slight_reductions(width, nearest):
    """A render a few pixels over the size keeps the camera's own pixels, spread over the
    whole frame (no column blended, none skipped next to another); larger reductions blend."""
    from ingest.preview import fit

    out = np.asarray(fit(_column_ramp(width, 300), 2048))
    assert max(out.shape[:2]) == 2048
    cols = out[0, :, 0].astype(int) + 256 * out[0, :, 1].astype(int)
    steps = np.diff(cols)
    if nearest:
        assert (out[..., :2] == out[:1, :, :2]).all()  # every row took the same columns
        assert cols[0] <= 1 and cols[-1] >= width - 2
        assert set(steps.tolist()) <= {1, 2}  # at most one column left out at a time
    else:  # blended: not the pixels nearest neighbour would have picked
        picked = _column_ramp(width, 300).resize((out.shape[1], out.shape[0]),
                                                  Image.Resampling.NEAREST)
        assert not np.array_equal(out, np.asarray(picked))
