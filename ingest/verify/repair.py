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
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from ingest import fsio
from ingest.catalog import Catalog, Row, catalog_path, open_readonly
from ingest.quarantine import put_back, quarantine
from ingest.verify.plan import disk_path


@dataclass(frozen=True, slots=True)
class GoodCopy:
    root: str
    rel: str  # on disk, relative to root

    @property
    def path(self) -> str:
        return os.path.join(self.root, self.rel)


# --- peers ---------------------------------------------------------------------------------


def record_peers(catalog: Catalog, roots: Sequence[str], session_id: str | None = None,
                 now: str | None = None) -> None:
    """`Catalog.record_peers`, by the name the offload (pipeline.py) calls it."""
    catalog.record_peers(roots, session_id, now)


# --- finding a good copy -------------------------------------------------------------------


def find_good_copy(row: Row, rel: str, roots: Sequence[str], io: fsio.FileIO,
                   own: str | None = None) -> tuple[GoodCopy | None, list[str]]:
    """The first copy in `roots` whose bytes hash to `row`'s original hash now.

    `own` is the archive that holds the damaged `rel`: there only its other copies of the
    same content are candidates (one a later offload wrote beside a damaged twin).
    Returns (copy or None, one note per root that was looked at and why it did not serve).
    """
    notes: list[str] = []
    for root in roots:
        if not os.path.isdir(root):
            notes.append(f"{root}: not mounted")
            continue
        candidates = _candidates(root, rel, row.xxh3_128)
        if root == own:
            candidates = [c for c in candidates if c != rel]
            if not candidates:
                continue  # the damaged file itself is not worth a note
        seen = False
        for candidate in candidates:
            path = os.path.join(root, candidate)
            try:
                if os.path.getsize(path) != row.size:
                    seen = True
                    continue
                digest, _ = fsio.uncached_hash(path, io)
            except OSError:
                continue
            seen = True
            if digest == row.xxh3_128:
                return GoodCopy(root, candidate), notes
        notes.append(f"{root}: {'its copy differs from the original too' if seen else 'no copy'}")
    return None, notes


def _candidates(root: str, rel: str, digest: str) -> list[str]:
    """The same path first (the usual case: same layout), then wherever that archive's own
    catalog holds the same content (a name suffixed differently, another layout)."""
    found = [rel]
    for path in _paths_by_hash(root, digest):
        on_disk = disk_path(path)
        if on_disk not in found:
            found.append(on_disk)
    return found


def _paths_by_hash(root: str, digest: str) -> list[str]:
    path = catalog_path(root)
    if not os.path.isfile(path):
        return []
    # Read-only: a sibling archive is not ours to lock or change. One a newer ingest wrote is
    # still read: each path found here is only a candidate, re-hashed before it is used.
    try:
        with open_readonly(path, timeout=5, allow_newer=True) as catalog:
            return [row.path for row in catalog.by_hash(digest)]
    except sqlite3.Error:
        return []


# --- restoring -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Restored:
    """What `restore` did.

    `error`: None when the file was restored, else why not; the archive is then as it was,
    unless the error says otherwise (a failure after the final rename). `quarantined`: where
    the replaced file now is, relative to the archive root (POSIX); None when there was no
    file to replace (a missing file) or it is back at its own name."""

    error: str | None
    quarantined: str | None = None


def restore(good: GoodCopy, root: str, rel: str, row: Row, token: str, io: fsio.FileIO, *,
            reason: str, at: datetime, started: datetime | None = None) -> Restored:
    """Restore `root/rel` from `good`, keeping the file it replaces in the quarantine.

    `token` is the run's session id (partials and the quarantine folder are named by it);
    `reason` says why the file is replaced, for the quarantine note; `at` is now and
    `started` the run's start (see `ingest.quarantine.quarantine`)."""
    folder, _, name = rel.rpartition("/")
    partial = ""
    kept: str | None = None
    try:
        abs_folder = fsio.makedirs_synced(root, folder)
        fsio.remove_stale_partials(abs_folder, keep=lambda n: token in n)
        partial = os.path.join(abs_folder, fsio.partial_name(name, token))
        if os.path.lexists(partial):
            os.unlink(partial)
        digest = _copy(good.path, partial, io)
        if digest != row.xxh3_128:
            _remove(partial)
            return Restored(f"the copy at {good.path} changed while it was read; "
                            "nothing was restored")
        fsio.set_mtime(partial, row.mtime_ns)
        back, nbytes = fsio.uncached_hash(partial, io)
        if back != row.xxh3_128 or nbytes != row.size:
            _remove(partial)
            return Restored("the restored copy did not match the original when read back from "
                            "disk; nothing was restored (check the disk)")
        # Last, so a restore that fails earlier has nothing to undo.
        try:
            kept = quarantine(root, rel, reason=reason, at=at, session=token, started=started)
        except OSError as e:
            _remove(partial)
            return Restored("could not keep the file it would replace "
                            f"({e.strerror or e}); nothing was restored")
        io.rename(partial, os.path.join(abs_folder, name))
        fsio.fsync_dir(abs_folder)
    except OSError as e:
        _remove(partial)
        error = f"could not restore: {e.strerror or e}"
        if kept is None:
            return Restored(error)
        return _undo_quarantine(error, root, kept, rel, token, at)
    return Restored(None, kept)


def _undo_quarantine(error: str, root: str, kept: str, rel: str, token: str,
                     at: datetime) -> Restored:
    """After a failure that followed the quarantine: put the kept file back if its name is
    still free, so the archive is as it was."""
    if os.path.lexists(os.path.join(root, *rel.split("/"))):
        # Only the folder's fsync failed: the good copy is in place, under that name.
        return Restored(f"{error} after the good copy was renamed into place; the file it "
                        f"replaced is kept at {kept}", kept)
    try:
        put_back(root, kept, rel, reason="put back: its replacement could not be renamed "
                 "into place", at=at, session=token)
    except OSError as e:
        return Restored(f"{error}; the file it would replace is kept at {kept} and could not "
                        f"be put back ({e.strerror or e})", kept)
    return Restored(f"{error}; nothing was changed")


def _copy(src: str, partial: str, io: fsio.FileIO) -> str:
    """Copy in one read, hashing what was read; returns that hash."""
    h = fsio.new_hasher()
    src_fd = os.open(src, os.O_RDONLY)
    try:
        dst_fd = io.open_partial(partial)
        try:
            while chunk := io.read(src_fd, fsio.CHUNK):
                h.update(chunk)
                io.write(dst_fd, chunk)
            io.fsync(dst_fd)
        finally:
            os.close(dst_fd)
    finally:
        os.close(src_fd)
    return h.hexdigest()


def _remove(path: str) -> None:
    if path:
        try:
            os.unlink(path)
        except OSError:
            pass
