"""The versioned JSON report (`ingest-report/1`): a contract that scripts parse."""

from __future__ import annotations

import json
import sys

from ingest.fsio import write_atomic


def write_json(report: dict, target: str) -> None:
    """`-` writes to stdout. A file is written whole or not at all."""
    text = json.dumps(report, indent=2, ensure_ascii=True) + "\n"
    if target == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    write_atomic(target, text.encode("utf-8"))
