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
from ingest.decode.other import ImageDecode


def heif_decoder_name() -> str:
    return f"pillow-heif {pillow_heif.__version__} (libheif {pillow_heif.libheif_version()})"


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
