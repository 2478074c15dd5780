"""A second, strict decode of the lossy (DCT) JPEG tiles some DNGs hold (Blackmagic CinemaDNG).

LibRaw decodes these tiles leniently: a damaged block inside one mostly comes back as wrong
pixels without an error (7 of 32 4 KiB fills passed in the Blackmagic sample). FFmpeg's JPEG
decoder, with its error detection turned up to "explode", stops at the first Huffman code,
coefficient index or marker that cannot be there, and it reads 12-bit DCT (SOF1), which the
8-bit libjpeg-turbo that proves ordinary JPEGs does not. What it still cannot see is a fill
that happens to decode as valid codes to the end of the tile; docs/detection.md gives the
share measured.

Such a fill leaves a signature in FFmpeg's own decoded tile (`repeated_blocks`): an all-zero bit
string decodes as the shortest Huffman code over and over, so every block after it carries the
same AC coefficients and only the differential DC moves. Along a block row that is a run of
8x8 blocks with one identical, richly textured shape; a camera's sensor noise never repeats so.

A tile FFmpeg cannot decode at all for want of support (an unusual precision, a lossless or
arithmetic frame) raises no finding: only errors in the data count.
"""

from __future__ import annotations

import av
import av.logging
import numpy as np

from ingest.decode.lj92 import dct_precision

_STRICT = {"err_detect": "explode+crccheck+bitstream+buffer+careful"}


# The repeated-block signature (`repeated_blocks`), in LSBs of the tile's own sample precision.
# IDCT of one set of coefficients under two DC values: the DC adds a constant before each
# rounding step, so corresponding samples of the two blocks differ by the DC step give or take
# one LSB of rounding. The per-sample difference of two such blocks therefore spans at most
# 2 LSB (max minus min); decoded garbage measured spans 0..1.
SAME_SHAPE_SPREAD = 2
# A block's shape is "textured" when this many of its 63 AC coefficients (orthonormal DCT,
# which is the JPEG scale) reach TEXTURE_COEFF LSB, far above what +-1 LSB of rounding puts
# into a coefficient of a flat or smooth block. Flat areas (clipped, black) have none; a smooth
# ramp or a noise-free gradient quantised to a few low frequencies has a handful (at most the
# first row and column); the shortest code repeated fills every coefficient (measured: all 63
# at one quantiser step, 20..30 LSB) or, if that code has a zero run, every other one.
TEXTURE_COEFF = 4
TEXTURE_COUNT = 16
# Consecutive blocks of a block row that must share one textured shape. A 4 KiB zero fill
# decodes to ~100-250 such blocks (each costs a DC code and 63 two- or three-bit AC codes,
# 20-25 bytes), so 16 still catches fills of a few hundred bytes, while 15 exact repeats of a
# rich texture in a row is far past anything noisy content, or a ramp, can produce.
RUN_BLOCKS = 16
# A flat colour seen through a 2x2 CFA that a writer packs into each 8x8 block repeats one
# textured block exactly too, when quantisation removed the noise. Such a period-2 pattern
# (and its level) has DCT energy only at frequency 0 and the odd ones in each direction, since
# (-1)^n is antisymmetric about the block's centre; decoded garbage fills the even ones too.
# A block counts as textured only with some energy where no period-2 pattern has any.
_EVEN = np.arange(8) % 2 == 0
_NOT_PERIOD_2 = (_EVEN[:, None] & (np.arange(8) >= 2)[:, None]) | \
    (_EVEN[None, :] & (np.arange(8) >= 2)[None, :])
MIN_NOT_PERIOD_2 = 4

_N = np.arange(8)
_DCT = np.sqrt(2 / 8) * np.cos((2 * _N[None, :] + 1) * _N[:, None] * np.pi / 16)
_DCT[0] /= np.sqrt(2)


def decoder_name() -> str:
    return f"PyAV {av.__version__} (FFmpeg {_ffmpeg_version()})"


def _ffmpeg_version() -> str:
    info = getattr(av, "ffmpeg_version_info", "") or ""
    return str(info) or "unknown"


def repeated_blocks(image: np.ndarray, bits: int = 8) -> int:
    """The longest run of consecutive 8x8 blocks along a block row that repeat one textured
    shape (block minus its level) to within IDCT rounding: decoded garbage (module docstring).

    `image` is one decoded component in its own block grid; `bits` the tile's precision, whose
    samples FFmpeg scales to the top of its 16-bit frame (their low bits are zero).
    """
    if image.ndim != 2:
        return 0
    h, w = image.shape[0] // 8 * 8, image.shape[1] // 8 * 8
    if h == 0 or w < 8 * RUN_BLOCKS:
        return 0
    samples = image[:h, :w]
    if image.dtype == np.uint16 and bits < 16:
        samples = samples >> (16 - bits)
    # Differences of samples of up to 15 bits fit int16 (half the memory traffic of int32).
    samples = samples.astype(np.int16 if bits < 16 else np.int32)
    blocks = samples.reshape(h // 8, 8, w // 8, 8).transpose(0, 2, 1, 3)
    step = blocks[:, 1:] - blocks[:, :-1]
    same = (step.max(axis=(2, 3)) - step.min(axis=(2, 3))) <= SAME_SHAPE_SPREAD
    if not same.any():
        return 0
    # Texture is measured only on blocks that take part in a same-shape pair.
    rows, cols = np.nonzero(same)
    need = np.zeros(blocks.shape[:2], dtype=bool)
    need[rows, cols] = need[rows, cols + 1] = True
    coeffs = _DCT @ blocks[need].astype(np.float32) @ _DCT.T
    coeffs[:, 0, 0] = 0
    textured = np.zeros_like(need)
    strong = np.abs(coeffs) >= TEXTURE_COEFF
    textured[need] = (strong.sum(axis=(1, 2)) >= TEXTURE_COUNT) & \
        ((strong & _NOT_PERIOD_2).sum(axis=(1, 2)) >= MIN_NOT_PERIOD_2)
    pairs = same & textured[:, 1:] & textured[:, :-1]
    if not pairs.any():
        return 0
    # Longest run of True pairs per row (a run of k pairs is k + 1 blocks).
    padded = np.zeros((pairs.shape[0], pairs.shape[1] + 2), dtype=np.int8)
    padded[:, 1:-1] = pairs
    edges = np.diff(padded, axis=1)
    starts, ends = np.nonzero(edges == 1), np.nonzero(edges == -1)
    return int((ends[1] - starts[1]).max()) + 1


def decode_errors(data: bytes, ranges: list[tuple[int, int]]) -> list[str]:
    """The tiles (index and complaint) that do not decode strictly, or whose decoded blocks
    show the repeated-garbage signature (`repeated_blocks`)."""
    bad = []
    previous = av.logging.get_level()
    av.logging.set_level(av.logging.PANIC)  # errors come back as exceptions; no stderr noise
    try:
        for index, (offset, count) in enumerate(ranges):
            codec = av.CodecContext.create("mjpeg", "r")
            codec.options = dict(_STRICT)
            tile = data[offset:offset + count]
            try:
                frames = codec.decode(av.Packet(tile)) + codec.decode(None)
            except av.error.PatchWelcomeError:
                continue  # a frame type FFmpeg lacks: says nothing about the data
            except MemoryError:
                raise  # av.error.MemoryError too: run_task makes the file unverified
            except av.FFmpegError as exc:
                bad.append(f"tile {index}: {exc.strerror or type(exc).__name__}")
                continue
            run = max((_run_of(frame, tile) for frame in frames), default=0)
            if run >= RUN_BLOCKS:
                bad.append(f"tile {index}: {run} 8x8 blocks in a row repeat one textured block "
                           f"exactly (decoded garbage, not image content)")
    finally:
        av.logging.set_level(previous)
    return bad


def _run_of(frame: av.VideoFrame, tile: bytes) -> int:
    """`repeated_blocks` of a one-component (grey) frame; other layouts are not judged."""
    if frame.format.name not in ("gray", "gray16le", "gray16be"):
        return 0
    return repeated_blocks(frame.to_ndarray(), dct_precision(tile) or 8)
