"""The versioned JSON report (`ingest-report/1`): a contract that scripts parse."""

from __future__ import annotations

import json
import sys

from ingest.fsio import write_atomic

# The stdlib's fast C encoder only runs without an indent; the pure-Python one took 0.35 s for a
# 1,000-file report, at the end of a run, while the decode workers sat idle. So the report is
# indented for reading, except that each file record is one line (C-encoded), which is also
# what grep wants.
_ONE_LINE = json.JSONEncoder(ensure_ascii=True)


def dumps(report: dict) -> str:
    parts = []
    for key, value in report.items():
        if key == "files" and isinstance(value, list) and value:
            text = "[\n    " + ",\n    ".join(map(_ONE_LINE.encode, value)) + "\n  ]"
        else:
            text = json.dumps(value, indent=2, ensure_ascii=True).replace("\n", "\n  ")
        parts.append(f"  {json.dumps(key, ensure_ascii=True)}: {text}")
    return "{\n" + ",\n".join(parts) + "\n}" if parts else "{}"


def write_json(report: dict, target: str) -> None:
    """`-` writes to stdout. A file is written whole or not at all."""
    text = dumps(report) + "\n"
    if target == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    write_atomic(target, text.encode("utf-8"))
