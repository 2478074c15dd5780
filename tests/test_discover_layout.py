from __future__ import annotations

import os
from datetime import datetime

import pytest

from ingest.discover import discover, stem_of
from ingest.layout import Layout, LayoutError, with_suffix
from ingest.metadata import CaptureInfo
from ingest.model import Kind


def _touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_classifies_every_kind_and_skips_os_clutter(tmp_path):
    names = {"DCIM/100NIKON/DSC_1.NEF": Kind.RAW, "DCIM/100NIKON/DSC_1.JPG": Kind.JPEG,
             "DCIM/100NIKON/DSC_1.XMP": Kind.SIDECAR, "DCIM/100NIKON/DSC_2.HEIC": Kind.HEIF,
             "DCIM/100NIKON/scan.tif": Kind.TIFF, "DCIM/100NIKON/C0001.MP4": Kind.VIDEO,
             "DCIM/100NIKON/memo.WAV": Kind.SIDECAR, "MISC/readme.txt": Kind.OTHER,
             "DCIM/100CANON/IMG_1.CR3": Kind.RAW, "DCIM/100CANON/IMG_1.qtk": Kind.RAW}
    for rel in names:
        _touch(tmp_path / rel)
    for clutter in (".Trashes/501/x.JPG", ".Spotlight-V100/store.db",
                    "System Volume Information/IndexerVolumeGuid", "DCIM/100NIKON/._DSC_1.NEF"):
        _touch(tmp_path / clutter)
    found = discover(str(tmp_path))
    assert {f.rel: f.kind for f in found.files} == names
    assert sorted(found.system_files) == sorted(
        [".Spotlight-V100/", ".Trashes/", "DCIM/100NIKON/._DSC_1.NEF",
         "System Volume Information/"])


def test_order_is_stable_and_sidecars_follow_their_image(tmp_path):
    for rel in ("B/z.JPG", "A/b.XMP", "A/b.NEF", "A/a.JPG", "A/b.NEF.xmp"):
        _touch(tmp_path / rel)
    order = [f.rel for f in discover(str(tmp_path)).files]
    assert order == ["A/a.JPG", "A/b.NEF", "A/b.NEF.xmp", "A/b.XMP", "B/z.JPG"]
    assert stem_of("b.NEF.xmp") == "b" and stem_of("b.XMP") == "b"


def test_symlink_outside_the_source_is_not_followed(tmp_path):
    outside = tmp_path / "outside.JPG"
    outside.write_bytes(b"secret")
    card = tmp_path / "card"
    _touch(card / "DCIM/a.JPG")
    os.symlink(outside, card / "DCIM/link.JPG")
    os.symlink(tmp_path, card / "DCIM/loop")
    found = discover(str(card))
    assert [f.rel for f in found.files] == ["DCIM/a.JPG"]
    reasons = {s.rel: s.reason for s in found.skipped}
    assert "outside the source" in reasons["DCIM/link.JPG"]
    assert "outside the source" in reasons["DCIM/loop"]


def test_fifo_is_skipped_with_a_reason(tmp_path):
    os.mkfifo(tmp_path / "pipe.JPG")
    found = discover(str(tmp_path))
    assert found.files == []
    assert "FIFO" in found.skipped[0].reason


INFO = CaptureInfo(datetime(2024, 7, 3, 9, 5, 1), "NIKON", "D850", "exif")


def test_default_layout_uses_capture_date():
    assert Layout.parse(None).path_for("DCIM/100NIKON/DSC_1.NEF", "raw", INFO) == \
        "2024/2024-07-03/DSC_1.NEF"


def test_mirror_and_custom_templates():
    assert Layout.parse("mirror").path_for("DCIM/100NIKON/DSC_1.NEF", "raw", INFO) == \
        "DCIM/100NIKON/DSC_1.NEF"
    assert Layout.parse("{make}/{model}/{year}{month}{day}_{stem}.{ext}").path_for(
        "DCIM/DSC_1.NEF", "raw", INFO) == "NIKON/D850/20240703_DSC_1.NEF"


@pytest.mark.parametrize("bad", ["{yeer}/{filename}", "{year}/x", "/abs/{filename}",
                                 "../{filename}"])
def test_bad_layouts_are_refused(bad):
    with pytest.raises(LayoutError):
        Layout.parse(bad)


def test_hostile_card_folder_cannot_climb_out():
    rel = Layout.parse("mirror").path_for("../../etc/passwd.JPG", "jpeg", INFO)
    assert ".." not in rel.split("/")


def test_suffix_is_deterministic():
    assert with_suffix("DSC_0001.NEF", "ab12cd34") == "DSC_0001-ab12cd34.NEF"
    assert with_suffix("README", "ab12cd34") == "README-ab12cd34"
