"""Crash consistency: SIGKILL an offload of a 54-file card at 20 points, then re-run it.

The 20 kill points are a seeded random choice of (event, n) over every engine event that
changes the disk: partial writes, fsyncs, renames, catalog rows, final catalog statuses, decode
results and ASC MHL writes. By default a seeded, stratified sample of 6 runs (CI stays fast);
INGEST_FULL_MATRIX=1 runs all 20.

After each kill: no catalog row points at a missing or incomplete file, no final-named file is
incomplete, the catalog is a sound SQLite file, and the card is unchanged. After the re-run:
every file is verified (or duplicate) in both destinations, the card's damaged JPEG is
damaged_on_card, no partial is left, and the card is unchanged byte for byte and mtime for mtime.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import xxhash
from reliability_table import FULL_MATRIX_ENV, card_files, count_lost, reliability_fixture  # noqa: F401

from conftest import partials, snapshot

HELPER = Path(__file__).parent / "helpers" / "killed_offload.py"
DAMAGED = "DCIM/101NIKON/DSC_0021.JPG"  # the JPEG build_card(scale=2) damages on purpose
GOOD_ROWS = {"verified", "recopied", "duplicate", "damaged_on_card"}

# How often each event happens in one uninterrupted run of this card (seed 7, scale 2) to two
# destinations with 64 KiB chunks, measured with `python tests/helpers/killed_offload.py count 0
# CARD A B`. A kill point past the real count fails loudly ("not killed") instead of passing.
EVENT_COUNTS = {"write": 672, "fsync": 108, "rename": 108, "catalog": 108, "status": 108,
                "decoded": 40, "mhl": 4}
POINTS_PER_EVENT = {"write": 4, "fsync": 3, "rename": 4, "catalog": 3, "status": 2,
                    "decoded": 3, "mhl": 1}
SEED = 20240511


def kill_points(seed: int = SEED) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    points = []
    for event, k in POINTS_PER_EVENT.items():
        points += [(event, n) for n in sorted(rng.sample(range(1, EVENT_COUNTS[event] + 1), k))]
    return points


def sampled_points(seed: int = SEED) -> list[tuple[str, int]]:
    """One point of each kind of event (status and mhl share one), chosen by the seed."""
    rng = random.Random(seed + 1)
    points = kill_points(seed)
    groups = [("write",), ("fsync",), ("rename",), ("catalog",), ("decoded",), ("status", "mhl")]
    return [rng.choice([p for p in points if p[0] in g]) for g in groups]


MATRIX = kill_points() if os.environ.get(FULL_MATRIX_ENV) == "1" else sampled_points()


@pytest.fixture(scope="session")
def big_card(tmp_path_factory) -> Path:
    from fixtures.card import build_card

    root = tmp_path_factory.mktemp("card-scale2")
    manifest = build_card(root, seed=7, damaged=True, scale=2)
    assert manifest.damaged == [DAMAGED] and len(manifest.files) >= 50
    return root


def run_isolated(argv: list[str], log: Path, timeout: float = 300) -> int:
    """Run in a session of its own, output to a file, and kill what is left of the session:
    decode workers can outlive a parent killed with SIGKILL."""
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=out, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return rc


def crash_consistent(dest: Path, card_hashes: set[str]) -> tuple[int, int]:
    """The invariants that must hold at any instant. Returns (catalog rows, partials)."""
    db = sqlite3.connect(dest / ".ingest" / "catalog.sqlite")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = db.execute("SELECT path, size, xxh3_128 FROM files").fetchall()
    finally:
        db.close()
    for path, size, digest in rows:
        data = (dest / path).read_bytes()  # no row points at a missing file ...
        assert len(data) == size and xxhash.xxh3_128_hexdigest(data) == digest, path  # or a bad one
    for p in dest.rglob("*"):
        rel = p.relative_to(dest)
        if not p.is_file() or {".ingest", "ascmhl"} & set(rel.parts):
            continue
        if p.name.endswith(".ingest-partial"):
            continue
        # a final name always holds a complete file: some card file, byte for byte
        assert xxhash.xxh3_128_hexdigest(p.read_bytes()) in card_hashes, rel
    return len(rows), len(partials(dest))


@pytest.mark.parametrize("event,n", MATRIX, ids=[f"{e}-{n}" for e, n in MATRIX])
def test_sigkill_then_rerun_loses_nothing(big_card, tmp_path, event, n, reliability):
    card = tmp_path / "card"
    shutil.copytree(big_card, card, symlinks=True)
    dests = [tmp_path / "dest-A", tmp_path / "dest-B"]
    for d in dests:
        d.mkdir()
    before = snapshot(card)
    hashes = card_files(card)

    rc = run_isolated([sys.executable, str(HELPER), event, str(n), str(card), *map(str, dests)],
                      tmp_path / "killed.log")
    assert rc == -signal.SIGKILL, (f"{event} #{n} was never reached (EVENT_COUNTS out of date?): "
                                   + (tmp_path / "killed.log").read_text()[-2000:])
    after_kill = [crash_consistent(d, set(hashes.values())) for d in dests]
    assert snapshot(card) == before

    report_path = tmp_path / "rerun.json"
    rc = run_isolated([sys.executable, "-m", "ingest", "offload", str(card), *map(str, dests),
                       "--json", str(report_path), "--jobs", "2"], tmp_path / "rerun.log")
    assert rc == 1, (tmp_path / "rerun.log").read_text()[-2000:]  # the damaged JPEG is flagged
    report = json.loads(report_path.read_text())
    statuses = {f["path"]: f["status"] for f in report["files"]}
    assert sorted(statuses) == sorted(hashes)
    assert {p for p, s in statuses.items() if s not in ("verified", "recopied", "duplicate")} \
        == {DAMAGED}
    assert statuses[DAMAGED] == "damaged_on_card"
    for f in report["files"]:
        copies = [c for c in f["copies"] if c["verified"]]
        assert sorted(c["destination"] for c in copies) == sorted(map(str, dests)), f
        for c in copies:
            data = (Path(c["destination"]) / c["path"]).read_bytes()
            assert xxhash.xxh3_128_hexdigest(data) == hashes[f["path"]]
    for d in dests:
        rows, left = crash_consistent(d, set(hashes.values()))
        assert left == 0
        db = sqlite3.connect(d / ".ingest" / "catalog.sqlite")
        row_status = dict(db.execute("SELECT xxh3_128, status FROM files"))
        db.close()
        assert set(row_status) == set(hashes.values())  # one proven row per card file
        assert set(row_status.values()) <= GOOD_ROWS, Counter(row_status.values())
    assert snapshot(card) == before
    lost = count_lost(card, report)
    reliability.row(
        area="crash", fault=f"SIGKILL at {event} #{n}",
        setup=f"{len(hashes)}-file card (build_card scale 2) to 2 destinations, decode on, "
              "64 KiB chunks; then the same command again",
        expected="after the kill: no row points at a missing/incomplete file, no incomplete "
                 "final name; re-run: all verified/duplicate in both, damaged JPEG "
                 "damaged_on_card, no partials, card unchanged",
        observed=(f"after kill: rows A/B {after_kill[0][0]}/{after_kill[1][0]}, partials left "
                  f"{after_kill[0][1]}/{after_kill[1][1]}, invariants held; re-run exit {rc}: "
                  + ", ".join(f"{k} {v}" for k, v in sorted(Counter(statuses.values()).items()))
                  + "; no partials; card unchanged"),
        lost=lost)
    assert lost == 0


def test_history_covers_files_copied_by_a_killed_run(big_card, tmp_path, reliability):
    """Killed after every copy and catalog row but before the ASC MHL generation: the re-run
    must still record those files in each destination's history."""
    from ingest.mhl import read_history

    card = tmp_path / "card"
    shutil.copytree(big_card, card, symlinks=True)
    dests = [tmp_path / "dest-A", tmp_path / "dest-B"]
    for d in dests:
        d.mkdir()
    rc = run_isolated([sys.executable, str(HELPER), "status", "1", str(card), *map(str, dests),
                       ], tmp_path / "killed.log")
    assert rc == -signal.SIGKILL
    rc = run_isolated([sys.executable, "-m", "ingest", "offload", str(card), *map(str, dests),
                       "--no-decode", "--json", str(tmp_path / "r.json")], tmp_path / "rerun.log")
    report = json.loads((tmp_path / "r.json").read_text())
    missing = {}
    for d in dests:
        history = read_history(d)
        missing[d.name] = [c["path"] for f in report["files"] for c in f["copies"]
                           if c["destination"] == str(d) and c["verified"]
                           and c["path"] not in history]
    reliability.row(
        area="crash", fault="SIGKILL after the copies, before the ASC MHL generation",
        setup="54-file card to 2 destinations; killed at the first final status write; re-run "
              "with --no-decode",
        expected="every archived file is in its destination's ASC MHL history after the re-run",
        observed=", ".join(f"{k}: {len(v)} files missing from the history"
                           for k, v in missing.items()),
        lost=0)
    assert missing == {d.name: [] for d in dests}
