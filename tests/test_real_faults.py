"""Real faults below Python: the card or a destination is a FUSE file system (tests/rigs/
faultfs.py) that flips bits in what is read or written, fails reads with EIO, dies (every
operation EIO) or vanishes (its daemon killed: ENOTCONN) while `ingest offload` runs as the
command line does. Nothing in ingest is wrapped or patched; every fault is counted by the rig,
and each test first asserts that its fault really fired.

Each scenario checks the promise: no damaged file under a final name (every final-named file
in every destination holds exactly its card file's bytes, read from the backing folder, not
through the mount), a report written, the healthy destination complete, and the exit code.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import xxhash
from reliability_table import card_files, count_lost, reliability_fixture  # noqa: F401
from rigs import fuse_missing
from rigs.faultfs import FaultMount

from conftest import partials, snapshot
from ingest.catalog import catalog_path

AREA = "real faults (FUSE)"
SAFE = {"verified", "recopied", "duplicate"}
FLAGGED = {"needs_recopy", "damaged_on_card", "unreadable", "unverified"}
# A DNG of its own content and name (no collision), about halfway through the card.
TARGET = "DCIM/100NIKON/DSC_0008.DNG"

_why = fuse_missing()
pytestmark = pytest.mark.skipif(_why is not None, reason=f"no FUSE rig here: {_why}")


# --- running ingest -------------------------------------------------------------------------------


class Run:
    """One `ingest offload` as the command line runs it, and what it left behind."""

    def __init__(self, proc: subprocess.CompletedProcess, report: dict | None):
        self.code, self.stderr, self.report = proc.returncode, proc.stderr, report
        self.files = {f["path"]: f for f in report["files"]} if report else {}

    def statuses(self) -> Counter:
        return Counter(f["status"] for f in self.files.values())

    def dest(self, root) -> dict:
        return next(d for d in self.report["destinations"] if d["root"] == str(root))

    def verified_in(self, root) -> set[str]:
        return {p for p, f in self.files.items()
                if any(c["verified"] and c["destination"] == str(root) for c in f["copies"])}

    def describe(self) -> str:
        if self.report is None:
            last = self.stderr.strip().splitlines()[-1:] or ["(nothing on stderr)"]
            return f"exit {self.code}, no report: {last[0]}"
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.statuses().items()))
        errors = "; ".join(f"{Path(d['root']).name}: {d['error']}"
                           for d in self.report["destinations"] if d["error"])
        return f"exit {self.code}: {counts}" + (f"; {errors}" if errors else "")


def offload(card, dests, tmp_path: Path) -> Run:
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-m", "ingest", "offload", str(card), *map(str, dests),
         "--json", str(out), "--jobs", "1"],
        capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[1])
    report = None
    if out.exists():
        report = json.loads(out.read_text())
    return Run(proc, report)


# --- what must hold after every run -----------------------------------------------------------------


def _xxh3(path: Path) -> str:
    with open(path, "rb") as fh:
        return xxhash.xxh3_128_hexdigest(fh.read())


def final_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.name.endswith(".ingest-partial")
            and not {".ingest", "ascmhl"} & set(p.relative_to(root).parts)]


def damaged_final_files(run: Run, hashes: dict[str, str], disks: dict[str, Path]) -> list[str]:
    """Final-named files that do not hold their card file's bytes, read from each
    destination's backing folder (`disks`: destination root -> where its bytes really are).
    A file the report does not name must at least hold some card file's bytes."""
    named = {}
    for rel, f in run.files.items():
        for c in f["copies"]:
            if c["path"]:
                named[disks.get(c["destination"], Path(c["destination"])) / c["path"]] = \
                    hashes.get(rel)
    bad = []
    for disk in set(disks.values()):
        for p in final_files(disk):
            got, want = _xxh3(p), named.get(p)
            if (got != want) if want else (got not in hashes.values()):
                bad.append(str(p.relative_to(disk.parent)))
    return bad


def lost(run: Run, hashes: dict[str, str], disks: dict[str, Path]) -> int:
    """`count_lost` (the reliability table's one definition), on the bytes on the disks."""
    if run.report is None:
        return 0  # nothing was reported: the test fails on that; the card holds everything
    text = json.dumps(run.report)
    for root, disk in disks.items():
        text = text.replace(json.dumps(root)[1:-1], json.dumps(str(disk))[1:-1])
    return count_lost(hashes, json.loads(text))


def catalog_rows(dest: Path) -> dict[str, str]:
    db = sqlite3.connect(f"file:{catalog_path(str(dest))}?mode=ro", uri=True)
    try:
        return dict(db.execute("SELECT path, xxh3_128 FROM files").fetchall())
    finally:
        db.close()


def check_promise(run: Run, hashes: dict[str, str], disks: dict[str, Path]) -> None:
    assert run.report is not None and "summary" in run.report, \
        f"no report written: exit {run.code}; stderr: {run.stderr[-1500:]}"
    assert set(run.files) == set(hashes), "every card file has a record"
    bad = damaged_final_files(run, hashes, disks)
    assert bad == [], f"damaged files under a final name: {bad}"
    for rel, f in run.files.items():
        if f["status"] in SAFE:
            assert f["xxh3_128"] == hashes[rel], f"{rel} is {f['status']} with another hash"


def check_catalog_sound(disk: Path) -> int:
    """Every row of a destination's catalog (read from its backing folder) points at a file
    that holds the row's bytes: no row for an incomplete file. Returns the number of rows."""
    rows = catalog_rows(disk)
    for path, digest in rows.items():
        assert _xxh3(disk / path) == digest, path
    return len(rows)


def check_complete(run: Run, dest: Path, hashes: dict[str, str], files: set[str]) -> None:
    """`files` are verified in the plain folder `dest`, its copies hold the card's bytes,
    no partial is left, and its catalog has a row for each, and for nothing else."""
    assert run.verified_in(dest) == files, sorted(set(files) ^ run.verified_in(dest))
    for rel in files:
        (copy,) = [c for c in run.files[rel]["copies"] if c["destination"] == str(dest)]
        assert _xxh3(dest / copy["path"]) == hashes[rel], rel
    assert partials(dest) == []
    assert sorted(catalog_rows(dest).values()) == sorted(hashes[rel] for rel in files)
    check_catalog_sound(dest)


# --- fixtures -----------------------------------------------------------------------------------------


@pytest.fixture()
def clean_card(card, manifest) -> Path:
    """The sample card without its file damaged on purpose, so that the exit code says what
    the injected fault did (0: nothing flagged)."""
    for rel in manifest.damaged:
        (card / rel).unlink()
    return card


@pytest.fixture()
def card_rig(clean_card, tmp_path):
    """The card as a FUSE mount of the clean card folder: (rig, mount point, backing).
    Whatever the fault, ingest must not have changed anything on the card."""
    before = snapshot(clean_card)
    with FaultMount(clean_card, tmp_path / "card-reader") as rig:
        yield rig, Path(rig.mountpoint), clean_card
    assert snapshot(clean_card) == before, "ingest changed something on the card"


@pytest.fixture()
def dest_rig(tmp_path):
    """Destination A as a FUSE mount of an empty folder, B a plain folder:
    (rig, A, A's backing folder, B)."""
    disk, plain = tmp_path / "disk-A", tmp_path / "dest-B"
    disk.mkdir()
    plain.mkdir()
    with FaultMount(disk, tmp_path / "dest-A") as rig:
        yield rig, Path(rig.mountpoint), disk, plain


def row(reliability, run: Run, *, fault: str, setup: str, expected: str, extra: str = "",
        lost_files: int, injected: int) -> None:
    reliability.row(area=AREA, fault=fault, setup=setup, expected=expected,
                    observed=run.describe() + (f"; {extra}" if extra else ""),
                    lost=lost_files, injected=injected)


# --- bits flipped on their way to a destination --------------------------------------------------------


def _write_flip(rig, clean_card: Path, times: int | None) -> int:
    size = (clean_card / TARGET).stat().st_size
    # Written files of that name outside .ingest/ (whose previews share the name).
    rig.set(write_flip=[{"path": f"2024/*{Path(TARGET).name}*", "offset": size // 2, "bit": 3,
                         "times": times}])
    return size


def test_write_bit_flip_on_a_destination_once_is_copied_again(clean_card, dest_rig, tmp_path,
                                                              reliability):
    rig, a, disk, b = dest_rig
    hashes = card_files(clean_card)
    _write_flip(rig, clean_card, times=1)
    run = offload(clean_card, [a, b], tmp_path)
    fired = rig.counts()["counts"].get("write_flip", 0)
    disks = {str(a): disk, str(b): b}
    rec = run.files.get(TARGET, {})
    row(reliability, run, fault="one bit flipped once in a file written to destination A",
        setup="faultfs under A flips bit 3 in the middle of DSC_0008.DNG's first write there; "
              "B a plain folder",
        expected="the read-back from A's disk catches it, the file is copied again: recopied, "
                 "exit 0, nothing damaged under a final name",
        extra=f"{TARGET}: {rec.get('status')} ({rec.get('detail')}); flips {fired}",
        lost_files=lost(run, hashes, disks), injected=fired)
    assert fired == 1, rig.counts()
    check_promise(run, hashes, disks)
    assert rec["status"] == "recopied", rec
    assert run.code == 0, run.describe()
    assert all(f["status"] == "verified" for p, f in run.files.items() if p != TARGET)
    check_complete(run, b, hashes, set(hashes))
    assert run.verified_in(a) == set(hashes)
    assert partials(disk) == []
    assert check_catalog_sound(disk) == len(hashes)


def test_write_bit_flip_on_a_destination_every_time_needs_recopy(clean_card, dest_rig, tmp_path,
                                                                 reliability):
    rig, a, disk, b = dest_rig
    hashes = card_files(clean_card)
    _write_flip(rig, clean_card, times=None)
    run = offload(clean_card, [a, b], tmp_path)
    fired = rig.counts()["counts"].get("write_flip", 0)
    disks = {str(a): disk, str(b): b}
    rec = run.files.get(TARGET, {})
    row(reliability, run, fault="one bit flipped in every write of one file to destination A",
        setup="faultfs under A flips bit 3 in the middle of DSC_0008.DNG on every write; "
              "--retries 2; B a plain folder",
        expected="3 attempts, then needs_recopy with A failed and B verified; exit 1; the "
                 "flipped copy never gets a final name",
        extra=f"{TARGET}: {rec.get('status')}, attempts {rec.get('attempts')}; flips {fired}",
        lost_files=lost(run, hashes, disks), injected=fired)
    assert fired >= 1, rig.counts()
    check_promise(run, hashes, disks)
    assert rec["status"] == "needs_recopy", rec
    assert fired == rec["attempts"] == 3, (fired, rec)
    copies = {c["destination"]: c for c in rec["copies"]}
    assert copies[str(a)]["verified"] is False and copies[str(b)]["verified"] is True, copies
    assert run.code == 1, run.describe()
    assert all(f["status"] == "verified" for p, f in run.files.items() if p != TARGET)
    check_complete(run, b, hashes, set(hashes))
    assert run.verified_in(a) == set(hashes) - {TARGET}
    assert partials(disk) == []
    assert check_catalog_sound(disk) == len(hashes) - 1


# --- the card hands over a wrong bit, or none ---------------------------------------------------------


def test_read_bit_flip_on_the_card_once_is_never_verified(card_rig, dests, tmp_path, reliability):
    rig, card, backing = card_rig
    hashes = card_files(backing)
    size = (backing / TARGET).stat().st_size
    # The card keeps its page cache across opens (kernel_cache), as a block device does: the
    # flipped bytes stay there for every read that does not go past the cache.
    rig.set(read_flip=[{"path": TARGET, "offset": size // 2, "bit": 5, "times": 1}])
    run = offload(card, dests, tmp_path)
    fired = rig.counts()
    disks = {str(d): d for d in dests}
    rec = run.files.get(TARGET, {})
    row(reliability, run, fault="one bit flipped once in what the card reader returns",
        setup="faultfs card flips bit 5 in the middle of DSC_0008.DNG in the first read of "
              "it; 2 plain destinations",
        expected="a second card read past the page cache disagrees: copied again (recopied) "
                 "or flagged, never verified with the flipped bytes",
        extra=f"{TARGET}: {rec.get('status')} ({rec.get('detail')}), card reads "
              f"{rec.get('card_reads')}; flips {fired['counts'].get('read_flip', 0)}",
        lost_files=lost(run, hashes, disks), injected=fired["counts"].get("read_flip", 0))
    assert fired["counts"].get("read_flip") == 1, fired
    check_promise(run, hashes, disks)
    # The flipped page reached the engine's first read of the file (it stays cached until
    # dropped), so a clean `verified` means the engine never noticed a read it copied.
    assert rec["status"] == "recopied" or rec["status"] in FLAGGED, rec
    assert rec["xxh3_128"] in (None, hashes[TARGET]), rec
    others = set(hashes) - {TARGET}
    assert all(run.files[p]["status"] == "verified" for p in others)
    for d in dests:
        check_complete(run, d, hashes, set(hashes) if rec["status"] in SAFE else others)
    assert run.code == (0 if rec["status"] in SAFE else 1), run.describe()


def test_eio_on_one_card_file_is_unreadable(card_rig, dests, tmp_path, reliability):
    rig, card, backing = card_rig
    hashes = card_files(backing)
    bad = "DCIM/100NIKON/DSC_0007.JPG"
    rig.set(read_eio=[bad])
    run = offload(card, dests, tmp_path)
    fired = rig.counts()["counts"].get("read_eio", 0)
    disks = {str(d): d for d in dests}
    rec = run.files.get(bad, {})
    row(reliability, run, fault="EIO on every read of one card file",
        setup="faultfs card fails every read of DSC_0007.JPG with EIO; --retries 2; 2 plain "
              "destinations",
        expected="3 attempts, then unreadable; every other file verified in both; exit 1",
        extra=f"{bad}: {rec.get('status')}, attempts {rec.get('attempts')}; EIOs {fired}",
        lost_files=lost(run, hashes, disks), injected=fired)
    assert fired >= 3, rig.counts()
    check_promise(run, hashes, disks)
    assert rec["status"] == "unreadable" and rec["attempts"] == 3, rec
    assert run.code == 1, run.describe()
    assert all(f["status"] == "verified" for p, f in run.files.items() if p != bad)
    for d in dests:
        check_complete(run, d, hashes, set(hashes) - {bad})


# --- a destination's device dies or its file system vanishes -----------------------------------------

# A copy is committed by renaming its partial: after this many, destination A goes.
A_FILES = 6


def _destination_gone(run: Run, a: Path, disk: Path, b: Path, hashes: dict[str, str]):
    disks = {str(a): disk, str(b): b}
    check_promise(run, hashes, disks)
    assert run.code == 1, run.describe()
    assert run.dest(a)["error"], run.report["destinations"]
    assert run.dest(b)["error"] is None, run.report["destinations"]
    check_complete(run, b, hashes, set(hashes))  # B has everything, catalog included
    # Copies A took before it died count only once their folder was fsynced and their rows
    # written; a death before that batch leaves none counted (each file needs_recopy for A).
    in_a = run.verified_in(a)
    assert len(in_a) < len(hashes), f"A should die mid-run: {len(in_a)} files verified there"
    for rel, f in run.files.items():
        # A file A took before it died stays proven: its decode reads B's copy when A's can
        # no longer be read. The rest waits for A: a re-run completes it.
        allowed = SAFE if rel in in_a else {"needs_recopy"}
        assert f["status"] in allowed, (rel, f["status"], f["detail"])
    # A's catalog (if it got that far) names only complete copies; a re-run adopts the rest.
    assert check_catalog_sound(disk) <= len(in_a)


def test_destination_device_dies_mid_run(clean_card, dest_rig, tmp_path, reliability):
    rig, a, disk, b = dest_rig
    hashes = card_files(clean_card)
    rig.set(die={"after": {"op": "rename", "path": "*.ingest-partial", "count": A_FILES}})
    run = offload(clean_card, [a, b], tmp_path)
    state = rig.counts()
    fired = state["counts"].get("dead_eio", 0)
    row(reliability, run, fault=f"destination A's device dies after {A_FILES} files "
                                "(every operation EIO)",
        setup=f"faultfs under A fails every operation with EIO once {A_FILES} partials were "
              "renamed to their final names; B a plain folder",
        expected="A reported with its error (its copies count only once recorded in its "
                 "catalog); B complete with its "
                 "catalog; the rest needs_recopy; a report; exit 1, not 2",
        extra=f"{fired} operations failed with EIO",
        lost_files=lost(run, hashes, {str(a): disk, str(b): b}), injected=fired)
    assert state["dead"] and fired > 0, state
    _destination_gone(run, a, disk, b, hashes)


def test_destination_file_system_vanishes_mid_run(clean_card, dest_rig, tmp_path, reliability):
    rig, a, disk, b = dest_rig
    hashes = card_files(clean_card)
    rig.set(vanish={"after": {"op": "rename", "path": "*.ingest-partial", "count": A_FILES}})
    run = offload(clean_card, [a, b], tmp_path)
    killed = rig.killed()
    try:
        os.stat(a)
        answer = "answered"
    except OSError as e:
        answer = os.strerror(e.errno)
    row(reliability, run, fault=f"destination A's file system vanishes after {A_FILES} files "
                                "(FUSE daemon killed)",
        setup=f"faultfs under A SIGKILLs itself at the first operation after {A_FILES} renames "
              "of partials; the kernel answers ENOTCONN; B a plain folder",
        expected="as for a dead device: A reported with its error, B complete with its "
                 "catalog, the rest needs_recopy, a report, exit 1",
        extra=f"daemon killed: {killed}; A's mount point then: {answer}",
        lost_files=lost(run, hashes, {str(a): disk, str(b): b}), injected=int(killed))
    assert killed, "the rig's daemon was not killed: the fault never fired"
    _destination_gone(run, a, disk, b, hashes)


# --- the card's device dies or its file system vanishes -----------------------------------------------


def _card_gone(run: Run, dests: list[Path], hashes: dict[str, str]) -> None:
    check_promise(run, hashes, {str(d): d for d in dests})
    assert run.code == 1, run.describe()
    done = {p for p, f in run.files.items() if f["status"] == "verified"}
    gone = {p for p, f in run.files.items() if f["status"] == "unreadable"}
    assert done | gone == set(hashes), {p: f["status"] for p, f in run.files.items()
                                        if p not in done | gone}
    assert done and gone, f"the card should go mid-run: {len(done)} verified, {len(gone)} not"
    for d in dests:
        assert run.dest(d)["error"] is None
        check_complete(run, d, hashes, done)


def _card_bytes(backing: Path) -> int:
    return sum(p.stat().st_size for p in backing.rglob("*") if p.is_file())


# Where the card goes: at a point of its own (once it served a third of its bytes: each file
# is read about twice, the copy or the prefetch it reads from, and the verifying read), or
# right after the copy opened a file, so that the copy holds a card file open when the card
# goes. The copy reads the card in ingest's main thread (pipeline.py); the prefetch and the
# verifying read in threads of their own.
AT_OPEN = "DCIM/100NIKON/DSC_0002.DNG"


def _card_trigger(when: str, backing: Path) -> tuple[dict, str]:
    if when == "bytes":
        limit = _card_bytes(backing) // 3
        return {"op": "read", "bytes": limit}, f"once it served {limit:,} bytes"
    return {"op": "open", "path": AT_OPEN, "count": 1, "main_thread": True}, \
        f"right after the copy opened {Path(AT_OPEN).name}"


@pytest.mark.parametrize("when", ["bytes", "copy-open"])
def test_card_device_dies_mid_run(card_rig, dests, tmp_path, when, reliability):
    rig, card, backing = card_rig
    hashes = card_files(backing)
    trigger, where = _card_trigger(when, backing)
    rig.set(die={"after": trigger})
    run = offload(card, dests, tmp_path)
    state = rig.counts()
    fired = state["counts"].get("dead_eio", 0)
    row(reliability, run, fault=f"the card's device dies mid-run, {where} (every operation "
                                "EIO)",
        setup=f"faultfs card fails every operation with EIO {where}; 2 plain destinations",
        expected="the files done before stay verified (and catalogued), the rest unreadable; "
                 "a report; exit 1, not 2",
        extra=f"{fired} operations failed with EIO",
        lost_files=lost(run, hashes, {str(d): d for d in dests}), injected=fired)
    assert state["dead"] and fired > 0, state
    _card_gone(run, dests, hashes)


@pytest.mark.parametrize("when", ["bytes", "copy-open"])
def test_card_file_system_vanishes_mid_run(card_rig, dests, tmp_path, when, reliability):
    rig, card, backing = card_rig
    hashes = card_files(backing)
    trigger, where = _card_trigger(when, backing)
    rig.set(vanish={"after": trigger})
    run = offload(card, dests, tmp_path)
    killed = rig.killed()
    row(reliability, run, fault=f"the card's file system vanishes mid-run, {where} (FUSE "
                                "daemon killed)",
        setup=f"faultfs card SIGKILLs itself at its first operation {where}; the kernel "
              "answers ENOTCONN; 2 plain destinations",
        expected="as for a dead card: the files done stay verified, the rest unreadable, a "
                 "report, exit 1",
        extra=f"daemon killed: {killed}",
        lost_files=lost(run, hashes, {str(d): d for d in dests}), injected=int(killed))
    assert killed, "the rig's daemon was not killed: the fault never fired"
    _card_gone(run, dests, hashes)


# --- verify: an archive that dies or vanishes while it is checked -------------------------------


def verify(archives, tmp_path: Path) -> Run:
    out = tmp_path / "verify.json"
    proc = subprocess.run(
        [sys.executable, "-m", "ingest", "verify", *map(str, archives), "--repair",
         "--json", str(out), "--jobs", "1"],
        capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[1])
    report = json.loads(out.read_text()) if out.exists() else None
    run = Run(proc, report)
    if report:  # verify has one record per archive and file: key them by both
        run.files = {(f["copies"][0]["destination"], f["path"]): f for f in report["files"]}
    return run


def findings(disk: Path) -> Counter:
    db = sqlite3.connect(f"file:{catalog_path(str(disk))}?mode=ro", uri=True)
    try:
        return Counter(r for (r,) in db.execute("SELECT last_result FROM files"))
    finally:
        db.close()


@pytest.mark.parametrize("fault", ["die", "vanish"])
def test_an_archive_that_goes_away_mid_verify_is_not_reported_corrupt(
        clean_card, tmp_path, fault, reliability):
    disk, plain = tmp_path / "disk-A", tmp_path / "archive-B"
    disk.mkdir()
    plain.mkdir()
    first = offload(clean_card, [disk, plain], tmp_path)
    assert first.code == 0, first.describe()
    before = findings(disk)
    with FaultMount(disk, tmp_path / "archive-A") as rig:
        a = Path(rig.mountpoint)
        rig.set(**{fault: {"after": {"op": "open", "path": "2024/*", "count": 5}}})
        run = verify([a, plain], tmp_path)
        fired = rig.counts()["counts"].get("dead_eio", 0) if fault == "die" else \
            int(rig.killed())
    assert run.report is not None, f"no report: exit {run.code}: {run.stderr[-800:]}"
    assert run.code == 1, run.describe()
    assert run.dest(a)["error"] and "stopped responding" in run.dest(a)["error"]
    assert run.dest(plain)["error"] is None
    in_a = {p: f for (root, p), f in run.files.items() if root == str(a)}
    in_b = {p: f for (root, p), f in run.files.items() if root == str(plain)}
    assert set(Counter(f["status"] for f in in_b.values())) == {"verified"}
    statuses = Counter(f["status"] for f in in_a.values())
    # Checked before it went, or not checked: never blamed on the files themselves.
    assert set(statuses) <= {"verified", "skipped"} and statuses["skipped"] > 0, statuses
    assert all("the archive stopped responding" in f["detail"]
               for f in in_a.values() if f["status"] == "skipped")
    # nothing false went into its catalog, nothing was "repaired" onto it
    assert not {"corrupt", "missing"} & set(findings(disk)) and findings(disk) != Counter()
    assert before and not (disk / ".ingest" / "quarantine").exists()
    how = "dies (every operation EIO)" if fault == "die" else "vanishes (ENOTCONN)"
    reliability.row(area=AREA, fault=f"archive A {how} mid-verify --repair",
                    setup="verify --repair of a FUSE archive A and a plain archive B; A fails "
                          "after 5 photo opens",
                    expected="A named as stopped in the report, its unchecked files skipped, "
                             "never corrupt or missing, nothing restored onto it; B verified; "
                             "a report; exit 1",
                    observed=run.describe(), lost=0, injected=fired)
    assert fired
