"""`ingest verify --repair` keeps the bytes it replaces: the edited or rotted file is moved to
`.ingest/quarantine/<run>/<path>` with a note saying why, and a repair that cannot keep it
changes nothing."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conftest import partials
from ingest import api, fsio
from ingest.catalog import STATE_DIR, catalog_path
from ingest.model import Status
from ingest.quarantine import QUARANTINE_DIR, quarantine, read_notes, run_folder
from ingest.verify import VerifyConfig
from ingest.verify.run import verify

START = datetime(2031, 6, 2, 9, 30, tzinfo=UTC)
QUARANTINE = f"{STATE_DIR}/{QUARANTINE_DIR}"


def run_verify(archives: list[Path], **kw):
    kw.setdefault("decode", False)
    kw.setdefault("jobs", 1)
    kw.setdefault("destination_reports", False)
    kw.setdefault("clock", lambda: START)
    return verify(VerifyConfig(archives=[str(a) for a in archives], **kw))


def offloaded(card: Path, dests: list[Path]) -> list[str]:
    """Offload the card to every destination; the archived paths, as the catalog names them."""
    result = api.offload(str(card), [str(d) for d in dests], decode=False, jobs=1,
                         destination_reports=False)
    assert result.exit_code in (0, 1)
    with sqlite3.connect(catalog_path(str(dests[0]))) as db:
        return sorted(p for (p,) in db.execute("SELECT path FROM files"))


def edit_in_place(path: Path) -> bytes:
    """What an editor's metadata rewrite looks like to verify: other bytes, same size."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 16] = bytes(b ^ 0x5A for b in data[middle:middle + 16])
    path.write_bytes(bytes(data))
    return bytes(data)


def record(result, root: Path, rel: str):
    return next(r for r in result.records
                if r.path == rel and r.copies[0].destination == str(root))


def kept_files(root: Path) -> list[str]:
    folder = root / QUARANTINE
    if not folder.is_dir():
        return []
    return sorted(p.relative_to(root).as_posix() for p in folder.rglob("*")
                  if p.is_file() and p.name != "quarantine.jsonl")


def test_repair_keeps_the_edited_file_in_quarantine(card, dests, tmp_path):
    names = offloaded(card, dests)
    archive, good = dests
    edited_rel, deleted_rel = names[2], names[5]
    original = (good / edited_rel).read_bytes()
    edited = edit_in_place(archive / edited_rel)
    assert len(edited) == len(original) and edited != original
    edited_mtime = (archive / edited_rel).stat().st_mtime_ns
    (archive / deleted_rel).unlink()
    report_path = tmp_path / "report.json"

    result = run_verify(dests, repair=True, json_path=str(report_path))

    assert result.exit_code == 0
    assert (archive / edited_rel).read_bytes() == original
    rec = record(result, archive, edited_rel)
    assert rec.status is Status.RECOPIED, rec.detail
    assert rec.copies[0].quarantined is not None
    assert rec.copies[0].quarantined.startswith(f"{QUARANTINE}/") and rec.copies[0].quarantined.endswith(
        "/" + edited_rel)
    kept = archive / rec.copies[0].quarantined
    assert kept.read_bytes() == edited
    assert kept.stat().st_mtime_ns == edited_mtime  # moved, not copied
    assert rec.detail.startswith(f"repaired from {good}/{edited_rel} (was corrupt: content "
                                 "changed since ingest")
    assert rec.detail.endswith(f"; the replaced file is kept at {archive}/{rec.copies[0].quarantined}")

    on_disk = json.loads(report_path.read_text())
    entry = next(f for f in on_disk["files"] if f["path"] == edited_rel
                 and f["copies"][0]["destination"] == str(archive))
    assert entry["copies"][0]["quarantined"] == rec.copies[0].quarantined and entry["status"] == "recopied"

    # A missing file leaves nothing to keep.
    missing = record(result, archive, deleted_rel)
    assert missing.status is Status.RECOPIED and missing.copies[0].quarantined is None
    assert "kept at" not in missing.detail
    assert (archive / deleted_rel).read_bytes() == (good / deleted_rel).read_bytes()
    assert kept_files(archive) == [rec.copies[0].quarantined]
    assert kept_files(good) == []

    folder = rec.copies[0].quarantined[:rec.copies[0].quarantined.index("/" + edited_rel)]
    [note] = read_notes(str(archive), folder)
    assert note["path"] == edited_rel and note["quarantined"] == rec.copies[0].quarantined
    assert note["size"] == len(edited)
    assert note["reason"].startswith(f"replaced by ingest verify --repair from {good}/"
                                     f"{edited_rel} (was corrupt: content changed since ingest")
    assert folder.endswith(note["session"]) and datetime.fromisoformat(note["time"]) == START

    # The quarantine is not archive content: a later check finds every file intact and
    # nothing untracked.
    again = run_verify(dests)
    assert again.exit_code == 0
    assert {str(r.status) for r in again.records} == {"verified"}
    assert not any(r.path.startswith(STATE_DIR) for r in again.records)
    assert kept.read_bytes() == edited


def test_a_file_that_cannot_be_kept_is_not_replaced(card, dests):
    names = offloaded(card, dests)
    archive = dests[0]
    rel = names[3]
    edited = edit_in_place(archive / rel)
    before = (archive / rel).stat()
    blocker = archive / QUARANTINE
    blocker.write_bytes(b"not a folder")  # so no quarantine folder can be made

    result = run_verify(dests, repair=True)

    rec = record(result, archive, rel)
    assert rec.status is Status.CORRUPT
    assert rec.copies[0].quarantined is None
    assert "could not keep the file it would replace" in rec.detail
    assert rec.detail.endswith("nothing was restored")
    assert result.exit_code == 1
    after = (archive / rel).stat()
    assert (archive / rel).read_bytes() == edited
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert partials(archive) == []
    assert blocker.read_bytes() == b"not a folder"


class FailingFinalRename(fsio.FileIO):
    """A disk that refuses the rename of a restored partial over its final name."""

    def rename(self, src: str, dst: str) -> None:
        if src.endswith(fsio.PARTIAL_SUFFIX):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        super().rename(src, dst)


def test_a_failed_final_rename_puts_the_kept_file_back(card, dests):
    names = offloaded(card, dests)
    archive = dests[0]
    rel = names[1]
    edited = edit_in_place(archive / rel)

    result = run_verify(dests, repair=True, io=FailingFinalRename())

    rec = record(result, archive, rel)
    assert rec.status is Status.CORRUPT and rec.copies[0].quarantined is None
    assert "could not restore" in rec.detail and rec.detail.endswith("nothing was changed")
    assert (archive / rel).read_bytes() == edited
    assert partials(archive) == []
    assert kept_files(archive) == []
    [folder] = (archive / QUARANTINE).iterdir()
    notes = read_notes(str(archive), folder.relative_to(archive).as_posix())
    assert [n["path"] for n in notes] == [rel, rel]
    assert notes[1]["quarantined"] is None and notes[1]["put_back_from"] == notes[0]["quarantined"]


def test_quarantine_names_and_edge_cases(tmp_path):
    root = tmp_path / "archive"
    (root / "2031").mkdir(parents=True)
    session = START.strftime("%Y%m%dT%H%M%SZ-") + "a1b2c3"
    # A session id that already starts with the time is not prefixed with it again.
    assert run_folder(START, session) == f"{QUARANTINE}/{session}"
    assert run_folder(START, "x9") == f"{QUARANTINE}/20310602T093000Z-x9"

    assert quarantine(str(root), "2031/gone.NEF", reason="r", at=START, session=session) is None
    assert not (root / STATE_DIR).exists()

    # The same name kept twice in one run: the first kept bytes are not overwritten.
    kept = []
    for content in (b"first", b"second"):
        (root / "2031" / "a.NEF").write_bytes(content)
        kept.append(quarantine(str(root), "2031/a.NEF", reason="r", at=START, session=session))
    assert kept == [f"{QUARANTINE}/{session}/2031/a.NEF", f"{QUARANTINE}/{session}/2031/a.NEF.1"]
    assert [(root / k).read_bytes() for k in kept] == [b"first", b"second"]
    assert not (root / "2031" / "a.NEF").exists()
    assert [n["quarantined"] for n in read_notes(str(root), f"{QUARANTINE}/{session}")] == kept

    with pytest.raises(ValueError):
        quarantine(str(root), "../outside", reason="r", at=START, session=session)
