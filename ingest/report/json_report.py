"""The versioned JSON report (`ingest-report/1`): a contract that scripts parse."""

from __future__ import annotations

import json
import os
import sys
import tempfile


def write_json(report: dict, target: str) -> None:
    """`-` writes to stdout. A file is written whole or not at all."""
    text = json.dumps(report, indent=2, ensure_ascii=True) + "\n"
    if target == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    folder = os.path.dirname(os.path.abspath(target))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".report-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
