"""The catalog: WAL and synchronous writes, and its rebuild from the disk and the ASC MHL history
when it is corrupt, emptied or deleted. Nothing is lost, and the rebuild is reported."""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
import xxhash
from reliability_table import count_lost, reliability_fixture  # noqa: F401

from ingest import api
from ingest.catalog import Catalog, catalog_path
from ingest.mhl import read_history
from ingest.rebuild import open_or_rebuild, rebuild_catalog


def clock():
    return datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)


def rows_of(dest: Path) -> dict[str, tuple[int, str]]:
    db = sqlite3.connect(catalog_path(str(dest)))
    try:
        return {p: (s, h) for p, s, h in db.execute("SELECT path, size, xxh3_128 FROM files")}
    finally:
        db.close()


@pytest.fixture()
def archived(card, dests):
    """The sample card offloaded to one destination, with its ASC MHL history."""
    result = api.offload(str(card), [str(dests[0])], decode=False, jobs=1)
    assert result.exit_code == 0
    return dests[0], result


def test_catalog_is_wal_with_full_synchronous_writes(tmp_path, reliability):
    with Catalog(str(tmp_path)) as cat:
        mode = cat.db.execute("PRAGMA journal_mode").fetchone()[0]
        sync = cat.db.execute("PRAGMA synchronous").fetchone()[0]
    # journal_mode is stored in the file; synchronous is per connection (2 = FULL)
    db = sqlite3.connect(catalog_path(str(tmp_path)))
    persisted = db.execute("PRAGMA journal_mode").fetchone()[0]
    db.close()
    reliability.row(area="catalog", fault="power loss during a catalog write (configuration)",
                    setup="a new catalog", expected="journal_mode=wal, synchronous=FULL (2)",
                    observed=f"journal_mode={mode} (file: {persisted}), synchronous={sync}",
                    lost=0, injected=0)
    assert (mode, persisted, sync) == ("wal", "wal", 2)


@pytest.mark.parametrize("damage", ["garbage", "page", "empty", "deleted"])
def test_damaged_catalog_is_rebuilt_and_nothing_is_lost(archived, card, tmp_path, damage,
                                                        reliability):
    dest, first = archived
    before = rows_of(dest)
    history = read_history(dest)
    assert set(history) == set(before)
    path = Path(catalog_path(str(dest)))
    # Make sure everything is in the main file, so the damage below hits the real data.
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    garbage = os.urandom(path.stat().st_size)
    if damage == "garbage":
        path.write_bytes(garbage)
    elif damage == "page":
        data = bytearray(path.read_bytes())
        data[4096:8192] = garbage[:4096]  # the second page: a b-tree page of the catalog
        path.write_bytes(bytes(data))
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
    damaged_bytes = path.read_bytes() if path.exists() else None

    if damage == "garbage":
        with pytest.raises(sqlite3.DatabaseError):  # how the damage shows without a rebuild
            Catalog(str(dest)).close()

    cat, report = open_or_rebuild(str(dest), clock)
    cat.close()
    assert report is not None
    assert report.reason.startswith({"garbage": "corrupt", "page": "corrupt", "empty": "empty",
                                     "deleted": "missing"}[damage]), report.reason
    if damage in ("garbage", "page"):
        kept = Path(report.moved_aside[0])
        assert kept.name == "catalog.sqlite.corrupt-20240601T120000Z"
        assert kept.read_bytes() == damaged_bytes  # moved aside, never deleted
    assert rows_of(dest) == before  # every path, size and original hash is back
    assert sorted(report.verified) == sorted(before)
    assert report.corrupt == report.rebuilt == report.missing == []
    assert Path(report.report_path).is_file()

    # and the archive is whole: a re-run from the card finds every file already there
    again = api.offload(str(card), [str(dest)], decode=False, jobs=1)
    assert {str(r.status) for r in again.records} == {"duplicate"}
    checked = api.verify([str(dest)], decode=False, jobs=1)
    assert checked.exit_code == 0
    lost = count_lost(card, again.report)
    reliability.row(
        area="catalog", fault={"garbage": "catalog overwritten with random bytes",
                               "page": "one 4 KiB page of the catalog overwritten",
                               "empty": "catalog truncated to 0 bytes",
                               "deleted": "catalog (and -wal, -shm) deleted"}[damage],
        setup=f"destination holding {len(before)} files and its ASC MHL history",
        expected="detected, old file kept aside, every row rebuilt from disk + history; "
                 "re-run all duplicate; verify clean",
        observed=f"{report.summary()}; re-run: {len(again.records)} duplicate; verify exit "
                 f"{checked.exit_code}", lost=lost)
    assert lost == 0


def test_rebuild_flags_changed_files_and_says_what_it_cannot_prove(archived, card, reliability):
    dest, first = archived
    before = rows_of(dest)
    recs = {r.path: r for r in first.records}
    changed = recs["DCIM/100NIKON/DSC_0005.DNG"].copies[0].path
    gone = recs["DCIM/100NIKON/DSC_0001.JPG"].copies[0].path
    data = bytearray((dest / changed).read_bytes())
    data[5000] ^= 0x10
    (dest / changed).write_bytes(bytes(data))
    (dest / gone).unlink()
    (dest / "notes").mkdir()
    (dest / "notes" / "by-hand.txt").write_text("added by hand\n")
    (dest / "notes" / ".by-hand.txt.20240101T000000Z-abcdef.ingest-partial").write_bytes(b"x")

    report = rebuild_catalog(str(dest), clock, reason="requested")
    rows = rows_of(dest)
    assert report.corrupt == [changed]
    assert rows[changed] == before[changed]  # the row keeps the original's hash
    assert report.missing == [gone] and gone not in rows  # no row points at a missing file
    assert report.rebuilt == ["notes/by-hand.txt"]
    assert not any(p.endswith(".ingest-partial") for p in rows)
    with Catalog(str(dest)) as cat:
        assert cat.by_path(changed).last_result == "corrupt"
        assert cat.by_path("notes/by-hand.txt").status == "rebuilt"
        assert "not proven" in cat.by_path("notes/by-hand.txt").detail

    checked = api.verify([str(dest)], decode=False, jobs=1)
    assert {r.path for r in checked.records if str(r.status) == "corrupt"} == {changed}
    # A re-run from the card restores both the changed and the deleted file.
    again = api.offload(str(card), [str(dest)], decode=False, jobs=1)
    statuses = {r.path: str(r.status) for r in again.records}
    # The changed copy is replaced (its bytes kept in the quarantine), and the report says so.
    assert statuses.pop(recs["DCIM/100NIKON/DSC_0005.DNG"].path) == "recopied"
    assert statuses.pop(recs["DCIM/100NIKON/DSC_0001.JPG"].path) == "verified"
    assert set(statuses.values()) == {"duplicate"}
    for rel in (changed, gone):
        assert xxhash.xxh3_128_hexdigest((dest / rel).read_bytes()) == before[rel][1]
    assert api.verify([str(dest)], decode=False, jobs=1).exit_code == 0
    lost = count_lost(card, again.report)
    reliability.row(
        area="catalog", fault="catalog rebuilt over a changed file, a deleted file and a "
                              "hand-added file",
        setup="one archived DNG bit-flipped, one JPEG deleted, one text file added by hand",
        expected="changed -> corrupt (history hash kept), deleted -> reported missing (no row), "
                 "hand-added -> rebuilt (not proven); re-run from the card restores both",
        observed=f"{report.summary()}; verify flagged {changed} corrupt; re-run restored both",
        lost=lost)
    assert lost == 0


def test_unused_destination_gets_a_new_catalog_without_a_rebuild(tmp_path):
    (tmp_path / "old-photos").mkdir()
    (tmp_path / "old-photos" / "IMG_1.JPG").write_bytes(b"not ours")
    cat, report = open_or_rebuild(str(tmp_path), clock)
    cat.close()
    assert report is None and rows_of(tmp_path) == {}


def test_offload_onto_a_corrupt_catalog_rebuilds_it(archived, card, reliability):
    dest, _ = archived
    path = Path(catalog_path(str(dest)))
    path.write_bytes(os.urandom(path.stat().st_size))
    try:
        result = api.offload(str(card), [str(dest)], decode=False, jobs=1)
    except sqlite3.DatabaseError as e:
        reliability.row(area="catalog", fault="offload onto a destination whose catalog is "
                        "random bytes", setup="api.offload, no explicit rebuild",
                        expected="catalog rebuilt and reported; run completes",
                        observed=f"run aborted: sqlite3.DatabaseError: {e}", lost=0)
        raise
    rebuilds = result.report.get("rebuilds") or []
    lost = count_lost(card, result.report)
    reliability.row(area="catalog", fault="offload onto a destination whose catalog is random "
                    "bytes", setup="api.offload, no explicit rebuild",
                    expected="catalog rebuilt and reported; run completes",
                    observed=f"exit {result.exit_code}; {len(rebuilds)} rebuild(s) reported: "
                    + "; ".join(f"{r['reason']}, {r['files']} files, {len(r['verified'])} match "
                                "the history" for r in rebuilds), lost=lost)
    assert result.exit_code == 0
    assert rebuilds and lost == 0
