"""Run an offload that SIGKILLs itself at the Nth occurrence of one engine event.

    python killed_offload.py EVENT N SOURCE DEST [DEST ...]

EVENT is write | fsync | rename | catalog | decoded. `rename` dies right after the rename and
before the catalog row; `catalog` dies right after a catalog row is written.
"""

from __future__ import annotations

import os
import signal
import sys

from ingest import api, fsio
from ingest.catalog import Catalog

event, limit = sys.argv[1], int(sys.argv[2])
source, dests = sys.argv[3], sys.argv[4:]
count = 0


def tick(name: str) -> None:
    global count
    if name == event:
        count += 1
        if count >= limit:
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


def add(self, **kw):
    row = _add(self, **kw)
    tick("catalog")
    return row


Catalog.add = add  # test-only hook; the engine itself has no kill switches

api.offload(source, dests, io=KillingIO(), jobs=2, chunk_size=64 * 1024,
            progress=lambda ev, **info: tick("decoded") if ev == "file_decoded" else None)
print("not killed")
