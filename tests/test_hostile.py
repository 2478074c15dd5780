"""Hostile card contents: names and files a broken or malicious card can hold.

Symlinks leading out of the card, `..`-like and control-character names, bytes that are not
UTF-8, names at the 255-byte limit, names that differ only in case, empty files, headers that
claim 100000x100000 pixels, folders 200 levels deep, a FIFO and a device node, EXIF that tries
to steer the layout out of the destination, and a card file named like ingest's own partials.
None may crash the run or write outside the destination; each ends as a record with a status or
a skipped entry with a clear reason, and the JSON, HTML and JUnit reports survive the names.
"""

from __future__ import annotations

import io
import json
import os
import stat
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
import zlib
from collections import Counter
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest
import xxhash
from PIL import Image
from reliability_table import count_lost, reliability_fixture  # noqa: F401
from rigs import exfat

from conftest import snapshot
from ingest import api
from ingest.model import Status

WHEN = datetime(2024, 5, 11, 10, 0, 0)
LONG = "L" * 251 + ".JPG"  # 255 bytes: the file system's limit for one name
LONG_UTF8 = "é" * 125 + ".JPG"  # 254 bytes in 129 characters
DEPTH = 200
SAFE = {"verified", "recopied", "duplicate"}


def jpeg(seed: int, make: str = "HostileCam", model: str = "H1") -> bytes:
    """A small real JPEG with EXIF; the seed makes its content unique."""
    img = Image.new("RGB", (64, 48), ((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256))
    img.putpixel((seed % 64, 0), (255, 255, 255))
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = make, model
    exif.get_ifd(0x8769)[0x9003] = WHEN.strftime("%Y:%m:%d %H:%M:%S")
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, exif=exif.tobytes())
    return buf.getvalue()


def tiff_bomb(width: int, height: int, dng: bool) -> bytes:
    """A 4 KiB TIFF (or DNG) whose header claims width x height 16-bit pixels."""
    entries = {254: (4, 1, 0), 256: (4, 1, width), 257: (4, 1, height), 258: (3, 1, 16),
               259: (3, 1, 1), 262: (3, 1, 32803 if dng else 1), 277: (3, 1, 1),
               278: (4, 1, height), 279: (4, 1, 0xFFFFFFF0)}
    if dng:
        entries |= {33421: (3, 2, (2, 2)), 33422: (1, 4, bytes([0, 1, 1, 2])),
                    50706: (1, 4, bytes([1, 4, 0, 0]))}
    data_at = 8 + 2 + 12 * (len(entries) + 1) + 4
    entries[273] = (4, 1, data_at)
    out = bytearray(b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(entries)))
    for tag in sorted(entries):
        typ, count, value = entries[tag]
        if isinstance(value, bytes):
            payload = value
        elif isinstance(value, tuple):
            payload = struct.pack("<HH", *value)
        elif typ == 3:
            payload = struct.pack("<HH", value, 0)
        else:
            payload = struct.pack("<I", value)
        out += struct.pack("<HHI", tag, typ, count) + payload
    out += struct.pack("<I", 0)
    return bytes(out) + bytes(range(256)) * 16


def jpeg_bomb(side: int = 65500) -> bytes:
    """A valid small JPEG whose frame header claims side x side pixels (65500 is the most a
    JPEG can claim)."""
    data = bytearray(jpeg(999))
    sof = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, side, side)
    return bytes(data)


def deflate_bomb(mib: int, width: int) -> bytes:
    """A valid deflate-compressed 8-bit TIFF of `mib` MiB of zeros, about 1/1000 of that on
    disk: the decompression bomb proper. Built from one repeated deflate block, so it is fast."""
    c = zlib.compressobj(9)
    first = c.compress(bytes(1 << 20)) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(bytes(1 << 20)) + c.flush(zlib.Z_FULL_FLUSH)
    n = mib << 20
    adler = ((n % 65521) << 16) | 1  # adler-32 of n zero bytes
    strip = first + block * (mib - 1) + b"\x03\x00" + adler.to_bytes(4, "big")
    height = n // width
    entries = {256: (4, 1, width), 257: (4, 1, height), 258: (3, 1, 8), 259: (3, 1, 8),
               262: (3, 1, 1), 277: (3, 1, 1), 278: (4, 1, height), 279: (4, 1, len(strip))}
    entries[273] = (4, 1, 8 + 2 + 12 * (len(entries) + 1) + 4)
    out = bytearray(b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(entries)))
    for tag in sorted(entries):
        typ, count, value = entries[tag]
        payload = struct.pack("<HH", value, 0) if typ == 3 else struct.pack("<I", value)
        out += struct.pack("<HHI", tag, typ, count) + payload
    return bytes(out + struct.pack("<I", 0)) + strip


def write(root: Path, rel: str | bytes, data: bytes) -> None:
    path = os.path.join(os.fsencode(root), os.fsencode(rel))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    ts = WHEN.timestamp()
    os.utime(path, (ts, ts))


def build_hostile_card(card: Path, outside: Path, dest: Path) -> dict[str, str]:
    """Write the card; return {card path (str, surrogate-escaped): what should become of it}."""
    expect: dict[str, str] = {}
    host = "DCIM/100HOST"
    n = 0

    def image(rel: str | bytes, what: str = "verified", data: bytes | None = None):
        nonlocal n
        n += 1
        write(card, rel, jpeg(n) if data is None else data)
        expect[os.fsdecode(rel)] = what

    image(f"{host}/evil_make.JPG", data=jpeg(500, make="../../../../escape", model=".."))
    image(f"{host}/..JPG")
    image(f"{host}/.../x.JPG")
    image(f"{host}/new\nline.JPG")
    image(f"{host}/tab\there.JPG")
    image(f"{host}/esc\x1b[31mred.JPG")
    image(f"{host}/cr\rreturn.JPG")
    image(f"{host}/del\x7f bell\x07.JPG")
    image(f"{host}/bad\xff\xfename.JPG".encode("latin-1"))
    image(b"DCIM/\xc3\x28folder/inner.JPG")
    image(f"{host}/{LONG}")
    write(card, f"{host}/{LONG[:-4]}.XMP", b"<x:xmpmeta/>\n")
    expect[f"{host}/{LONG[:-4]}.XMP"] = "verified"
    image(f"101HOST/{LONG}")  # same name and day from another folder: a suffix must fit too
    image(f"{host}/{LONG_UTF8}")
    image(f"{host}/DSC_0001.JPG")
    image(f"{host}/dsc_0001.jpg")
    image(f"{host}/EMPTY.JPG", "damaged_on_card", b"")
    image(f"{host}/EMPTY.NEF", "damaged_on_card", b"")
    write(card, f"{host}/EMPTY.XMP", b"")
    expect[f"{host}/EMPTY.XMP"] = "verified"
    image(f"{host}/BOMB.DNG", "flagged", tiff_bomb(100000, 100000, dng=True))
    image(f"{host}/BOMB.TIF", "flagged", tiff_bomb(100000, 100000, dng=False))
    image(f"{host}/BOMB.JPG", "flagged", jpeg_bomb(20000))
    image("DCIM/deep/" + "d/" * DEPTH + "DEEP.JPG")
    image(f"{host}/.x.JPG.20240101T000000Z-abcdef-1.ingest-partial", "verified", b"not ours")

    os.mkfifo(card / host / "fifo.JPG")
    expect[f"{host}/fifo.JPG"] = "skipped:not a regular file"
    try:
        os.mknod(card / host / "null.NEF", stat.S_IFCHR | 0o600, os.makedev(1, 3))
        expect[f"{host}/null.NEF"] = "skipped:not a regular file"
    except PermissionError:
        pass  # not root: the FIFO covers special files
    outside.mkdir()
    write(outside, "secret.JPG", jpeg(777))
    os.symlink(outside / "secret.JPG", card / host / "outside.JPG")
    os.symlink(outside, card / host / "outdir")
    os.symlink(dest, card / host / "todest")
    os.symlink("DSC_0001.JPG", card / host / "inside.JPG")
    expect[f"{host}/outside.JPG"] = "skipped:outside the source"
    expect[f"{host}/outdir"] = "skipped:outside the source"
    expect[f"{host}/todest"] = "skipped:outside the source"
    expect[f"{host}/inside.JPG"] = "skipped:its target is copied"
    return expect


@pytest.fixture()
def hostile(tmp_path):
    card, outside, dests = tmp_path / "card", tmp_path / "outside", [tmp_path / "dest-A",
                                                                     tmp_path / "dest-B"]
    for d in dests:
        d.mkdir()
    expect = build_hostile_card(card, outside, dests[0])
    return card, dests, expect


def short(text: str, limit: int = 90) -> str:
    """Long names (255 bytes, 200 folders) cut in the middle for the reliability table."""
    if len(text) <= limit:
        return text
    return f"{text[:limit // 2]}…[{len(text) - limit + 20} chars]…{text[-(limit // 2 - 20):]}"


def outside_state(tmp_path: Path) -> dict:
    return {k: v for k, v in snapshot(tmp_path).items()
            if not k.startswith(("dest-", "reports/"))}


def inside(dest: Path) -> bool:
    real = os.path.realpath(dest)
    for dirpath, dirnames, filenames in os.walk(dest):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            if os.path.commonpath([real, os.path.realpath(p)]) != real:
                return False
    return True


# The decode checks run once, with the default layout; the other layouts test names and paths.
@pytest.mark.parametrize("layout,decode", [(None, True), ("mirror", False),
                                           ("{make}/{model}/{filename}", False)])
def test_hostile_card_ends_in_records_and_skips(hostile, tmp_path, layout, decode, reliability):
    card, dests, expect = hostile
    if not decode:  # verified by hash only
        expect = {k: "verified" if v in ("damaged_on_card", "flagged") else v
                  for k, v in expect.items()}
    before = outside_state(tmp_path)
    reports = tmp_path / "reports"
    result = api.offload(str(card), [str(d) for d in dests], layout=layout, jobs=2,
                         decode=decode, decode_timeout=60.0, json_path=str(reports / "r.json"),
                         html_path=str(reports / "r.html"), junit_path=str(reports / "r.xml"))
    report = result.report
    records = {r.path: r for r in result.records}
    skipped = {s["path"]: s["reason"] for s in report["skipped"]}

    observed = {}
    for rel, what in expect.items():
        if what.startswith("skipped:"):
            assert rel in skipped and what[8:] in skipped[rel], (rel, skipped.get(rel))
            observed[rel] = f"skipped ({skipped[rel]})"
            continue
        rec = records.get(rel)
        assert rec is not None, (rel, skipped.get(rel))
        observed[rel] = (f"{rec.status} as {rec.copies[0].path if rec.copies else '-'}"
                         + (f" ({rec.detail[:90]})" if rec.detail else ""))
        if what == "flagged":
            assert rec.flagged and rec.status is not Status.NEEDS_RECOPY, (rel, rec.detail)
            assert rec.decode and rec.decode["verdict"] not in ("crashed", "timeout"), rec.decode
        else:
            assert str(rec.status) == what, (rel, rec.status, rec.detail)
    # the two names that differ only in case arrive as two files
    low, up = records["DCIM/100HOST/dsc_0001.jpg"], records["DCIM/100HOST/DSC_0001.JPG"]
    assert low.copies[0].path != up.copies[0].path
    # every verified copy holds the card's bytes, inside its destination
    for rec in result.records:
        for c in rec.copies:
            if c.verified:
                data = (Path(c.destination) / c.path).read_bytes()
                assert xxhash.xxh3_128_hexdigest(data) == rec.xxh3_128
    for d in dests:
        assert inside(d)
        assert not list(d.rglob("secret.JPG"))
    assert outside_state(tmp_path) == before  # no write anywhere but the destinations

    # the reports carry every name
    parsed = json.loads((reports / "r.json").read_text())
    assert {f["path"] for f in parsed["files"]} == set(records)
    ET.parse(reports / "r.xml")
    assert (reports / "r.html").stat().st_size > 0
    lost = count_lost(card, report)
    counts = Counter(str(r.status) for r in result.records)
    reliability.row(
        area="hostile", fault=f"hostile card, layout {layout or 'default'}, "
                              f"decode {'on' if decode else 'off'}",
        setup=f"{len(expect)} entries: control/newline/non-UTF-8/255-byte/case-only names, "
              f"`..`-like names, empty files, decode bombs, {DEPTH} nested folders, FIFO, "
              "device node, symlinks out of the card and into the destination, EXIF make "
              "`../../../../escape`",
        expected="no crash; every file a record or a skipped entry; nothing written outside "
                 "the destinations; JSON/HTML/JUnit reports written",
        observed=f"exit {result.exit_code}: " + ", ".join(f"{k} {v}" for k, v in
                                                           sorted(counts.items()))
                 + f"; {len(skipped)} skipped; nothing outside changed; reports parse",
        lost=lost, injected=len(expect))
    if layout is None:
        for rel, text in observed.items():
            reliability.row(area="hostile", fault=f"card entry {short(repr(rel))}",
                            setup="default layout", expected=expect[rel],
                            observed=short(text, 160), lost=0, injected=0)
    assert lost == 0


def test_card_file_named_like_a_partial_survives_a_later_run(hostile, tmp_path, reliability):
    """A card may hold a file whose name looks like ingest's own partial. Once archived, a
    later run into the same folder must not remove it as a stale partial."""
    card, dests, _ = hostile
    first = api.offload(str(card), [str(dests[0])], decode=False)
    rel = "DCIM/100HOST/.x.JPG.20240101T000000Z-abcdef-1.ingest-partial"
    rec = next(r for r in first.records if r.path == rel)
    assert rec.status is Status.VERIFIED
    other = tmp_path / "card2"
    write(other, "DCIM/100CARD/NEW.JPG", jpeg(4242))  # same day: same destination folder
    api.offload(str(other), [str(dests[0])], decode=False)
    kept = (dests[0] / rec.copies[0].path).exists()
    reliability.row(
        area="hostile", fault="card file named like an ingest partial",
        setup="`.x.JPG.<token>.ingest-partial` archived, then another card into the same folder",
        expected="the archived file stays (its catalog row keeps pointing at it)",
        observed=f"first run {rec.status} at {rec.copies[0].path}; after the second run the "
                 f"file {'is still there' if kept else 'was deleted as a stale partial'}",
        lost=0 if kept else 1)
    assert kept


@contextmanager
def mount_case_insensitive(where: Path):
    """A small case-insensitive file system mounted at `where` for the test: a real exFAT
    image on a loop device through exfat-fuse (what camera cards and many archive disks are);
    unmounted and detached afterwards. Skips, with the reason, where that cannot be done."""
    why = exfat.missing()
    if why:
        pytest.skip(f"no case-insensitive file system can be mounted here ({why}); "
                    "test_hostile_card_ends_in_records_and_skips covers case-only names on a "
                    "case-sensitive destination")
    with exfat.exfat_volume(where.parent / "ci.img", where, size_mib=32, label="ARCHIVE"):
        yield where


def test_names_differing_in_case_on_a_case_insensitive_destination(tmp_path, reliability):
    card = tmp_path / "card"
    write(card, "DCIM/100HOST/DSC_0001.JPG", jpeg(1))
    write(card, "DCIM/100HOST/dsc_0001.jpg", jpeg(2))
    with mount_case_insensitive(tmp_path / "ci") as dest:
        (dest / "Probe").write_bytes(b"")
        assert (dest / "PROBE").exists()  # it is case-insensitive
        (dest / "Probe").unlink()
        result = api.offload(str(card), [str(dest)], decode=False)
        paths = sorted(r.copies[0].path for r in result.records)
        held = {p: xxhash.xxh3_128_hexdigest((dest / p).read_bytes()) for p in paths}
        lost = count_lost(card, result.report)
        reliability.row(area="hostile", fault="names differing only in case",
                        setup="case-insensitive destination (exFAT image, loop device, "
                              "exfat-fuse)",
                        expected="both arrive, as two distinct files",
                        observed=f"exit {result.exit_code}: {paths}", lost=lost)
    assert result.exit_code == 0 and len({p.lower() for p in paths}) == 2
    assert sorted(held.values()) == sorted(r.xxh3_128 for r in result.records)
    assert lost == 0


# --- decompression bombs, one decode each in a process of its own -----------------------------

_MEASURE = """
import json, resource, sys
# A safety net for this machine only: far above what a bounded decode needs.
resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))
from ingest.decode.task import run_task
req = json.loads(sys.argv[1])
result = run_task(req)
print(json.dumps({k: result["decode"][k] for k in ("verdict", "error")}))
"""
BOMBS = {
    "BOMB.DNG": ("raw", lambda: tiff_bomb(100000, 100000, dng=True), {"damaged"}),
    "BOMB.TIF": ("tiff", lambda: tiff_bomb(100000, 100000, dng=False), {"damaged"}),
    "DEFLATE.TIF": ("tiff", lambda: deflate_bomb(2400, 49152), {"unsupported"}),
    "BOMB.JPG": ("jpeg", jpeg_bomb, {"damaged"}),
}
RSS_LIMIT_MB = 1024


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_decode_bomb_ends_with_a_status_in_bounded_memory(tmp_path, name, reliability):
    kind, make, verdicts = BOMBS[name]
    path = tmp_path / name
    path.write_bytes(make())
    req = {"path": str(path), "kind": kind, "card_path": None, "capture_time": None,
           "preview": {"out": [str(tmp_path / (name + ".preview.jpg"))], "size": 2048,
                       "quality": 85}}
    with open(tmp_path / "out.json", "w") as out:
        proc = subprocess.Popen([sys.executable, "-c", _MEASURE, json.dumps(req)], stdout=out,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        _, status, usage = os.wait4(proc.pid, 0)  # rusage of this one decode
    proc.returncode = os.waitstatus_to_exitcode(status)
    peak_mb = usage.ru_maxrss / 1024
    result = json.loads((tmp_path / "out.json").read_text() or "{}")
    reliability.row(
        area="decode bomb", fault=f"{name}: header claims far more pixels than the file holds",
        setup=f"{path.stat().st_size:,}-byte {kind} file; run_task with a 2048 px preview, in a "
              "process of its own",
        expected=f"verdict {' or '.join(sorted(verdicts))}, peak memory < {RSS_LIMIT_MB} MB",
        observed=f"exit {proc.returncode}, verdict {result.get('verdict')}, peak "
                 f"{peak_mb:.0f} MB: {(result.get('error') or '')[:140]}", lost=0)
    assert proc.returncode == 0
    assert result["verdict"] in verdicts, result
    assert peak_mb < RSS_LIMIT_MB


def test_unreachable_card_entry_holds_the_card_back(tmp_path, reliability):
    from ingest.discover import _MAX_DEPTH

    card, dests = tmp_path / "card", [tmp_path / "dest-A", tmp_path / "dest-B"]
    for d in dests:
        d.mkdir()
    write(card, "DCIM/100HOST/SHALLOW.JPG", jpeg(1))
    write(card, "DCIM/" + "d/" * (_MAX_DEPTH + 5) + "TOO_DEEP.JPG", jpeg(2))
    result = api.offload(str(card), [str(d) for d in dests], decode=False)
    summary = result.report["summary"]
    reliability.row(
        area="hostile", fault=f"a photo {_MAX_DEPTH + 6} folders deep (past the walk's limit)",
        setup="card with one normal JPEG and one below the depth limit; 2 destinations",
        expected="reported as skipped AND the card held back (exit 1, not safe to format)",
        observed=f"exit {result.exit_code}, safe_to_format {summary['safe_to_format']}, "
                 f"skipped: {[s['reason'] for s in result.report['skipped']]}", lost=0)
    assert any("deeper" in s["reason"] for s in result.report["skipped"])
    assert result.exit_code == 1 and summary["safe_to_format"] is False
