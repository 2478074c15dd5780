"""The `ingest status` screen: the verdict first, then what holds the card back and what to do.

It fits one screen: the held-back list is cut short, and the JSON report has every file.
"""

from __future__ import annotations

import shlex

from rich.markup import escape

from ingest.report.terminal import EventBar, accepted_line

_SHOWN = 15  # held-back files listed before "… and N more"


def render_status(console, report: dict) -> None:
    """`console` is a rich Console; it drops colour by itself for NO_COLOR and non-terminals."""
    s = report["summary"]
    console.print()
    style = "bold green" if s["safe_to_format"] else "bold red"
    console.print(f"[{style}]{escape(s['verdict'])}[/]")
    console.print(f"[dim]{escape(report['source'])} → "
                  f"{escape(', '.join(d['root'] for d in report['destinations']))}; "
                  f"each file needs {_needs(report['min_copies'])}[/]",
                  soft_wrap=True)
    for warning in report.get("warnings", []):
        console.print(f"[yellow]{escape(warning)}[/]")
    accepted = [f for f in report["files"] if f["status"] == "accepted"]
    if accepted:
        console.print()
        console.print(f"[magenta]Accepted as lost ({len(accepted)}), not holding the card "
                      "back:[/]")
        for f in accepted[:_SHOWN]:
            console.print(f"  {escape(f['path'])}: {escape(accepted_line(f))}")
        if len(accepted) > _SHOWN:
            console.print(f"  … and {len(accepted) - _SHOWN} more: see the JSON report")
    held = [f for f in report["files"] if f["status"] == "not_safe"]
    skips = [sk for sk in report["skipped"] if sk["holds_back"]]
    if held or skips:
        console.print()
        console.print(f"[bold]Held back ({len(held) + len(skips)}):[/]")
    _render_held(console, held, escape)
    for sk in skips[:_SHOWN]:
        console.print(f"  [red]{escape(sk['path'])}[/]: on the card but not checked: "
                      f"{escape(sk['reason'])}")
    if len(skips) > _SHOWN:
        console.print(f"  … and {len(skips) - _SHOWN} more not checked: see the JSON report")
    nxt = report.get("next") or {}
    for line in nxt.get("advice", []):
        console.print(f"  [dim]{escape(line)}[/]")
    console.print(f"[dim]{escape(report['archive_check'])}[/]")
    if nxt.get("command"):
        # Never hard-wrapped: the command must survive a copy and paste.
        console.print(f"Next: {escape(shlex.join(nxt['command']))}", soft_wrap=True)


def _render_held(console, held: list[dict], escape) -> None:
    """Few files: one line each with every reason. Many: grouped by their headline reason,
    so a card that was simply not copied twice is a few lines, not hundreds."""
    if len(held) <= _SHOWN:
        for f in held:
            console.print(f"  [red]{escape(f['path'])}[/]: {escape(f['detail'])}")
        return
    groups: dict[str, list[str]] = {}
    for f in held:
        groups.setdefault(f["reasons"][0], []).append(f["path"])
    for shown, (reason, paths) in enumerate(sorted(groups.items(), key=lambda g: -len(g[1]))):
        if shown == _SHOWN:
            console.print(f"  … and {len(groups) - _SHOWN} more reasons: see the JSON report")
            break
        if len(paths) == 1:
            console.print(f"  [red]{escape(paths[0])}[/]: {escape(reason)}")
            continue
        examples = ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
        console.print(f"  [red]{len(paths)} files[/]: {escape(reason)}")
        console.print(f"      [dim]{escape(examples)}[/]")


def _needs(n: int) -> str:
    if n == 1:
        return "1 verified copy off the card"
    return f"{n} verified copies on separate devices"


def HashProgress(console):  # noqa: N802 - reads like the class it makes
    """The status command's bar: bytes of the card hashed so far."""
    return EventBar(console, "reading card", start="discovered", total_key="bytes",
                    step="file_hashed")
