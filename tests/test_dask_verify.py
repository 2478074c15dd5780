"""`ingest verify` on a Dask cluster gives the same report as a local run, file for file and
decode included, on stock (daemonic) workers that decode in their own process and on workers
allowed children (`local_cluster`) that decode in a decode process of their own; budgets,
progress and the command line work the same; a decoder crash or hang costs one verdict, and a
lost cluster leaves the files it did not answer not checked; a cluster that would give wrong
answers is refused; without Dask the options say how to enable it.

Faults come from outside the code under test, never from a hook in it: a decoder crash is a
real SIGSEGV sent to the process that opens the file to decode it, while that open waits on
a fanotify permission event (`OpenTrap`, Linux and root only); a hang is that open held.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import json
import os
import select
import signal
import sqlite3
import struct
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_decode_pool import CrashingInput

from fixtures.damage import flip_bits
from ingest import api
from ingest.catalog import catalog_path
from ingest.cli.verify import verify as verify_command
from ingest.model import Status
from ingest.verify import VerifyConfig
from ingest.verify.run import verify

HAVE_DASK = all(importlib.util.find_spec(m) for m in ("dask", "distributed"))
needs_dask = pytest.mark.skipif(not HAVE_DASK, reason="Dask is not installed (pip install "
                                "'ingest[cluster]'; the test extras include it)")


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, 3, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def cluster():
    if not HAVE_DASK:
        pytest.skip("Dask is not installed (pip install 'ingest[cluster]')")
    from ingest.verify.dask_backend import local_cluster

    with local_cluster(2) as c:
        yield c


@contextlib.contextmanager
def stock_config():
    """Dask's default, stated: while the module's `cluster` runs, its setting (workers allowed
    children) is in the process-wide config, which a nanny reads whenever it (re)starts a
    worker."""
    import dask

    with dask.config.set({"distributed.worker.daemon": True}):
        yield


@pytest.fixture(scope="module")
def stock():
    """A LocalCluster as Dask makes it: worker processes are daemons (no child processes)."""
    if not HAVE_DASK:
        pytest.skip("Dask is not installed (pip install 'ingest[cluster]')")
    from distributed import LocalCluster

    with stock_config(), LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                      host="127.0.0.1", dashboard_address="127.0.0.1:0") as c:
        yield c


@pytest.fixture()
def archive(built_card, tmp_path) -> Path:
    """An offloaded, decode-checked archive, then damaged: one file's bits flipped (corrupt)
    and one deleted (missing); the card's damaged JPEG is in it too (damaged)."""
    import shutil

    card = tmp_path / "card"
    shutil.copytree(built_card[0], card, symlinks=True)
    dest = tmp_path / "archive"
    dest.mkdir()
    result = api.offload(str(card), [str(dest)], decode=False, destination_reports=False)
    copied = sorted(r.copies[0].path for r in result.records
                    if r.status is Status.VERIFIED and r.kind in ("raw", "jpeg"))
    victim = dest / copied[0]
    flip_bits(victim, [victim.stat().st_size // 2], seed=3)
    (dest / copied[1]).unlink()
    return dest


def _facts(result) -> dict[str, tuple]:
    """What must be equal between a local and a cluster run: everything but timings."""
    out = {}
    for r in result.records:
        d = r.decode or {}
        checks = tuple((c.get("name"), c.get("ok")) for c in d.get("checks") or [])
        out[r.path] = (str(r.status), r.xxh3_128, r.detail, r.size, d.get("verdict"),
                       d.get("ok"), d.get("error"), d.get("decoder"), checks,
                       tuple((c.destination, c.path, c.verified, c.action) for c in r.copies))
    return out


@needs_dask
def test_cluster_report_equals_local_file_for_file(archive, cluster, capsys):
    local = verify(VerifyConfig([str(archive)], jobs=2, destination_reports=False))
    events: list[str] = []
    remote = verify(VerifyConfig([str(archive)], jobs=2, destination_reports=False,
                                 scheduler=cluster.scheduler_address,
                                 progress=lambda event, **info: events.append(event)))
    assert _facts(remote) == _facts(local)
    statuses = {str(r.status) for r in remote.records}
    assert {"verified", "corrupt", "missing", "damaged"} <= statuses
    assert any((r.decode or {}).get("verdict") == "ok" for r in remote.records if r.kind == "raw")
    assert remote.report["verify"]["backend"] == "dask"
    assert remote.report["verify"]["checked"] == local.report["verify"]["checked"]
    assert remote.report["summary"]["by_status"] == local.report["summary"]["by_status"]
    assert events.count("file_checked") == remote.report["verify"]["checked"]
    assert events.count("file_start") == events.count("file_checked")
    assert remote.exit_code == local.exit_code == 1
    with capsys.disabled():
        print(f"\n  verify files/s: local {local.report['verify']['files_per_second']}, "
              f"LocalCluster(2) {remote.report['verify']['files_per_second']}")


@needs_dask
def test_time_budget_stops_sending_and_next_run_continues(archive, cluster):
    clock = Clock()

    def tick(event: str, **info) -> None:
        if event == "file_start":  # sent to a worker: a file takes one second here
            clock.now += timedelta(seconds=1)

    cfg = VerifyConfig([str(archive)], jobs=2, destination_reports=False, decode=False,
                       scheduler=cluster.scheduler_address, clock=clock, max_seconds=3,
                       progress=tick)
    first = verify(cfg)
    info = first.report["verify"]
    total = len([r for r in first.records if r.status is not Status.UNTRACKED])
    assert "time budget" in info["stopped"]
    assert info["checked"] == 3  # the budget is asked before each file is sent
    skipped = [r for r in first.records if r.status is Status.SKIPPED]
    assert len(skipped) == info["not_started"] == total - info["checked"]
    assert all("time budget" in r.detail for r in skipped)
    later = verify(VerifyConfig([str(archive)], jobs=2, destination_reports=False,
                                decode=False, scheduler=cluster.scheduler_address))
    assert later.report["verify"]["checked"] == total
    assert not [r for r in later.records if r.status is Status.SKIPPED]


@needs_dask
def test_cli_scheduler_option(archive, cluster, tmp_path):
    out = tmp_path / "report.json"
    result = CliRunner().invoke(verify_command, [str(archive), "--scheduler",
                                                 cluster.scheduler_address, "--no-decode",
                                                 "--json", str(out)])
    assert result.exit_code == 1, result.output  # the corrupt and the missing file
    report = json.loads(out.read_text())
    assert report["verify"]["backend"] == "dask"
    assert report["verify"]["scheduler"] == cluster.scheduler_address
    assert {f["status"] for f in report["files"]} >= {"corrupt", "missing", "verified"}


def _comparable(report: dict) -> dict:
    """A report without what differs between any two runs (timings) or names the backend."""

    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k != "seconds"}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    out = {k: strip(report[k]) for k in ("summary", "destinations", "versions")}
    out["files"] = {f["path"]: strip(f) for f in report["files"]}
    out["verify"] = {k: v for k, v in report["verify"].items()
                     if k not in ("backend", "scheduler", "files_per_second")}
    return out


@needs_dask
def test_stock_cluster_gives_the_local_report_decode_included(archive, stock, tmp_path):
    """`ingest verify --scheduler` against Dask's default workers (daemons, which cannot start
    decode processes) decodes in the workers themselves and reports as a local run does."""
    reports = {}
    for name, extra in [("local", ["--jobs", "2"]),
                        ("dask", ["--scheduler", stock.scheduler_address])]:
        out = tmp_path / f"{name}.json"
        result = CliRunner().invoke(verify_command, [str(archive), *extra, "--json", str(out)])
        assert result.exit_code == 1, result.output  # the corrupt, missing and damaged files
        reports[name] = json.loads(out.read_text())
    local, remote = reports["local"], reports["dask"]
    assert remote["verify"]["backend"] == "dask"
    assert remote["verify"]["scheduler"] == stock.scheduler_address
    assert _comparable(remote) == _comparable(local)
    files = remote["files"]
    assert {"verified", "corrupt", "missing", "damaged"} <= {f["status"] for f in files}
    assert any((f["decode"] or {}).get("verdict") == "ok" for f in files if f["kind"] == "raw")
    assert any((f["decode"] or {}).get("verdict") == "damaged" for f in files)


@needs_dask
def test_a_bucket_on_a_stock_cluster_gives_the_local_report(built_card, tmp_path, monkeypatch):
    """An object-store archive on Dask: each worker downloads the object for its hash task,
    and again for its decode task (decoded only if that download hashes the same), so the
    report equals a run on this machine, decode included."""
    if not all(importlib.util.find_spec(m) for m in ("s3fs", "moto")):
        pytest.skip("s3fs or moto is not installed (pip install 'ingest[s3]' 'moto[server]')")
    import logging
    import shutil

    from distributed import LocalCluster
    from moto.server import ThreadedMotoServer

    from ingest.store.s3 import make_filesystem

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    # Set before the cluster starts: its worker processes inherit the credentials.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAINGESTDASKKEY0001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "ingest-dask-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        fs = make_filesystem(endpoint)
        fs.call_s3("create_bucket", Bucket="dask-archive")
        card = tmp_path / "card"
        shutil.copytree(built_card[0], card, symlinks=True)
        disk = tmp_path / "disk"
        disk.mkdir()
        url = "s3://dask-archive/photos"
        result = api.offload(str(card), [str(disk), url], decode=False,
                             destination_reports=False, s3_endpoint=endpoint)
        victim = sorted(r.copies[-1].path for r in result.records if r.kind == "raw")[0]
        data = bytearray(fs.cat_file(f"dask-archive/photos/{victim}"))
        data[len(data) // 2] ^= 0x10
        fs.pipe_file(f"dask-archive/photos/{victim}", bytes(data))
        with stock_config(), LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                          host="127.0.0.1",
                                          dashboard_address="127.0.0.1:0") as stock:
            reports = {}
            for name, extra in [("local", ["--jobs", "2"]),
                                ("dask", ["--scheduler", stock.scheduler_address])]:
                out = tmp_path / f"{name}.json"
                run = CliRunner().invoke(verify_command, [url, "--s3-endpoint", endpoint,
                                                          *extra, "--json", str(out)])
                assert run.exit_code == 1, run.output  # the corrupt object, the damaged JPEG
                reports[name] = json.loads(out.read_text())
    finally:
        server.stop()
    assert _comparable(reports["dask"]) == _comparable(reports["local"])
    files = {f["path"]: f for f in reports["dask"]["files"]}
    assert files[victim]["status"] == "corrupt"
    assert {"verified", "corrupt", "damaged"} == {f["status"] for f in files.values()}
    assert any((f["decode"] or {}).get("verdict") == "ok" for f in files.values()
               if f["kind"] == "raw")


# --- faults: a decoder that crashes or hangs ------------------------------------------------

_FAN_CLOEXEC, _FAN_CLASS_CONTENT = 0x1, 0x4
_FAN_OPEN_PERM, _FAN_MARK_ADD, _FAN_ALLOW, _FAN_DENY = 0x10000, 0x1, 0x1, 0x2
_AT_FDCWD = -100
_EVENT = struct.Struct("=IBBHQii")  # struct fanotify_event_metadata
_RESPONSE = struct.Struct("=iI")  # struct fanotify_response


def _fanotify() -> int | None:
    """A fanotify group for permission events, or None where there is none (not Linux, or
    not allowed: it needs CAP_SYS_ADMIN)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.fanotify_init(_FAN_CLOEXEC | _FAN_CLASS_CONTENT, os.O_RDONLY)
    except (OSError, AttributeError):
        return None
    return fd if fd >= 0 else None


def _have_fanotify() -> bool:
    fd = _fanotify()
    if fd is None:
        return False
    os.close(fd)
    return True


needs_fanotify = pytest.mark.skipif(not _have_fanotify(), reason="needs fanotify permission "
                                    "events (Linux, root) to crash a decoder from outside")


class OpenTrap:
    """Every open of `path` after the first `allow` ones waits on this trap: the opener gets
    `sig` while it waits (a real crash, every time the file is decoded), or, with sig None,
    its open is held until the trap closes (a decoder that hangs). `caught` lists the pids.

    The first open is the verify's hash read (a task of its own on Dask, the run's own thread
    locally); every later one is a decode of that file."""

    def __init__(self, path: Path, sig: signal.Signals | None = signal.SIGSEGV, allow: int = 1):
        self.path, self.sig, self.allow = path, sig, allow
        self.caught: list[int] = []
        self.error: BaseException | None = None
        self._held: list[int] = []
        self._fd = _fanotify()
        assert self._fd is not None
        libc = ctypes.CDLL(None, use_errno=True)
        libc.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64,
                                       ctypes.c_int, ctypes.c_char_p]
        if libc.fanotify_mark(self._fd, _FAN_MARK_ADD, _FAN_OPEN_PERM, _AT_FDCWD,
                              os.fsencode(path)) != 0:
            raise OSError(ctypes.get_errno(), "fanotify_mark", str(path))
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._serve, name="open-trap", daemon=True)

    def __enter__(self) -> OpenTrap:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join(timeout=10)
        for fd in self._held:  # a held open goes on (its process may be gone already)
            self._answer(fd, _FAN_ALLOW)
        os.close(self._fd)
        os.close(self._stop_r)
        os.close(self._stop_w)
        if self.error is not None:
            raise self.error

    def _answer(self, fd: int, response: int) -> None:
        with contextlib.suppress(OSError):
            os.write(self._fd, _RESPONSE.pack(fd, response))
        os.close(fd)

    def _serve(self) -> None:
        try:
            poll = select.poll()
            poll.register(self._fd, select.POLLIN)
            poll.register(self._stop_r, select.POLLIN)
            seen = 0
            while True:
                if any(fd == self._stop_r for fd, _ in poll.poll()):
                    return
                data = os.read(self._fd, 4096)
                for at in range(0, len(data), _EVENT.size):
                    _len, _v, _r, _m, _mask, fd, pid = _EVENT.unpack_from(data, at)
                    seen += 1
                    if seen <= self.allow or pid == os.getpid():
                        self._answer(fd, _FAN_ALLOW)
                    elif self.sig is None:
                        self.caught.append(pid)
                        self._held.append(fd)
                    else:
                        os.kill(pid, self.sig)  # it dies in its open: it never reads the file
                        self.caught.append(pid)
                        self._answer(fd, _FAN_DENY)
        except BaseException as e:  # noqa: BLE001 - handed to the test in __exit__
            self.error = e


def _victim(archive: Path) -> str:
    """An archived raw file that verifies and decodes ('ok') in a clean run."""
    with sqlite3.connect(catalog_path(str(archive))) as db:
        rels = sorted(r for (r,) in db.execute(
            "SELECT path FROM files WHERE kind='raw' AND status='verified'"))
    return rels[-1]  # the fixture damaged the first two copied files


def _crash_facts(rec) -> tuple:
    d = rec.decode or {}
    return (str(rec.status), d.get("verdict"), d.get("ok"), d.get("decoder"),
            [c.get("name") for c in d.get("checks") or []])


@needs_dask
@needs_fanotify
def test_a_decoder_crash_on_a_stock_worker_reads_as_a_local_crash(archive, stock):
    """The decoder kills the Dask worker itself: Dask runs the decode again as it is told to
    (allowed-failures), then gives up on that task alone. That file reads as after a crash in
    the local pool; its hash result was kept; every other file is checked as locally."""
    victim = archive / _victim(archive)
    with OpenTrap(victim) as trap:
        local = verify(VerifyConfig([str(archive)], jobs=2, destination_reports=False))
    assert trap.caught  # the local decode process was killed
    with stock_config(), OpenTrap(victim) as trap:
        remote = verify(VerifyConfig([str(archive)], jobs=2, destination_reports=False,
                                     scheduler=stock.scheduler_address))
    import dask

    # Dask's own retries until it gives up on the task, and once more with no other decode
    # beside it (those that Dask queued beside it died with it, like the local pool's
    # suspects): then it is the crash, and the other files get their own verdicts.
    assert len(trap.caught) == 2 * (dask.config.get("distributed.scheduler.allowed-failures")
                                    + 1)
    rel = str(victim.relative_to(archive))
    mine = next(r for r in remote.records if r.path == rel)
    theirs = next(r for r in local.records if r.path == rel)
    assert _crash_facts(mine) == _crash_facts(theirs)
    assert _crash_facts(mine)[:3] == ("verified", "crashed", False)
    for rec in (mine, theirs):
        assert rec.detail.startswith("hash matches the original; the decode check could not "
                                     "judge it (decoder crashed (worker process died: "), \
            rec.detail
    assert {p: f for p, f in _facts(remote).items() if p != rel} == \
        {p: f for p, f in _facts(local).items() if p != rel}
    assert remote.report["summary"]["by_status"] == local.report["summary"]["by_status"]


@needs_dask
@needs_fanotify
def test_a_decoder_hang_on_a_stock_worker_is_a_timeout_and_the_run_ends(archive, stock):
    """A decode in the worker's own process cannot be stopped: the task stops waiting at the
    decode timeout and the worker is replaced; the file gets the local pool's 'timeout'."""
    from distributed import Client

    victim = archive / _victim(archive)
    with Client(stock, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=60)  # a test before may have had them restarted
        before = set(client.scheduler_info(n_workers=-1)["workers"])
        with stock_config(), OpenTrap(victim, sig=None) as trap:
            remote = verify(VerifyConfig([str(archive)], jobs=2, destination_reports=False,
                                         decode_timeout=3.0, scheduler=stock.scheduler_address))
            assert len(trap.caught) == 1
            client.wait_for_workers(2, timeout=60)
        after = set(client.scheduler_info(n_workers=-1)["workers"])
    assert len(before - after) == 1  # the worker holding the hung decoder was replaced
    rel = str(victim.relative_to(archive))
    rec = next(r for r in remote.records if r.path == rel)
    assert (str(rec.status), rec.decode["verdict"]) == ("verified", "timeout")
    assert rec.detail == ("hash matches the original; the decode check could not judge it "
                          "(decoder timed out after 3 s)")
    assert remote.report["verify"]["checked"] == len(
        [r for r in remote.records if r.status is not Status.UNTRACKED])


@needs_dask
def test_losing_every_worker_leaves_the_rest_not_checked(archive, monkeypatch):
    """The cluster loses its workers mid-run: the files it did not answer are skipped as not
    checked, with the reason, and the run ends instead of waiting for workers forever."""
    from distributed import LocalCluster

    from ingest.verify import dask_backend

    monkeypatch.setattr(dask_backend, "NO_WORKERS_SECONDS", 2.0)
    with stock_config(), LocalCluster(n_workers=1, processes=True, threads_per_worker=1,
                                      host="127.0.0.1", dashboard_address="127.0.0.1:0") as lc:
        sent = []

        def progress(event: str, **info) -> None:
            if event == "file_start":
                sent.append(info["path"])
                if len(sent) == 3:
                    lc.scale(0)

        result = verify(VerifyConfig([str(archive)], jobs=1, destination_reports=False,
                                     decode=False, scheduler=lc.scheduler_address,
                                     progress=progress))
    info = result.report["verify"]
    assert "has had no workers for 2 s" in info["stopped"]
    skipped = [r for r in result.records if r.status is Status.SKIPPED]
    assert skipped and len(skipped) == info["not_started"]
    assert all(r.detail == f"not checked: {info['stopped']}" for r in skipped)
    tracked = [r for r in result.records if r.status is not Status.UNTRACKED]
    assert info["checked"] + len(skipped) == len(tracked)


@needs_dask
def test_losing_the_scheduler_leaves_the_rest_not_checked(archive):
    from distributed import LocalCluster

    with stock_config(), LocalCluster(n_workers=1, processes=True, threads_per_worker=1,
                                      host="127.0.0.1", dashboard_address="127.0.0.1:0") as lc:
        sent = []

        def progress(event: str, **info) -> None:
            if event == "file_start":
                sent.append(info["path"])
                if len(sent) == 3:
                    lc.close()

        result = verify(VerifyConfig([str(archive)], jobs=1, destination_reports=False,
                                     decode=False, scheduler=lc.scheduler_address,
                                     progress=progress))
    info = result.report["verify"]
    assert info["stopped"] == f"the connection to the Dask scheduler at {lc.scheduler_address} " \
        "was lost"
    skipped = [r for r in result.records if r.status is Status.SKIPPED]
    assert skipped and len(skipped) == info["not_started"]
    assert all(r.detail == f"not checked: {info['stopped']}" for r in skipped)


@needs_dask
def test_unreachable_scheduler_is_a_usage_error(archive):
    result = CliRunner().invoke(verify_command, [str(archive), "--scheduler",
                                                 "tcp://127.0.0.1:9", "--no-decode"])
    assert result.exit_code == 2
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in result.output


@pytest.mark.parametrize("option", [["--backend", "dask"], ["--scheduler", "tcp://127.0.0.1:1"]])
def test_without_dask_the_options_say_how_to_enable_it(archive, monkeypatch, option):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("dask", "distributed")
                        else real(name, *a))
    result = CliRunner().invoke(verify_command, [str(archive), *option])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == ["ingest: distributed verification needs Dask, which is not installed: "
                     "pip install 'ingest[cluster]'"]
    with sqlite3.connect(catalog_path(str(archive))) as db:  # refused before any session
        assert db.execute("SELECT count(*) FROM sessions WHERE command='verify'").fetchone() \
            == (0,)


@needs_dask
def test_cli_backend_dask_starts_its_own_cluster(archive, tmp_path):
    out = tmp_path / "report.json"
    env_before = dict(os.environ)
    result = CliRunner().invoke(verify_command, [str(archive), "--backend", "dask", "--jobs",
                                                 "1", "--no-decode", "--json", str(out)])
    assert result.exit_code == 1, result.output
    report = json.loads(out.read_text())
    assert report["verify"]["backend"] == "dask" and report["verify"]["scheduler"] is None
    assert report["summary"]["by_status"]["missing"]["files"] == 1
    assert dict(os.environ) == env_before  # the nanny's pre-spawn settings were put back


@needs_dask
def test_a_decoder_crash_costs_one_verdict_not_a_dask_worker(cluster, tmp_path):
    """The decode runs in the worker's own decode process: a decoder that kills its process
    gets verdict 'crashed' and the Dask worker (and the next file) carry on."""
    from distributed import Client

    from ingest.verify.dask_backend import PLUGIN_NAME, DecodeWorkers

    req = {"path": str(tmp_path / "x.jpg"), "kind": "jpeg", "card_path": None,
           "preview": None, "capture_time": None}
    with Client(cluster, set_as_default=False) as client, \
            CrashingInput(tmp_path / "crash.jpg") as crasher:  # SIGSEGV to each reader
        before = set(client.scheduler_info()["workers"])
        client.register_plugin(DecodeWorkers(30.0), name=PLUGIN_NAME)
        try:
            def on_worker(r):  # pickled by value: the workers cannot import this test module
                from distributed import get_worker

                return get_worker().plugins[PLUGIN_NAME].decode(r)

            crashed = client.submit(on_worker, {**req, "path": str(crasher.path)},
                                    pure=False).result()
            after = client.submit(on_worker, req, pure=False).result()
        finally:
            client.unregister_worker_plugin(PLUGIN_NAME)
        assert set(client.scheduler_info()["workers"]) == before
    assert len(crasher.killed) == 1
    assert crashed["decode"]["verdict"] == "crashed"
    assert "worker process died" in crashed["decode"]["error"]
    assert after["decode"]["verdict"] == "not_read"  # no such file: an ordinary verdict
