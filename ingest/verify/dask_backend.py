"""`ingest verify` on a Dask distributed cluster (`--scheduler tcp://HOST:PORT`, or
`--backend dask` for a cluster on this machine), through joblib's Dask backend.

Each worker reads the archive through the same path as this machine (a NAS mounted alike on
every node), hashes the file from disk (`fsio.uncached_hash`, via `check.hash_check`) and runs
the decode check; only a small result dict travels back. The catalog never leaves this
process: plan, budgets, progress and the per-file catalog record stay here, as in a local run.

The decode check does not run in the Dask worker itself but in a one-process `DecodePool`
that each worker keeps (a worker plugin owns it). That gives the cluster the local run's
guarantees: a decoder that segfaults or hangs costs one file's verdict ("crashed" or
"timeout"), never a Dask worker (whose death Dask would retry on the next worker, and then
abort the whole run), and the decode process starts with `WORKER_ENV`
(one OpenMP thread; see decode/pool.py) whatever environment the
worker was started with. A worker must therefore be allowed to start processes: Dask's nanny
starts workers as daemons unless `distributed.worker.daemon` is False
(DASK_DISTRIBUTED__WORKER__DAEMON=False), which is checked before any file is sent.

Dask is an optional extra (`pip install 'ingest[cluster]'`); this module imports it lazily
except for the plugin base class, which falls back to `object` so the module always imports.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ingest.catalog import Row, catalog_path
from ingest.decode.pool import WORKER_ENV
from ingest.fsio import FileIO
from ingest.model import FileRecord, Status
from ingest.preflight import UsageError
from ingest.verify import check
from ingest.verify.check import HashCheck

try:  # only for subclassing; every other Dask import happens where it is used
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError:  # pragma: no cover - exercised by the "extra missing" path
    WorkerPlugin = object  # type: ignore[misc,assignment]

if TYPE_CHECKING:
    from ingest.verify.plan import Item
    from ingest.verify.run import _Run

ENABLE_HINT = "pip install 'ingest[cluster]'"
PLUGIN_NAME = "ingest-decode"
CONNECT_SECONDS = 30.0
# Tasks queued per worker thread beyond the running one: enough to hide the round trip,
# few enough that a time budget stops the run close to when it runs out.
QUEUED_PER_THREAD = 4
# How the nanny must start workers: allowed to have children (the decode process), and with
# the decode environment (one OpenMP thread) set before the process starts.
_CLUSTER_CONFIG = {"distributed.worker.daemon": False}


def require_cluster() -> None:
    """UsageError (exit 2) with the one line that enables the feature, when Dask is absent."""
    for name in ("dask", "distributed"):
        if importlib.util.find_spec(name) is None:
            raise UsageError(f"distributed verification needs Dask, which is not installed: "
                             f"{ENABLE_HINT}")


# --- the cluster -----------------------------------------------------------------------------


@contextmanager
def local_cluster(n_workers: int, **kwargs: Any) -> Iterator[Any]:
    """A `distributed.LocalCluster` on loopback whose workers can run ingest's decode checks.

    The nanny puts `pre-spawn-environ` into this process's own environment before it starts
    a worker; what this process had is put back when the cluster is closed.
    """
    import dask
    from distributed import LocalCluster

    saved = dict(os.environ)
    pre_spawn = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {})
    pre_spawn.update(WORKER_ENV)
    options = dict(n_workers=n_workers, processes=True, threads_per_worker=1,
                   host="127.0.0.1", dashboard_address=None)
    options.update(kwargs)
    # Kept for the cluster's whole life: a nanny reads it again when it restarts a worker.
    with dask.config.set({**_CLUSTER_CONFIG, "distributed.nanny.pre-spawn-environ": pre_spawn}):
        try:
            with warnings.catch_warnings():
                # Another Dask on this machine holds the default HTTP port: any port will do.
                warnings.filterwarnings("ignore", message="Port .* is already in use")
                cluster = LocalCluster(**options)
            with cluster:
                yield cluster
        finally:
            for key in set(os.environ) - set(saved):
                del os.environ[key]
            os.environ.update(saved)


@contextmanager
def connect(cfg) -> Iterator[Any]:
    """A `distributed.Client` for this run: the given scheduler, or a local cluster with one
    single-threaded worker process per `cfg.jobs`."""
    from distributed import Client

    if cfg.scheduler:
        _check_reachable(cfg.scheduler)
        try:
            client = Client(cfg.scheduler, timeout=CONNECT_SECONDS, set_as_default=False)
        except (OSError, TimeoutError) as e:
            raise UsageError(f"cannot reach the Dask scheduler at {cfg.scheduler} ({e}): "
                             "check the address and that the scheduler is running") from None
        with client:
            yield client
        return
    with local_cluster(cfg.jobs) as cluster, Client(cluster, set_as_default=False) as client:
        yield client


def _check_reachable(address: str) -> None:
    """A refused or unresolvable tcp:// address fails at once; Dask's own connect would keep
    retrying for CONNECT_SECONDS first."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(address)
    if parts.scheme not in ("tcp", "tls") or not parts.hostname or not parts.port:
        if parts.scheme in ("tcp", "tls"):
            raise UsageError(f"the Dask scheduler address {address} needs a port: "
                             "tcp://HOST:PORT")
        return  # another transport (ucx, inproc): leave it to Dask
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=5).close()
    except OSError as e:
        raise UsageError(f"cannot reach the Dask scheduler at {address} ({e.strerror or e}): "
                         "check the address and that the scheduler is running") from None


def _worker_facts(paths: list[str]) -> dict:
    """Runs on every worker: can it start processes, and does it see each archive?"""
    import multiprocessing

    return {"can_spawn": not multiprocessing.current_process().daemon,
            "missing": [p for p in paths if not os.path.isfile(p)]}


def check_workers(client, roots: list[str], decode: bool) -> int:
    """Refuse a cluster that would give wrong answers: a worker that cannot see an archive
    would report every file `missing`. Returns the number of worker threads."""
    try:
        client.wait_for_workers(1, timeout=CONNECT_SECONDS)
    except TimeoutError:
        raise UsageError("the Dask cluster has no workers: start at least one "
                         "(dask worker SCHEDULER_ADDRESS)") from None
    facts = client.run(_worker_facts, [catalog_path(r) for r in roots])
    for worker, fact in sorted(facts.items()):
        if fact["missing"]:
            where = os.path.dirname(os.path.dirname(fact["missing"][0]))
            raise UsageError(f"Dask worker {worker} cannot see the archive {where}: mount it "
                             "at the same path on every worker")
        if decode and not fact["can_spawn"]:
            raise UsageError(f"Dask worker {worker} cannot start decode processes (it runs as "
                             "a daemon): start workers with DASK_DISTRIBUTED__WORKER__DAEMON="
                             "False, or verify with --no-decode")
    return max(1, sum(client.nthreads().values()))


# --- on the worker ---------------------------------------------------------------------------


class DecodeWorkers(WorkerPlugin):
    """Owns one `DecodePool(1)` per worker thread, started on first use, closed with the
    worker (or when the run unregisters the plugin)."""

    name = PLUGIN_NAME

    def __init__(self, timeout: float):
        self.timeout = timeout  # only this is sent to the workers; the rest is made there

    def setup(self, worker) -> None:
        self._pools: dict[int, Any] = {}
        self._lock = threading.Lock()

    def teardown(self, worker) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()

    def pool(self):
        from ingest.decode.pool import DecodePool

        ident = threading.get_ident()
        with self._lock:
            if ident not in self._pools:
                self._pools[ident] = DecodePool(1, timeout=self.timeout)
            return self._pools[ident]

    def decode(self, req: dict) -> dict:
        pool = self.pool()
        pool.submit(0, req)
        return pool.drain()[0][1]


@dataclass(frozen=True, slots=True)
class Task:
    """What one file's check needs on a worker: a few hundred bytes."""

    key: int
    path: str
    row: Row
    decode: bool
    io: FileIO


def check_on_worker(task: Task) -> dict:
    """Hash one archived file from disk and, when it matches, decode-check it. Never raises:
    any failure is part of the returned record."""
    try:
        hc = check.hash_check(task.path, task.row, task.io)
    except Exception as e:  # noqa: BLE001 - a per-file failure is a status, not a crash
        hc = HashCheck(Status.CORRUPT, f"could not be checked: {type(e).__name__}: {e}", None,
                       0, None, 0.0)
    out = {"key": task.key, "status": str(hc.status), "detail": hc.detail,
           "digest": hc.digest, "bytes_read": hc.bytes_read, "mtime_ns": hc.mtime_ns,
           "seconds": hc.seconds, "decode": None}
    if hc.status is Status.VERIFIED and task.decode:
        req = check.decode_request(task.path, task.row.kind or "")
        try:
            from distributed import get_worker

            out["decode"] = get_worker().plugins[PLUGIN_NAME].decode(req)
        except Exception as e:  # noqa: BLE001
            from ingest.decode.pool import _failed

            out["decode"] = _failed(req, "crashed", f"decoder crashed ({type(e).__name__}: "
                                    f"{e})", 0.0)
    return out


# --- on this machine -------------------------------------------------------------------------


def check_all(run: _Run, due: list[Item]) -> None:
    """The cluster counterpart of `_Run.check_all`: same records, same catalog writes, same
    budget rules (the stop reason is asked before each file is sent)."""
    import joblib

    require_cluster()
    cfg = run.cfg
    roots = sorted({a.root for a in run.archives})
    with connect(cfg) as client:
        threads = check_workers(client, roots, cfg.decode)
        plugin_registered = False
        if cfg.decode and any(check.wants_decode(i.row) for i in due):
            client.register_plugin(DecodeWorkers(cfg.decode_timeout), name=PLUGIN_NAME)
            plugin_registered = True
        sent: dict[int, tuple[FileRecord, Item]] = {}
        lock = threading.Lock()

        def feed():
            # joblib pulls from this lazily (possibly from its callback thread): each file is
            # sent only when a worker slot frees up, so budgets act on files not yet sent.
            for i, item in enumerate(due):
                with lock:
                    if run.stop_before(due, i):
                        return
                    rec = check.new_record(item.root, item.rel, item.row)
                    run.records.append(rec)  # in send order, filled in when it comes back
                    sent[i] = (rec, item)
                run.emit("file_start", root=item.root, path=item.rel, size=item.row.size)
                yield joblib.delayed(check_on_worker)(Task(
                    i, os.path.join(item.root, item.rel), item.row,
                    cfg.decode and check.wants_decode(item.row), cfg.io))

        try:
            with joblib.parallel_config(backend="dask", client=client):
                results = joblib.Parallel(n_jobs=threads, batch_size="auto",
                                          pre_dispatch=f"{threads * QUEUED_PER_THREAD}",
                                          return_as="generator_unordered")(feed())
                while True:
                    try:
                        out = next(results)
                    except StopIteration:
                        break
                    except Exception as e:  # noqa: BLE001 - a lost worker or scheduler
                        _lost(run, sent, f"the Dask cluster failed ({type(e).__name__}: {e})")
                        break
                    with lock:
                        rec, item = sent.pop(out["key"])
                    _apply(run, rec, item, out)
        finally:
            if plugin_registered:
                try:
                    client.unregister_worker_plugin(PLUGIN_NAME)
                except Exception:  # noqa: BLE001 - the workers close their pools on exit
                    pass


def _apply(run: _Run, rec: FileRecord, item: Item, out: dict) -> None:
    """A worker's result on its record, exactly as `_Run._check_one` and `_collect` do."""
    from ingest.verify.run import _Pending

    hc = HashCheck(Status(out["status"]), out["detail"], out["digest"], out["bytes_read"],
                   out["mtime_ns"], out["seconds"])
    run.bytes_read += hc.bytes_read
    rec.status, rec.detail, rec.seconds = hc.status, hc.detail, round(hc.seconds, 6)
    if out["decode"] is not None:
        check.apply_decode(rec, out["decode"])
    run._finish(_Pending(rec, item, hc))


def _lost(run: _Run, sent: dict[int, tuple[FileRecord, Item]], reason: str) -> None:
    """Files sent to a cluster that failed are not checked: they become `skipped` with the
    reason, like files a budget left out, and the next run checks them first."""
    lost = {id(rec) for rec, _ in sent.values()}
    run.records[:] = [r for r in run.records if id(r) not in lost]
    run.not_started = [item for _, item in sent.values()] + list(run.not_started)
    run.stop_reason = reason
    run.emit("stopped", reason=reason, remaining=len(run.not_started))
