"""The HTML contact sheet: section order, pairs, previews by relative path, escaping, scale."""

from __future__ import annotations

import html
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote_to_bytes

import pytest
from PIL import Image

from ingest.model import ADVICE
from ingest.report.html import default_html_path, render_html, write_html
from ingest.report.pairs import group_pairs

HOSTILE = "<img src=x onerror=alert(1)>&\"'\nname.JPG"


def _record(path: str, kind: str, status: str = "verified", **extra) -> dict:
    record = {
        "path": path, "kind": kind, "size": 1_000_000, "mtime_ns": 0, "xxh3_128": "00" * 16,
        "status": status, "detail": "", "copies": [], "capture_time": "2026-11-20T14:03:11",
        "camera_make": "NIKON CORPORATION", "camera_model": "NIKON D850", "seconds": 0.1,
        "decode": {"decoder": "rawpy", "ok": True, "error": None, "checks": [], "seconds": 0.1,
                   "verdict": "ok"},
        "preview": None, "attempts": 1,
    }
    record.update(extra)
    return record


def _jpeg(path: Path, size=(96, 64), colour=(90, 120, 160)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, "JPEG", quality=80)


def _report(files: list[dict], **summary) -> dict:
    return {
        "schema": "ingest-report/1", "command": "offload", "tool_version": "0.1.0",
        "started_at": "2026-11-26T05:00:00+00:00", "finished_at": "2026-11-26T05:00:12.500000+00:00",
        "seconds": 12.5, "source": "/media/card",
        "destinations": [
            {"root": "/archive/a", "device": 2049, "files": len(files), "bytes": 25_000_000, "error": None},
            {"root": "/archive/b", "device": 2065, "files": len(files), "bytes": 25_000_000, "error": None},
        ],
        "versions": {"ingest": "0.1.0", "libraw": "0.22.2", "rawpy": "0.28.0"},
        "skipped_system_files": 3, "files": files,
        "summary": {"files": len(files), "bytes": 25_000_000, **summary},
    }


@pytest.fixture
def card(tmp_path: Path) -> dict:
    """A destination with real preview JPEGs and a report covering the awkward cases."""
    previews = tmp_path / "dest" / ".ingest" / "previews"
    day = "2026/2026-11-20"
    for name in ("DSC_0001.JPG", "DSC_0001.NEF", "DSC_0002.NEF", "DSC_0004.JPG", HOSTILE):
        _jpeg(previews / day / f"{name}.jpg")
    folder = "DCIM/100NIKON"
    files = [
        _record(f"{folder}/DSC_0001.NEF", "raw", preview=f"{day}/DSC_0001.NEF.jpg"),
        _record(f"{folder}/DSC_0001.JPG", "jpeg", preview=f"{day}/DSC_0001.JPG.jpg"),
        _record(f"{folder}/DSC_0002.NEF", "raw", "needs_recopy",
                detail="Copy on /archive/b read back with a different hash",
                preview=f"{day}/DSC_0002.NEF.jpg",
                copies=[{"destination": "/archive/a", "path": f"{day}/DSC_0002.NEF", "verified": True, "action": "copied"},
                        {"destination": "/archive/b", "path": f"{day}/DSC_0002.NEF", "verified": False, "action": "failed"}]),
        _record(f"{folder}/DSC_0003.NEF", "raw", "damaged_on_card",
                detail="LibRaw: data corrupted at row 1200",
                decode={"decoder": "rawpy", "ok": False, "error": "data corrupted", "checks": [],
                        "seconds": 0.1, "verdict": "damaged"}),
        _record(f"{folder}/DSC_0004.NEF", "raw"),
        _record(f"{folder}/DSC_0004.JPG", "jpeg", "unverified", detail="No decoder proves this JPEG",
                preview=f"{day}/DSC_0004.JPG.jpg"),
        _record(f"{folder}/{HOSTILE}", "jpeg", preview=f"{day}/{HOSTILE}.jpg"),
        _record(f"{folder}/DSC_0005.JPG", "jpeg", preview=f"{day}/DSC_0005.JPG.jpg"),  # file absent
        _record(f"{folder}/DSC_0006.NEF", "raw", decode=None),
        _record(f"{folder}/MOV_0007.MOV", "video", decode=None, size=2_500_000_000),
        _record(f"{folder}/DSC_0001.XMP", "sidecar", decode=None, size=4_000),
    ]
    report = _report(files, flagged=3, safe_to_format=False,
                     verdict="3 files need attention: do not format this card",
                     by_status={"verified": {"files": 8, "bytes": 20_000_000},
                                "needs_recopy": {"files": 1, "bytes": 1_000_000},
                                "damaged_on_card": {"files": 1, "bytes": 1_000_000},
                                "unverified": {"files": 1, "bytes": 1_000_000}})
    return {"report": report, "previews": previews, "out": tmp_path / "reports" / "offload.html"}


class _Page(HTMLParser):
    """Collects each tile's section, text and images, plus every img/link/script tag."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.section = None
        self.tiles: list[dict] = []
        self.imgs: list[dict] = []
        self.tags: list[str] = []
        self._in_tile = False
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "section":
            self.section = attrs.get("id")
        if tag == "article":
            self.tiles.append({"section": self.section, "text": "", "imgs": []})
            self._in_tile = True
            self._text = []
        if tag == "img":
            self.imgs.append(attrs)
            if self._in_tile:
                self.tiles[-1]["imgs"].append(attrs)

    def handle_endtag(self, tag):
        if tag == "article" and self._in_tile:
            self._in_tile = False
            self.tiles[-1]["text"] = "".join(self._text)

    def handle_data(self, data):
        if self._in_tile:
            self._text.append(data)


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    return parser


def test_group_pairs_joins_one_raw_with_one_jpeg_in_the_same_folder():
    files = [
        _record("A/IMG_1.CR3", "raw"), _record("A/IMG_2.JPG", "jpeg"), _record("A/img_1.jpg", "jpeg"),
        _record("B/IMG_2.CR3", "raw"),  # other folder: no pair with A/IMG_2.JPG
        _record("A/IMG_3.HEIC", "heif"), _record("A/IMG_3.CR3", "raw"),  # JPEG-like first
        _record("A/IMG_4.CR3", "raw"), _record("A/IMG_4.JPG", "jpeg"), _record("A/IMG_4.HEIC", "heif"),
        _record("A/IMG_5.JPG", "jpeg"), _record("A/IMG_5.XMP", "sidecar"),
    ]
    units = group_pairs(files)
    paths = [[r["path"] for r in u] for u in units]
    assert paths == [
        ["A/IMG_1.CR3", "A/img_1.jpg"], ["A/IMG_2.JPG"], ["B/IMG_2.CR3"],
        ["A/IMG_3.CR3", "A/IMG_3.HEIC"],  # RAW first, placed where its first member was
        ["A/IMG_4.CR3"], ["A/IMG_4.JPG"], ["A/IMG_4.HEIC"],  # three of a kind: ambiguous
        ["A/IMG_5.JPG"], ["A/IMG_5.XMP"],
    ]
    assert sorted(r["path"] for u in units for r in u) == sorted(r["path"] for r in files)


def test_attention_section_comes_first_with_reason_and_advice(card):
    out = write_html(card["report"], card["out"], card["previews"])
    page = out.read_text("utf-8")
    assert page.index('id="attention"') < page.index('id="images"') < page.index('id="other"')
    assert page.index("3 files need attention: do not format this card") < page.index('id="attention"')

    tiles = _parse(page).tiles
    attention = [t for t in tiles if t["section"] == "attention"]
    recopy = next(t for t in attention if "DSC_0002.NEF" in t["text"])
    assert "Copy on /archive/b read back with a different hash" in recopy["text"]
    assert ADVICE["needs_recopy"] in recopy["text"]
    assert "Needs re-copy" in recopy["text"]
    assert "Good copy" in recopy["text"] and "Bad copy" in recopy["text"]
    damaged = next(t for t in attention if "DSC_0003.NEF" in t["text"])
    assert ADVICE["damaged_on_card"] in damaged["text"]
    assert "Nothing could be decoded" in damaged["text"] and not damaged["imgs"]
    # The garbage that did decode is shown, not hidden.
    assert len(recopy["imgs"]) == 1
    flagged_names = ("DSC_0002.NEF", "DSC_0003.NEF", "DSC_0004.JPG")
    for tile in tiles:
        if tile["section"] != "attention":
            assert not any(name in tile["text"] for name in flagged_names)


def test_pairs_share_one_tile_with_both_statuses(card):
    tiles = _parse(render_html(card["report"], card["out"].parent, card["previews"])).tiles
    first = [t for t in tiles if "DSC_0001.NEF" in t["text"]]
    assert len(first) == 1 and "DSC_0001.JPG" in first[0]["text"]
    assert first[0]["text"].count("Verified") == 2
    # The JPEG's preview is the picture of the pair.
    assert first[0]["imgs"][0]["src"].endswith("DSC_0001.JPG.jpg")

    mixed = [t for t in tiles if "DSC_0004.NEF" in t["text"]]
    assert len(mixed) == 1 and mixed[0]["section"] == "attention"
    assert "Verified" in mixed[0]["text"] and "Not proven" in mixed[0]["text"]
    assert "No decoder proves this JPEG" in mixed[0]["text"]
    assert sum(1 for t in tiles if "DSC_0001.XMP" in t["text"]) == 0  # sidecars go to the table


def test_image_paths_are_relative_and_survive_moving_the_destination(card, tmp_path):
    # The report lives inside the destination, as the default location puts it.
    dest = tmp_path / "dest"
    out = write_html(card["report"], dest / ".ingest" / "reports" / "offload.html", card["previews"])
    srcs = [img["src"] for img in _parse(out.read_text("utf-8")).imgs]
    assert len(srcs) == 4  # pair, recopy, mixed pair, hostile name; DSC_0005's file is absent
    for src in srcs:
        assert not src.startswith(("/", "file:"))

    moved = shutil.move(str(dest), str(tmp_path / "elsewhere"))
    reports = Path(moved) / ".ingest" / "reports"
    for src in srcs:
        target = os.fsdecode(os.path.join(os.fsencode(reports), unquote_to_bytes(src)))
        assert Path(target).is_file(), src


def test_missing_previews_are_said_in_words(card):
    page = render_html(card["report"], card["out"].parent, card["previews"])
    tiles = _parse(page).tiles
    words = {name: t for t in tiles for name in ("DSC_0005.JPG", "DSC_0006.NEF") if name in t["text"]}
    assert "Preview file is missing" in words["DSC_0005.JPG"]["text"]
    assert "No preview" in words["DSC_0006.NEF"]["text"]
    assert not words["DSC_0005.JPG"]["imgs"] and not words["DSC_0006.NEF"]["imgs"]

    without = _parse(render_html(card["report"], card["out"].parent, None))
    assert without.imgs == []
    assert "Preview not included with this report" in next(
        t["text"] for t in without.tiles if "DSC_0001.NEF" in t["text"])


def test_hostile_file_names_are_escaped_and_made_visible(card):
    page = render_html(card["report"], card["out"].parent, card["previews"])
    assert "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;&amp;&quot;&#x27;\u240aname.JPG" in page
    parsed = _parse(page)
    assert parsed.tags.count("img") == len(parsed.imgs) == 4
    hostile = next(t for t in parsed.tiles if "onerror" in t["text"])
    assert hostile["imgs"][0]["alt"].startswith("Preview of <img src=x")

    odd = _report([_record("DCIM/\udcff\u202eGPJ.NEF", "raw", "missing", detail="gone")])
    out = write_html(odd, card["out"].parent / "odd.html", None)
    text = out.read_text("utf-8")
    assert "[FF][U+202E]GPJ.NEF" in text


def test_page_needs_nothing_from_the_network(card):
    page = render_html(card["report"], card["out"].parent, card["previews"])
    lowered = page.lower()
    assert "http://" not in lowered and "https://" not in lowered and "//" + "cdn" not in lowered
    tags = _parse(page).tags
    assert "link" not in tags and "script" not in tags and "iframe" not in tags
    assert "@import" not in page and "url(" not in page


def test_header_shows_destinations_statuses_time_and_versions(card):
    page = render_html(card["report"], card["out"].parent, card["previews"])
    header = html.unescape(page[: page.index("</header>")])
    assert "/media/card" in header and "/archive/a" in header and "/archive/b" in header
    assert "25.0 MB" in header and "11 files" in header
    assert "12.5 s at 2.0 MB/s (05:00:00 to 05:00:12 UTC)" in header  # 25 MB in 12.5 s
    assert "libraw 0.22.2" in header and "rawpy 0.28.0" in header
    assert "3 camera/system files left out" in header
    for label in ("Verified", "Needs re-copy", "Damaged on card", "Not proven"):
        assert label in header
    assert ADVICE["damaged_on_card"] in header


def test_verdict_is_derived_when_the_summary_has_none(tmp_path):
    good = _report([_record("D/A.NEF", "raw"), _record("D/B.NEF", "raw")])
    page = render_html(good, tmp_path, None)
    # Safe to format is a judgement of devices and catalogs the page cannot see: a page
    # without the report's own verdict never claims it.
    assert '<h1 class="verdict ok">All 2 files verified</h1>' in page
    assert "safe" not in page[: page.index("</h1>")].lower()

    bad = _report([_record("D/A.NEF", "raw"), _record("D/B.NEF", "raw", "unreadable", detail="I/O error")])
    del bad["summary"]
    page = render_html(bad, tmp_path, None)
    assert '<h1 class="verdict bad">1 file needs attention: do not format this card</h1>' in page
    assert "I/O error" in page and ADVICE["unreadable"] in page

    verify = _report([_record("2026/A.NEF", "raw"), _record("2026/B.NEF", "raw", "skipped")],
                     by_status={})
    verify.update(command="verify", source=None)
    page = render_html(verify, tmp_path, None)
    assert '<h1 class="verdict ok">All 2 files checked are intact</h1>' in page
    assert "<dt>Card</dt>" not in page and "<dt>Archive</dt>" in page
    assert "Not checked yet" in page and ADVICE["skipped"] in html.unescape(page)


def test_write_is_atomic_and_replaces_an_old_report(card):
    out = card["out"]
    out.parent.mkdir(parents=True)
    out.write_text("old report")
    write_html(card["report"], out, card["previews"])
    assert out.read_text("utf-8").startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in out.parent.iterdir()) == ["offload.html"]


def test_default_path_is_under_the_destination():
    report = _report([])
    path = default_html_path(report, Path("/archive/a"))
    assert path == Path("/archive/a/.ingest/reports/offload-20261126-050000.html")


def test_five_thousand_files_stay_a_light_page(tmp_path):
    previews = tmp_path / "previews"
    for i in range(10):
        _jpeg(previews / f"p{i}.jpg", colour=(20 * i, 80, 120))
    files = []
    for i in range(5000):
        if i % 10 == 9:
            files.append(_record(f"DCIM/{100 + i // 1000}CANON/MVI_{i:04d}.MP4", "video", decode=None))
        else:
            files.append(_record(f"DCIM/{100 + i // 1000}CANON/IMG_{i:04d}.CR3", "raw",
                                 "needs_recopy" if i == 4321 else "verified",
                                 preview=f"p{i % 10}.jpg"))
    out = write_html(_report(files), tmp_path / "big.html", previews)
    page = out.read_text("utf-8")
    parsed = _parse(page)
    assert len(parsed.imgs) == 4500
    for img in parsed.imgs:
        assert img["loading"] == "lazy" and img["decoding"] == "async"
        assert int(img["width"]) > 0 and int(img["height"]) > 0
    assert "base64" not in page
    assert len(page.encode()) < 5000 * 1500  # about 1 kB a file, not megabytes of inline data
    assert parsed.tiles[0]["section"] == "attention" and "IMG_4321.CR3" in parsed.tiles[0]["text"]
