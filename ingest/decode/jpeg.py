"""JPEG verification with libjpeg-turbo in strict mode (simplejpeg).

Pillow decodes a JPEG with zeroed or bit-flipped scan data without complaint; libjpeg-turbo
in strict mode turns its "Corrupt JPEG data" and "Premature end" warnings into errors.

One decode gives both the proof and the preview pixels: the decode runs at a reduced DCT
scale (M/8). The entropy decoder still walks every Huffman code of the scan at any scale, so
the same errors surface: on the six sample JPEGs, every damaged variant (truncation, 64 KiB
fills, bit flips) gives the same strict-mode result at full size and at each of 1/8 .. 7/8
(tests/test_decode_damage.py).

The scale is one whose long edge fits the preview size (see scale_args), so the decode's own
pixels are the preview and are never resampled: Pillow's resize cost more than the decode
itself (0.14 s to take a 3264 px photo's 6/8-scale pixels down to 2048 px, against 0.04 s to
decode it at 1/2, 1632 px). A preview's long edge is between 2/3 of the size and the size;
only photos more than 4 times the size are decoded larger and then resized.
"""

from __future__ import annotations

import functools
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import simplejpeg
from PIL import Image

from ingest.decode import DAMAGED, check, outcome

_ORIENTATION_TAG = 0x0112


@functools.cache
def libjpeg_turbo_version() -> str:
    """The version string libjpeg-turbo compiles into itself; simplejpeg has no accessor."""
    for lib in Path(simplejpeg.__file__).parent.glob("_jpeg*"):
        found = re.search(rb"libjpeg-turbo version ([0-9][0-9.]*)", lib.read_bytes())
        if found:
            return found.group(1).decode()
    return "unknown"


def decoder_name() -> str:
    return f"simplejpeg {simplejpeg.__version__} (libjpeg-turbo {libjpeg_turbo_version()})"


@dataclass(slots=True)
class JpegDecode:
    result: dict
    pixels: np.ndarray | None = None   # RGB at reduced scale, not yet oriented
    orientation: int = 1
    icc: bytes | None = None
    partial: bool = False              # pixels from a lenient decode of a damaged file


def _metadata(data: bytes) -> tuple[int, bytes | None]:
    """EXIF Orientation and ICC profile; Pillow's open parses headers only."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            orientation = int(im.getexif().get(_ORIENTATION_TAG, 1) or 1)
            return (orientation if 1 <= orientation <= 8 else 1), im.info.get("icc_profile")
    except Exception:  # noqa: BLE001 - metadata is optional; the decode below judges the file
        return 1, None


def scale_args(width: int, height: int, long_edge: int | None) -> dict:
    """simplejpeg arguments for the largest M/8 scale whose long edge is at most `long_edge`
    (1/8 when there is no preview). 1/1, 1/2, 1/4 and 1/8 have SIMD code in libjpeg-turbo and
    decode in about half the time of the steps between (36 vs 64 ms for 3264 px at 1/2 and
    5/8), so the largest of those is taken instead when it still reaches 2/3 of `long_edge`.
    When even the chosen step is under 2/3 of `long_edge` (images 4 to 5.3 times the preview
    size) the next step up is used, and above 8 times even 1/8 is too large: in those cases
    the preview is resized.

    libjpeg-turbo makes a side of M/8 scale ceil(side * M / 8) pixels and simplejpeg picks the
    smallest scale reaching min_width/min_height, so asking for exactly that size selects M."""
    longest = max(width, height)
    m = max(1, min(8, long_edge * 8 // longest)) if long_edge and longest else 1
    if long_edge:
        power = 1 << (m.bit_length() - 1)  # 1, 2, 4 or 8: libjpeg-turbo's SIMD scales
        if 3 * -(-longest * power // 8) >= 2 * long_edge:
            m = power
        elif 3 * -(-longest * m // 8) < 2 * long_edge and m < 8:
            m += 1  # too small a preview (a very large image): one step up, resized later
    target = -(-longest * m // 8)
    if width >= height:
        return {"min_width": target, "min_height": 1}
    return {"min_width": 1, "min_height": target}


def _decode(data: bytes, colorspace: str, strict: bool, scale: dict) -> np.ndarray:
    pixels = simplejpeg.decode_jpeg(data, colorspace=colorspace, strict=strict, **scale)
    if colorspace == "CMYK":
        pixels = np.asarray(Image.fromarray(pixels, mode="CMYK").convert("RGB"))
    return pixels


def verify_jpeg(data: bytes, preview_long_edge: int | None = None) -> JpegDecode:
    name = decoder_name()
    try:
        height, width, colorspace, subsampling = simplejpeg.decode_jpeg_header(data)
    except ValueError as exc:
        checks = [check("header", False, f"no readable JPEG header: {exc}")]
        return JpegDecode(outcome(name, checks, verdict=DAMAGED))
    cs = "CMYK" if colorspace.upper() in ("CMYK", "YCCK") else "RGB"
    scale = scale_args(width, height, preview_long_edge)
    # Orientation and colour profile only shape the preview: no Pillow parse without one.
    orientation, icc = _metadata(data) if preview_long_edge else (1, None)
    try:
        pixels = _decode(data, cs, True, scale)
    except ValueError as exc:
        checks = [check("header", True, f"{width}x{height} {colorspace} {subsampling}"),
                  check("scan_data", False, str(exc))]
        recovered = _lenient(data, cs, scale)
        return JpegDecode(outcome(name, checks), recovered, orientation, icc,
                          partial=recovered is not None)
    h, w = pixels.shape[:2]
    checks = [check("header", True, f"{width}x{height} {colorspace} {subsampling}"),
              check("scan_data", True, f"every scan decodes strictly (at {w}x{h})")]
    return JpegDecode(outcome(name, checks), pixels, orientation, icc)


def _lenient(data: bytes, colorspace: str, scale: dict) -> np.ndarray | None:
    """What libjpeg recovers from a damaged stream (grey where data is missing)."""
    try:
        return _decode(data, colorspace, False, scale)
    except ValueError:
        return None
