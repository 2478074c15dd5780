"""The S3 client of an object store (`s3://bucket/prefix`), through s3fs: the calls that
objects.py builds its proofs on, with what S3 offers beyond a generic file system.

Keys under the prefix mirror a local destination: `<prefix>/<path>` for archived files,
`<prefix>/.ingest/` for ingest's own state (see client.py).

An object only ever gets a final name by a server-side copy of a partial whose bytes were
re-downloaded and hashed (see objects.py). Uploads ask the server for its own SHA-256
(`ChecksumAlgorithm`): S3 checks it on receipt, and the value it stores is compared with the
one computed here while reading the local copy. A multipart object's S3 checksum is a
checksum of the parts' checksums ("composite"), so both forms are computed. An ETag is not a
content hash for multipart uploads and is never used as one. A server that keeps no checksum
(older S3-compatible stores) still gets the re-download, which is the proof that counts.

Credentials come from botocore's usual chain (environment, ~/.aws/credentials and config,
instance roles); the endpoint from `endpoint` when given, else botocore's own settings
(AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, `endpoint_url` in ~/.aws/config), else AWS.
"""

from __future__ import annotations

import base64
import hashlib
import os

from ingest import fsio
from ingest.preflight import UsageError
from ingest.store.client import (
    Checksum,
    ObjectClient,
    Uploaded,
)
from ingest.store.urls import parse_url, redact

MIB = 1024 * 1024
PART_SIZE = 16 * MIB  # S3 needs at least 5 MiB for every part but the last
MAX_PARTS = 10_000
COPY_LIMIT = 5 * 1024 * MIB  # CopyObject's limit; larger objects are copied in parts


_CHECKSUM_FIELDS = (("ChecksumSHA256", "sha256"), ("ChecksumCRC64NVME", "crc64nvme"),
                    ("ChecksumCRC32C", "crc32c"), ("ChecksumCRC32", "crc32"),
                    ("ChecksumSHA1", "sha1"))


def checksum_of(head: dict) -> Checksum | None:
    """The checksum the server keeps for an object, from a HEAD with ChecksumMode."""
    for field, name in _CHECKSUM_FIELDS:
        if head.get(field):
            return Checksum(name, head[field].split("-")[0])
    return None


def part_size_for(size: int, minimum: int = PART_SIZE) -> int:
    """A part size that keeps a large video within S3's 10,000 parts."""
    need = -(-size // MAX_PARTS)
    return max(minimum, -(-need // MIB) * MIB)


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def make_filesystem(endpoint: str | None = None):
    """An s3fs filesystem of its own (not fsspec's shared instance), credentials from
    botocore's chain."""
    import s3fs  # lazy: optional extra (pip install 'ingest[s3]')

    client_kwargs = {"endpoint_url": endpoint} if endpoint else {}
    # Downloads are proven by ingest's own xxh3-128 against the card's hash. botocore's
    # optional check of a response against a stored checksum misreads some servers'
    # multipart (composite) values as whole-object ones and fails good objects.
    # botocore before 1.36 has no such setting, and does not validate responses either.
    import botocore.config  # lazy: optional extra (pip install 'ingest[s3]')

    config_kwargs = {"response_checksum_validation": "when_required"}
    try:
        botocore.config.Config(**config_kwargs)
    except TypeError:
        config_kwargs = {}
    return s3fs.S3FileSystem(skip_instance_cache=True, client_kwargs=client_kwargs,
                             config_kwargs=config_kwargs, use_listings_cache=False)


class S3Client(ObjectClient):
    """The S3 calls ingest makes, on one bucket prefix. Methods raise on failure (OSError or
    botocore's errors); callers turn that into a status."""

    def __init__(self, url: str, endpoint: str | None = None, fs=None,
                 part_size: int = PART_SIZE, checksums: bool = True):
        self.loc = parse_url(url)
        self.fs = fs if fs is not None else make_filesystem(endpoint)
        self.part_size = part_size
        self.checksums = checksums
        self._endpoint = endpoint

    # identity ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.loc.url

    @property
    def endpoint(self) -> str:
        """Where requests go, without any user:password part."""
        try:
            url = self.fs.s3.meta.endpoint_url  # connects on first use
        except Exception:  # noqa: BLE001 - only a label
            url = self._endpoint or "https://s3.amazonaws.com"
        return redact(url)

    @property
    def device(self) -> str:
        """Names the store the way status names a disk: endpoint and bucket. Two prefixes in
        one bucket are one device: they fail together."""
        return f"s3 {self.endpoint}/{self.loc.bucket}"

    def secrets(self) -> tuple[str, ...]:
        """The credentials botocore resolved, so that error texts can be redacted."""
        try:
            creds = self.fs.s3._request_signer._credentials
            return tuple(v for v in (getattr(creds, "access_key", None),
                                     getattr(creds, "secret_key", None),
                                     getattr(creds, "token", None)) if isinstance(v, str))
        except Exception:  # noqa: BLE001
            return ()

    # plain calls ------------------------------------------------------------------------
    def call(self, method: str, **kwargs):
        return self.fs.call_s3(method, Bucket=self.loc.bucket, **kwargs)

    def check_access(self) -> None:
        """UsageError, before anything is written, when the bucket cannot be used."""
        try:
            self.call("head_bucket")
        except FileNotFoundError:
            raise UsageError(f"bucket {self.loc.bucket} does not exist at {self.endpoint}: "
                             "create it first") from None
        except PermissionError:
            raise UsageError(f"access to bucket {self.loc.bucket} at {self.endpoint} is "
                             "denied: check the credentials in your AWS environment or "
                             "config") from None
        except Exception as e:  # noqa: BLE001 - connection refused, bad endpoint, no creds
            raise UsageError(f"cannot reach bucket {self.loc.bucket} at {self.endpoint}: "
                             f"{redact(str(e) or type(e).__name__, self.secrets())}") from None

    def head(self, key: str) -> dict | None:
        try:
            return self.call("head_object", Key=key, ChecksumMode="ENABLED")
        except FileNotFoundError:
            return None

    def size_of(self, key: str) -> int | None:
        head = self.head(key)
        return None if head is None else int(head["ContentLength"])

    def delete(self, key: str) -> None:
        self.call("delete_object", Key=key)

    def list(self, under: str = "") -> dict[str, int]:
        """{key: size} of every object whose key starts with `under` (a full key prefix)."""
        out: dict[str, int] = {}
        kwargs = {"Prefix": under}
        while True:
            page = self.call("list_objects_v2", **kwargs)
            for obj in page.get("Contents", []) or []:
                out[obj["Key"]] = int(obj["Size"])
            if not page.get("IsTruncated"):
                return out
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    # uploads ----------------------------------------------------------------------------
    def upload(self, local_path: str, key: str) -> Uploaded:
        """Send a local file to `key` (single PUT, or parts); an upload that fails is aborted
        so no parts linger. Hashes what it reads: xxh3-128, SHA-256 whole and per part."""
        size = os.path.getsize(local_path)
        part = part_size_for(size, self.part_size)
        xx, whole = fsio.new_hasher(), hashlib.sha256()
        with open(local_path, "rb") as f:
            if size <= part:
                data = f.read()
                xx.update(data)
                whole.update(data)
                extra = ({"ChecksumAlgorithm": "SHA256", "ChecksumSHA256": _b64(whole.digest())}
                         if self.checksums else {})
                out = self.call("put_object", Key=key, Body=data, **extra)
                return Uploaded(len(data), xx.hexdigest(), _b64(whole.digest()), None, 1,
                                checksum_of(out), out.get("ETag"))
            start = self.call("create_multipart_upload", Key=key,
                              **({"ChecksumAlgorithm": "SHA256"} if self.checksums else {}))
            upload_id = start["UploadId"]
            sent, part_digests, total = [], [], 0
            try:
                while chunk := f.read(part):
                    xx.update(chunk)
                    whole.update(chunk)
                    digest = hashlib.sha256(chunk).digest()
                    part_digests.append(digest)
                    extra = ({"ChecksumAlgorithm": "SHA256", "ChecksumSHA256": _b64(digest)}
                             if self.checksums else {})
                    out = self.call("upload_part", Key=key, UploadId=upload_id,
                                    PartNumber=len(part_digests), Body=chunk, **extra)
                    entry = {"PartNumber": len(part_digests), "ETag": out["ETag"]}
                    if out.get("ChecksumSHA256"):
                        entry["ChecksumSHA256"] = out["ChecksumSHA256"]
                    sent.append(entry)
                    total += len(chunk)
                done = self.call("complete_multipart_upload", Key=key, UploadId=upload_id,
                                 MultipartUpload={"Parts": sent})
            except BaseException:
                self.abort(key, upload_id)
                raise
        composite = _b64(hashlib.sha256(b"".join(part_digests)).digest())
        return Uploaded(total, xx.hexdigest(), _b64(whole.digest()), composite,
                        len(part_digests), checksum_of(done), done.get("ETag"))

    def abort(self, key: str, upload_id: str) -> None:
        try:
            self.call("abort_multipart_upload", Key=key, UploadId=upload_id)
        except Exception:  # noqa: BLE001 - the stale-upload sweep of the next run gets it
            pass

    def abort_uploads(self, under: str) -> int:
        """Abort multipart uploads a killed run left under `under`; returns how many."""
        page = self.call("list_multipart_uploads", Prefix=under)
        uploads = page.get("Uploads", []) or []
        for up in uploads:
            self.abort(up["Key"], up["UploadId"])
        return len(uploads)

    def put_bytes(self, key: str, data: bytes) -> None:
        self.call("put_object", Key=key, Body=data)

    def put_bytes_atomic(self, data: bytes, key: str, token: str) -> None:
        """One PutObject: S3 shows the old object or the new one whole, never a part, so the
        partial-then-copy of a generic store (three requests per preview) is not needed."""
        self.put_bytes(key, data)

    def copy(self, src: str, dst: str, size: int) -> dict:
        """Server-side copy: the object appears under `dst` complete, or not at all. Returns
        what the server said of the new object (ETag, checksum), where it said it."""
        if size <= COPY_LIMIT:
            out = self.call("copy_object", Key=dst,
                            CopySource={"Bucket": self.loc.bucket, "Key": src})
            return dict(out.get("CopyObjectResult") or {})
        self.fs.copy(f"{self.loc.bucket}/{src}", f"{self.loc.bucket}/{dst}")
        return {}

    # downloads --------------------------------------------------------------------------
    def hash_object(self, key: str, sink=None) -> tuple[str, int]:
        """xxh3-128 of the object as the server returns it now (one streamed GET). `sink`,
        a binary file, receives the bytes too (the decode check reads that copy)."""
        from fsspec.asyn import sync  # lazy: optional extra (pip install 'ingest[s3]')

        body = self.call("get_object", Key=key)["Body"]
        h, total = fsio.new_hasher(), 0
        try:
            while True:
                chunk = sync(self.fs.loop, body.read, fsio.CHUNK)
                if not chunk:
                    break
                h.update(chunk)
                total += len(chunk)
                if sink is not None:
                    sink.write(chunk)
        finally:
            body.close()
        return h.hexdigest(), total

    def read_bytes(self, key: str) -> bytes:
        from fsspec.asyn import sync  # lazy: optional extra (pip install 'ingest[s3]')

        body = self.call("get_object", Key=key)["Body"]
        try:
            return sync(self.fs.loop, body.read)
        finally:
            body.close()
