"""JUnit XML from an ingest JSON report, so CI dashboards and NAS scripts show each file as a test.

One <testsuite> per run, one <testcase> per file. Flagged outcomes are failures, except
`unverified` (the copy is good, only the decoder could not prove the image) and `skipped` (not
due in this verify budget), which are skipped tests. A destination that failed as a whole gets
its own failing testcase so it cannot go unnoticed.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from ingest.fsio import write_atomic
from ingest.model import ADVICE, FLAGGED, Status

FAILURE_STATUSES = frozenset(str(s) for s in FLAGGED - {Status.UNVERIFIED})
SKIPPED_STATUSES = frozenset({str(Status.UNVERIFIED), str(Status.SKIPPED)})
PASSED_STATUSES = frozenset(str(s) for s in Status) - FAILURE_STATUSES - SKIPPED_STATUSES

# Card file names can hold any byte but '/' and NUL. XML 1.0 cannot carry most control
# characters and UTF-8 cannot carry the surrogates that stand in for undecodable bytes, so
# they are shown as escapes. In names, line breaks and tabs are escaped too.
_HIDDEN_IN_TEXT = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_HIDDEN_IN_NAME = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if char in _NAMED:
        return _NAMED[char]
    if 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's stand-in for the byte code - 0xDC00
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible_name(value: object) -> str:
    """A name or one-line attribute with every character XML or a reader would lose escaped."""
    return _HIDDEN_IN_NAME.sub(_escape_char, "" if value is None else str(value))


def visible_text(value: object) -> str:
    """Free text: keeps line breaks and tabs, escapes what XML 1.0 cannot hold."""
    return _HIDDEN_IN_TEXT.sub(_escape_char, "" if value is None else str(value))


def junit_xml(report: dict) -> bytes:
    """The JUnit XML document for one ingest report (UTF-8, with declaration)."""
    files = report.get("files") or []
    destinations = report.get("destinations") or []
    suite = ET.Element("testsuite", {"name": visible_name(_suite_name(report))})
    props = ET.SubElement(suite, "properties")
    for name, value in _properties(report):
        ET.SubElement(props, "property", {"name": name, "value": visible_name(value)})

    failures = skipped = 0
    for record in files:
        outcome = _add_file_case(suite, record)
        failures += outcome == "failure"
        skipped += outcome == "skipped"
    for dest in destinations:
        if dest.get("error"):
            case = ET.SubElement(suite, "testcase", {
                "classname": "destinations", "name": visible_name(dest.get("root")), "time": "0.000",
            })
            ET.SubElement(case, "failure", {
                "type": "destination_error", "message": visible_name(dest["error"]),
            }).text = visible_text(dest["error"])
            failures += 1
    summary = report.get("summary") or {}
    ET.SubElement(suite, "system-out").text = visible_text(
        f"{summary.get('verdict', '')}\nsafe to format: "
        f"{'yes' if summary.get('safe_to_format') else 'no'}"
    )

    tests = len(suite.findall("testcase"))
    counts = {"tests": str(tests), "failures": str(failures), "errors": "0",
              "skipped": str(skipped), "time": _seconds(report.get("seconds"))}
    suite.attrib.update(counts)
    if report.get("started_at"):
        suite.set("timestamp", visible_name(report["started_at"]))
    root = ET.Element("testsuites", {"name": "ingest", **counts})
    root.append(suite)
    ET.indent(root, space="  ")
    body = ET.tostring(root, encoding="unicode")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n").encode("utf-8")


def write_junit(report: dict, out_path: Path) -> Path:
    """Write the JUnit XML for `report` to `out_path` atomically (temp file, fsync, rename)."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out_path, junit_xml(report))
    return out_path


def _suite_name(report: dict) -> str:
    command = report.get("command") or "run"
    if report.get("source"):
        return f"ingest {command} {report['source']}"
    roots = ", ".join(str(d.get("root")) for d in report.get("destinations") or [])
    return f"ingest {command} {roots}".rstrip()


def _properties(report: dict) -> list[tuple[str, object]]:
    summary = report.get("summary") or {}
    props: list[tuple[str, object]] = [
        ("schema", report.get("schema")), ("command", report.get("command")),
        ("tool_version", report.get("tool_version")), ("source", report.get("source")),
        ("finished_at", report.get("finished_at")),
        ("safe_to_format", str(bool(summary.get("safe_to_format"))).lower()),
        ("verdict", summary.get("verdict")),
    ]
    props += [("destination", d.get("root")) for d in report.get("destinations") or []]
    return [(name, value) for name, value in props if value is not None]


def _add_file_case(suite: ET.Element, record: dict) -> str:
    """Append one file's testcase; return its outcome: passed, failure or skipped."""
    path = str(record.get("path", ""))
    folder, _, name = path.rpartition("/")
    case = ET.SubElement(suite, "testcase", {
        "classname": visible_name(folder or "."), "name": visible_name(name),
        "time": _seconds(record.get("seconds")),
    })
    status = str(record.get("status", ""))
    detail = str(record.get("detail") or "")
    advice = ADVICE.get(status, "")
    if status in PASSED_STATUSES:
        if status != Status.VERIFIED or detail:
            note = "\n".join(x for x in (f"{status}: {detail}" if detail else status, advice) if x)
            ET.SubElement(case, "system-out").text = visible_text(note)
        return "passed"
    if status in SKIPPED_STATUSES:
        ET.SubElement(case, "skipped", {"message": visible_name(detail or advice)}).text = (
            visible_text(advice))
        return "skipped"
    # Flagged, or a status this version does not know: never let it pass silently.
    body = [detail, advice or f"Unknown status {status!r}: check the JSON report."]
    body += [_copy_line(c) for c in record.get("copies") or []]
    ET.SubElement(case, "failure", {
        "type": visible_name(status), "message": visible_name(detail or status),
    }).text = visible_text("\n".join(x for x in body if x))
    return "failure"


def _copy_line(copy: dict) -> str:
    state = "verified" if copy.get("verified") else "not verified"
    where = f"{copy.get('destination', '')}/{copy.get('path', '')}"
    return f"copy: {where} ({state}, {copy.get('action', '')})"


def _seconds(value: object) -> str:
    try:
        seconds = float(value or 0)
    except (TypeError, ValueError):
        return "0.000"
    return f"{seconds:.3f}" if math.isfinite(seconds) and seconds > 0 else "0.000"
