"""S3 on loopback: moto's S3 server, in this process, with test credentials in the
environment (botocore will not sign a request without some) and no AWS setting of the
machine's own leaking in (a profile, an endpoint)."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

MISSING = ("s3fs or moto is not installed (pip install 'ingest[s3]' 'moto[server]'; the test "
           "extras include both)")


def s3_missing() -> str | None:
    """Why the S3 rig cannot run here, or None: for a skip."""
    return None if all(importlib.util.find_spec(m) for m in ("s3fs", "moto")) else MISSING


@contextmanager
def moto_server(key_id: str, secret: str) -> Iterator[tuple[str, object]]:
    """(endpoint URL, the server): stop the server to make the endpoint go away mid-test."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", key_id)
        mp.setenv("AWS_SECRET_ACCESS_KEY", secret)
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL",
                     "AWS_ENDPOINT_URL_S3"):
            mp.delenv(name, raising=False)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        try:
            yield f"http://{host}:{port}", server
        finally:
            server.stop()
