"""Run an offload that SIGKILLs itself at the Nth occurrence of one engine event.

    python killed_offload.py EVENT N SOURCE DEST [DEST ...]

EVENT is write | fsync | rename | catalog | status | decoded | mhl. `rename` dies right after
the rename and before the catalog row; `catalog` dies right after a catalog row is written;
`status` right after a file's final status is written to a catalog (after the decode);
`mhl` right after one file of an ASC MHL generation (manifest, then chain) is written.

EVENT `count` kills nothing: the run completes and prints, as its last line, a JSON object with
how many times each event happened, so a test can choose points that are really reached.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections import Counter

from ingest import api, fsio, mhl
from ingest.catalog import Catalog

event, limit = sys.argv[1], int(sys.argv[2])
source, dests = sys.argv[3], sys.argv[4:]
counts: Counter[str] = Counter()


def tick(name: str) -> None:
    counts[name] += 1
    if name == event and counts[name] >= limit:
        os.kill(os.getpid(), signal.SIGKILL)


class KillingIO(fsio.FileIO):
    def write(self, fd, data):
        tick("write")
        super().write(fd, data)

    def fsync(self, fd):
        super().fsync(fd)
        tick("fsync")

    def rename(self, src, dst):
        super().rename(src, dst)
        tick("rename")


_add = Catalog.add
_set_status = Catalog.set_status
_add_many = getattr(Catalog, "add_many", None)
_set_status_many = getattr(Catalog, "set_status_many", None)
_write_atomic = mhl._write_atomic


def add(self, *args, **kw):
    row = _add(self, *args, **kw)
    tick("catalog")
    return row


def set_status(self, *args, **kw):
    _set_status(self, *args, **kw)
    tick("status")


# Batched writes commit several rows in one transaction: each row counts once, after the commit.
def add_many(self, rows, *args, **kw):
    rows = list(rows)
    _add_many(self, rows, *args, **kw)
    for _ in rows:
        tick("catalog")


def set_status_many(self, items, *args, **kw):
    items = list(items)
    _set_status_many(self, items, *args, **kw)
    for _ in items:
        tick("status")


def write_atomic(path, data):
    _write_atomic(path, data)
    tick("mhl")


# Test-only hooks; the engine itself has no kill switches.
Catalog.add = add
Catalog.set_status = set_status
if _add_many is not None:
    Catalog.add_many = add_many
if _set_status_many is not None:
    Catalog.set_status_many = set_status_many
mhl._write_atomic = write_atomic

api.offload(source, dests, io=KillingIO(), jobs=2, chunk_size=64 * 1024,
            progress=lambda ev, **info: tick("decoded") if ev == "file_decoded" else None)
print("not killed")
if event == "count":
    print(json.dumps(dict(counts)))
