"""Where archived copies live: a `Store` is one destination, a local folder or an object-store
prefix, with the few operations that offload, verify, status and repair need.

Modules: `base` (the protocol and its types), `local` (a folder), `objects` (an object store:
the upload proof, the catalog in the store), `client` / `s3` / `generic` (the calls an object
store is reached by: S3 with server checksums, or any fsspec file system), `urls` (schemes,
canonical names, redaction of credentials).

`open_store` is the only place that tells a folder from an object store (by a `scheme://` in
the name). Everything else talks to the protocol, so a new fsspec file system (GCS, Azure,
B2, SFTP) is a scheme added here, not an edit to the commands.

The card's fast path (one card read written to every local partial, see copier.py) stays
local-only: a `LocalStore` exposes the folder for it through `local_path`.
"""

from __future__ import annotations

from ingest.preflight import UsageError
from ingest.store.base import PutResult, ReadOnlyView, Replace, Store
from ingest.store.generic import FsspecClient
from ingest.store.local import LocalStore
from ingest.store.objects import ObjectStore
from ingest.store.s3 import S3Client
from ingest.store.urls import is_object_store, redact, require_scheme

__all__ = ["PutResult", "ReadOnlyView", "Replace", "Store", "object_client", "open_store"]


def open_store(name: str, *, endpoint: str | None = None, clock=None, **options) -> Store:
    """The Store for a destination as the user named it. UsageError (exit 2) with one line
    for a scheme ingest cannot use or a missing optional extra. `endpoint` is an S3-compatible
    endpoint; `options` go to the object store (part size, retries, background uploads)."""
    if not is_object_store(name):  # the one place a destination's kind is decided
        return LocalStore(name, clock=clock)
    return ObjectStore(object_client(name, endpoint), clock=clock, **options)


def object_client(url: str, endpoint: str | None = None):
    """The client that speaks to an object store: S3 through s3fs (server checksums,
    multipart uploads), any other fsspec file system through fsspec's generic calls."""
    scheme = require_scheme(url)
    if scheme == "s3":
        return S3Client(url, endpoint)
    try:
        return FsspecClient(url)
    except ValueError as e:
        raise UsageError(f"destination {redact(url)}: {e}") from None
