"""`ingest status`: the "safe to format this card?" verdict, through the library and the CLI.

Most tests simulate devices through `device_of`, because a test machine has one or two file
systems: the card gets a device of its own (as a real card has), and destinations get the
devices each case needs. Where /dev/shm is a separate tmpfs, the distinct-device case uses it.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import CardReadErrors, snapshot
from ingest import api
from ingest.catalog import catalog_path
from ingest.model import ADVICE
from ingest.preflight import UsageError
from ingest.status import card_status

DAMAGED = "DCIM/101NIKON/DSC_0013.JPG"
CARD_DEV = os.makedev(4001, 1)  # ids no mount table holds: simulated disks
DISK_1, DISK_2, DISK_3 = os.makedev(4002, 1), os.makedev(4003, 1), os.makedev(4004, 1)
PLACEHOLDER = "/path/on/another/disk"


def offload(card, dests, **kw):
    kw.setdefault("decode", False)
    kw.setdefault("jobs", 1)
    return api.offload(str(card), [str(d) for d in dests], **kw)


def devices(card: Path, disks: dict[Path, int] | None = None):
    """device_of: the card on its own device, `disks` as given, everything else as it is."""
    roots = {Path(os.path.realpath(card)): CARD_DEV}
    roots.update({Path(os.path.realpath(p)): dev for p, dev in (disks or {}).items()})

    def device_of(path: str) -> int:
        p = Path(path)
        for root, dev in roots.items():
            if p == root or root in p.parents:
                os.stat(path)  # a missing file must still fail as it would for real
                return dev
        return os.stat(path).st_dev

    return device_of


def status(card, dests, **kw):
    return card_status(str(card), [str(d) for d in dests], **kw)


def by_path(result) -> dict[str, dict]:
    return {f["path"]: f for f in result.report["files"]}


def set_row(dest: Path, card_rel: str, status: str, detail: str | None = None) -> None:
    db = sqlite3.connect(catalog_path(str(dest)))
    with db:
        n = db.execute("UPDATE files SET status=?, detail=? WHERE source_path=?",
                       (status, detail, card_rel)).rowcount
    db.close()
    assert n == 1, card_rel


def archive_state(root: Path) -> dict:
    """What status must not change: every file, SQLite's own -wal/-shm companions aside."""
    return {k: v for k, v in snapshot(root).items() if not k.endswith(("-wal", "-shm"))}


@dataclass
class OtherDisk:
    path: Path
    real: bool  # a real second file system, not a simulated device id

    def device_of(self, card: Path):
        return devices(card) if self.real else devices(card, {self.path: DISK_2})


@pytest.fixture()
def other_disk(tmp_path):
    """A destination on another device: /dev/shm where it is a separate tmpfs."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and \
            os.stat(shm).st_dev != os.stat(tmp_path).st_dev:
        path = shm / f"ingest-status-test-{secrets.token_hex(4)}"
        path.mkdir()
        try:
            yield OtherDisk(path, real=True)
        finally:
            shutil.rmtree(path, ignore_errors=True)
    else:
        path = tmp_path / "other-disk"
        path.mkdir()
        yield OtherDisk(path, real=False)


# the device matrix ------------------------------------------------------------------------
def test_one_copy_is_not_safe_and_status_changes_nothing(card, dests, manifest):
    offload(card, dests[:1])
    before_card, before_dest = snapshot(card), archive_state(dests[0])
    result = status(card, dests[:1], device_of=devices(card))
    assert result.exit_code == 1
    assert snapshot(card) == before_card
    assert archive_state(dests[0]) == before_dest
    files = by_path(result)
    assert sorted(files) == sorted(manifest.files)
    for f in files.values():
        assert f["status"] == "not_safe"
        assert f["detail"] == "1 verified copy, needs 2"
        assert len(f["copies"]) == 1 and f["copies"][0]["counts"] is True
    s = result.report["summary"]
    assert (s["files"], s["safe"], s["not_safe"]) == (27, 0, 27)
    assert s["safe_to_format"] is False
    assert s["verdict"] == "NOT safe to format: 27 files are held back (27 too few copies)"
    # Offloading to the same single disk cannot make a second copy: ask for another disk.
    assert result.report["next"]["command"] == \
        ["ingest", "offload", str(card), str(dests[0]), PLACEHOLDER]


def test_two_copies_on_one_device_count_once(card, dests):
    offload(card, dests)
    result = status(card, dests, device_of=devices(card))  # both in tmp_path: one disk
    assert result.exit_code == 1
    dev = os.stat(dests[0]).st_dev
    label = result.report["destinations"][0]["device"]
    assert [d["device_id"] for d in result.report["destinations"]] == [dev, dev]
    for f in result.report["files"]:
        assert f["detail"] == f"2 copies but both on the same device ({label})"
        assert [c["device_id"] for c in f["copies"]] == [dev, dev]
    assert result.report["next"]["command"][-1] == PLACEHOLDER


def test_two_copies_on_distinct_devices_are_safe(card, dests, other_disk, manifest):
    offload(card, [dests[0], other_disk.path])
    result = status(card, [dests[0], other_disk.path], device_of=other_disk.device_of(card))
    assert result.exit_code == 0, result.report["summary"]
    n = len(manifest.files)
    assert result.report["summary"]["verdict"] == \
        f"Safe to format: all {n} files have 2 verified copies on 2 devices"
    for f in result.report["files"]:
        assert f["status"] == "safe" and f["detail"] == ""
        assert len({c["device_id"] for c in f["copies"] if c["counts"]}) == 2
    assert result.report["next"]["command"] is None
    if other_disk.real:
        assert result.report["destinations"][1]["device_id"] == os.stat("/dev/shm").st_dev


def test_three_copies_on_two_devices_fall_short_of_three(card, dests, tmp_path):
    third = tmp_path / "dest-C"
    third.mkdir()
    offload(card, [*dests, third])
    dev = devices(card, {dests[0]: DISK_1, dests[1]: DISK_2, third: DISK_2})
    result = status(card, [*dests, third], min_copies=3, device_of=dev)
    f = by_path(result)["DCIM/100NIKON/DSC_0001.JPG"]
    assert f["detail"].startswith("3 copies but on only 2 devices (")
    assert f["detail"].endswith("needs 3")
    assert result.report["next"]["command"][-1] == PLACEHOLDER
    assert status(card, [*dests, third], min_copies=2, device_of=dev).exit_code == 0


def test_a_copy_on_the_cards_own_device_does_not_count(card, dests):
    offload(card, dests)
    dev = devices(card, {dests[0]: CARD_DEV, dests[1]: DISK_2})
    result = status(card, dests, device_of=dev)
    assert result.exit_code == 1
    assert [d["on_card_device"] for d in result.report["destinations"]] == [True, False]
    f = by_path(result)["DCIM/100NIKON/DSC_0001.JPG"]
    assert f["detail"] == ("1 verified copy, needs 2 (1 more on the card's own device, which "
                           "formatting erases)")
    assert [(c["verified"], c["counts"]) for c in f["copies"]] == [(True, False), (True, True)]


def test_real_devices_when_the_card_shares_the_archive_disk(card, dests):
    """The default device lookup: card and both destinations sit on one real file system."""
    offload(card, dests)
    result = status(card, dests)
    assert result.exit_code == 1
    assert all(d["on_card_device"] for d in result.report["destinations"])
    assert result.report["files"][0]["detail"].startswith("0 verified copies, needs 2")


def test_min_copies_one(card, dests, manifest):
    offload(card, dests[:1])
    result = status(card, dests[:1], min_copies=1, device_of=devices(card))
    assert result.exit_code == 0
    assert result.report["summary"]["verdict"] == \
        f"Safe to format: all {len(manifest.files)} files have 1 verified copy on 1 device"


# flagged files -------------------------------------------------------------------------------
@pytest.mark.parametrize("flag, on_both, fixable", [
    ("damaged_on_card", True, False),
    ("unverified", True, False),
    ("needs_recopy", False, True),
])
def test_a_flagged_file_holds_the_card_back(card, dests, flag, on_both, fixable):
    offload(card, dests)
    for d in dests if on_both else dests[:1]:
        set_row(d, DAMAGED, flag, "strict decode: Corrupt JPEG data")
    dev = devices(card, {dests[0]: DISK_1, dests[1]: DISK_2})
    result = status(card, dests, device_of=dev)
    assert result.exit_code == 1
    held = [f for f in result.report["files"] if f["status"] == "not_safe"]
    assert [f["path"] for f in held] == [DAMAGED]
    assert held[0]["reason"] == flag
    if flag == "damaged_on_card":
        assert held[0]["detail"] == "damaged on the card: strict decode: Corrupt JPEG data"
    else:
        assert held[0]["detail"].startswith(f"{flag.replace('_', ' ')} at {dests[0]}: ")
    s = result.report["summary"]
    assert (s["safe"], s["not_safe"]) == (26, 1)
    assert s["verdict"] == f"NOT safe to format: 1 file is held back (1 {flag.replace('_', ' ')})"
    nxt = result.report["next"]
    assert any(ADVICE[flag] in line for line in nxt["advice"])
    # Copying again cannot repair a file the card itself holds damaged.
    assert (nxt["command"] == ["ingest", "offload", str(card), *map(str, dests)]) == fixable
    assert (nxt["command"] is None) == (not fixable)


@pytest.mark.skipif(importlib.util.find_spec("ingest.decode.pool") is None,
                    reason="the decode worker (ingest.decode.pool) is not in this checkout yet; "
                           "test_a_flagged_file_holds_the_card_back covers the catalog side")
def test_damage_found_by_decode_holds_the_card_back(card, tmp_path):
    small = tmp_path / "small-card"
    for rel in (DAMAGED, "DCIM/101NIKON/DSC_0012.JPG"):
        (small / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(card / rel, small / rel)
    dests = [tmp_path / "A", tmp_path / "B"]
    for d in dests:
        d.mkdir()
    first = offload(small, dests, decode=True, previews=False)
    assert {r.path: str(r.status) for r in first.records}[DAMAGED] == "damaged_on_card"
    result = status(small, dests, device_of=devices(small, {dests[0]: DISK_1, dests[1]: DISK_2}))
    files = by_path(result)
    assert files[DAMAGED]["status"] == "not_safe"
    assert files[DAMAGED]["detail"].startswith("damaged on the card: ")
    assert files["DCIM/101NIKON/DSC_0012.JPG"]["status"] == "safe"


# matching by content ----------------------------------------------------------------------
def test_renamed_and_refoldered_copies_still_count(card, dests, tmp_path):
    # Another card held the same frame under another name; it went to B first.
    other = tmp_path / "other-card"
    other.mkdir()
    shutil.copy2(card / "DCIM/100NIKON/DSC_0001.JPG", other / "renamed.JPG")
    offload(other, dests[1:], layout="mirror")
    offload(card, dests)
    # And on the card the frame was since moved and renamed.
    moved = card / "DCIM/900MOVED/IMG_9999.JPG"
    moved.parent.mkdir()
    os.rename(card / "DCIM/100NIKON/DSC_0001.JPG", moved)
    result = status(card, dests, device_of=devices(card, {dests[0]: DISK_1, dests[1]: DISK_2}))
    assert result.exit_code == 0, result.report["summary"]
    f = by_path(result)["DCIM/900MOVED/IMG_9999.JPG"]
    paths = [(c["destination"], c["path"]) for c in f["copies"]]
    assert paths[1] == (str(dests[1]), "renamed.JPG")
    assert paths[0][1].startswith("2024/2024-05-11/DSC_0001")


def test_missing_truncated_and_unfinished_copies_do_not_count(card, dests):
    result = offload(card, dests)
    where = {r.path: [c.path for c in r.copies] for r in result.records}
    gone, short, unfinished = ("DCIM/100NIKON/DSC_0001.JPG", "DCIM/100NIKON/DSC_0002.DNG",
                               "DCIM/100CANON/DSC_0001.JPG")
    os.unlink(dests[0] / where[gone][0])
    os.truncate(dests[1] / where[short][1], 100)
    set_row(dests[0], unfinished, "copied")  # an offload killed before its final checks
    result = status(card, dests, device_of=devices(card, {dests[0]: DISK_1, dests[1]: DISK_2}))
    files = by_path(result)
    assert files[gone]["detail"] == (f"1 verified copy, needs 2; copy {dests[0]}/{where[gone][0]}"
                                     " listed in the catalog but missing from the destination")
    assert "size on disk 100 differs from the catalog's" in files[short]["detail"]
    assert "not proven yet (catalog status copied)" in files[unfinished]["detail"]
    assert {p for p, f in files.items() if f["status"] == "not_safe"} == {gone, short, unfinished}
    assert [c["verified"] for c in files[short]["copies"]] == [True, False]
    assert result.report["next"]["command"] == ["ingest", "offload", str(card), *map(str, dests)]


def test_a_file_added_after_the_offload_is_not_copied(card, dests):
    offload(card, dests)
    (card / "DCIM/100NIKON/DSC_0100.JPG").write_bytes(b"\xff\xd8 a frame shot later \xff\xd9")
    result = status(card, dests, device_of=devices(card, {dests[0]: DISK_1, dests[1]: DISK_2}))
    held = [f for f in result.report["files"] if f["status"] == "not_safe"]
    assert [(f["path"], f["detail"], f["reason"]) for f in held] == \
        [("DCIM/100NIKON/DSC_0100.JPG", "not copied", "not_copied")]
    assert result.report["next"]["command"][:2] == ["ingest", "offload"]


# the card itself ----------------------------------------------------------------------------
def test_unreadable_files_and_unlisted_entries_hold_the_card_back(card, dests):
    offload(card, dests)
    os.mkfifo(card / "DCIM/100NIKON/STRANGE.FIFO")
    os.symlink("DSC_0001.JPG", card / "DCIM/100NIKON/LINK.JPG")  # its target is checked
    result = status(card, dests, io=CardReadErrors("DSC_0004.JPG"),
                    device_of=devices(card, {dests[0]: DISK_1, dests[1]: DISK_2}))
    assert result.exit_code == 1
    files = by_path(result)
    bad = [p for p, f in files.items() if f["status"] == "not_safe"]
    assert sorted(bad) == ["DCIM/100CANON/DSC_0004.JPG", "DCIM/100NIKON/DSC_0004.JPG"]
    assert files[bad[0]]["detail"] == "read error on the card: Input/output error"
    assert files[bad[0]]["xxh3_128"] is None
    holds = {s["path"]: s["holds_back"] for s in result.report["skipped"]}
    assert holds == {"DCIM/100NIKON/STRANGE.FIFO": True, "DCIM/100NIKON/LINK.JPG": False}
    s = result.report["summary"]
    assert (s["not_safe"], s["skipped_held_back"]) == (2, 1)
    assert s["verdict"] == ("NOT safe to format: 3 files are held back (2 unreadable, 1 card "
                            "entry not copied)")


def test_an_empty_card_is_safe(tmp_path, dests):
    card = tmp_path / "empty-card"
    card.mkdir()
    offload(card, dests)
    result = status(card, dests)
    assert result.exit_code == 0
    assert result.report["summary"]["verdict"] == "Safe to format: the card holds no files to copy"


# errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize("case, message", [
    ("missing-source", "does not exist"),
    ("missing-dest", "does not exist or is not a folder"),
    ("no-catalog", "has no ingest catalog"),
    ("twice", "is given twice"),
    ("no-dest", "give at least one destination"),
    ("min-copies", "at least 1"),
])
def test_usage_errors(card, dests, tmp_path, case, message):
    offload(card, dests[:1])
    args, kw = {
        "missing-source": ((tmp_path / "no-card", dests[:1]), {}),
        "missing-dest": ((card, [dests[0], tmp_path / "nope"]), {}),
        "no-catalog": ((card, dests), {}),
        "twice": ((card, [dests[0], dests[0]]), {}),
        "no-dest": ((card, []), {}),
        "min-copies": ((card, dests[:1]), {"min_copies": 0}),
    }[case]
    with pytest.raises(UsageError, match=message):
        status(*args, **kw)
    assert not (dests[1] / ".ingest").exists()  # status never creates a catalog


# terminal ---------------------------------------------------------------------------------
def render(report: dict) -> str:
    from rich.console import Console

    from ingest.report.status_terminal import render_status

    buf = io.StringIO()
    render_status(Console(file=buf, width=100, color_system=None, highlight=False), report)
    return buf.getvalue()


def test_terminal_fits_one_screen_and_names_the_next_command(card, dests):
    offload(card, dests[:1])
    (card / "DCIM/100NIKON/DSC_0100.JPG").write_bytes(b"later")
    text = render(status(card, dests[:1], device_of=devices(card)).report)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert lines[0] == "NOT safe to format: 28 files are held back (27 too few copies, 1 not copied)"
    assert "  27 files: 1 verified copy, needs 2" in lines
    assert "  DCIM/100NIKON/DSC_0100.JPG: not copied" in lines
    assert f"Next: ingest offload {card} {dests[0]} {PLACEHOLDER}" in lines
    assert "not re-read here: `ingest verify DEST` re-hashes the archive" in " ".join(text.split())
    assert len(lines) <= 20


def test_terminal_safe_verdict_comes_first(card, dests):
    offload(card, dests)
    result = status(card, dests, device_of=devices(card, {dests[0]: DISK_1, dests[1]: DISK_2}))
    lines = [ln for ln in render(result.report).splitlines() if ln.strip()]
    assert lines[0] == "Safe to format: all 27 files have 2 verified copies on 2 devices"
    assert not any(ln.startswith("Next:") or "Held back" in ln for ln in lines)


# command line -----------------------------------------------------------------------------
def _registered() -> bool:
    from ingest.cli import cli

    return "status" in cli.commands


def ingest_status(*args, env=None):
    """`ingest status …` as a user runs it (the command object directly until it is
    registered in ingest.cli)."""
    if _registered():
        cmd = [sys.executable, "-m", "ingest", "status"]
    else:
        cmd = [sys.executable, "-c",
               "from ingest.cli.status import status; status(prog_name='ingest status')"]
    return subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def test_cli_not_safe_when_piped(card, dests):
    offload(card, dests)
    env = {k: "" for k in ("FORCE_COLOR",)}
    r = ingest_status(card, *dests, env=env)
    assert r.returncode == 1, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
    assert lines[0] == "NOT safe to format: 27 files are held back (27 too few copies)"
    assert any(ln.startswith("Next: ingest offload ") for ln in lines)
    assert "\x1b[" not in r.stdout
    assert r.stderr == ""


def test_cli_safe_on_a_real_second_device(card, other_disk):
    if not other_disk.real:
        pytest.skip("no second file system (/dev/shm tmpfs) here; the library tests simulate one")
    offload(card, [other_disk.path])
    r = ingest_status(card, other_disk.path, "--min-copies", "1")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "Safe to format: all 27 files have 1 verified copy on 1 device" in r.stdout


def test_cli_json_to_stdout(card, dests):
    offload(card, dests[:1])
    r = ingest_status(card, dests[0], "--json", "-")
    assert r.returncode == 1
    report = json.loads(r.stdout)  # nothing but the JSON on stdout
    assert report["schema"] == "ingest-report/1" and report["command"] == "status"
    assert set(report["summary"]) >= {"files", "safe", "not_safe", "safe_to_format", "verdict"}
    f = report["files"][0]
    assert set(f) >= {"path", "size", "xxh3_128", "status", "copies", "detail"}
    assert set(f["copies"][0]) >= {"destination", "path", "device", "verified"}
    assert f["status"] == "not_safe"


def test_cli_json_file_and_colour(card, dests, tmp_path):
    offload(card, dests[:1])
    out = tmp_path / "status.json"
    r = ingest_status(card, dests[0], "--json", out, env={"FORCE_COLOR": "1", "NO_COLOR": ""})
    assert r.returncode == 1
    assert json.loads(out.read_text())["summary"]["safe_to_format"] is False
    assert "\x1b[1;31mNOT safe to format" in r.stdout
    r = ingest_status(card, dests[0], env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
    assert "NOT safe to format" in r.stdout and "31m" not in r.stdout


@pytest.mark.parametrize("case", ["missing-source", "missing-dest", "no-catalog", "no-dest",
                                  "min-copies"])
def test_cli_usage_errors_are_one_line_and_exit_2(card, dests, tmp_path, case):
    args = {
        "missing-source": [tmp_path / "no-card", dests[0]],
        "missing-dest": [card, tmp_path / "nope"],
        "no-catalog": [card, dests[0]],
        "no-dest": [card],
        "min-copies": [card, dests[0], "--min-copies", "0"],
    }[case]
    r = ingest_status(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert 1 <= len([ln for ln in r.stderr.splitlines() if ln.strip()]) <= 3
    if case == "no-catalog":
        assert r.stderr.strip() == (f"ingest: destination {dests[0]} has no ingest catalog "
                                    "(.ingest/catalog.sqlite): nothing was offloaded there yet")


def test_cli_registration():
    if not _registered():
        pytest.skip("`cli.add_command(status)` is not in ingest/cli.py yet")
    r = subprocess.run([sys.executable, "-m", "ingest", "status", "--help"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--min-copies" in r.stdout
