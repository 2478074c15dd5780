"""Proof that each lossless-JPEG (LJ92) tile of a DNG decoded from its stored data, exactly.

A lossless JPEG codes every sample as a Huffman code for the size of its difference from a
prediction, followed by that many bits. An encoder therefore writes exactly

    sum over the samples of (code length of the difference's size + the size)

bits for a tile, then pads to the next byte with at most 7 one-bits (ITU T.81, F.1.2.3). That
count can be computed back from the decoded samples alone. When a block of the stored data is
zeroed or overwritten, the Huffman decoder loses step: it reads the fill as other codes, finds
its footing again somewhere after, and decodes the tile's fixed number of samples out of a
different number of bits. LibRaw raises no error for that (it stops when the tile has all its
samples), and neither does it for a tile whose header it cannot parse: it skips the tile and
leaves whatever its buffer held (zeros with glibc's MALLOC_PERTURB_, an earlier file's pixels
without). Both show here as a tile whose samples do not account for its stored bits, whatever
the C library. No legitimate encoder writes such a tile, so a mismatch decides `damaged`.

What is not checked (the result says so, and the other checks still run): edge tiles, whose
padding samples LibRaw crops away, are proven when one of the paddings writers use (zeros,
the edge repeated, the last two rows and columns repeated) accounts for the bits exactly; a
misfit is called damaged only once another edge tile of the file was fitted by exactly one
padding (the writer's), and is otherwise left unchecked. Tiles using restart intervals or a
point transform, and frames whose shape is not one sample row per tile row, are not checked.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

_SOI, _EOI, _SOF3, _DHT, _SOS, _DRI = 0xD8, 0xD9, 0xC3, 0xC4, 0xDA, 0xDD
# A header of this many bytes holds SOI, the tables, SOF3 and SOS of any real tile.
_HEADER_BYTES = 4096


@dataclass(slots=True)
class Lj92Header:
    precision: int
    rows: int                 # Y: sample rows of the frame
    columns: int              # X: samples per row, per component
    components: int           # Nf
    tables: list[int]         # the DC table each component uses, in scan order
    predictor: int
    point_transform: int
    restart_interval: int
    lengths: dict[int, np.ndarray]  # table id -> code length (bits) per size 0..16, 0 if absent
    scan_start: int           # offset of the entropy-coded data within the tile


class NotLj92(ValueError):
    """The tile's bytes do not start like a lossless JPEG: the header itself is damaged."""


class OtherJpeg(ValueError):
    """A DCT or arithmetic-coded JPEG tile (lossy DNG): not this check's business."""


def dct_precision(tile: bytes) -> int | None:
    """The sample precision (bits) of a Huffman-coded DCT frame header (SOF0/SOF1/SOF2) at the
    tile's start, 0 when the header is cut before it; None when the tile is no DCT frame."""
    pos = 2
    while pos + 4 <= min(len(tile), 4096) and tile[pos] == 0xFF:
        marker = tile[pos + 1]
        if marker in (0xC0, 0xC1, 0xC2):
            return tile[pos + 4] if pos + 4 < len(tile) else 0
        if marker in (0xC3, 0xDA):
            return None
        pos += 2 + int.from_bytes(tile[pos + 2:pos + 4], "big")
    return None


def is_dct(tile: bytes) -> bool:
    """Whether the tile's frame header is a Huffman-coded DCT frame (SOF0/SOF1/SOF2)."""
    return dct_precision(tile) is not None


def parse_header(tile: bytes) -> Lj92Header:
    if tile[:2] != b"\xff\xd8":
        raise NotLj92("no JPEG start-of-image marker at the tile's start")
    pos, end = 2, min(len(tile), _HEADER_BYTES)
    lengths: dict[int, np.ndarray] = {}
    sof = None
    restart = 0
    while pos + 4 <= end:
        if tile[pos] != 0xFF:
            raise NotLj92(f"no marker at byte {pos} of the tile header")
        marker = tile[pos + 1]
        if marker == 0xFF:  # a fill byte before a marker
            pos += 1
            continue
        (length,) = struct.unpack_from(">H", tile, pos + 2)
        seg = tile[pos + 4:pos + 2 + length]
        if len(seg) != length - 2:
            raise NotLj92("a header segment runs past the tile's data")
        if marker == _DHT:
            _read_dht(seg, lengths)
        elif marker == _SOF3:
            p, y, x, nf = seg[0], *struct.unpack_from(">HH", seg, 1), seg[5]
            sof = (p, y, x, nf, [seg[6 + 3 * i] for i in range(nf)])
        elif marker in (0xC0, 0xC1, 0xC2, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            raise OtherJpeg(f"a DCT or arithmetic frame (marker FF{marker:02X}), not lossless")
        elif marker == _DRI:
            (restart,) = struct.unpack_from(">H", seg, 0)
        elif marker == _SOS:
            if sof is None:
                raise NotLj92("a scan before any frame header")
            ns = seg[0]
            ids = [seg[1 + 2 * i] for i in range(ns)]
            tds = {seg[1 + 2 * i]: seg[2 + 2 * i] >> 4 for i in range(ns)}
            ss, al = seg[1 + 2 * ns], seg[3 + 2 * ns] & 0x0F
            p, y, x, nf, comp_ids = sof
            if ns != nf or sorted(ids) != sorted(comp_ids):
                raise NotLj92("the scan does not code every component of the frame")
            return Lj92Header(p, y, x, nf, [tds[c] for c in ids], ss, al, restart, lengths,
                              pos + 2 + length)
        pos += 2 + length
    raise NotLj92("no scan header in the tile")


def _read_dht(seg: bytes, lengths: dict[int, np.ndarray]) -> None:
    pos = 0
    while pos + 17 <= len(seg):
        table = seg[pos] & 0x0F
        counts = seg[pos + 1:pos + 17]
        total = sum(counts)
        symbols = seg[pos + 17:pos + 17 + total]
        if len(symbols) != total:
            raise NotLj92("a Huffman table runs past its segment")
        per_size = np.zeros(17, dtype=np.int64)
        k = 0
        for bits, n in enumerate(counts, start=1):
            for s in symbols[k:k + n]:
                if s <= 16 and not per_size[s]:
                    per_size[s] = bits
            k += n
        lengths[table] = per_size
        pos += 17 + total


def scan_bits(tile: bytes, start: int) -> int | None:
    """Bits of entropy-coded data from `start` to the end-of-image marker, stuffing removed;
    None when the data does not end in EOI, or holds another marker first."""
    body = tile[start:]
    end = body.rfind(b"\xff\xd9")
    if end < 0 or body[end + 2:].strip(b"\x00\xff"):
        return None
    body = body[:end].rstrip(b"\xff")  # fill bytes before the marker are not data (T.81 B.1.1.2)
    ff = np.flatnonzero(np.frombuffer(body, dtype=np.uint8)[:-1] == 0xFF) if body else []
    stuffed = 0
    for i in ff:
        if body[i + 1] == 0x00:
            stuffed += 1
        elif body[i + 1] != 0xFF:
            return None  # a marker inside the scan (restart markers are not handled here)
    return 8 * (len(body) - stuffed)


# Bit length of every possible |difference| (0..32768): a table look-up instead of a log.
_SIZES = np.zeros(32769, dtype=np.int8)
for _k in range(1, 16):
    _SIZES[1 << (_k - 1):1 << _k] = _k
_SIZES[32768] = 16
# Rows per band, so that a whole-image strip costs a band's temporaries, not the image's.
_BAND_SAMPLES = 1 << 21


def coded_bits(samples: np.ndarray, hdr: Lj92Header) -> tuple[int, bool]:
    """(bits an encoder writes for these samples, every size has a code) for a frame of shape
    (rows, columns * components), components interleaved along the row."""
    hist = np.zeros((1, hdr.components, 17), dtype=np.int64)
    rows = samples.shape[0]
    band = max(1, _BAND_SAMPLES // max(1, samples.shape[1]))
    for top in range(0, rows, band):
        above = samples[top - 1:top] if top else None
        hist += _size_hist(samples[None, top:min(rows, top + band)], hdr, above)
    return _bits(hist[0], hdr)


def _bits(hist: np.ndarray, hdr: Lj92Header) -> tuple[int, bool]:
    """Bits for one frame's (components, 17) histogram of difference sizes."""
    total = int((hist[:, :16] * np.arange(16)).sum())  # size 16 has no extra bits
    complete = True
    for k, table_id in enumerate(hdr.tables):
        table = hdr.lengths.get(table_id)
        if table is None:
            return total, False
        if np.any(hist[k][table == 0]):
            complete = False
        total += int(hist[k] @ table)
    return total, complete


def _size_hist(blocks: np.ndarray, hdr: Lj92Header, above: np.ndarray | None) -> np.ndarray:
    """Histogram (block, component, size) of the differences of a stack of frames (or of
    consecutive rows of one frame when `above`, the row before them, is given).

    In uint16 throughout: T.81 takes differences modulo 2^16, which uint16 subtraction does by
    itself, and half the memory traffic of int32 halves the time (this runs over every sample
    of every lossless DNG)."""
    nf = hdr.components
    x = blocks.astype(np.uint16, copy=False)
    n, rows, cols = x.shape
    if above is None:
        prev, first = x[:, :-1], 1
    else:
        prev, first = np.concatenate((above.astype(np.uint16)[None], x[:, :-1]), axis=1), 0
    diff = np.empty((n, rows, cols), dtype=np.uint16)
    # T.81 H.1.2.1: the first row predicts from the left, the first column from above,
    # the very first sample of each component from half the range.
    if first:
        np.subtract(x[:, 0, nf:], x[:, 0, :-nf], out=diff[:, 0, nf:])
        np.subtract(x[:, 0, :nf], 1 << (hdr.precision - hdr.point_transform - 1),
                    out=diff[:, 0, :nf], casting="unsafe")
    np.subtract(x[:, first:, :nf], prev[:, :, :nf], out=diff[:, first:, :nf])
    a, b, c = x[:, first:, :-nf], prev[:, :, nf:], prev[:, :, :-nf]  # left, above, above-left
    if hdr.predictor in (1, 2, 3):
        pred = {1: a, 2: b, 3: c}[hdr.predictor]
    else:  # in int32: these add before they divide
        a, b, c = (v.astype(np.int32) for v in (a, b, c))
        pred = {4: lambda: a + b - c, 5: lambda: a + ((b - c) >> 1),
                6: lambda: b + ((a - c) >> 1), 7: lambda: (a + b) >> 1}[hdr.predictor]()
        pred = (pred & 0xFFFF).astype(np.uint16)
    np.subtract(x[:, first:, nf:], pred, out=diff[:, first:, nf:])
    np.abs(diff.view(np.int16), out=diff.view(np.int16))  # -32768 stays 32768 as uint16
    key = _SIZES[diff].view(np.uint8).astype(np.uint16)
    del diff
    # One histogram for all: key = (block * components + component) * 17 + size.
    key += (np.arange(cols, dtype=np.uint16) % nf * 17)[None, None, :]
    if n > 1:
        key += (np.arange(n, dtype=np.uint16) * (nf * 17))[:, None, None]
    return np.bincount(key.ravel(), minlength=n * nf * 17).reshape(n, nf, 17)


@dataclass(slots=True)
class TileResult:
    checked: int = 0          # tiles proven exact
    unchecked: int = 0        # tiles this check cannot judge (edge padding, restarts, layout)
    bad: list[str] | None = None


def check_tiles(data: bytes, ranges: list[tuple[int, int]], image: np.ndarray,
                tile_width: int) -> TileResult:
    """Each (offset, count) range is one tile (or strip: `tile_width` 0), in row-major order
    over `image` (the stored raw image, LibRaw's `raw_image`). The tile length is the frame
    height the first readable tile header declares."""
    height, width = image.shape[:2]
    tile_width = tile_width or width
    across = -(-width // tile_width)
    out = TileResult(bad=[])
    tile_length = 0
    for offset, count in ranges[:8]:
        try:
            tile_length = parse_header(data[offset:offset + count]).rows
            break
        except (ValueError, struct.error, IndexError):
            continue
    if not tile_length:
        out.unchecked = len(ranges)
        return out
    edge_misfits: list[str] = []  # edge tiles no padding fitted
    proven: set[str] = set()      # paddings that alone fitted some edge tile of this file
    pending: list[tuple[np.ndarray, Lj92Header, int, str]] = []  # full tiles, judged in batches
    for index, (offset, count) in enumerate(ranges):
        ty, tx = divmod(index, across)
        top, left = ty * tile_length, tx * tile_width
        if top >= height:
            out.unchecked += 1
            continue
        tile = data[offset:offset + count]
        where = f"tile {index} (rows {top}.., columns {left}..)"
        try:
            hdr = parse_header(tile)
        except OtherJpeg:
            out.unchecked += 1
            continue
        except (NotLj92, struct.error, IndexError) as exc:
            out.bad.append(f"{where}: {exc}")
            continue
        if (hdr.point_transform or hdr.restart_interval or hdr.predictor not in range(1, 8)
                or hdr.columns * hdr.components != tile_width or hdr.rows != tile_length):
            out.unchecked += 1
            continue
        stored = scan_bits(tile, hdr.scan_start)
        if stored is None:
            out.bad.append(f"{where}: its coded data does not end in an end-of-image marker")
            continue
        block = image[top:top + tile_length, left:left + tile_width]
        if block.shape != (tile_length, tile_width):
            fitted = _paddings_that_fit(block, hdr, tile_length, tile_width, stored)
            if fitted:
                out.checked += 1
                if len(fitted) == 1:
                    proven |= fitted
            else:
                edge_misfits.append(where)
            continue
        pending.append((block, hdr, stored, where))
        if len(pending) == _BATCH_TILES:
            _judge(pending, out)
    _judge(pending, out)
    # An edge tile that no padding fits is damaged only when another edge tile of the file was
    # fitted by exactly one padding: that names the writer's padding. A fit that several
    # paddings share (a flat corner) names nothing, and a writer may pad in a way not tried
    # here: without such proof the tile is left unchecked.
    for where in edge_misfits:
        if proven:
            out.bad.append(f"{where}: its samples do not account for its stored bits with the "
                           f"padding ({', '.join(sorted(proven))}) this file's writer uses")
        else:
            out.unchecked += 1
    return out


# Full tiles whose differences are computed together: one numpy pass instead of one per tile
# (a D5000 DNG has 204), with temporaries of a few megabytes.
_BATCH_TILES = 16  # keys stay under 2^16 up to 16 * 4 components * 17


def _judge(pending: list[tuple[np.ndarray, Lj92Header, int, str]], out: TileResult) -> None:
    """Judge the batched full tiles (emptying the list); tiles sharing predictor and layout go
    through one pass, each with its own Huffman tables."""
    groups: dict[tuple, list[int]] = {}
    for i, (block, hdr, _, _) in enumerate(pending):
        key = (block.shape, hdr.predictor, hdr.components, hdr.precision, hdr.point_transform)
        groups.setdefault(key, []).append(i)
    for members in groups.values():
        first = pending[members[0]][1]
        hists = _size_hist(np.stack([pending[i][0] for i in members]), first, None)
        for i, hist in zip(members, hists, strict=True):
            _, hdr, stored, where = pending[i]
            bits, complete = _bits(hist, hdr)
            if complete and fits(bits, stored, int(hist[:, 16].sum())):
                out.checked += 1
            else:
                why = ("holds differences no code of its table can express" if not complete
                       else f"decodes to samples that take {bits} bits, but {stored} are stored")
                out.bad.append(f"{where}: {why}")
    pending.clear()


_PADDINGS = ("constant", "edge", "cfa")


def _paddings_that_fit(block: np.ndarray, hdr: Lj92Header, tile_length: int, tile_width: int,
                       stored: int) -> set[str]:
    """An edge tile's padding that LibRaw cropped away, put back: writers pad with zeros (the
    Nikon D5000's DNG), repeat the edge sample, or repeat the last two rows and columns (which
    keeps the CFA phase). The modes that account for the stored bits exactly."""
    pad = ((0, tile_length - block.shape[0]), (0, tile_width - block.shape[1]))
    fitting = set()
    for mode in _PADDINGS:
        if mode == "cfa":
            padded = _repeat_last_two(block, tile_length, tile_width)
        else:
            padded = np.pad(block, pad, mode=mode)
        hist = _size_hist(padded[None], hdr, None)[0]
        bits, complete = _bits(hist, hdr)
        if complete and fits(bits, stored, int(hist[:, 16].sum())):
            fitting.add(mode)
    return fitting


def _repeat_last_two(block: np.ndarray, rows: int, cols: int) -> np.ndarray:
    h, w = block.shape
    col_idx = np.arange(cols)
    col_idx = np.where(col_idx < w, col_idx, w - 2 + (col_idx - w) % 2) if w >= 2 else \
        np.minimum(col_idx, w - 1)
    row_idx = np.arange(rows)
    row_idx = np.where(row_idx < h, row_idx, h - 2 + (row_idx - h) % 2) if h >= 2 else \
        np.minimum(row_idx, h - 1)
    return block[np.ix_(row_idx, col_idx)]


def fits(bits: int, stored: int, size16: int = 0) -> bool:
    """Whether `bits` of coded samples account for `stored` bits: equal up to the at most 7
    padding bits. Writers of DNG before 1.1 (Adobe's SDK among them) wrote 16 extra bits after
    each difference of size 16, which the standard gives none; that count is accepted too."""
    return stored - 8 < bits <= stored or (size16 > 0 and stored - 8 < bits + 16 * size16 <= stored)
