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

from ingest.decode import check, dct_tiles, lj92

LOSSLESS_JPEG = 7  # TIFF/DNG Compression: JPEG (in raw DNGs, lossless JPEG or lossy DCT tiles)


class StoredImage(Protocol):
    """Where a file's raw image lies in its bytes (raw.Ifd is one)."""
    width: int
    height: int
    bits: int
    samples: int
    compression: int | None
    tile_width: int
    ranges: list[tuple[int, int]]  # (offset, byte count) of each strip or tile
    dct: bool                      # compression 7 holding lossy DCT tiles rather than LJ92

# Target span of one chunk of a row: short enough that a 64 KiB fill covers many chunks,
# long enough that a real sensor never yields one of exactly constant value unless clipped.
CHUNK_SAMPLES = 1024
# Exact ramps needed before the data is called damaged (one is already impossible for a
# sensor; two keep a single odd span from deciding alone).
MIN_BAD_SPANS = 2
# Share of non-zero values below which a plane is "mostly zero": noted, never decisive.
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


def ramp_check(data: np.ndarray, *, black: int, white: int, colors: int = 3,
               tile_width: int = 0) -> dict:
    """Row spans that are exact ramps: decisive. Constant spans: reported, never decisive.

    A ramp is exactly linear per CFA colour over a whole span: a lossless-JPEG predictor chain
    fed a fill decodes to one (a fixed difference per sample, wrapping past 65535), while a
    sensor's noise never lines up over CHUNK_SAMPLES samples. Only single-plane data (CFA or
    monochrome sensor output) is judged: a demosaiced or synthetic LinearRaw image may hold a
    real gradient.

    A constant span is what a fill of uncompressed data looks like, but also what a blown sky,
    a studio backdrop, a specular highlight, crushed blacks, a star field on a black-0 sensor,
    a lens-cap frame or a film scan's clipped edge look like, at levels a white-level tag often
    gets wrong (the D5000's says 3840 while it clips at 4095). So constant spans are counted in
    the detail and left to the checks that can decide: the zero runs below a real black offset
    (below_black_check), the lossless-JPEG tile proof, and the checksum.
    """
    chunk = chunk_width(data.shape[1], tile_width)
    ramps, flat, found = 0, 0, ""
    for plane in _planes(data, colors):
        _, const, ramp, per_row, _ = _span_stats(plane, chunk)
        flat += int(np.count_nonzero(const))
        if data.ndim != 2:
            continue
        ramp &= ~const
        count = int(np.count_nonzero(ramp))
        if count > ramps:
            row, col = divmod(int(np.argmax(ramp)), per_row)
            ramps, found = count, f"row {row}, columns {col * chunk}..{(col + 1) * chunk - 1}"
    note = f"; {flat} constant spans (clipping or a flat scene: not a finding)" if flat else ""
    if ramps < MIN_BAD_SPANS:
        return check("ramps", True, f"no exact ramps in spans of {chunk}{note}")
    return check("ramps", False,
                 f"{ramps} row spans of {chunk} samples are exact ramps, not sensor output "
                 f"(first at {found}; black {black}, white {white})")


# Consecutive samples under half the black level that no sensor with a black offset reads:
# the offset exists so that read noise never reaches zero. 64 is far below the 290 samples a
# 512-byte sector holds at 14 bits, far above a dead pixel or two.
MIN_BELOW_BLACK_RUN = 64
# Black levels from which "under half of it" is physically out of reach (a few DN of offset
# could be a rounding of a tag; real offsets are 64 to 2048 and more).
MIN_BLACK_OFFSET = 16


def below_black_check(data: np.ndarray, *, black: int, colors: int = 3) -> dict:
    """Runs of samples under half a real black offset: a zero-filled block of uncompressed
    data. Decisive, because both levels come from the data: the tag's black level counts only
    when the rest of the data agrees (hardly any sample outside the runs falls under half of
    it); a tag that claims an offset the sensor does not have is ignored."""
    floor = black // 2
    if black < MIN_BLACK_OFFSET:
        return check("below_black", True, f"black level {black}: no offset to fall under")
    worst, where, total_low, total = 0, "", 0, 0
    for p, plane in enumerate(_planes(data, colors)):
        total += plane.size
        low = plane < floor  # on the view itself: no copy of a cropped or strided plane
        n_low = int(np.count_nonzero(low))
        if not n_low:  # the common case: one comparison pass, nothing kept
            continue
        total_low += n_low
        # Runs of one exact value among the low samples only (a fill writes one value; a
        # sensor's noise never does). Working on their indices keeps memory to the few low
        # samples: a change map of a 187 MP frame would cost gigabytes.
        idx = np.flatnonzero(low)
        del low
        values = plane[np.unravel_index(idx, plane.shape)]
        breaks = np.flatnonzero((np.diff(idx) != 1) | (values[1:] != values[:-1])) + 1
        starts = np.concatenate(([0], breaks))
        lengths = np.diff(np.concatenate((starts, [idx.size])))
        filled = lengths >= MIN_BELOW_BLACK_RUN
        in_runs = int(lengths[filled].sum())
        starts = idx[starts]
        if in_runs > worst:
            first = int(starts[np.argmax(filled)])
            row, col = divmod(first, plane.shape[1])
            plane_note = f" in plane {p}" if data.ndim == 3 else ""
            worst, where = in_runs, f"row {row}, column {col}{plane_note}"
    if not worst:
        return check("below_black", True, f"no runs under half the black level {black}")
    stray = total_low - worst  # under half the black level, yet not in a fill's runs
    if stray > max(16, total // 1000):
        return check("below_black", True,
                     f"{total_low} samples under half the black level {black}: the data does "
                     f"not have that offset, so the tag is not trusted")
    return check("below_black", False,
                 f"{worst} samples in runs under half the black level {black} (first at "
                 f"{where}): a zero-filled block, not sensor output")


# Samples in a row whose two low bits never change, in a CRW's low-bit area: 4^-255 for noise.
MIN_LOW_BITS_RUN = 256
_CRW_MAGIC = b"HEAPCCDR"


def low_bits_check(data: np.ndarray) -> dict:
    """A Canon CRW keeps the two lowest bits of every sample apart from the compressed data,
    uncompressed, four samples to a byte. Those bits are sensor noise, so a zero or 0xFF fill
    there leaves a run of varying samples whose low bits are all 0 (or all 3), which noise
    never does; clipped or black stretches do not vary and are not counted. A camera that
    stores no real low bits (constant across the frame) is not judged."""
    flat = data.reshape(-1)
    low = (flat & 3).astype(np.int8)
    starts = np.concatenate(([0], np.flatnonzero(low[1:] != low[:-1]) + 1))
    lengths = np.diff(np.concatenate((starts, [flat.size])))
    long_runs = np.flatnonzero(lengths >= MIN_LOW_BITS_RUN)
    if not long_runs.size:
        return check("low_bits", True, "the low bits vary like sensor noise")
    if lengths[long_runs].sum() > flat.size // 2:
        return check("low_bits", True, "the low bits are constant: this camera stores none")
    # Varying within one CFA phase: two channels clipped at levels that share their low bits
    # alternate, but each stays constant.
    bad = [i for i in long_runs
           if flat[starts[i]:starts[i] + lengths[i]:2].min()
           != flat[starts[i]:starts[i] + lengths[i]:2].max()]
    if not bad:
        return check("low_bits", True, "no varying run with constant low bits")
    row, col = divmod(int(starts[bad[0]]), data.shape[1])
    total = int(lengths[bad].sum())
    return check("low_bits", False,
                 f"{total} varying samples whose two low bits never change (first at row {row}, "
                 f"column {col}): the uncompressed low-bit data was overwritten")


def nonzero_check(data: np.ndarray, colors: int = 3) -> dict:
    """The share of non-zero samples per plane, for the record. A frame of zeros is what a stub
    or a file whose data went missing decodes to, but also a lens-cap frame on a black-0
    sensor after the camera subtracted its long-exposure dark frame: so it decides nothing.
    Files too small for their image fail the size check; lost LJ92 tiles fail the tile proof."""
    shares = [float(np.count_nonzero(p)) / p.size for p in _planes(data, colors) if p.size]
    low = min(shares) if shares else 0.0
    detail = "non-zero share per plane " + ", ".join(f"{s:.1%}" for s in shares)
    if low < MIN_NONZERO_SHARE:
        detail += " (mostly zero, as a lens-cap or dark frame can be: not a finding)"
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
    """The checks on unpacked sensor data: exact ramps, zero runs under a real black offset,
    and a mostly zero plane. Tiled data is checked for ramps in stored coordinates so spans
    line up with the tiles. Zero runs are looked for in the visible image only: what lies in
    the masked margins is the writer's business (the DNG specification leaves it open)."""
    return [ramp_check(stored if lv.tile_width else visible, black=lv.black,
                       white=lv.white, colors=lv.colors, tile_width=lv.tile_width),
            below_black_check(visible, black=lv.black, colors=lv.colors),
            nonzero_check(visible, lv.colors)]


def sensor_checks(raw: rawpy.RawPy, stored: StoredImage | None, data: bytes) -> list[dict]:
    """The content checks of an unpacked file (`raw.raw_image` already read). `stored` is
    where a DNG says its raw image lies in `data` (None for other formats)."""
    tile_width = stored.tile_width if stored is not None else 0
    checks = []
    if stored is not None and stored.compression == LOSSLESS_JPEG and stored.ranges:
        if stored.dct:
            checks.append(dct_check(stored, data))
        else:
            checks.append(lj92_check(raw, stored, data))
    if data[6:14] == _CRW_MAGIC:
        checks.append(low_bits_check(raw.raw_image))
    return checks + content_checks(raw.raw_image, raw.raw_image_visible,
                                   sensor_levels(raw, tile_width))


def dct_check(stored: StoredImage, data: bytes) -> dict:
    """Lossy (DCT) tiles decoded a second time, strictly, by FFmpeg (see decode/dct_tiles.py)."""
    bad = dct_tiles.decode_errors(data, stored.ranges)
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        return check("dct_tiles", False, f"{bad[0]}{more}: the compressed data is corrupt "
                                         f"({dct_tiles.decoder_name()}, strict)")
    return check("dct_tiles", True, f"{len(stored.ranges)} lossy JPEG tiles decode strictly")


def lj92_check(raw: rawpy.RawPy, stored: StoredImage, data: bytes) -> dict:
    """Every lossless-JPEG tile accounts exactly for its stored bits (see decode/lj92.py).

    A mismatch decides only when other tiles of the same file proved exact (the model fits
    this writer) and LibRaw applied no curve (its samples are the coded values): a full tile
    that does not fit then is damaged. A file where no tile fits (one strip
    only, or a writer this model does not describe) is left to the other checks.
    """
    curve = raw.tone_curve
    if curve is not None and not (curve == np.arange(curve.size)).all():
        # A LinearizationTable: LibRaw's samples are not the coded values, even where the curve
        # happens to map some of them to themselves.
        return check("lj92_tiles", True, "not judged: LibRaw maps the stored values through "
                                         "a curve")
    result = lj92.check_tiles(data, stored.ranges, raw.raw_image, stored.tile_width)
    counts = f"{result.checked} of {len(stored.ranges)} tiles exact"
    if result.bad and result.checked:
        more = f" (and {len(result.bad) - 1} more)" if len(result.bad) > 1 else ""
        return check("lj92_tiles", False, f"{result.bad[0]}{more}; {counts}")
    if result.bad:
        return check("lj92_tiles", True, f"{counts}; not judged: no tile of this file fits "
                                         f"the model, so a misfit proves nothing")
    return check("lj92_tiles", True, counts + (f", {result.unchecked} not checkable"
                                               if result.unchecked else ""))
