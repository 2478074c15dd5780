"""Decode verification: prove that an image file decodes, in a worker process.

Entry points (imported from their modules, so importing this package stays cheap):
- `ingest.decode.task.run_task(req) -> dict`: one file, inside a worker.
- `ingest.decode.pool.DecodePool`: runs tasks in isolated worker processes.

This module holds only the shape of a decode result, shared by the per-format decoders.
"""

from __future__ import annotations

OK = "ok"
DAMAGED = "damaged"
UNSUPPORTED = "unsupported"
CRASHED = "crashed"
TIMEOUT = "timeout"
# No copy could be read for the check (the destination went away after the copy was proven):
# says nothing about the image, only that this run could not look at it.
NOT_READ = "not_read"
# The reason given whenever a decoder runs out of memory (Python's MemoryError, LibRaw's or
# FFmpeg's allocation failure): "unsupported" (unverified), never damaged. A large legitimate
# image on a small machine is not damaged; "damaged on the card" would send a photographer
# into recovery for nothing.
NO_MEMORY = "not enough memory to decode this file here; its copy is still proven by its checksum"


def check(name: str, ok: bool, detail: str = "") -> dict:
    return {"name": name, "ok": bool(ok), "detail": detail}


def outcome(decoder: str, checks: list[dict], *, verdict: str | None = None,
            error: str | None = None) -> dict:
    """A decode result. Without an explicit verdict, any failed check makes the file damaged.

    `seconds` and `stderr` are filled in by the task runner, which owns the clock and fd 2.
    """
    if verdict is None:
        verdict = OK if error is None and all(c["ok"] for c in checks) else DAMAGED
    if error is None and verdict != OK:
        failed = [f"{c['name']}: {c['detail']}" for c in checks if not c["ok"]]
        error = "; ".join(failed) or verdict
    return {"decoder": decoder, "ok": verdict == OK, "error": error, "checks": checks,
            "seconds": 0.0, "verdict": verdict, "stderr": ""}
