"""Copy one card file to every destination in a single read, verify, and commit.

Per attempt: read the card once in chunks, hashing and writing each chunk to a hidden partial in
every destination that needs the file; fsync; re-read each partial from disk and compare; only
then rename it to its final name, fsync the folder, and add the catalog row. A partial that
fails is removed; the card is read again for the destinations still missing, up to `retries`.
Nothing here raises for a per-file problem: the outcome is a `CopyOutcome`.
"""

from __future__ import annotations

import errno
import os
import re
import time
from dataclasses import dataclass, field

from ingest import fsio
from ingest.catalog import GOOD, Catalog, Row
from ingest.config import OffloadConfig
from ingest.layout import with_suffix
from ingest.metadata import CaptureInfo, capture_info
from ingest.model import SourceFile

# A destination that fails with one of these will fail every later file too.
_DEAD_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.ENOENT, errno.ENODEV, errno.EIO,
                errno.EACCES, errno.EPERM, errno.ENXIO}


@dataclass(slots=True)
class Destination:
    """Run-time state of one destination root."""

    root: str
    catalog: Catalog
    token: str  # unique per run: names this run's partials
    device: int = 0
    dead: str | None = None  # why this destination stopped taking files
    files: int = 0
    bytes: int = 0
    cleaned: set[str] = field(default_factory=set)


@dataclass(slots=True)
class Placed:
    path: str  # relative to the destination root
    action: str  # copied | existing
    row_status: str | None = None  # status of an existing catalog row


@dataclass(slots=True)
class CopyOutcome:
    digest: str | None = None
    info: CaptureInfo | None = None
    placed: dict[str, Placed] = field(default_factory=dict)  # dest root -> copy
    failed: dict[str, str] = field(default_factory=dict)  # dest root -> reason
    attempts: int = 0
    mismatches: int = 0
    unreadable: str | None = None
    seconds: float = 0.0
    extra_hashes: dict[str, str] = field(default_factory=dict)  # format -> hex (ASC MHL)


class SourceReadError(Exception):
    pass


@dataclass(slots=True)
class _Target:
    dest: Destination
    rel: str  # intended path inside the destination
    partial: str = ""
    fd: int | None = None
    error: str | None = None


def copy_file(src: SourceFile, dests: list[Destination], cfg: OffloadConfig, session_id: str,
              volume: str | None, place: callable, extra_formats: tuple[str, ...] = ()
              ) -> CopyOutcome:
    """`place(info) -> rel path` decides where the file goes (layout + sidecar following).
    `extra_formats` are hash formats (md5, xxh64, ...) a card's ASC MHL history recorded; they
    are computed during the same single read."""
    t0 = time.perf_counter()
    out = CopyOutcome()
    pending = [d for d in dests if not d.dead]
    for d in dests:
        if d.dead:
            out.failed[d.root] = f"destination unavailable: {d.dead}"
    hinted = _hint_existing(src, pending)
    while pending and out.attempts <= cfg.retries:
        out.attempts += 1
        write_to = [d for d in pending if d.root not in hinted]
        try:
            digest, targets = _read_and_write(src, write_to, cfg, out, place, extra_formats)
        except SourceReadError as e:
            out.unreadable = str(e)
            continue
        if out.digest is None:
            out.digest = digest
        elif digest != out.digest:
            _discard(targets)
            out.unreadable = "the card returned different data on two reads of this file"
            break
        out.unreadable = None
        still = []
        for d in pending:
            if d.root in hinted:
                row = hinted.pop(d.root)
                if row.xxh3_128 == digest:
                    out.placed[d.root] = Placed(row.path, "existing", row.status)
                else:
                    still.append(d)  # same name, size and time but other content: copy it
                continue
            tgt = targets.get(d.root)
            if tgt is None or tgt.error:
                reason = tgt.error if tgt else "not written"
                out.failed[d.root] = reason
                if not d.dead:
                    still.append(d)
                continue
            placed = _verify_and_commit(src, tgt, digest, out, cfg, session_id, volume)
            if placed:
                out.placed[d.root] = placed
                out.failed.pop(d.root, None)
            elif not d.dead:
                still.append(d)
        pending = still
    if out.unreadable:
        for d in pending:
            out.failed.setdefault(d.root, out.unreadable)
    out.seconds = time.perf_counter() - t0
    return out


def _hint_existing(src: SourceFile, dests: list[Destination]) -> dict[str, Row]:
    """Destinations whose catalog already holds this card file (same card path, size and
    mtime, proven good, still on disk): they get no write, only a hash comparison."""
    hints = {}
    for d in dests:
        for row in d.catalog.by_source(src.rel, src.size, src.mtime_ns):
            if row.status in GOOD and _present(d.root, row):
                hints[d.root] = row
                break
    return hints


# A copy `ingest verify` found bad is no copy: the card's file replaces it.
_BAD_RESULTS = ("corrupt", "missing")


def _present(root: str, row: Row) -> bool:
    if row.last_result in _BAD_RESULTS:
        return False
    try:
        return os.stat(os.path.join(root, row.path)).st_size == row.size
    except OSError:
        return False


def _read_and_write(src: SourceFile, dests: list[Destination], cfg: OffloadConfig,
                    out: CopyOutcome, place, extra_formats: tuple[str, ...] = ()
                    ) -> tuple[str, dict[str, _Target]]:
    io = cfg.io
    extra = {}
    if extra_formats:
        from ingest.mhl import make_hasher

        extra = {fmt: make_hasher(fmt) for fmt in extra_formats}
    targets: dict[str, _Target] = {}
    try:
        fd = io.open_source(src.abspath)
    except OSError as e:
        raise SourceReadError(f"could not open on the card: {e.strerror or e}") from e
    try:
        h = fsio.new_hasher()
        first = True
        while True:
            try:
                chunk = io.read(fd, cfg.chunk_size)
            except OSError as e:
                _discard(targets)
                raise SourceReadError(f"read error on the card: {e.strerror or e}") from e
            if first:
                if out.info is None:
                    out.info = capture_info(chunk, src.kind, src.mtime_ns)
                rel = place(out.info)
                for d in dests:
                    targets[d.root] = _open_target(d, rel)
                first = False
            if not chunk:
                break
            h.update(chunk)
            for hx in extra.values():
                hx.update(chunk)
            for t in targets.values():
                if t.fd is not None:
                    _write(t, chunk, io)
    finally:
        os.close(fd)
    out.extra_hashes = {fmt: hx.hexdigest() for fmt, hx in extra.items()}
    return h.hexdigest(), targets


def _open_target(d: Destination, rel: str) -> _Target:
    t = _Target(d, rel)
    folder, _, name = rel.rpartition("/")
    try:
        abs_folder = fsio.makedirs_synced(d.root, folder)
        if abs_folder not in d.cleaned:
            fsio.remove_stale_partials(abs_folder, keep=lambda n: d.token in n)
            d.cleaned.add(abs_folder)
        t.partial = os.path.join(abs_folder, fsio.partial_name(name, d.token))
        if os.path.lexists(t.partial):
            os.unlink(t.partial)  # our own leftover from a failed attempt of this run
        t.fd = os.open(t.partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError as e:
        _fail(t, e)
    return t


def _write(t: _Target, chunk: bytes, io: fsio.FileIO) -> None:
    try:
        io.write(t.fd, chunk)
    except OSError as e:
        _fail(t, e)


def _fail(t: _Target, e: OSError) -> None:
    reason = f"{e.strerror or e} while writing to {t.dest.root}"
    if e.errno == errno.ENOSPC:
        reason = f"destination full ({t.dest.root}): free space or use another disk"
    elif e.errno == errno.EROFS:
        reason = f"destination is read-only ({t.dest.root})"
    t.error = reason
    if e.errno in _DEAD_ERRNOS or not os.path.isdir(t.dest.root):
        t.dest.dead = reason
    _close_and_remove(t)


def _close_and_remove(t: _Target) -> None:
    if t.fd is not None:
        try:
            os.close(t.fd)
        except OSError:
            pass
        t.fd = None
    if t.partial:
        try:
            os.unlink(t.partial)
        except OSError:
            pass


def _discard(targets: dict[str, _Target]) -> None:
    for t in targets.values():
        _close_and_remove(t)


def _verify_and_commit(src: SourceFile, t: _Target, digest: str, out: CopyOutcome,
                       cfg: OffloadConfig, session_id: str, volume: str | None) -> Placed | None:
    io = cfg.io
    for row in t.dest.catalog.by_hash(digest):
        if _present(t.dest.root, row):
            # The same content is already archived here (another card, or a re-run): keep that.
            _close_and_remove(t)
            return Placed(row.path, "existing", row.status)
    try:
        io.fsync(t.fd)
        os.close(t.fd)
        t.fd = None
        fsio.set_mtime(t.partial, src.mtime_ns)
        back, nbytes = fsio.uncached_hash(t.partial, io)
    except OSError as e:
        _fail(t, e)
        out.failed[t.dest.root] = t.error
        return None
    if back != digest or nbytes != src.size:
        out.mismatches += 1
        out.failed[t.dest.root] = (f"copy at {t.dest.root} did not match the card when read back "
                                   f"({nbytes} of {src.size} bytes)")
        _close_and_remove(t)
        return None
    try:
        final_rel, adopted = _commit(t, digest, src.size, src.rel, io)
    except OSError as e:
        _fail(t, e)
        out.failed[t.dest.root] = t.error
        return None
    info = out.info
    d = t.dest
    existing = d.catalog.by_path(final_rel)
    if adopted and existing and existing.xxh3_128 == digest:
        return Placed(final_rel, "existing", existing.status)
    d.catalog.add(
        path=final_rel, size=src.size, mtime_ns=src.mtime_ns, digest=digest, kind=str(src.kind),
        capture_time=info.time.isoformat() if info and info.time else None,
        make=info.make if info else None, model=info.model if info else None,
        source_volume=volume, source_path=src.rel, session_id=session_id, status="copied",
        now=cfg.clock().isoformat())
    if not adopted:
        d.files += 1
        d.bytes += src.size
    return Placed(final_rel, "existing" if adopted else "copied")


def _commit(t: _Target, digest: str, size: int, card_rel: str,
            io: fsio.FileIO) -> tuple[str, bool]:
    """Rename the verified partial to a final name that holds no other content.

    Returns (final relative path, adopted): adopted means an identical file already sat there
    (a crash between rename and catalog write), so the partial is dropped and that file is used.
    """
    folder, _, name = t.rel.rpartition("/")
    abs_folder = os.path.dirname(t.partial)
    # First the card folder's name (readable, and shared by a RAW+JPEG pair and its sidecars),
    # then the content hash, which no other file can share.
    card_folder = re.sub(r"[^\w.-]+", "_", card_rel.rpartition("/")[0].rpartition("/")[2])
    candidates = [name] + ([with_suffix(name, card_folder)] if card_folder else [])
    for candidate in (*candidates, with_suffix(name, digest[:8]), with_suffix(name, digest)):
        final = os.path.join(abs_folder, candidate)
        rel = f"{folder}/{candidate}" if folder else candidate
        if os.path.lexists(final):
            if os.path.isfile(final) and os.path.getsize(final) == size \
                    and fsio.uncached_hash(final)[0] == digest:
                _close_and_remove(t)
                return rel, True
            row = t.dest.catalog.by_path(rel)
            if not (row and row.xxh3_128 == digest and row.last_result in _BAD_RESULTS):
                continue  # a different file owns this name: never overwrite it
            # else: verify found this copy of the very same original corrupt; replace it.
        io.rename(t.partial, final)
        fsio.fsync_dir(abs_folder)
        return rel, False
    raise OSError(errno.EEXIST, f"no free name for {name}")
