"""`ingest schedule --print`: each scheduler's text is checked by that scheduler's own rules
(systemd-analyze where present, plistlib/plutil for launchd, cron's field syntax)."""

from __future__ import annotations

import os
import plistlib
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from ingest import api
from ingest.cli.verify import schedule as schedule_command
from ingest.schedule import build, cron_entry, ingest_command, launchd_plist, systemd_units

VERIFY_FLAGS = ["--max-duration", "30m", "--low-priority", "--stop-on-battery", "20", "--json"]


@pytest.fixture()
def archives(card, tmp_path) -> list[Path]:
    # Awkward but legal names: a space and a percent sign must survive every scheduler.
    roots = [tmp_path / "Photo Archive", tmp_path / "backup 100%"]
    for r in roots:
        r.mkdir()
    api.offload(str(card), [str(r) for r in roots], decode=False, jobs=1,
                destination_reports=False)
    return roots


def printed(kind: str, archives: list[Path], *extra: str) -> str:
    result = CliRunner().invoke(schedule_command,
                                ["--print", kind, *map(str, archives), *extra])
    assert result.exit_code == 0, result.output
    return result.output


def assert_verify_argv(argv: list[str], archives: list[Path]) -> None:
    exe = argv[:argv.index("verify")]
    assert Path(exe[0]).is_absolute() and os.access(exe[0], os.X_OK)
    rest = argv[len(exe) + 1:]
    assert rest[:len(archives)] == [str(a) for a in archives]
    assert rest[len(archives):-1] == VERIFY_FLAGS
    assert Path(rest[-1]).is_absolute() and rest[-1].endswith(".json")


def test_ingest_command_is_absolute_and_runnable():
    cmd = ingest_command()
    assert Path(cmd[0]).is_absolute()
    out = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "offload" in out.stdout


def test_cron_line(archives):
    text = printed("cron", archives, "--at", "01:05")
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert len(lines) == 1
    fields = lines[0].split(None, 5)
    assert fields[:5] == ["5", "1", "*", "*", "*"]
    command = fields[5]
    # cron turns a bare % into a newline: every % must be escaped.
    assert not re.search(r"(?<!\\)%", command)
    words = shlex.split(command.replace("\\%", "%"))
    assert words[0] == "mkdir" and words[3] == "&&"
    argv = words[4:words.index(">>")]
    assert_verify_argv(argv, archives)
    assert words[-1] == "2>&1"


def test_systemd_units_pass_systemd_analyze(archives, tmp_path):
    text = printed("systemd", archives)
    files = dict(re.findall(r"^# ==> ~/\.config/systemd/user/(\S+) <==\n(.*?)(?=^# ==>|^# Then|\Z)",
                            text, flags=re.M | re.S))
    assert set(files) == {"ingest-verify.service", "ingest-verify.timer"}
    assert "systemctl --user enable --now ingest-verify.timer" in text
    exec_start = re.search(r"^ExecStart=(.*)$", files["ingest-verify.service"], re.M).group(1)
    # systemd's own quoting is close to the shell's once %% and $$ are undone.
    argv = shlex.split(exec_start.replace("%%", "%").replace("$$", "$"))
    assert_verify_argv(argv, archives)
    assert "OnCalendar=*-*-* 02:30:00" in files["ingest-verify.timer"]
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze not installed")
    paths = []
    for name, body in files.items():
        (tmp_path / name).write_text(body)
        paths.append(str(tmp_path / name))
    out = subprocess.run([analyze, "verify", *paths], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_systemd_analyze_does_catch_a_broken_unit(archives, tmp_path):
    """The check above can fail: a relative executable is refused."""
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze not installed")
    schedule = build([str(a) for a in archives], command=["ingest"])
    for name, body in systemd_units(schedule).items():
        (tmp_path / name).write_text(body)
    out = subprocess.run([analyze, "verify", *(str(p) for p in sorted(tmp_path.glob("ingest-*")))],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0


def test_launchd_plist(archives):
    text = printed("launchd", archives, "--at", "23:45", "--max-duration", "30m")
    plist = plistlib.loads(text.encode())
    assert plist["Label"] == "local.ingest.verify"
    assert_verify_argv(plist["ProgramArguments"], archives)
    assert plist["StartCalendarInterval"] == {"Hour": 23, "Minute": 45}
    assert plist["LowPriorityIO"] is True and plist["ProcessType"] == "Background"
    assert "/Library/Logs/" in plist["StandardOutPath"]
    plutil = shutil.which("plutil")
    if plutil:  # macOS only
        out = subprocess.run([plutil, "-lint", "-"], input=text, capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr


def test_the_same_command_in_every_scheduler(archives):
    schedule = build([str(a) for a in archives], json_path="/var/log/ingest/v.json")
    cron = cron_entry(schedule).splitlines()[-1].split(None, 5)[5]
    assert shlex.join(schedule.argv).replace("%", "\\%") in cron
    assert plistlib.loads(launchd_plist(schedule).encode())["ProgramArguments"] == schedule.argv
    assert schedule.argv[-2:] == ["--json", "/var/log/ingest/v.json"]


@pytest.mark.parametrize("args", [["--print", "cron", "{nowhere}"],
                                  ["--print", "anacron", "{archive}"],
                                  ["--print", "cron", "--at", "25:00", "{archive}"],
                                  ["--print", "cron", "--max-duration", "soon", "{archive}"]])
def test_schedule_refuses_bad_arguments(args, card, tmp_path, dests):
    api.offload(str(card), [str(dests[0])], decode=False, jobs=1, destination_reports=False)
    args = [a.format(nowhere=tmp_path / "nope", archive=dests[0]) for a in args]
    result = CliRunner().invoke(schedule_command, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
