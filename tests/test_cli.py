"""The command line as a user meets it: exit codes, one-line errors, JSON on stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import snapshot


def ingest(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "ingest", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env={**os.environ, **(env or {})}, timeout=300)


def test_offload_json_to_stdout_and_exit_zero(card, dests):
    before = snapshot(card)
    r = ingest("offload", card, *dests, "--json", "-", "--no-decode")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["schema"] == "ingest-report/1" and report["summary"]["flagged"] == 0
    assert snapshot(card) == before
    assert "Traceback" not in r.stderr


def test_terminal_summary_when_not_a_terminal(card, disks):
    r = ingest("offload", card, *disks, "--no-decode")
    assert r.returncode == 0
    assert "Safe to format: all 27 files have 2 verified copies on 2 devices" in r.stdout
    assert "Warning" not in r.stdout
    assert "Next: ingest status" in r.stdout
    assert "\x1b[" not in r.stdout  # no colour codes and no progress bar when piped


@pytest.mark.parametrize("case", ["missing-dest", "missing-source", "inside", "bad-layout",
                                  "bad-retries", "no-dest", "file-source", "readonly"])
def test_usage_errors_are_one_line_and_exit_2(card, dests, tmp_path, case):
    args = {
        "missing-dest": ["offload", card, tmp_path / "nope"],
        "missing-source": ["offload", tmp_path / "no-card", dests[0]],
        "inside": ["offload", card, card / "DCIM"],
        "bad-layout": ["offload", card, dests[0], "--layout", "{nonsense}/{filename}"],
        "bad-retries": ["offload", card, dests[0], "--retries", "-3"],
        "no-dest": ["offload", card],
        "file-source": ["offload", card / "DCIM" / "100NIKON" / "DSC_0001.JPG", dests[0]],
        "readonly": ["offload", card, "/proc"],
    }[case]
    before = snapshot(card)
    r = ingest(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert 1 <= len(lines) <= 3
    assert snapshot(card) == before


def test_flagged_file_gives_exit_1_and_the_rerun_command(card, dests):
    os.chmod(card / "DCIM/100NIKON/DSC_0007.JPG", 0)
    if os.access(card / "DCIM/100NIKON/DSC_0007.JPG", os.R_OK):
        os.chmod(card / "DCIM/100NIKON/DSC_0007.JPG", 0o644)
        pytest.skip("running as a user who can read any file (root): use the injected-error test")
    r = ingest("offload", card, *dests, "--no-decode")
    assert r.returncode == 1


def test_damage_on_the_card_gets_no_rerun_suggestion(built_card, tmp_path):
    """Re-copying cannot clear damage that is on the card: the summary says so and does not
    then offer the same command as the next step."""
    import shutil

    card = tmp_path / "card"
    shutil.copytree(built_card[0], card, symlinks=True)
    dests = [tmp_path / "A", tmp_path / "B"]
    for d in dests:
        d.mkdir()
    r = ingest("offload", card, *dests, "--no-previews")
    assert r.returncode == 1, r.stderr
    assert "damaged_on_card" in r.stdout and "NOT safe to format" in r.stdout
    assert "Next:" not in r.stdout


@pytest.mark.parametrize(("statuses", "expected"), [
    ([], "status"),
    (["verified", "needs_recopy"], "rerun"),
    (["unreadable"], "rerun"),
    (["damaged_on_card", "unverified"], None),
])
def test_next_command_is_a_rerun_only_where_a_rerun_helps(statuses, expected):
    from ingest.cli.offload import next_command
    from ingest.model import FLAGGED

    report = {"summary": {"flagged": sum(s in FLAGGED for s in statuses)}, "skipped": [],
              "files": [{"status": s} for s in statuses]}
    rerun = ["ingest", "offload", "CARD", "A"]
    got = next_command(report, rerun, "CARD", ["A"])
    assert got == {"status": ["ingest", "status", "CARD", "A"], "rerun": rerun,
                   None: None}[expected]


def test_second_run_on_a_locked_destination_is_refused(card, dests):
    from ingest.lock import DestinationLock

    with DestinationLock(str(dests[0]), "ingest offload /some/card"):
        r = ingest("offload", card, dests[0], "--no-decode")
    assert r.returncode == 2
    assert "in use by pid" in r.stderr and "ingest offload /some/card" in r.stderr


def test_help_is_quick_to_import():
    r = ingest("--help")
    assert r.returncode == 0 and "offload" in r.stdout
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "ingest", "--help"],
                       capture_output=True, text=True)
    imported = r.stderr
    for heavy in ("rawpy", "numpy", "PIL", "joblib", "rich"):
        assert f" {heavy}\n" not in imported and f" {heavy}." not in imported, heavy
