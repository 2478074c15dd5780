"""Object-store URLs: which schemes ingest can use, how a URL is written canonically, and
redaction of credentials from every text that may reach a report, a catalog or a terminal.
Imports nothing heavy: s3fs and fsspec are optional extras, imported only when used.
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from ingest.preflight import UsageError

ENABLE_HINT = "pip install 'ingest[s3]'"
# Schemes that are not object stores ingest can prove copies on: a local path in disguise,
# or an fsspec layer over another file system.
_NOT_STORES = frozenset({"file", "local", "simplecache", "filecache", "blockcache", "cached",
                         "zip", "tar", "reference", "http", "https", "dir"})

# Credentials never reach a report, a catalog or a log line: botocore error texts and URLs
# are passed through `redact` first.
_SECRET_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
               "AWS_SECURITY_TOKEN")
_KEY_ID = re.compile(r"\b(?:AKIA|ASIA|AROA|AIDA)[A-Z0-9]{12,}\b")
_URL_USERINFO = re.compile(r"(\w+://)[^/@\s]+@")


def is_object_store(name: str) -> bool:
    """The one test that tells an object-store URL (scheme://...) from a folder path."""
    return "://" in name


def require_scheme(url: str) -> str:
    """The URL's scheme, or UsageError (exit 2) with one line for a scheme ingest cannot use
    or a missing extra. s3:// needs s3fs; another fsspec file system (gs://, az://, sftp://,
    memory://) needs fsspec and that file system's own package."""
    scheme = url.partition("://")[0].lower()
    if scheme == "s3":
        for name in ("s3fs", "fsspec"):
            if importlib.util.find_spec(name) is None:
                raise UsageError(f"s3:// destinations need s3fs, which is not installed: "
                                 f"{ENABLE_HINT}")
        return scheme
    if importlib.util.find_spec("fsspec") is None:
        raise UsageError(f"{scheme}:// destinations need fsspec, which is not installed: "
                         f"{ENABLE_HINT}")
    # lazy: optional extra (pip install 'ingest[s3]'); find_spec above said it is there
    from fsspec.registry import known_implementations, registry

    if scheme in _NOT_STORES or (scheme not in known_implementations
                                 and scheme not in registry):
        raise UsageError(f"destination {redact(url)}: {scheme}:// is not an object store "
                         "ingest can use (s3://BUCKET/PREFIX, or another fsspec file system)")
    spec = known_implementations.get(scheme, {})
    package = spec.get("class", "").split(".", 1)[0]
    if package and importlib.util.find_spec(package) is None:
        raise UsageError(f"{scheme}:// destinations need {package}, which is not installed: "
                         f"pip install {package}")
    return scheme


def canonical(url: str) -> str:
    """One spelling per destination: s3://bucket/prefix without slashes at either end."""
    scheme = require_scheme(url)
    if scheme == "s3":
        return parse_url(url).url
    rest = "/".join(p for p in url.partition("://")[2].split("/") if p)
    return f"{scheme}://{rest}"


def redact(text: str, extra: tuple[str, ...] = ()) -> str:
    """`text` without any credential this process knows of, nor a URL's user:password."""
    out = _URL_USERINFO.sub(r"\1", str(text))
    secrets = [os.environ.get(name, "") for name in _SECRET_ENV] + list(extra)
    for secret in sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True):
        out = out.replace(secret, "***")
    return _KEY_ID.sub("***", out)


def split_destinations(destinations: list[str]) -> tuple[list[str], list[str]]:
    """(local folders, object-store URLs) for preflight. An object store is filled from a
    verified local copy, so it needs a local destination beside it."""
    local = [d for d in destinations if not is_object_store(d)]
    remote: list[str] = []
    for url in (d for d in destinations if is_object_store(d)):
        name = canonical(url)
        if name in remote:
            raise UsageError(f"destination {redact(url)} is given twice")
        remote.append(name)
    if remote and not local:
        raise UsageError(f"an {remote[0].partition('://')[0]}:// destination is uploaded from "
                         "a verified local copy: give a local destination too (the card is "
                         "read only once)")
    return local, remote


@dataclass(frozen=True, slots=True)
class S3Location:
    bucket: str
    prefix: str  # no leading or trailing slash; may be empty

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def rel(self, key: str) -> str:
        return key[len(self.prefix) + 1:] if self.prefix else key


def parse_url(url: str) -> S3Location:
    parts = urlsplit(url)
    if parts.scheme.lower() != "s3" or not parts.netloc:
        raise UsageError(f"{redact(url)} is not an s3://BUCKET/PREFIX address")
    if parts.query or parts.fragment:
        raise UsageError(f"{redact(url)}: an s3:// address takes no ?query or #fragment")
    prefix = "/".join(p for p in parts.path.split("/") if p)
    return S3Location(parts.netloc, prefix)
