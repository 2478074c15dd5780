"""The end-of-run screen for a tired photographer, and the progress bars during the run."""

from __future__ import annotations

import shlex

from rich.markup import escape

from ingest.model import ADVICE, CARD_STOPPED, FLAGGED


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


_STYLE = {"verified": "green", "recopied": "green", "duplicate": "cyan",
          "needs_recopy": "bold red", "damaged_on_card": "bold red", "unreadable": "bold red",
          "unverified": "yellow", "corrupt": "bold red", "missing": "bold red",
          "damaged": "bold red", "untracked": "cyan", "skipped": "dim", "accepted": "magenta"}


def render_summary(console, report: dict, next_command: list[str] | None) -> None:
    """`console` is a rich Console; it drops colour by itself for NO_COLOR and non-terminals."""
    s = report["summary"]
    secs = report.get("seconds") or 0
    rate = s["bytes"] / secs if secs else 0
    console.print()
    console.print(f"[bold]ingest {report['command']}[/]  {escape(report.get('source') or '')}  "
                  f"{s['files']} files, {_human(s['bytes'])} in {secs:.1f} s "
                  f"({_human(rate)}/s)")
    parts = [f"[{_STYLE.get(k, '')}]{k}[/] {v['files']}" for k, v in s["by_status"].items()]
    console.print("  " + "   ".join(parts))
    for d in report.get("destinations", []):
        line = f"  → {escape(d['root'])}: {d['files']} copied, {_human(d['bytes'])}"
        if d.get("error"):
            line += f"  [bold red]stopped: {escape(d['error'])}[/]"
        console.print(line)
    if report.get("skipped_system_files"):
        console.print(f"  skipped {report['skipped_system_files']} system files "
                      "(.Trashes, ._*, …)")
    for sk in report.get("skipped", []):
        console.print(f"  [yellow]not copied[/] {escape(sk['path'])}: {escape(sk['reason'])}")
    flagged = [f for f in report["files"] if f["status"] in FLAGGED]
    if report.get("source_error"):
        # One cause for every file not read: one line, not a page of identical advice.
        console.print()
        console.print(f"[bold red]{escape(report['source_error']['message'])}[/]")
        flagged = [f for f in flagged if not (f["detail"] or "").startswith(CARD_STOPPED)]
    if flagged:
        console.print()
        console.print(f"[bold red]Needs attention ({len(flagged)}):[/]")
        for f in flagged[:50]:
            console.print(f"  [{_STYLE[f['status']]}]{f['status']:<15}[/] {escape(f['path'])}")
            console.print(f"      {escape(f['detail'] or '')}")
            advice = ADVICE[f["status"]]
            if advice.split(":")[0] not in (f["detail"] or ""):
                console.print(f"      [dim]{escape(advice)}[/]")
        if len(flagged) > 50:
            console.print(f"  … and {len(flagged) - 50} more: see the JSON or HTML report")
    accepted = [f for f in report["files"] if f["status"] == "accepted"]
    if accepted:
        console.print()
        console.print(f"[magenta]Accepted as lost ({len(accepted)}):[/]")
        for f in accepted[:50]:
            where = f["path"]
            if report["command"] == "verify" and f.get("copies"):
                where = f"{f['copies'][0]['destination']}/{where}"  # one record per archive
            console.print(f"  {escape(where)}: {escape(accepted_line(f))}")
        if len(accepted) > 50:
            console.print(f"  … and {len(accepted) - 50} more: see the JSON or HTML report")
    kept = [c for f in report["files"] for c in f.get("copies") or [] if c.get("quarantined")]
    if kept:
        # Someone's edit may look like damage: say where the replaced bytes are.
        console.print()
        console.print(f"[yellow]Replaced {len(kept)} damaged "
                      f"{'copy' if len(kept) == 1 else 'copies'}; the old bytes are kept:[/]")
        for c in kept[:50]:
            console.print(f"  {escape(c['destination'])}/{escape(c['path'])} → "
                          f"{escape(c['quarantined'])}")
        if len(kept) > 50:
            console.print(f"  … and {len(kept) - 50} more: see the JSON report")
    for warning in report.get("warnings", []):
        console.print(f"[yellow]Warning: {escape(warning)}[/]")
    console.print()
    style = "bold green" if s["safe_to_format"] else "bold red"
    console.print(f"[{style}]{escape(s['verdict'])}[/]")
    if next_command:
        console.print(f"Next: {escape(shlex.join(next_command))}")


def accepted_line(record: dict) -> str:
    """One line for a file accepted as lost: when and why, not the damage found again."""
    a = record.get("acceptance") or {}
    if not a:
        return record.get("detail") or ""
    return f"accepted as lost on {a['accepted_at'][:10]}: {a['reason']}"


class EventBar:
    """A rich progress bar driven by a run's events: `start` sets the total (from the event's
    `total_key`), `file_start` names the current file, `step` advances by the file's size
    (bytes: throughput and ETA) or by one (a count of files)."""

    def __init__(self, console, label: str, *, start: str, total_key: str, step: str,
                 by_bytes: bool = True):
        from rich.progress import (  # lazy: rich.progress only when a bar is drawn
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        # lazy: rich.progress only when a bar is drawn
        from rich.progress import Progress as RichProgress

        amount = (DownloadColumn(), TransferSpeedColumn()) if by_bytes else (MofNCompleteColumn(),)
        self.bar = RichProgress(TextColumn(label), BarColumn(), *amount, TimeRemainingColumn(),
                                TextColumn("[dim]{task.fields[current]}"), console=console,
                                transient=True)
        self.start, self.total_key, self.step, self.by_bytes = start, total_key, step, by_bytes
        self.task = None

    def __enter__(self):
        self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        self.bar.__exit__(*exc)

    def __call__(self, event: str, **info) -> None:
        if event == self.start:
            self.task = self.bar.add_task("", total=info[self.total_key], current="")
        elif self.task is None:
            return
        elif event == "file_start":
            self.bar.update(self.task, current=info["path"][-40:])
        elif event == self.step:
            self.bar.advance(self.task, info["size"] if self.by_bytes else 1)


def Progress(console) -> EventBar:  # noqa: N802 - reads like the class it makes
    """The offload's bar: bytes copied of the card's total."""
    return EventBar(console, "copying", start="discovered", total_key="bytes",
                    step="file_copied")
