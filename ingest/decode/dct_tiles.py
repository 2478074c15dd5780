"""A second, strict decode of the lossy (DCT) JPEG tiles some DNGs hold (Blackmagic CinemaDNG).

LibRaw decodes these tiles leniently: a damaged block inside one mostly comes back as wrong
pixels without an error (7 of 32 4 KiB fills passed in the Blackmagic sample). FFmpeg's JPEG
decoder, with its error detection turned up to "explode", stops at the first Huffman code,
coefficient index or marker that cannot be there, and it reads 12-bit DCT (SOF1), which the
8-bit libjpeg-turbo that proves ordinary JPEGs does not. What it still cannot see is a fill
that happens to decode as valid codes to the end of the tile; docs/detection.md gives the
share measured.

A tile FFmpeg cannot decode at all for want of support (an unusual precision, a lossless or
arithmetic frame) raises no finding: only errors in the data count.
"""

from __future__ import annotations

import av
import av.logging

_STRICT = {"err_detect": "explode+crccheck+bitstream+buffer+careful"}


def decoder_name() -> str:
    return f"PyAV {av.__version__} (FFmpeg {_ffmpeg_version()})"


def _ffmpeg_version() -> str:
    info = getattr(av, "ffmpeg_version_info", "") or ""
    return str(info) or "unknown"


def is_dct(tile: bytes) -> bool:
    """Whether the tile's frame header is a Huffman-coded DCT frame (SOF0/SOF1/SOF2)."""
    pos = 2
    while pos + 4 <= min(len(tile), 4096) and tile[pos] == 0xFF:
        marker = tile[pos + 1]
        if marker in (0xC0, 0xC1, 0xC2):
            return True
        if marker in (0xC3, 0xDA):
            return False
        pos += 2 + int.from_bytes(tile[pos + 2:pos + 4], "big")
    return False


def decode_errors(data: bytes, ranges: list[tuple[int, int]]) -> list[str]:
    """The tiles (index and FFmpeg's complaint) that do not decode strictly."""
    bad = []
    previous = av.logging.get_level()
    av.logging.set_level(av.logging.PANIC)  # errors come back as exceptions; no stderr noise
    try:
        for index, (offset, count) in enumerate(ranges):
            codec = av.CodecContext.create("mjpeg", "r")
            codec.options = dict(_STRICT)
            try:
                codec.decode(av.Packet(data[offset:offset + count]))
                codec.decode(None)
            except av.error.PatchWelcomeError:
                continue  # a frame type FFmpeg lacks: says nothing about the data
            except av.FFmpegError as exc:
                bad.append(f"tile {index}: {exc.strerror or type(exc).__name__}")
    finally:
        av.logging.set_level(previous)
    return bad
