"""ASC MHL interop, both ways, against the reference tool `ascmhl` run as a subprocess.

`ascmhl` (create, diff, flatten, info) and `ascmhl-debug` (verify, xsd-schema-check, hash) are the
console scripts of the PyPI package; `verify` moved to `ascmhl-debug` in ascmhl 1.0.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest import fsio
from ingest.mhl import (
    DEFAULT_IGNORE,
    MhlEntry,
    add_generation,
    c4_id,
    make_hasher,
    read_history,
    representable,
    verify_chain,
)

ascmhl_hasher = pytest.importorskip("ascmhl.hasher", reason="ascmhl (test extra) not installed")

NOW = datetime(2026, 11, 26, 5, 0, 0, tzinfo=UTC)
MTIME_NS = 1_795_168_800_000_000_000  # 2026-11-20T10:00:00Z
FILES = {
    "DCIM/100NIKON/DSC_0001.JPG": b"\xff\xd8\xff\xe0" + bytes(range(256)) * 3 + b"\xff\xd9",
    "DCIM/100NIKON/DSC_0002.NEF": b"MM\x00*" + os.urandom(3000),
    "DCIM/101NIKON/Ärger & <odd> name.jpg": b"\xff\xd8" + b"x" * 100 + b"\xff\xd9",
    "MISC/empty.dat": b"",
    "top.txt": b"top level",
}


def _tool(name: str) -> str:
    found = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(found).exists():
        pytest.skip(f"{name} console script not found beside {sys.executable}")
    return found


def run(tool: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_tool(tool), *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def output(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def make_folder(root: Path, files: dict[str, bytes] = FILES) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, ns=(MTIME_NS, MTIME_NS))
    # Our own state, and a partial a killed copy left: ascmhl must not see them as new files.
    (root / ".ingest" / "previews").mkdir(parents=True)
    (root / ".ingest" / "catalog.sqlite").write_bytes(b"SQLite format 3\x00junk")
    (root / ".ingest" / "previews" / "DSC_0001.jpg").write_bytes(b"preview")
    first_folder = (root / next(iter(files))).parent
    (first_folder / ".DSC_0003.NEF.abc.ingest-partial").write_bytes(b"half")
    return root


def entries(root: Path, action: str, rels=FILES) -> list[MhlEntry]:
    result = []
    for rel in rels:
        hasher = make_hasher("xxh128")
        hasher.update((root / rel).read_bytes())
        st_ = (root / rel).stat()
        result.append(MhlEntry(rel, st_.st_size, st_.st_mtime_ns, hasher.hexdigest(), action, NOW))
    return result


def flip_byte(path: Path, offset: int = 2) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_our_generation_is_read_and_verified_by_ascmhl(tmp_path: Path) -> None:
    dest = make_folder(tmp_path / "dest")
    manifest = add_generation(dest, entries(dest, "original"), tool_version="0.1.0", now=NOW)
    assert manifest == dest / "ascmhl" / "0001_dest_2026-11-26_050000Z.mhl"
    hashes = ET.parse(manifest).getroot().find("{urn:ASC:MHL:v2.0}hashes")
    first = hashes.find("{urn:ASC:MHL:v2.0}hash/{urn:ASC:MHL:v2.0}path")
    assert first.get("lastmodificationdate") == "2026-11-20T10:00:00+00:00"

    info = run("ascmhl", "info", "-v", dest)
    assert info.returncode == 0, output(info)
    assert "Generation 1 (2026-11-26T05:00:00+00:00)" in info.stdout
    assert "ingest 0.1.0" in info.stdout and "ProcessInfo: transfer" in info.stdout

    one = run("ascmhl", "info", "-sf", dest / "top.txt", dest)
    assert re.search(r"Generation 1 .* xxh128: [0-9a-f]{32} \(original\)", one.stdout), output(one)

    clean = run("ascmhl-debug", "verify", dest)
    assert clean.returncode == 0, output(clean)  # .ingest and the partial were ignored
    assert run("ascmhl", "diff", dest).returncode == 0

    flip_byte(dest / "DCIM/100NIKON/DSC_0002.NEF")
    broken = run("ascmhl-debug", "verify", dest)
    assert broken.returncode == 11, output(broken)  # VerificationFailedException
    assert "hash mismatch" in output(broken)
    assert "DCIM/100NIKON/DSC_0002.NEF" in output(broken)
    assert "DSC_0001.JPG" not in output(broken)


def test_chain_survives_our_generations_and_ascmhl_create_continues_it(tmp_path: Path) -> None:
    dest = make_folder(tmp_path / "dest")
    add_generation(dest, entries(dest, "original"), tool_version="0.1.0", now=NOW)
    originals = read_history(dest)

    # An `ingest verify` run finds one copy changed and records it as failed.
    bad = "DCIM/100NIKON/DSC_0001.JPG"
    good_bytes = (dest / bad).read_bytes()
    flip_byte(dest / bad)
    second = [e for e in entries(dest, "verified") if e.path != bad]
    second += [MhlEntry(e.path, e.size, e.mtime, e.xxh128, "failed", NOW)
               for e in entries(dest, "failed", [bad])]
    later = NOW.replace(hour=6)
    add_generation(dest, second, process="in-place", tool_version="0.1.0", now=later)

    info = run("ascmhl", "info", dest)
    assert info.returncode == 0, output(info)
    assert "Generation 2 (2026-11-26T06:00:00+00:00)" in info.stdout
    history = run("ascmhl", "info", "-sf", dest / bad, dest)
    assert "(original)" in history.stdout and "(failed)" in history.stdout
    assert read_history(dest) == originals  # a failed entry never replaces the reference

    # The copy is restored from a good one; the reference tool then appends to our chain.
    (dest / bad).write_bytes(good_bytes)
    create = run("ascmhl", "create", dest)
    assert create.returncode == 0, output(create)
    assert sorted(p.name[:4] for p in (dest / "ascmhl").glob("*.mhl")) == ["0001", "0002", "0003"]
    assert verify_chain(dest) == []

    # ...and we append after it: the ignore patterns carry over, numbering continues.
    fourth = add_generation(dest, entries(dest, "verified"), process="in-place",
                            tool_version="0.1.0", now=later.replace(hour=7))
    assert fourth.name.startswith("0004_dest_")
    info = run("ascmhl", "info", dest)
    assert info.returncode == 0 and "Generation 4" in info.stdout, output(info)
    assert run("ascmhl-debug", "verify", dest).returncode == 0
    patterns = [p.text for p in ET.parse(fourth).getroot().iter("{urn:ASC:MHL:v2.0}pattern")]
    assert patterns == list(DEFAULT_IGNORE)


def test_edited_manifest_is_caught_by_ascmhl_and_by_verify_chain(tmp_path: Path) -> None:
    dest = make_folder(tmp_path / "dest")
    manifest = add_generation(dest, entries(dest, "original"), tool_version="0.1.0", now=NOW)
    assert verify_chain(dest) == []
    manifest.write_bytes(manifest.read_bytes().replace(b"<hostname>", b"<hostname>x"))
    info = run("ascmhl", "info", dest)
    assert info.returncode == 31, output(info)  # ModifiedMHLManifestFileException
    (problem,) = verify_chain(dest)
    assert problem.startswith(manifest.name) and "changed" in problem
    manifest.unlink()
    assert verify_chain(dest) == [f"{manifest.name}: missing"]


def test_ignore_patterns_of_an_earlier_ascmhl_generation_are_kept(tmp_path: Path) -> None:
    card = tmp_path / "card"
    (card / "A").mkdir(parents=True)
    (card / "A" / "1.JPG").write_bytes(b"one")
    (card / "A" / "2.JPG").write_bytes(b"two")
    assert run("ascmhl", "create", card, "-i", "*.tmp").returncode == 0
    (card / "A" / "scratch.tmp").write_bytes(b"scratch")
    (card / ".ingest").mkdir()
    (card / ".ingest" / "lock").write_bytes(b"1")
    add_generation(card, entries(card, "verified", ["A/1.JPG", "A/2.JPG"]), process="in-place",
                   tool_version="0.1.0", now=NOW)
    result = run("ascmhl-debug", "verify", card)
    assert result.returncode == 0, output(result)  # neither *.tmp nor .ingest is "new"


@pytest.mark.parametrize("formats", [["xxh128"], ["md5"], ["sha1", "xxh64", "xxh3", "c4"]])
def test_read_history_of_an_ascmhl_created_card(tmp_path: Path, formats: list[str]) -> None:
    card = tmp_path / "card"
    for rel, data in FILES.items():
        (card / rel).parent.mkdir(parents=True, exist_ok=True)
        (card / rel).write_bytes(data)
    args = [a for fmt in formats for a in ("-h", fmt)]
    created = run("ascmhl", "create", card, *args)
    assert created.returncode == 0, output(created)

    history = read_history(card)
    assert set(history) == set(FILES)
    order = [f for f in ("md5", "sha1", "xxh128", "xxh3", "xxh64", "c4") if f in formats]
    for rel, recorded in history.items():
        assert [fmt for fmt, _ in recorded] == order
        for fmt, value in recorded:
            hasher = make_hasher(fmt)
            data = FILES[rel]
            for start in range(0, len(data), 1000):  # fed in pieces, as the offload reads
                hasher.update(data[start:start + 1000])
            assert hasher.hexdigest() == value, (rel, fmt)


def test_read_history_includes_nested_histories(tmp_path: Path) -> None:
    card = tmp_path / "card"
    for rel in ("CLIPS/A001.MOV", "CLIPS/A002.MOV", "index.txt"):
        (card / rel).parent.mkdir(parents=True, exist_ok=True)
        (card / rel).write_bytes(rel.encode())
    assert run("ascmhl", "create", card / "CLIPS", "-h", "md5").returncode == 0
    assert run("ascmhl", "create", card, "-h", "md5").returncode == 0
    history = read_history(card)
    assert set(history) == {"CLIPS/A001.MOV", "CLIPS/A002.MOV", "index.txt"}
    hasher = make_hasher("md5")
    hasher.update(b"CLIPS/A002.MOV")
    assert history["CLIPS/A002.MOV"] == [("md5", hasher.hexdigest())]


def test_read_history_without_history_is_empty(tmp_path: Path) -> None:
    make_folder(tmp_path)
    assert read_history(tmp_path) == {}
    assert verify_chain(tmp_path) == []


def test_chain_c4_matches_what_ascmhl_wrote(tmp_path: Path) -> None:
    card = make_folder(tmp_path / "card", {"a.bin": b"a"})
    assert run("ascmhl", "create", card).returncode == 0
    chain = ET.parse(card / "ascmhl" / "ascmhl_chain.xml").getroot()
    (hashlist,) = chain
    name = hashlist.find("{urn:ASC:MHL:DIRECTORY:v2.0}path").text
    recorded = hashlist.find("{urn:ASC:MHL:DIRECTORY:v2.0}c4").text
    assert c4_id((card / "ascmhl" / name).read_bytes()) == recorded
    assert verify_chain(card) == []


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=3000), cut=st.integers(min_value=0, max_value=3000))
def test_every_format_matches_ascmhl(data: bytes, cut: int) -> None:
    for fmt in ("md5", "sha1", "xxh128", "xxh3", "xxh64", "c4"):
        hasher = make_hasher(fmt)
        hasher.update(data[:cut])
        hasher.update(data[cut:])
        assert hasher.hexdigest() == ascmhl_hasher.hash_data(data, fmt), fmt
    assert len(c4_id(data)) == 90 and c4_id(data) == ascmhl_hasher.C4.hash_data(data)


def test_offload_hash_is_the_mhl_xxh128() -> None:
    # The report's xxh3_128 goes into the manifest unchanged, so both must be the same digest.
    hasher = fsio.new_hasher()
    hasher.update(b"DSC_0001")
    assert hasher.hexdigest() == ascmhl_hasher.hash_data(b"DSC_0001", "xxh128")


def test_c4_of_small_digests_is_padded() -> None:
    # A digest with leading zero bytes still gives 90 characters, padded with '1' (base58 zero).
    assert ascmhl_hasher.C4.hash_data(b"") == c4_id(b"")
    from ingest.mhl import c4_encode

    assert c4_encode(bytes(64)) == "c4" + "1" * 88
    assert c4_encode(bytes(63) + b"\x01") == "c4" + "1" * 87 + "2"


def test_unwritable_names_are_left_out_and_bad_input_refused(tmp_path: Path) -> None:
    dest = make_folder(tmp_path / "dest", {"ok.jpg": b"ok"})
    weird = ["bell\x07.jpg", "cr\r.jpg", "bytes\udcff.jpg"]
    assert not any(representable(name) for name in weird)
    assert representable("line\nbreak & <tag> Ä.jpg")
    good = entries(dest, "original", ["ok.jpg"])[0]
    manifest = add_generation(
        dest, [good] + [MhlEntry(n, 1, NOW, "0" * 32, "original", NOW) for n in weird],
        tool_version="0.1.0", now=NOW)
    paths = [p.text for p in ET.parse(manifest).getroot().iter("{urn:ASC:MHL:v2.0}path")]
    assert paths == ["ok.jpg"]

    for bad in ("/abs.jpg", "../up.jpg", "a//b.jpg", "ascmhl/x.mhl"):
        with pytest.raises(ValueError):
            add_generation(dest, [MhlEntry(bad, 1, NOW, "0" * 32, "original", NOW)],
                           tool_version="0.1.0", now=NOW)
    with pytest.raises(ValueError):
        add_generation(dest, [MhlEntry("ok.jpg", 1, NOW, "0" * 32, "new", NOW)],
                       tool_version="0.1.0", now=NOW)
    with pytest.raises(ValueError):
        add_generation(dest, [], process="copy", tool_version="0.1.0", now=NOW)
    with pytest.raises(ValueError):
        make_hasher("crc32")
    assert [p.name for p in (dest / "ascmhl").iterdir() if p.name.endswith(".tmp")] == []


def test_empty_generation_is_still_a_valid_history(tmp_path: Path) -> None:
    dest = make_folder(tmp_path / "dest", {"ok.jpg": b"ok"})
    add_generation(dest, entries(dest, "original", ["ok.jpg"]), tool_version="0.1.0", now=NOW)
    add_generation(dest, [], process="in-place", tool_version="0.1.0", now=NOW)
    info = run("ascmhl", "info", dest)
    assert info.returncode == 0 and "Generation 2" in info.stdout, output(info)
