"""Refuse a run that could harm the card or cannot work, before anything is written."""

from __future__ import annotations

import os
import tempfile

from ingest.catalog import LOCK_PROBE_PREFIX, STATE_DIR, catalog_path
from ingest.errors import UsageError  # also imported from here by the commands


def _real(path: str) -> str:
    return os.path.realpath(os.path.expanduser(path))


def _inside(child: str, parent: str) -> bool:
    return os.path.commonpath([child, parent]) == parent


def check_source(source: str) -> str:
    real = _real(source)
    if not os.path.exists(real):
        raise UsageError(f"source {source} does not exist: check that the card is mounted")
    if not os.path.isdir(real):
        raise UsageError(f"source {source} is not a folder: give the card's mount point or DCIM")
    if not os.access(real, os.R_OK | os.X_OK):
        raise UsageError(f"source {source} cannot be read: check its permissions")
    return real


def check_destinations(source: str | None, destinations: list[str]) -> list[str]:
    if not destinations:
        raise UsageError("give at least one destination")
    seen: dict[str, str] = {}
    out = []
    for dest in destinations:
        real = _real(dest)
        if not os.path.isdir(real):
            raise UsageError(f"destination {dest} does not exist or is not a folder: "
                             "create it or mount the disk first")
        if source is not None:
            if real == source:
                raise UsageError(f"destination {dest} is the source: choose another folder")
            if _inside(real, source):
                raise UsageError(f"destination {dest} lies inside the source {source}: "
                                 "ingest never writes to the card")
            if _inside(source, real):
                raise UsageError(f"destination {dest} contains the source {source}: "
                                 "choose a folder outside it")
        if real in seen:
            raise UsageError(f"destination {dest} is given twice (same folder as {seen[real]})")
        _check_writable(dest, real)
        seen[real] = dest
        out.append(real)
    return out


PROBE_PREFIX = ".ingest-probe-"


def remove_stale_probes(root: str) -> None:
    """A crash or power cut between a probe's create and unlink (this module's write probe in
    the root, the catalog's lock probe in .ingest/) leaves an empty probe file; the run that
    holds the destination's lock sweeps them (no other run is writing)."""
    for folder, prefix in ((root, PROBE_PREFIX), (os.path.join(root, STATE_DIR),
                                                  LOCK_PROBE_PREFIX)):
        try:
            names = [n for n in os.listdir(folder) if n.startswith(prefix)]
        except OSError:
            continue
        for name in names:
            try:
                os.unlink(os.path.join(folder, name))
            except OSError:
                pass


def _check_writable(dest: str, real: str) -> None:
    try:
        fd, probe = tempfile.mkstemp(prefix=PROBE_PREFIX, dir=real)
        os.close(fd)
        os.unlink(probe)
    except FileNotFoundError:
        pass  # created, then swept by a run that holds the destination's lock: writable
    except OSError as e:
        raise UsageError(f"destination {dest} cannot be written ({e.strerror or e}): "
                         "check the disk is not read-only and you have permission") from None


def check_catalogued(paths: list[str], noun: str, *, none: str, no_catalog: str) -> list[str]:
    """Real paths of folders ingest offloaded to (status and verify only read them, so a
    read-only disk is fine): each exists, holds a catalog, and is given once."""
    if not paths:
        raise UsageError(none)
    seen: dict[str, str] = {}
    for given in paths:
        real = _real(given)
        if not os.path.isdir(real):
            raise UsageError(f"{noun} {given} does not exist or is not a folder: "
                             "mount the disk first")
        if not os.path.isfile(catalog_path(real)):
            raise UsageError(f"{noun} {given} has no ingest catalog (.ingest/catalog.sqlite): "
                             f"{no_catalog}")
        if real in seen:
            raise UsageError(f"{noun} {given} is given twice (same folder as {seen[real]})")
        seen[real] = given
    return list(seen)
