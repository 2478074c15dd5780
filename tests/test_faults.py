"""Faults of the disks around a card offload: a destination that fills up, vanishes or turns
read-only mid-run, a card that fails or disappears, a re-copy that fails over a good copy, and
a stale lock. Each is injected through FileIO, and where the machine allows it, also done for
real on a small tmpfs. The promise under test: what was done stays done, what failed is
flagged (exit 1), nothing half-written carries a final name, and no good copy is damaged."""

from __future__ import annotations

import errno
import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import xxhash
from reliability_table import card_files, count_lost, reliability_fixture  # noqa: F401

from conftest import CardReadErrors, partials, snapshot
from ingest import api, fsio
from ingest.catalog import catalog_path
from ingest.model import Status

SAFE = {Status.VERIFIED, Status.RECOPIED, Status.DUPLICATE}


def run(card, dests, **kw):
    kw.setdefault("decode", False)
    kw.setdefault("jobs", 1)
    return api.offload(str(card), [str(d) for d in dests], **kw)


def statuses(result) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(Counter(str(r.status)
                                                           for r in result.records).items()))


def fd_path(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


def final_files(dest: Path) -> list[Path]:
    return [p for p in dest.rglob("*") if p.is_file() and not p.name.endswith(".ingest-partial")
            and not {".ingest", "ascmhl"} & set(p.relative_to(dest).parts)]


def assert_archive_sound(dest: Path, card_hashes: set[str]) -> int:
    """No partial, every final-named file complete, every catalog row pointing at its file.
    Returns the number of catalog rows."""
    assert partials(dest) == []
    for p in final_files(dest):
        assert xxhash.xxh3_128_hexdigest(p.read_bytes()) in card_hashes, p
    db = sqlite3.connect(catalog_path(str(dest)))
    try:
        rows = db.execute("SELECT path, size, xxh3_128 FROM files").fetchall()
    finally:
        db.close()
    for path, size, digest in rows:
        data = (dest / path).read_bytes()
        assert len(data) == size and xxhash.xxh3_128_hexdigest(data) == digest, path
    return len(rows)


# --- fault-injecting FileIO -----------------------------------------------------------------


class DestinationFault(fsio.FileIO):
    """Writes (and renames) into one destination fail with `err` once `after_bytes` bytes have
    been written there, or once `after_files` files have been committed there. A write that
    crosses the limit writes what fits first, as a filling disk does."""

    def __init__(self, dest: Path, err: int, *, after_bytes: int | None = None,
                 after_files: int | None = None, rename_too: bool = False):
        self.root = str(dest) + os.sep
        self.err, self.after_bytes, self.after_files = err, after_bytes, after_files
        self.rename_too = rename_too
        self.written = self.committed = self.raised = 0

    def _broken(self) -> bool:
        return self.after_files is not None and self.committed >= self.after_files

    def _raise(self, path: str):
        self.raised += 1
        raise OSError(self.err, os.strerror(self.err), path)

    def write(self, fd, data):
        path = fd_path(fd)
        if not path.startswith(self.root):
            return super().write(fd, data)
        if self._broken():
            self._raise(path)
        if self.after_bytes is not None:
            room = self.after_bytes - self.written
            if room < len(data):
                super().write(fd, memoryview(data)[:max(room, 0)])
                self.written += max(room, 0)
                self._raise(path)
        super().write(fd, data)
        self.written += len(data)

    def rename(self, src, dst):
        if dst.startswith(self.root):
            if self.rename_too and self._broken():
                self._raise(dst)
            super().rename(src, dst)
            self.committed += 1
            return
        super().rename(src, dst)


class VanishingCard(fsio.FileIO):
    """The card is pulled while file number `after_files` + 1 is being read: that read fails
    with EIO after its first chunk, and every later open or read of the card fails with `err`.
    (FileIO.read also serves the destinations' read-back, which must go on working.)"""

    def __init__(self, card: Path, after_files: int, err: int):
        self.card = str(card) + os.sep
        self.after_files, self.err = after_files, err
        self.opened: list[str] = []
        self.gone = False
        self.raised = 0

    def _raise(self, err: int, path: str | None = None):
        self.raised += 1
        raise OSError(err, os.strerror(err), path)

    def open_source(self, path):
        if self.gone:
            self._raise(self.err, path)
        if path not in self.opened:
            self.opened.append(path)
        return super().open_source(path)

    def read(self, fd, size):
        path = fd_path(fd)
        if not path.startswith(self.card):
            return super().read(fd, size)
        if self.gone:
            self._raise(errno.EIO, path)
        if len(self.opened) > self.after_files:
            self.gone = True  # this file's first chunk comes through; the next read finds no card
        return super().read(fd, size)


class CorruptingWriter(fsio.FileIO):
    """Flips a byte in every chunk written for files whose name contains `name`."""

    def __init__(self, name: str):
        self.name = name

    def write(self, fd, data):
        if self.name in os.path.basename(fd_path(fd)):
            data = bytes([data[0] ^ 0x55]) + bytes(data[1:]) if data else data
        super().write(fd, data)


# --- destination full -----------------------------------------------------------------------


def check_one_destination_failed(card, dests, result, why: str) -> tuple[int, int]:
    """A failed mid-run, B completed. Returns (files flagged, files done in A)."""
    a, b = (str(d) for d in dests)
    hashes = card_files(card)
    by_dest = {d["root"]: d for d in result.report["destinations"]}
    assert why in (by_dest[a]["error"] or ""), by_dest[a]
    assert by_dest[b]["error"] is None
    assert result.exit_code == 1
    flagged = [r for r in result.records if r.status is Status.NEEDS_RECOPY]
    done = [r for r in result.records if r.status in SAFE]
    assert flagged
    for r in flagged:
        assert why in r.detail, r.detail
        assert [c.destination for c in r.copies if c.verified] == [b]
        assert [c.destination for c in r.copies if not c.verified] == [a]
    for r in result.records:  # B has everything
        (copy,) = [c for c in r.copies if c.destination == b]
        assert xxhash.xxh3_128_hexdigest((dests[1] / copy.path).read_bytes()) == hashes[r.path]
    in_a = [r for r in result.records if any(c.verified and c.destination == a for c in r.copies)]
    assert all(r.status in SAFE for r in in_a)
    rows_a = assert_archive_sound(dests[0], set(hashes.values()))
    # Rows are written in batches after their folder is fsynced: what A took before the
    # fault is catalogued unless its catalog failed with it; either way only complete files
    # are catalogued (checked above), and a re-run adopts complete uncatalogued copies.
    assert rows_a <= len(in_a)
    assert_archive_sound(dests[1], set(hashes.values()))
    return len(flagged), len(done)


@pytest.mark.parametrize("after_bytes", [1, 3_000_000])
def test_destination_full_mid_file_stops_that_destination_only(card, dests, after_bytes,
                                                                reliability):
    before = snapshot(card)
    io = DestinationFault(dests[0], errno.ENOSPC, after_bytes=after_bytes)
    result = run(card, dests, io=io)
    flagged, done = check_one_destination_failed(card, dests, result, "destination full")
    assert snapshot(card) == before
    # free space again: the same command completes the destination
    again = run(card, dests)
    assert again.exit_code == 0
    assert {str(r.status) for r in again.records} <= {"verified", "duplicate"}
    assert_archive_sound(dests[0], set(card_files(card).values()))
    lost = count_lost(card, result.report) + count_lost(card, again.report)
    reliability.row(
        area="disk full", fault=f"ENOSPC injected on destination A after {after_bytes:,} bytes",
        setup="FileIO.write raises ENOSPC (after writing what fits); 2 destinations; "
              "sample card",
        expected="A stops with a clear message, B completes, affected files needs_recopy, "
                 "exit 1, nothing half-written under a final name; re-run completes A",
        observed=f"exit {result.exit_code}: {statuses(result)}; A: "
                 f"\"{result.report['destinations'][0]['error']}\"; {done} files kept in A; "
                 f"raised {io.raised}x; re-run exit {again.exit_code}: {statuses(again)}",
        lost=lost, injected=io.raised)
    assert lost == 0


@pytest.fixture()
def small_fs(tmp_path):
    """A real 3 MiB tmpfs, unmounted afterwards."""
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root and mount rights): "
                    f"{done.stderr.strip() or done.returncode}")
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_real_full_disk_stops_that_destination_only(card, dests, small_fs, reliability):
    before = snapshot(card)
    target = [small_fs, dests[1]]
    result = run(card, target)
    flagged, done = check_one_destination_failed(card, target, result, "destination full")
    assert snapshot(card) == before
    lost = count_lost(card, result.report)
    reliability.row(
        area="disk full", fault="real full disk: 3 MiB tmpfs as destination A",
        setup="mount -t tmpfs -o size=3m; sample card (~10 MB); 2 destinations",
        expected="A stops with a clear message, B completes, affected files needs_recopy, "
                 "exit 1, no partial and no incomplete final file on the full disk",
        observed=f"exit {result.exit_code}: {statuses(result)}; A: "
                 f"\"{result.report['destinations'][0]['error']}\"; {done} files fit on A",
        lost=lost)
    assert lost == 0


def test_real_remount_read_only_mid_run(card, dests, small_fs, reliability):
    target = [small_fs, dests[1]]
    tried: list[subprocess.CompletedProcess] = []

    def progress(event, **info):
        if event == "file_copied" and not tried:
            tried.append(subprocess.run(["mount", "-o", "remount,ro", str(small_fs)],
                                        capture_output=True, text=True))

    result = run(card, target, progress=progress)
    if tried[0].returncode != 0:
        reliability.row(
            area="destination", fault="real `mount -o remount,ro` of destination A mid-run",
            setup="tmpfs destination A, remount attempted from the progress callback",
            expected="A stops (read-only), B completes, exit 1",
            observed=f"the kernel refused the remount while ingest holds files open for "
                     f"writing ({tried[0].stderr.strip()[:120]}); the run completed: exit "
                     f"{result.exit_code}, {statuses(result)}. EROFS is injected instead in "
                     "test_destination_fails_after_some_files", lost=count_lost(card,
                                                                                result.report),
            injected=0)
        pytest.skip("the kernel refuses remount,ro while files are open for writing (EBUSY); "
                    "read-only is covered by injected EROFS")
    check_one_destination_failed(card, target, result, "read-only")


def test_destination_disk_unmounted_mid_run(card, dests, small_fs, reliability):
    target = [small_fs, dests[1]]
    copied = []

    def progress(event, **info):
        if event == "file_copied":
            copied.append(info["path"])
            if len(copied) == 3:  # the disk goes; its mountpoint folder stays behind, empty
                subprocess.run(["umount", "-l", str(small_fs)], check=True)

    case = dict(
        area="destination", fault="destination disk unmounted mid-run (real, umount -l)",
        setup="tmpfs destination A lazily unmounted after 3 files; its folder stays",
        expected="A stops (its disk is gone), B completes, exit 1, nothing written into "
                 "the empty mountpoint folder")
    try:
        result = run(card, target, progress=progress)
    except Exception as e:
        reliability.row(**case, observed=f"run aborted: {type(e).__name__}: {e}", lost=0)
        raise
    strays = [p for p in small_fs.rglob("*")]
    lost = count_lost(card, result.report)
    reliability.row(
        **case, observed=f"exit {result.exit_code}: {statuses(result)}; A: "
                         f"\"{result.report['destinations'][0]['error']}\"; {len(strays)} "
                         "entries written into the bare mountpoint folder", lost=lost)
    assert strays == [] and lost == 0
    assert result.exit_code == 1 and result.report["destinations"][0]["error"]
    assert result.report["destinations"][1]["error"] is None


# --- destination vanishes or turns read-only --------------------------------------------------


@pytest.mark.parametrize("err", [errno.EROFS, errno.ENOENT, errno.EIO])
def test_destination_fails_after_some_files(card, dests, err, reliability):
    io = DestinationFault(dests[0], err, after_files=5, rename_too=True)
    result = run(card, dests, io=io)
    why = {errno.EROFS: "read-only", errno.ENOENT: os.strerror(errno.ENOENT),
           errno.EIO: os.strerror(errno.EIO)}[err]
    flagged, done = check_one_destination_failed(card, dests, result, why)
    assert done == 5
    lost = count_lost(card, result.report)
    reliability.row(
        area="destination", fault=f"destination A fails with {errno.errorcode[err]} after 5 files",
        setup="FileIO.write and rename into A raise; 2 destinations; sample card",
        expected="A stops with the reason, its 5 files stay verified and catalogued, B "
                 "completes, the rest needs_recopy, exit 1",
        observed=f"exit {result.exit_code}: {statuses(result)}; A: "
                 f"\"{result.report['destinations'][0]['error']}\"",
        lost=lost, injected=io.raised)
    assert lost == 0


# --- failing card ---------------------------------------------------------------------------


@pytest.mark.parametrize("err", [errno.ENODEV, errno.ENOENT, errno.EIO])
def test_card_pulled_mid_run(card, dests, err, reliability):
    io = VanishingCard(card, after_files=6, err=err)
    result = run(card, dests, io=io)
    hashes = card_files(card)
    recs = result.records
    # Each file's second (verifying) card read runs beside the copies of the next ones, so the
    # pull may come before the last few were read again: those are not proven either.
    n = sum(r.status is Status.VERIFIED for r in recs)
    assert n <= 6, [(r.path, r.status, r.detail) for r in recs[:8]]
    done, gone = recs[:n], recs[n:]
    assert all(r.status is Status.VERIFIED for r in done)
    assert gone and all(r.status is Status.UNREADABLE for r in gone), \
        [(r.path, r.status) for r in gone]
    assert all(os.strerror(err) in r.detail for r in gone)
    assert result.exit_code == 1
    for d in dests:
        rows = assert_archive_sound(d, set(hashes.values()))
        assert rows == n
        assert {p.relative_to(d).as_posix() for p in final_files(d)} == \
            {c.path for r in done for c in r.copies if c.destination == str(d)}
    # the card is back: the same command finishes the job, and the first six are duplicates
    again = run(card, dests)
    assert again.exit_code == 0
    assert [str(r.status) for r in again.records[:n]] == ["duplicate"] * n
    lost = count_lost(card, result.report) + count_lost(card, again.report)
    reliability.row(
        area="card", fault=f"card pulled after 6 files ({errno.errorcode[err]})",
        setup="FileIO: EIO on the 7th file's second read, then every open/read fails",
        expected="the 6 done stay verified and catalogued; everything after is unreadable; "
                 "exit 1; re-run with the card back completes",
        observed=f"exit {result.exit_code}: {statuses(result)}; re-run exit {again.exit_code}: "
                 f"{statuses(again)}", lost=lost, injected=io.raised)
    assert lost == 0


def test_one_bad_card_file_is_retried_then_unreadable(card, dests, reliability):
    io = CardReadErrors("DCIM/100NIKON/DSC_0004.JPG")
    result = run(card, dests, io=io, retries=2)
    bad = [r for r in result.records if r.path.endswith("100NIKON/DSC_0004.JPG")]
    assert [r.status for r in bad] == [Status.UNREADABLE] and bad[0].attempts == 3
    assert all(r.status is Status.VERIFIED for r in result.records if r not in bad), \
        [(r.path, r.status, r.detail) for r in result.records if r.status is not Status.VERIFIED]
    lost = count_lost(card, result.report)
    reliability.row(
        area="card", fault="persistent EIO reading one card file",
        setup="FileIO.read raises EIO for DSC_0004.JPG on every attempt; --retries 2",
        expected="3 attempts, then unreadable; every other file verified; exit 1",
        observed=f"exit {result.exit_code}: {statuses(result)}; attempts {bad[0].attempts}; "
                 f"\"{bad[0].detail}\"", lost=lost, injected=io.raised)
    assert lost == 0


# --- a failed re-copy never damages a good copy -----------------------------------------------


def _archive_state(dest: Path, rel: str):
    p = dest / rel
    with sqlite3.connect(catalog_path(str(dest))) as db:
        row = db.execute("SELECT * FROM files WHERE path=?", (rel,)).fetchone()
    return p.read_bytes(), p.stat().st_mtime_ns, row


@pytest.mark.parametrize("why", ["row-lost", "marked-corrupt", "marked-corrupt-enospc"])
def test_failed_recopy_never_damages_a_good_copy(card, dests, why, reliability):
    name = "DSC_0007.JPG"
    first = run(card, dests[:1])
    rec = next(r for r in first.records if r.path.endswith(name))
    rel = rec.copies[0].path
    with sqlite3.connect(catalog_path(str(dests[0]))) as db:
        if why == "row-lost":  # the catalog forgot the copy: a re-run writes it again
            db.execute("DELETE FROM files WHERE path=?", (rel,))
        else:  # a verify that misjudged the copy: a re-run replaces it
            db.execute("UPDATE files SET last_result='corrupt' WHERE path=?", (rel,))
    good = _archive_state(dests[0], rel)
    io = (DestinationFault(dests[0], errno.ENOSPC, after_bytes=0) if why.endswith("enospc")
          else CorruptingWriter(name))
    again = run(card, dests[:1], io=io)
    redo = next(r for r in again.records if r.path == rec.path)
    assert redo.status is Status.NEEDS_RECOPY
    assert _archive_state(dests[0], rel) == good  # bytes, mtime and catalog row untouched
    assert partials(dests[0]) == []
    assert [p for p in final_files(dests[0]) if p.name != Path(rel).name
            and p.name.startswith("DSC_0007")] == []
    lost = count_lost(card, again.report)
    reliability.row(
        area="re-copy", fault={"row-lost": "re-copy corrupted in transfer, catalog row lost",
                               "marked-corrupt": "re-copy corrupted in transfer over a copy "
                                                 "marked corrupt",
                               "marked-corrupt-enospc": "re-copy hits ENOSPC over a copy "
                                                        "marked corrupt"}[why],
        setup="archive holds a good DSC_0007.JPG; re-run with a faulty writer for it",
        expected="the re-copy fails (needs_recopy); the existing file's bytes, mtime and "
                 "catalog row are unchanged; no partial, no stray copy",
        observed=f"{redo.status}: \"{redo.detail}\"; existing copy unchanged", lost=lost)
    assert lost == 0


# --- stale lock -------------------------------------------------------------------------------


def test_stale_lock_is_taken_over_and_a_live_one_is_named(card, dests, tmp_path, reliability):
    from ingest.lock import LOCK_NAME

    lock = dests[0] / ".ingest" / LOCK_NAME
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom ingest.lock import DestinationLock\n"
         "with DestinationLock(sys.argv[1], 'ingest offload /media/OTHER-CARD'):\n"
         "    print('held', flush=True); time.sleep(120)\n", str(dests[0])],
        stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        refused = subprocess.run([sys.executable, "-m", "ingest", "offload", str(card),
                                  str(dests[0]), "--no-decode"], capture_output=True, text=True,
                                 timeout=120)
    finally:
        os.killpg(holder.pid, signal.SIGKILL)  # dies holding it: the text stays, flock goes
        holder.wait()
    assert refused.returncode == 2
    assert f"pid {holder.pid}" in refused.stderr and "/media/OTHER-CARD" in refused.stderr
    assert f"pid {holder.pid}" in lock.read_text()  # a dead holder's text, no flock held
    took_over = run(card, dests[:1])
    assert took_over.exit_code == 0
    assert lock.read_text() == ""  # released cleanly by the run that took it over
    reliability.row(
        area="lock", fault="a live run holds the destination, then dies (SIGKILL) holding it",
        setup="a process holds DestinationLock; an offload starts; the holder is killed; "
              "the offload runs again",
        expected="the first offload is refused (exit 2) naming the holder's pid and command; "
                 "after the holder dies its stale lock text is taken over",
        observed=f"refused with exit {refused.returncode}: \"{refused.stderr.strip()[:160]}\"; "
                 f"then exit {took_over.exit_code}", lost=0)


def test_lock_text_of_a_dead_process_does_not_block(card, dests, reliability):
    lock = dests[0] / ".ingest" / "lock"
    lock.parent.mkdir()
    lock.write_text("pid 999999 on some-host: ingest offload /media/OLD\n")
    result = run(card, dests[:1])
    assert result.exit_code == 0
    reliability.row(area="lock", fault="lock file left with a dead pid's text, no flock held",
                    setup="write `pid 999999 ...` into DEST/.ingest/lock before the offload",
                    expected="taken over silently; the run completes",
                    observed=f"exit {result.exit_code}: {statuses(result)}", lost=0)


def test_failed_copy_keeps_its_reason_when_decode_is_on(card, dests, reliability):
    name = "DSC_0007.JPG"
    result = run(card, dests, io=CorruptingWriter(name), decode=True, jobs=1)
    rec = next(r for r in result.records if r.path.endswith("100NIKON/" + name))
    reliability.row(
        area="re-copy", fault="every copy of an image fails read-back, decode on",
        setup="a writer corrupting DSC_0007.JPG in both destinations; --retries 2; decode on",
        expected="needs_recopy, the detail names the read-back mismatch; no decode of a copy "
                 "that does not exist",
        observed=f"{rec.status}: \"{rec.detail[:160]}\"", lost=count_lost(card, result.report))
    assert rec.status is Status.NEEDS_RECOPY
    assert "did not match the card" in rec.detail, rec.detail
    assert rec.decode is None or rec.decode.get("verdict") == "not_decoded", rec.decode


def test_destination_read_only_including_its_catalog(card, dests, monkeypatch, reliability):
    """What a real read-only remount does (the kernel refuses one under a running ingest, see
    test_real_remount_read_only_mid_run): file writes fail with EROFS and so do catalog writes."""
    from ingest.catalog import Catalog

    io = DestinationFault(dests[0], errno.EROFS, after_files=5, rename_too=True)
    root = str(dests[0])
    for method in ("add", "add_many", "set_status", "set_status_many", "finish_session"):
        real = getattr(Catalog, method, None)
        if real is None:
            continue

        def failing(self, *a, _real=real, **k):
            if self.path.startswith(root) and io._broken():
                raise sqlite3.OperationalError("attempt to write a readonly database")
            return _real(self, *a, **k)

        monkeypatch.setattr(Catalog, method, failing)
    try:
        result = run(card, dests, io=io)
    except sqlite3.Error as e:
        reliability.row(
            area="destination", fault="destination A turns read-only after 5 files, catalog too",
            setup="FileIO raises EROFS into A, A's catalog writes raise 'attempt to write a "
                  "readonly database'",
            expected="A stops, B completes, exit 1, A's first files stay verified",
            observed=f"run aborted: {type(e).__name__}: {e}", lost=0, injected=io.raised + 1)
        raise
    lost = count_lost(card, result.report)
    reliability.row(
        area="destination", fault="destination A turns read-only after 5 files, catalog too",
        setup="FileIO raises EROFS into A, A's catalog writes raise 'attempt to write a "
              "readonly database'",
        expected="A stops, B completes, exit 1, A's first files stay verified",
        observed=f"exit {result.exit_code}: {statuses(result)}; A: "
                 f"\"{result.report['destinations'][0]['error']}\"", lost=lost,
        injected=io.raised + 1)
    check_one_destination_failed(card, dests, result, "read-only")
    assert lost == 0


def test_real_card_unmounted_mid_run_ends_with_one_line(card, dests, tmp_path, reliability):
    """A real card (a tmpfs holding the sample card) unmounted after 4 files: the files done
    stay verified, every other file is `unreadable` in the JSON, the terminal says so in one
    line, exit 1."""
    mnt = tmp_path / "card-mount"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(mnt)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        subprocess.run(["cp", "-a", f"{card}/.", str(mnt)], check=True)
        copied = []

        def progress(event, **info):
            if event == "file_copied":
                copied.append(info["path"])
                if len(copied) == 4:  # the card is pulled: its mount point stays, empty
                    subprocess.run(["umount", "-l", str(mnt)], check=True)

        result = run(mnt, dests, progress=progress)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
    recs = result.records
    gone = [r for r in recs if r.status is Status.UNREADABLE]
    done_ = [r for r in recs if r.status in SAFE]
    assert done_ == recs[:len(done_)] and 1 <= len(done_) < len(recs)
    assert len(done_) + len(gone) == len(recs)
    assert all(r.detail.startswith("not read: the card stopped responding") for r in gone)
    stopped = result.report["source_error"]
    assert stopped["files_done"] == len(done_) and stopped["files_not_read"] == len(gone)
    assert result.exit_code == 1
    for d in dests:
        assert_archive_sound(d, {r.xxh3_128 for r in done_})
    from io import StringIO

    from rich.console import Console

    from ingest.report.terminal import render_summary

    out = StringIO()
    render_summary(Console(file=out, width=80), result.report, None)
    text = out.getvalue()
    assert text.lower().count("the card stopped responding") == 1, text
    assert "re-insert the card and run the same command again" in text.replace("\n", " ")
    lost = count_lost(card, result.report)
    reliability.row(
        area="card", fault="card unmounted mid-run (real, umount -l)",
        setup="the sample card on a tmpfs, lazily unmounted after 4 files",
        expected="the files done stay verified; every other file unreadable in the JSON; one "
                 "line in the terminal; exit 1",
        observed=f"exit {result.exit_code}: {statuses(result)}; \"{stopped['message']}\"",
        lost=lost)
    assert lost == 0
