"""Unsupported is never damaged (issue 21, item 4).

"Damaged on the card" makes a photographer keep a card and spend an evening on recovery. A file
this decoder cannot check (a body newer than LibRaw, an image over LibRaw's memory limit, a
machine out of memory, a headerless raw of a size LibRaw does not know) must come out
"unsupported" (the file is reported unverified; its checksum still proves the copy). Damage is
claimed only where the file itself proves it.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from conftest import samples_dir
from fixtures import dng
from ingest.decode import NO_MEMORY
from ingest.decode.cameras import camera_support, name_key
from ingest.decode.raw import LIBRAW_VERSION, read_structure
from ingest.decode.task import run_task


def _run(path: Path | str, kind: str = "raw") -> dict:
    return run_task({"path": str(path), "kind": kind, "card_path": None, "preview": None,
                     "capture_time": None})["decode"]


# --- exact camera matching ----------------------------------------------------------------------

# (EXIF Make, EXIF Model, LibRaw's entry). Real spellings: the samples' own, ExifTool's and
# LibRaw's tables of what bodies write.
SAME_BODY = [
    ("NIKON CORPORATION", "NIKON D5000", "Nikon D5000"),
    ("NIKON CORPORATION", "NIKON Z 9", "Nikon Z 9 (HE/HE* formats are not supported yet)"),
    ("NIKON CORPORATION", "NIKON Z 6_2", "Nikon Z 6 II"),          # Nikon's "_2" generation
    ("NIKON CORPORATION", "NIKON Z6_3", "Nikon Z 6 III (HE/HE* formats are not supported yet)"),
    ("NIKON CORPORATION", "NIKON 1 J1", "Nikon 1 J1"),
    ("NIKON", "E5700", "Nikon Coolpix 5700"),                       # old Coolpix model codes
    ("NIKON", "COOLPIX P7000", "Nikon Coolpix P7000"),
    ("Nikon", "Nikon COOLSCAN IV ED", "Nikon Coolscan NEF"),         # the scanner family
    ("Canon", "Canon EOS 350D DIGITAL", "Canon EOS 350D / Digital Rebel XT / Kiss Digital N"),
    ("Canon", "Canon EOS DIGITAL REBEL XT", "Canon EOS 350D / Digital Rebel XT / Kiss Digital N"),
    ("Canon", "Canon EOS Kiss X4", "Canon EOS 550D / Rebel T2i / Kiss X4"),
    ("Canon", "Canon EOS REBEL T2i", "Canon EOS 550D / Rebel T2i / Kiss X4"),
    ("Canon", "Canon EOS 200D II", "Canon EOS 250D / 200D II / Rebel SL3 / Kiss X10"),
    ("Canon Inc.", "Canon EOS 5D Mark IV", "Canon EOS 5D Mark IV"),
    ("Canon", "Canon EOS R5", "Canon EOS R5"),
    ("Canon", "Canon EOS R5 C", "Canon EOS R5 C"),
    ("Canon", "Canon EOS R5 Mark II", "Canon EOS R5 Mark II"),
    ("Canon", "Canon EOS M2", "Canon EOS M2"),                     # "M2" here is no generation
    ("Canon", "Canon PowerShot A5 Zoom", "Canon PowerShot A5 Zoom"),
    ("Canon", "Canon PowerShot G7 X Mark III", "Canon PowerShot G7 X Mark III"),
    ("Eastman Kodak Company", "Kodak Digital Science DC50 Zoom Camera", "Kodak DC50"),
    ("Eastman Kodak Company", "KODAK DC50 ZOOM DIGITAL CAMERA", "Kodak DC50"),
    ("EASTMAN KODAK COMPANY", "KODAK DCS PRO 14N DIGITAL CAMERA", "Kodak DCS Pro 14n"),
    ("EASTMAN KODAK COMPANY", "KODAK P880 ZOOM DIGITAL CAMERA", "Kodak P880"),
    ("Eastman Kodak Company", "DCS Pro SLR/c", "Kodak DCS Pro SLR/c"),
    ("SONY", "ILCE-7M3", "Sony ILCE-7M3 (A7 III)"),
    ("SONY", "ILCE-7RM3", "Sony ILCE-7RM3 (A7R III)"),
    ("SONY", "DSC-RX100M2", "Sony DSC-RX100 II"),                   # "M2" after a number
    ("SONY", "DSC-RX10M4", "Sony DSC-RX10 IV"),
    ("SONY", "ZV-E10M2", "Sony ZV-E10 II"),
    ("SONY", "SLT-A55V", "Sony SLT-A55(V)"),
    ("SONY", "SLT-A55", "Sony SLT-A55(V)"),
    ("SONY", "ILCE-3500", "Sony ILCE-3000 / 3500"),
    ("OLYMPUS IMAGING CORP.", "E-M5", "Olympus E-M5"),
    ("OLYMPUS CORPORATION", "E-M1MarkII", "Olympus E-M1 Mark II"),
    ("OLYMPUS IMAGING CORP.", "C5050Z", "Olympus C-5050Z"),
    ("OM Digital Solutions", "OM-1", "OM Digital Solutions OM-1"),
    ("OM Digital Solutions", "OM-1MarkII", "OM Digital Solutions OM-1 Mark II"),
    ("FUJIFILM", "X-T30 II", "FujiFilm X-T30 II"),
    ("FUJIFILM", "GFX100S", "FujiFilm GFX 100S"),
    ("FUJIFILM", "X100VI", "FujiFilm X100VI"),
    ("Fujifilm", "FinePix S5Pro", "FujiFilm S5Pro"),
    ("FUJI PHOTO FILM CO., LTD.", "FinePix S2Pro", "FujiFilm S2Pro"),
    ("Panasonic", "DC-S5M2", "Panasonic DC-S5 MkII"),
    ("Panasonic", "DC-GH5M2", "Panasonic DC-GH5 Mark II"),
    ("Panasonic", "DMC-GX7MK2", "Panasonic DMC-GX80 / GX85, DMC-GX7mkII"),
    ("Panasonic", "DMC-FZ38", "Panasonic DMC-FZ35 / FZ38"),
    ("Panasonic", "DMC-TZ71", "Panasonic DMC-ZS50, DMC-TZ70 / TZ71"),
    ("Panasonic", "DMC-LX3", "Panasonic DMC-LX3"),
    ("Leica Camera AG", "LEICA M10", "Leica M10"),
    ("Leica Camera AG", "LEICA M (Typ 240)", "Leica M (Typ 240)"),
    ("LEICA CAMERA AG", "LEICA D-LUX 7", "Leica D-LUX7"),
    ("PENTAX Corporation", "PENTAX K-1", "Pentax K-1"),
    ("RICOH IMAGING COMPANY, LTD.", "PENTAX K-3 Mark III", "Pentax K-3 Mark III"),
    ("RICOH IMAGING COMPANY, LTD.", "RICOH GR III", "Ricoh GR III"),
    ("RICOH", "GR DIGITAL", "Ricoh GR Digital"),                   # not the later "Ricoh GR"
    ("Konica Minolta Camera, Inc.", "DiMAGE A2", "Minolta DiMAGE A2"),
    ("KONICA MINOLTA", "DYNAX 5D", "Minolta Alpha/Dynax/Maxxum 5D"),
    ("SIGMA", "SIGMA SD10", "Sigma SD10 (raw decode only)"),
    ("SIGMA", "SIGMA fp L", "Sigma fp L"),
    ("Leaf", "Credo 40", "Leaf Credo 40"),
    ("Phase One", "IQ4 150MP", "PhaseOne IQ4 150MP"),
    ("Hasselblad", "X1D II 50C", "Hasselblad X1D II 50C"),
    ("KYOCERA", "N DIGITAL", "Contax N Digital"),
    ("CASIO COMPUTER CO.,LTD.", "EX-ZR5000", "Casio EX-ZR4000 / 5000"),
    ("SEIKO EPSON CORP.", "R-D1", "Epson R-D1"),
    ("samsung", "SM-G960F", "Samsung Galaxy S9 (SM-G960F)"),        # phones: EXIF has the code
    ("HUAWEI", "VOG-L29", "Huawei P30 Pro (VOG-L29)"),
    ("Google", "Pixel 4a (5G)", "Google Pixel 4a (5G)"),
    ("Apple", "iPhone 12 Pro", "Apple iPhone 12 Pro"),
]

# (EXIF Make, EXIF Model, why it must not match): newer bodies, other generations, variants.
OTHER_BODY = [
    ("Canon", "Canon EOS R5 Mark III", "a newer body than the R5 and R5 Mark II"),
    ("Canon", "Canon EOS R5 C Mark II", "the R5 C's successor"),
    ("Canon", "Canon EOS R6 Mark III", "LibRaw lists up to the R6 Mark II"),
    ("Canon", "Canon EOS R50 V", "a video body, not the R50"),
    ("Canon", "Canon EOS R99", "a different number"),
    ("Canon", "Canon EOS 5D Mark V", "a generation LibRaw does not list"),
    ("NIKON CORPORATION", "NIKON Z 9 II", "not the Z 9"),
    ("NIKON CORPORATION", "NIKON Z 9_2", "Nikon's spelling of the Z 9 II"),
    ("NIKON CORPORATION", "NIKON Z 5_2", "the Z5 II"),
    ("NIKON CORPORATION", "NIKON Z6_4", "a fourth Z 6"),
    ("NIKON CORPORATION", "NIKON D5001", "a different number"),
    ("NIKON", "E5701", "a different number"),
    ("SONY", "ILCE-7M5", "a newer A7"),
    ("SONY", "ILCE-1M2", "the A1 II"),
    ("SONY", "DSC-RX1RM3", "the RX1R III"),
    ("SONY", "ILCE-7M3A", "a variant suffix"),
    ("SONY", "SLT-A55W", "only V is the A55's optional suffix"),
    ("FUJIFILM", "X-E5", "newer"),
    ("FUJIFILM", "GFX100RF", "newer"),
    ("RICOH IMAGING COMPANY, LTD.", "RICOH GR IV", "not the GR Digital IV"),
    ("OM Digital Solutions", "OM-3", "newer"),
    ("Panasonic", "DC-S1M2", "the S1 II"),
    ("Panasonic", "DMC-FZ39", "not in the FZ35 / FZ38 entry"),
    ("Leica Camera AG", "LEICA M (Typ 999)", "another Typ is another body"),
    ("LEICA", "LEICA Q4", "newer"),
    ("Google", "Pixel 4a", "the Pixel 4a (5G) is another phone"),
    ("HTC", "HTC One", "the One (M9) and One (A9) are later phones"),
    ("Eastman Kodak Company", "Kodak Digital Science DC51 Zoom Camera", "a different number"),
    ("GoPro", "HERO6 Black", "no GoPro in LibRaw's list"),
]


@pytest.mark.parametrize(("make", "model", "entry"), SAME_BODY,
                         ids=[f"{m}|{n}" for m, n, _ in SAME_BODY])
def test_spellings_of_one_body_match_its_entry(make: str, model: str, entry: str) -> None:
    assert camera_support(make, model) == (True, entry)


@pytest.mark.parametrize(("make", "model", "why"), OTHER_BODY,
                         ids=[f"{m}|{n}" for m, n, _ in OTHER_BODY])
def test_other_bodies_do_not_match(make: str, model: str, why: str) -> None:
    assert camera_support(make, model) == (False, ""), why


def test_generations_are_one_key_whatever_the_spelling() -> None:
    for spelling in ("Z 6 II", "Z6_2", "Z 6 Mark II", "Z 6 MkII", "Z6M2"):
        assert name_key(spelling) == name_key("Z 6 II"), spelling
    assert name_key("R5") != name_key("R5 II") != name_key("R5 C")
    assert name_key("EOS M2") != name_key("EOS M II")  # a bare "M2" names the EOS M2


# The camera every sample names in its own metadata, and LibRaw's entry for it (False: none).
SAMPLE_CAMERAS = {
    "raw/canon-550d-magiclantern.dng": "Canon EOS 550D / Rebel T2i / Kiss X4",
    "raw/kodak-dc50.KDC": "Kodak DC50",
    "raw/nikon-coolscan-iv-ed-scanner.nef": "Nikon Coolscan NEF",
    "raw/nikon-d5000-lossless.dng": "Nikon D5000",
    "stubs/exifpy-stub-sony-a7iii.ARW": "Sony ILCE-7M3 (A7 III)",
    "stubs/exiftool-stub-canon.cr2": "Canon EOS 350D / Digital Rebel XT / Kiss Digital N",
    "stubs/exiftool-stub-canon.cr3": "Canon EOS M50 / Kiss M",
    "stubs/exiftool-stub-fujifilm.raf": "FujiFilm S5Pro",
    "stubs/exiftool-stub-nikon.nef": "Nikon D70",
    "stubs/exiftool-stub-panasonic.rw2": "Panasonic DMC-LX3",
    "stubs/exiftool-stub-phaseone.iiq": "Leaf Credo 40",
    "stubs/exiftool-stub.dng": "Canon EOS 350D / Digital Rebel XT / Kiss Digital N",
    "stubs/exiv2-pruned-canon-r6.CR3": "Canon EOS R6",
    "stubs/exiv2-pruned-iphone12pro.dng": "Apple iPhone 12 Pro",
    "stubs/filetype-truncated-canon.cr3": "Canon EOS R",
    "stubs/filetype-truncated-leica-m10.dng": "Leica M10",
    "stubs/filetype-truncated-sony-zv-e10.arw": "Sony ZV-E10",
    "stubs/nomexif-stub-canon-r6.cr3": "Canon EOS R6",
    "stubs/tracker-stub-canon-70d.cr2": "Canon EOS 70D",
    "unsupported/gopro-hero6.GPR": False,
    "unsupported/nikon-z9-he-jxl.dng": "Nikon Z 9 (HE/HE* formats are not supported yet)",
}


@pytest.mark.parametrize("rel", sorted(SAMPLE_CAMERAS))
def test_sample_cameras_match_exactly(rel: str) -> None:
    path = samples_dir(rel.split("/")[0]) / rel.split("/")[1]
    tiff = read_structure(path.read_bytes(), str(path)).tiff
    known, entry = camera_support(tiff.make, tiff.model)
    expected = SAMPLE_CAMERAS[rel]
    assert (known, entry) == ((True, expected) if expected else (False, ""))


# --- a newer body than LibRaw knows: the real Kodak DC50 file under another name ---------------

def _renamed_kdc(tmp_path: Path, make: str, model: str) -> Path:
    """The real KDC with its Make and Model strings rewritten in place (NUL-padded)."""
    data = bytearray((samples_dir("raw") / "kodak-dc50.KDC").read_bytes())
    for old, new in (("Eastman Kodak Company", make),
                     ("Kodak Digital Science DC50 Zoom Camera", model)):
        at = data.find(old.encode())
        assert at >= 0 and data.count(old.encode()) == 1 and len(new) <= len(old)
        data[at:at + len(old)] = new.encode().ljust(len(old), b"\0")
    path = tmp_path / f"{name_key(model)}.KDC"
    path.write_bytes(bytes(data))
    tiff = read_structure(bytes(data), str(path)).tiff
    assert (tiff.make, tiff.model) == (make, model)
    return path


@pytest.mark.parametrize(("make", "model"), [
    ("Canon", "Canon EOS R5 Mark III"),      # matched "Canon EOS R5" by its words before
    ("NIKON CORPORATION", "NIKON Z 9 II"),
    ("SONY", "ILCE-7M5"),
    ("Eastman Kodak Company", "Kodak DC52 Zoom Camera"),
])
def test_a_newer_body_that_libraw_rejects_is_unsupported(tmp_path: Path, make: str,
                                                         model: str) -> None:
    dec = _run(_renamed_kdc(tmp_path, make, model))
    assert dec["verdict"] == "unsupported", dec["error"]
    assert dec["error"].startswith("LibRawFileUnsupportedError at open")
    assert f"is not in LibRaw {LIBRAW_VERSION}'s camera list" in dec["error"]


def test_the_same_bytes_naming_a_body_libraw_reads_are_damaged(tmp_path: Path) -> None:
    """Control: the identical file naming the R5, a body LibRaw reads, cannot be an R5 file."""
    dec = _run(_renamed_kdc(tmp_path, "Canon", "Canon EOS R5"))
    assert dec["verdict"] == "damaged", dec["error"]
    assert "supports 'Canon EOS R5'" in dec["error"]


# --- LibRaw's memory limit (LibRawTooBigError) --------------------------------------------------



def _jpeg_tile(size: int, noisy: bool = False) -> bytes:
    if noisy:
        rng = np.random.default_rng(1)
        image = Image.fromarray(rng.normal(110, 25, (size, size, 3)).clip(0, 255).astype(np.uint8))
    else:
        image = Image.new("RGB", (size, size), (120, 130, 110))
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=90 if noisy else 50, optimize=True)
    return buf.getvalue()


# A Fujifilm GFX 100 Pixel Shift Combiner DNG: 23296x17472 RGB (407 MP). LibRaw sizes RGB as four
# 16-bit planes: 3.0 GiB, past its 2048 MB limit. Lossy-JPEG tiles of flat colour keep it ~3 MB.
GFX_W, GFX_H, TILE = 23296, 17472, 1024


def _tiles(width: int, height: int, tile: int = TILE) -> int:
    return -(-width // tile) * -(-height // tile)


def test_the_tile_layout_decodes_at_a_size_libraw_allows(tmp_path: Path) -> None:
    """Control: the writer makes DNGs that LibRaw decodes and every check passes."""
    path = tmp_path / "small.dng"
    dng.write_pretiled_dng(path, 2048, 1536, 512, [_jpeg_tile(512, noisy=True)] * _tiles(2048, 1536, 512))
    dec = _run(path)
    assert dec["verdict"] == "ok", dec["error"]


def test_an_image_past_libraws_memory_limit_is_unsupported(tmp_path: Path) -> None:
    path = tmp_path / "DSCF0001-pixelshift.dng"
    dng.write_pretiled_dng(path, GFX_W, GFX_H, TILE, [_jpeg_tile(TILE)] * _tiles(GFX_W, GFX_H))
    assert path.stat().st_size < 4_000_000
    dec = _run(path)
    assert dec["verdict"] == "unsupported", dec["error"]
    assert dec["error"].startswith("LibRawTooBigError at unpack")  # LibRaw's limit, for real
    assert "23296x17472 (407 MP)" in dec["error"] and "3.0 GB" in dec["error"]
    assert "2048 MB LibRaw allows" in dec["error"] and "checksum" in dec["error"]


def test_too_big_with_garbled_dimensions_is_damaged(tmp_path: Path) -> None:
    """The same tiles under a header whose width was garbled: its tiles cannot cover it."""
    path = tmp_path / "garbled.dng"
    dng.write_pretiled_dng(path, 60000, GFX_H, TILE, [_jpeg_tile(TILE)] * _tiles(GFX_W, GFX_H))
    dec = _run(path)
    assert dec["verdict"] == "damaged", dec["error"]
    assert dec["error"].startswith("LibRawTooBigError at unpack")
    assert "cannot hold" in dec["error"] and "the file lists 414" in dec["error"]


def test_too_big_with_less_data_than_claimed_is_damaged(tmp_path: Path) -> None:
    """An uncompressed CFA DNG claiming 40000x30000 pixels with 1 MiB of data."""
    path = tmp_path / "short.dng"
    dng.write_pretiled_dng(path, 40000, 30000, 40000, [bytes(1 << 20)], samples=1, bits=16, compression=1,
               photometric=32803, make="Canon", model="Canon EOS R5")
    dec = _run(path)
    assert dec["verdict"] == "damaged", dec["error"]
    assert dec["error"].startswith("LibRawTooBigError")
    assert "1048576 bytes of image data for 1200000000 samples" in dec["error"]


def test_the_too_big_x3f_stub_is_damaged_because_it_is_tiny() -> None:
    """A Sigma DP2 X3F of 4 KB: LibRaw says too big, the size says it holds no image."""
    dec = _run(samples_dir("stubs") / "exiftool-stub-sigma-dp2.x3f")
    assert dec["verdict"] == "damaged"
    assert "LibRawTooBigError" in dec["error"] and "cannot hold" in dec["error"]


# --- out of memory ------------------------------------------------------------------------------

_UNDER_LIMIT = textwrap.dedent("""
    import json, resource, sys
    import ingest.decode.heif, ingest.decode.jpeg, ingest.decode.other, ingest.decode.raw
    from ingest.decode.task import run_task

    with open("/proc/self/status") as f:
        mapped = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize:"))
    path, kind, mib = sys.argv[1], sys.argv[2], int(sys.argv[3])
    resource.setrlimit(resource.RLIMIT_AS, (mapped + mib * 2**20, resource.RLIM_INFINITY))
    dec = run_task({"path": path, "kind": kind, "card_path": None, "preview": None,
                    "capture_time": None})["decode"]
    print(json.dumps({"mib": mib, "verdict": dec["verdict"], "error": dec["error"],
                      "detail": dec["checks"][0]["detail"] if dec["checks"] else ""}))
""")


def _under_memory_limits(path: Path, kind: str, margins: list[int]) -> list[dict]:
    """Decode `path` in fresh processes whose address space may grow only `margin` MiB past what
    they have mapped after importing the decoders: machines with too little memory.

    At the tightest limits a C++ allocation that nothing catches (rawpy's `new LibRaw`) aborts
    the process; a DecodePool worker that dies so is reported "crashed", which the pipeline
    reports unverified (test_decode_pool covers that), so here it counts as "crashed"."""
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc/self/status (Linux) to size the address-space limit")
    results = []
    for mib in margins:
        try:
            proc = subprocess.run([sys.executable, "-c", _UNDER_LIMIT, str(path), kind,
                                   str(mib)], capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired:
            # A decoder stuck when its threads cannot get stack space: in a DecodePool worker
            # that is the "timeout" verdict (unverified), never damaged.
            results.append({"mib": mib, "verdict": "timeout", "error": "", "detail": ""})
            continue
        if proc.returncode < 0:
            results.append({"mib": mib, "verdict": "crashed", "error": "", "detail": ""})
            continue
        assert proc.returncode == 0, proc.stderr[-2000:]
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return results


def _assert_never_damaged(results: list[dict]) -> list[dict]:
    """Every run decodes, is unsupported for memory, dies or hangs (crashed / timeout in the
    pool: unverified); returns the unsupported ones."""
    assert results[-1]["verdict"] == "ok", results[-1]  # with room enough, the file is fine
    for r in results:
        assert r["verdict"] in ("ok", "unsupported", "crashed", "timeout"), r
    short = [r for r in results if r["verdict"] == "unsupported"]
    assert short, results
    assert all(r["error"].endswith(NO_MEMORY) for r in short), short
    return short


def test_out_of_memory_in_libraw_is_unsupported() -> None:
    results = _under_memory_limits(samples_dir("raw") / "nikon-d5000-lossless.dng", "raw",
                                   [8, 16, 32, 40, 2048])
    short = _assert_never_damaged(results)
    # Some runs failed inside LibRaw's own allocation, not only while reading the file.
    assert any(r["error"].startswith("LibRaw") for r in short), short


def test_out_of_memory_in_the_jpeg_decoder_is_unsupported(tmp_path: Path) -> None:
    """A 192 MP panorama JPEG: the decode's output array no longer fits."""
    path = tmp_path / "PANO0001.JPG"
    Image.linear_gradient("L").resize((16000, 12000)).save(path, quality=90)
    file_mib = path.stat().st_size >> 20  # the read fits, the 2000x1500 RGB output (1/8) not
    results = _under_memory_limits(path, "jpeg", [file_mib + k for k in (1, 3, 5, 7)] + [2048])
    short = _assert_never_damaged(results)
    assert any("simplejpeg" in r["detail"] for r in short), short  # inside the decoder


def test_out_of_memory_in_the_tiff_decoder_is_unsupported(tmp_path: Path) -> None:
    path = tmp_path / "scan.tif"
    tifffile.imwrite(path, np.full((4000, 6000, 3), 1234, np.uint16), photometric="rgb",
                     compression=8, tile=(512, 512))
    _assert_never_damaged(_under_memory_limits(path, "tiff", [48, 4096]))


def test_out_of_memory_in_the_heif_decoder_is_unsupported() -> None:
    path = samples_dir("heif") / "exifsamples-nokia8.3-HMD_Nokia_8.3_5G.heif"
    _assert_never_damaged(_under_memory_limits(path, "heif", [128, 4096]))
    # FFmpeg's strict decode too (av.error.MemoryError is an FFmpegError): the R5's 10-bit HIF
    # with a few MiB to spare failed inside FFmpeg and was called damaged (an outside review).
    r5 = samples_dir("heif") / "exiv2-canon-eosr5-Canon.HIF"
    _assert_never_damaged(_under_memory_limits(r5, "heif", [2, 4, 8, 16, 32, 64, 4096]))


# --- raws without a header ----------------------------------------------------------------------

@pytest.mark.parametrize(("label", "cut", "pad", "name"), [
    ("one byte short", 1, 0, "c330.raw"),
    ("half", 1123584, 0, "c330.raw"),
    ("one byte over", 0, 1, "c330.raw"),
    ("4 KiB over", 0, 4096, "c330.raw"),
    ("a CHDK-style dump named .CRW", 1, 0, "CRW_0001.CRW"),
])
def test_a_headerless_raw_of_no_known_size_is_unsupported(tmp_path: Path, label: str, cut: int,
                                                          pad: int, name: str) -> None:
    """kodak-c330-headerless.raw decodes (test_decode_samples); LibRaw knows it only by its
    exact size, so a cut or padded copy is "Unsupported file format". Nothing in a file without
    a header can prove it damaged, and a copy that differs from the card fails its checksum
    before any decode."""
    data = (samples_dir("raw") / "kodak-c330-headerless.raw").read_bytes()
    path = tmp_path / name
    path.write_bytes(data[:len(data) - cut] + bytes(pad))
    dec = _run(path)
    assert dec["verdict"] == "unsupported", (label, dec["error"])
    assert "exact size" in dec["error"] and "checksum" in dec["error"]


def test_a_crw_whose_header_is_destroyed_is_still_damaged(tmp_path: Path) -> None:
    """CHDK writes headerless dumps as .CRW too, but a real CRW keeps its directory at the end
    of the file: with that intact the lost header is proven."""
    data = bytearray((samples_dir("raw") / "canon-eos-d30.CRW").read_bytes())
    data[:512] = bytes(512)
    path = tmp_path / "CRW_0001.CRW"
    path.write_bytes(bytes(data))
    dec = _run(path)
    assert dec["verdict"] == "damaged", dec["error"]
    assert "header is destroyed" in dec["error"]


def test_a_nef_without_a_header_is_damaged(tmp_path: Path) -> None:
    """No camera writes a NEF without its TIFF header: a lost one is damage."""
    data = bytearray((samples_dir("raw") / "nikon-coolscan-iv-ed-scanner.nef").read_bytes())
    data[:512] = bytes(512)
    path = tmp_path / "DSC_0001.NEF"
    path.write_bytes(bytes(data))
    dec = _run(path)
    assert dec["verdict"] == "damaged" and "header destroyed" in dec["error"]


# --- every stub: a damaged verdict with its proof -----------------------------------------------

STUB_PROOF = {  # what in the file (or LibRaw's error) proves it damaged
    "exifpy-stub-sony-a7iii.ARW": "data ends before the image does",
    "exiftool-stub-canon.cr2": "supports 'Canon EOS 350D DIGITAL'",
    "exiftool-stub-canon.cr3": "data ends before the image does",
    "exiftool-stub-canon.crw": "data ends before the image does",
    "exiftool-stub-fujifilm.raf": "data ends before the image does",
    "exiftool-stub-kyocera.raw": "data ends before the image does",
    "exiftool-stub-minolta.mrw": "data ends before the image does",
    "exiftool-stub-nikon.nef": "compressed image data is corrupt",
    "exiftool-stub-panasonic.rw2": "data_size",
    "exiftool-stub-phaseone.iiq": "data ends before the image does",
    "exiftool-stub-sigma-dp2.x3f": "cannot hold",
    "exiftool-stub-sigma.x3f": "data ends before the image does",
    "exiftool-stub.dng": "data_size",
    "exiv2-pruned-canon-r6.CR3": "data ends before the image does",
    "exiv2-pruned-iphone12pro.dng": "structure",
    "exiv2-stub-canon-powershot-s40.crw": "data ends before the image does",
    "filetype-header-nikon.nef": "past the end of the file",
    "filetype-truncated-canon.cr3": "data ends before the image does",
    "filetype-truncated-leica-m10.dng": "data ends before the image does",
    "filetype-truncated-sony-zv-e10.arw": "past the end of the file",
    "mde-stub-nikon-d70s.nef": "data ends before the image does",
    "nomexif-stub-canon-r6.cr3": "data ends before the image does",
    "tracker-stub-canon-70d.cr2": "data ends before the image does",
}


@pytest.mark.parametrize("name", sorted(STUB_PROOF))
def test_each_stub_is_damaged_for_a_stated_reason(name: str) -> None:
    dec = _run(samples_dir("stubs") / name)
    assert dec["verdict"] == "damaged", dec["error"]
    assert STUB_PROOF[name] in dec["error"]


def test_every_stub_has_a_stated_proof() -> None:
    assert sorted(p.name for p in samples_dir("stubs").iterdir()) == sorted(STUB_PROOF)
