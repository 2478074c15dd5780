"""TIFF (tifffile) full decodes: every page, not just the header."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import tifffile

from ingest.decode import DAMAGED, UNSUPPORTED, check, outcome
from ingest.decode.raw import read_tiff, sniff_container

_TIFF_ORIENTATION = 274
# The most one decode check may allocate for a TIFF's pixels; LibRaw's own default limit for
# RAWs is the same 2 GiB.
MAX_DECODED_BYTES = 2 * 2**30
_MAX_PAGES = 10_000  # a looped or absurd page chain stops here


def tiff_decoder_name() -> str:
    return f"tifffile {tifffile.__version__}"


@dataclass(slots=True)
class ImageDecode:
    result: dict
    pixels: np.ndarray | None = None
    orientation: int = 1
    icc: bytes | None = None
    partial: bool = False


def verify_tiff(data: bytes) -> ImageDecode:
    name = tiff_decoder_name()
    checks = []
    if sniff_container(data) == "tiff":
        problems = read_tiff(data).problems
        checks.append(check("structure", not problems,
                            "; ".join(problems[:3]) or "all image data lies inside the file"))
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            pages = _pages(tif)
            too_big = _oversized(pages)
            if too_big:
                checks.append(check("size", False, too_big))
                broken = any(not c["ok"] for c in checks[:-1])
                return ImageDecode(outcome(name, checks,
                                           verdict=DAMAGED if broken else UNSUPPORTED))
            first = None
            for page in pages:
                decoded = page.asarray()  # decodes every strip/tile of every page
                if first is None:
                    first = (decoded, page)
            if first is None:
                raise ValueError("no image pages")
            decoded, page = first
            pixels = _as_hwc(decoded, page)
            tag = page.tags.get(_TIFF_ORIENTATION)
            orientation = int(tag.value) if tag is not None else 1
            icc_tag = page.tags.get(34675)
            icc = bytes(icc_tag.value) if icc_tag is not None else None
    except MemoryError:
        raise  # says nothing about the file: run_task makes it "unsupported" with the reason
    except Exception as exc:  # noqa: BLE001 - tifffile raises many types for broken files
        checks.append(check("decode", False, f"{type(exc).__name__}: {exc}"))
        return ImageDecode(outcome(name, checks))
    checks.append(check("decode", True,
                        f"{len(pages)} page(s), first {pixels.shape[1]}x{pixels.shape[0]}"))
    return ImageDecode(outcome(name, checks), pixels, orientation, icc)


def _pages(tif: tifffile.TiffFile) -> list:
    """The pages, by index. Iterating `tif.pages` directly never ends on a file whose IFD chain
    loops back (found by fuzzing: IFD 8 -> 12 -> 8) once a page's attributes are read; len()
    stops at the loop."""
    return [tif.pages[i] for i in range(min(len(tif.pages), _MAX_PAGES))]


def _oversized(pages) -> str | None:
    """Why the file is not decoded, when a page claims more pixels than a check may hold.

    A header can claim any size: 2 MB of deflate data can claim 10 GB of pixels, and the
    decode would allocate and fill all of it in the worker. Pages are sized from their headers
    before anything is decoded."""
    for index, page in enumerate(pages):
        claimed = int(getattr(page, "nbytes", 0) or 0)
        if claimed > MAX_DECODED_BYTES:
            shape = "x".join(str(n) for n in getattr(page, "shape", ()))
            return (f"page {index} claims {shape} pixels ({claimed / 2**30:.1f} GiB decoded), "
                    f"more than the {MAX_DECODED_BYTES / 2**30:g} GiB a decode check may use: "
                    "not decoded")
    return None


def _as_hwc(a: np.ndarray, page) -> np.ndarray:
    a = np.squeeze(a)
    if a.ndim == 3 and a.shape[0] in (3, 4) and a.shape[2] not in (3, 4):
        a = np.moveaxis(a, 0, -1)  # planar (separate) configuration
    if a.ndim > 3:
        a = a.reshape(a.shape[-3:])
    if page.photometric == tifffile.PHOTOMETRIC.MINISWHITE:
        a = a.max() - a
    return a
