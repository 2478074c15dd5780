"""Power cuts: an offload and a `verify --repair` cut at seeded operations of a disk that
loses every byte not yet fsynced (tests/rigs/powercut.py).

SIGKILL (test_crash_matrix.py) leaves the page cache intact, so it cannot show whether each
copy is fsynced before its rename and its catalog row. Here destination A is a FUSE rig that
keeps written data in memory until that file is fsynced, while names change on disk at once
(a journal that orders metadata, not data). At the seeded operation the rig SIGKILLs the
run's process group before carrying the operation out, drops everything unsynced and
unmounts; its backing folder is then what the disk would hold after the power came back.

How many operations of each kind a whole run makes is counted first, by the same run through
the rig without a cut; each cut point is a seeded fraction of that count (kept under 90 % of
it, so a slightly shorter run still reaches it). By default 12 offload and 9 repair cuts;
INGEST_FULL_MATRIX=1 runs three times as many.

After each cut, on the backing folder: no final (non-partial) name holds bytes that are not a
card file's (for the repair: or the very bytes planted as damage there); no catalog row names
a missing file, or a file whose size or hash differs from the row (for the repair: except a
planted damaged file, which may be missing only while its bytes are in the quarantine); the
catalog passes SQLite's integrity check; reports, ASC MHL files and previews that exist are
whole (previews were once renamed into place unsynced: a cut left them empty, and re-runs
kept them; verify's check records were once all lost to a cut at its end: both have a test
of their own at the bottom).
Then the same command again, through a fresh rig mount without a cut, must end as a clean run
does: every card file verified (or duplicate) in both destinations, the card's damaged JPEG
`damaged_on_card` and exit 1 (offload); every damaged copy restored, exit as the clean run
(repair: the damaged JPEG is `damaged` in both archives, exit 1).
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
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest
import xxhash
from reliability_table import FULL_MATRIX_ENV, card_files, count_lost, reliability_fixture  # noqa: F401
from rigs import fuse_missing
from rigs.powercut import PowerCutRig

from conftest import snapshot

WHY = fuse_missing()
pytestmark = pytest.mark.skipif(WHY is not None, reason=f"power-cut rig unavailable: {WHY}")

SEED = 20250612
FULL = os.environ.get(FULL_MATRIX_ENV) == "1"
# Which kinds of operation the cuts land on (a seeded point in each). fsync and rename are
# where ordering matters; writes and creates cut a copy halfway; fsyncdir, utimens, unlink
# and `any` (every counted operation) spread the rest.
OFFLOAD_KINDS = ["fsync", "fsync", "fsync", "rename", "rename", "write", "write", "create",
                 "fsyncdir", "utimens", "unlink", "any"]
REPAIR_KINDS = ["fsync", "fsync", "rename", "rename", "rename", "write", "create", "fsyncdir",
                "utimens"]
REPEAT = 3 if FULL else 1
MARGIN = 0.9
GOOD_ROWS = {"verified", "recopied", "duplicate", "damaged_on_card"}
SAFE = {"verified", "recopied", "duplicate"}
STATE = (".ingest", "ascmhl")
CUT_TIMEOUT = 60
INGEST = [sys.executable, "-m", "ingest"]
PROBE = ".ingest-probe-"


def cut_plan(kinds: list[str], seed: int) -> list[tuple[str, float]]:
    rng = random.Random(seed)
    return [(kind, round(rng.random(), 3)) for _ in range(REPEAT) for kind in kinds]


OFFLOAD_CUTS = cut_plan(OFFLOAD_KINDS, SEED)
REPAIR_CUTS = cut_plan(REPAIR_KINDS, SEED + 1)


def point(counts: dict, kind: str, frac: float) -> int:
    """The seeded fraction of a whole run's count of that kind, as an operation number."""
    total = counts.get(kind, 0)
    assert total > 0, f"a whole run makes no {kind} operation on the rig: {counts}"
    return 1 + int(frac * max(0, int(total * MARGIN) - 1))


def ids(cuts):
    return [f"{k}-{f:.3f}" for k, f in cuts]


# --- running -------------------------------------------------------------------------------


def run_on_rig(argv_for, backing: Path, mount: Path, log: Path, cut=None) -> tuple[int, dict]:
    """Mount the rig over `backing`, run `argv_for(mount)` in a session of its own, and
    unmount. Returns (exit code, the rig's stats). Whatever is left of the session is
    killed: decode workers outlive a parent killed with SIGKILL."""
    with PowerCutRig(backing, mount, cut=cut) as rig:
        with open(log, "w") as out:
            proc = subprocess.Popen(argv_for(mount), stdout=out, stderr=out,
                                    start_new_session=True)
            rig.set_victim(proc.pid)
            try:
                rc = proc.wait(timeout=CUT_TIMEOUT)
            finally:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if cut is not None:
            rig.wait_cut()
    stats = rig.stats
    assert not os.path.ismount(mount), "the rig left its mount behind"
    stats["pid"] = proc.pid
    return rc, stats


def assert_cut(rc: int, stats: dict, cut, log: Path) -> dict:
    c = stats.get("cut")
    assert c, (f"{cut} was never reached (the run made {stats.get('counts')}): "
               + log.read_text()[-1500:])
    assert rc == -signal.SIGKILL, f"the run was not killed by the cut (exit {rc})"
    assert c["killed"] == stats["pid"]
    assert (c["kind"] == cut[0] or cut[0] == "any") and c["hits"] == cut[1]
    assert len(cut) < 3 or cut[2] in c["path"]
    return c


def hashes_of(data: bytes) -> str:
    return xxhash.xxh3_128_hexdigest(data)


def final_files(dest: Path) -> dict[str, bytes]:
    """Archive content under final names: not partials, not the state folders, not the
    empty file the destination's write probe makes and removes (a cut between the two
    leaves it: see probes())."""
    out = {}
    for p in dest.rglob("*"):
        rel = p.relative_to(dest)
        if p.is_file() and not set(rel.parts) & set(STATE) \
                and not p.name.endswith(".ingest-partial") and p not in probes(dest):
            out[rel.as_posix()] = p.read_bytes()
    return out


def probes(dest: Path) -> list[Path]:
    """Left-over write probes of ingest.preflight (created and unlinked at once)."""
    return [p for p in dest.glob(PROBE + "*") if p.is_file() and p.stat().st_size == 0]


def catalog_rows(dest: Path) -> list[tuple[str, int, str, str, str | None]]:
    path = dest / ".ingest" / "catalog.sqlite"
    if not path.exists():
        return []
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        if not db.execute("SELECT 1 FROM sqlite_master WHERE name='files'").fetchone():
            return []  # cut before the schema's first commit reached the disk
        return db.execute("SELECT path, size, xxh3_128, status, last_result FROM files"
                          ).fetchall()
    finally:
        db.close()


def state_files_whole(dest: Path) -> list[str]:
    """Reports and ASC MHL files are written atomically (fsync, rename): each that exists is
    whole. Returns the ones that are not."""
    bad = []
    for p in [*(dest / ".ingest" / "reports").glob("*"), *(dest / "ascmhl").glob("*")]:
        if not p.is_file() or p.name.endswith(".tmp"):
            continue
        data = p.read_bytes()
        try:
            if p.suffix == ".json":
                json.loads(data)
            elif p.suffix in (".mhl", ".xml"):
                ET.fromstring(data)
            elif not data:
                raise ValueError("empty")
        except (ValueError, ET.ParseError):
            bad.append(p.relative_to(dest).as_posix())
    return bad


def short_previews(dest: Path) -> list[str]:
    """Previews under their final name that are not a whole JPEG."""
    out = []
    for p in (dest / ".ingest" / "previews").rglob("*.jpg"):
        data = p.read_bytes()
        if len(data) < 4 or not data.startswith(b"\xff\xd8") or not data.rstrip(b"\0").endswith(
                b"\xff\xd9"):
            out.append(p.relative_to(dest).as_posix())
    return out


def dropped_proof(c: dict, backing: Path) -> str:
    """Show that the cut lost unsynced data: the file the cut op was about (or any file)
    that the rig held unsynced, and what the disk kept of it."""
    notes = []
    for d in c["dropped"]:
        if not d["bytes"]:
            continue
        on_disk = backing / d["path"].lstrip("/")
        size = on_disk.stat().st_size if on_disk.is_file() else None
        notes.append((d["path"], d["bytes"], size))
    kept = "; ".join(f"{p}: {b} B unsynced, {s if s is not None else 'no'} B on disk"
                     for p, b, s in notes[:3])
    return f"{len(notes)} files lost unsynced data ({kept})" if notes else "nothing unsynced"


# --- the rig itself ------------------------------------------------------------------------

VICTIM = """
import os, sqlite3, sys
m = sys.argv[1]
def put(name, data, sync):
    fd = os.open(os.path.join(m, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, data)
    if sync:
        os.fsync(fd)
    os.close(fd)
db = sqlite3.connect(os.path.join(m, "cat.sqlite"))
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA synchronous=FULL")
with db:
    db.execute("CREATE TABLE t(x)")
    db.execute("INSERT INTO t VALUES (42)")  # committed to the WAL (fsynced), not checkpointed
put("synced.bin", b"s" * 100_000, True)
put("unsynced.tmp", b"u" * 100_000, False)
os.rename(os.path.join(m, "unsynced.tmp"), os.path.join(m, "renamed.bin"))
with open(os.path.join(m, "renamed.bin"), "rb") as fh:
    assert fh.read() == b"u" * 100_000  # the page cache has it
print("about to fsync", flush=True)
put("last.bin", b"l" * 5000, True)  # the cut falls on this fsync
put("after.bin", b"never", True)
os._exit(0)  # no checkpoint at exit: the row stays in the WAL
"""


def test_the_rig_drops_what_was_not_synced(tmp_path):
    """The rig's own contract, without ingest: names reach the disk at once, data only with
    its file's fsync; the cut kills the process before the chosen operation; SQLite in WAL
    mode works through the mount and keeps what it committed."""
    script = tmp_path / "victim.py"
    script.write_text(VICTIM)
    backing = tmp_path / "disk"
    backing.mkdir()
    with PowerCutRig(backing, tmp_path / "count") as counting, \
            open(tmp_path / "count.log", "w") as out:
        # Counting only: the whole script runs; what it fsyncs, in order.
        done = subprocess.run([sys.executable, str(script), str(tmp_path / "count")],
                              stdout=out, stderr=out, timeout=CUT_TIMEOUT)
        assert done.returncode == 0, (tmp_path / "count.log").read_text()
    fsyncs = counting.stats["counts"]["fsync"]
    shutil.rmtree(backing)
    backing.mkdir()
    cut = ("fsync", fsyncs - 1)  # the fsync of last.bin; after.bin's is the last one
    rc, stats = run_on_rig(lambda mount: [sys.executable, str(script), str(mount)], backing,
                           tmp_path / "mnt", tmp_path / "cut.log", cut=cut)
    c = assert_cut(rc, stats, cut, tmp_path / "cut.log")
    assert "about to fsync" in (tmp_path / "cut.log").read_text()
    assert c["path"] == "/last.bin"
    dropped = {d["path"]: d["bytes"] for d in c["dropped"]}
    assert dropped["/last.bin"] == 5000 and dropped["/renamed.bin"] == 100_000
    assert (backing / "synced.bin").read_bytes() == b"s" * 100_000
    assert (backing / "renamed.bin").stat().st_size == 0  # the rename came, the data did not
    assert not (backing / "unsynced.tmp").exists()
    assert (backing / "last.bin").stat().st_size == 0
    assert not (backing / "after.bin").exists()
    assert (backing / "cat.sqlite-wal").stat().st_size > 0  # the row is in the WAL only
    db = sqlite3.connect(backing / "cat.sqlite")
    try:
        assert db.execute("SELECT x FROM t").fetchall() == [(42,)]
    finally:
        db.close()


# --- offload -------------------------------------------------------------------------------


def offload_argv(card: Path, b: Path, report: Path):
    return lambda mount: [*INGEST, "offload", str(card), str(mount), str(b), "--jobs", "2",
                          "--json", str(report)]


@pytest.fixture(scope="module")
def offload_counts(built_card, tmp_path_factory) -> dict:
    """A whole offload through the rig, no cut: its operation counts and how it ends."""
    src, manifest = built_card
    work = tmp_path_factory.mktemp("powercut-count")
    card = work / "card"
    shutil.copytree(src, card, symlinks=True)
    a, b = work / "A", work / "B"
    a.mkdir()
    b.mkdir()
    rc, stats = run_on_rig(offload_argv(card, b, work / "r.json"), a, work / "mnt",
                           work / "log")
    report = json.loads((work / "r.json").read_text())
    statuses = {f["path"]: f["status"] for f in report["files"]}
    assert rc == 1 and statuses[manifest.damaged[0]] == "damaged_on_card", \
        (work / "log").read_text()[-1500:]
    assert {s for p, s in statuses.items() if p != manifest.damaged[0]} <= SAFE
    return {"counts": stats["counts"], "rc": rc}


@pytest.mark.parametrize("kind,frac", OFFLOAD_CUTS, ids=ids(OFFLOAD_CUTS))
def test_power_cut_during_offload(card, manifest, tmp_path, offload_counts, kind, frac,
                                  reliability):
    cut = (kind, point(offload_counts["counts"], kind, frac))
    a, b = tmp_path / "A", tmp_path / "B"
    a.mkdir()
    b.mkdir()
    hashes = card_files(card)
    card_hashes = set(hashes.values())
    before = snapshot(card)
    log = tmp_path / "cut.log"

    rc, stats = run_on_rig(offload_argv(card, b, tmp_path / "cut.json"), a, tmp_path / "mnt",
                           log, cut=cut)
    c = assert_cut(rc, stats, cut, log)
    proof = dropped_proof(c, a)
    if kind == "fsync" and c["path"].endswith(".ingest-partial"):
        # The copy being made durable was lost with the page cache: the disk kept none of it.
        [d] = [d for d in c["dropped"] if d["path"] == c["path"]]
        assert d["bytes"] > 0 and (a / c["path"].lstrip("/")).stat().st_size == 0

    # What the disk holds now.
    seen = {}
    for dest in (a, b):
        finals = final_files(dest)
        wrong = {rel: len(data) for rel, data in finals.items()
                 if hashes_of(data) not in card_hashes}
        assert not wrong, f"final names in {dest.name} that are not a card file: {wrong}"
        rows = catalog_rows(dest)
        for path, size, digest, _status, _last in rows:
            data = finals.get(path)
            assert data is not None, f"a row of {dest.name} names a missing file: {path}"
            assert len(data) == size and hashes_of(data) == digest, \
                f"a row of {dest.name} names a file of other bytes: {path}"
        assert not state_files_whole(dest), state_files_whole(dest)
        seen[dest.name] = (len(rows), len(finals))
    previews_after_cut = short_previews(a)
    assert not previews_after_cut, f"previews not whole after the cut: {previews_after_cut}"
    assert snapshot(card) == before

    # The same command again, through a fresh mount that is not cut.
    report_path = tmp_path / "rerun.json"
    rc2, stats2 = run_on_rig(offload_argv(card, b, report_path), a, tmp_path / "mnt",
                             tmp_path / "rerun.log")
    assert not stats2.get("cut")
    assert rc2 == offload_counts["rc"], (tmp_path / "rerun.log").read_text()[-2000:]
    report = json.loads(report_path.read_text())
    statuses = {f["path"]: f["status"] for f in report["files"]}
    assert sorted(statuses) == sorted(hashes)
    assert {p for p, s in statuses.items() if s not in SAFE} == set(manifest.damaged)
    assert statuses[manifest.damaged[0]] == "damaged_on_card"
    mount_of = {str(tmp_path / "mnt"): a, str(b): b}
    for f in report["files"]:
        copies = [c2 for c2 in f["copies"] if c2["verified"]]
        assert sorted(c2["destination"] for c2 in copies) == sorted(mount_of), f
        for c2 in copies:
            data = (mount_of[c2["destination"]] / c2["path"]).read_bytes()
            assert hashes_of(data) == hashes[f["path"]]
    for dest in (a, b):
        rows = catalog_rows(dest)
        finals = final_files(dest)
        assert {r[2] for r in rows} == card_hashes  # one proven row per card file
        assert {r[3] for r in rows} <= GOOD_ROWS, Counter(r[3] for r in rows)
        for path, size, digest, _s, _l in rows:
            assert hashes_of(finals[path]) == digest and len(finals[path]) == size
        assert not [p for p in dest.rglob("*.ingest-partial")]
    assert not short_previews(a)
    assert snapshot(card) == before
    lost = count_lost(card, _on_backing(report, tmp_path / "mnt", a))
    reliability.row(
        area="power cut",
        fault=f"power cut before {c['kind']} #{c['n']} of an offload ({cut[0]} "
              f"{frac:.3f} of a whole run)",
        setup=f"{len(hashes)}-file card to 2 destinations, A on the power-cut rig (data "
              "durable only on fsync, names at once), B a plain folder; then the same "
              "command on a fresh mount",
        expected="after the cut: no final name holds other bytes than a card file's (none "
                 "short or empty), no row names a missing or different file; re-run: all "
                 "verified/duplicate in both, damaged JPEG damaged_on_card, exit 1",
        observed=(f"cut at {c['path']} ({c['any']} ops in); {proof}; rows/final files A "
                  f"{seen['A'][0]}/{seen['A'][1]}, B {seen['B'][0]}/{seen['B'][1]}, "
                  f"invariants held; re-run exit {rc2}: "
                  + ", ".join(f"{k} {v}" for k, v in sorted(Counter(statuses.values()).items()))),
        lost=lost)
    assert lost == 0


def _on_backing(report: dict, mount: Path, backing: Path) -> dict:
    """The report names the rig's mount; after the unmount its files are in the backing."""
    out = json.loads(json.dumps(report))
    for f in out["files"]:
        for c in f["copies"]:
            if c["destination"] == str(mount):
                c["destination"] = str(backing)
    return out


# --- verify --repair -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def archives(built_card, tmp_path_factory) -> tuple[Path, Path, Path]:
    """Two archives of the sample card, made once: (card, A, B)."""
    src, _ = built_card
    work = tmp_path_factory.mktemp("powercut-archives")
    card = work / "card"
    shutil.copytree(src, card, symlinks=True)
    a, b = work / "A", work / "B"
    a.mkdir()
    b.mkdir()
    r = subprocess.run([*INGEST, "offload", str(card), str(a), str(b), "--jobs", "2"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stdout[-1500:] + r.stderr[-1500:]
    return card, a, b


def damaged_archives(archives, into: Path, damaged_jpeg: str) -> tuple[Path, Path, dict]:
    """Copies of the two archives, with four copies in A damaged: two changed in place, one
    cut short, one deleted. Returns (A, B, path -> the planted bytes, None if deleted)."""
    _, a0, b0 = archives
    a, b = into / "A", into / "B"
    shutil.copytree(a0, a, symlinks=True)
    shutil.copytree(b0, b, symlinks=True)
    for stale in (a / ".ingest" / "lock", b / ".ingest" / "lock"):
        stale.unlink(missing_ok=True)
    paths = sorted(p for p, *_ in catalog_rows(a)
                   if not p.endswith(Path(damaged_jpeg).name))
    planted: dict[str, bytes | None] = {}
    for i, rel in enumerate(paths[1::6][:4]):
        target = a / rel
        data = bytearray(target.read_bytes())
        if i == 2:
            target.unlink()
            planted[rel] = None
            continue
        if i == 1:
            data = data[:len(data) // 2]
        else:
            mid = len(data) // 2
            data[mid:mid + 16] = bytes(x ^ 0x5A for x in data[mid:mid + 16])
        target.write_bytes(bytes(data))
        planted[rel] = bytes(data)
    assert len(planted) == 4
    return a, b, planted


def repair_argv(b: Path, report: Path):
    return lambda mount: [*INGEST, "verify", str(mount), str(b), "--repair", "--jobs", "2",
                          "--json", str(report)]


@pytest.fixture(scope="module")
def repair_counts(archives, manifest_damaged, tmp_path_factory) -> dict:
    """A whole `verify --repair` through the rig, no cut: its counts and how it ends."""
    work = tmp_path_factory.mktemp("powercut-repair-count")
    a, b, planted = damaged_archives(archives, work, manifest_damaged)
    rc, stats = run_on_rig(repair_argv(b, work / "r.json"), a, work / "mnt", work / "log")
    report = json.loads((work / "r.json").read_text())
    statuses = Counter((f["path"], f["status"]) for f in report["files"])
    assert {p for (p, s) in statuses if s == "recopied"} == set(planted), statuses
    return {"counts": stats["counts"], "rc": rc,
            "flagged": sorted({(p, s) for (p, s) in statuses if s not in SAFE})}


@pytest.fixture(scope="module")
def manifest_damaged(built_card) -> str:
    return built_card[1].damaged[0].rpartition("/")[2]


def check_after_repair_cut(a: Path, planted: dict, card_hashes: set[str]) -> dict:
    """The repair's invariants on the archive the cut left. Returns what was seen."""
    finals = final_files(a)
    planted_hashes = {hashes_of(v) for v in planted.values() if v is not None}
    for rel, data in finals.items():
        ok = hashes_of(data) in card_hashes or (rel in planted and data == planted[rel])
        assert ok, f"final name {rel} holds {len(data)} bytes that are no card file's"
    kept = {}
    qroot = a / ".ingest" / "quarantine"
    for p in qroot.rglob("*") if qroot.is_dir() else []:
        if p.name == "quarantine.jsonl":
            for line in p.read_text().splitlines():
                json.loads(line)  # every note is a whole line
        elif p.is_file():
            data = p.read_bytes()
            assert hashes_of(data) in planted_hashes, f"the quarantine holds other bytes: {p}"
            kept[hashes_of(data)] = p
    restored = 0
    for path, size, digest, _status, _last in catalog_rows(a):
        data = finals.get(path)
        if path in planted:
            if data is None:
                # Only between the move into the quarantine and the rename into place, or
                # the file planted as deleted.
                assert planted[path] is None or hashes_of(planted[path]) in kept, path
            elif data != planted[path]:
                assert hashes_of(data) == digest and len(data) == size, path
                restored += 1
            continue
        assert data is not None, f"a row names a missing file: {path}"
        assert len(data) == size and hashes_of(data) == digest, f"row of other bytes: {path}"
    assert not state_files_whole(a), state_files_whole(a)
    return {"restored": restored, "kept": len(kept)}


@pytest.mark.parametrize("kind,frac", REPAIR_CUTS, ids=ids(REPAIR_CUTS))
def test_power_cut_during_repair(archives, manifest_damaged, repair_counts, tmp_path, kind,
                                 frac, reliability):
    cut = (kind, point(repair_counts["counts"], kind, frac))
    card = archives[0]
    hashes = card_files(card)
    card_hashes = set(hashes.values())
    a, b, planted = damaged_archives(archives, tmp_path, manifest_damaged)
    log = tmp_path / "cut.log"

    rc, stats = run_on_rig(repair_argv(b, tmp_path / "cut.json"), a, tmp_path / "mnt", log,
                           cut=cut)
    c = assert_cut(rc, stats, cut, log)
    proof = dropped_proof(c, a)
    if kind == "fsync" and c["path"].endswith(".ingest-partial"):
        [d] = [d for d in c["dropped"] if d["path"] == c["path"]]
        assert d["bytes"] > 0 and (a / c["path"].lstrip("/")).stat().st_size == 0
    seen = check_after_repair_cut(a, planted, card_hashes)

    report_path = tmp_path / "rerun.json"
    rc2, stats2 = run_on_rig(repair_argv(b, report_path), a, tmp_path / "mnt",
                             tmp_path / "rerun.log")
    assert not stats2.get("cut")
    assert rc2 == repair_counts["rc"], (tmp_path / "rerun.log").read_text()[-2000:]
    report = json.loads(report_path.read_text())
    flagged = sorted({(f["path"], f["status"]) for f in report["files"]
                      if f["status"] not in SAFE})
    assert flagged == repair_counts["flagged"]  # the damaged JPEG, as in a clean run
    statuses = Counter(f["status"] for f in report["files"])
    # Every catalogued copy holds its original bytes again.
    finals = final_files(a)
    bad = [path for path, size, digest, _s, _l in catalog_rows(a)
           if path not in finals or hashes_of(finals[path]) != digest]
    still_planted = [p for p in planted if finals.get(p) == planted[p]]
    assert not bad and not still_planted, (bad, still_planted)
    assert not list(a.rglob("*.ingest-partial"))
    lost = len(bad)
    reliability.row(
        area="power cut",
        fault=f"power cut before {c['kind']} #{c['n']} of verify --repair ({cut[0]} "
              f"{frac:.3f} of a whole run)",
        setup="archive A (on the power-cut rig) with 4 damaged copies (2 changed, 1 cut "
              "short, 1 deleted), sibling B plain; `verify A B --repair`, then the same "
              "command on a fresh mount",
        expected="after the cut: every final name holds a card file's bytes or the damaged "
                 "bytes it had, a damaged file is missing only while its bytes are in the "
                 "quarantine, quarantine notes whole; re-run: every copy restored, exit as a "
                 "clean run",
        observed=(f"cut at {c['path']} ({c['any']} ops in); {proof}; {seen['restored']} of "
                  f"{len(planted)} restored and {seen['kept']} kept in the quarantine at the "
                  f"cut, invariants held; re-run exit {rc2}: "
                  + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))),
        lost=lost)
    assert lost == 0



def test_a_cut_after_the_previews_leaves_none_empty(card, tmp_path, offload_counts,
                                                     reliability):
    """Cut near the end of an offload (before the first report is renamed into place, after
    every copy, row and preview). Previews were once renamed into place unsynced: the cut left
    them empty under their names, and the re-run trusted them for a duplicate, for ever."""
    cut = ("rename", 1, "/.ingest/reports/")
    a, b = tmp_path / "A", tmp_path / "B"
    a.mkdir()
    b.mkdir()
    log = tmp_path / "cut.log"
    rc, stats = run_on_rig(offload_argv(card, b, tmp_path / "cut.json"), a, tmp_path / "mnt",
                           log, cut=cut)
    c = assert_cut(rc, stats, cut, log)
    assert len(catalog_rows(a)) == len(card_files(card))  # the cut came after every copy
    written = list((a / ".ingest" / "previews").rglob("*.jpg"))
    assert written, "no preview was written before the cut: it came too early"
    empty_after_cut = short_previews(a)

    report_path = tmp_path / "rerun.json"
    rc2, _ = run_on_rig(offload_argv(card, b, report_path), a, tmp_path / "mnt",
                        tmp_path / "rerun.log")
    assert rc2 == offload_counts["rc"]
    still = short_previews(a)
    reliability.row(
        area="power cut",
        fault=f"power cut before rename #{c['n']} of an offload (its first report): after "
              "every copy, catalog row and preview",
        setup="sample card to A (power-cut rig) and B; then the same command on a fresh mount",
        expected="no preview under its final name is empty or cut short, after the cut or "
                 "after the re-run",
        observed=f"{len(written)} previews on disk, {len(empty_after_cut)} not whole after "
                 f"the cut; {len(still)} after the re-run (exit {rc2})",
        lost=0)
    assert not empty_after_cut and not still, (empty_after_cut, still)


def test_a_cut_after_a_repair_keeps_its_records(archives, manifest_damaged,
                                                tmp_path, reliability):
    """Cut before `verify --repair` renames its ASC MHL manifest into place: after the run's
    last catalog commit, while the catalog is still open (not checkpointed by its close).
    Every repair it recorded must be on disk. At synchronous=NORMAL the WAL
    is synced only at a checkpoint, and such a cut once lost the whole run's records."""
    cut = ("rename", 1, "/ascmhl/")
    a, b, planted = damaged_archives(archives, tmp_path, manifest_damaged)
    log = tmp_path / "cut.log"
    rc, stats = run_on_rig(repair_argv(b, tmp_path / "cut.json"), a, tmp_path / "mnt", log,
                           cut=cut)
    c = assert_cut(rc, stats, cut, log)
    check_after_repair_cut(a, planted, set(card_files(archives[0]).values()))
    results = {p: last for p, _size, _digest, _status, last in catalog_rows(a)}
    recorded = {p: results.get(p) for p in planted}
    reliability.row(
        area="power cut",
        fault=f"power cut before rename #{c['n']} of verify --repair (its ASC MHL "
              "manifest), after its last catalog commit",
        setup="archive A (power-cut rig) with 4 damaged copies, sibling B; `verify A B "
              "--repair`",
        expected="the catalog on disk records every repair of the run (last_result "
                 "recopied)",
        observed=f"last_result of the repaired files on disk: {sorted(recorded.values())}",
        lost=0)
    assert set(recorded.values()) == {"recopied"}, recorded
