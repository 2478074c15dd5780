"""The public types between the verify run and a check backend (this machine's decode pool, or
a Dask cluster).

The run (run.py) plans, keeps the catalog and the records, and applies budgets; a backend only
turns `CheckTask`s into `CheckResult`s. A task names its archive the way `ingest.store.open_store`
takes it (a folder path or an object-store URL) so that any process can open it again: a Dask
worker reads the file from its own mount or from the bucket, past every cache.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from ingest.catalog import Row
from ingest.fsio import FileIO
from ingest.model import Status
from ingest.store import Store, open_store
from ingest.verify import check
from ingest.verify.check import HashCheck

# A decode request (`check.decode_request`) -> a decode pool result (the dict
# `DecodePool.drain` yields, with "decode", "preview" ...). Never raises.
Decoder = Callable[[dict], dict]


@dataclass(frozen=True, slots=True)
class CheckTask:
    """What one file's check needs, wherever it runs: a few hundred bytes."""

    key: int  # the run's handle on the file; echoed in the result
    archive: str  # as `open_store` takes it: a folder path or an object-store URL
    rel: str  # the file's path in the archive
    row: Row  # its catalog row: the hash and size recorded at ingest
    decode: bool  # decode-check it when its hash matches
    io: FileIO
    endpoint: str | None = None  # an object store's endpoint, when the archive is one


@dataclass(slots=True)
class CheckResult:
    key: int
    hash: HashCheck
    decode: dict | None  # a decode pool result; None when the file was not decoded


class BackendLost(Exception):
    """The backend as a whole stopped (a cluster or scheduler lost): tasks sent and not
    answered are not checked in this run. The text says why, in plain words."""


class CheckBackend(Protocol):
    """Turns tasks into results, in any order. `results` pulls tasks lazily, one when it
    has room for it, so that a budget the run applies while feeding acts on files not yet
    sent. A per-file failure is a result (a status), never an exception; only the loss of
    the backend itself raises `BackendLost`."""

    def results(self, tasks: Iterable[CheckTask]) -> Iterator[CheckResult]: ...

    def close(self) -> None: ...

    @property
    def versions(self) -> dict | None: ...


@dataclass(slots=True)
class Read:
    """A file re-read for its check: the hash outcome, and where a decoder can open the very
    bytes that were hashed (the file itself in a folder; a download of an object)."""

    hash: HashCheck
    local: str | None
    download: bool = False

    def discard(self) -> None:
        if self.download and self.local:
            try:
                os.unlink(self.local)
            except OSError:
                pass
            self.local = None


def read_for_check(store: Store, rel: str, row: Row, io: FileIO, keep: bool,
                   tmp: str | None = None) -> Read:
    """Re-read one archived file past every cache and compare it with its catalog row. With
    `keep`, an object store's bytes are kept in a download under `tmp` for the decoder. Never
    raises: a failure is a status."""
    path = store.local_path(rel)
    if path is not None:
        try:
            return Read(check.hash_check(path, row, io), path)
        except Exception as e:  # noqa: BLE001 - a per-file failure is a status, not a crash
            return Read(HashCheck(Status.CORRUPT, f"could not be checked: {e}", None, 0, None,
                                  0.0), None)
    t0 = time.perf_counter()
    local = None
    try:
        if keep:
            fd, local = tempfile.mkstemp(prefix="ingest-check-", suffix=f"-{os.path.basename(rel)}",
                                         dir=tmp)
            with os.fdopen(fd, "wb") as sink:
                digest, nbytes = store.read_hash(rel, io, sink)
        else:
            digest, nbytes = store.read_hash(rel, io)
    except FileNotFoundError:
        return _discarded(local, HashCheck(Status.MISSING, "no longer there", None, 0, None,
                                           time.perf_counter() - t0))
    except Exception as e:  # noqa: BLE001 - a per-file failure is a status
        return _discarded(local, HashCheck(Status.CORRUPT, f"could not be read: {e}", None, 0,
                                           None, time.perf_counter() - t0))
    status, detail = check.compare(row, digest, nbytes)
    hc = HashCheck(status, detail, digest, nbytes, row.mtime_ns, time.perf_counter() - t0)
    return Read(hc, local, download=local is not None)


def _discarded(local: str | None, hc: HashCheck) -> Read:
    Read(hc, local, download=True).discard()
    return Read(hc, None)


def check_file(task: CheckTask, decoder: Decoder | None) -> CheckResult:
    """One file's whole check where the task runs (a Dask worker): re-read and hash it past
    every cache, and decode-check it with `decoder` when the hash matches. Never raises."""
    try:
        store = open_store(task.archive, endpoint=task.endpoint, background=False)
    except Exception as e:  # noqa: BLE001 - a per-file failure is a status, not a crash
        return CheckResult(task.key, HashCheck(Status.CORRUPT, f"could not be checked: {e}",
                                               None, 0, None, 0.0), None)
    read = read_for_check(store, task.rel, task.row, task.io, keep=task.decode)
    out = CheckResult(task.key, read.hash, None)
    try:
        if read.hash.status is Status.VERIFIED and task.decode and decoder is not None \
                and read.local:
            out.decode = decoder(check.decode_request(read.local, task.row.kind or ""))
    finally:
        read.discard()
    return out
