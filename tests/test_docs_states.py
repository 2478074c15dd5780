"""The documented statuses are exactly `ingest.model.Status`: README's "Statuses and what to do"
table, the table in docs/states.md and its Mermaid state diagram. A status added to the code
without documenting it (or one documented that the code no longer has) fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ingest.model import Status

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
STATES = ROOT / "docs" / "states.md"
STATUSES = {s.value for s in Status}


def section(text: str, heading: str) -> str:
    """The body of the markdown section `heading` (up to the next heading of any level)."""
    m = re.search(rf"^#+ {re.escape(heading)}\s*$", text, re.M)
    assert m, f"no section {heading!r}"
    rest = text[m.end():]
    end = re.search(r"^#+ ", rest, re.M)
    return rest[:end.start()] if end else rest


def table_statuses(body: str) -> list[str]:
    """The first column of the first table in `body`, one `status` in backticks per row."""
    lines = [ln.strip() for ln in body.splitlines()]
    start = next((i for i, ln in enumerate(lines) if ln.startswith("|")), None)
    assert start is not None, "no table"
    rows = []
    for ln in lines[start:]:
        if not ln.startswith("|"):
            break
        rows.append([c.strip() for c in ln.strip("|").split("|")])
    header, rule, *body_rows = rows
    assert header[0] == "status", header
    assert set("".join(rule)) <= set("-: "), rule
    out = []
    for cells in body_rows:
        m = re.fullmatch(r"`([a-z_]+)`", cells[0])
        assert m, f"a row's first cell is not one `status`: {cells[0]!r}"
        out.append(m.group(1))
    return out


def mermaid(text: str) -> str:
    blocks = re.findall(r"^```mermaid\n(.*?)^```", text, re.M | re.S)
    assert len(blocks) == 1, "docs/states.md should hold one Mermaid block"
    assert blocks[0].lstrip().startswith("stateDiagram-v2")
    return blocks[0]


def readme_rows() -> list[str]:
    return table_statuses(section(README.read_text(encoding="utf-8"), "Statuses and what to do"))


def states_rows() -> list[str]:
    return table_statuses(section(STATES.read_text(encoding="utf-8"), "One row per status"))


@pytest.mark.parametrize("rows", [readme_rows, states_rows], ids=["README", "docs/states.md"])
def test_each_table_lists_exactly_the_statuses(rows):
    found = rows()
    assert len(found) == len(set(found)), f"a status is listed twice: {found}"
    assert set(found) - STATUSES == set(), "documented but not in ingest.model.Status"
    assert STATUSES - set(found) == set(), "in ingest.model.Status but not documented"


def test_readme_and_states_list_the_same_statuses():
    readme, states = set(readme_rows()), set(states_rows())
    assert readme - states == set(), "in README's table but not in docs/states.md's"
    assert states - readme == set(), "in docs/states.md's table but not in README's"


def test_the_diagram_mentions_every_status():
    diagram = mermaid(STATES.read_text(encoding="utf-8"))
    # Whole words: `damaged` inside `damaged_on_card` does not count.
    missing = {s for s in STATUSES if not re.search(rf"(?<![\w]){s}(?![\w])", diagram)}
    assert missing == set(), f"the state diagram does not mention {sorted(missing)}"


def test_readme_links_to_the_state_machine():
    body = section(README.read_text(encoding="utf-8"), "Statuses and what to do")
    assert "(docs/states.md)" in body


def test_the_parser_would_catch_an_undocumented_status():
    """Guards the guard: a table missing a status, or with an extra one, is told apart."""
    table = "| status | meaning |\n|---|---|\n" + "".join(
        f"| `{s}` | x |\n" for s in sorted(STATUSES) if s != Status.ACCEPTED)
    assert STATUSES - set(table_statuses(table)) == {Status.ACCEPTED.value}
    assert set(table_statuses(table + "| `lost_forever` | x |\n")) - STATUSES == {"lost_forever"}
