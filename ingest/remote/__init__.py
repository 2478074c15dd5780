"""Destinations that are not local folders: S3-compatible object stores (`s3://bucket/prefix`).

Modules: `s3` (the store: upload through a partial key, server-side copy, re-download and
hash, the remote catalog and lock), `stage` (what the offload pipeline, `ingest verify` and
`ingest status` call). s3fs is an optional extra (`pip install 'ingest[s3]'`), imported only
when an s3:// destination is used; this module imports nothing heavy.
"""

from __future__ import annotations

import importlib.util
import os
import re

from ingest.preflight import UsageError

ENABLE_HINT = "pip install 'ingest[s3]'"
SCHEMES = ("s3",)

# Credentials never reach a report, a catalog or a log line: botocore error texts and URLs
# are passed through `redact` first.
_SECRET_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
               "AWS_SECURITY_TOKEN")
_KEY_ID = re.compile(r"\b(?:AKIA|ASIA|AROA|AIDA)[A-Z0-9]{12,}\b")
_URL_USERINFO = re.compile(r"(\w+://)[^/@\s]+@")


def is_remote(destination: str) -> bool:
    return "://" in destination


def require_s3(destination: str) -> None:
    """UsageError (exit 2) with one line, for a scheme we do not know or a missing extra."""
    scheme = destination.partition("://")[0].lower()
    if scheme not in SCHEMES:
        raise UsageError(f"destination {redact(destination)}: only s3:// remote destinations "
                         "are supported")
    for name in ("s3fs", "fsspec"):
        if importlib.util.find_spec(name) is None:
            raise UsageError(f"s3:// destinations need s3fs, which is not installed: "
                             f"{ENABLE_HINT}")


def redact(text: str, extra: tuple[str, ...] = ()) -> str:
    """`text` without any credential this process knows of, nor a URL's user:password."""
    out = _URL_USERINFO.sub(r"\1", str(text))
    secrets = [os.environ.get(name, "") for name in _SECRET_ENV] + list(extra)
    for secret in sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True):
        out = out.replace(secret, "***")
    return _KEY_ID.sub("***", out)


def split_destinations(destinations: list[str]) -> tuple[list[str], list[str]]:
    """(local folders, s3:// URLs) for preflight. An s3:// destination is filled from a
    verified local copy, so it needs a local destination beside it. The S3 code is imported
    only when there is an s3:// URL."""
    local = [d for d in destinations if not is_remote(d)]
    remote: list[str] = []
    for url in (d for d in destinations if is_remote(d)):
        require_s3(url)
        from ingest.remote.s3 import parse_url

        canonical = parse_url(url).url
        if canonical in remote:
            raise UsageError(f"destination {redact(url)} is given twice")
        remote.append(canonical)
    if remote and not local:
        raise UsageError("an s3:// destination is uploaded from a verified local copy: give a "
                         "local destination too (the card is read only once)")
    return local, remote
