"""`ingest verify` on a Dask distributed cluster (`--scheduler tcp://HOST:PORT`, or
`--backend dask` for a cluster on this machine): `DaskBackend`, a `tasks.CheckBackend`.

The backend turns `CheckTask`s into `CheckResult`s and knows nothing of the run: plan,
budgets, catalog and records stay with the verify run, in this process. Each worker reads
the archive through the same path as this machine (a NAS mounted alike on every node) and
sends back only a small result.

Each file is two Dask tasks, driven through the client's own futures (one task's failure is
that file's result, never the end of the run):
- the hash (`tasks.check_file` without a decoder): re-read the file past every cache and
  compare it with its catalog row. Its result comes back to this process at once;
- the decode check, sent only when that hash matched and the task asks for one. Apart from
  the hash so that a decoder that kills its worker cannot take the hash result with it.

Where the decode runs depends on the worker:
- A stock worker is a daemon (Dask's nanny starts it so) and may not start processes: it
  decodes in its own process (`decode.task.run_task`, what the pool's worker processes run),
  one file at a time (the decoders' stderr capture redirects the process-wide fd 2), in a
  thread of its own:
  - a decoder that crashes kills the worker. Dask runs the task again on other workers
    (`distributed.scheduler.allowed-failures`) and then fails it with `KilledWorker`. The
    decodes Dask had queued on the same workers died with it, and may have failed alike (on
    a one-worker cluster they always do): as the local pool re-runs its suspects, each such
    decode runs once more with no other decode on the cluster, and only a second
    `KilledWorker` makes it the file's "crashed" result, made as the local pool makes it
    (`decode.pool.failed_result`), so the record reads as after a local crash. A crashing
    file thus costs 2 x (allowed-failures + 1) worker restarts;
  - a decoder that hangs cannot be stopped inside a process. The task stops waiting after
    the decode timeout and reports "timeout"; this process then has the worker restarted
    (`Client.restart_workers`: its nanny starts a fresh one; a worker without a nanny is
    closed), since the hung thread keeps fd 2 and the decode lock. A decode sent to that
    worker meanwhile waits for the lock, and Dask moves it elsewhere when the worker goes (or,
    should it stay, it too gets "timeout" at the decode timeout). A decoder that hangs holding
    the GIL freezes the whole worker: the scheduler drops it after
    `distributed.scheduler.worker-ttl` and the task ends as a crash, as above;
  - the decode environment `WORKER_ENV` (one OpenMP/BLAS thread) is put into the worker's
    environment before its first decode. Libraries read it when they load, so it does not
    reach a decoder library that an earlier task had already loaded in that worker. A nanny
    sets these same variables by default (`distributed.nanny.pre-spawn-environ`).
- A worker allowed children (`distributed.worker.daemon: False`, as `local_cluster` starts
  them) decodes in a one-process `DecodePool` per worker thread, owned by a worker plugin:
  the local run's isolation (a crash or a hang costs one verdict, never the worker), with
  `WORKER_ENV` set before the decode process starts.

Losing the cluster (the connection to the scheduler, or every worker for NO_WORKERS_SECONDS)
raises `BackendLost` from `results`; the results already given stand.

Dask is an optional extra (`pip install 'ingest[cluster]'`); this module imports it lazily
except for the plugin base class, which falls back to `object` so the module always imports.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import queue
import socket
import threading
import time
import uuid
import warnings
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ingest.catalog import catalog_path
from ingest.decode import CRASHED, NOT_READ, TIMEOUT
from ingest.decode.pool import WORKER_ENV, DecodePool, failed_result
from ingest.model import Status
from ingest.preflight import UsageError
from ingest.report.versions import decoder_versions
from ingest.store import open_store
from ingest.store.urls import is_object_store
from ingest.verify import check
from ingest.verify.tasks import (
    BackendLost,
    CheckResult,
    CheckTask,
    check_file,
    read_for_check,
)

try:  # only for subclassing; every other Dask import happens where it is used
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError:  # pragma: no cover - exercised by the "extra missing" path
    WorkerPlugin = object  # type: ignore[misc,assignment]

ENABLE_HINT = "pip install 'ingest[cluster]'"
PLUGIN_NAME = "ingest-decode"
CONNECT_SECONDS = 30.0
# Files in flight per worker thread: enough to hide the round trips, few enough that a time
# budget stops the run close to when it runs out (the run is asked before each file is sent).
QUEUED_PER_THREAD = 4
# How long a cluster may have no worker at all before the run gives up on it. A nanny
# restarting a worker that a decoder crashed leaves a one-worker cluster empty for seconds.
NO_WORKERS_SECONDS = 60.0
# A hash task whose workers kept dying (they were decoding a crashing file beside it) is sent
# this many times in all before the cluster is given up as unfit.
HASH_ATTEMPTS = 3
_TICK = 1.0  # how often the wait for results looks at the cluster's health
# How the nanny of `local_cluster` starts workers: allowed to have children (the decode
# process), and with the decode environment (one OpenMP thread) set before the process starts.
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
    """A `distributed.LocalCluster` on loopback whose workers decode in decode processes of
    their own (the local run's isolation).

    The nanny puts `pre-spawn-environ` into this process's own environment before it starts
    a worker; what this process had is put back when the cluster is closed.
    """
    # lazy: optional extra (pip install 'ingest[cluster]')
    import dask

    # lazy: optional extra (pip install 'ingest[cluster]')
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
    # lazy: optional extra (pip install 'ingest[cluster]')
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


def _missing_on_worker(paths: list[str]) -> list[str]:
    """Runs on every worker: the catalogs it cannot see."""
    return [p for p in paths if not os.path.isfile(p)]


def check_workers(client, archives: list[str]) -> int:
    """Refuse a cluster that would give wrong answers: a worker that cannot see an archive
    would report every file `missing`. Returns the number of worker threads."""
    try:
        client.wait_for_workers(1, timeout=CONNECT_SECONDS)
    except TimeoutError:
        raise UsageError("the Dask cluster has no workers: start at least one "
                         "(dask worker SCHEDULER_ADDRESS)") from None
    see_archives(client, archives)
    return max(1, sum(client.nthreads().values()))


def see_archives(client, archives: list[str]) -> None:
    """UsageError unless every worker sees each archive (a folder) at the same path."""
    folders = [a for a in archives if not is_object_store(a)]  # a store the worker downloads
    if not folders:
        return
    try:
        facts = client.run(_missing_on_worker, [catalog_path(a) for a in folders])
    except Exception as e:  # noqa: BLE001 - most often: ingest is not installed there
        raise UsageError(f"the Dask workers cannot run ingest's checks ({type(e).__name__}: "
                         f"{e}): install the same ingest on every worker") from None
    for worker, missing in sorted(facts.items()):
        if missing:
            where = os.path.dirname(os.path.dirname(missing[0]))
            raise UsageError(f"Dask worker {worker} cannot see the archive {where}: mount it "
                             "at the same path on every worker")


# --- on the worker ---------------------------------------------------------------------------


class DecodeWorkers(WorkerPlugin):
    """On a worker allowed children: one `DecodePool(1)` per worker thread, started on first
    use, closed with the worker (or when the backend unregisters the plugin)."""

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
        ident = threading.get_ident()
        with self._lock:
            if ident not in self._pools:
                self._pools[ident] = DecodePool(1, timeout=self.timeout)
            return self._pools[ident]

    def decode(self, req: dict) -> dict:
        pool = self.pool()
        pool.submit(0, req)
        return pool.drain()[0][1]


def _hash_on_worker(task: CheckTask) -> CheckResult:
    return check_file(task, None)


# In-process decoding (daemonic workers). One decode at a time per process: the decoders'
# stderr capture swaps the process-wide fd 2.
_decode_lock = threading.Lock()
_env_set = False
_hung: str | None = None  # set once a decode hung here: this process decodes no more


def _use_decode_environment() -> None:
    """`WORKER_ENV` for the decoders of this process: OpenMP and BLAS read it when they load,
    so it is set before the first decode imports them (later it changes nothing)."""
    global _env_set
    if not _env_set:
        os.environ.update(WORKER_ENV)
        _env_set = True


def _decode_on_worker(req: dict, timeout: float,
                      fetch: CheckTask | None = None) -> tuple[dict, str | None]:
    """The file's decode result, and this worker's address when a decoder hung here (the
    worker must then be restarted). `fetch`: the file is in an object store, so the worker
    downloads it first, and decodes that download only if it hashes as the hash task found."""
    if fetch is None:
        return _decode_file_on_worker(req, timeout)
    store = open_store(fetch.archive, endpoint=fetch.endpoint, background=False)
    read = read_for_check(store, fetch.rel, fetch.row, fetch.io, keep=True)
    try:
        if read.hash.status is not Status.VERIFIED or not read.local:
            # Changed or gone between its hash task and this one: no verdict from this run.
            return failed_result(req, NOT_READ, "not decoded: the object changed while it "
                                 f"was checked ({read.hash.detail}); the next run checks it "
                                 "again", read.hash.seconds), None
        return _decode_file_on_worker(dict(req, path=read.local), timeout)
    finally:
        read.discard()


def _decode_file_on_worker(req: dict, timeout: float) -> tuple[dict, str | None]:
    # lazy: optional extra (pip install 'ingest[cluster]')
    from distributed import get_worker

    worker = get_worker()
    plugin = worker.plugins.get(PLUGIN_NAME)
    # A daemon may not start the pool's process; the plugin is registered on every worker.
    if plugin is not None and not multiprocessing.current_process().daemon:
        return plugin.decode(req), None
    return _decode_here(req, timeout, worker.address)


def _decode_here(req: dict, timeout: float, address: str) -> tuple[dict, str | None]:
    from ingest.decode.task import run_task  # lazy: only in the decode worker process

    global _hung
    started = time.monotonic()
    if not _decode_lock.acquire(timeout=timeout):
        # Only a hung decode holds it this long; its worker is being replaced, which takes
        # this task elsewhere. Should that not happen, this file is not left waiting forever.
        return failed_result(req, TIMEOUT, f"decoder timed out after {timeout:g} s (a decoder "
                             f"hung before it in the same Dask worker, on {_hung})",
                             time.monotonic() - started), address
    box: list[dict] = []
    started = time.monotonic()
    thread = threading.Thread(target=lambda: box.append(run_task(req)), daemon=True,
                              name=f"ingest-decode {os.path.basename(req['path'])}")
    try:
        _use_decode_environment()
        thread.start()
        thread.join(timeout)
    finally:
        if not thread.is_alive():
            _decode_lock.release()
    elapsed = time.monotonic() - started
    if thread.is_alive():
        # The thread keeps the lock and fd 2: no other decode may run in this process.
        _hung = req["path"]
        return failed_result(req, TIMEOUT, f"decoder timed out after {timeout:g} s",
                             elapsed), address
    if not box:  # run_task returns a result for every Exception; this was something else
        return failed_result(req, CRASHED, "decoder crashed (its thread ended without a "
                             "result)", elapsed), None
    return box[0], None


def _versions_on_worker() -> dict[str, str]:
    _use_decode_environment()
    return decoder_versions()


# --- on this machine -------------------------------------------------------------------------


@dataclass(slots=True)
class _File:
    """One task between its first send and its result."""

    task: CheckTask
    result: CheckResult | None = None  # the hash's, once it is back
    req: dict | None = None  # the decode request, once the hash matched
    fetch: CheckTask | None = None  # an object the decode task downloads first
    sent: float = field(default_factory=time.monotonic)
    hash_attempts: int = 0
    alone: bool = False  # its decode runs again with no other decode on the cluster


@dataclass(slots=True)
class _Flight:
    """What one `results` call has out on the cluster."""

    done: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)  # futures, as they end
    waiting: dict[str, tuple[Any, _File]] = field(default_factory=dict)  # key -> (future, file)
    held: deque[_File] = field(default_factory=deque)  # decodes not sent yet
    suspects: deque[_File] = field(default_factory=deque)  # decodes to run again, alone
    decoding: int = 0  # decodes out on the cluster
    alone: bool = False  # one of them is a suspect, alone


class DaskBackend:
    """A `CheckBackend` on a Dask cluster: `cfg.scheduler`, else a local cluster of `cfg.jobs`
    worker processes. Connects on the first `results` call; `close` lets go of it."""

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self._stack = ExitStack()
        self._client: Any = None
        self._threads = 1
        self._seen: set[str] = set()
        self._plugin = False
        self._versions_future: Any = None
        self._versions: dict | None = None
        self._scheduler = ""

    def __enter__(self) -> DaskBackend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def versions(self) -> dict | None:
        """The decoder versions of a worker, once one has decoded (None before)."""
        f = self._versions_future
        if self._versions is None and f is not None and f.done():
            try:
                self._versions = f.result()
            except Exception:  # noqa: BLE001 - the report then names no versions
                self._versions_future = None
        return self._versions

    def close(self) -> None:
        if self._client is not None and self._plugin:
            self._plugin = False
            try:
                self._client.unregister_worker_plugin(PLUGIN_NAME)
            except Exception:  # noqa: BLE001 - the workers close their pools on exit
                pass
        self._client = None
        self._stack.close()

    def _start(self) -> None:
        require_cluster()
        self._client = self._stack.enter_context(connect(self.cfg))
        self._scheduler = self.cfg.scheduler or self._client.scheduler.address
        # The archives the run was given, so that a cluster that cannot see one is refused
        # before any file is sent; any other archive a task names is looked at on first sight.
        folders = [os.path.realpath(a) for a in self.cfg.archives if not is_object_store(a)]
        self._threads = check_workers(self._client, folders)
        self._seen.update(folders)

    def results(self, tasks: Iterable[CheckTask]) -> Iterator[CheckResult]:
        if self._client is None:
            self._start()
        room = self._threads * QUEUED_PER_THREAD
        fl = _Flight()
        source = iter(tasks)
        more, open_files = True, 0
        try:
            while True:
                # Pulled only when there is room: the run asks its budgets before each task.
                while more and open_files < room:
                    task = next(source, None)
                    if task is None:
                        more = False
                        break
                    if task.archive not in self._seen:
                        see_archives(self._client, [task.archive])
                        self._seen.add(task.archive)
                    self._send_hash(fl, _File(task))
                    open_files += 1
                self._send_decodes(fl)
                if not open_files:
                    return
                future, f = fl.waiting.pop(self._next_done(fl.done).key)
                answer, hung_worker = self._answer(future)
                if f.req is None:  # its hash
                    f.result = self._hash_result(answer, f)
                    if f.result is None:  # its workers died under it: sent again
                        self._send_hash(fl, f)
                        continue
                    if f.result.hash.status is Status.VERIFIED and f.task.decode:
                        # An object's path is filled in on the worker, by its download.
                        f.req = check.decode_request(os.path.join(f.task.archive, f.task.rel),
                                                     f.task.row.kind or "")
                        f.fetch = f.task if is_object_store(f.task.archive) else None
                        fl.held.append(f)
                        continue
                else:
                    fl.decoding -= 1
                    fl.alone = fl.alone and not f.alone
                    decode = self._decode_result(answer, f)
                    if hung_worker:
                        self._restart(hung_worker)
                    if decode is None:
                        fl.suspects.append(f)
                        continue
                    f.result.decode = decode
                open_files -= 1
                yield f.result
        finally:
            if fl.waiting and self._client is not None:
                try:
                    self._client.cancel([fut for fut, _f in fl.waiting.values()])
                except Exception:  # noqa: BLE001 - a lost cluster has nothing left to cancel
                    pass

    def _submit(self, fl: _Flight, f: _File, name: str, fn, *args) -> None:
        try:
            # Named keys: the dashboard shows "ingest-hash" and "ingest-decode" task groups.
            future = self._client.submit(fn, *args, key=f"{name}-{uuid.uuid4().hex}")
        except Exception as e:  # noqa: BLE001 - a client that lost its scheduler, most often
            raise BackendLost(f"the Dask cluster failed ({type(e).__name__}: {e})") from None
        fl.waiting[future.key] = (future, f)
        future.add_done_callback(fl.done.put)  # called from the client's callback thread

    def _send_hash(self, fl: _Flight, f: _File) -> None:
        f.hash_attempts += 1
        self._submit(fl, f, "ingest-hash", _hash_on_worker, f.task)

    def _send_decodes(self, fl: _Flight) -> None:
        """A decoder that kills its worker kills the decodes Dask queued beside it too (on a
        one-worker cluster, every time): each decode that Dask gave up on is sent again with
        no other decode on the cluster, as the local pool re-runs its suspects, and only a
        second loss makes it a crash. Meanwhile new decodes wait."""
        if fl.alone:
            return
        if fl.suspects:
            if not fl.decoding:
                f = fl.suspects.popleft()
                f.alone = fl.alone = True
                self._send_decode(fl, f)
            return
        while fl.held:
            self._send_decode(fl, fl.held.popleft())

    def _send_decode(self, fl: _Flight, f: _File) -> None:
        if not self._plugin:
            # Only a worker allowed children uses it; on a daemon it stays idle.
            self._client.register_plugin(DecodeWorkers(self.cfg.decode_timeout),
                                         name=PLUGIN_NAME)
            self._plugin = True
            self._versions_future = self._client.submit(
                _versions_on_worker, key=f"ingest-versions-{uuid.uuid4().hex}")
        f.sent = time.monotonic()
        fl.decoding += 1
        self._submit(fl, f, "ingest-decode", _decode_on_worker, f.req, self.cfg.decode_timeout,
                     f.fetch)

    def _next_done(self, done: queue.SimpleQueue):
        """The next finished future; BackendLost when the cluster is gone."""
        empty_since: float | None = None
        while True:
            try:
                future = done.get(timeout=_TICK)
            except queue.Empty:
                empty_since = self._check_alive(empty_since)
                continue
            if future.status == "cancelled":
                # The client cancels every future when it loses the scheduler.
                raise BackendLost(f"the connection to the Dask scheduler at {self._scheduler} "
                                  "was lost")
            return future

    def _check_alive(self, empty_since: float | None) -> float | None:
        """While no result comes: a cluster without workers gets none (Dask would wait for
        one forever). Returns since when it has had none."""
        try:
            workers = len(self._client.nthreads())
        except Exception:  # noqa: BLE001 - a lost scheduler: the cancelled futures say so
            return empty_since
        if workers:
            return None
        now = time.monotonic()
        if empty_since is None:
            return now
        if now - empty_since >= NO_WORKERS_SECONDS:
            raise BackendLost(f"the Dask cluster at {self._scheduler} has had no workers for "
                              f"{NO_WORKERS_SECONDS:g} s")
        return empty_since

    @staticmethod
    def _answer(future) -> tuple[Any, str | None]:
        """(result or exception, address of a worker to restart). The future is let go at
        once: a worker lost later must not make Dask compute it again for nobody (a hung
        decode would hang the next worker too)."""
        try:
            answer = future.result()
        except Exception as e:  # noqa: BLE001 - judged by the caller
            answer = e
        future.release()
        if isinstance(answer, tuple):  # a decode's (result, hung worker)
            return answer
        return answer, None

    def _hash_result(self, answer, f: _File) -> CheckResult | None:
        """The hash's result; None when it is to be sent again."""
        # lazy: optional extra (pip install 'ingest[cluster]')
        from distributed import KilledWorker

        if isinstance(answer, KilledWorker):
            if f.hash_attempts < HASH_ATTEMPTS:
                return None
            raise BackendLost(f"the Dask workers kept dying while {f.task.rel} was read "
                              f"({answer})")
        if isinstance(answer, Exception):  # check_file never raises: the cluster failed
            raise BackendLost(f"the Dask cluster failed ({type(answer).__name__}: {answer})")
        return answer

    def _decode_result(self, answer, f: _File) -> dict | None:
        """The decode's result; None when it is to run again, alone."""
        # lazy: optional extra (pip install 'ingest[cluster]')
        from distributed import KilledWorker

        req = f.req or {}
        elapsed = time.monotonic() - f.sent
        if isinstance(answer, KilledWorker):
            if not f.alone:
                return None
            deaths = 2 * (getattr(answer, "allowed_failures", 0) + 1)
            return failed_result(req, CRASHED, f"decoder crashed (worker process died: {deaths} "
                                 "Dask workers died decoding it, the last ones running it "
                                 "alone)", elapsed)
        if isinstance(answer, Exception):  # as the local pool reports a failed task
            return failed_result(req, CRASHED, f"decoder crashed ({type(answer).__name__}: "
                                 f"{answer})", elapsed)
        return answer

    def _restart(self, address: str) -> None:
        """A worker whose decoder hung keeps that thread: a fresh process replaces it."""
        try:
            self._client.restart_workers([address], raise_for_error=False)
        except Exception:  # noqa: BLE001 - gone already, or no nanny: nothing more to do
            pass
