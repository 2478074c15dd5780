"""What an object store must offer ingest, below the proofs (objects.py): a handful of calls
on keys. `S3Client` (s3.py) speaks S3 through s3fs with server checksums and multipart
uploads; `FsspecClient` (generic.py) any other fsspec file system. The lock and the atomic
replace of a small object are written once, here, on top of those calls.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

from ingest.lock import LockedError

STATE = ".ingest"
CATALOG_KEY = f"{STATE}/catalog.sqlite"
LOCK_KEY = f"{STATE}/lock"
PARTIALS = f"{STATE}/partials/"
REPORTS = f"{STATE}/reports/"
STALE_LOCK_SECONDS = 12 * 3600  # a lock left by another host is taken over after this


@dataclass(frozen=True, slots=True)
class Checksum:
    algorithm: str  # sha256, crc64nvme, crc32, crc32c, sha1
    value: str  # base64, without S3's "-<parts>" suffix

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.value}"


@dataclass(slots=True)
class Uploaded:
    size: int
    xxh3_128: str  # of the bytes read from the local copy while uploading
    sha256: str  # base64, of the whole object
    composite: str | None  # base64 SHA-256 of the parts' SHA-256s, when sent in parts
    parts: int
    server: Checksum | None = None  # what the server answered it keeps, if it said
    etag: str | None = None


class ObjectClient:
    """Calls on keys (full paths in the store); subclasses provide `loc`, `url`, `device`,
    `secrets`, `check_access`, `head`, `size_of`, `delete`, `list`, `upload`,
    `abort_uploads`, `put_bytes`, `read_bytes`, `copy` and `hash_object`. Methods raise on
    failure; the object store turns that into a status."""

    def get_file(self, key: str, local_path: str) -> bool:
        """Download an object to a local file; False when there is no such object."""
        try:
            with open(local_path, "wb") as f:
                self.hash_object(key, f)
            return True
        except FileNotFoundError:
            os.unlink(local_path)
            return False

    def put_file_atomic(self, local_path: str, key: str, token: str) -> None:
        """Replace `key` with a local file so that a reader sees the old object or the new
        one, never a part: upload beside it, copy over it, remove the upload."""
        partial = self.loc.key(f"{PARTIALS}{token}-{os.path.basename(key)}")
        up = self.upload(local_path, partial)
        try:
            # Read back before it replaces the old one: a catalog damaged on the way would
            # cost the next run its knowledge of what is archived.
            if self.hash_object(partial) != (up.xxh3_128, up.size):
                raise OSError(f"the upload of {os.path.basename(key)} did not read back as "
                              "it was sent; the old one is kept")
            self.copy(partial, key, os.path.getsize(local_path))
        finally:
            self.delete(partial)

    def put_bytes_atomic(self, data: bytes, key: str, token: str) -> None:
        """`put_file_atomic` for bytes in memory (a report, a preview, an ASC MHL file)."""
        partial = self.loc.key(f"{PARTIALS}{token}-{os.path.basename(key)}")
        self.put_bytes(partial, data)
        try:
            self.copy(partial, key, len(data))
        finally:
            self.delete(partial)

    # the lock ---------------------------------------------------------------------------
    def acquire_lock(self, command: str) -> None:
        """One writer per prefix. There is no flock on S3: a lock object names its holder,
        and a holder that is gone (same host, dead pid; or older than STALE_LOCK_SECONDS)
        is taken over. Raises LockedError otherwise."""
        key = self.loc.key(LOCK_KEY)
        held = self.head(key)
        if held is not None:
            text = self._read_text(key)
            if not _stale(text):
                raise LockedError(f"{self.url} is in use by {text or 'another ingest'}; wait "
                                  "for it to finish, or stop it first")
        holder = f"pid {os.getpid()} on {socket.gethostname()} since {int(time.time())}: {command}"
        self.put_bytes(key, holder.encode())

    def release_lock(self) -> None:
        try:
            self.delete(self.loc.key(LOCK_KEY))
        except Exception:  # noqa: BLE001 - a lock we cannot delete goes stale by itself
            pass

    def _read_text(self, key: str) -> str:
        return self.read_bytes(key).decode("utf-8", "replace").strip()


def _stale(holder: str) -> bool:
    """pid P on HOST since EPOCH: COMMAND"""
    try:
        head = holder.split(":", 1)[0].split()
        pid, host, since = int(head[1]), head[3], int(head[5])
    except (IndexError, ValueError):
        return True  # not ours, or damaged: nothing can be waiting on it
    if time.time() - since > STALE_LOCK_SECONDS:
        return True
    if host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
