"""`ingest verify` on a Dask cluster: a LocalCluster of two worker processes on loopback gives
the same report as a local run, file for file; budgets, progress and the command line work
the same; a cluster that would give wrong answers is refused; without Dask the options say
how to enable it."""

from __future__ import annotations

import importlib.util
import json
import os
import sqlite3
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
from ingest.preflight import UsageError
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


@needs_dask
def test_daemonic_workers_are_refused_before_any_check(archive):
    """Plain `dask worker` processes are daemons and cannot start decode processes: every
    image would come back 'crashed'. The run refuses with the fix instead."""
    import dask
    from distributed import LocalCluster

    # Dask's default, stated because the module's cluster has it switched off while it runs.
    with dask.config.set({"distributed.worker.daemon": True}), \
            LocalCluster(n_workers=1, processes=True, threads_per_worker=1, host="127.0.0.1",
                         dashboard_address="127.0.0.1:0") as plain:
        with pytest.raises(UsageError, match="DASK_DISTRIBUTED__WORKER__DAEMON=False"):
            verify(VerifyConfig([str(archive)], jobs=1, destination_reports=False,
                                scheduler=plain.scheduler_address))
        # Hash-only checks need no child processes: the same workers are fine for those.
        ok = verify(VerifyConfig([str(archive)], jobs=1, destination_reports=False,
                                 decode=False, scheduler=plain.scheduler_address))
    assert ok.report["verify"]["checked"] > 0


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
