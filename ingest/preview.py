"""JPEG previews from what the decode check already holds in memory.

No second read of the file: a RAW preview comes from the open rawpy object (embedded JPEG or a
half-size render), a JPEG/HEIF/TIFF preview from the pixels the verifying decode produced.
Previews are upright (orientation applied, no Orientation tag), sRGB, carry EXIF
DateTimeOriginal, and are written atomically to every destination.
"""

from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import simplejpeg
from PIL import Image, ImageCms

# An embedded RAW preview is used when its long edge reaches min(size, 1024 px). 1024 px is
# enough to judge framing, focus at screen size and exposure; cameras embed either a tiny
# thumbnail (160 px) or a large preview (1280 px up to full size), so the threshold separates
# the two kinds cleanly, and the render it avoids costs 10-50x more. An embedded preview is
# never upscaled, so a preview can be smaller than `size`.
EMBEDDED_MIN_LONG_EDGE = 1024

_EXIF_IFD = 0x8769
_DATETIME_ORIGINAL = 0x9003
_OFFSET_TIME_ORIGINAL = 0x9011

# EXIF Orientation -> Pillow transpose that makes the image upright.
_ORIENT = {
    2: (Image.Transpose.FLIP_LEFT_RIGHT,),
    3: (Image.Transpose.ROTATE_180,),
    4: (Image.Transpose.FLIP_TOP_BOTTOM,),
    5: (Image.Transpose.TRANSPOSE,),
    6: (Image.Transpose.ROTATE_270,),
    7: (Image.Transpose.TRANSVERSE,),
    8: (Image.Transpose.ROTATE_90,),
}
# LibRaw's sizes.flip -> EXIF Orientation (3: 180 deg, 5: 90 deg CCW, 6: 90 deg CW).
_LIBRAW_FLIP_TO_ORIENTATION = {0: 1, 3: 3, 5: 8, 6: 6}


@dataclass(frozen=True, slots=True)
class PreviewRequest:
    out: tuple[str, ...]
    size: int = 2048
    quality: int = 85
    capture_time: str | None = None

    @classmethod
    def from_req(cls, preview: dict, capture_time: str | None) -> PreviewRequest:
        return cls(tuple(preview["out"]), int(preview.get("size", 2048)),
                   int(preview.get("quality", 85)), capture_time)


def orient(img: Image.Image, orientation: int) -> Image.Image:
    for op in _ORIENT.get(orientation, ()):
        img = img.transpose(op)
    return img


# Reductions up to this factor take nearest neighbour (see fit).
NEAREST_UP_TO = 1.02


def fit(img: Image.Image, size: int) -> Image.Image:
    """Long edge at most `size`, never upscaled.

    Bicubic, not Lanczos: Lanczos cost twice as much (0.2 s vs 0.1 s for 8 MP) for no
    difference visible in a preview. Under a 2x reduction bilinear, which Pillow widens into
    an antialiasing filter when it shrinks, looks the same and costs half (28 vs 51 ms).
    Up to a 2 % reduction (the 2064 px half-size render of a 4128 px sensor, fitted to 2048)
    nearest neighbour only leaves out one row or column in 50 or more, with no blur, at a
    tenth of bilinear's cost (3 vs 33 ms).
    """
    longest = max(img.size)
    if longest > size:
        img = img.copy() if img.readonly else img
        if longest <= size * NEAREST_UP_TO:
            method = Image.Resampling.NEAREST
        elif longest < 2 * size:
            method = Image.Resampling.BILINEAR
        else:
            method = Image.Resampling.BICUBIC
        img.thumbnail((size, size), method, reducing_gap=2.0)
    return img


def to_rgb_image(pixels: np.ndarray) -> Image.Image:
    """8-bit RGB from decoder output of any depth/channels."""
    a = np.asarray(pixels)
    if a.dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    elif a.dtype.kind == "f":
        a = (np.clip(a, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    elif a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        return Image.fromarray(a, mode="L").convert("RGB")
    return Image.fromarray(np.ascontiguousarray(a[..., :3]), mode="RGB")


def to_srgb(img: Image.Image, icc: bytes | None) -> Image.Image:
    if not icc:
        return img
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if "srgb" in ImageCms.getProfileDescription(src).lower().replace(" ", ""):
            return img
        return ImageCms.profileToProfile(img, src, ImageCms.createProfile("sRGB"),
                                         outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError):
        return img  # an unreadable profile: show the pixels as they are


def exif_bytes(capture_time: str | None) -> bytes:
    exif = Image.Exif()
    if capture_time:
        try:
            when = datetime.fromisoformat(capture_time)
        except ValueError:
            when = None
        if when is not None:
            sub = exif.get_ifd(_EXIF_IFD)
            sub[_DATETIME_ORIGINAL] = when.strftime("%Y:%m:%d %H:%M:%S")
            offset = when.strftime("%z")
            if offset:
                sub[_OFFSET_TIME_ORIGINAL] = f"{offset[:3]}:{offset[3:]}"
    return exif.tobytes()


def write_preview(img: Image.Image, req: PreviewRequest) -> list[str]:
    """Encode once, write the same bytes to every destination via temp name + os.replace."""
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=req.quality, exif=exif_bytes(req.capture_time),
             optimize=False)
    return _write_all(buf.getvalue(), req)


def _write_all(payload: bytes, req: PreviewRequest) -> list[str]:
    written = []
    for out in req.out:
        folder = os.path.dirname(out) or "."
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".preview-", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(payload)
                fh.flush()
                # Data before name: after a power cut a preview's name must not hold nothing
                # (a re-run trusts a preview it finds for a duplicate).
                os.fsync(fh.fileno())
            os.replace(tmp, out)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        written.append(out)
    return written


def _summary(written: list[str], source: str, img: Image.Image | tuple[int, int],
             partial: bool) -> dict:
    width, height = img if isinstance(img, tuple) else img.size
    return {"written": written, "source": source, "width": width, "height": height,
            "partial": partial}


# EXIF Orientation -> the same turn of a (rows, columns, channels) array.
_ORIENT_ARRAY = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}


def encode_array(rgb: np.ndarray, req: PreviewRequest) -> bytes:
    """libjpeg-turbo straight from an 8-bit RGB array, with the EXIF block spliced in after
    the JFIF header (simplejpeg writes none)."""
    jpeg = simplejpeg.encode_jpeg(np.ascontiguousarray(rgb), quality=req.quality,
                                  colorspace="RGB", colorsubsampling="420")
    exif = exif_bytes(req.capture_time)
    at = 2
    if jpeg[2:4] == b"\xff\xe0":  # APP0 (JFIF) stays first, where JFIF readers look for it
        at = 4 + int.from_bytes(jpeg[4:6], "big")
    return jpeg[:at] + b"\xff\xe1" + (len(exif) + 2).to_bytes(2, "big") + exif + jpeg[at:]


def _preview(pixels: np.ndarray, req: PreviewRequest, orientation: int, source: str,
             partial: bool, icc: bytes | None = None) -> dict:
    """Upright, fitted, sRGB, written to every destination.

    The common case (8-bit RGB that already fits, no colour profile) goes from the decoder's
    array to the encoder without a Pillow image: making one and turning it upright cost more
    than the encode itself (5 + 4 ms against 13 ms for 3 MP)."""
    a = np.asarray(pixels)
    if (not icc and a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3
            and max(a.shape[:2]) <= req.size):
        a = _ORIENT_ARRAY.get(orientation, lambda x: x)(a)
        return _summary(_write_all(encode_array(a, req), req), source,
                        (a.shape[1], a.shape[0]), partial)
    img = to_srgb(fit(orient(to_rgb_image(pixels), orientation), req.size), icc)
    return _summary(write_preview(img, req), source, img, partial)


def preview_from_pixels(pixels: np.ndarray, req: PreviewRequest, *, orientation: int = 1,
                        icc: bytes | None = None, partial: bool = False) -> dict:
    """JPEG/HEIF/TIFF: the decoded (possibly DCT-reduced) pixels, made upright and fitted."""
    return _preview(pixels, req, orientation, "image", partial, icc)


def embedded_usable(thumb: np.ndarray | None, size: int, stored_long_edge: int = 0) -> bool:
    """Judged on the preview as the camera stored it: its pixels may come DCT-reduced."""
    if thumb is None:
        return False
    return (stored_long_edge or max(thumb.shape[:2])) >= min(size, EMBEDDED_MIN_LONG_EDGE)


def preview_from_raw(raw, thumb: np.ndarray | None, req: PreviewRequest, *,
                     partial: bool = False, stored_long_edge: int = 0) -> dict:
    """RAW: the embedded preview when it is large enough, else a half-size render."""
    if embedded_usable(thumb, req.size, stored_long_edge):
        orientation = _LIBRAW_FLIP_TO_ORIENTATION.get(int(raw.sizes.flip), 1)
        return _preview(thumb, req, orientation, "embedded", partial)
    # half_size halves only Bayer data; 4-channel (Stack) images come out full size and are
    # fitted. LibRaw applies the flip itself here.
    rgb = raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8)
    return _preview(rgb, req, 1, "rendered", partial)


def preview_from_thumb(thumb: np.ndarray, flip: int, req: PreviewRequest) -> dict:
    """A damaged RAW whose sensor data did not unpack but whose embedded preview decodes."""
    return _preview(thumb, req, _LIBRAW_FLIP_TO_ORIENTATION.get(flip, 1), "embedded", True)
