"""Ready-to-use nightly schedules for `ingest verify`: a cron line, systemd user units, or a
launchd agent. Text only: nothing here installs anything; the user saves what is printed.

Every schedule runs the same command: the absolute ingest executable (a scheduler has no
PATH worth the name), absolute archive paths, a time budget, idle priority, a battery guard,
and a JSON report in a per-user log location.
"""

from __future__ import annotations

import os
import plistlib
import re
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

KINDS = ("cron", "systemd", "launchd")
UNIT = "ingest-verify"
LAUNCHD_LABEL = "local.ingest.verify"
_SYSTEMD_PLAIN = re.compile(r"^[\w@%+=:,./-]+$")


@dataclass(frozen=True, slots=True)
class Schedule:
    argv: list[str]  # the full verify command, executable first
    hour: int
    minute: int
    log_path: str  # stdout and stderr of each run, where the scheduler allows it


def ingest_command() -> list[str]:
    """This installation's `ingest`: the script beside the running interpreter (a venv need
    not be on PATH), else the one on PATH, else `python -m ingest`."""
    beside = Path(sys.executable).parent / "ingest"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    found = shutil.which("ingest")
    if found:
        return [os.path.abspath(found)]
    return [sys.executable, "-m", "ingest"]


def log_dir(platform: str = sys.platform) -> Path:
    if platform == "darwin":
        return Path.home() / "Library" / "Logs"
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "ingest"


def parse_time(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*", text)
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise ValueError(f"not a time of day: {text!r} (use HH:MM, e.g. 02:30)")
    return int(m.group(1)), int(m.group(2))


def build(archives: list[str], *, at: tuple[int, int] = (2, 30), max_duration: str = "30m",
          stop_on_battery: int = 20, json_path: str | None = None,
          platform: str = sys.platform, command: list[str] | None = None) -> Schedule:
    logs = log_dir(platform)
    name = "ingest-verify" if platform == "darwin" else "verify"
    json_path = json_path or str(logs / f"{name}.json")
    argv = [*(command or ingest_command()), "verify",
            *(os.path.abspath(a) for a in archives),
            "--max-duration", max_duration, "--low-priority",
            "--stop-on-battery", str(stop_on_battery), "--json", os.path.abspath(json_path)]
    return Schedule(argv, at[0], at[1], str(logs / f"{name}.log"))


def render(kind: str, schedule: Schedule) -> str:
    if kind == "cron":
        return cron_entry(schedule)
    if kind == "systemd":
        units = systemd_units(schedule)
        parts = [f"# ==> ~/.config/systemd/user/{name} <==\n{text}" for name, text in units.items()]
        return "\n".join(parts) + (
            f"\n# Then: systemctl --user daemon-reload && "
            f"systemctl --user enable --now {UNIT}.timer\n")
    if kind == "launchd":
        return launchd_plist(schedule)
    raise ValueError(f"unknown schedule kind {kind!r}: use one of {', '.join(KINDS)}")


def cron_entry(schedule: Schedule) -> str:
    log = Path(schedule.log_path)
    # cron runs the line with /bin/sh; it turns an unescaped % into a newline.
    line = (f"mkdir -p {shlex.quote(str(log.parent))} && {shlex.join(schedule.argv)} "
            f">> {shlex.quote(str(log))} 2>&1").replace("%", "\\%")
    return ("# ingest: re-verify the archives every night (add with `crontab -e`)\n"
            f"{schedule.minute} {schedule.hour} * * * {line}\n")


def systemd_units(schedule: Schedule) -> dict[str, str]:
    service = (
        "[Unit]\n"
        "Description=ingest: re-verify photo archives against their ingest hashes\n"
        "\n[Service]\n"
        "Type=oneshot\n"
        f"ExecStart={' '.join(_systemd_arg(a) for a in schedule.argv)}\n"
        # Also set here, so the run is gentle even before ingest lowers its own priority.
        "Nice=19\n"
        "IOSchedulingClass=idle\n"
    )
    timer = (
        "[Unit]\n"
        "Description=Run ingest verify every night\n"
        "\n[Timer]\n"
        f"OnCalendar=*-*-* {schedule.hour:02d}:{schedule.minute:02d}:00\n"
        # A laptop asleep at that time runs it on waking; the battery guard still applies.
        "Persistent=true\n"
        "\n[Install]\n"
        "WantedBy=timers.target\n"
    )
    return {f"{UNIT}.service": service, f"{UNIT}.timer": timer}


def _systemd_arg(arg: str) -> str:
    # systemd expands %-specifiers and $VARIABLES in ExecStart; doubling makes them literal.
    arg = arg.replace("%", "%%").replace("$", "$$")
    if _SYSTEMD_PLAIN.match(arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def launchd_plist(schedule: Schedule) -> str:
    body = plistlib.dumps({
        "Label": LAUNCHD_LABEL,
        "ProgramArguments": schedule.argv,
        "StartCalendarInterval": {"Hour": schedule.hour, "Minute": schedule.minute},
        "ProcessType": "Background",
        "LowPriorityIO": True,
        "Nice": 19,
        "StandardOutPath": schedule.log_path,
        "StandardErrorPath": schedule.log_path,
    }).decode("utf-8")
    head, _, rest = body.partition("\n")
    path = f"~/Library/LaunchAgents/{LAUNCHD_LABEL}.plist"
    note = (f"<!-- Save as {path}, then run: launchctl bootstrap gui/$(id -u) {path} -->")
    return f"{head}\n{note}\n{rest.rstrip()}\n"
