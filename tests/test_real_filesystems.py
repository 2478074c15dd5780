"""Real file systems around an offload: a camera card that is a real exFAT volume, a network
share over sshfs (one that works, one that drops mid-run, one that refuses the shared memory
SQLite's WAL needs), and a case-insensitive destination (tests/test_hostile.py).

Nothing here is simulated: the card is an exFAT image on a loop device mounted by exfat-fuse,
the share is a private sshd on a loopback port mounted by sshfs, and `ingest` runs as the
command line does. Each test skips, with the reason, only where the tools or devices are absent.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import xxhash
from reliability_table import card_files, count_lost, reliability_fixture  # noqa: F401
from rigs import exfat, fuse_missing, nolocks, sshfs

from conftest import partials, snapshot

AREA = "card and share file systems"
SAFE = {"verified", "recopied", "duplicate"}


def ingest(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ingest", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=Path(__file__).parents[1])


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def final_files(root: Path) -> list[Path]:
    """Files under a final name in a destination: not ingest's state, history or partials."""
    return [p for p in root.rglob("*") if p.is_file() and not p.name.endswith(".ingest-partial")
            and not {".ingest", "ascmhl"} & set(p.relative_to(root).parts)]


def journal(catalog: Path) -> str:
    """The journal mode the catalog file itself records (header bytes 18-19: 2 is WAL, 1 a
    rollback journal), read straight from the file: no SQLite connection that could change it."""
    with open(catalog, "rb") as fh:
        header = fh.read(20)
    return {1: "rollback journal", 2: "WAL"}.get(header[18], f"unknown ({header[18]})")


def catalog_state(root: Path) -> dict:
    """The catalog's files (and any moved aside), as bytes and times: not the lock file, whose
    text each run rewrites."""
    return {k: v for k, v in snapshot(root / ".ingest").items() if k.startswith("catalog.")}


def last_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[-1]


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture()
def exfat_card(built_card, tmp_path):
    """The sample card on a real exFAT volume, mounted read-only as a card reader would."""
    why = exfat.missing()
    if why:
        pytest.skip(f"no exFAT loop mount here: {why}")
    src, manifest = built_card
    vol = exfat.ExfatVolume(tmp_path / "card.img", tmp_path / "card")
    vol.create(64, "EOS_DIGITAL")
    try:
        vol.attach()
        vol.mount_fs()
        exfat.fill(vol, src)
        vol.remount(read_only=True)
        yield vol, manifest
    finally:
        vol.close()


@pytest.fixture()
def ssh_server(tmp_path):
    why = sshfs.missing()
    if why:
        pytest.skip(f"no sshfs share here: {why}")
    with sshfs.sshd_server(tmp_path / "sshd") as server:
        yield server


@pytest.fixture()
def share(ssh_server, tmp_path):
    """A folder served by the private sshd, mounted over sshfs as it is by default."""
    with sshfs.sshfs_mount(ssh_server, tmp_path / "served", tmp_path / "share") as mounted:
        yield mounted


@pytest.fixture()
def no_shm_share(ssh_server, tmp_path):
    """The same share mounted with -o direct_io: the kernel then refuses a shared mmap of any
    file there, so SQLite cannot map WAL's -shm index (what network file systems do)."""
    with sshfs.sshfs_mount(ssh_server, tmp_path / "served", tmp_path / "share",
                           options=("direct_io",)) as mounted:
        yield mounted


# --- the exFAT card ------------------------------------------------------------------------------


def test_offload_from_a_real_exfat_card(exfat_card, tmp_path, reliability):
    vol, manifest = exfat_card
    card = vol.mount
    dests = [tmp_path / "dest-A", tmp_path / "dest-B"]
    for d in dests:
        d.mkdir()
    hashes = card_files(card)
    before, image_before = snapshot(card), sha256(vol.image)
    report_path = tmp_path / "report.json"
    r = ingest("offload", str(card), *map(str, dests), "--json", str(report_path), "--jobs", "2",
               "--no-previews")
    report = json.loads(report_path.read_text())
    files = {f["path"]: f for f in report["files"]}
    unchanged = snapshot(card) == before
    vol.close()  # unmounted: everything the mount held is now in the image
    image_unchanged = sha256(vol.image) == image_before
    wrong = {p: f["status"] for p, f in files.items()
             if f["status"] != ("damaged_on_card" if p in manifest.damaged else "verified")}
    lost = count_lost(hashes, report)
    reliability.row(
        area=AREA, fault="the card is a real exFAT volume (exfat-fuse, read-only loop mount)",
        setup=f"sample card ({len(manifest.files)} files, one JPEG damaged on the card) on a "
              "64 MiB exFAT image; 2 plain destinations; decode on",
        expected="every file verified in both, the damaged JPEG damaged_on_card, exit 1; "
                 "the card and its image unchanged",
        observed=f"exit {r.returncode}; {len(files) - len(wrong)} of {len(files)} as expected"
                 + (f", unexpected: {wrong}" if wrong else "")
                 + f"; card files {'unchanged' if unchanged else 'CHANGED'}, image "
                   f"{'unchanged' if image_unchanged else 'CHANGED'}", lost=lost)
    assert r.returncode == 1, r.stderr
    assert sorted(files) == sorted(manifest.files)
    assert wrong == {}
    for f in files.values():
        assert [c["destination"] for c in f["copies"]] == [str(d) for d in dests]
        for c in f["copies"]:
            assert c["verified"], (f["path"], c)
            copy = Path(c["destination"]) / c["path"]
            assert xxhash.xxh3_128_hexdigest(copy.read_bytes()) == hashes[f["path"]]
    assert unchanged and image_unchanged
    assert lost == 0


# --- the network share ---------------------------------------------------------------------------


def test_offload_to_an_sshfs_share_and_a_plain_folder(card, share, tmp_path, reliability):
    dest, plain = share.mount / "archive", tmp_path / "plain"
    dest.mkdir()
    plain.mkdir()
    hashes = card_files(card)
    report_path = tmp_path / "report.json"
    r = ingest("offload", str(card), str(dest), str(plain), "--json", str(report_path),
               "--no-decode")
    report = json.loads(report_path.read_text())
    served = share.served / "archive"
    statuses = sorted({f["status"] for f in report["files"]})
    mode = journal(served / ".ingest" / "catalog.sqlite")
    lost = count_lost(hashes, report)
    reliability.row(
        area=AREA, fault="destination A is a network share (sshfs over a loopback sshd)",
        setup="sample card, --no-decode; A on the share, B a plain folder",
        expected="both complete, every copy verified, exit 0",
        observed=f"exit {r.returncode}; statuses {statuses}; destination errors "
                 f"{[d.get('error') for d in report['destinations']]}; the share's catalog "
                 f"in {mode} mode", lost=lost)
    assert r.returncode == 0, r.stderr
    assert statuses == ["verified"]
    assert len(report["files"]) == len(hashes)
    for f in report["files"]:
        assert [c["verified"] for c in f["copies"]] == [True, True]
    for f in report["files"]:  # read on the server's side, not through the mount
        on_server = served / f["copies"][0]["path"]
        assert xxhash.xxh3_128_hexdigest(on_server.read_bytes()) == hashes[f["path"]]
    assert partials(served) == [] and partials(plain) == []
    assert lost == 0


def test_share_drops_mid_run(card, share, tmp_path, reliability):
    dest, plain = share.mount / "archive", tmp_path / "plain"
    dest.mkdir()
    plain.mkdir()
    served = share.served / "archive"
    hashes = card_files(card)
    report_path = tmp_path / "report.json"
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    after = 3
    with open(out, "w") as o, open(err, "w") as e:
        proc = subprocess.Popen([sys.executable, "-m", "ingest", "offload", str(card), str(dest),
                                 str(plain), "--json", str(report_path), "--no-decode"],
                                stdout=o, stderr=e, cwd=Path(__file__).parents[1])
    # The share goes away once it holds `after` files under their final names, watched from
    # the server's side.
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        if served.is_dir() and len(final_files(served)) >= after:
            share.drop()
            break
        time.sleep(0.002)
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    stderr = err.read_text()
    report = json.loads(report_path.read_text()) if report_path.exists() else None
    on_share = final_files(served)
    damaged = [p.relative_to(served).as_posix() for p in on_share
               if xxhash.xxh3_128_hexdigest(p.read_bytes()) not in set(hashes.values())]
    errors = {d["root"]: d.get("error") for d in report["destinations"]} if report else {}
    plain_copies = {}
    if report:
        for f in report["files"]:
            plain_copies[f["path"]] = [c for c in f["copies"]
                                       if c["destination"] == str(plain) and c["verified"]]
    plain_complete = bool(report) and len(plain_copies) == len(hashes) and all(
        len(cs) == 1 and xxhash.xxh3_128_hexdigest((plain / cs[0]["path"]).read_bytes())
        == hashes[p] for p, cs in plain_copies.items())
    lost = count_lost(hashes, report) if report else len(hashes)
    reliability.row(
        area=AREA, fault=f"the network share drops mid-run (sshfs killed after {after} files)",
        setup="sample card, --no-decode; A on an sshfs share, B a plain folder",
        expected="a report all the same; A reported with an error, B complete, exit 1; "
                 "nothing damaged under a final name on the share",
        observed=(f"dropped: {share.dropped}; exit {code}; " + (
            f"report written; A error: {errors.get(str(dest))!r}; B complete: "
            f"{plain_complete}; " if report else
            f"NO report; stderr: {last_line(stderr)[:200]!r}; ")
            + f"{len(on_share)} final files on the share, {len(damaged)} damaged"),
        lost=lost)
    assert share.dropped, "the run ended before the share held enough files to drop it"
    assert report is not None, f"no report; exit {code}; stderr:\n{stderr}"
    assert "Traceback" not in stderr, stderr
    assert code == 1, stderr
    assert errors.get(str(dest)), errors
    assert errors.get(str(plain)) is None, errors
    assert plain_complete
    assert damaged == []
    assert lost == 0


# --- SQLite on a file system that refuses what WAL needs ----------------------------------------


def test_catalog_on_a_share_that_refuses_shared_memory(card, manifest, no_shm_share, tmp_path,
                                                       reliability):
    """Before: `disk I/O error` and a traceback (exit 1) on the first run, and on the next the
    catalog moved aside as "corrupt". Now the catalog falls back to a rollback journal, and
    offload, a re-run, accept, status and verify all work there."""
    share = no_shm_share
    dest, plain = share.mount / "archive", tmp_path / "plain"
    dest.mkdir()
    plain.mkdir()
    catalog = share.served / "archive" / ".ingest" / "catalog.sqlite"
    hashes = card_files(card)
    damaged = manifest.damaged[0]
    steps: list[tuple[str, subprocess.CompletedProcess]] = []

    def step(name: str, *args: str) -> subprocess.CompletedProcess:
        r = ingest(*args)
        steps.append((name, r))
        return r

    first = step("offload", "offload", str(card), str(dest), str(plain), "--json",
                 str(tmp_path / "first.json"), "--jobs", "2", "--no-previews")
    mode = journal(catalog) if catalog.exists() else "none"
    accept = step("accept", "accept", str(card), str(dest), str(plain), "--file", damaged,
                  "--reason", "damaged on the card by the test fixture")
    # --min-copies 1: the plain folder shares the card's disk, so only the share's copy counts
    # toward keeping an accepted loss accepted.
    again = step("re-run", "offload", str(card), str(dest), str(plain), "--json",
                 str(tmp_path / "again.json"), "--jobs", "2", "--no-previews",
                 "--min-copies", "1")
    status = step("status", "status", "--min-copies", "1", str(card), str(dest), "--json",
                  str(tmp_path / "status.json"))
    verify = step("verify", "verify", str(dest), "--json", str(tmp_path / "verify.json"))
    aside = sorted(p.name for p in catalog.parent.glob("catalog.sqlite.corrupt-*"))
    report = json.loads((tmp_path / "first.json").read_text())
    by_status = {f["path"]: f["status"] for f in report["files"]}
    lost = count_lost(hashes, report)
    reliability.row(
        area=AREA, fault="the share refuses a shared mmap (sshfs -o direct_io): SQLite's WAL "
                         "index cannot be mapped",
        setup="sample card, decode on; A on the share, B plain; then accept of the damaged "
              "JPEG, a re-run and status (--min-copies 1), and verify of A",
        expected="the catalog falls back to a rollback journal; every command works, no "
                 "traceback, nothing moved aside as corrupt (before: `disk I/O error` "
                 "traceback, exit 1, then the catalog moved aside)",
        observed="; ".join(f"{n} exit {r.returncode}" + (
            f" ({last_line(r.stderr)[:120]})" if r.returncode not in (0, 1) or "Traceback"
            in r.stderr else "") for n, r in steps)
                 + f"; catalog in {mode} mode; moved aside: {aside or 'none'}", lost=lost)
    for _, r in steps:
        assert "Traceback" not in r.stderr, r.stderr
    assert first.returncode == 1, first.stderr  # the damaged JPEG, nothing else
    assert {p: s for p, s in by_status.items() if s != "verified"} == {damaged: "damaged_on_card"}
    assert mode == "rollback journal"
    assert accept.returncode == 0, accept.stderr
    assert again.returncode == 0, again.stderr
    rerun = {f["path"]: f["status"] for f in
             json.loads((tmp_path / "again.json").read_text())["files"]}
    assert set(rerun.values()) == {"duplicate", "accepted"} and rerun[damaged] == "accepted"
    assert status.returncode == 0, status.stderr + status.stdout
    assert verify.returncode == 0, verify.stderr + verify.stdout
    checked = json.loads((tmp_path / "verify.json").read_text())["summary"]["by_status"]
    assert set(checked) == {"verified", "accepted"}, checked
    assert aside == []
    assert lost == 0


@pytest.fixture()
def no_locks(tmp_path):
    """A FUSE file system that refuses POSIX record locks (ENOLCK) over a backing folder."""
    why = fuse_missing()
    if why:
        pytest.skip(f"no FUSE file system without locks here: {why}")
    with nolocks.nolocks_mount(tmp_path / "backing", tmp_path / "nolocks") as mount:
        yield tmp_path / "backing", mount


def test_catalog_where_file_locks_are_refused(card, no_locks, tmp_path, reliability):
    """Where SQLite cannot lock its file at all (NFS without its lock service), no journal mode
    keeps the catalog safe: every command that writes a catalog stops with one plain line and
    exit 2, before any file is touched, and a catalog already there is not taken for corrupt."""
    backing, mount = no_locks
    new = mount / "new"
    new.mkdir()
    started = time.monotonic()
    first = ingest("offload", str(card), str(new), "--json", str(tmp_path / "r.json"),
                   "--no-decode")
    seconds = time.monotonic() - started
    # A catalog written where locks work, then used through the mount that refuses them.
    (backing / "old").mkdir()
    seeded = ingest("offload", str(card), str(backing / "old"), "--no-decode")
    before = catalog_state(backing / "old")
    verify = ingest("verify", str(mount / "old"))
    accept = ingest("accept", str(card), str(mount / "old"), "--file",
                    "DCIM/100CANON/DSC_0001.JPG", "--reason", "test")
    again = ingest("offload", str(card), str(mount / "old"), "--no-decode")
    after = catalog_state(backing / "old")
    runs = {"offload (new)": first, "verify": verify, "accept": accept,
            "offload (re-run)": again}
    reliability.row(
        area=AREA, fault="the destination's file system refuses POSIX locks (ENOLCK; a FUSE "
                         "passthrough whose lock requests all fail)",
        setup="offload to a new destination there; then verify, accept and offload of a "
              "catalog written where locks worked, through that file system",
        expected="exit 2 with one plain line saying what to do, no traceback, no file copied, "
                 "the old catalog untouched (not moved aside as corrupt)",
        observed=", ".join(f"{n} exit {r.returncode}" for n, r in runs.items())
                 + f"; the first says: {last_line(first.stderr)!r} (after {seconds:.1f} s); "
                   f"{len(final_files(backing / 'new'))} "
                   f"files copied; old catalog {'untouched' if after == before else 'CHANGED'}",
        lost=0)
    assert seeded.returncode == 0, seeded.stderr
    for name, r in runs.items():
        assert r.returncode == 2, (name, r.stderr)
        assert "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, (name, r.stderr)
        assert "refuses file locks" in r.stderr, (name, r.stderr)
    assert not (tmp_path / "r.json").exists() or json.loads(
        (tmp_path / "r.json").read_text())["files"] == []
    assert final_files(backing / "new") == [] and partials(backing / "new") == []
    assert after == before
