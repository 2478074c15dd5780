"""Content checks on a RAW file's unpacked sensor data.

A decoder that raises proves damage; one that does not proves nothing, because LibRaw fills what
it cannot decode without an error (see shared/notes/observed-damage.md). These checks look at
the unpacked samples for what damaged data turns into and no sensor produces.
Vectorised; tested on synthetic frames both ways (tests/test_decode_damage.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import rawpy

from ingest.decode import check


class StoredImage(Protocol):
    """Where a file's raw image lies in its bytes (raw.Ifd is one)."""
    width: int
    height: int
    bits: int
    samples: int
    compression: int | None
    tile_width: int
    ranges: list[tuple[int, int]]  # (offset, byte count) of each strip or tile

# Target span of one chunk of a row: short enough that a 64 KiB fill covers many chunks,
# long enough that a real sensor never yields one of exactly constant value unless clipped.
CHUNK_SAMPLES = 1024
# Impossible-constant spans needed before the data is called damaged (one is already
# implausible; two keep a single odd span from deciding alone).
MIN_BAD_SPANS = 2
# Share of non-zero values below which a plane is "mostly zero" (a dark frame on a camera
# that clips at black still has ~30-50 % non-zero noise).
MIN_NONZERO_SHARE = 0.01


def _planes(data: np.ndarray, colors: int) -> list[np.ndarray]:
    if data.ndim == 2:
        return [data]
    planes = [data[..., k] for k in range(data.shape[2])]
    # Stack images carry a 4th plane that stays zero for 3-colour data.
    if len(planes) > colors and not planes[-1].any():
        planes = planes[:colors]
    return planes


# Samples at the start of each span that screen it: a constant span or a ramp shows in
# them already, and 16 uint16 are four 64-bit words, compared as words below.
SCREEN = 16
_LANES = np.uint64(0x0001000100010001)  # one uint16 repeated in each of a word's 4 lanes


Extremes = tuple[np.ndarray, np.ndarray]  # per span: min, max


def _span_stats(plane: np.ndarray, chunk: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, Extremes | None]:
    """Per span of `chunk` samples along the rows: the spans (h, spans per row, span), whether
    each is exactly constant, whether each is an exact ramp, the spans per row, and each
    span's min and max where they were computed.

    A ramp is exactly linear per CFA colour (second differences at step 2 all zero, slope not
    zero), computed in wrapping uint16 arithmetic: a corrupt lossless-JPEG predictor chain
    decodes to such a ramp, wrapping past 65535, while sensor noise never lines up over a
    whole span.

    Both are screened on each span's first SCREEN samples; only the few spans that pass are
    checked in full. This does not change a verdict (a span that fails the screen cannot be
    constant or a ramp), and costs a third of a min and a max over every sample. When many
    spans pass (clipping, a fill), one min and max over every span is cheaper than copying
    the candidates out, and the caller needs them then anyway.
    """
    h, w = plane.shape
    cw = max(1, min(chunk, w))
    k = w // cw
    # A view (h, spans per row, span): rows are not contiguous when spans leave a remainder.
    spans = plane[:, :k * cw].reshape(h, k, cw).astype(np.uint16, copy=False)
    if cw < SCREEN:
        extremes = _extremes(spans)
        const = extremes[0] == extremes[1]
        ramp = _ramps(spans.reshape(-1, cw)) if cw >= 8 else np.zeros_like(const)
        return spans, const, ramp, k, extremes
    head = np.ascontiguousarray(spans[:, :, :SCREEN]).reshape(-1, SCREEN)
    words = head.view(np.uint64)  # (n, 4); numpy reduces a short last axis slowly
    lanes = head[:, 0].astype(np.uint64) * _LANES
    const = (words[:, 0] == lanes) & (words[:, 1] == lanes) & (words[:, 2] == lanes) & \
        (words[:, 3] == lanes)
    step = head[:, 2:] - head[:, :-2]
    curve = (step[:, 2:] - step[:, :-2]).view(np.uint64)  # (n, 3): 12 uint16 per span
    # With no curve, the steps repeat every 2 samples: the first two give the slope.
    ramp = ((curve[:, 0] | curve[:, 1] | curve[:, 2]) == 0) & ((step[:, 0] | step[:, 1]) != 0)
    extremes = None
    if np.count_nonzero(const) > const.size // 16:
        extremes = _extremes(spans)
        const = extremes[0] == extremes[1]
    else:
        _confirm(const, spans, _constant)
    _confirm(ramp, spans, _ramps)
    return spans, const, ramp, k, extremes


def _confirm(mask: np.ndarray, spans: np.ndarray, exact) -> None:
    """Check in full the spans that passed the screen (few: they are copied out)."""
    idx = np.flatnonzero(mask)
    if idx.size:
        k = spans.shape[1]
        mask[idx] = exact(spans[idx // k, idx % k])


def _extremes(spans: np.ndarray) -> Extremes:
    """Min and max of each span (along the last axis), flat."""
    return spans.min(axis=-1).ravel(), spans.max(axis=-1).ravel()


def _constant(spans: np.ndarray) -> np.ndarray:
    mins, maxs = _extremes(spans)
    return mins == maxs


def _ramps(spans: np.ndarray) -> np.ndarray:
    """Per row of `spans` (one span each): is it an exact ramp."""
    step = spans[:, 2:] - spans[:, :-2]
    # A slope of zero per colour is clipping with a different clip level per channel.
    return ~(step[:, 2:] - step[:, :-2]).any(axis=1) & step.any(axis=1)


def chunk_width(width: int, tile_width: int = 0) -> int:
    """Spans of about CHUNK_SAMPLES; inside one tile for tiled data, whose damage is per tile
    (a LJ92 DNG tile that fails to decode comes back as zeros while its neighbours are fine)."""
    if 0 < tile_width < width:
        parts = max(1, -(-tile_width // CHUNK_SAMPLES))
        return max(1, tile_width // parts)
    return max(1, width // max(1, -(-width // CHUNK_SAMPLES)))


def _runs(mask: np.ndarray) -> int:
    return int(np.count_nonzero(mask[1:] & ~mask[:-1]) + bool(mask[0])) if mask.size else 0


def _fill_like(const: np.ndarray, values: np.ndarray, edge_values: np.ndarray,
               candidates: np.ndarray) -> np.ndarray:
    """Constant spans whose value barely occurs outside them.

    A fill touches other spans only at its two ends (where it starts and stops mid-span);
    clipping at that value shows up in many spans around a blown or crushed region.
    """
    bad = np.zeros_like(const)
    for v in np.unique(values[candidates]):
        at_v = const & (values == v)
        if np.count_nonzero(edge_values == v) <= 2 * _runs(at_v):
            bad |= at_v
    return bad


def constant_span_check(data: np.ndarray, *, black: int, white: int, colors: int = 3,
                        tile_width: int = 0) -> dict:
    """Row spans of filled data: exactly constant at a value no sensor produces, or ramps.

    A constant span is impossible when its value is under half the black level, or below
    every other part of the image (a zero fill under the noise floor), or above both the white
    level and every other part of the image (a 0xFF fill) while hardly occurring elsewhere.
    Clipped highlights sit at the data's own maximum and recur around the blown area; a
    scanner border sits at the data's own minimum; neither is flagged. Spans next to a
    constant one are left out of "every other part": a fill rarely starts on a span boundary.
    """
    chunk = chunk_width(data.shape[1], tile_width)
    worst = (0, 0, 0, 1, "")  # bad spans, first bad span, plane, spans/row, kind
    for p, plane in enumerate(_planes(data, colors)):
        spans, const, ramp, per_row, extremes = _span_stats(plane, chunk)
        ramp &= ~const
        bad = ramp.copy()
        if const.any():  # clipping and fills: rare, so only then a min and max of every span
            mins, maxs = extremes or _extremes(spans)
            near = const.copy()
            near[1:] |= const[:-1]
            near[:-1] |= const[1:]
            near[per_row:] |= const[:-per_row]
            near[:-per_row] |= const[per_row:]
            clean = ~near
            if black > 0:
                bad |= const & (mins < black // 2)
            if clean.any():
                lo, hi = mins[clean].min(), maxs[clean].max()
                varied = ~const
                bad |= _fill_like(const, mins, mins[varied], const & (mins < lo))
                bad |= _fill_like(const, mins, maxs[varied],
                                  const & (mins > hi) & (mins > white))
        count = int(np.count_nonzero(bad))
        if count > worst[0]:
            first = int(np.argmax(bad))
            row, col = divmod(first, per_row)
            kind = "a ramp" if ramp[first] else f"exactly {int(spans[row, col, 0])}"
            worst = (count, first, p, per_row, kind)
    count, first, plane_no, per_row, kind = worst
    if count < MIN_BAD_SPANS:
        return check("constant_rows", True, "no impossible constant spans")
    where = f" in plane {plane_no}" if data.ndim == 3 else ""
    return check("constant_rows", False,
                 f"{count} row spans of {chunk} samples are filled, not sensor output (first: "
                 f"{kind} at row {first // per_row}{where}; black {black}, white {white})")


def nonzero_check(data: np.ndarray, colors: int = 3) -> dict:
    shares = [float(np.count_nonzero(p)) / p.size for p in _planes(data, colors) if p.size]
    low = min(shares) if shares else 0.0
    detail = "non-zero share per plane " + ", ".join(f"{s:.1%}" for s in shares)
    if low < MIN_NONZERO_SHARE:
        return check("nonzero", False, f"raw data mostly zero ({detail})")
    return check("nonzero", True, detail)




@dataclass(slots=True, frozen=True)
class SensorLevels:
    """What the content checks need to know about a file's sensor data."""
    black: int
    white: int
    colors: int
    tile_width: int  # 0: not tiled


def sensor_levels(raw: rawpy.RawPy, tile_width: int = 0) -> SensorLevels:
    return SensorLevels(
        black=min(raw.black_level_per_channel),
        white=max([raw.white_level] + list(raw.camera_white_level_per_channel or [])),
        colors=raw.num_colors,
        tile_width=tile_width)


def content_checks(stored: np.ndarray, visible: np.ndarray, lv: SensorLevels) -> list[dict]:
    """The checks on unpacked sensor data: impossible constant spans, and a mostly zero plane.
    Tiled data is checked in stored coordinates so spans line up with the tiles."""
    return [constant_span_check(stored if lv.tile_width else visible, black=lv.black,
                                white=lv.white, colors=lv.colors, tile_width=lv.tile_width),
            nonzero_check(visible, lv.colors)]


def sensor_checks(raw: rawpy.RawPy, stored: StoredImage | None, data: bytes) -> list[dict]:
    """The content checks of an unpacked file (`raw.raw_image` already read). `stored` is
    where a DNG says its raw image lies in `data` (None for other formats)."""
    tile_width = stored.tile_width if stored is not None else 0
    return content_checks(raw.raw_image, raw.raw_image_visible, sensor_levels(raw, tile_width))
