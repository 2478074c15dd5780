"""DecodePool: same results for any jobs value; a crash or hang costs only its own file.

Faults come from outside the worker, never from a hook in the code it runs:
- a hang is a file whose read blocks for real: a FIFO that no process ever opens for writing
  (run_task's read opens it, and opening a FIFO for reading waits for a writer);
- a crash is `CrashingInput`: a FIFO whose every reader gets a real SIGSEGV while it waits in
  its read, sent by a thread of the test process, the way a decoder that segfaults on one
  file does it every time that file is decoded.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import threading
import time
from pathlib import Path

import pytest

from conftest import SAMPLES, samples_dir
from ingest.decode.pool import DecodePool
from ingest.decode.task import run_task

STUBS_USED = ("exiftool-stub-nikon.nef", "exiftool-stub-panasonic.rw2", "exiftool-stub-canon.crw")


def _requests() -> list[tuple[str, dict]]:
    samples_dir()
    paths = sorted((SAMPLES / "raw").iterdir()) + sorted((SAMPLES / "jpeg").iterdir())
    paths += [SAMPLES / "stubs" / n for n in STUBS_USED]
    paths += sorted((SAMPLES / "unsupported").iterdir())
    reqs = []
    for p in paths:
        kind = "jpeg" if p.suffix.lower() == ".jpg" else "raw"
        reqs.append((p.name, {"path": str(p), "kind": kind, "card_path": None, "preview": None,
                              "capture_time": None}))
    return reqs


def _stable(result: dict) -> dict:
    """A result without its timings, which differ from run to run."""
    out = dict(result)
    out["decode"] = {k: v for k, v in result["decode"].items() if k != "seconds"}
    return out


def hanging_input(path: Path) -> Path:
    """A file whose read never ends: a FIFO nobody writes to."""
    os.mkfifo(path)
    return path


def nobody_waits_on(fifo: Path) -> bool:
    """True when no process has the FIFO open for reading or is blocked opening it."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as e:
        if e.errno == errno.ENXIO:
            return True
        raise
    os.close(fd)
    return False


class CrashingInput:
    """A FIFO at `path` that kills every process that opens it for reading with `sig`,
    while that process waits in its read: a crash on this file, every time it is decoded.
    `killed` lists the pids killed, in order. Use as a context manager."""

    def __init__(self, path: Path, sig: signal.Signals = signal.SIGSEGV):
        os.mkfifo(path)
        self.path = path
        self.sig = sig
        self.killed: list[int] = []
        self.error: BaseException | None = None
        self._stop = False
        self._thread = threading.Thread(target=self._serve, name="crash-injector", daemon=True)

    def __enter__(self) -> CrashingInput:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop = True
        # A reader of our own releases the injector's blocking open for writing.
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            self._thread.join(timeout=30)
        finally:
            os.close(fd)
        assert not self._thread.is_alive(), "the crash injector did not stop"
        if self.error is not None:
            raise self.error

    def _serve(self) -> None:
        try:
            while True:
                fd = os.open(self.path, os.O_WRONLY)  # returns once a reader has opened it
                try:
                    if self._stop:
                        return
                    pid = self._reader(fd)
                    if pid is not None:
                        os.kill(pid, self.sig)
                        self.killed.append(pid)
                        self._wait_released(pid)
                finally:
                    os.close(fd)
        except BaseException as e:  # noqa: BLE001 - handed to the test in __exit__
            self.error = e

    def _holds(self, pid: int, fd: str) -> bool:
        """Whether `pid` has the FIFO open for reading as its descriptor `fd`."""
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != str(self.path):
                return False
            with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                flags = int(info.readline().split()[1], 8)
        except OSError:  # gone, or not ours to look into
            return False
        return flags & os.O_ACCMODE == os.O_RDONLY

    def _readers(self, pid: int) -> list[str]:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            return []
        return [fd for fd in fds if self._holds(pid, fd)]

    def _wait_released(self, pid: int, wait: float = 30.0) -> None:
        """Until the killed process has let go of the FIFO (a dying process keeps its
        descriptors for a moment, and our next open would find it again)."""
        deadline = time.monotonic() + wait
        while self._readers(pid):
            if time.monotonic() > deadline:
                raise TimeoutError(f"process {pid} still reads {self.path} after {wait:g} s")
            time.sleep(0.01)

    def _reader(self, fd: int, wait: float = 30.0) -> int | None:
        """The other process that holds the FIFO open for reading (its open has returned,
        as our open for writing `fd` has, so it is in its read or about to be); None when
        the reader is already gone (the pool killed it at another file's timeout)."""
        target = str(self.path)
        gone = select.poll()
        gone.register(fd, select.POLLERR)  # a FIFO's write end reports POLLERR without readers
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            # Stopping: the reader that released our open may be the test's own (__exit__),
            # which keeps the FIFO from reporting POLLERR once the worker is gone.
            if self._stop or gone.poll(0):
                return None
            for entry in os.scandir("/proc"):
                if entry.name.isdigit() and int(entry.name) != os.getpid() \
                        and self._readers(int(entry.name)):
                    return int(entry.name)
            time.sleep(0.01)
        raise TimeoutError(f"no process reading {target} after {wait:g} s")


def _run_pool(jobs: int, reqs: list[tuple[str, dict]], **kw) -> dict[str, dict]:
    results: dict[str, dict] = {}
    with DecodePool(jobs, **kw) as pool:
        for key, req in reqs:
            pool.submit(key, req)
            for k, res in pool.poll():
                assert k not in results
                results[k] = res
        for k, res in pool.drain():
            assert k not in results
            results[k] = res
    return results


@pytest.fixture(scope="module")
def in_process() -> dict[str, dict]:
    return {key: _stable(run_task(req)) for key, req in _requests()}


def test_sequential_and_parallel_give_identical_results(in_process) -> None:
    reqs = _requests()
    one = _run_pool(1, reqs)
    two = _run_pool(2, reqs)
    assert set(one) == set(two) == {k for k, _ in reqs}
    for key in one:
        assert _stable(one[key]) == _stable(two[key]) == in_process[key], key
    verdicts = {r["decode"]["verdict"] for r in one.values()}
    assert verdicts == {"ok", "damaged", "unsupported"}


def test_crash_and_hang_cost_only_their_own_file(in_process, tmp_path: Path) -> None:
    reqs = _requests()[:6]
    with CrashingInput(tmp_path / "crash.NEF") as crasher:
        crash = ("CRASH", {**reqs[0][1], "path": str(crasher.path)})
        hang = ("HANG", {**reqs[1][1], "path": str(hanging_input(tmp_path / "hang.NEF"))})
        mixed = reqs[:2] + [crash] + reqs[2:4] + [hang] + reqs[4:]
        results = _run_pool(2, mixed, timeout=3.0)
    assert set(results) == {k for k, _ in mixed}
    c, h = results["CRASH"]["decode"], results["HANG"]["decode"]
    assert (c["verdict"], c["ok"]) == ("crashed", False)
    assert c["error"].startswith("decoder crashed (") and "SIGSEGV" in c["error"]
    # Killed while other files ran beside it, then once more when re-run alone to find it.
    assert len(crasher.killed) >= 2
    assert (h["verdict"], h["ok"]) == ("timeout", False)
    assert h["error"] == "decoder timed out after 3 s"
    assert h["seconds"] >= 3.0
    for key, _req in reqs:
        assert _stable(results[key]) == in_process[key], key


def test_crash_with_a_single_worker(in_process, tmp_path: Path) -> None:
    reqs = _requests()[:2]
    with CrashingInput(tmp_path / "crash.NEF", signal.SIGKILL) as crasher:
        crash = ("CRASH", {**reqs[0][1], "path": str(crasher.path)})
        results = _run_pool(1, [reqs[0], crash, reqs[1]])
    assert len(crasher.killed) == 1  # a lone task that dies is not run again
    c = results["CRASH"]["decode"]
    assert c["verdict"] == "crashed" and "SIGKILL" in c["error"], c
    for key, _req in reqs:
        assert _stable(results[key]) == in_process[key]


def decode_workers() -> list[int]:
    """The pool's worker processes, seen from outside as any process list shows them: this
    process's children that loky started as workers (not its resource trackers)."""
    import psutil

    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "popen_loky_posix" in " ".join(child.cmdline()):
                found.append(child.pid)
        except psutil.Error:
            pass  # gone meanwhile
    return sorted(found)


def test_the_crashed_worker_is_replaced(tmp_path: Path) -> None:
    """The process killed was the pool's worker; the next file runs on a new one."""
    key, req = _requests()[0]
    with DecodePool(1).start() as pool, CrashingInput(tmp_path / "crash.NEF") as crasher:
        deadline = time.monotonic() + 60
        while not decode_workers() and time.monotonic() < deadline:
            time.sleep(0.05)
        before = decode_workers()
        assert len(before) == 1
        pool.submit("CRASH", {**req, "path": str(crasher.path)})
        assert dict(pool.drain())["CRASH"]["decode"]["verdict"] == "crashed"
        assert crasher.killed == before
        pool.submit(key, req)
        assert dict(pool.drain())[key]["decode"]["verdict"] == "ok"
        after = decode_workers()
    assert len(after) == 1 and after != before
    assert decode_workers() == []  # closed


def test_submit_waits_for_a_free_slot(tmp_path: Path) -> None:
    """With one slot, the second submit can only return once the first task has finished."""
    key, req = _requests()[0]
    fifo = hanging_input(tmp_path / "hang.NEF")
    with DecodePool(1, timeout=1.0, max_in_flight=1) as pool:
        pool.submit("HANG", {**req, "path": str(fifo)})
        pool.submit(key, req)
        early = dict(pool.poll())
        assert early["HANG"]["decode"]["verdict"] == "timeout"
        assert nobody_waits_on(fifo)  # the hung worker was killed, not left behind
        late = dict(pool.drain())
    assert late[key]["decode"]["verdict"] == "ok"


def test_poll_on_an_idle_pool_returns_nothing() -> None:
    with DecodePool(2) as pool:
        assert pool.poll() == []
        assert pool.drain() == []


def test_workers_run_single_threaded_openmp() -> None:
    pool = DecodePool(1)
    executor = pool._new_executor()
    try:
        assert executor.submit(os.getenv, "OMP_NUM_THREADS").result() == "1"
    finally:
        executor.shutdown(wait=True, kill_workers=True)


def test_preview_error_names_the_crash(tmp_path: Path) -> None:
    key, req = _requests()[0]
    with CrashingInput(tmp_path / "crash.NEF") as crasher:
        req = {**req, "path": str(crasher.path),
               "preview": {"out": [str(tmp_path / "p.jpg")], "size": 512, "quality": 85}}
        results = _run_pool(1, [(key, req)])
    assert results[key]["decode"]["verdict"] == "crashed"
    assert results[key]["preview"] is None
    assert "crashed" in results[key]["preview_error"]
    assert not (tmp_path / "p.jpg").exists()


def test_workers_exit_when_the_run_is_killed(tmp_path: Path) -> None:
    """A SIGKILLed run cannot shut its pool down: the workers must notice and leave."""
    import subprocess
    import sys

    fifo = str(hanging_input(tmp_path / "hang.NEF"))
    script = (
        "import sys, time\n"
        "from ingest.decode.pool import DecodePool\n"
        "pool = DecodePool(2, timeout=600)\n"
        f"pool.submit('h', {{'path': {fifo!r}, 'kind': 'raw'}})\n"
        f"pool.submit('g', {{'path': {fifo!r}, 'kind': 'raw'}})\n"
        "import psutil\n"
        "def workers():\n"
        "    return [c.pid for c in psutil.Process().children(recursive=True)\n"
        "            if 'popen_loky_posix' in ' '.join(c.cmdline())]\n"
        "while len(workers()) < 2:\n"
        "    time.sleep(0.05)\n"
        "print(*workers(), flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    pids = [int(p) for p in proc.stdout.readline().split()]
    assert pids
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 20  # the watchdog polls every 0.5 s; slack for a busy box
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in pids if _alive(p)]
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    assert alive == []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waiting for its (dead) parent's reaper counts as gone
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def test_workers_that_cannot_start_give_each_file_a_result(monkeypatch) -> None:
    """No worker process can be made (out of file descriptors, /dev/shm full): every file
    still gets a 'crashed' result naming why, and drain() returns instead of waiting."""
    def no_workers(self):
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(DecodePool, "_new_executor", no_workers)
    reqs = _requests()[:3]
    results = _run_pool(2, reqs)
    assert sorted(results) == sorted(k for k, _ in reqs)
    for res in results.values():
        assert res["decode"]["verdict"] == "crashed"
        assert "Too many open files" in res["decode"]["error"]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_drain_reports_a_dead_pump_instead_of_waiting_forever(monkeypatch) -> None:
    """A bug that kills the pump thread outright must surface as an error, not a hang."""
    def broken(self, wake):
        raise SystemExit("pump bug")

    monkeypatch.setattr(DecodePool, "_step", broken)
    key, req = _requests()[0]
    with DecodePool(1) as pool:
        pool.submit(key, req)
        with pytest.raises(RuntimeError, match="decode pool stopped"):
            pool.drain()


def test_start_brings_the_workers_up_before_the_first_task() -> None:
    """start() makes and warms the workers at once, so the first file does not wait for a
    fresh interpreter to import the decoders; they report the decoders' versions as they do."""
    import time

    key, req = _requests()[0]
    with DecodePool(2).start() as pool:
        deadline = time.monotonic() + 60
        while (pool._executor is None or pool.versions is None) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pool.versions and pool.versions["libraw"].count(".") == 2
        warm = pool._executor
        assert warm is not None
        pool.submit(key, req)
        assert dict(pool.drain())[key]["decode"]["verdict"] == "ok"
        assert pool._executor is warm  # the task ran on the workers start() made


def test_start_with_workers_that_cannot_start_leaves_files_their_results(monkeypatch) -> None:
    """The warm-up start() asked for fails; a file already waiting gets the same result as
    without start(): its own two attempts, then 'crashed' naming why."""
    def no_workers(self):
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(DecodePool, "_new_executor", no_workers)
    key, req = _requests()[0]
    pool = DecodePool(1)
    with pool:
        with pool._cond:  # the task is waiting before the pump thread tries the warm-up
            pool.start()
            pool.submit(key, req)
        res = dict(pool.drain())[key]
    assert res["decode"]["verdict"] == "crashed"
    assert "could not start a worker" in res["decode"]["error"]
    assert "Too many open files" in res["decode"]["error"]


def test_close_does_not_wait_for_workers_that_hang_at_start(monkeypatch) -> None:
    """A run that ends (or fails) while its workers are still starting must not wait up to
    WARM_UP_SECONDS for them."""
    import threading
    from concurrent.futures import Future

    class Stuck:
        """An executor whose workers never finish starting."""

        def submit(self, fn, *args):
            return Future()

        def shutdown(self, wait=True, kill_workers=False):
            pass

    monkeypatch.setattr(DecodePool, "_new_executor", lambda self: Stuck())
    pool = DecodePool(1).start()  # its pump thread is now inside the warm-up
    closer = threading.Thread(target=pool.close)
    closer.start()
    closer.join(timeout=10)  # the warm-up alone would hold it for 60 s
    assert not closer.is_alive()

