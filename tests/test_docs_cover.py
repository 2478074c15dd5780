"""The docs cover the tool: every command and option of the click CLI is named in README.md or
docs/*.md, README.md stays short enough to read, and docs/report-format.md names every key a
real report has. A command or option added without documenting it fails here."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from fixtures.card import build_card
from ingest import api
from ingest.cli import cli

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
REPORT_FORMAT = ROOT / "docs" / "report-format.md"
README_MAX_LINES = 160
HELP = {"--help", "-h"}


def all_docs() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in [README, *DOCS])


def commands(group: click.Group) -> dict[str, click.Command]:
    """Every command by every name it answers to ("offload", "verify", ...; nested groups as
    "group sub"), as click resolves them: aliases a group lists are included."""
    ctx = click.Context(group, info_name="ingest")
    out: dict[str, click.Command] = {}
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if cmd is None:
            continue
        out[name] = cmd
        if isinstance(cmd, click.Group):
            out.update({f"{name} {sub}": c for sub, c in commands(cmd).items()})
    return out


def option_names(cmd: click.Command) -> set[str]:
    """Every spelling of every option, hidden ones included (`--flag/--no-flag` gives both);
    the help option is left out."""
    names: set[str] = set()
    for param in cmd.params:
        if isinstance(param, click.Option):
            names.update(param.opts)
            names.update(param.secondary_opts)
    return names - HELP


def mentioned(name: str, text: str) -> bool:
    """`--json` as a whole token: `--json` inside `--json-lines` does not count."""
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text) is not None


def undocumented(group: click.Group, text: str) -> list[str]:
    missing = [f"option {opt} of ingest" for opt in sorted(option_names(group))
               if not mentioned(opt, text)]
    for name, cmd in sorted(commands(group).items()):
        if not re.search(rf"\bingest {re.escape(name)}\b", text):
            missing.append(f"command ingest {name}")
        missing += [f"option {opt} of ingest {name}" for opt in sorted(option_names(cmd))
                    if not mentioned(opt, text)]
    return missing


def test_every_command_and_option_is_documented():
    assert commands(cli), "no commands found: the introspection is broken"
    assert undocumented(cli, all_docs()) == []


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; at most {README_MAX_LINES}"


def test_the_check_would_catch_an_undocumented_option():
    """Guards the guard: a command or option absent from the text, hidden or not, is named."""

    @click.group()
    def grp():
        pass

    @grp.command("offload")
    @click.option("--json", "json_path")
    @click.option("--turbo/--no-turbo", hidden=True)
    def offload(json_path, turbo):
        pass

    text = "ingest offload --json PATH; --json-lines"
    assert undocumented(grp, text) == ["option --no-turbo of ingest offload",
                                       "option --turbo of ingest offload"]
    assert undocumented(grp, "ingest offloads --jsonl") == [
        "command ingest offload", "option --json of ingest offload",
        "option --no-turbo of ingest offload", "option --turbo of ingest offload"]


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[str, dict]:
    """Real reports of a tiny card: offload (no decode, to stay fast), verify and status."""
    base = tmp_path_factory.mktemp("docs-cover")
    card, dest = base / "card", base / "archive"
    dest.mkdir()
    build_card(card, seed=0, damaged=False)
    offload = api.offload(str(card), [str(dest)], jobs=1, decode=False, previews=False).report
    verify = api.verify([str(dest)], decode=False, jobs=1).report
    status = api.status(str(card), [str(dest)]).report
    return {"offload": offload, "verify": verify, "status": status}


@pytest.mark.parametrize("command", ["offload", "verify", "status"])
def test_report_format_names_every_top_level_key(reports, command):
    report = reports[command]
    assert report["command"] == command and report["schema"] == "ingest-report/1"
    doc = REPORT_FORMAT.read_text(encoding="utf-8")
    missing = [k for k in report if f"`{k}`" not in doc]
    assert missing == [], f"docs/report-format.md does not name these {command} keys"


@pytest.mark.parametrize("command", ["offload", "status"])
def test_report_format_names_every_file_key(reports, command):
    doc = REPORT_FORMAT.read_text(encoding="utf-8")
    record = reports[command]["files"][0]
    keys = set(record) | {k for c in record["copies"] for k in c}
    missing = sorted(k for k in keys if f"`{k}`" not in doc)
    assert missing == [], f"docs/report-format.md does not name these keys of {command} files[]"
