"""`ingest verify` end to end: bit rot, deletions, edits, damaged-at-ingest files, repair from a
sibling archive, the catalog history, ASC MHL generations, reports and the command line."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

import ingest
from conftest import partials
from fixtures.damage import flip_bits
from ingest import api, fsio
from ingest.catalog import catalog_path
from ingest.cli.verify import verify as verify_command
from ingest.lock import DestinationLock, LockedError
from ingest.mhl import read_history
from ingest.model import Status
from ingest.power import Battery
from ingest.preflight import UsageError
from ingest.verify import VerifyConfig
from ingest.verify.run import verify


class Clock:
    """A clock the test moves by hand: no test depends on wall time."""

    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, 3, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float = 1) -> None:
        self.now += timedelta(seconds=seconds)


def offload(card: Path, dests: list[Path], decode: bool = False) -> None:
    result = api.offload(str(card), [str(d) for d in dests], decode=decode, jobs=1,
                         destination_reports=False)
    assert result.exit_code in (0, 1)


def check(archives: list[Path], **kw):
    kw.setdefault("decode", False)
    kw.setdefault("jobs", 1)
    kw.setdefault("destination_reports", False)
    return verify(VerifyConfig(archives=[str(a) for a in archives], **kw))


def statuses(result, root: Path | None = None) -> dict[str, str]:
    return {r.path: str(r.status) for r in result.records
            if root is None or r.copies[0].destination == str(root)}


def catalog_rows(root: Path) -> dict[str, tuple]:
    with sqlite3.connect(catalog_path(str(root))) as db:
        return {r[0]: r[1:] for r in db.execute(
            "SELECT path, xxh3_128, status, last_result, size, mtime_ns FROM files")}


def verify_checks(root: Path) -> list[tuple[str, str]]:
    """(path, result) of every check a verify session recorded, oldest first."""
    with sqlite3.connect(catalog_path(str(root))) as db:
        return list(db.execute(
            "SELECT f.path, c.result FROM checks c JOIN files f ON f.id = c.file_id "
            "JOIN sessions s ON s.id = c.session_id WHERE s.command = 'verify' ORDER BY c.id"))


def damage(path: Path, seed: int = 1) -> None:
    """Flip bits in the middle, keeping size and mtime: only a re-read can notice."""
    st = path.stat()
    flip_bits(path, [st.st_size // 2, st.st_size // 3], seed=seed)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def archived(root: Path) -> list[str]:
    return sorted(catalog_rows(root))


# --- detection -------------------------------------------------------------------------------


def test_intact_archives_verify_against_the_catalog(card, dests):
    offload(card, dests)
    before = {d: catalog_rows(d) for d in dests}
    result = check(dests)
    assert result.exit_code == 0
    for d in dests:
        assert statuses(result, d) == {p: "verified" for p in archived(d)}
        assert sorted(verify_checks(d)) == [(p, "verified") for p in archived(d)]
        after = catalog_rows(d)
        for path, row in before[d].items():
            # Original hash and the offload's status stay; only the check fields move.
            assert after[path][:2] == row[:2] and after[path][2] == "verified"
    report = result.report
    assert report["schema"] == "ingest-report/1" and report["command"] == "verify"
    assert report["source"] is None
    assert report["summary"]["verdict"] == f"All {len(result.records)} checked files are intact"
    assert report["verify"]["checked"] == len(result.records)


def test_bit_flips_are_caught_and_only_those_files_flagged(card, dests):
    offload(card, dests)
    names = archived(dests[0])
    hit = [names[1], names[7], names[-2]]
    for i, rel in enumerate(hit):
        damage(dests[0] / rel, seed=i)
    result = check(dests)
    assert result.exit_code == 1
    flagged = {(r.copies[0].destination, r.path) for r in result.records if r.flagged}
    assert flagged == {(str(dests[0]), rel) for rel in hit}
    for r in result.records:
        if r.flagged:
            assert r.status is Status.CORRUPT
            assert r.detail.startswith(f"in {dests[0]}: content changed since ingest")
            assert r.detail.endswith(f"good copy at {dests[1]}/{r.path}")
    # The reference stays the ORIGINAL hash: a second run does not accept the rot as new truth.
    again = check(dests[:1])
    assert {p for p, s in statuses(again).items() if s == "corrupt"} == set(hit)
    assert {p: row[0] for p, row in catalog_rows(dests[0]).items()} == \
        {p: row[0] for p, row in catalog_rows(dests[1]).items()}


def test_deleted_file_is_missing_and_hand_added_files_are_untracked(card, dests):
    offload(card, dests[:1])
    root = dests[0]
    gone = archived(root)[3]
    (root / gone).unlink()
    (root / "notes").mkdir()
    (root / "notes" / "shoot.txt").write_text("client notes")
    (root / "2024" / ".DSC_9.JPG.x1.ingest-partial").write_bytes(b"half a copy")
    (root / ".ingest" / "other.db").write_bytes(b"ours")
    (root / "ascmhl" / "0099_x.mhl").parent.mkdir(exist_ok=True)
    (root / "ascmhl" / "0099_x.mhl").write_text("not content")
    result = check([root])
    by = statuses(result)
    assert by[gone] == "missing"
    assert [p for p, s in by.items() if s == "untracked"] == ["notes/shoot.txt"]
    assert result.exit_code == 1
    (root / gone).write_bytes(b"")  # put a wrong file back: now it is corrupt, not missing
    assert statuses(check([root]))[gone] == "corrupt"


def test_untracked_alone_is_not_a_failure(card, dests):
    offload(card, dests[:1])
    (dests[0] / "extra.jpg").write_bytes(b"\xff\xd8\xff\xd9")
    result = check(dests[:1])
    assert statuses(result)["extra.jpg"] == "untracked"
    assert result.exit_code == 0


def test_damaged_at_ingest_is_damaged_not_corrupt(card, dests, manifest):
    pytest.importorskip("ingest.decode.pool", reason="decode pool not available")
    assert manifest.damaged, "the sample card should hold one damaged file"
    offload(card, dests)
    card_hash = {fsio.uncached_hash(str(card / rel))[0] for rel in manifest.damaged}
    result = check(dests, decode=True, jobs=2)
    damaged = [r for r in result.records if r.status is Status.DAMAGED]
    assert len(damaged) == 2 * len(manifest.damaged)  # the same file in both archives
    for r in damaged:
        assert r.xxh3_128 in card_hash and r.decode["verdict"] == "damaged"
        assert "when it was ingested" in r.detail
    others = [r for r in result.records if r.status is not Status.DAMAGED]
    assert {str(r.status) for r in others} == {"verified"}
    assert any(r.decode and r.decode["verdict"] == "ok" for r in others)
    assert result.exit_code == 1


# --- repair ----------------------------------------------------------------------------------


def test_edited_original_is_corrupt_and_report_names_the_good_copy(card, dests):
    offload(card, dests)
    rel = next(p for p in archived(dests[0]) if p.endswith(".JPG"))
    target = dests[0] / rel
    target.write_bytes(target.read_bytes()[:-100] + b"edited in an app")
    edited = target.read_bytes()
    result = check(dests)
    rec = next(r for r in result.records if r.path == rel and r.flagged)
    assert rec.status is Status.CORRUPT
    assert rec.detail.endswith(f"good copy at {dests[1]}/{rel}")
    assert target.read_bytes() == edited  # nothing changes without --repair


def test_repair_restores_bytes_and_mtime_through_a_verified_partial(card, dests):
    offload(card, dests)
    names = archived(dests[0])
    edited, deleted = names[2], names[5]
    damage(dests[0] / edited)
    os.utime(dests[0] / edited, ns=(0, 0))
    (dests[0] / deleted).unlink()
    folder = (dests[0] / names[-1]).parent
    for p in list(folder.iterdir()):  # a whole folder gone: the restore recreates it
        (dests[0] / p.relative_to(dests[0])).unlink()
    folder.rmdir()
    gone_folder = [n for n in names if (dests[0] / n).parent == folder]

    result = check(dests, repair=True)
    rows = catalog_rows(dests[0])
    for rel in [edited, deleted, *gone_folder]:
        rec = next(r for r in result.records if r.path == rel and r.copies[0].destination ==
                   str(dests[0]))
        assert rec.status is Status.RECOPIED, rec.detail
        assert rec.detail.startswith(f"repaired from {dests[1]}/{rel}")
        assert (dests[0] / rel).read_bytes() == (dests[1] / rel).read_bytes()
        assert (dests[0] / rel).stat().st_mtime_ns == rows[rel][4]
    assert result.exit_code == 0
    assert result.report["destinations"][0]["files"] == 2 + len(gone_folder)
    assert partials(dests[0]) == []
    history = verify_checks(dests[0])
    assert (edited, "corrupt") in history and (edited, "recopied") in history
    assert check(dests[:1]).exit_code == 0


def test_repair_refuses_when_every_other_copy_is_bad(card, dests):
    offload(card, dests)
    rel = archived(dests[0])[4]
    damage(dests[0] / rel, seed=1)
    damage(dests[1] / rel, seed=2)
    bad = [(d / rel).read_bytes() for d in dests]
    result = check(dests, repair=True)
    recs = [r for r in result.records if r.path == rel]
    assert [str(r.status) for r in recs] == ["corrupt", "corrupt"]
    assert all("no good copy found" in r.detail and "differs from the original too" in r.detail
               for r in recs)
    assert [(d / rel).read_bytes() for d in dests] == bad
    assert result.exit_code == 1


class CorruptingWrites(fsio.FileIO):
    """A disk that garbles what is written: the read-back must catch it."""

    def write(self, fd: int, data) -> None:
        super().write(fd, bytes([data[0] ^ 0xFF]) + bytes(data[1:]))


def test_repair_never_commits_a_copy_that_fails_read_back(card, dests):
    offload(card, dests)
    rel = archived(dests[0])[0]
    damage(dests[0] / rel)
    bad = (dests[0] / rel).read_bytes()
    result = check(dests, repair=True, io=CorruptingWrites())
    rec = next(r for r in result.records if r.path == rel and r.flagged)
    assert rec.status is Status.CORRUPT
    assert "did not match the original when read back" in rec.detail
    assert (dests[0] / rel).read_bytes() == bad
    assert partials(dests[0]) == []


def test_single_archive_says_no_other_copy_is_known(card, dests):
    offload(card, dests[:1])
    rel = archived(dests[0])[6]
    damage(dests[0] / rel)
    flagged = next(r for r in check(dests[:1]).records if r.flagged)
    assert flagged.path == rel and "no other archive is known" in flagged.detail


def test_repair_finds_a_sibling_recorded_in_the_catalog(card, dests):
    offload(card, dests)
    rel = archived(dests[0])[6]
    damage(dests[0] / rel)
    # The offload recorded its sibling destinations, so the other archive need not be given.
    alone = check(dests[:1])
    flagged = next(r for r in alone.records if r.flagged)
    assert f"good copy at {dests[1]}/{rel}" in flagged.detail
    result = check(dests[:1], repair=True)
    rec = next(r for r in result.records if r.path == rel)
    assert rec.status is Status.RECOPIED and f"{dests[1]}/{rel}" in rec.detail
    assert (dests[0] / rel).read_bytes() == (dests[1] / rel).read_bytes()


# --- history, reports, command line ----------------------------------------------------------


def test_mhl_generation_marks_verified_and_failed(card, tmp_path):
    dests = [tmp_path / "A", tmp_path / "B"]
    for d in dests:
        d.mkdir()
    api.offload(str(card), [str(d) for d in dests], decode=False, jobs=1)
    originals = read_history(dests[0])
    rel = sorted(originals)[3]
    damage(dests[0] / rel)
    check(dests, destination_reports=True, json_path=str(tmp_path / "r.json"),
          junit_path=str(tmp_path / "r.xml"))
    for d, failed in ((dests[0], {rel}), (dests[1], set())):
        latest = sorted((d / "ascmhl").glob("*.mhl"))[-1]
        root = ET.parse(latest).getroot()
        ns = {"m": "urn:ASC:MHL:v2.0"}
        assert root.find("m:processinfo/m:process", ns).text == "in-place"
        actions = {h.find("m:path", ns).text: h.find("m:xxh128", ns).get("action")
                   for h in root.iter("{urn:ASC:MHL:v2.0}hash")}
        assert set(actions) == set(originals)
        assert {p for p, a in actions.items() if a == "failed"} == failed
        assert read_history(d) == (originals if d == dests[0] else read_history(dests[1]))
        assert list((d / ".ingest" / "reports").glob("verify-*.html"))
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["summary"]["by_status"]["corrupt"]["files"] == 1
    suite = ET.parse(tmp_path / "r.xml").getroot().find("testsuite")
    assert suite.get("failures") == "1"


def test_a_locked_or_unknown_archive_is_refused(card, dests, tmp_path):
    offload(card, dests[:1])
    with pytest.raises(UsageError, match="no ingest catalog"):
        check([dests[1]])
    with pytest.raises(UsageError, match="does not exist"):
        check([tmp_path / "nowhere"])
    with DestinationLock(str(dests[0]), "ingest offload elsewhere"), \
            pytest.raises(LockedError, match="in use"):
        check(dests[:1])


def test_battery_stop_skips_the_rest_cleanly(card, dests):
    offload(card, dests[:1])
    total = len(archived(dests[0]))
    level = {"n": 0}

    def battery() -> Battery:
        level["n"] += 1
        return Battery(percent=60 if level["n"] <= 4 else 15, plugged=False)

    result = check(dests[:1], stop_on_battery=20, battery=battery)
    by = statuses(result)
    assert list(by.values()).count("verified") == 4
    assert list(by.values()).count("skipped") == total - 4
    assert "on battery at 15%" in result.report["verify"]["stopped"]
    assert result.exit_code == 0
    plugged = check(dests[:1], stop_on_battery=20,
                    battery=lambda: Battery(percent=5, plugged=True))
    desktop = check(dests[:1], stop_on_battery=20, battery=lambda: None)
    assert set(statuses(plugged).values()) == set(statuses(desktop).values()) == {"verified"}


def test_low_priority_lowers_cpu_and_io_priority():
    # In a child process: niceness cannot be raised back, and the test runner must keep it.
    code = ("import os, psutil; from ingest.power import lower_priority; a = lower_priority(); "
            "print(a, os.nice(0), psutil.Process().ionice().ioclass == psutil.IOPRIO_CLASS_IDLE)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    assert out[-2] == "19"
    if sys.platform.startswith("linux"):
        assert out[-1] == "True"


def test_cli_exit_codes_and_one_line_errors(card, dests, tmp_path):
    offload(card, dests)
    runner = CliRunner()
    ok = runner.invoke(verify_command, [*map(str, dests), "--no-decode", "--json", "-"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["command"] == "verify"
    rel = archived(dests[0])[0]
    damage(dests[0] / rel)
    bad = runner.invoke(verify_command, [str(dests[0]), str(dests[1]), "--no-decode"])
    assert bad.exit_code == 1
    assert "corrupt" in bad.stdout and "--repair" in bad.stdout  # the next command to run
    for args in ([str(tmp_path / "nope")], [str(card)], [str(dests[0]), "--max-bytes", "lots"],
                 [str(dests[0]), "--subset", "4/3"], [str(dests[0]), "--max-duration", "soon"]):
        r = runner.invoke(verify_command, [*args, "--no-decode"])
        assert r.exit_code == 2, (args, r.output)
        assert isinstance(r.exception, SystemExit) and "Traceback" not in r.output
        assert 1 <= len([ln for ln in r.output.splitlines() if ln.strip()]) <= 3, r.output


def test_verify_without_decode_names_no_decoder(card, tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    api.offload(str(card), [str(dest)], decode=False, jobs=1)
    report = api.verify([str(dest)], decode=False, jobs=1).report
    assert report["versions"] == {"ingest": ingest.__version__,
                                  "decoders": "not run (--no-decode)"}
