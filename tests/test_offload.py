"""The copy engine end to end through the library API: copy, read-back, retry, collide, dedupe."""

from __future__ import annotations

import json
import os
import sqlite3

import pytest
import xxhash

from conftest import CardReadErrors, partials, snapshot
from ingest import api, fsio
from ingest.model import Status

STATUSES = {"verified", "recopied", "needs_recopy", "damaged_on_card", "unreadable", "duplicate",
            "unverified"}


def run(card, dests, **kw):
    kw.setdefault("decode", False)
    kw.setdefault("jobs", 1)
    return api.offload(str(card), [str(d) for d in dests], **kw)


def by_path(result):
    return {r.path: r for r in result.records}


def test_copies_every_file_to_both_destinations_and_proves_it(card, disks, manifest, tmp_path):
    dests = disks
    before = snapshot(card)
    report_path = tmp_path / "report.json"
    result = run(card, dests, json_path=str(report_path))
    assert result.exit_code == 0
    assert snapshot(card) == before  # the card is never written to
    records = by_path(result)
    assert sorted(records) == sorted(manifest.files)
    for rec in result.records:
        assert rec.status is Status.VERIFIED, (rec.path, rec.detail)
        data = (card / rec.path).read_bytes()
        assert rec.xxh3_128 == xxhash.xxh3_128_hexdigest(data)
        assert [c.destination for c in rec.copies] == [str(d) for d in dests]
        for c in rec.copies:
            copy = dests[0].parent / c.destination / c.path
            assert copy.read_bytes() == data
            assert copy.stat().st_mtime_ns == (card / rec.path).stat().st_mtime_ns
    for d in dests:
        assert partials(d) == []

    report = json.loads(report_path.read_text())
    assert report["schema"] == "ingest-report/1"
    for key in ("command", "tool_version", "started_at", "finished_at", "source",
                "destinations", "files", "summary"):
        assert key in report
    assert report["command"] == "offload"
    assert report["skipped_system_files"] == 4
    first = report["files"][0]
    assert set(first) >= {"path", "kind", "size", "xxh3_128", "status", "copies", "detail"}
    assert set(first["copies"][0]) >= {"destination", "path", "verified"}
    assert "\\" not in first["path"]
    # Readable, one line per file record, and the same data as the records themselves.
    lines = report_path.read_text().splitlines()
    assert lines[0] == "{" and lines[1].startswith('  "schema": ')
    file_lines = [ln for ln in lines if ln.startswith('    {"path": ')]
    assert len(file_lines) == len(manifest.files)
    assert [json.loads(ln.rstrip(",")) for ln in file_lines] == [
        json.loads(json.dumps(r.to_json())) for r in result.records]

    summary = report["summary"]
    assert summary["files"] == len(manifest.files)
    assert summary["by_status"]["verified"]["bytes"] == sum(
        (card / p).stat().st_size for p in manifest.files)
    assert summary["safe_to_format"] is True
    assert summary["verdict"] == (f"Safe to format: all {len(manifest.files)} files have 2 "
                                  "verified copies on 2 devices")


def test_layout_by_capture_date_and_sidecars_follow(card, dests, manifest):
    result = run(card, dests[:1])
    paths = {r.path: r.copies[0].path for r in result.records}
    for rel, when in manifest.captured.items():
        if rel in paths and not rel.endswith((".XMP", ".WAV")):
            assert paths[rel].startswith(f"{when:%Y}/{when:%Y-%m-%d}/"), rel
    for rel in manifest.sidecars:
        folder, _, name = rel.rpartition("/")
        stem = name.rsplit(".", 1)[0]
        image = next(p for p in paths if p.startswith(f"{folder}/{stem}.")
                     and p not in manifest.sidecars)
        assert paths[rel].rsplit(".", 1)[0] == paths[image].rsplit(".", 1)[0]


def test_mirror_layout_keeps_card_folders(card, dests):
    result = run(card, dests[:1], layout="mirror")
    for rec in result.records:
        assert rec.copies[0].path == rec.path


def test_name_collision_never_overwrites(card, dests, manifest):
    result = run(card, dests[:1])
    copies = {r.path: r.copies[0].path for r in result.records}
    for group in manifest.collisions:
        targets = [copies[p] for p in group]
        assert len(set(targets)) == len(targets), group
        for p in group:
            assert (dests[0] / copies[p]).read_bytes() == (card / p).read_bytes()
    # A second run gives the same names: the suffix is deterministic.
    again = {r.path: r.copies[0].path for r in run(card, dests[1:]).records}
    assert again == copies


def test_rerun_copies_nothing_and_reports_duplicates(card, dests):
    run(card, dests)
    stats = {p: p.stat().st_mtime_ns for d in dests for p in d.rglob("*")
             if p.is_file() and ".ingest" not in p.parts}
    second = run(card, dests)
    assert second.exit_code == 0
    assert {r.status for r in second.records} == {Status.DUPLICATE}
    assert all("already in the archive as" in r.detail for r in second.records)
    assert {p: p.stat().st_mtime_ns for p in stats} == stats
    assert second.report["destinations"][0]["files"] == 0


def test_same_content_from_another_card_is_a_duplicate(card, dests, tmp_path):
    run(card, dests[:1])
    other = tmp_path / "other-card"
    other.mkdir()
    src = next(p for p in sorted(card.rglob("*.JPG")) if not p.name.startswith("._"))
    (other / "renamed.JPG").write_bytes(src.read_bytes())
    result = run(other, dests[:1])
    (rec,) = result.records
    assert rec.status is Status.DUPLICATE
    assert not (dests[0] / "renamed.JPG").exists()
    assert not list(dests[0].rglob("renamed.JPG"))


class CorruptingIO(fsio.FileIO):
    """Flips one byte of the data written to partials, `times` times, for one file name."""

    def __init__(self, name: str, times: int):
        self.name, self.times = name, times

    def write(self, fd, data):
        target = os.readlink(f"/proc/self/fd/{fd}")
        at_start = os.lseek(fd, 0, os.SEEK_CUR) == 0
        if self.name in os.path.basename(target) and self.times > 0 and at_start:
            self.times -= 1
            data = bytes([data[0] ^ 0x40]) + bytes(data[1:])
        super().write(fd, data)


def test_corrupted_copy_is_caught_by_read_back_and_recopied(card, dests):
    io = CorruptingIO("DSC_0007.JPG", times=1)
    result = run(card, dests, io=io)
    rec = by_path(result)["DCIM/100NIKON/DSC_0007.JPG"]
    assert rec.status is Status.RECOPIED
    assert rec.attempts == 2
    for c in rec.copies:
        assert (dests[0].parent / c.destination / c.path).read_bytes() == \
            (card / rec.path).read_bytes()
    assert result.exit_code == 0


def test_persistent_corruption_ends_as_needs_recopy(card, dests):
    io = CorruptingIO("DSC_0007.JPG", times=100)
    result = run(card, dests, io=io, retries=2)
    rec = by_path(result)["DCIM/100NIKON/DSC_0007.JPG"]
    assert rec.status is Status.NEEDS_RECOPY
    assert rec.attempts == 3
    assert "did not match the card" in rec.detail
    assert not list(dests[0].rglob("DSC_0007.JPG"))  # nothing bad under a final name
    assert result.exit_code == 1
    assert partials(dests[0]) == []


def test_transient_read_error_is_retried(card, dests):
    result = run(card, dests, io=CardReadErrors("DSC_0009.JPG", failures=1))
    rec = by_path(result)["DCIM/101NIKON/DSC_0009.JPG"]
    assert rec.status is Status.RECOPIED
    assert result.exit_code == 0


def test_persistent_read_error_is_unreadable_and_the_run_goes_on(card, dests):
    result = run(card, dests, io=CardReadErrors("DSC_0009.JPG", failures=99))
    rec = by_path(result)["DCIM/101NIKON/DSC_0009.JPG"]
    assert rec.status is Status.UNREADABLE
    assert "Input/output error" in rec.detail and "3 times" in rec.detail
    others = [r for r in result.records if r is not rec]
    assert others and all(r.status is Status.VERIFIED for r in others)
    assert result.exit_code == 1
    for d in dests:
        assert partials(d) == [] and not list(d.rglob("DSC_0009.JPG"))


def test_read_back_drops_the_page_cache_first(tmp_path, monkeypatch):
    calls = []
    real = os.posix_fadvise
    monkeypatch.setattr(os, "posix_fadvise",
                        lambda fd, off, n, advice: (calls.append(advice), real(fd, off, n, advice)))
    p = tmp_path / "f"
    p.write_bytes(b"abc" * 1000)
    digest, n = fsio.uncached_hash(str(p))
    assert calls[0] == os.POSIX_FADV_DONTNEED
    assert (digest, n) == (xxhash.xxh3_128_hexdigest(b"abc" * 1000), 3000)


def test_catalog_records_every_copy(card, dests):
    result = run(card, dests)
    db = sqlite3.connect(dests[0] / ".ingest" / "catalog.sqlite")
    rows = {r[0]: r for r in db.execute(
        "SELECT source_path, path, size, mtime_ns, xxh3_128, capture_time, camera_make, status,"
        " session_id, last_verified_at FROM files")}
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    for rec in result.records:
        row = rows[rec.path]
        assert row[1] == rec.copies[0].path and row[2] == rec.size and row[4] == rec.xxh3_128
        assert row[7] == "verified" and row[8] and row[9]
        assert (dests[0] / row[1]).stat().st_size == row[2]
    jpeg = next(r for r in result.records if r.path.endswith("DSC_0001.JPG"))
    assert rows[jpeg.path][6]  # camera make from EXIF


@pytest.mark.parametrize("where", ["inside", "same", "contains"])
def test_destination_overlapping_the_source_is_refused(card, tmp_path, where):
    from ingest.preflight import UsageError

    dest = {"inside": card / "DCIM", "same": card, "contains": tmp_path}[where]
    before = snapshot(card)
    with pytest.raises(UsageError):
        api.offload(str(card), [str(dest)], decode=False)
    assert snapshot(card) == before


def test_rerun_replaces_a_copy_that_verify_found_corrupt(card, dests):
    first = run(card, dests[:1])
    rec = next(r for r in first.records if r.path.endswith("DSC_0005.DNG"))
    copy = dests[0] / rec.copies[0].path
    data = bytearray(copy.read_bytes())
    data[1000] ^= 0x08
    copy.write_bytes(bytes(data))
    checked = api.verify([str(dests[0])], decode=False, jobs=1)
    assert [r.path for r in checked.records if r.status is Status.CORRUPT] == \
        [rec.copies[0].path]
    again = by_path(run(card, dests[:1]))[rec.path]
    assert again.status is Status.RECOPIED and again.copies[0].path == rec.copies[0].path
    assert "the archive held a damaged copy" in again.detail
    assert copy.read_bytes() == (card / rec.path).read_bytes()
    assert (dests[0] / again.copies[0].quarantined).read_bytes() == bytes(data)
    assert api.verify([str(dests[0])], decode=False, jobs=1).exit_code == 0


def test_empty_files_each_keep_their_own_name(tmp_path, dests):
    card = tmp_path / "zero-card"
    (card / "DCIM").mkdir(parents=True)
    for name in ("EMPTY.JPG", "EMPTY.XMP", "NOTE.TXT"):
        (card / "DCIM" / name).write_bytes(b"")
    result = run(card, dests[:1], layout="mirror")
    assert {r.path: r.copies[0].path for r in result.records} == {
        f"DCIM/{n}": f"DCIM/{n}" for n in ("EMPTY.JPG", "EMPTY.XMP", "NOTE.TXT")}
    assert all((dests[0] / "DCIM" / n).exists() for n in ("EMPTY.JPG", "EMPTY.XMP", "NOTE.TXT"))
