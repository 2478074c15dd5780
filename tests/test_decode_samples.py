"""run_task on real camera files: every verdict the samples README promises, and the details."""

from __future__ import annotations

import io
import shutil
import struct
from pathlib import Path

import numpy as np
import pillow_heif
import pytest
import rawpy
import tifffile
from PIL import Image

from conftest import SAMPLES, samples_dir
from ingest.decode.raw import (
    LIBRAW_VERSION,
    Structure,
    TiffInfo,
    camera_support,
    classify_unsupported,
    read_tiff,
)
from ingest.decode.task import run_task


def _files(sub: str) -> list[Path]:
    folder = SAMPLES / sub
    return sorted(folder.iterdir()) if folder.is_dir() else []


def _ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def _kind(path: Path) -> str:
    return "jpeg" if path.suffix.lower() in (".jpg", ".jpeg") else "raw"


def _run(path: Path | str, kind: str, **extra) -> dict:
    req = {"path": str(path), "kind": kind, "card_path": None, "preview": None,
           "capture_time": None}
    req.update(extra)
    return run_task(req)


RAW, JPEG, STUBS, UNSUPPORTED = (_files(s) for s in ("raw", "jpeg", "stubs", "unsupported"))


@pytest.mark.parametrize("path", RAW + JPEG, ids=_ids(RAW + JPEG))
def test_real_files_decode_ok(path: Path) -> None:
    samples_dir()
    dec = _run(path, _kind(path))["decode"]
    assert dec["verdict"] == "ok", dec["error"]
    assert dec["ok"] is True and dec["error"] is None
    assert dec["checks"] and all(c["ok"] for c in dec["checks"])
    assert dec["stderr"] == ""


@pytest.mark.parametrize("path", STUBS, ids=_ids(STUBS))
def test_stubs_are_damaged(path: Path) -> None:
    samples_dir("stubs")
    dec = _run(path, "raw")["decode"]
    assert dec["verdict"] == "damaged", dec
    assert dec["ok"] is False and dec["error"]


@pytest.mark.parametrize("path", UNSUPPORTED, ids=_ids(UNSUPPORTED))
def test_unsupported_files_are_unsupported_with_reason(path: Path) -> None:
    samples_dir("unsupported")
    dec = _run(path, "raw")["decode"]
    assert dec["verdict"] == "unsupported", dec
    assert f"LibRaw {LIBRAW_VERSION}" in dec["error"]
    assert "compression" in dec["error"]  # both samples: a DNG codec this build lacks


def test_silent_stubs_are_caught_by_content_checks() -> None:
    """Three stubs unpack without any LibRaw error; the checks must name why they fail. Their
    zeros are noted, but decide nothing (a lens-cap frame can be zeros): size and structure do."""
    stubs = samples_dir("stubs")
    rw2 = _run(stubs / "exiftool-stub-panasonic.rw2", "raw")["decode"]
    failed = {c["name"] for c in rw2["checks"] if not c["ok"]}
    assert failed == {"data_size"}
    assert "mostly zero" in next(c["detail"] for c in rw2["checks"] if c["name"] == "nonzero")
    dng = _run(stubs / "exiftool-stub.dng", "raw")["decode"]
    assert "data_size" in {c["name"] for c in dng["checks"] if not c["ok"]}
    iphone = _run(stubs / "exiv2-pruned-iphone12pro.dng", "raw")["decode"]
    failed = {c["name"] for c in iphone["checks"] if not c["ok"]}
    assert "structure" in failed  # tiles claimed up to 29 MB in a 64 KB file


def test_unsupported_at_open_vs_damaged_header_depends_on_structure() -> None:
    """The same LibRawFileUnsupportedError: a cut ARW is damaged, a destroyed header too."""
    stubs = samples_dir("stubs")
    arw = _run(stubs / "filetype-truncated-sony-zv-e10.arw", "raw")["decode"]
    assert arw["verdict"] == "damaged" and "past the end of the file" in arw["error"]
    nef = _run(stubs / "filetype-header-nikon.nef", "raw")["decode"]
    assert nef["verdict"] == "damaged" and "IFD" in nef["error"]


def test_libraw_fd2_messages_are_captured_not_printed(capfd) -> None:
    stubs = samples_dir("stubs")
    dec = _run(stubs / "exiftool-stub-nikon.nef", "raw")["decode"]
    assert "data corrupted at 1378" in dec["stderr"]
    assert dec["stderr"].startswith("exiftool-stub-nikon.nef:")  # not LibRaw's "unknown file"
    assert "data corrupted at 1378" in dec["error"]
    assert "data corrupted" not in capfd.readouterr().err


def test_decoder_names_carry_versions() -> None:
    raw_dir = samples_dir("raw")
    dec = _run(raw_dir / "kodak-dc50.KDC", "raw")["decode"]
    assert dec["decoder"] == f"rawpy {rawpy.__version__} / LibRaw {LIBRAW_VERSION}"
    jpeg = _run(samples_dir("jpeg") / "nikon-e950.jpg", "jpeg")["decode"]
    assert jpeg["decoder"].startswith("simplejpeg ") and "libjpeg-turbo 3." in jpeg["decoder"]


def test_card_original_decoded_only_when_the_copy_fails(tmp_path: Path) -> None:
    src = samples_dir("raw") / "canon-eos-d30.CRW"
    good = _run(src, "raw", card_path=str(src))
    assert good["card_decode"] is None
    copy = tmp_path / "copy.CRW"
    copy.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    res = _run(copy, "raw", card_path=str(src))
    assert res["decode"]["verdict"] == "damaged"
    assert res["card_decode"]["verdict"] == "ok"  # transfer damage: the card is fine
    card = tmp_path / "card.CRW"
    shutil.copy(copy, card)
    both = _run(copy, "raw", card_path=str(card))
    assert both["card_decode"]["verdict"] == "damaged"  # damaged on the card


def test_missing_file_and_unknown_kind_do_not_raise(tmp_path: Path) -> None:
    gone = _run(tmp_path / "nope.NEF", "raw")["decode"]
    assert gone["verdict"] == "not_read" and "cannot read" in gone["error"]  # no finding
    odd = _run(tmp_path / "nope.bin", "video")["decode"]
    assert odd["verdict"] == "unsupported"


def test_unknown_camera_tiff_is_unsupported_known_camera_is_damaged(tmp_path: Path) -> None:
    """LibRaw rejects both small TIFFs; only the Make decides which verdict is true."""
    pixels = np.zeros((16, 16), np.uint16)
    for make, model, expect in (("Zorkiy Optics", "ZX-1", "unsupported"),
                                ("NIKON CORPORATION", "NIKON D70", "damaged")):
        path = tmp_path / f"{expect}.nef"
        tifffile.imwrite(path, pixels, extratags=[(271, "s", 0, make, True),
                                                  (272, "s", 0, model, True)])
        dec = _run(path, "raw")["decode"]
        assert dec["verdict"] == expect, dec["error"]


def test_camera_list_lookup() -> None:
    assert camera_support("NIKON CORPORATION", "NIKON D5000")[0] is True
    assert camera_support("Eastman Kodak Company", "Kodak DC50 Zoom Camera")[0] is True
    assert camera_support("GoPro", "HERO6 Black")[0] is False
    known, entry = camera_support("NIKON CORPORATION", "NIKON Z 9")
    assert known and "not supported" in entry  # LibRaw's own note on HE/HE* files


def test_tiff_walk_reads_the_raw_ifd() -> None:
    path = samples_dir("raw") / "nikon-d5000-lossless.dng"
    info = read_tiff(path.read_bytes())
    raw_ifd = info.raw_ifd()
    assert info.dng and info.problems == []
    assert (raw_ifd.width, raw_ifd.height, raw_ifd.compression) == (4310, 2868, 7)
    assert raw_ifd.data_end <= path.stat().st_size


# --- HEIF and TIFF ------------------------------------------------------------------------------

def _heif_bytes() -> bytes:
    rng = np.random.default_rng(3)
    img = Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    buf = io.BytesIO()
    pillow_heif.from_pillow(img).save(buf, quality=80)
    return buf.getvalue()


def test_heif_decodes_and_truncation_is_damaged(tmp_path: Path) -> None:
    data = _heif_bytes()
    good, cut = tmp_path / "a.heic", tmp_path / "b.heic"
    good.write_bytes(data)
    cut.write_bytes(data[: len(data) // 2])
    assert _run(good, "heif")["decode"]["verdict"] == "ok"
    bad = _run(cut, "heif")["decode"]
    assert bad["verdict"] == "damaged" and bad["decoder"].startswith("pillow-heif")


def test_tiff_decodes_and_truncation_is_damaged(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    good = tmp_path / "a.tif"
    tifffile.imwrite(good, rng.integers(0, 65535, (200, 300, 3), dtype=np.uint16),
                     photometric="rgb")
    assert _run(good, "tiff")["decode"]["verdict"] == "ok"
    cut = tmp_path / "b.tif"
    cut.write_bytes(good.read_bytes()[:100_000])
    dec = _run(cut, "tiff")["decode"]
    assert dec["verdict"] == "damaged"


def test_non_tiff_container_verdict_follows_the_camera_list() -> None:
    """A CR3 LibRaw rejects is damaged if LibRaw lists its camera, unsupported if not."""
    known = Structure("cr3", TiffInfo(make="Canon", model="Canon EOS R6"), 500_000, ".cr3", b"")
    newer = Structure("cr3", TiffInfo(make="Canon", model="Canon EOS R99"), 500_000, ".cr3", b"")
    assert classify_unsupported(known, "open")[0] == "damaged"
    verdict, reason = classify_unsupported(newer, "open")
    assert verdict == "unsupported" and "EOS R99" in reason and LIBRAW_VERSION in reason
    blank = Structure(None, None, 4096, ".nef", b"\x00" * 8)
    assert classify_unsupported(blank, "open")[0] == "damaged"  # destroyed header
    other = Structure(None, None, 4096, ".xyz", b"\x00" * 8)
    assert classify_unsupported(other, "open")[0] == "unsupported"


def test_exceptions_become_results(monkeypatch, tmp_path: Path) -> None:
    """run_task never raises: a decoder exception is a damaged verdict, a preview exception
    a preview_error next to an intact decode result."""
    import ingest.decode.raw as raw_mod
    import ingest.preview as preview_mod

    src = samples_dir("raw") / "kodak-dc50.KDC"
    preview = {"out": [str(tmp_path / "p.jpg")], "size": 256, "quality": 85}

    def broken_preview(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(preview_mod, "preview_from_raw", broken_preview)
    res = _run(src, "raw", preview=preview)
    assert res["decode"]["verdict"] == "ok"
    assert res["preview"] is None and "disk full" in res["preview_error"]

    def broken_decoder(*_a, **_k):
        raise struct.error("unpack requires a buffer of 4 bytes")

    monkeypatch.setattr(raw_mod, "verify_raw", broken_decoder)
    res = _run(src, "raw", preview=preview)
    assert res["decode"]["verdict"] == "damaged"
    assert res["decode"]["error"] == "error: unpack requires a buffer of 4 bytes"
    assert res["preview"] is None and res["preview_error"]
