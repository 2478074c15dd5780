"""Capture what C libraries write straight to file descriptor 2.

LibRaw and libjpeg print diagnostics ("data corrupted at 1378", "Unexpected end of file") with
fprintf(stderr): they never reach Python's sys.stderr or the warnings module. Redirecting the
descriptor itself is the only way to keep them off the terminal and attach them to the record.
fd 2 is process-wide, so one capture may be active at a time; decode workers run one task each.
"""

from __future__ import annotations

import ctypes
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

# Keep the captured text bounded: a badly damaged file can make LibRaw repeat a message for
# every row it fails on.
MAX_CAPTURE_BYTES = 16 * 1024


@dataclass(slots=True)
class Captured:
    text: str = ""


def _flush_c_stdio() -> None:
    # C stderr is unbuffered by default, but a library may have changed that; fflush(NULL)
    # pushes out every C stream before the descriptor is switched back.
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass


@contextmanager
def capture_fd2() -> Iterator[Captured]:
    """Send fd 2 to a temporary file for the duration of the block; the text lands in `.text`."""
    out = Captured()
    try:
        sys.stderr.flush()
    except (AttributeError, ValueError):
        pass
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield out
        finally:
            _flush_c_stdio()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            data = sink.read(MAX_CAPTURE_BYTES + 1)
            text = data[:MAX_CAPTURE_BYTES].decode("utf-8", errors="replace")
            if len(data) > MAX_CAPTURE_BYTES:
                text += "\n[... more output cut]"
            out.text = text.strip()
