"""The offload keeps an ASC MHL history in each destination, and checks a card's own history."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ingest import api
from ingest.model import Status

pytest.importorskip("ascmhl", reason="ascmhl (test extra) not installed")


def tool(name: str) -> str:
    return shutil.which(name) or str(Path(sys.executable).parent / name)


def ascmhl(*args) -> subprocess.CompletedProcess:
    return subprocess.run([tool(args[0]), *map(str, args[1:])], capture_output=True, text=True,
                          timeout=120)


def test_reference_tool_accepts_our_history_and_sees_damage(card, dests):
    result = api.offload(str(card), [str(d) for d in dests], decode=False, jobs=1)
    dest = dests[0]
    info = ascmhl("ascmhl", "info", "-v", dest)
    assert info.returncode == 0, info.stdout + info.stderr
    assert "Generation 1" in info.stdout and "transfer" in info.stdout
    clean = ascmhl("ascmhl-debug", "verify", dest)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    victim = next(r for r in result.records if r.path.endswith("DSC_0005.DNG")).copies[0].path
    data = bytearray((dest / victim).read_bytes())
    data[len(data) // 2] ^= 0x01
    (dest / victim).write_bytes(bytes(data))
    bad = ascmhl("ascmhl-debug", "verify", dest)
    assert bad.returncode != 0
    assert victim in bad.stdout + bad.stderr
    # a second offload with new files adds generation 2; a re-run with nothing new adds none
    api.offload(str(card), [str(d) for d in dests], decode=False, jobs=1)
    assert len(list((dests[1] / "ascmhl").glob("*.mhl"))) == 1


def test_card_with_its_own_history_is_checked(card, dests):
    made = ascmhl("ascmhl", "create", "-h", "md5", card)
    assert made.returncode == 0, made.stdout + made.stderr
    result = api.offload(str(card), [str(dests[0])], decode=False, jobs=1)
    assert all(r.history and r.history["match"] for r in result.records)
    assert result.exit_code == 0
    # the card's history is checked, not copied: the only history is our own, at the root
    assert [p for p in dests[0].rglob("ascmhl")] == [dests[0] / "ascmhl"]
    assert len(list(dests[0].rglob("*.mhl"))) == 1


def test_card_file_that_changed_since_its_history_is_flagged(card, dests):
    assert ascmhl("ascmhl", "create", "-h", "xxh128", card).returncode == 0
    victim = card / "DCIM/100NIKON/DSC_0007.JPG"
    data = bytearray(victim.read_bytes())
    data[-100] ^= 0xFF
    victim.write_bytes(bytes(data))
    result = api.offload(str(card), [str(dests[0])], decode=False, jobs=1)
    rec = next(r for r in result.records if r.path == "DCIM/100NIKON/DSC_0007.JPG")
    assert rec.status is Status.DAMAGED_ON_CARD
    assert "ASC MHL history" in rec.detail and rec.history["match"] is False
    assert result.exit_code == 1
