"""Capture time and camera from the first chunk of a file, so the card is read only once.

This runs on the copy thread for every file. On the 560-file benchmark card exifread took
210-300 ms when timed alone and 1.3 s of the copy thread in a profile of a whole offload (where
the thread also waits for the GIL), so JPEG (APP1 Exif) and TIFF-magic files (DNG, NEF, CR2,
ARW, PEF, KDC...) are read by the small parser below instead (13-19 ms alone on that card):
IFD0 for Make, Model and DateTime, the EXIF IFD for DateTimeOriginal and DateTimeDigitized,
nothing else. The bytes may be cut anywhere or be garbage, so every read is bounds-checked,
entry counts are capped and only those two IFDs are visited; a case missed anyway means "no
metadata", never a failed copy.

Other containers (HEIF/HEIC boxes, RW2's IIU and ORF's IIRO/IIRS magic, unknown headers) still
go to exifread. A JPEG or TIFF in which the parser finds nothing is not then handed to exifread:
that would bring the cost back, and on the real samples exifread found nothing more in them.
CR3 and RAF keep their EXIF in TIFF structures near their start; a scan finds those and the same
parser reads them. LibRaw (rawpy) was tried for the rest, but it parses a whole buffer to open it
(0.4 s for one CRW head) and found no date in the formats left over (CRW, QuickTake), so those
fall back to the file's mtime, which a camera sets when it writes the frame.
"""

from __future__ import annotations

import io
import logging
import struct
from dataclasses import dataclass
from datetime import datetime

from ingest.model import Kind


@dataclass(frozen=True, slots=True)
class CaptureInfo:
    time: datetime | None
    make: str | None
    model: str | None
    source: str  # "exif" or "mtime"


_EXIF_KINDS = frozenset({Kind.RAW, Kind.JPEG, Kind.HEIF, Kind.TIFF})


def capture_info(head: bytes, kind: Kind, mtime_ns: int) -> CaptureInfo:
    """Never raises: metadata is a convenience for the layout, never a reason to fail a copy."""
    info = None
    if kind in _EXIF_KINDS:
        try:
            info = _from_exif(head)
            if (info is None or info.time is None) and kind is Kind.RAW:
                info = _from_embedded_tiff(head) or info
        except Exception:  # noqa: BLE001 - a parser bug costs the date, never the photo
            info = None
    if info is not None and info.time is not None:
        return info
    make, model = (info.make, info.model) if info else (None, None)
    # Whole seconds, like an EXIF time: the fraction of a file time is no capture information
    # (FAT, a card's usual file system, keeps 2-second times) and showed as noise in reports.
    return CaptureInfo(datetime.fromtimestamp(mtime_ns // 1_000_000_000), make, model, "mtime")


def _from_exif(head: bytes) -> CaptureInfo | None:
    if head[:2] == b"\xff\xd8":
        at = _jpeg_exif_offset(head)
        return None if at is None else _read_tiff(head, at)
    if head[:4] in _TIFF_MAGIC:
        return _read_tiff(head, 0)
    return _from_exifread(head)


# Markers without a length field (TEM, RST0-7, SOI): JPEG spec, table B.1.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})
_MAX_SEGMENTS = 1000  # a camera JPEG has a few dozen before SOS; this bounds garbage and fill


def _jpeg_exif_offset(head: bytes) -> int | None:
    """Offset of the TIFF header in the first APP1 Exif segment, or None."""
    pos, end = 2, len(head)
    for _ in range(_MAX_SEGMENTS):
        if pos + 4 > end or head[pos] != 0xFF:
            return None
        marker = head[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker in (0xDA, 0xD9):  # SOS or EOI: no metadata after this
            return None
        length = int.from_bytes(head[pos + 2:pos + 4], "big")
        if length < 2:
            return None
        if marker == 0xE1 and head[pos + 4:pos + 10] == b"Exif\x00\x00":
            return pos + 10
        pos += 2 + length
    return None


_TIFF_MAGIC = (b"II*\x00", b"MM\x00*")
_MAX_ENTRIES = 1000  # real IFDs hold tens of entries; a corrupt count must not cost 65535
_MAX_TEXT = 1024  # no make, model or date is longer; bounds the copy for a corrupt count
_ASCII = 2
_OFFSET_TYPES = {3: "H", 4: "I", 13: "I"}  # SHORT, LONG, IFD may all hold the ExifIFD pointer
_IFD0_TAGS = {0x010F: "make", 0x0110: "model", 0x0132: "datetime"}
_EXIF_TAGS = {0x9003: "original", 0x9004: "digitized"}


def _read_tiff(buf: bytes, base: int) -> CaptureInfo | None:
    """Read the TIFF structure whose header is at buf[base]; its offsets count from there.

    Only IFD0 and the EXIF IFD it points to are read, never the next-IFD chain, so a cycle
    costs at most one repeated IFD.
    """
    order = {b"II*\x00": "<", b"MM\x00*": ">"}.get(buf[base:base + 4])
    if order is None or len(buf) < base + 8:
        return None
    found: dict[str, str] = {}
    ifd0 = struct.unpack_from(order + "I", buf, base + 4)[0]
    exif_ifd = _read_ifd(buf, base, ifd0, order, _IFD0_TAGS, found)
    if exif_ifd is not None and exif_ifd != ifd0:
        _read_ifd(buf, base, exif_ifd, order, _EXIF_TAGS, found)
    when = None
    for key in ("original", "digitized", "datetime"):
        when = _parse_exif_time(found.get(key, ""))
        if when:
            break
    make, model = _clean(found.get("make")), _clean(found.get("model"))
    if when is None and make is None and model is None:
        return None
    return CaptureInfo(when, make, model, "exif")


def _read_ifd(buf: bytes, base: int, ifd: int, order: str, wanted: dict[int, str],
              found: dict[str, str]) -> int | None:
    """Put the wanted ASCII tags of one IFD into found; return its ExifIFD pointer, if any."""
    start = base + ifd
    if start + 2 > len(buf):
        return None
    count = struct.unpack_from(order + "H", buf, start)[0]
    # A cut file may hold only the first entries of an IFD: read those that are there.
    count = min(count, _MAX_ENTRIES, (len(buf) - start - 2) // 12)
    exif_ifd = None
    entries = memoryview(buf)[start + 2:start + 2 + 12 * count]
    for tag, typ, n, value in struct.iter_unpack(order + "HHI4s", entries):
        if tag == 0x8769 and typ in _OFFSET_TYPES:
            exif_ifd = struct.unpack_from(order + _OFFSET_TYPES[typ], value)[0]
        elif tag in wanted and typ == _ASCII:
            if n <= 4:
                raw = value[:n]
            else:
                at = base + struct.unpack_from(order + "I", value)[0]
                raw = buf[at:at + min(n, _MAX_TEXT)]
            found[wanted[tag]] = raw.split(b"\x00", 1)[0].decode("utf-8", "replace")
    return exif_ifd


def _from_exifread(head: bytes) -> CaptureInfo | None:
    import exifread  # lazy: only for containers the parser above does not read

    # exifread logs at warning level for every odd tag it meets on a card; keep that quiet.
    logging.getLogger("exifread").setLevel(logging.ERROR)
    try:
        # Make and Model sit in IFD0, before the EXIF IFD: stopping at the date loses nothing.
        tags = exifread.process_file(io.BytesIO(head), details=False, extract_thumbnail=False,
                                     stop_tag="DateTimeOriginal")
    except Exception:  # noqa: BLE001 - any parser failure only means "no metadata here"
        return None
    if not tags:
        return None
    when = None
    for key in ("EXIF DateTimeOriginal", "EXIF DateTimeDigitized", "Image DateTime"):
        when = _parse_exif_time(str(tags.get(key, "")))
        if when:
            break
    return CaptureInfo(when, _clean(tags.get("Image Make")), _clean(tags.get("Image Model")),
                       "exif")


_SCAN = 512 * 1024


def _from_embedded_tiff(head: bytes) -> CaptureInfo | None:
    """CR3 keeps its EXIF in TIFF structures inside ISO boxes (CMT1, CMT2), RAF in an embedded
    JPEG: find the TIFF headers near the start and read them, merging what each holds."""
    time = make = model = None
    start = 0
    for _ in range(4):
        hits = [i for i in (head.find(m, start, _SCAN) for m in _TIFF_MAGIC) if i > 0]
        if not hits:
            break
        at = min(hits)
        info = _read_tiff(head, at)
        if info:
            time, make, model = time or info.time, make or info.make, model or info.model
        start = at + 4
    if time is None and make is None:
        return None
    return CaptureInfo(time, make, model, "exif")


def _parse_exif_time(text: str) -> datetime | None:
    text = text.strip().rstrip("\x00")
    if not text:  # most files lack one of the three dates; strptime is slow to fail
        return None
    for fmt in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y:%m:%d %H:%M"):
        try:
            when = datetime.strptime(text[:19], fmt)
        except ValueError:
            continue
        return when if when.year >= 1990 else None
    return None


def _clean(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip().strip("\x00").strip()
    return text or None
