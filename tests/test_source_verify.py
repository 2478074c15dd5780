"""Source verification: a copy is proven only when two reads of the card and its read-back agree.

A marginal card or a bad cable can hand over one wrong bit on one read. The copy then holds
that bit, its read-back matches what was written, and a decode rarely notices one bit: without a
second card read the file would be `verified` while the archive holds another photo than the
card. These tests hand the engine such a read through its FileIO (tests/test_real_faults.py does
the same below Python, on a FUSE file system that flips a bit in what the card returns).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ingest import api, fsio
from ingest.model import Status

GOOD = "DCIM/100CANON/DSC_0001.JPG"


class FlipOnOpens(fsio.FileIO):
    """The card file `name` (its path on the card: the sample card holds two DSC_0001.JPG,
    whose opens must not count for each other) comes back with one flipped bit on the given
    opens (1-based)."""

    def __init__(self, name: str, opens: set[int]):
        self.name, self.flip_on, self.opens, self.flaky, self.flipped = name, opens, 0, set(), 0

    def open_source(self, path):
        fd = super().open_source(path)
        if path.endswith(self.name):
            self.opens += 1
            if self.opens in self.flip_on:
                self.flaky.add(fd)
        return fd

    def read(self, fd, size):
        data = super().read(fd, size)
        if fd in self.flaky and data:
            self.flaky.discard(fd)
            self.flipped += 1
            data = data[:100] + bytes([data[100] ^ 0x08]) + data[101:]
        return data


def offload(card, dests, **kw):
    kw.setdefault("decode", False)
    kw.setdefault("jobs", 1)
    return api.offload(str(card), [str(d) for d in dests], **kw)


def copies_hold_card_bytes(card: Path, result) -> bool:
    want = {r.path: (card / r.path).read_bytes() for r in result.records}
    return all(Path(c.destination, c.path).read_bytes() == want[r.path]
               for r in result.records for c in r.copies if c.verified)


@pytest.mark.parametrize("decode", [False, True])
def test_one_wrong_card_read_is_caught_and_read_again(card, dests, decode):
    io = FlipOnOpens(GOOD, {1})  # the read that is written
    result = offload(card, dests, io=io, decode=decode, previews=False)
    rec = next(r for r in result.records if r.path == GOOD)
    assert io.flipped == 1
    assert rec.status is Status.RECOPIED, (rec.status, rec.detail)
    assert "two reads of the card gave different data" in rec.detail
    assert rec.source_verify == "second_read" and rec.card_reads == 4  # 2 per attempt
    assert copies_hold_card_bytes(card, result)


def test_a_wrong_second_read_never_passes_the_first(card, dests):
    io = FlipOnOpens(GOOD, {2})  # the verifying read is the odd one
    result = offload(card, dests, io=io)
    rec = next(r for r in result.records if r.path == GOOD)
    assert io.flipped == 1 and rec.status is Status.RECOPIED
    assert copies_hold_card_bytes(card, result)


def test_a_card_that_never_settles_is_flagged_and_nothing_is_renamed(card, dests):
    io = FlipOnOpens(GOOD, {1, 3, 5})  # every copying read is wrong
    result = offload(card, dests, io=io, retries=2)
    rec = next(r for r in result.records if r.path == GOOD)
    assert io.flipped == 3
    assert rec.status is Status.UNREADABLE and "different data on two reads" in rec.detail
    assert not [c for c in rec.copies if c.verified]
    card_bytes = {p.read_bytes() for p in card.rglob("*") if p.is_file()}
    for d in dests:  # every final name holds some card file's bytes; no partial is left
        finals = [p for p in d.rglob("*") if p.is_file() and not {".ingest", "ascmhl"} & set(p.parts)]
        assert finals and [p for p in finals if p.read_bytes() not in card_bytes] == []
        assert not [p for p in finals if p.name.endswith(fsio.PARTIAL_SUFFIX)]
    assert result.exit_code == 1 and result.report["summary"]["safe_to_format"] is False


def test_off_reads_the_card_once_and_the_report_says_so(card, dests, tmp_path):
    report = tmp_path / "r.json"
    run = subprocess.run([sys.executable, "-m", "ingest", "offload", str(card),
                          *map(str, dests), "--no-decode", "--no-source-verify",
                          "--json", str(report)], capture_output=True, text=True, timeout=300)
    assert run.returncode in (0, 1), run.stderr
    files = json.loads(report.read_text())["files"]
    copied = [f for f in files if f["copies"]]
    assert copied and all(f["source_verify"] == "off" and f["card_reads"] == 1 for f in copied)
    # on by default; a re-run matches each file against the hash its first run proved
    again = tmp_path / "again.json"
    subprocess.run([sys.executable, "-m", "ingest", "offload", str(card), *map(str, dests),
                    "--no-decode", "--json", str(again)], capture_output=True, timeout=300)
    files = json.loads(again.read_text())["files"]
    assert {f["source_verify"] for f in files if f["copies"]} == {"earlier_read"}


def test_on_by_default_every_copied_file_is_read_twice(card, dests):
    result = offload(card, dests)
    copied = [r for r in result.records if r.copies and r.xxh3_128]
    assert copied and all(r.source_verify == "second_read" and r.card_reads == 2
                          for r in copied if r.status is Status.VERIFIED)
