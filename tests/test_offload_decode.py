"""Offload with the decode check and previews, end to end, on the sample card and real files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from PIL import Image

import ingest
from conftest import samples_dir
from ingest import api
from ingest.model import Status


def comparable(result) -> list[tuple]:
    return [(r.path, str(r.status), r.xxh3_128, [c.path for c in r.copies],
             (r.decode or {}).get("verdict"), r.preview) for r in result.records]


def test_sequential_and_parallel_runs_give_equal_reports(card, manifest, tmp_path):
    runs = []
    for jobs in (1, 2):
        dests = [tmp_path / f"j{jobs}-A", tmp_path / f"j{jobs}-B"]
        for d in dests:
            d.mkdir()
        runs.append(api.offload(str(card), [str(d) for d in dests], jobs=jobs))
    one, two = (comparable(r) for r in runs)
    assert [row[:3] for row in one] == [row[:3] for row in two]
    assert [row[3:] for row in one] == [row[3:] for row in two]
    damaged = [r for r in runs[1].records if r.status is Status.DAMAGED_ON_CARD]
    assert [r.path for r in damaged] == manifest.damaged
    assert "Re-copying won't help" in damaged[0].detail
    assert damaged[0].decode["card"]["verdict"] == "damaged"  # the card original was decoded too


def test_previews_and_reports_land_in_every_destination(card, dests, manifest):
    result = api.offload(str(card), [str(d) for d in dests], jobs=2)
    images = [r for r in result.records if r.kind in ("raw", "jpeg")]
    assert images and all(r.preview for r in images if r.status is not Status.DUPLICATE)
    for d in dests:
        for r in images:
            preview = d / ".ingest" / "previews" / r.preview
            with Image.open(preview) as im:
                assert max(im.size) <= 2048 and im.format == "JPEG"
        html = list((d / ".ingest" / "reports").glob("offload-*.html"))
        js = list((d / ".ingest" / "reports").glob("offload-*.json"))
        assert len(html) == 1 and len(js) == 1
        page = html[0].read_text()
        flagged_at = page.index(manifest.damaged[0].rsplit("/", 1)[1])
        assert flagged_at < page.index("DSC_0001.JPG")  # the damaged file comes first
        assert json.loads(js[0].read_text())["summary"]["flagged"] == 1
    videos = [r for r in result.records if r.kind == "video"]
    assert videos and all(r.decode["verdict"] == "not_decoded" for r in videos)
    assert all("hash only" in r.decode["note"] for r in videos)


def test_real_samples_get_their_true_verdicts(tmp_path):
    card = tmp_path / "card"
    for sub in ("raw", "jpeg", "stubs", "unsupported"):
        shutil.copytree(samples_dir(sub), card / sub)
    dest = tmp_path / "dest"
    dest.mkdir()
    result = api.offload(str(card), [str(dest)], jobs=2, previews=False)
    by_folder: dict[str, set[str]] = {}
    for r in result.records:
        by_folder.setdefault(r.path.split("/")[0], set()).add(str(r.status))
    assert by_folder["raw"] == {"verified"}
    assert by_folder["jpeg"] == {"verified"}
    assert by_folder["unsupported"] == {"unverified"}
    assert by_folder["stubs"] <= {"damaged_on_card"}
    unsupported = [r for r in result.records if r.path.startswith("unsupported/")]
    assert all("0.22" in r.detail or "LibRaw" in r.detail for r in unsupported)
    assert result.exit_code == 1
    assert result.report["versions"]["libraw"]


def test_report_names_the_decoders_the_workers_ran(card, tmp_path, monkeypatch):
    from ingest.report import versions as versions_module

    expected = versions_module.decoder_versions()  # the same installed decoders
    # Were the report to name this process's decoders instead, it would say so.
    monkeypatch.setattr(versions_module, "decoder_versions", lambda: {"libraw": "main process"})
    dest = tmp_path / "dest"
    dest.mkdir()
    result = api.offload(str(card), [str(dest)], jobs=1, previews=False)
    assert result.report["versions"] == {"ingest": ingest.__version__, **expected}
    assert result.report["versions"]["libraw"].count(".") == 2


def test_a_card_with_nothing_to_decode_starts_no_workers(tmp_path, monkeypatch):
    from ingest.decode.pool import DecodePool

    def refuse(self):
        raise AssertionError("decode workers started for a card without images")

    monkeypatch.setattr(DecodePool, "start", refuse)
    card = tmp_path / "card" / "DCIM" / "100TEST"
    card.mkdir(parents=True)
    (card / "C0001.MP4").write_bytes(b"\0\0\0\x18ftypmp42" + bytes(5000))
    (card / "C0001.XML").write_text("<clip/>")
    dest = tmp_path / "dest"
    dest.mkdir()
    result = api.offload(str(tmp_path / "card"), [str(dest)], jobs=2)
    assert {str(r.status) for r in result.records} == {"verified"}
    assert result.report["versions"]["libraw"]  # named by this process: no worker ran


def _offload_in_a_fresh_process(card, tmp_path, options: str, show: str) -> tuple[list, object]:
    """api.offload(card, [dest], <options>) in a new interpreter: (the decoder libraries it
    imported, the expression `show` evaluated on the result `r`)."""
    dest = tmp_path / "dest"
    dest.mkdir()
    heavy = ("rawpy", "numpy", "PIL", "simplejpeg", "joblib")
    script = ("import json, sys; from ingest import api; "
              f"r = api.offload({str(card)!r}, [{str(dest)!r}], {options}); "
              f"print(json.dumps([sorted(m for m in {heavy!r} if m in sys.modules), {show}]))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout
    imported, shown = json.loads(out.splitlines()[-1])
    return imported, shown


def test_the_offload_process_leaves_decoding_to_its_workers(card, tmp_path):
    # Importing joblib (and with it numpy) here delayed the first copy by 0.4 s, cold cache.
    imported, (statuses, ok) = _offload_in_a_fresh_process(
        card, tmp_path, "jobs=1, previews=False",
        "[sorted({str(x.status) for x in r.records}), "
        "sum((x.decode or {}).get('verdict') == 'ok' for x in r.records)]")
    assert imported == []
    assert "verified" in statuses
    assert ok >= 3  # the workers decoded the card's images and found them whole


def test_an_offload_without_decode_imports_no_decoder(card, tmp_path):
    # Importing them only to name them in the report cost 0.15 s at the end of every run.
    imported, versions = _offload_in_a_fresh_process(card, tmp_path, "decode=False",
                                                     "r.report['versions']")
    assert imported == []
    assert versions["decoders"] == "not run (--no-decode)" and "libraw" not in versions
