"""What a verify run checks and in which order: time and byte budgets (a fake clock drives
the time), subsets that partition an archive, the priority order, and runs cut short by an
exception or SIGKILL that keep their progress for the next run."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ingest import api
from ingest.catalog import Catalog, catalog_path
from ingest.store.local import LocalStore
from ingest.verify import VerifyConfig
from ingest.verify.plan import build_plan, parse_duration, parse_size, parse_subset
from ingest.verify.run import verify

T0 = datetime(2030, 1, 1, 3, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Recorder:
    """Progress callback: the order files were started in, and (optionally) a clock that each
    finished file moves on, so a duration budget is reached after a known number of files."""

    def __init__(self, clock: Clock | None = None, seconds_per_file: float = 0) -> None:
        self.started: list[str] = []
        self.checked: list[str] = []
        self.clock, self.step = clock, seconds_per_file

    def __call__(self, event: str, **info) -> None:
        if event == "file_start":
            self.started.append(info["path"])
        elif event == "file_checked":
            self.checked.append(info["path"])
            if self.clock:
                self.clock.tick(self.step)


@pytest.fixture()
def archive(card, dests) -> Path:
    api.offload(str(card), [str(dests[0])], decode=False, jobs=1, destination_reports=False)
    return dests[0]


def check(root: Path, **kw):
    kw.setdefault("decode", False)
    kw.setdefault("destination_reports", False)
    return verify(VerifyConfig(archives=[str(root)], jobs=1, **kw))


def sizes(root: Path) -> dict[str, int]:
    with sqlite3.connect(catalog_path(str(root))) as db:
        return dict(db.execute("SELECT path, size FROM files"))


def verify_checks(root: Path) -> list[str]:
    with sqlite3.connect(catalog_path(str(root))) as db:
        return [p for (p,) in db.execute(
            "SELECT f.path FROM checks c JOIN files f ON f.id = c.file_id JOIN sessions s "
            "ON s.id = c.session_id WHERE s.command = 'verify' ORDER BY c.id")]


def checked(result) -> list[str]:
    return [r.path for r in result.records if str(r.status) not in ("skipped", "untracked")]


# --- option parsing ------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("30m", 1800), ("2h", 7200), ("1h30m", 5400), ("45", 45), ("1.5h", 5400)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "size"), [
    ("50G", 50 * 1024**3), ("50GiB", 50 * 1024**3), ("50GB", 50 * 10**9),
    ("500M", 500 * 1024**2), ("1.5T", int(1.5 * 1024**4)), ("10k", 10 * 1024), ("1KB", 1000),
    ("4096", 4096)])
def test_sizes_follow_gnu_units(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize(("parse", "text"), [
    (parse_duration, ""), (parse_duration, "m"), (parse_duration, "30x"),
    (parse_duration, "0"), (parse_duration, "-5m"), (parse_size, "lots"), (parse_size, "0"),
    (parse_size, "5X"), (parse_subset, "0/3"), (parse_subset, "4/3"), (parse_subset, "3")])
def test_bad_values_are_refused(parse, text):
    with pytest.raises(ValueError):
        parse(text)


# --- budgets -------------------------------------------------------------------------------


def test_duration_budget_with_a_fake_clock_and_the_next_run_continues(archive):
    clock = Clock()
    first = Recorder(clock, seconds_per_file=10)
    result = check(archive, max_seconds=35, clock=clock, progress=first)
    # Files start at 0, 10, 20 and 30 s; at 40 s the budget is spent.
    assert len(first.checked) == 4 == len(checked(result))
    skipped = [r for r in result.records if str(r.status) == "skipped"]
    assert len(skipped) == len(sizes(archive)) - 4
    assert all("time budget of 35s" in r.detail for r in skipped)
    assert result.exit_code == 0 and "35s" in result.report["verify"]["stopped"]

    clock.tick(3600)
    second = Recorder()
    check(archive, clock=clock, progress=second)
    rest = len(second.started) - 4
    assert sorted(second.started[:rest]) == sorted(r.path for r in skipped)
    assert second.started[rest:] == first.checked  # then the least recently verified


def test_byte_budget_is_a_prefix_and_runs_cover_everything_in_turn(archive):
    all_sizes = sizes(archive)
    budget = 2_000_000
    seen: list[str] = []
    clock = Clock()
    while len(seen) < len(all_sizes):
        rec = Recorder()
        result = check(archive, max_bytes=budget, clock=clock, progress=rec)
        got = checked(result)
        assert got and sum(all_sizes[p] for p in got) <= budget
        assert result.report["verify"]["bytes_read"] <= budget
        skipped = [r for r in result.records if str(r.status) == "skipped"]
        if skipped:  # the next file in order would not have fitted
            nxt = skipped[0].path
            assert sum(all_sizes[p] for p in got) + all_sizes[nxt] > budget
            assert "byte budget of 1.9 MiB" in skipped[0].detail
        fresh = [p for p in got if p not in seen]
        assert got[:len(fresh)] == fresh  # files not yet checked go first
        if len(fresh) < len(got):  # a file comes round again only once all had their turn
            assert set(seen) | set(fresh) == set(all_sizes)
        seen += fresh
        clock.tick(60)
    assert sorted(seen) == sorted(all_sizes)


def test_a_file_larger_than_the_budget_still_gets_its_turn(archive):
    result = check(archive, max_bytes=1)
    assert len(checked(result)) == 1


def test_subsets_partition_the_archive(archive):
    everything = sorted(sizes(archive))
    runs = [checked(check(archive, subset=(n, 3))) for n in (1, 2, 3)]
    assert all(runs), "each bucket of this archive holds some files"
    assert sorted(p for run in runs for p in run) == everything
    again = checked(check(archive, subset=(2, 3)))
    assert sorted(again) == sorted(runs[1])  # deterministic


# --- order ---------------------------------------------------------------------------------


def test_order_failed_then_never_then_least_recent(archive):
    names = sorted(sizes(archive))
    at = {k: (T0 + timedelta(hours=h)).isoformat() for k, h in
          (("old", 1), ("mid", 3), ("new", 9), ("failed_old", 5), ("failed_new", 10))}
    picks = {"failed_new": names[0], "failed_old": names[1], "old": names[2],
             "mid": names[3], "new": names[4]}
    results = {"failed_new": "corrupt", "failed_old": "missing"}
    with Catalog(str(archive)) as cat:
        for key, path in picks.items():
            cat.record_check(cat.by_path(path).id, "s", at[key], results.get(key, "verified"),
                             None)
        never = sorted((r for r in cat.all_rows() if r.path not in picks.values()),
                       key=lambda r: (r.ingested_at, r.path))
        plan = build_plan([(str(archive), cat, LocalStore(str(archive)).contents())], None, None)
    order = [i.row.path for i in plan.due]
    assert order == [picks["failed_old"], picks["failed_new"], *[r.path for r in never],
                     picks["old"], picks["mid"], picks["new"]]


def test_a_corrupt_file_is_rechecked_first(archive):
    clock = Clock()
    check(archive, clock=clock)
    victim = sorted(sizes(archive))[-1]
    path = archive / victim
    path.write_bytes(path.read_bytes()[::-1])
    clock.tick(60)
    assert check(archive, clock=clock).exit_code == 1
    clock.tick(60)
    result = check(archive, max_bytes=1, clock=clock)
    assert checked(result) == [victim]


# --- runs cut short ------------------------------------------------------------------------


class Stop(Exception):
    pass


def test_a_run_that_dies_midway_keeps_its_progress(archive):
    def die_after_five(event: str, **info) -> None:
        if event == "file_checked" and len(verify_checks(archive)) == 5:
            raise Stop

    with pytest.raises(Stop):
        check(archive, progress=die_after_five)
    done = verify_checks(archive)
    assert len(done) == 5
    rec = Recorder()
    check(archive, progress=rec)  # the lock was released: this run can start
    total = len(sizes(archive))
    assert sorted(rec.started[:total - 5]) == sorted(set(sizes(archive)) - set(done))


_KILLER = """
import os, signal, sys
from ingest.verify import VerifyConfig
from ingest.verify.run import verify
count = [0]
def progress(event, **info):
    if event == "file_checked":
        count[0] += 1
        if count[0] == int(sys.argv[2]):
            os.kill(os.getpid(), signal.SIGKILL)
verify(VerifyConfig(archives=[sys.argv[1]], decode=sys.argv[3] == "decode", jobs=1,
                    progress=progress, destination_reports=False))
"""


@pytest.mark.parametrize("decode", ["decode", "no-decode"])
def test_sigkill_midway_keeps_progress_and_the_next_run_continues(archive, decode, tmp_path):
    if decode == "decode":
        pytest.importorskip("ingest.decode.pool", reason="decode pool not available")
    # Output to a file, not a pipe: orphaned decode workers would hold a pipe open.
    log = tmp_path / "killed.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", _KILLER, str(archive), "7", decode],
                                stdout=out, stderr=out, start_new_session=True,
                                cwd=Path(__file__).resolve().parents[1])
        try:
            returncode = proc.wait(timeout=120)
        finally:
            try:  # its orphaned decode workers share its process group: end them too
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert returncode == -signal.SIGKILL, log.read_text()
    done = verify_checks(archive)
    assert len(done) == 7
    rec = Recorder()
    result = check(archive, progress=rec)
    assert result.exit_code == 0
    rest = len(sizes(archive)) - 7
    assert sorted(rec.started[:rest]) == sorted(set(sizes(archive)) - set(done))
