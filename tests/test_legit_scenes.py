"""Legitimate but odd images (fixtures/oddities.py): none may be called damaged.

A false "damaged on the card" costs a photographer an evening of recovery and a card they dare
not format. Each scene is an intact file written at test time from the real camera samples (a
blown sky above a wrong WhiteLevel tag, an almost all-zero dark frame on a black-level-0 sensor,
a film scan clipped past the film edge, a monochrome or 187 MP DNG, JPEGs with fill bytes,
arithmetic coding, YCCK, data after EOI, ...). Each is decoded as an offload decodes it (a
DecodePool worker running run_task) and must come out "ok". Two may come out "unsupported"
instead, with the reason, because LibRaw itself cannot read them: the 187 MP DNG if LibRaw's
memory limit refuses it, and the monochrome DNG tagged BlackIsZero (LibRaw reads monochrome DNGs
only as LinearRaw). Never "damaged".

Every scene is recorded for docs/detection.md through the `detection` fixture. One offload end
to end puts a selection of the scenes on a card folder and runs `ingest offload`. Other tests
check that the generated files are what they claim (LibRaw reads each DNG's tags and samples as
written; each JPEG has the coding it is named for) and that fixtures/dng.py's lossless-JPEG
encoder round-trips through LibRaw exactly.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rawpy
import tifffile

from conftest import samples_dir
from fixtures import dng
from fixtures.oddities import SCENES, generate
from ingest.decode.pool import DecodePool

# Scenes LibRaw itself may refuse: "unsupported" with a reason naming why passes for them.
MAY_BE_UNSUPPORTED = {
    "pixel_shift_large": ("LibRawTooBigError", "memory", "too big", "limit"),
    "monochrome_blackiszero": ("LibRaw",),
}
# On the card of the end-to-end offload: every kind of oddity, none of the large ones.
ON_CARD = ["blown_sky", "studio_white_backdrop", "crushed_blacks_lj92", "star_field",
           "lens_cap", "lens_cap_all_zero", "film_scan_clipped_edge", "monochrome_linearraw",
           "monochrome_blackiszero", "linear_raw_rgb", "old_8bit_flat_sky", "jpeg_fill_bytes", "jpeg_arithmetic",
           "jpeg_ycck", "jpeg_grayscale", "jpeg_flat_black", "jpeg_trailing_data"]


def _missing_tool(name: str) -> str:
    tool = SCENES[name].tool
    if tool and shutil.which(tool) is None:
        return (f"scene {name} needs '{tool}' (Debian package libjpeg-turbo-progs; "
                f".ci/install-rigs installs it), which is not installed here")
    return ""


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """Every scene whose tools are present, written once: name -> (path, description)."""
    samples = samples_dir()
    out = tmp_path_factory.mktemp("oddities")
    made: dict[str, tuple[Path, str]] = {}
    seconds: dict[str, float] = {}
    for name in SCENES:
        if _missing_tool(name):
            continue
        started = time.perf_counter()
        made[name] = generate(name, samples, out)
        seconds[name] = time.perf_counter() - started
    slowest = sorted(seconds.items(), key=lambda kv: -kv[1])[:3]
    print(f"\ngenerated {len(made)} scenes in {sum(seconds.values()):.1f} s (slowest: "
          + ", ".join(f"{n} {s:.1f} s" for n, s in slowest) + ")")
    return made


def _req(name: str, path: Path) -> dict:
    return {"path": str(path), "kind": SCENES[name].kind, "card_path": None, "preview": None,
            "capture_time": None}


@pytest.fixture(scope="module")
def decoded(scenes) -> dict[str, dict]:
    """Each scene's decode result, from DecodePool workers as an offload runs them."""
    order = sorted(scenes, key=lambda n: not SCENES[n].large)  # the 374 MB DNG first
    started = time.perf_counter()
    with DecodePool(2) as pool:
        for name in order:
            pool.submit(name, _req(name, scenes[name][0]))
        results = dict(pool.drain())
    print(f"\ndecoded {len(results)} scenes in {time.perf_counter() - started:.1f} s")
    return {name: result["decode"] for name, result in results.items()}


def _failed_checks(decode: dict) -> str:
    failed = [f"{c['name']}: {c['detail']}" for c in decode.get("checks") or [] if not c["ok"]]
    return "; ".join(failed) or (decode.get("error") or "")


@pytest.mark.parametrize("name", list(SCENES))
def test_scene_is_not_damaged(name, scenes, decoded, detection):
    if _missing_tool(name):
        pytest.skip(_missing_tool(name))
    scene = SCENES[name]
    path, description = scenes[name]
    decode = decoded[name]
    verdict = decode["verdict"]
    findings = _failed_checks(decode)
    detail = description if verdict == "ok" else f"{description}. {findings}"
    detection.scene(name, scene.source, scene.fmt, verdict, detail)
    if verdict == "unsupported" and name in MAY_BE_UNSUPPORTED:
        reason = decode.get("error") or findings
        assert any(word.lower() in reason.lower() for word in MAY_BE_UNSUPPORTED[name]), (
            f"{name} came out unsupported without saying why LibRaw refused it: {reason}")
        return
    assert verdict == "ok", (
        f"{name} ({path.name}, a legitimate file: {description}) came out {verdict}: {findings}")


def _raw_page(tif: tifffile.TiffFile) -> tifffile.TiffPage:
    """The full-size raw image: NewSubfileType 0, in IFD0 or its SubIFDs."""
    pages = [tif.pages[0], *(tifffile.TiffPages(tif.pages[0]) if tif.pages[0].subifds else [])]
    return next(p for p in pages if p.subfiletype == 0)


def _rationals(value) -> np.ndarray:
    v = np.asarray(value, np.float64).ravel()
    return v[0::2] / v[1::2]


# (scene, twin written from the same samples without compression) for the LJ92 scenes
LJ92_TWINS = {"blown_sky_lj92": "blown_sky", "crushed_blacks_lj92": "crushed_blacks",
              "star_field_lj92": "star_field", "lens_cap_all_zero_lj92": "lens_cap_all_zero"}


# The DNG scenes LibRaw reads (the NEF is the scanner's own file; the BlackIsZero DNG is one
# LibRaw refuses; the large one is checked for its size alone).
READ_BACK = [n for n, s in SCENES.items() if s.kind == "raw" and n not in (
    "film_scan_clipped_edge", "monochrome_blackiszero", "pixel_shift_large")]


@pytest.mark.parametrize("name", READ_BACK)
def test_generated_dng_reads_as_written(name, scenes):
    """LibRaw reads each generated DNG as the camera's it stands for: the samples written, the
    CFA layout, black and white levels from the tags, the colour matrix and white balance; and
    a lossless-JPEG DNG decodes to exactly the samples of its uncompressed twin."""
    path, _ = scenes[name]
    with tifffile.TiffFile(path) as tif:
        ifd0 = tif.pages[0].tags
        assert ifd0["DNGVersion"].value == b"\x01\x04\x00\x00"
        for tag in ("UniqueCameraModel", "Make", "Model", "ColorMatrix1", "AsShotNeutral"):
            assert tag in ifd0, f"{name}: no {tag}"
        neutral = _rationals(ifd0["AsShotNeutral"].value)
        page = _raw_page(tif)
        tags = {t.name: t.value for t in page.tags.values()}
        written = page.asarray() if name not in LJ92_TWINS else None
    with rawpy.imread(str(path)) as raw:
        data = raw.raw_image.copy()
        assert raw.white_level == tags["WhiteLevel"]
        blacks = np.atleast_1d(tags["BlackLevel"])
        assert min(raw.black_level_per_channel[:len(blacks)]) == int(blacks.min())
        colours = raw.num_colors
        assert colours == len(neutral)
        if colours == 3:
            assert np.any(raw.color_matrix), "ColorMatrix1 was not read"
            # LibRaw's as-shot multipliers are the reciprocals of AsShotNeutral.
            assert np.allclose(raw.camera_whitebalance[:3], 1 / neutral, rtol=1e-3)
        if tags["PhotometricInterpretation"] == dng.CFA:
            cfa = tuple(tags["CFAPattern"])
            desc = raw.color_desc.decode()
            seen = tuple("RGB".index(desc[c]) for c in raw.raw_pattern.ravel())
            assert seen == cfa, f"{name}: CFA {seen}, written {cfa}"
        image = raw.postprocess(half_size=True, no_auto_bright=True)
        assert image.ndim == 3 and image.shape[2] == colours and image.size
    if name in LJ92_TWINS:
        with rawpy.imread(str(scenes[LJ92_TWINS[name]][0])) as twin:
            assert np.array_equal(data, twin.raw_image), f"{name}: LJ92 tiles decode differently"
    else:
        got = data if written.ndim == 2 else data[..., :written.shape[2]]
        assert got.shape == written.shape and np.array_equal(got, written)


def _markers(data: bytes) -> set[int]:
    """Markers of a JPEG up to its first EOI (fill bytes skipped, scans walked)."""
    found, pos = set(), 2
    while pos < len(data):
        while data[pos] == 0xFF and data[pos + 1] == 0xFF:
            pos += 1
        marker = data[pos + 1]
        found.add(marker)
        if marker == 0xD9:
            return found
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            pos += 2
            continue
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker == 0xDA:  # entropy-coded data: to the next marker but RSTn
            while not (data[pos] == 0xFF and data[pos + 1] not in (0x00, *range(0xD0, 0xD8))):
                if data[pos] == 0xFF and 0xD0 <= data[pos + 1] <= 0xD7:
                    found.add(data[pos + 1])
                pos += 1
    return found


# What each JPEG scene must hold: (colour space, subsampling or None, markers it must have)
JPEG_CLAIMS = {
    "jpeg_fill_bytes": ("YCbCr", "422", {0xC0}),
    "jpeg_restart_markers": ("YCbCr", "420", {0xDD, 0xD0}),
    "jpeg_restart_blocks": ("YCbCr", "420", {0xDD, 0xD0}),
    "jpeg_arithmetic": ("YCbCr", "420", {0xC9}),  # SOF9: sequential, arithmetic
    "jpeg_progressive": ("YCbCr", "420", {0xC2}),
    "jpeg_cmyk": ("CMYK", None, {0xEE}),
    "jpeg_ycck": ("YCCK", None, {0xEE}),
    "jpeg_grayscale": ("Gray", None, set()),
    "jpeg_444": ("YCbCr", "444", {0xC0}),
    "jpeg_422": ("YCbCr", "422", {0xC0}),
    "jpeg_420": ("YCbCr", "420", {0xC0}),
    "jpeg_flat_black": ("YCbCr", "420", {0xC0}),
    "jpeg_flat_colour": ("YCbCr", "420", {0xC0}),
    "jpeg_trailing_data": ("YCbCr", "420", {0xC0}),
}


@pytest.mark.parametrize("name", [n for n, s in SCENES.items() if s.kind == "jpeg"])
def test_generated_jpeg_is_what_it_claims(name, scenes):
    """Each JPEG scene holds the coding it stands for, and decodes to its source photo."""
    import simplejpeg
    from PIL import Image

    if _missing_tool(name):
        pytest.skip(_missing_tool(name))
    path, _ = scenes[name]
    data = path.read_bytes()
    colourspace, sampling, markers = JPEG_CLAIMS[name]
    _, _, cs, sub = simplejpeg.decode_jpeg_header(data)
    assert cs == colourspace and (sampling is None or sub == sampling), (cs, sub)
    assert markers <= _markers(data), sorted(hex(m) for m in markers - _markers(data))
    if name == "jpeg_fill_bytes":
        assert data.count(b"\xff\xff\xff\xff") > 3  # the fill bytes are there
    if name == "jpeg_trailing_data":
        end = data.index(b"\xff\xd9", len(data) - 300_000)
        assert len(data) - end > 200_000
    if colourspace in ("CMYK", "YCCK"):
        with Image.open(path) as im:
            pixels = np.asarray(im.convert("RGB"), np.float64)
    else:  # Pillow's libjpeg has no arithmetic decoding
        pixels = simplejpeg.decode_jpeg(data, colorspace="RGB").astype(np.float64)
    if name.startswith("jpeg_flat"):
        assert pixels.std(axis=(0, 1)).max() < 1.0
        return
    source = SCENES[name].source
    with Image.open(samples_dir() / source) as im:
        want = np.asarray(im.convert("RGB").convert(
            "L" if colourspace == "Gray" else "RGB").convert("RGB"), np.float64)
    assert pixels.shape == want.shape
    assert np.abs(pixels - want).mean() < 3.0, "the scene is not its source photo"


def test_large_dng_is_full_size(scenes):
    path, _ = scenes["pixel_shift_large"]
    with tifffile.TiffFile(path) as tif:
        page = _raw_page(tif)
        assert (page.imagelength, page.imagewidth, page.bitspersample) == (11168, 16736, 16)
    with rawpy.imread(str(path)) as raw:
        assert (raw.sizes.raw_height, raw.sizes.raw_width) == (11168, 16736)


def test_generation_is_deterministic(tmp_path):
    samples = samples_dir()
    names = ["lens_cap", "crushed_blacks_lj92", "jpeg_trailing_data", "film_scan_clipped_edge"]
    for name in names:
        a, _ = generate(name, samples, tmp_path / "a")
        b, _ = generate(name, samples, tmp_path / "b")
        assert a.read_bytes() == b.read_bytes(), name


def test_offload_calls_no_scene_damaged_on_card(scenes, tmp_path):
    """`ingest offload` of a card holding the scenes: every file copied and verified, none
    called damaged on the card."""
    card = tmp_path / "card"
    folder = card / "DCIM" / "100ODDTY"
    folder.mkdir(parents=True)
    placed = {}
    for name in ON_CARD:
        if name not in scenes:  # a scene whose tool is missing
            continue
        src = scenes[name][0]
        shutil.copyfile(src, folder / src.name)
        placed[f"DCIM/100ODDTY/{src.name}"] = name
    dest = tmp_path / "dest"
    dest.mkdir()
    report = tmp_path / "report.json"
    run = subprocess.run([sys.executable, "-m", "ingest", "offload", str(card), str(dest),
                          "--json", str(report), "--jobs", "2", "--min-copies", "1"],
                         capture_output=True, text=True, timeout=600)
    assert report.exists(), run.stderr[-2000:]
    files = json.loads(report.read_text())["files"]
    by_path = {f["path"]: f for f in files}
    assert set(placed) <= set(by_path), run.stdout[-2000:]
    damaged = {placed[p]: f"{f.get('status')}: {f.get('detail')}" for p, f in by_path.items()
               if p in placed and f.get("status") == "damaged_on_card"}
    assert damaged == {}, damaged
    for p in placed:
        assert by_path[p].get("status") in ("verified", "unverified"), (p, by_path[p])


@pytest.mark.parametrize("case", ["noise12", "zeros", "clipped12", "noise14", "smooth16"])
def test_lj92_writer_round_trips_through_libraw(case, tmp_path):
    """fixtures/dng.py's lossless-JPEG tiles decode in LibRaw to exactly the samples written,
    edge tiles (padded) included; needs no samples."""
    rng = np.random.default_rng(len(case))
    h, w = 500, 700  # neither a multiple of the 240x256 tiles
    bits = int(case[-2:]) if case[-2:].isdigit() else 12
    if case == "zeros":
        data = np.zeros((h, w), np.uint16)
    elif case == "clipped12":
        data = np.full((h, w), 4095, np.uint16)
        data[::7] = rng.integers(0, 4096, (len(range(0, h, 7)), w))
    elif case == "smooth16":
        ramp = np.linspace(0, 60000, w)[None, :] + np.linspace(0, 4000, h)[:, None]
        data = np.round(ramp + rng.normal(0, 30, (h, w))).clip(0, 65535).astype(np.uint16)
    else:
        data = rng.integers(0, 1 << bits, (h, w)).astype(np.uint16)
    camera = dng.Camera("Fixture", "LJ92", "Fixture LJ92", (1, 0, 0, 0, 1, 0, 0, 0, 1))
    path = dng.write_dng(tmp_path / f"{case}.dng", data, camera, black=0,
                         white=(1 << bits) - 1, cfa=dng.RGGB, bits=bits, lj92_tile=(240, 256))
    with rawpy.imread(str(path)) as raw:
        assert np.array_equal(raw.raw_image, data)
