"""The verdicts a photographer acts on (`verified`, `duplicate`, "safe to format") never lie, and
every output tells the same story: offload's terminal, JSON, HTML and JUnit, `status`, `verify`.

Destinations on separate devices are real tmpfs mounts (the `disks` fixture); "two folders on
one disk" are real folders beside the card.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from concurrent.futures import Executor, Future
from pathlib import Path

import pytest
from test_source_verify import FlipOnOpens

from ingest import api
from ingest.catalog import Catalog, catalog_path
from ingest.config import OffloadConfig
from ingest.copier import CopyJob, Destination
from ingest.discover import discover
from ingest.model import Kind, Status
from ingest.preflight import UsageError

DAMAGED = "DCIM/101NIKON/DSC_0013.JPG"
GOOD = "DCIM/100CANON/DSC_0001.JPG"


def ingest(*args):
    return subprocess.run([sys.executable, "-m", "ingest", *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def offload(card, dests, **kw):
    kw.setdefault("decode", False)
    kw.setdefault("jobs", 1)
    return api.offload(str(card), [str(d) for d in dests], **kw)


def status(card, dests):
    return api.status(str(card), [str(d) for d in dests])


def verify(archives, **kw):
    kw.setdefault("decode", False)
    kw.setdefault("jobs", 1)
    return api.verify([str(a) for a in archives], **kw)


def copy_of(result, card_rel: str, dest: Path) -> Path:
    rec = next(r for r in result.records if r.path == card_rel)
    return dest / next(c.path for c in rec.copies if c.destination == str(dest))


def rot(path: Path) -> bytes:
    """Flip one byte in the middle, keeping size and mtime: what bit rot looks like."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    return bytes(data)


def acceptances(dest: Path) -> list[tuple]:
    db = sqlite3.connect(catalog_path(str(dest)))
    try:
        return db.execute("SELECT card_path, reason, undone_at FROM acceptances").fetchall()
    finally:
        db.close()


# 1. one rule for "safe", whatever the output --------------------------------------------
def _every_output(card, dests, tmp_path) -> dict:
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    r = ingest("offload", card, *dests, "--no-decode", "--json", out / "r.json",
               "--html", out / "r.html", "--junit", out / "r.xml")
    s = ingest("status", card, *dests, "--json", out / "s.json")
    return {"offload": r, "status": s, "json": json.loads((out / "r.json").read_text()),
            "status_json": json.loads((out / "s.json").read_text()),
            "html": (out / "r.html").read_text(), "junit": (out / "r.xml").read_text()}


def test_two_folders_on_one_disk_are_never_safe_in_any_output(card, tmp_path):
    dests = [tmp_path / "A", tmp_path / "B"]  # beside the card: the card's own disk
    for d in dests:
        d.mkdir()
    o = _every_output(card, dests, tmp_path)
    assert o["offload"].returncode == 0  # every file is verified: the exit code says so
    assert o["json"]["summary"]["safe_to_format"] is False
    assert o["json"]["summary"]["verdict"].startswith("NOT safe to format")
    assert o["json"]["summary"]["verdict"] == o["status_json"]["summary"]["verdict"]
    assert o["json"]["summary"]["not_safe"] == o["status_json"]["summary"]["not_safe"] == 27
    assert all(d["on_card_device"] for d in o["json"]["destinations"])
    assert o["json"]["warnings"], "the offload must say the destinations cannot count"
    # Said before the first copy (first in the output), and again at the end.
    stdout = o["offload"].stdout
    assert stdout.lstrip().startswith("Warning:")
    assert stdout.count("on the card's own device") >= 4
    assert "NOT safe to format" in stdout and "Safe to format" not in stdout
    assert "NOT safe to format" in o["html"] and 'class="verdict ok"' not in o["html"]
    assert 'name="safe_to_format" value="false"' in o["junit"]
    assert o["status"].returncode == 1 and "NOT safe to format" in o["status"].stdout


def test_two_folders_on_one_other_disk_count_once(card, disks, tmp_path):
    dests = [disks[0] / "A", disks[0] / "B"]  # off the card, but one device
    for d in dests:
        d.mkdir()
    o = _every_output(card, dests, tmp_path)
    assert o["json"]["summary"]["safe_to_format"] is False
    assert not any(d["on_card_device"] for d in o["json"]["destinations"])
    assert any("same device" in w for w in o["json"]["warnings"])
    assert "both on the same device" in o["status_json"]["files"][0]["detail"]
    assert o["json"]["summary"]["verdict"] == o["status_json"]["summary"]["verdict"]
    assert o["status"].returncode == 1


def test_two_separate_disks_are_safe_in_every_output(card, disks, tmp_path):
    o = _every_output(card, disks, tmp_path)
    line = "Safe to format: all 27 files have 2 verified copies on 2 devices"
    assert o["json"]["summary"] == {**o["json"]["summary"], "safe_to_format": True,
                                    "verdict": line}
    assert o["json"]["warnings"] == []
    assert line in o["offload"].stdout and "Warning" not in o["offload"].stdout
    assert f'class="verdict ok">{line}' in o["html"]
    assert o["status_json"]["summary"]["verdict"] == line and o["status"].returncode == 0


def test_the_warning_comes_before_the_first_copy(card, tmp_path):
    dests = [tmp_path / "A", tmp_path / "B"]
    for d in dests:
        d.mkdir()
    events = []
    offload(card, dests, progress=lambda event, **info: events.append(event))
    assert "warning" in events
    assert events.index("warning") < events.index("file_start")


# 2. a copy verify found bad no longer counts ----------------------------------------------
def test_status_after_verify_found_both_copies_corrupt(card, disks):
    result = offload(card, disks)
    assert status(card, disks).exit_code == 0
    copies = [copy_of(result, GOOD, d) for d in disks]
    for c in copies:
        rot(c)
    checked = verify(disks)
    assert checked.exit_code == 1
    assert sorted(str(r.status) for r in checked.records if r.status is Status.CORRUPT) == \
        ["corrupt", "corrupt"]
    after = status(card, disks)
    assert after.exit_code == 1
    assert after.report["summary"]["safe_to_format"] is False
    held = [f for f in after.report["files"] if f["status"] == "not_safe"]
    assert [f["path"] for f in held] == [GOOD]
    assert held[0]["devices"] == 0
    for c in copies:  # each corrupt copy is named, with what found it
        assert any(str(c) in reason and "ingest verify found it corrupt" in reason
                   for reason in held[0]["reasons"]), held[0]["reasons"]
    assert after.report["next"]["command"][:2] == ["ingest", "offload"]


# 3. duplicates are proven by a re-read ----------------------------------------------------
def test_reoffload_over_a_rotted_copy_writes_a_good_copy(card, disks):
    first = offload(card, disks)
    rotted_path = copy_of(first, GOOD, disks[0])
    rotted = rot(rotted_path)
    other = copy_of(first, GOOD, disks[1])
    other_inode = other.stat().st_ino

    again = offload(card, disks)
    rec = next(r for r in again.records if r.path == GOOD)
    assert rec.status is Status.RECOPIED, (rec.status, rec.detail)
    assert "the archive held a damaged copy" in rec.detail and "corrupt" in rec.detail
    assert rotted_path.read_bytes() == (card / GOOD).read_bytes()
    assert other.stat().st_ino == other_inode  # the intact copy is kept, not rewritten
    kept = disks[0] / rec.copies[0].quarantined
    assert kept.read_bytes() == rotted  # the damaged bytes are kept, not destroyed
    assert {str(r.status) for r in again.records if r.path != GOOD} == {"duplicate"}
    db = sqlite3.connect(catalog_path(str(disks[0])))
    findings = db.execute("SELECT result, detail FROM checks WHERE result='corrupt'").fetchall()
    db.close()
    assert len(findings) == 1 and "re-read by ingest offload" in findings[0][1]
    assert again.report["summary"]["safe_to_format"] is True
    assert status(card, disks).exit_code == 0
    assert verify(disks).exit_code == 0


def test_a_new_card_meeting_a_rotted_twin_is_copied_and_repair_uses_the_copy(card, disks,
                                                                             tmp_path):
    first = offload(card, disks)
    twin = copy_of(first, GOOD, disks[0])
    original = twin.read_bytes()
    rotted = rot(twin)
    card2 = tmp_path / "card2"
    (card2 / "DCIM" / "200CANON").mkdir(parents=True)
    (card2 / "DCIM" / "200CANON" / "IMG_9999.JPG").write_bytes(original)

    second = offload(card2, disks)
    rec = second.records[0]
    assert rec.status is Status.RECOPIED, rec.detail  # never `duplicate` of a rotted copy
    fresh = disks[0] / rec.copies[0].path
    assert fresh != twin and fresh.read_bytes() == original
    assert rec.copies[1].action == "existing"  # the intact twin on the other disk serves
    # With the other disk away, repair finds the fresh copy inside the same archive.
    db = sqlite3.connect(catalog_path(str(disks[0])))
    with db:
        db.execute("DELETE FROM peers")
    db.close()

    repaired = verify([disks[0]], repair=True)
    fixed = next(r for r in repaired.records if r.path == twin.relative_to(disks[0]).as_posix())
    assert fixed.status is Status.RECOPIED and str(fresh) in fixed.detail
    assert twin.read_bytes() == original
    assert (disks[0] / fixed.copies[0].quarantined).read_bytes() == rotted


def test_a_duplicate_that_verify_found_damaged_is_not_safe(card, disks):
    """Proven the same bytes as the card, but known not to decode: the re-run says so, and its
    verdict is the one `status` gives."""
    offload(card, disks)  # no decode: the damaged JPEG passes as verified
    assert verify(disks, decode=True).exit_code == 1
    again = offload(card, disks)
    rec = next(r for r in again.records if r.path == DAMAGED)
    assert rec.status is Status.DAMAGED and "does not decode" in rec.detail
    assert again.exit_code == 1
    assert again.report["summary"]["safe_to_format"] is False
    assert again.report["summary"]["verdict"] == status(card, disks).report["summary"]["verdict"]


def test_a_copy_verify_found_corrupt_is_replaced_and_its_bytes_kept(card, disks):
    first = offload(card, disks)
    rotted = rot(copy_of(first, GOOD, disks[0]))
    assert verify([disks[0]]).exit_code == 1  # recorded as corrupt in the catalog
    again = offload(card, disks)
    rec = next(r for r in again.records if r.path == GOOD)
    assert rec.status is Status.RECOPIED and "damaged copy" in rec.detail
    kept = [c for c in rec.copies if c.quarantined]
    assert [c.destination for c in kept] == [str(disks[0])]
    assert (disks[0] / kept[0].quarantined).read_bytes() == rotted
    assert again.report["files"][[r.path for r in again.records].index(GOOD)]["copies"][0][
        "quarantined"] == kept[0].quarantined
    assert status(card, disks).exit_code == 0


class Deferred(Executor):
    """A real executor that runs what it was given only when told: the test decides when the
    verifier threads run, so the twin can change between the lookup and the re-read."""

    def __init__(self):
        self.tasks = []

    def submit(self, fn, /, *args, **kwargs):
        future = Future()
        self.tasks.append((future, fn, args, kwargs))
        return future

    def run(self):
        for future, fn, args, kwargs in self.tasks:
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as e:  # noqa: BLE001 - handed to the future, as a pool does
                future.set_exception(e)
        self.tasks = []


@pytest.mark.parametrize("change", ["vanishes", "shrinks"])
def test_a_twin_that_changes_mid_run_is_a_per_file_outcome(card, tmp_path, change):
    dest = tmp_path / "A"
    dest.mkdir()
    first = offload(card, [dest])
    twin = copy_of(first, GOOD, dest)
    card2 = tmp_path / "card2"
    card2.mkdir()
    (card2 / "NEW.JPG").write_bytes((card / GOOD).read_bytes())
    src = discover(str(card2)).files[0]
    cfg = OffloadConfig(source=str(card2), destinations=[str(dest)])
    with Catalog(str(dest)) as cat:
        d = Destination(str(dest), cat, token="t1", device=os.stat(dest).st_dev)
        verifier = Deferred()
        job = CopyJob(src, [d], cfg, "s1", None, place=lambda info: "new/NEW.JPG",
                      verifier=verifier)
        job.start()  # the twin is found in the catalog and on disk here...
        if change == "vanishes":
            twin.unlink()  # ...and is gone before its re-read
        else:
            os.truncate(twin, twin.stat().st_size // 2)
        verifier.run()
        out = job.finish()
        d.flush()
        row = cat.by_path(twin.relative_to(dest).as_posix())
    assert out.placed[str(dest)].action == "copied" and not out.failed
    assert (dest / "new/NEW.JPG").read_bytes() == (card / GOOD).read_bytes()
    finding = "missing" if change == "vanishes" else "corrupt"
    assert [(root, result) for root, _, result, _ in out.bad_twins] == [(str(dest), finding)]
    assert row.last_result == finding


# 4. a known loss can be accepted, and never hides a later change -------------------------
def test_an_accepted_loss_turns_status_and_verify_green_with_the_loss_listed(card, disks):
    first = offload(card, disks, decode=True, previews=False)
    assert first.exit_code == 1
    assert status(card, disks).exit_code == 1

    with pytest.raises(UsageError, match="can still be copied|is not lost"):
        api.accept(str(card), [str(d) for d in disks], [GOOD, DAMAGED], "oops")
    assert acceptances(disks[0]) == []  # all or nothing

    api.accept(str(card), [str(d) for d in disks], [DAMAGED], "the bride blinked anyway")
    now = status(card, disks)
    assert now.exit_code == 0
    assert now.report["summary"]["accepted"] == 1
    lost = next(f for f in now.report["files"] if f["path"] == DAMAGED)
    assert lost["status"] == "accepted"
    assert lost["acceptance"]["reason"] == "the bride blinked anyway"
    assert "the bride blinked anyway" in lost["detail"]

    checked = verify(disks, decode=True)
    assert checked.exit_code == 0
    accepted = [r for r in checked.records if r.status is Status.ACCEPTED]
    assert len(accepted) == 2  # one per archive, listed, not hidden
    assert all("the bride blinked anyway" in r.detail for r in accepted)
    assert checked.report["summary"]["by_status"]["accepted"]["files"] == 2

    again = offload(card, disks, decode=True, previews=False)
    assert again.exit_code == 0
    assert next(r for r in again.records if r.path == DAMAGED).status is Status.ACCEPTED

    # The archived copy changes: new damage, not covered by the acceptance.
    rot(copy_of(first, DAMAGED, disks[0]))
    assert verify([disks[0]], decode=True).exit_code == 1

    # The card file changes (same name, size and time): new damage too.
    card_bytes = (card / DAMAGED).read_bytes()
    rot(card / DAMAGED)
    changed = status(card, disks)
    assert changed.exit_code == 1
    assert next(f for f in changed.report["files"]
                if f["path"] == DAMAGED)["reason"] == "changed_since_accepted"
    (card / DAMAGED).write_bytes(card_bytes)
    os.utime(card / DAMAGED, ns=(first.records[0].mtime_ns,) * 2)  # any time: restore below

    # Undo takes it back.
    st = next(r for r in first.records if r.path == DAMAGED)
    os.utime(card / DAMAGED, ns=(st.mtime_ns, st.mtime_ns))
    api.accept(str(card), [str(d) for d in disks], [DAMAGED], None, undo=True)
    assert status(card, disks).exit_code == 1
    assert all(undone for _, _, undone in acceptances(disks[0]))


def test_accept_from_the_command_line(card, tmp_path):
    dests = [tmp_path / "A"]
    dests[0].mkdir()
    offload(card, dests, decode=True, previews=False)
    r = ingest("accept", card, *dests, "--file", GOOD, "--reason", "x")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr
    r = ingest("accept", card, *dests, "--file", "DCIM/nope.JPG", "--reason", "x")
    assert r.returncode == 2 and "is not on the card" in r.stderr
    r = ingest("accept", card, *dests, "--file", DAMAGED, "--reason", "lost", "--json", "-")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["command"] == "accept" and report["files"][0]["status"] == "accepted"
    assert report["files"][0]["finding"].startswith("damaged on the card")


# 5. edge cases an outside review found -----------------------------------------------------
def test_an_unreadable_file_accepted_on_one_card_does_not_cover_another_cards(card, disks,
                                                                             tmp_path):
    """Cameras reuse names: the same path, size and time on another card is another file.
    An acceptance of an unreadable file holds only on the card (listing) it was made on."""
    from conftest import CardReadErrors

    name = "DSC_0007.JPG"
    offload(card, disks)
    unreadable = CardReadErrors(name)
    lost = next(p for p in discover(str(card)).files if p.rel.endswith(name)).rel
    api.accept(str(card), [str(d) for d in disks], [lost], "reader died on it", io=unreadable)
    assert api.status(str(card), [str(d) for d in disks], io=CardReadErrors(name)).exit_code == 0

    import shutil

    # The next shoot on the same card (a later frame) leaves the acceptance standing...
    later = card / "DCIM" / "100NIKON" / "DSC_0999.JPG"
    later.write_bytes(b"a later frame")
    assert api.status(str(card), [str(d) for d in disks],
                      io=CardReadErrors(name)).report["summary"]["accepted"] == 1
    later.unlink()
    # ...but another card, whose earlier frames differ, is another card.
    other = tmp_path / "other-card"
    shutil.copytree(card, other, symlinks=True)
    files = discover(str(other)).files
    mtime = next(f.mtime_ns for f in files if f.rel == lost)
    earlier = next(f for f in files if f.kind is not Kind.OTHER and f.mtime_ns < mtime)
    with open(earlier.abspath, "ab") as f:
        f.write(b"other content")
    os.utime(earlier.abspath, ns=(earlier.mtime_ns, earlier.mtime_ns))
    seen = api.status(str(other), [str(d) for d in disks], io=CardReadErrors(name))
    held = next(f for f in seen.report["files"] if f["path"] == lost)
    assert held["status"] == "not_safe" and held["reason"] == "unreadable"
    assert "run ingest accept again" in held["detail"]  # says why it no longer applies
    # ...and once it reads, it is judged on its own: no "changed since accepted" alarm.
    readable = api.status(str(card), [str(d) for d in disks])
    assert next(f for f in readable.report["files"] if f["path"] == lost)["status"] == "safe"


def test_an_accepted_loss_is_still_kept_its_copies_must_stay(card, disks):
    first = offload(card, disks, decode=True, previews=False)
    api.accept(str(card), [str(d) for d in disks], [DAMAGED], "blurred anyway")
    assert status(card, disks).exit_code == 0
    for d in disks:
        copy_of(first, DAMAGED, d).unlink()
    checked = verify(disks, decode=True)
    assert checked.exit_code == 1  # missing copies are never "accepted"
    assert {str(r.status) for r in checked.records if r.path.endswith("DSC_0013.JPG")} == \
        {"missing"}
    after = status(card, disks)
    assert after.exit_code == 1
    held = next(f for f in after.report["files"] if f["path"] == DAMAGED)
    assert held["reason"] == "too_few_copies" and "is not kept" in held["detail"]


def test_a_copy_found_missing_that_comes_back_is_trusted_again(card, disks, tmp_path):
    first = offload(card, disks)
    copy = copy_of(first, GOOD, disks[0])
    aside = disks[0] / "aside.jpg"  # same file system: a rename, as a remount would do
    copy.rename(aside)
    assert verify([disks[0]]).exit_code == 1
    aside.rename(copy)  # the disk was remounted, say
    again = offload(card, disks)
    assert again.report["summary"]["safe_to_format"] is True
    assert status(card, disks).exit_code == 0
    assert again.report["summary"]["verdict"] == status(card, disks).report["summary"]["verdict"]


def test_a_check_that_does_not_decode_never_clears_a_decode_finding(card, disks):
    offload(card, disks, decode=True, previews=False)  # damaged_on_card
    again = offload(card, disks)  # --no-decode
    assert next(r for r in again.records if r.path == DAMAGED).status is Status.DAMAGED_ON_CARD
    assert again.exit_code == 1 and status(card, disks).exit_code == 1
    first_check = verify(disks)  # --no-decode: the hash matches, the finding stands
    assert first_check.exit_code == 1
    assert {str(r.status) for r in first_check.records if r.path.endswith("DSC_0013.JPG")} == \
        {"damaged"}
    assert verify(disks, decode=True).exit_code == 1  # damaged
    hash_only = verify(disks)
    assert hash_only.exit_code == 1
    assert {str(r.status) for r in hash_only.records if r.path.endswith("DSC_0013.JPG")} == \
        {"damaged"}
    assert status(card, disks).exit_code == 1


def test_an_undo_in_one_destination_takes_the_acceptance_back_everywhere(card, disks):
    offload(card, disks, decode=True, previews=False)
    api.accept(str(card), [str(d) for d in disks], [DAMAGED], "lost")
    api.accept(str(card), [str(disks[0])], [DAMAGED], None, undo=True)
    assert status(card, disks).exit_code == 1
    assert verify(disks, decode=True).exit_code == 1  # verify weighs the archives it is given
    assert offload(card, disks).report["summary"]["safe_to_format"] is False
    assert "run ingest accept again" not in status(card, disks).report["files"][-1]["detail"]


def test_a_rotted_copy_is_replaced_even_with_no_retries(card, disks):
    first = offload(card, disks)
    rotted = copy_of(first, GOOD, disks[0])
    rot(rotted)
    again = offload(card, disks, retries=0)
    rec = next(r for r in again.records if r.path == GOOD)
    assert rec.status is Status.RECOPIED and rec.attempts == 2
    assert rotted.read_bytes() == (card / GOOD).read_bytes()
    assert again.report["summary"]["safe_to_format"] is True


def test_accept_takes_paths_as_status_lists_them_and_refuses_others(card, tmp_path):
    dest = tmp_path / "A"
    dest.mkdir()
    offload(card, [dest], decode=True, previews=False)
    for bad in ("../elsewhere.JPG", "DCIM", "DCIM/nope.JPG"):
        with pytest.raises(UsageError):
            api.accept(str(card), [str(dest)], [bad], "x")
    assert acceptances(dest) == []
    report = api.accept(str(card), [str(dest)], [f"./{DAMAGED}", str(card / DAMAGED)],
                        "x").report
    assert [f["path"] for f in report["files"]] == [DAMAGED]


def second_read_differs(name: str) -> FlipOnOpens:
    """A marginal reader: the second time the card file `name` (its path on the card) is
    opened, one byte of what is read comes back wrong."""
    return FlipOnOpens(name, {2})


def test_a_card_that_reads_differently_while_a_rotted_copy_is_replaced_is_flagged(card, disks):
    first = offload(card, disks)
    rotted = copy_of(first, GOOD, disks[0])
    rot(rotted)
    # With a read left, the odd read is outvoted: a third read agrees with the first.
    again = offload(card, disks, io=second_read_differs(GOOD))
    rec = next(r for r in again.records if r.path == GOOD)
    assert rec.status is Status.RECOPIED and rec.card_reads == 3, (rec.status, rec.detail)
    assert rotted.read_bytes() == (card / GOOD).read_bytes()
    rot(rotted)
    # With none left, the content never settles: flagged, never `duplicate`.
    again = offload(card, disks, io=second_read_differs(GOOD), retries=0)
    rec = next(r for r in again.records if r.path == GOOD)
    assert rec.status is Status.NEEDS_RECOPY, (rec.status, rec.detail)  # never `duplicate`
    assert "different data on two reads" in rec.detail
    assert [c.destination for c in rec.copies if c.action == "failed"] == [str(disks[0])]
    assert again.exit_code == 1 and again.report["summary"]["safe_to_format"] is False
