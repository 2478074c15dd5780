"""Capture time and camera from the first chunk of a file, so the card is read only once."""

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
    source: str  # "exif", "rawpy" or "mtime"


_EXIF_KINDS = frozenset({Kind.RAW, Kind.JPEG, Kind.HEIF, Kind.TIFF})


def capture_info(head: bytes, kind: Kind, mtime_ns: int) -> CaptureInfo:
    """Never raises: metadata is a convenience for the layout, never a reason to fail a copy."""
    if kind in _EXIF_KINDS:
        info = _from_exif(head)
        if info is None and kind is Kind.RAW:
            info = _from_rawpy(head)
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
        tags = exifread.process_file(io.BytesIO(head), details=False)
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


def _from_rawpy(head: bytes) -> CaptureInfo | None:
    from ingest.decode.capture import capture_fd2

    try:
        import rawpy

        # LibRaw complains on fd 2 about the cut-off buffer; that is expected here, not news.
        with capture_fd2(), rawpy.imread(io.BytesIO(head)) as raw:
            ts = raw.other.timestamp
    except Exception:  # noqa: BLE001 - a partial buffer often does not open; that is fine
        return None
    if not ts or ts.year < 1990:
        return None
    return CaptureInfo(ts, None, None, "rawpy")


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
