"""The `Store` protocol and the types its calls take and return (see the package's doc)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, BinaryIO, NamedTuple, Protocol

if TYPE_CHECKING:
    from ingest.catalog import Acceptance, Catalog, Row
    from ingest.fsio import FileIO


class PutResult(NamedTuple):
    """What a proven put did. Never raised: a failure is `verified=False` and a detail."""

    verified: bool
    detail: str  # why it failed, or a note ("already there as ...")
    path: str  # relative to the store; "" when nothing was placed
    action: str  # copied | existing | failed
    kept: str | None = None  # where an object it replaced was kept first (quarantine)


class Store(Protocol):
    """One destination. Paths (`rel`) are relative to its root, with "/" separators.

    A writing run calls `open` (the lock, a sweep of what a killed run left, the catalog) and
    `close` (the catalog made durable in the store, the lock let go); `status` reads through
    `open_readonly`, which takes no lock and writes nothing."""

    url: str  # as reports name it: a folder's real path, or scheme://bucket/prefix
    remote: bool  # an object store: a read-back is a download, a decoder needs a local copy
    device_label: str  # the device it lives on, as status names it
    device_id: int  # the same as a number: two stores on one device fail together
    catalog: Catalog | None  # while open
    dead: str | None  # why it stopped taking files in this run, in plain words

    def open(self, session: str, *, command: str, source: str | None = None,
             volume: str | None = None, require_catalog: bool = False,
             started: datetime | None = None) -> Store:
        """Take the lock, sweep what a killed run left, open the catalog and start this
        run's session in it (stamped `started`, or now). UsageError / LockedError (exit 2)
        before anything is written."""

    def open_readonly(self, *, allow_newer: bool = False) -> ReadOnlyView:
        """The catalog, read-only. `allow_newer`: also one a newer ingest wrote (for a
        caller that proves whatever it reads by other means, as a repair re-hashes every
        candidate). UsageError when there is none or it cannot be read."""

    def unreachable(self) -> str | None:
        """After a read failed: why the whole store cannot be reached now, in plain words,
        or None (the failure was about that one file: a finding)."""

    def close(self) -> None: ...

    def contents(self, under: str = "") -> dict[str, str]:
        """What the store holds: catalog name -> path in the store. With `under` (a folder of
        ingest's own state, e.g. ".ingest/previews"), that folder's files, relative to it;
        without, every archived file, ingest's state and the ASC MHL history left out."""

    def size(self, rel: str) -> int | None:
        """The file's size now; None when it is not there."""

    def read_hash(self, rel: str, io: FileIO, sink: BinaryIO | None = None) -> tuple[str, int]:
        """(xxh3-128, bytes) of the stored bytes, read past every cache (a folder: O_DIRECT or
        dropped pages; an object store: a download). Bytes also go to `sink` when given.
        FileNotFoundError when it is gone, OSError when it cannot be read."""

    def local_path(self, rel: str) -> str | None:
        """A path a decoder can open directly, or None (an object store)."""

    def put_proven(self, local_path: str, rel: str, digest: str, size: int, mtime_ns: int, *,
                   replace: Replace | None = None, io: FileIO | None = None,
                   **row: str | None) -> PutResult:
        """Copy a local file, already proven equal to `digest`, to the store: written under a
        partial name, read back past every cache and hashed, only then given its final name,
        and catalogued. Without `replace`, `rel` is the layout's name and another content
        there gets a free suffixed name; with it, exactly `rel` is restored, what it held kept
        in the quarantine first. Never raises for a per-file problem."""

    def write_small(self, rel: str, data: bytes) -> None:
        """Reports, previews, ASC MHL files: the whole content or nothing under `rel`."""

    def read_small(self, rel: str) -> bytes | None:
        """A small file's bytes; None when it is not there."""

    def folder(self, rel: str) -> AbstractContextManager[str]:
        """A local folder whose `rel` subfolder holds the store's `rel` files (for code that
        works on files, the ASC MHL history): the store's own root for a local folder; a
        downloaded copy for an object store, whose new and changed files are written back
        (each by `write_small`) when the block ends without an error."""


class ReadOnlyView(Protocol):
    """A store's catalog as `status` and a repair's sibling lookups read it: no lock taken,
    nothing written or migrated (`catalog.ReadOnlyCatalog` for a folder). An object store's
    view also answers `problem(row)` (is the object there with its catalogued size?), since
    a bucket has no file to stat."""

    def by_hash(self, digest: str) -> list[Row]: ...

    def acceptance(self, card_path: str, size: int, mtime_ns: int) -> Acceptance | None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Replace:
    """Why `put_proven` replaces a file (a verify --repair): for the quarantine note."""

    reason: str
    at: datetime
    session: str
    started: datetime | None = None
