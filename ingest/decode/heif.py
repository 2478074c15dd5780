"""HEIF/HEIC verification (pillow-heif / libheif): every top-level image is decoded.

Limits seen while writing the tests: libheif (libde265) reports truncation ("Extent in iloc box
references data outside of file bounds") but decodes a zero-filled block inside the HEVC stream
without an error.
"""

from __future__ import annotations

import io

import numpy as np
import pillow_heif

from ingest.decode import check, outcome
from ingest.decode.isobmff import item_ranges, parse_heif
from ingest.decode.other import ImageDecode

# Item types whose data is HEVC-coded pixels (ISO/IEC 23008-12: hvc1 image items).
HEVC_ITEM_TYPES = frozenset({"hvc1"})


def heif_decoder_name() -> str:
    return f"pillow-heif {pillow_heif.__version__} (libheif {pillow_heif.libheif_version()})"


def coded_data_ranges(data: bytes) -> list[tuple[int, int]]:
    """(offset, length) of the coded HEVC data of every image item, sorted by offset.

    Grid tiles, the primary, thumbnails and auxiliary images (gain map, depth, alpha) alike; not
    Exif/XMP items, not the boxes, not an appended motion-photo clip. For damage tests that must
    hit image data. Raises `isobmff.StructureError` (a ValueError) when the boxes are broken.
    """
    heif = parse_heif(data)
    ranges = [r for item in heif.items.values() if item.type in HEVC_ITEM_TYPES
              for r in item_ranges(heif, item)]
    return sorted(ranges)


def verify_heif(data: bytes) -> ImageDecode:
    name = heif_decoder_name()
    try:
        heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
        sizes = []
        pixels = None
        for index, image in enumerate(heif):
            decoded = np.asarray(image)  # the decode happens here, not at open
            sizes.append(f"{decoded.shape[1]}x{decoded.shape[0]}")
            if index == heif.primary_index:
                pixels = decoded
        icc = heif.info.get("icc_profile")
    except (ValueError, EOFError, SyntaxError, RuntimeError, OSError) as exc:
        return ImageDecode(outcome(name, [check("decode", False, f"{type(exc).__name__}: {exc}")]))
    # libheif applies the container's rotation/mirror boxes while decoding, so the pixels are
    # upright already; EXIF Orientation inside HEIF is informational only.
    checks = [check("decode", True, f"{len(sizes)} image(s) decode: {', '.join(sizes)}")]
    return ImageDecode(outcome(name, checks), pixels, 1, icc if isinstance(icc, bytes) else None)
