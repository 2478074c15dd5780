"""Run decode tasks in isolated worker processes (loky).

A decoder that segfaults, aborts, runs out of memory or hangs costs one file's check, never
the run:
- a task past `timeout` gets verdict "timeout"; the workers are killed (the only way to stop
  a C call) and the other tasks that were running are run again;
- a dead worker breaks the whole loky executor and fails every running task alike, so those
  tasks are run again one at a time in a fresh executor: the one that kills its worker again
  gets verdict "crashed", the others get their true results.

At most `jobs` tasks sit in the executor, so each one is running on its own worker and its
clock starts when it starts (new workers are started and warmed up before any task is handed
over); up to `max_in_flight` more wait in a local backlog, and `submit` blocks beyond that,
which bounds memory.

A pump thread owns the executor: it hands a worker its next task the moment the last one
finishes. When the caller's thread did that between its own steps, a worker sat idle for as
long as the caller was busy copying or waiting on a disk (about a fifth of each worker's time
in the 1 GB benchmark). `submit`, `poll` and `drain` only touch queues shared with that thread.

Workers run with one OpenMP/BLAS thread each: LibRaw is built with OpenMP and would otherwise
start a thread per core in every worker.

A damaged lossless-JPEG DNG tile that LibRaw cannot decode is left uninitialised, without an
error: in a worker that has decoded other files it holds an earlier image's pixels. That used
to be made visible with glibc's MALLOC_PERTURB_, which other C libraries ignore; the tile proof
in decode/lj92.py now finds such a tile from the stored data, whatever the heap held.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any

# Standalone loky, not the copy inside joblib: importing that one imports joblib, and with it
# numpy, into the offload's own process before its first copy (0.4 s with a cold cache).
from loky.process_executor import (
    BrokenProcessPool,
    ProcessPoolExecutor,
    TerminatedWorkerError,
)

from ingest.decode import CRASHED, TIMEOUT, check, outcome
from ingest.decode.task import decoder_for_kind, run_task
from ingest.report.versions import decoder_versions

WORKER_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
# How long an idle worker lives before loky retires it.
IDLE_WORKER_SECONDS = 300
# Longest wait for new workers to start and import the decoders (a loaded machine is slow).
WARM_UP_SECONDS = 60.0
_TICK = 0.05
_IDLE_TICK = 1.0


def _exit_with_parent(parent: int, poll_seconds: float = 0.5) -> None:
    """Worker initializer: leave when the process that started the pool is gone.

    A run killed with SIGKILL cannot shut its pool down; loky's own idle timeout would keep
    orphans alive for many seconds, decoding files nobody will collect. A daemon thread
    watching the parent pid ends the worker within `poll_seconds`. The parent's pid is passed
    in, not read here: a run killed while this worker was still starting has already left,
    and getppid() would name the process that adopted the orphan.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _warm_up() -> dict[str, str]:
    """First call in a new worker: import the decoders, so that no task's clock pays for
    process start-up and imports, and name their versions for the report (the parent need
    not import them just for that). The short sleep lets each worker take one warm-up."""
    import ingest.decode.jpeg  # noqa: F401  # lazy: only in the decode worker process
    import ingest.decode.raw  # noqa: F401  # lazy: only in the decode worker process
    import ingest.preview  # noqa: F401  # lazy: only in the decode worker process

    time.sleep(0.05)
    return decoder_versions()


class DecodePool:
    """`with DecodePool(jobs) as pool: pool.submit(key, req); ...; pool.drain()`."""

    def __init__(self, jobs: int, timeout: float = 120.0, max_in_flight: int | None = None):
        self.jobs = max(1, int(jobs))
        self.timeout = float(timeout)
        self.max_in_flight = max(self.jobs, max_in_flight or 2 * self.jobs)
        # Owned by the pump thread.
        self._executor: ProcessPoolExecutor | None = None
        self._backlog: deque[tuple[Any, dict]] = deque()
        self._suspects: deque[tuple[Any, dict]] = deque()   # to re-run one at a time
        self._running: dict[Future, tuple[Any, dict, float, bool]] = {}
        self._finished: list[tuple[Any, dict]] = []
        # Shared with the caller, under _cond.
        self._cond = threading.Condition()
        self._inbox: deque[tuple[Any, dict]] = deque()
        self._done: list[tuple[Any, dict]] = []
        self._unfinished = 0  # submitted and not yet in _done
        self._wake: Future = Future()  # completed to wake the pump thread early
        self._closing = False
        self._thread: threading.Thread | None = None
        # Decoder versions, as the first worker that warmed up reported them (None until then).
        self.versions: dict[str, str] | None = None
        self._warm_wanted = False  # start() asked for workers before the first task

    # -- context manager -----------------------------------------------------------------
    def __enter__(self) -> DecodePool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._poke()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._kill_executor()

    # -- public API (any thread) ----------------------------------------------------------
    def start(self) -> DecodePool:
        """Start the workers now rather than at the first task. A worker's start-up (a fresh
        interpreter importing the decoders: about a second when the disk cache is cold) then
        overlaps the caller's own start and its first copies, instead of leaving a core idle
        once the first file is ready."""
        with self._cond:
            if self._closing:
                raise RuntimeError("decode pool is closed")
            self._warm_wanted = True
            self._start_pump()
            self._poke()
        return self

    def submit(self, key: Any, req: dict) -> None:
        """Queue one task; blocks only while `max_in_flight` tasks are unfinished."""
        with self._cond:
            if self._closing:
                raise RuntimeError("decode pool is closed")
            self._wait_for(lambda: self._unfinished < self.max_in_flight)
            self._inbox.append((key, req))
            self._unfinished += 1
            self._start_pump()
            self._poke()

    def _start_pump(self) -> None:
        """Under _cond."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._pump_loop, name="decode-pump",
                                            daemon=True)
            self._thread.start()

    def poll(self) -> list[tuple[Any, dict]]:
        """Results finished so far, without waiting."""
        with self._cond:
            out, self._done = self._done, []
        return out

    def drain(self) -> list[tuple[Any, dict]]:
        """Wait for every submitted task."""
        with self._cond:
            self._wait_for(lambda: self._unfinished == 0)
            out, self._done = self._done, []
        return out

    def _wait_for(self, ready) -> None:
        """Under _cond: wait until ready(); a pump thread that died cannot make it so."""
        while not self._cond.wait_for(ready, timeout=1.0):
            if self._closing or (self._thread is not None and not self._thread.is_alive()):
                raise RuntimeError("decode pool stopped: its pump thread is gone "
                                   f"with {self._unfinished} files unchecked")

    def _poke(self) -> None:
        if not self._wake.done():
            self._wake.set_result(None)

    # -- the pump thread ------------------------------------------------------------------
    def _pump_loop(self) -> None:
        while True:
            with self._cond:
                if self._closing:
                    return
                self._backlog.extend(self._inbox)
                self._inbox.clear()
                if self._wake.done():
                    self._wake = Future()
                wake = self._wake
            try:
                self._step(wake)
            except Exception as exc:  # noqa: BLE001 - a pool bug costs verdicts, not the run
                self._fail_everything(f"decode pool failed ({type(exc).__name__}: {exc})")
            if self._finished:
                with self._cond:
                    self._done.extend(self._finished)
                    self._unfinished -= len(self._finished)
                    self._finished = []
                    self._cond.notify_all()

    def _fail_everything(self, error: str) -> None:
        """Every task not yet finished gets a result naming the error; workers start afresh."""
        tasks = [(k, r) for k, r, _s, _i in self._running.values()]
        tasks += [*self._suspects, *self._backlog]
        self._running.clear()
        self._suspects.clear()
        self._backlog.clear()
        self._kill_executor()
        self._finished += [(k, failed_result(r, CRASHED, error, 0.0)) for k, r in tasks]

    def _new_executor(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.jobs, timeout=IDLE_WORKER_SECONDS,
                                   env=dict(WORKER_ENV), initializer=_exit_with_parent,
                                   initargs=(os.getpid(),))

    def _ready_executor(self) -> ProcessPoolExecutor:
        """A new executor whose workers are up, so task clocks measure only decoding.

        close() does not wait for the warm-up (up to WARM_UP_SECONDS when a worker hangs at
        start): a run that ends or fails early gives its error at once."""
        executor = self._new_executor()
        try:
            pending = {executor.submit(_warm_up) for _ in range(self.jobs)}
            deadline = time.monotonic() + WARM_UP_SECONDS
            while pending and not self._closing and time.monotonic() < deadline:
                done, pending = wait(pending, timeout=_TICK)
                for f in done:
                    if self.versions is None and not f.exception():
                        self.versions = f.result()
        except Exception:  # noqa: BLE001 - a failing start shows up on the first real task
            pass
        return executor

    def _kill_executor(self) -> None:
        if self._executor is not None:
            try:
                self._executor.shutdown(wait=True, kill_workers=True)
            except Exception:  # noqa: BLE001 - a broken executor may fail to shut down cleanly
                pass
            self._executor = None

    def _pump(self) -> None:
        """Move tasks into the executor: one at a time while isolating suspects."""
        if self._warm_wanted:
            self._warm_wanted = False
            if self._executor is None:
                try:
                    self._executor = self._ready_executor()
                except Exception:  # noqa: BLE001 - the first task will try again, and report
                    pass
        if self._suspects:
            if self._running:
                return
            self._start(*self._suspects.popleft(), isolated=True)
            return
        while self._backlog and len(self._running) < self.jobs:
            self._start(*self._backlog.popleft(), isolated=False)

    def _start(self, key: Any, req: dict, *, isolated: bool) -> None:
        for attempt in range(2):
            try:  # making workers can fail too (no file descriptors, /dev/shm full)
                if self._executor is None:
                    self._executor = self._ready_executor()
                future = self._executor.submit(run_task, req)
            except Exception as exc:  # noqa: BLE001 - broken or shut down: start afresh once
                self._kill_executor()
                if attempt:
                    self._finished.append((key, failed_result(
                        req, CRASHED, f"decoder crashed (could not start a worker: {exc})", 0.0)))
                continue
            self._running[future] = (key, req, time.monotonic(), isolated)
            return

    def _step(self, wake: Future) -> None:
        """Wait until a task ends, a task is submitted, or a tick passes (for the timeouts)."""
        self._pump()
        if not self._running:
            wait([wake], timeout=_IDLE_TICK)
            return
        done, _ = wait([*self._running, wake], timeout=_TICK, return_when=FIRST_COMPLETED)
        done = [f for f in done if f in self._running]
        broken = [f for f in done if _died(f)]
        for future in done:
            if future not in broken:
                key, req, started, _iso = self._running.pop(future)
                self._finished.append((key, _result(future, req, started)))
        if broken:
            self._on_crash(broken)
        else:
            self._check_timeouts()
        self._pump()

    def _on_crash(self, broken: list[Future]) -> None:
        reason = _crash_reason(broken[0].exception())
        victims = list(self._running.items())
        self._running.clear()
        self._kill_executor()
        if len(victims) == 1:
            _future, (key, req, started, _iso) = victims[0]
            self._finished.append((key, failed_result(
                req, CRASHED, f"decoder crashed ({reason})", time.monotonic() - started)))
            return
        # Every running task failed alike; only re-running them alone tells which one it was.
        for _future, (key, req, _started, _iso) in victims:
            self._suspects.append((key, req))

    def _check_timeouts(self) -> None:
        now = time.monotonic()
        late = [f for f, (_k, _r, started, _i) in self._running.items()
                if now - started > self.timeout]
        if not late:
            return
        others = [(k, r) for f, (k, r, _s, _i) in self._running.items() if f not in late]
        for future in late:
            key, req, started, _iso = self._running[future]
            self._finished.append((key, failed_result(
                req, TIMEOUT, f"decoder timed out after {self.timeout:g} s", now - started)))
        self._running.clear()
        self._kill_executor()
        # The others did nothing wrong: back to the front of the queue, in order.
        self._backlog.extendleft(reversed(others))


def _result(future: Future, req: dict, started: float) -> dict:
    """The task's result; a result that cannot cross back (unpicklable) is a decoder failure."""
    exc = future.exception()
    if exc is None:
        return future.result()
    return failed_result(req, CRASHED, f"decoder crashed ({type(exc).__name__}: {exc})",
                         time.monotonic() - started)


def _died(future: Future) -> bool:
    exc = future.exception()
    return isinstance(exc, BrokenProcessPool | TerminatedWorkerError)


def _crash_reason(exc: BaseException | None) -> str:
    text = str(exc or "worker died")
    codes = re.search(r"exit codes of the workers are \{([^}]*)\}", text)
    if codes:
        return f"worker process died: {codes.group(1)}"
    return "worker process died: " + text.splitlines()[0][:200]


def failed_result(req: dict, verdict: str, error: str, seconds: float) -> dict:
    """The result of a task whose decoder could not give one (`verdict` CRASHED or TIMEOUT),
    shaped as `run_task`'s: any runner of decode tasks (this pool, a Dask backend) reports
    such a file alike."""
    kind = req.get("kind", "")
    try:
        name = decoder_for_kind(kind)
    except Exception:  # noqa: BLE001
        name = "unknown"
    decode = outcome(name, [check("worker", False, error)], verdict=verdict, error=error)
    decode["seconds"] = round(seconds, 4)
    return {"decode": decode, "card_decode": None, "preview": None,
            "preview_error": f"no preview: {error}" if req.get("preview") else None}
