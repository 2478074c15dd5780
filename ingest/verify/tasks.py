"""The public types between the verify run and a check backend (this machine's decode pool, or
a Dask cluster).

The run (run.py) plans, keeps the catalog and the records, and applies budgets; a backend only
turns `CheckTask`s into `CheckResult`s. A task names its archive the way `ingest.store.open_store`
takes it (a folder path or an object-store URL) so that any process can open it again: a Dask
worker reads the file from its own mount or from the bucket, past every cache.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from ingest.catalog import Row
from ingest.fsio import FileIO
from ingest.model import Status
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


def check_file(task: CheckTask, decoder: Decoder | None) -> CheckResult:
    """One file's whole check where the task runs (a Dask worker): re-read and hash it past
    every cache, and decode-check it with `decoder` when the hash matches. Never raises."""
    from ingest.verify import check

    path = os.path.join(task.archive, task.rel)
    try:
        hc = check.hash_check(path, task.row, task.io)
    except Exception as e:  # noqa: BLE001 - a per-file failure is a status, not a crash
        hc = HashCheck(Status.CORRUPT, f"could not be checked: {type(e).__name__}: {e}", None,
                       0, None, 0.0)
    out = CheckResult(task.key, hc, None)
    if hc.status is Status.VERIFIED and task.decode and decoder is not None:
        out.decode = decoder(check.decode_request(path, task.row.kind or ""))
    return out
