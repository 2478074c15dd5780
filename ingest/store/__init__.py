"""Where archived copies live: a `Store` is one destination, a local folder or an object-store
prefix, with the few operations that offload, verify, status and repair need.

`open_store` is the only place that tells a folder from an object store (by a `scheme://` in
the name). Everything else talks to the protocol, so a new fsspec file system (GCS, Azure,
B2, SFTP) is a scheme added here, not an edit to the commands.

The card's fast path (one card read written to every local partial, see copier.py) stays
local-only: a `LocalStore` exposes the folder for it through `local_path`.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, BinaryIO, NamedTuple, Protocol

if TYPE_CHECKING:
    from ingest.catalog import Catalog
    from ingest.fsio import FileIO


class PutResult(NamedTuple):
    """What a proven put did. Never raised: a failure is `verified=False` and a detail."""

    verified: bool
    detail: str  # why it failed, or a note ("already there as ...")
    path: str  # relative to the store; "" when nothing was placed
    action: str  # copied | existing | failed
    kept: str | None = None  # where an object it replaced was kept first (quarantine)


class Store(Protocol):
    """One destination. Paths (`rel`) are relative to its root, with "/" separators."""

    url: str  # as reports name it: a folder's real path, or scheme://bucket/prefix
    remote: bool  # an object store: a read-back is a download
    device: str  # the device it lives on, as reports name it (a folder: its mount's id)

    def lock(self, command: str) -> AbstractContextManager[None]:
        """Held for a whole run that writes (offload, verify); UsageError when another run
        holds it."""

    def open_catalog(self, *, readonly: bool = False, create: bool = False) -> Catalog:
        """The store's catalog. An object store's is a local copy, saved by `save_catalog`."""

    def save_catalog(self, catalog: Catalog) -> None:
        """Make the catalog's committed rows durable in the store (an upload for an object
        store, beside the old one then copied over it; nothing more for a folder)."""

    def listing(self) -> dict[str, int]:
        """Every archived file (rel -> size), ingest's own state and ASC MHL excluded."""

    def size(self, rel: str) -> int | None:
        """The file's size now; None when it is not there."""

    def read_hash(self, rel: str, io: FileIO, sink: BinaryIO | None = None) -> tuple[str, int]:
        """(xxh3-128, bytes) of the stored bytes, read past every cache (a folder: O_DIRECT
        or dropped pages; an object store: a download). Bytes also go to `sink` when given.
        FileNotFoundError when it is gone, OSError when it cannot be read."""

    def local_path(self, rel: str) -> str | None:
        """A path a decoder can open directly, or None (an object store)."""

    def put_proven(self, local_path: str, rel: str, digest: str, size: int) -> PutResult:
        """Copy a local file, already proven equal to the card (`digest`), to `rel`: written
        under a partial name, read back and hashed, only then given its final name. When
        another content holds `rel`, a free suffixed name is used instead."""

    def write_small(self, rel: str, data: bytes) -> None:
        """Reports, previews, ASC MHL files: the whole content or nothing under `rel`."""

    def read_small(self, rel: str) -> bytes | None:
        """A small file's bytes; None when it is not there."""

    def close(self) -> None: ...
