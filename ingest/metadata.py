"""Capture time and camera from the first chunk of a file, so the card is read only once.

EXIF is read with exifread from the first chunk: JPEG, HEIF and every TIFF-based RAW, plus the
TIFF structures that CR3 and RAF embed near their start. LibRaw (rawpy) was tried for the rest,
but it parses a whole buffer to open it (0.4 s for one CRW head) and found no date in the
formats left over (CRW, QuickTake), so those fall back to the file's mtime, which a camera sets
when it writes the frame.
"""

from __future__ import annotations

import io
import logging
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
    if kind in _EXIF_KINDS:
        info = _from_exif(head)
        if (info is None or info.time is None) and kind is Kind.RAW:
            info = _from_embedded_tiff(head) or info
        if info is not None and info.time is not None:
            return info
        make, model = (info.make, info.model) if info else (None, None)
    else:
        make = model = None
    return CaptureInfo(datetime.fromtimestamp(mtime_ns / 1e9), make, model, "mtime")


def _from_exif(head: bytes) -> CaptureInfo | None:
    import exifread

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


_TIFF_MAGIC = (b"II*\x00", b"MM\x00*")
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
        info = _from_exif(head[at:])
        if info:
            time, make, model = time or info.time, make or info.make, model or info.model
        start = at + 4
    if time is None and make is None:
        return None
    return CaptureInfo(time, make, model, "exif")


def _parse_exif_time(text: str) -> datetime | None:
    text = text.strip().rstrip("\x00")
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
