"""Kill the offload with SIGKILL at several points; the re-run finishes and loses nothing."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import xxhash

from conftest import partials, snapshot

HELPER = Path(__file__).parent / "helpers" / "killed_offload.py"
GOOD = {"verified", "recopied", "duplicate", "damaged_on_card"}


def orphans_exit(pgid: int, wait: float = 15.0) -> bool:
    """The killed run's workers notice their parent is gone and exit by themselves."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    os.killpg(pgid, signal.SIGKILL)
    return False


def check_archive(dest: Path, card: Path) -> None:
    assert partials(dest) == []
    db = sqlite3.connect(dest / ".ingest" / "catalog.sqlite")
    rows = db.execute("SELECT path, size, xxh3_128 FROM files").fetchall()
    for path, size, digest in rows:
        data = (dest / path).read_bytes()  # no row points at a missing file
        assert len(data) == size and xxhash.xxh3_128_hexdigest(data) == digest
    # every final-named file is complete: it equals some card file byte for byte
    card_hashes = {xxhash.xxh3_128_hexdigest(p.read_bytes()) for p in card.rglob("*")
                   if p.is_file()}
    for p in dest.rglob("*"):
        if p.is_file() and not {".ingest", "ascmhl"} & set(p.relative_to(dest).parts):
            assert xxhash.xxh3_128_hexdigest(p.read_bytes()) in card_hashes, p


@pytest.mark.parametrize("event,n", [("write", 3), ("write", 40), ("fsync", 7), ("rename", 5),
                                     ("rename", 30), ("catalog", 12), ("decoded", 4)])
def test_rerun_after_sigkill_completes_and_loses_nothing(card, dests, event, n):
    before = snapshot(card)
    log = card.parent / "killed.log"
    with open(log, "w") as out:
        # Output to a file, not a pipe: orphaned decode workers must not keep a pipe open.
        killed = subprocess.Popen([sys.executable, str(HELPER), event, str(n), str(card),
                                   *map(str, dests)], stdout=out, stderr=out,
                                  start_new_session=True)
        rc = killed.wait(timeout=300)
    assert rc == -9, log.read_text()
    assert orphans_exit(killed.pid), "decode workers outlived the killed run"
    assert snapshot(card) == before

    rerun = subprocess.run([sys.executable, "-m", "ingest", "offload", str(card),
                            *map(str, dests), "--json", "-", "--jobs", "2"],
                           capture_output=True, text=True, timeout=300)
    import json

    report = json.loads(rerun.stdout)
    statuses = {f["path"]: f["status"] for f in report["files"]}
    assert set(statuses.values()) <= GOOD, statuses
    assert [p for p, s in statuses.items() if s == "damaged_on_card"] == [
        "DCIM/101NIKON/DSC_0013.JPG"]
    for f in report["files"]:
        assert len([c for c in f["copies"] if c["verified"]]) == 2, f
        for c in f["copies"]:
            assert (Path(c["destination"]) / c["path"]).read_bytes() == \
                (card / f["path"]).read_bytes()
    for d in dests:
        check_archive(d, card)
    assert snapshot(card) == before
    # and a third run has nothing left to do
    third = subprocess.run([sys.executable, "-m", "ingest", "offload", str(card),
                            *map(str, dests), "--json", "-"], capture_output=True, text=True,
                           timeout=300)
    done = json.loads(third.stdout)
    assert {f["status"] for f in done["files"]} <= {"duplicate", "damaged_on_card"}
    assert os.environ.get("INGEST_DEBUG") is None
