"""The small EXIF reader in ingest.metadata, held against exifread (the path it replaced) on the
real samples and on built files, and fed cut, looping and random bytes that must never raise."""

from __future__ import annotations

import struct
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import SAMPLES, samples_dir
from ingest import metadata
from ingest.fsio import CHUNK
from ingest.kinds import classify
from ingest.metadata import capture_info
from ingest.model import Kind

MAKE, MODEL, DATETIME, EXIF_IFD = 0x010F, 0x0110, 0x0132, 0x8769
ORIGINAL, DIGITIZED = 0x9003, 0x9004


# --- reference: the exifread path as it was before the fast reader --------------------------

_EXIFREAD = metadata._from_exifread  # as imported: tests that spy on it do not touch the reference


@contextmanager
def _as_before():
    """ingest.metadata as it was before the fast reader: exifread wherever that reader now
    runs (the top level, and each TIFF header the embedded scan finds)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(metadata, "_from_exif", _EXIFREAD)
        mp.setattr(metadata, "_read_tiff", lambda buf, at: _EXIFREAD(buf[at:]))
        yield


def _ref_capture(head: bytes, kind: Kind, mtime_ns: int) -> tuple:
    with _as_before():
        info = capture_info(head, kind, mtime_ns)
    return info.time, info.make, info.model, info.source


def _fields(info) -> tuple:
    if info is None:
        return None, None, None
    if isinstance(info, tuple):
        return info
    return info.time, info.make, info.model


# --- real samples ------------------------------------------------------------------------------

def _sample_files() -> list[Path]:
    found = []
    for sub in ("raw", "jpeg", "stubs", "unsupported"):
        folder = SAMPLES / sub
        if folder.is_dir():
            found += sorted(p for p in folder.iterdir() if p.is_file())
    return found


SAMPLE_FILES = _sample_files()
# Without the samples the tests still collect, then skip with samples_dir()'s reason.
SAMPLE_PARAMS = SAMPLE_FILES or [None]
SAMPLE_IDS = [f"{p.parent.name}/{p.name}" for p in SAMPLE_FILES] or ["no-samples"]


def _load(path: Path | None) -> tuple[bytes, Kind, int]:
    samples_dir()
    with open(path, "rb") as f:
        head = f.read(CHUNK)
    return head, classify(path.name), path.stat().st_mtime_ns


def _fast_container(head: bytes) -> bool:
    return head[:2] == b"\xff\xd8" or head[:4] in (b"II*\x00", b"MM\x00*")


@pytest.mark.parametrize("path", SAMPLE_PARAMS, ids=SAMPLE_IDS)
def test_sample_matches_exifread(path):
    head, kind, mtime_ns = _load(path)
    got = capture_info(head, kind, mtime_ns)
    assert (got.time, got.make, got.model, got.source) == _ref_capture(head, kind, mtime_ns)


@pytest.mark.parametrize("path", SAMPLE_PARAMS, ids=SAMPLE_IDS)
def test_sample_each_step_matches_exifread(path):
    """Step by step too: capture_info drops the top level's make when the embedded scan finds
    something, which could hide a difference there."""
    head, _, _ = _load(path)
    fast = _fields(metadata._from_exif(head)), _fields(metadata._from_embedded_tiff(head))
    with _as_before():
        before = _fields(metadata._from_exif(head)), _fields(metadata._from_embedded_tiff(head))
    assert fast == before


@pytest.mark.parametrize("path", SAMPLE_PARAMS, ids=SAMPLE_IDS)
def test_sample_exifread_only_for_other_containers(path, monkeypatch):
    head, kind, mtime_ns = _load(path)
    calls = []
    real = metadata._from_exifread
    monkeypatch.setattr(metadata, "_from_exifread", lambda h: calls.append(1) or real(h))
    capture_info(head, kind, mtime_ns)
    assert bool(calls) is not _fast_container(head)


def test_samples_are_read_by_the_fast_path_alone(monkeypatch):
    """Known answers, with exifread out of the way, so a match above is not two Nones."""
    samples_dir()
    monkeypatch.setattr(metadata, "_from_exifread", lambda head: None)
    expect = {
        "jpeg/apple-iphone6.jpg": (datetime(2015, 4, 10, 20, 12, 23), "Apple", "iPhone 6"),
        "jpeg/nikon-e950.jpg": (datetime(2001, 4, 6, 11, 51, 40), "NIKON", "E950"),
        "stubs/exiftool-stub.dng": (datetime(2005, 8, 3, 18, 59, 18), "Canon",
                                    "Canon EOS 350D DIGITAL"),
        "stubs/tracker-stub-canon-70d.cr2": (datetime(2016, 11, 27, 11, 32, 7), "Canon",
                                             "Canon EOS 70D"),
        "stubs/exiv2-pruned-canon-r6.CR3": (datetime(2021, 5, 12, 12, 21, 21), "Canon",
                                            "Canon EOS R6"),
        "stubs/exiftool-stub-fujifilm.raf": (datetime(2007, 5, 22, 13, 58, 30), "FUJIFILM",
                                             "FinePix S5Pro"),
    }
    for rel, want in expect.items():
        head, kind, mtime_ns = _load(SAMPLES / rel)
        got = capture_info(head, kind, mtime_ns)
        assert (got.time, got.make, got.model, got.source) == (*want, "exif"), rel


# --- built files -------------------------------------------------------------------------------

def build_tiff(order: str, ifd0: dict[int, bytes], exif: dict[int, bytes] | None = None,
               ifd0_next: int = 0) -> bytes:
    """A TIFF with IFD0 at 8, then the EXIF IFD, then the values too long to sit inline.
    Values are given as stored (NUL included or not) so odd counts can be built."""
    magic = b"II*\x00" if order == "<" else b"MM\x00*"
    n0 = len(ifd0) + (exif is not None)
    exif_at = 8 + 2 + 12 * n0 + 4
    data_at = exif_at + (2 + 12 * len(exif) + 4 if exif is not None else 0)
    data = bytearray()

    def entries(tags: dict[int, bytes]) -> list[bytes]:
        out = []
        for tag, value in tags.items():
            if len(value) <= 4:
                field = value.ljust(4, b"\x00")
            else:
                field = struct.pack(order + "I", data_at + len(data))
                data.extend(value + b"\x00" * (len(value) % 2))
            out.append(struct.pack(order + "HHI", tag, 2, len(value)) + field)
        return out

    first = entries(ifd0)
    if exif is not None:
        first.append(struct.pack(order + "HHII", EXIF_IFD, 4, 1, exif_at))
    first.sort(key=lambda e: struct.unpack_from(order + "H", e)[0])
    out = magic + struct.pack(order + "I", 8)
    out += struct.pack(order + "H", len(first)) + b"".join(first)
    out += struct.pack(order + "I", ifd0_next)
    if exif is not None:
        second = entries(exif)
        out += struct.pack(order + "H", len(second)) + b"".join(second) + b"\x00" * 4
    return out + bytes(data)


def build_jpeg(tiff: bytes, before: bytes = b"") -> bytes:
    jfif = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    app1 = b"\xff\xe1" + struct.pack(">H", 2 + 6 + len(tiff)) + b"Exif\x00\x00" + tiff
    dqt = b"\xff\xdb" + struct.pack(">H", 67) + bytes(65)
    sos = b"\xff\xda" + struct.pack(">H", 8) + bytes(6) + b"\x12\x34\x56" * 50
    return b"\xff\xd8" + jfif + before + app1 + dqt + sos + b"\xff\xd9"


FULL = {MAKE: b"Canon\x00", MODEL: b"Canon EOS 5D Mark IV\x00",
        DATETIME: b"2020:01:02 03:04:05\x00"}
FULL_EXIF = {ORIGINAL: b"2019:06:07 08:09:10\x00", DIGITIZED: b"2019:06:07 08:09:11\x00"}


def _info(head: bytes, kind: Kind = Kind.RAW) -> tuple:
    got = capture_info(head, kind, 0)
    return got.time, got.make, got.model, got.source


@pytest.mark.parametrize("order", ["<", ">"], ids=["little-endian", "big-endian"])
def test_tiff_both_byte_orders_and_date_precedence(order):
    want = (datetime(2019, 6, 7, 8, 9, 10), "Canon", "Canon EOS 5D Mark IV", "exif")
    cases = [
        (FULL_EXIF, want),
        ({DIGITIZED: FULL_EXIF[DIGITIZED]}, (datetime(2019, 6, 7, 8, 9, 11), *want[1:])),
        ({}, (datetime(2020, 1, 2, 3, 4, 5), *want[1:])),
    ]
    for exif, expected in cases:
        data = build_tiff(order, FULL, exif)
        assert _info(data, Kind.TIFF) == expected
        assert _info(data, Kind.TIFF) == _ref_capture(data, Kind.TIFF, 0)


def test_jpeg_app1_exif_after_other_segments():
    tiff = build_tiff(">", FULL, FULL_EXIF)
    xmp = b"\xff\xe1" + struct.pack(">H", 2 + 29) + b"http://ns.adobe.com/xap/1.0/\x00"
    icc = b"\xff\xe2" + struct.pack(">H", 2 + 12) + b"ICC_PROFILE\x00"
    fill = b"\xff\xff"  # fill bytes before a marker are allowed
    data = build_jpeg(tiff, before=xmp + icc + fill)
    assert _info(data, Kind.JPEG) == (datetime(2019, 6, 7, 8, 9, 10), "Canon",
                                      "Canon EOS 5D Mark IV", "exif")
    assert _info(build_jpeg(tiff), Kind.JPEG) == _ref_capture(build_jpeg(tiff), Kind.JPEG, 0)


def test_jpeg_stops_at_start_of_scan(monkeypatch):
    calls = []
    monkeypatch.setattr(metadata, "_from_exifread", lambda h: calls.append(1))
    tiff = build_tiff("<", FULL)
    app1 = b"\xff\xe1" + struct.pack(">H", 2 + 6 + len(tiff)) + b"Exif\x00\x00" + tiff
    sos = b"\xff\xda" + struct.pack(">H", 8) + bytes(6)
    data = b"\xff\xd8" + sos + app1 + b"\xff\xd9"
    assert _info(data, Kind.JPEG)[1:] == (None, None, "mtime")
    assert not calls, "a JPEG without EXIF must not be handed to exifread"


def test_short_inline_ascii():
    for order in "<>":
        data = build_tiff(order, {MAKE: b"GE\x00", MODEL: b"X5\x00\x00", DATETIME: b""},
                          {ORIGINAL: b"2001:02:03 04:05:06\x00"})
        assert _info(data) == (datetime(2001, 2, 3, 4, 5, 6), "GE", "X5", "exif")
        assert _info(data) == _ref_capture(data, Kind.RAW, 0)
        # exactly four bytes and no NUL: still inline
        data = build_tiff(order, {MAKE: b"Sony", MODEL: b"A7"})
        assert _info(data)[1:3] == ("Sony", "A7")


def test_clean_and_time_rules_are_kept():
    data = build_tiff("<", {MAKE: b"  Canon  \x00\x00", MODEL: b"EOS\x00garbage",
                            DATETIME: b"2018:01:01 00:00:00\x00"},
                      {ORIGINAL: b"1980:01:01 00:00:00\x00", DIGITIZED: b"    :  :     :  :  \x00"})
    # 1980 means an unset clock: skip it and the blank date, fall back to DateTime
    assert _info(data) == (datetime(2018, 1, 1), "Canon", "EOS", "exif")
    old = build_tiff("<", {MAKE: b"Canon\x00"}, {ORIGINAL: b"1985:01:01 00:00:00\x00"})
    assert _info(old)[1:] == ("Canon", None, "mtime")
    assert _info(data) == _ref_capture(data, Kind.RAW, 0)


def test_embedded_tiff_in_unknown_container():
    """CR3-like: an ISO box header first, the TIFF further in; read by the scan."""
    tiff = build_tiff("<", FULL)
    data = b"\x00\x00\x00\x18ftypcrx " + bytes(16) + b"CMT1" + tiff
    assert _info(data) == (datetime(2020, 1, 2, 3, 4, 5), "Canon", "Canon EOS 5D Mark IV",
                           "exif")
    assert _info(data) == _ref_capture(data, Kind.RAW, 0)


def test_other_containers_still_go_to_exifread(monkeypatch):
    calls = []
    real = metadata._from_exifread
    monkeypatch.setattr(metadata, "_from_exifread", lambda h: calls.append(h[:4]) or real(h))
    rw2 = b"IIU\x00" + build_tiff("<", FULL)[4:]
    heic = b"\x00\x00\x00\x18ftypheic" + bytes(12)
    for data in (rw2, heic, b"IIRO" + bytes(100), b"random"):
        capture_info(data, Kind.RAW, 0)
    assert calls == [b"IIU\x00", b"\x00\x00\x00\x18", b"IIRO", b"rand"]
    calls.clear()
    for data in (build_tiff("<", {}), build_jpeg(build_tiff("<", {})), b"\xff\xd8", b"II*\x00"):
        capture_info(data, Kind.RAW, 0)
    assert calls == []


def test_truncated_at_every_offset_never_raises():
    tiff = build_tiff(">", FULL, FULL_EXIF)
    for data in (tiff, build_tiff("<", FULL, FULL_EXIF), build_jpeg(tiff)):
        for cut in range(len(data) + 1):
            for kind in (Kind.RAW, Kind.JPEG):
                got = capture_info(data[:cut], kind, 0)
                assert got.source in ("exif", "mtime")
        assert capture_info(data, Kind.RAW, 0).time == datetime(2019, 6, 7, 8, 9, 10)


def test_cut_inside_ifd_keeps_the_entries_that_are_there():
    data = build_tiff("<", {MAKE: b"AB\x00", MODEL: b"CD\x00", DATETIME: b"2020:01:02 03:04:05\x00"})
    cut = 8 + 2 + 12 * 2  # IFD0 count says 3, only Make and Model arrived
    assert _info(data[:cut])[1:] == ("AB", "CD", "mtime")


def test_ifd_cycles_end():
    order = "<"
    # IFD0 at 8 points to itself as next IFD and as EXIF IFD
    entries = [struct.pack(order + "HHI", MAKE, 2, 3) + b"AB\x00\x00",
               struct.pack(order + "HHII", EXIF_IFD, 4, 1, 8)]
    self_loop = (b"II*\x00" + struct.pack(order + "I", 8) + struct.pack(order + "H", 2)
                 + b"".join(entries) + struct.pack(order + "I", 8))
    assert _info(self_loop)[1:] == ("AB", None, "mtime")
    # IFD0 -> EXIF IFD -> (EXIF pointer and next IFD) back to IFD0
    exif_at = 8 + 2 + 24 + 4
    ifd0 = struct.pack(order + "H", 2) + entries[0] + struct.pack(
        order + "HHII", EXIF_IFD, 4, 1, exif_at) + struct.pack(order + "I", exif_at)
    exif = (struct.pack(order + "H", 2) + struct.pack(order + "HHII", EXIF_IFD, 4, 1, 8)
            + struct.pack(order + "HHI", ORIGINAL, 2, 20) + struct.pack(order + "I", exif_at + 30)
            + struct.pack(order + "I", 8) + b"2011:01:01 01:01:01\x00")
    two_loop = b"II*\x00" + struct.pack(order + "I", 8) + ifd0 + exif
    assert _info(two_loop) == (datetime(2011, 1, 1, 1, 1, 1), "AB", None, "exif")


def test_huge_entry_counts():
    real = build_tiff(">", {MAKE: b"Big\x00", MODEL: b"Count\x00"})
    # claim 65535 entries in IFD0: the two real ones are read, the rest is zeros or absent
    huge = real[:8] + b"\xff\xff" + real[10:]
    assert _info(huge)[1:] == ("Big", "Count", "mtime")
    padded = huge + bytes(12 * 70000)
    assert _info(padded)[1:] == ("Big", "Count", "mtime")
    # and an EXIF IFD that claims as many
    exif = build_tiff("<", {}, {ORIGINAL: b"2012:12:12 12:12:12\x00"})
    exif_at = struct.unpack_from("<I", exif, 8 + 2 + 8)[0]
    huge_exif = exif[:exif_at] + b"\xff\xff" + exif[exif_at + 2:]
    assert _info(huge_exif) == (datetime(2012, 12, 12, 12, 12, 12), None, None, "exif")


def test_offsets_past_the_end():
    order = "<"
    base = build_tiff(order, {MAKE: b"Canon\x00", MODEL: b"EOS\x00"})
    # IFD0 itself past the end
    assert _info(b"II*\x00" + struct.pack(order + "I", 0xFFFFFFF0) + base[8:])[1:] == (
        None, None, "mtime")
    # the Make value past the end, Model inline: Make is lost, Model kept
    make_entry = struct.pack(order + "HHII", MAKE, 2, 6, 0xFFFFFF00)
    model_entry = struct.pack(order + "HHI", MODEL, 2, 3) + b"M1\x00\x00"
    exif_entry = struct.pack(order + "HHII", EXIF_IFD, 4, 1, 0x7FFFFFFF)
    data = (b"II*\x00" + struct.pack(order + "I", 8) + struct.pack(order + "H", 3)
            + make_entry + model_entry + exif_entry + bytes(4))
    assert _info(data)[1:] == (None, "M1", "mtime")
    assert _info(data) == _ref_capture(data, Kind.RAW, 0)
    # a value that starts inside and runs past the end is read as far as it goes
    cut = build_tiff(order, {MODEL: b"Nikon Z 9\x00"})[:-4]
    assert _info(cut)[2] == "Nikon"
    assert _info(cut) == _ref_capture(cut, Kind.RAW, 0)


def test_empty_and_tiny_heads():
    for data in (b"", b"\xff", b"\xff\xd8", b"II", b"II*\x00", b"MM\x00*\x00\x00\x00\x08"):
        for kind in Kind:
            assert capture_info(data, kind, 0).source == "mtime"


PREFIXES = [b"", b"II*\x00", b"MM\x00*", b"II*\x00\x08\x00\x00\x00", b"MM\x00*\x00\x00\x00\x08",
            b"\xff\xd8", b"\xff\xd8\xff\xe1\x00\x40Exif\x00\x00", b"\x00\x00\x00\x18ftypcrx "]


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(prefix=st.sampled_from(PREFIXES), body=st.binary(max_size=1024),
       kind=st.sampled_from([Kind.RAW, Kind.JPEG, Kind.TIFF]))
def test_random_bytes_never_raise(prefix, body, kind):
    got = capture_info(prefix + body, kind, 0)
    assert got.source in ("exif", "mtime")
    assert got.time is not None


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(order=st.sampled_from("<>"), flips=st.lists(
    st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=8))
def test_damaged_valid_files_never_raise(order, flips):
    data = bytearray(build_jpeg(build_tiff(order, FULL, FULL_EXIF)))
    for at, value in flips:
        if at < len(data):
            data[at] = value
    for head in (bytes(data), bytes(data[2 + 18 + 10:])):  # as JPEG, and the bare TIFF
        assert capture_info(head, Kind.RAW, 0).source in ("exif", "mtime")


def test_file_time_fallback_is_whole_seconds():
    """A file without EXIF is dated by its mtime, to the second like an EXIF time: the
    fraction is no capture information and showed as noise in the reports."""
    mtime_ns = 1_700_000_000_987_654_321
    info = capture_info(b"\x00" * 64, Kind.RAW, mtime_ns)
    assert info.source == "mtime"
    assert info.time == datetime.fromtimestamp(1_700_000_000)
    assert info.time.isoformat() == datetime.fromtimestamp(1_700_000_000).isoformat()
