"""Find a good copy of a corrupt or missing archive file, and restore the file from it.

A copy is good only if its bytes, re-read from disk now, hash to the ORIGINAL hash in the
damaged archive's catalog. Restoring goes through the same steps as an offload: a hidden
partial beside the final name, fsync, read-back from disk against the original hash, then
rename over the final name and fsync the folder. The file it replaces is first moved into the
archive's quarantine (`ingest.quarantine`): a change verify calls corruption may have been an
edit someone wants back. Nothing is ever restored from an unverified copy, and a restore that
fails at any step leaves the archive as it was.

Sibling archives come from the command line and from the catalog's peers, which the offload
records with the other destinations of each run (`Catalog.record_peers`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

from ingest import fsio
from ingest.catalog import Row
from ingest.store import Store
from ingest.verify.plan import disk_path


@dataclass(slots=True)
class GoodCopy:
    """A copy whose bytes hashed to the original just now: in `store` at `rel`; `local` is a
    file a restore can read (the copy itself in a folder, a download of an object)."""

    store: Store
    rel: str
    local: str
    download: bool  # `local` is a temporary download, removed by `discard`

    @property
    def where(self) -> str:
        return f"{self.store.url}/{self.rel}"

    def discard(self) -> None:
        if self.download:
            try:
                os.unlink(self.local)
            except OSError:
                pass


# --- finding a good copy -------------------------------------------------------------------


class Lookups:
    """The sibling catalogs one verify run reads while it looks for good copies: each opened
    once (an object store's is a download) and closed with `close`."""

    def __init__(self) -> None:
        self._views: dict[str, object | None] = {}

    def paths_by_hash(self, store: Store, digest: str) -> list[str]:
        """From the catalog the run holds open, else read-only: a sibling archive is not ours
        to lock or change."""
        if store.catalog is not None:
            return [r.path for r in store.catalog.by_hash(digest)]
        if store.url not in self._views:
            self._views[store.url] = _open_view(store)
        view = self._views[store.url]
        if view is None:
            return []
        try:
            return [r.path for r in view.by_hash(digest)]
        except Exception:  # noqa: BLE001 - unreadable now: the same path only
            return []

    def close(self) -> None:
        for view in self._views.values():
            if view is not None:
                view.close()
        self._views.clear()


def _open_view(store: Store):
    try:
        # One a newer ingest wrote is still read: each path found here is only a candidate,
        # re-hashed before it is used.
        return store.open_readonly(allow_newer=True)
    except Exception:  # noqa: BLE001 - no catalog there, or unreadable: the same path only
        return None


def find_good_copy(row: Row, rel: str, stores: Sequence[Store], io: fsio.FileIO,
                   own: Store | None = None, tmp: str | None = None,
                   lookups: Lookups | None = None) -> tuple[GoodCopy | None, list[str]]:
    """The first copy in `stores` whose bytes hash to `row`'s original hash now.

    `own` is the archive that holds the damaged `rel`: there only its other copies of the
    same content are candidates (one a later offload wrote beside a damaged twin). An object
    store's copy is downloaded into `tmp` (a folder) while it is hashed, so that the restore
    reads the very bytes that were proven.
    Returns (copy or None, one note per store that was looked at and why it did not serve).
    """
    lookups = lookups or Lookups()
    notes: list[str] = []
    for store in stores:
        if not store.remote and not os.path.isdir(store.url):
            notes.append(f"{store.url}: not mounted")
            continue
        candidates = _candidates(store, rel, row.xxh3_128, lookups)
        if store is own:
            candidates = [c for c in candidates if c != rel]
            if not candidates:
                continue  # the damaged file itself is not worth a note
        seen, unread = False, ""
        for candidate in candidates:
            size = store.size(candidate)
            if size != row.size:
                seen = seen or size is not None
                continue
            good, why = _prove(store, candidate, row.xxh3_128, io, tmp)
            if good is not None:
                return good, notes
            if why:
                unread = unread or why
            else:
                seen = True
        if seen:
            notes.append(f"{store.url}: its copy differs from the original too")
        elif unread:
            notes.append(f"{store.url}: its copy could not be read ({unread})")
        else:
            notes.append(f"{store.url}: no copy")
    return None, notes


def _prove(store: Store, rel: str, digest: str, io: fsio.FileIO,
           tmp: str | None) -> tuple[GoodCopy | None, str | None]:
    """(the good copy, None), (None, None) when its bytes differ, or (None, why) when they
    could not be read: a copy that could not be read is not called different."""
    path = store.local_path(rel)
    if path is not None:
        try:
            ok = fsio.uncached_hash(path, io)[0] == digest
        except OSError as e:
            return None, e.strerror or str(e)
        return (GoodCopy(store, rel, path, False), None) if ok else (None, None)
    try:
        fd, local = tempfile.mkstemp(prefix="ingest-good-", dir=tmp)
    except OSError as e:
        return None, f"no room for a download: {e.strerror or e}"
    good = GoodCopy(store, rel, local, True)
    try:
        with os.fdopen(fd, "wb") as sink:
            ok = store.read_hash(rel, io, sink)[0] == digest
    except OSError as e:
        good.discard()
        return None, e.strerror or str(e)
    if not ok:
        good.discard()
        return None, None
    return good, None


def _candidates(store: Store, rel: str, digest: str, lookups: Lookups) -> list[str]:
    """The same path first (the usual case: same layout), then wherever that archive's own
    catalog holds the same content (a name suffixed differently, another layout)."""
    found = [rel]
    for path in lookups.paths_by_hash(store, digest):
        on_disk = disk_path(path)
        if on_disk not in found:
            found.append(on_disk)
    return found
