"""The rows of docs/reliability.md: every fault and hostile input a test tried, and what ingest did.

Nothing in that document is written by hand. Each reliability test records one row per fault
through the `reliability` fixture; rows are JSON lines in the file named by the environment
variable INGEST_RELIABILITY_OUT (default: a new temporary file per pytest session). At the end of
the session, with INGEST_WRITE_RELIABILITY=1, the rows and each test's outcome are rendered into
docs/reliability.md. Registered as a pytest plugin (`pytest_plugins = ["reliability_table"]` in
tests/conftest.py, or `-p reliability_table` with tests/ on the path).

`count_lost` is the one definition of a lost file that every row's "files lost" uses.
"""

from __future__ import annotations

import json
import os
import platform
import re
import tempfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
import xxhash
from doc_rows import OutcomeLog, RowFile

ROWS_ENV = "INGEST_RELIABILITY_OUT"
WRITE_ENV = "INGEST_WRITE_RELIABILITY"
FULL_MATRIX_ENV = "INGEST_FULL_MATRIX"
DOC = Path(__file__).resolve().parents[1] / "docs" / "reliability.md"

# Statuses that tell the user a file is safe: a file with one of these must really be intact.
SAFE = {"verified", "recopied", "duplicate"}
# The order of the sections in the document.
AREAS = ["crash", "disk full", "card", "destination", "re-copy", "lock", "catalog", "hostile",
         "decode bomb", "fuzz", "card and share file systems", "power cut",
         "real faults (FUSE)"]

_OUTCOMES = pytest.StashKey[dict[str, str]]()
ROWS = RowFile(ROWS_ENV, "ingest-reliability-")


def rows_path(config: pytest.Config) -> str:
    return ROWS.path(config)


class Recorder:
    """Appends one JSON line per fault tried; bound to one test."""

    def __init__(self, path: str, nodeid: str):
        self.path = path
        self.nodeid = nodeid

    def row(self, *, area: str, fault: str, setup: str, expected: str, observed: str,
            lost: int, injected: int = 1, fuzzed: int = 0) -> None:
        if area not in AREAS:
            raise ValueError(f"unknown area {area!r}; add it to AREAS")
        line = {"area": area, "fault": fault, "setup": setup, "expected": expected,
                "observed": _untemp(observed), "lost": int(lost), "injected": int(injected),
                "fuzzed": int(fuzzed), "test": self.nodeid}
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(json.dumps(line, ensure_ascii=True) + "\n")


# pytest's per-test folders: the table names what is inside them, not where they were.
_TMP = re.compile(re.escape(tempfile.gettempdir()) + r"/pytest-of-[^/]+/pytest-\d+/[^/\s\"']+/?")


def _untemp(text: str) -> str:
    return _TMP.sub("", text)


@pytest.fixture(name="reliability")
def reliability_fixture(request) -> Recorder:
    """Test modules import this (`from reliability_table import reliability_fixture`) so the
    fixture works whether or not the plugin is registered; only the document needs the plugin."""
    return Recorder(rows_path(request.config), request.node.nodeid)


# --- what counts as lost ---------------------------------------------------------------------


def _is_clutter(rel: str) -> bool:
    from ingest.kinds import is_system_dir, is_system_file

    parts = rel.split("/")
    return any(is_system_dir(p) for p in parts[:-1]) or is_system_file(parts[-1])


def card_files(card: Path) -> dict[str, str]:
    """Every regular file on the card that is not OS clutter: rel path -> xxh3-128."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(str(card)):
        dirnames.sort()
        for name in filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            rel = os.path.relpath(path, str(card)).replace(os.sep, "/")
            if _is_clutter(rel):
                continue
            with open(path, "rb") as fh:
                out[rel] = xxhash.xxh3_128_hexdigest(fh.read())
    return out


def count_lost(card: Path | dict[str, str], report: dict) -> int:
    """Card files the run lost: neither reported (no record, no skipped entry) nor kept intact.

    A file is lost when it has no record and no skipped entry, or when its status tells the user
    it is safe (verified, recopied, duplicate) while one of its verified copies does not hold the
    card's bytes, or it has no verified copy at all (a copy that cannot be found in a destination
    the report names as failed is not counted either way). A flagged file (needs_recopy, unreadable,
    damaged_on_card, unverified) is not lost: the user is told to keep the card.
    """
    hashes = card_files(card) if isinstance(card, Path) else card
    records = {f["path"]: f for f in report.get("files", [])}
    skipped = {s["path"] for s in report.get("skipped", [])}
    # A destination the report names as failed may be unreachable now (a disk unplugged after
    # it took some files); the user is told. Its copies that cannot be found are not counted,
    # but a safe file must then have an intact verified copy elsewhere.
    failed = {d["root"] for d in report.get("destinations", []) if d.get("error")}
    lost = 0
    for rel, digest in hashes.items():
        rec = records.get(rel)
        if rec is None:
            if not any(rel == s or rel.startswith(s + "/") for s in skipped):
                lost += 1
            continue
        if rec["status"] not in SAFE:
            continue
        good = [c for c in rec["copies"] if c["verified"] and not (
            c["destination"] in failed
            and not os.path.lexists(os.path.join(c["destination"], c["path"])))]
        if not good or not all(_holds(Path(c["destination"]) / c["path"], digest) for c in good):
            lost += 1
    return lost


def _holds(path: Path, digest: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return xxhash.xxh3_128_hexdigest(fh.read()) == digest
    except OSError:
        return False


# --- pytest hooks ----------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    log = OutcomeLog()
    config.stash[_OUTCOMES] = log.outcomes
    config.pluginmanager.register(log, "ingest-reliability-outcomes")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not ROWS.used(session.config):
        return  # no reliability test ran
    rows = ROWS.take(session.config)
    if os.environ.get(WRITE_ENV) != "1" or not rows:
        return
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(render(rows, session.config.stash[_OUTCOMES]), encoding="utf-8")
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"reliability table: {len(rows)} rows written to {DOC}")


# --- the document ----------------------------------------------------------------------------


def _cell(text: object) -> str:
    # Hostile card names carry control characters and undecodable bytes (surrogates): show
    # them escaped, so the row stays one line of valid UTF-8.
    s = str(text).encode("utf-8", "backslashreplace").decode("utf-8")
    s = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in s)
    return s.replace("|", "\\|")


def render(rows: list[dict], outcomes: dict[str, str]) -> str:
    rows = sorted(rows, key=lambda r: (AREAS.index(r["area"]), r["test"]))
    injected = sum(r["injected"] for r in rows)
    fuzzed = sum(r["fuzzed"] for r in rows)
    lost = sum(r["lost"] for r in rows)
    tests = {r["test"] for r in rows}
    results = Counter(outcomes.get(t, "not run") for t in tests)
    full = os.environ.get(FULL_MATRIX_ENV) == "1"
    crash_points = sum(1 for r in rows if r["fault"].startswith("SIGKILL at "))
    lines = [
        "# Reliability: faults and hostile inputs tried, and what `ingest` did",
        "",
        "Generated by the test suite; do not edit by hand. Regenerate with:",
        "",
        "```sh",
        "INGEST_FULL_MATRIX=1 INGEST_WRITE_RELIABILITY=1 .venv/bin/python -m pytest -p reliability_table \\",
        "    tests/test_crash_matrix.py tests/test_faults.py tests/test_hostile.py \\",
        "    tests/test_fuzz.py tests/test_catalog_rebuild.py tests/test_real_faults.py \\",
        "    tests/test_power_cut.py tests/test_real_filesystems.py",
        "```",
        "",
        "(`-p reliability_table` is only needed while tests/conftest.py does not register the",
        "plugin; run from the checkout with `PYTHONPATH=tests`.) Without `INGEST_FULL_MATRIX=1` the",
        "crash matrix runs a seeded sample of 6 of its 20 kill points and the power-cut rig 21",
        "of its 63 cuts, which is what CI runs.",
        "",
        f"Generated {datetime.now(UTC):%Y-%m-%d} on {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}; crash matrix: "
        f"{'full' if full else 'sampled'} ({crash_points} kill points).",
        "",
        "## Totals",
        "",
        "| faults injected | inputs fuzzed | files lost | tests | results |",
        "|---:|---:|---:|---:|---|",
        f"| {injected} | {fuzzed} | **{lost}** | {len(tests)} | "
        + ", ".join(f"{n} {k}" for k, n in sorted(results.items())) + " |",
        "",
        "A file counts as lost when the run neither reported it (no record and no skipped entry)",
        "nor kept it intact: its status says it is safe (`verified`, `recopied`, `duplicate`) but a",
        "copy it names does not hold the card's bytes, or no intact copy remains (a copy that",
        "cannot be found in a destination the report names as failed is not counted). A flagged",
        "file is not lost: the user is told to keep the card. Definition: `count_lost` in",
        "tests/reliability_table.py.",
        "",
    ]
    for area in AREAS:
        mine = [r for r in rows if r["area"] == area]
        if not mine:
            continue
        lines += [f"## {area}", "",
                  "| fault / input | setup | expected | observed | lost | test |",
                  "|---|---|---|---|---:|---|"]
        for r in mine:
            name = r["test"].split("::", 1)[-1]
            lines.append(f"| {_cell(r['fault'])} | {_cell(r['setup'])} | {_cell(r['expected'])} "
                         f"| {_cell(r['observed'])} | {r['lost']} | "
                         f"{_cell(outcomes.get(r['test'], 'not run'))}: `{_cell(name)}` |")
        lines.append("")
    return "\n".join(lines)
