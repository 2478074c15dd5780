"""Any fsspec file system as an object store (memory://, gs://, az://, sftp://, ...), through
fsspec's generic calls only.

What a generic file system cannot be asked for, ingest does not assume: there is no server
checksum and no multipart upload, so every upload is proven by a download alone, and a copy
to the final name by a second download (objects.py: copy-then-verify). The file system's own
`copy` must leave the destination complete or absent; fsspec's object-store back ends do
(a server-side copy), and so do its in-memory and local ones.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from ingest import fsio
from ingest.preflight import UsageError
from ingest.store.client import ObjectClient, Uploaded
from ingest.store.urls import redact


@dataclass(frozen=True, slots=True)
class PathLocation:
    """scheme://bucket/prefix as fsspec paths: `base` is the file system's own path of the
    prefix (fsspec strips the scheme; the memory file system keeps a leading slash)."""

    scheme: str
    base: str  # no trailing slash
    display: str  # bucket/prefix, as the user wrote it without extra slashes

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.display}"

    @property
    def bucket(self) -> str:
        return self.display.split("/", 1)[0]

    def key(self, rel: str) -> str:
        return f"{self.base}/{rel}" if rel else self.base

    def rel(self, key: str) -> str:
        return key[len(self.base) + 1:]


class FsspecClient(ObjectClient):
    def __init__(self, url: str, fs=None):
        import fsspec  # lazy: optional extra (pip install 'ingest[s3]')

        scheme, _, rest = url.partition("://")
        display = "/".join(p for p in rest.split("/") if p)
        if not display:
            raise ValueError(f"give a bucket or folder after {scheme}://")
        # skip_instance_cache: a file system of our own, whose listings are not fsspec's
        # shared cache (a stale listing would hide a deleted object from verify).
        try:
            self.fs = fs if fs is not None else fsspec.filesystem(scheme,
                                                                  skip_instance_cache=True)
        except (ImportError, ValueError) as e:
            raise UsageError(f"{scheme}:// needs a package that is not installed ({e})") \
                from None
        base = self.fs._strip_protocol(f"{scheme}://{display}").rstrip("/")
        self.loc = PathLocation(scheme, base, display)

    @property
    def url(self) -> str:
        return self.loc.url

    @property
    def device(self) -> str:
        """Two prefixes in one bucket are one device: they fail together."""
        return f"{self.loc.scheme} {self.loc.bucket}"

    def secrets(self) -> tuple[str, ...]:
        return ()

    def check_access(self) -> None:
        root = self.fs._strip_protocol(f"{self.loc.scheme}://{self.loc.bucket}")
        try:
            if not self.fs.exists(root):
                raise UsageError(f"{self.loc.scheme}://{self.loc.bucket} does not exist: "
                                 "create it first")
        except UsageError:
            raise
        except Exception as e:  # noqa: BLE001 - refused, no credentials, bad address
            raise UsageError(f"cannot reach {self.loc.scheme}://{self.loc.bucket}: "
                             f"{redact(str(e) or type(e).__name__)}") from None

    def head(self, key: str) -> dict | None:
        self.fs.invalidate_cache(key)  # ask the store, not a listing taken earlier
        try:
            info = self.fs.info(key)
        except FileNotFoundError:
            return None
        if info.get("type") == "directory":
            return None
        return {"ContentLength": int(info["size"])}

    def size_of(self, key: str) -> int | None:
        head = self.head(key)
        return None if head is None else head["ContentLength"]

    def delete(self, key: str) -> None:
        self.fs.rm_file(key)

    def list(self, under: str = "") -> dict[str, int]:
        """{key: size} of every file below the folder key `under`."""
        self.fs.invalidate_cache()
        try:
            found = self.fs.find(under.rstrip("/"), detail=True)
        except FileNotFoundError:
            return {}
        return {k: int(v["size"]) for k, v in found.items() if v.get("type") != "directory"}

    def upload(self, local_path: str, key: str) -> Uploaded:
        """Streamed from the local copy, hashing what is read (xxh3-128 and SHA-256)."""
        xx, whole, total = fsio.new_hasher(), hashlib.sha256(), 0
        parent = key.rpartition("/")[0]
        if parent:
            self.fs.makedirs(parent, exist_ok=True)
        with open(local_path, "rb") as src, self.fs.open(key, "wb") as out:
            while chunk := src.read(fsio.CHUNK):
                xx.update(chunk)
                whole.update(chunk)
                out.write(chunk)
                total += len(chunk)
        return Uploaded(total, xx.hexdigest(), base64.b64encode(whole.digest()).decode(),
                        None, 1)

    def abort_uploads(self, under: str) -> int:
        return 0  # no multipart uploads: a partial object is all a killed upload leaves

    def put_bytes(self, key: str, data: bytes) -> None:
        parent = key.rpartition("/")[0]
        if parent:
            self.fs.makedirs(parent, exist_ok=True)
        self.fs.pipe_file(key, data)

    def read_bytes(self, key: str) -> bytes:
        return self.fs.cat_file(key)

    def copy(self, src: str, dst: str, size: int) -> dict:
        """The file system's own copy; proven afterwards by a download (no checksum here)."""
        parent = dst.rpartition("/")[0]
        if parent:
            self.fs.makedirs(parent, exist_ok=True)
        self.fs.copy(src, dst)
        return {}

    def hash_object(self, key: str, sink=None) -> tuple[str, int]:
        """xxh3-128 of the file as the store returns it now: fsspec's read-ahead cache is
        turned off so every byte comes from the store."""
        h, total = fsio.new_hasher(), 0
        self.fs.invalidate_cache(key)  # the size the open trusts comes from the store too
        with self.fs.open(key, "rb", block_size=fsio.CHUNK, cache_type="none") as f:
            while chunk := f.read(fsio.CHUNK):
                h.update(chunk)
                total += len(chunk)
                if sink is not None:
                    sink.write(chunk)
        return h.hexdigest(), total


