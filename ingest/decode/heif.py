"""HEIF/HEIC verification: a strict HEVC decode of every coded image item decides the verdict.

Why not just libheif: pillow-heif (libheif + libde265) conceals damaged HEVC data. A 4 KiB zero
or 0xFF block inside a photo's coded data decodes without any error, so a damaged copy would be
called fine (measured on the real samples: 1 of 160 such fills reported). libheif still supplies
the pixels (grid assembly, colour conversion, rotation) for the preview, but the verdict comes
from checks that damage cannot slip past:

- the boxes: parsed here (isobmff.py), bounded; every item extent must lie inside the file, so a
  truncated copy is damaged even where no decoder would read the missing bytes;
- the NAL units: the length prefixes must tile each item's data exactly, and no NAL unit may
  contain 00 00 00, 00 00 01 or 00 00 02 (H.265 7.4.2: the encoder inserts emulation-prevention
  bytes so these never occur). A zero-filled block always breaks this, with no decode at all;
- FFmpeg's HEVC decoder (PyAV) with err_detect turned up, its error log as evidence, exactly one
  picture per item. On its own it reports few fills (0-20 % of 0xFF fills, 5-80 % of zero fills
  on the samples; err_detect adds a little over the default): a backstop, not the main proof;
- CTU coverage: damaged CABAC data (a 0xFF fill, typically) makes the decoder read
  end_of_slice_segment_flag early and stop; FFmpeg raises nothing and leaves the rest of the
  picture as the buffer was. A fresh FFmpeg context hands out zeroed buffers, so such blocks
  come out all zero. Zero blocks can also be real content (a black alpha or gain-map area, an
  encoder's zero padding), so they are decoded a second time over a buffer that holds another,
  non-zero picture: blocks the decoder wrote come out identical, blocks it never wrote keep the
  other picture. Only those count. The decoder is deterministic, so a legitimate file can never
  differ between the two decodes.
- a Samsung motion photo's clip (an MP4 inside a top-level `mpvd` box) or an MP4 appended after
  the HEIF boxes: every packet's NAL units, every packet decoded with the same error detection,
  and the same coverage proof (decoded frames are held, so each comes out of a fresh buffer).

Not caught by design: damage that still decodes to a complete, well-formed picture (a single bit
flip or random bytes often do: measured 30-75 % and 70-100 % caught); only the copy's checksum
proves those.

Items coded with something FFmpeg's HEVC decoder cannot check (AV1 in AVIF, JPEG, ...) make the
file "unsupported" (unless damage is found elsewhere): libheif here has no AV1 decoder either,
and a file we cannot read is not proven damaged.
"""

from __future__ import annotations

import functools
import io
import re
from dataclasses import dataclass, field
from fractions import Fraction

import av
import av.logging
import numpy as np
import pillow_heif

from ingest.decode import DAMAGED, OK, UNSUPPORTED, check, outcome
from ingest.decode.isobmff import (
    Heif,
    Item,
    StructureError,
    item_ranges,
    iter_boxes,
    parse_grid,
    parse_heif,
    parse_hvcc,
    parse_ispe,
    top_level_boxes,
)
from ingest.decode.other import ImageDecode

# Item types whose data is HEVC-coded pixels (ISO/IEC 23008-12: hvc1 image items).
HEVC_ITEM_TYPES = frozenset({"hvc1"})
# Coded image items FFmpeg's HEVC path cannot check; their presence makes a clean file
# "unsupported", never "damaged".
OTHER_CODECS = {"av01": "AV1", "avc1": "H.264", "jpeg": "JPEG", "j2k1": "JPEG 2000",
                "vvc1": "H.266/VVC", "unci": "uncompressed", "hvt1": "HEVC tile tracks",
                "evc1": "EVC"}
# All of FFmpeg's checks; 'explode' stops at the first error instead of concealing it.
ERR_DETECT = "crccheck+bitstream+buffer+explode+careful"
# HEVC's smallest CTB is 16x16 and CTBs are aligned, so an undecoded CTB covers whole blocks.
_BLOCK = 16
_FORBIDDEN_IN_NAL = re.compile(b"\x00\x00[\x00\x01\x02]")
_MAX_PROBLEMS = 3


def heif_decoder_name() -> str:
    return (f"pillow-heif {pillow_heif.__version__} (libheif {pillow_heif.libheif_version()})"
            f" + FFmpeg {av.ffmpeg_version_info} HEVC (PyAV {av.__version__})")


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


def motion_photo_clip(data: bytes) -> tuple[int, int] | None:
    """(offset, length) of a motion photo's video inside a HEIF file, or None.

    Samsung wraps the MP4 in a top-level `mpvd` box (its `sefd` trailer names it
    "MotionPhoto_Data"); Google appends the MP4's own boxes after the HEIF boxes, so a second
    top-level `ftyp` starts it.
    """
    top, _ = top_level_boxes(data)
    for box in top:
        if box.type == "mpvd":
            return box.body, box.end - box.body
    later = [b for b in top[1:] if b.type == "ftyp"]
    if later:
        return later[0].start, top[-1].end - later[0].start
    return None


@dataclass(slots=True)
class _Findings:
    structure: list[str] = field(default_factory=list)
    nals: list[str] = field(default_factory=list)
    decode: list[str] = field(default_factory=list)
    coverage: list[str] = field(default_factory=list)
    clip: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    items: int = 0
    nal_count: int = 0
    clip_detail: str = ""

    @property
    def damaged(self) -> bool:
        return bool(self.structure or self.nals or self.decode or self.coverage or self.clip)


def verify_heif(data: bytes) -> ImageDecode:
    name = heif_decoder_name()
    checks, unsupported = strict_checks(data)
    try:
        pixels, icc, sizes, error = _libheif_decode(data)
    except MemoryError:
        if all(c["ok"] for c in checks):
            raise  # nothing found: out of memory says nothing about the file
        pixels, icc, sizes, error = None, None, [], None  # the strict findings decide
    if error is None:
        checks.append(check("decode", True,
                            f"libheif: {len(sizes)} image(s) decode: {', '.join(sizes)}"))
    elif not unsupported and not all(c["ok"] for c in checks):
        checks.append(check("decode", False, f"libheif: {error}"))
    else:
        # The strict check decides: when it found nothing (or a codec is missing there too),
        # libheif failing alone is no proof of damage (short of memory, it fails the same way)
        # and the file is unverified with libheif's reason.
        unsupported.append(f"libheif could not decode it here: {error}")
    broken = any(not c["ok"] for c in checks)
    verdict = DAMAGED if broken else (UNSUPPORTED if unsupported else OK)
    err = "; ".join(unsupported) if verdict == UNSUPPORTED else None
    result = outcome(name, checks, verdict=verdict, error=err)
    # libheif applies the container's rotation/mirror boxes while decoding, so the pixels are
    # upright already; EXIF Orientation inside HEIF is informational only. Pixels of a damaged
    # file come from libheif's concealing decode: fine for a preview marked partial.
    return ImageDecode(result, pixels, 1, icc, partial=verdict == DAMAGED and pixels is not None)


def _libheif_decode(data: bytes):
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
        if _out_of_memory(exc):
            raise MemoryError(f"libheif: {exc}") from exc  # run_task: unverified, not damaged
        return None, None, [], f"{type(exc).__name__}: {exc}"
    return pixels, icc if isinstance(icc, bytes) else None, sizes, None


def _out_of_memory(exc: Exception) -> bool:
    """libheif reports a failed allocation as "Memory allocation error", and a std::bad_alloc
    from libde265 as "unexpected C++ exception": neither says anything about the file."""
    text = str(exc).lower()
    return "memory allocation" in text or "unexpected c++ exception" in text


def _strict_checks(found: _Findings) -> list[dict]:
    def summary(problems: list[str], good: str) -> tuple[bool, str]:
        if not problems:
            return True, good
        more = f" (+{len(problems) - _MAX_PROBLEMS} more)" if len(problems) > _MAX_PROBLEMS else ""
        return False, "; ".join(problems[:_MAX_PROBLEMS]) + more

    checks = [check("structure", *summary(
        found.structure, f"boxes parse; {found.items} HEVC item(s); every item's data inside "
                         "the file"
        + (f"; {'; '.join(found.notes)}" if found.notes else "")))]
    if found.damaged:  # later checks stopped at the damage: list only what failed
        return [c for c in checks if not c["ok"]] + [
            check(name, False, summary(problems, "")[1]) for name, problems in
            (("nal units", found.nals), ("hevc decode", found.decode),
             ("coverage", found.coverage), ("motion photo", found.clip)) if problems]
    if not found.items:
        return checks
    checks.append(check("nal units", *summary(
        found.nals, f"{found.nal_count} NAL units tile their items exactly, no start-code "
                    "emulation")))
    checks.append(check("hevc decode", *summary(
        found.decode, f"FFmpeg (err_detect={ERR_DETECT}): {found.items} item(s), one picture "
                      "each, no error")))
    checks.append(check("coverage", *summary(
        found.coverage, "every CTU of every item decoded")))
    if found.clip or found.clip_detail:
        checks.append(check("motion photo", *summary(found.clip, found.clip_detail)))
    return checks


def strict_checks(data: bytes) -> tuple[list[dict], list[str]]:
    """The checks that decide the verdict (everything but libheif: boxes, NAL units, FFmpeg
    decode, CTU coverage, motion-photo clip) and the reasons the file cannot be fully checked.

    Any failed check means damaged. The checks stop at the first damaged item: one is proof
    enough, and a damaged card would otherwise cost a full decode of every broken file.
    """
    found = _collect(data)
    return _strict_checks(found), found.unsupported


def _collect(data: bytes) -> _Findings:
    found = _Findings()
    try:
        heif = parse_heif(data)
    except StructureError as exc:
        found.structure.append(str(exc))
        return found
    try:
        top, trailer = top_level_boxes(data)
        clip = motion_photo_clip(data)
    except StructureError as exc:  # cannot happen after parse_heif, but stay total
        found.structure.append(str(exc))
        return found
    if trailer is not None:
        found.notes.append(f"{len(data) - trailer} foreign bytes after the last box")
    hevc = [i for i in heif.items.values() if i.type in HEVC_ITEM_TYPES]
    other = sorted({OTHER_CODECS[i.type] for i in heif.items.values() if i.type in OTHER_CODECS})
    if other:
        found.unsupported.append(f"image items coded as {', '.join(other)}: the strict check "
                                 "decodes HEVC only")
    _check_grids(heif, found)
    for item in heif.items.values():
        if item.extents and item.type not in HEVC_ITEM_TYPES:
            try:  # Exif, XMP, grids, other codecs: truncation shows here too
                item_ranges(heif, item)
            except StructureError as exc:
                found.structure.append(str(exc))
    found.items = len(hevc)
    # Every item's boxes and NAL units first: a zero fill or truncation needs no decode.
    streams = [(f"item {item.id}", _annex_b(heif, item, found)) for item in hevc]
    for label, stream in streams:
        if found.damaged:
            break
        _decode_item(label, stream, found)
    if clip is not None and not found.damaged:
        _check_clip(data[clip[0]:clip[0] + clip[1]], found)
    if not hevc and not other:
        found.structure.append("no coded image item")
    return found


def _check_grids(heif: Heif, found: _Findings) -> None:
    dimg = heif.refs.get("dimg", {})
    for item in heif.items.values():
        if item.type != "grid":
            continue
        try:
            (start, length), *_ = item_ranges(heif, item)
            rows, cols, width, height = parse_grid(heif.data, start, start + length)
        except (StructureError, ValueError) as exc:
            found.structure.append(f"grid {item.id}: {exc}")
            continue
        tiles = dimg.get(item.id, [])
        if len(tiles) != rows * cols:
            found.structure.append(f"grid {item.id} is {rows}x{cols} but references "
                                   f"{len(tiles)} tiles")
            continue
        missing = [t for t in tiles if t not in heif.items]
        if missing:
            found.structure.append(f"grid {item.id} references missing items {missing[:3]}")
            continue
        size = _ispe(heif, heif.items[tiles[0]])
        if size and (size[0] * cols < width or size[1] * rows < height):
            found.structure.append(f"grid {item.id}: {cols}x{rows} tiles of {size[0]}x{size[1]}"
                                   f" cannot cover {width}x{height}")


def _ispe(heif: Heif, item: Item) -> tuple[int, int] | None:
    for kind, box, _ in item.properties:
        if kind == "ispe":
            return parse_ispe(heif.data, box)
    return None


def _annex_b(heif: Heif, item: Item, found: _Findings) -> bytes | None:
    """The item as an Annex B stream (its hvcC parameter sets first), or None when its boxes
    or NAL units are broken (recorded in `found`). Cheap: no decoding."""
    label = f"item {item.id}"
    try:
        ranges = item_ranges(heif, item)
        config = next((parse_hvcc(heif.data, box) for kind, box, _ in item.properties
                       if kind == "hvcC"), None)
    except StructureError as exc:
        found.structure.append(f"{label}: {exc}")
        return None
    if config is None:
        found.structure.append(f"{label}: hvc1 item without an hvcC property")
        return None
    payload = b"".join(heif.data[o:o + n] for o, n in ranges)
    nals, problem = split_nals(payload, config.length_size)
    for ps in config.parameter_sets:
        problem = problem or nal_problem(ps)
    found.nal_count += len(nals)
    if problem:
        found.nals.append(f"{label}: {problem}")
        return None
    if not any((nal[0] >> 1) & 0x3F < 32 for nal in nals):
        found.nals.append(f"{label}: no coded slice")
        return None
    return b"".join(b"\0\0\0\1" + nal for nal in [*config.parameter_sets, *nals])


def _decode_item(label: str, stream: bytes, found: _Findings) -> None:
    result = _decode_still(stream)
    if result.missing:
        found.unsupported.append(f"{label}: {result.missing}")
        return
    if result.error:
        found.decode.append(f"{label}: {result.error}")
        return
    # No comparison with ispe: Canon's R5 writes a 320x214 ispe for a 320x320 thumbnail.
    zero = _zero_blocks(result.frame)
    if zero.any():
        unwritten = _unwritten_blocks(stream, result, zero)
        if unwritten is None:
            found.notes.append(f"{label}: {int(zero.sum())} all-zero block(s) could not be "
                               "re-decoded over another picture")
        elif unwritten:
            found.coverage.append(f"{label}: {unwritten} of {zero.size} {_BLOCK}x{_BLOCK} "
                                  "blocks never decoded (the slice data ends early)")


def nal_problem(nal: bytes) -> str | None:
    """Why a NAL unit (without prefix) cannot be what an encoder wrote, or None."""
    if len(nal) < 2:
        return f"{len(nal)}-byte NAL unit"
    if nal[0] & 0x80:
        return "forbidden_zero_bit set"
    if nal[1] & 7 == 0:
        return "nuh_temporal_id_plus1 is 0"
    hit = _FORBIDDEN_IN_NAL.search(nal)
    if hit:
        return (f"bytes {nal[hit.start():hit.start() + 3].hex(' ')} inside a NAL unit "
                f"(at {hit.start()} of {len(nal)}): start-code emulation an encoder never writes")
    # H.265 also says a NAL unit never ends in 0x00; not checked, because a writer that pads a
    # NAL unit with a zero byte or two would be a false alarm, and three zeros are caught above.
    return None


def split_nals(payload: bytes, length_size: int) -> tuple[list[bytes], str | None]:
    """Length-prefixed NAL units -> (units, first problem). The prefixes must tile exactly."""
    nals = []
    pos, end = 0, len(payload)
    while pos < end:
        if end - pos < length_size:
            return nals, f"{end - pos} stray bytes after the last NAL unit"
        size = int.from_bytes(payload[pos:pos + length_size], "big")
        pos += length_size
        if size == 0 or pos + size > end:
            return nals, (f"NAL length {size} at {pos - length_size} does not fit the "
                          f"{end}-byte item data")
        nal = payload[pos:pos + size]
        problem = nal_problem(nal)
        if problem:
            return nals, f"NAL unit {len(nals)}: {problem}"
        nals.append(nal)
        pos += size
    return nals, None


@dataclass(slots=True)
class _Decoded:
    frame: av.VideoFrame | None = None
    error: str | None = None
    missing: str | None = None  # FFmpeg lacks a feature the stream uses: unsupported
    coded: tuple[int, int] = (0, 0)
    planes: list[np.ndarray] = field(default_factory=list)


def _decode_still(stream: bytes, prime: bytes | None = None) -> _Decoded:
    """One coded picture through FFmpeg. With `prime`, that picture is decoded first and
    dropped, so the item's buffer comes out of the pool holding the prime's pixels."""
    ctx = av.CodecContext.create("hevc", "r")
    ctx.options = {"err_detect": ERR_DETECT}
    ctx.thread_count = 1  # verification runs in parallel worker processes already
    if prime is not None:
        try:
            list(ctx.decode(av.Packet(prime)))
            list(ctx.decode(None))
            ctx.flush_buffers()
        except MemoryError:
            raise  # av.error.MemoryError too: out of memory says nothing about the file
        except av.FFmpegError as exc:
            return _Decoded(error=f"prime picture: {exc}")
    frames = []
    with _ffmpeg_log() as logs:
        try:
            frames += ctx.decode(av.Packet(stream))
            frames += ctx.decode(None)
        except MemoryError:
            raise
        except av.error.PatchWelcomeError as exc:  # a feature FFmpeg lacks: not damage
            return _Decoded(missing=f"FFmpeg cannot decode this HEVC stream: {exc}")
        except av.FFmpegError as exc:
            return _Decoded(error=f"FFmpeg: {exc}")
    errors = _errors(logs)
    if errors:
        return _Decoded(error=f"FFmpeg: {errors}")
    if len(frames) != 1:
        return _Decoded(error=f"{len(frames)} pictures decoded, expected one")
    if frames[0].is_corrupt:
        return _Decoded(error="FFmpeg marks the picture corrupt")
    return _Decoded(frames[0], coded=(ctx.coded_width, ctx.coded_height), planes=_planes(frames[0]))


class _ffmpeg_log:
    """FFmpeg's own messages, which PyAV drops unless a level is set."""

    def __enter__(self):
        self.level = av.logging.get_level()
        av.logging.set_level(av.logging.WARNING)
        self.capture = av.logging.Capture(local=False)
        return self.capture.__enter__()

    def __exit__(self, *exc):
        self.capture.__exit__(*exc)
        av.logging.set_level(self.level)
        return False


def _errors(logs) -> str:
    errors = [msg.strip() for level, _, msg in logs if level <= av.logging.ERROR]
    return "; ".join(dict.fromkeys(errors))[:300]


def _planes(frame: av.VideoFrame) -> list[np.ndarray]:
    dtype = np.uint16 if frame.format.components[0].bits > 8 else np.uint8
    out = []
    for plane in frame.planes:
        row = plane.line_size // np.dtype(dtype).itemsize
        out.append(np.frombuffer(plane, dtype=dtype).reshape(plane.height, row)[:, :plane.width])
    return out


def _block_any(plane: np.ndarray, by: int, bx: int) -> np.ndarray:
    """Per by x bx block (the last row/column of blocks may be cut): any non-zero sample?"""
    nonzero = plane != 0
    rows = np.logical_or.reduceat(nonzero, np.arange(0, plane.shape[0], by), axis=0)
    return np.logical_or.reduceat(rows, np.arange(0, plane.shape[1], bx), axis=1)


def _per_block(planes: list[np.ndarray]) -> np.ndarray:
    """Per 16x16 luma block: is any sample, of luma or of the chroma under it, non-zero?"""
    luma = planes[0]
    out = _block_any(luma, _BLOCK, _BLOCK)
    for plane in planes[1:]:
        sy = max(1, round(luma.shape[0] / plane.shape[0]))
        sx = max(1, round(luma.shape[1] / plane.shape[1]))
        part = _block_any(plane, max(1, _BLOCK // sy), max(1, _BLOCK // sx))
        out |= part[:out.shape[0], :out.shape[1]]
    return out


def _zero_blocks(frame: av.VideoFrame) -> np.ndarray:
    """True where a 16x16 block (and its chroma) is exactly zero in every plane."""
    planes = _planes(frame)
    if planes[0][::_BLOCK, ::_BLOCK].all():  # every block's first sample is non-zero
        return np.zeros((-(-frame.height // _BLOCK), -(-frame.width // _BLOCK)), bool)
    zero = ~_block_any(planes[0], _BLOCK, _BLOCK)
    if not zero.any():
        return zero
    return ~_per_block(planes)


def _unwritten_blocks(stream: bytes, first: _Decoded, zero: np.ndarray) -> int | None:
    """How many of the all-zero blocks the decoder never wrote, or None if that cannot be
    proven here (no encoder for a background picture of this format)."""
    frame = first.frame
    prime = _prime(first.coded[0], first.coded[1], frame.format.name)
    if prime is None:
        return None
    again = _decode_still(stream, prime)
    if again.error or again.frame.format.name != frame.format.name:
        return None
    differs = _per_block([a != b for a, b in zip(first.planes, again.planes, strict=True)])
    return int((zero & differs).sum())


# x265 takes about 2 s for a flat 12 MP picture; grids of small tiles (every phone and camera
# sample here) stay far below this. Above it, zero blocks are noted, not judged.
_MAX_PRIME_PIXELS = 40_000_000


@functools.lru_cache(maxsize=4)
def _prime(width: int, height: int, pix_fmt: str) -> bytes | None:
    """An HEVC picture of one flat, non-zero value with the given coded size and format.

    Decoding it first fills FFmpeg's buffer pool with non-zero pixels (cached: a card's photos
    share a few sizes)."""
    if width * height > _MAX_PRIME_PIXELS:
        return None
    try:
        if pix_fmt not in {f.name for f in av.Codec("libx265", "w").video_formats}:
            return None
        enc = av.CodecContext.create("libx265", "w")
        enc.width, enc.height, enc.pix_fmt = width, height, pix_fmt
        enc.time_base = Fraction(1, 25)
        enc.options = {"preset": "ultrafast",
                       "x265-params": "log-level=none:pools=none:frame-threads=1:"
                                      "rc-lookahead=0:bframes=0:keyint=1:lookahead-slices=0"}
        frame = av.VideoFrame(width, height, pix_fmt)
        value = 77 << max(0, frame.format.components[0].bits - 8)
        dtype = np.uint16 if frame.format.components[0].bits > 8 else np.uint8
        for plane in frame.planes:
            plane.update(np.full(plane.buffer_size // np.dtype(dtype).itemsize, value,
                                 dtype).tobytes())
        packets = list(enc.encode(frame)) + list(enc.encode(None))
    except (av.FFmpegError, ValueError):
        return None
    return b"".join(bytes(p) for p in packets) or None


def _check_clip(clip: bytes, found: _Findings) -> None:
    """A motion photo's video: every packet demuxed and decoded, NAL units and CTU coverage
    checked like the stills (held frames come out of fresh, zeroed buffers)."""
    try:
        top = iter_boxes(clip, 0, len(clip))
    except StructureError as exc:
        found.clip.append(f"clip boxes: {exc}")
        return
    if "moov" not in {b.type for b in top}:
        found.clip.append("clip has no moov box")
        return
    parts = []
    with _ffmpeg_log() as logs:
        try:
            with av.open(io.BytesIO(clip)) as container:
                streams = [s for s in container.streams if s.type in ("video", "audio")]
                packets: dict[int, list[bytes]] = {s.index: [] for s in streams}
                for packet in container.demux(streams):
                    if packet.size:
                        packets[packet.stream.index].append(bytes(packet))
                for stream in streams:
                    parts.append(_check_track(stream, packets[stream.index], found))
                    if found.clip:
                        return
        except MemoryError:
            raise
        except (av.FFmpegError, ValueError, OSError, EOFError) as exc:
            found.clip.append(f"clip: {type(exc).__name__}: {exc}")
            return
    errors = _errors(logs)
    if errors:
        found.clip.append(f"clip: FFmpeg: {errors}")
    found.clip_detail = f"{len(clip)}-byte clip: {', '.join(parts)}, no error"


def _check_track(stream, packets: list[bytes], found: _Findings) -> str:
    """Decode every packet of one track in a context of our own, so that the same packets can
    be decoded again to prove which blocks the decoder never wrote."""
    codec = stream.codec_context
    label = f"{stream.type} {codec.name}"
    length = _length_size(stream)
    for index, packet in enumerate(packets):
        if length:
            _, problem = split_nals(packet, length)
            if problem:
                found.clip.append(f"{label} packet {index}: {problem}")
                return label
    ctx = _video_context(codec)
    held, budget, zero_frames = [], _HOLD_BYTES, {}
    count = 0
    for frame in _decode_all(ctx, packets):
        if stream.type == "video" and budget > 0:
            held.append(frame)  # a held buffer is never reused, so undecoded blocks stay zero
            budget -= sum(plane.buffer_size for plane in frame.planes)
            zero = _zero_blocks(frame)
            if zero.any():
                zero_frames[count] = zero
        count += 1
    expected = stream.frames
    if expected and count != expected and stream.type == "video":
        found.clip.append(f"{label}: {count} of {expected} frames decoded")
    if zero_frames:
        unwritten = _unwritten_in_clip(codec, packets, held, zero_frames)
        if unwritten:
            found.clip.append(f"{label}: frame {unwritten[0]}: {unwritten[1]} {_BLOCK}x{_BLOCK} "
                              "blocks never decoded (the slice data ends early)")
    return f"{label} {count} frames" + ("" if budget > 0 else " (coverage: first frames only)")


# The most decoded video a clip check holds in memory for the coverage check.
_HOLD_BYTES = 512 * 2**20


def _video_context(codec) -> av.CodecContext:
    ctx = av.CodecContext.create(codec.name, "r")
    if codec.extradata:
        ctx.extradata = codec.extradata
    ctx.options = {"err_detect": ERR_DETECT}
    ctx.thread_count = 1
    return ctx


def _decode_all(ctx: av.CodecContext, packets: list[bytes]):
    for packet in packets:
        yield from ctx.decode(av.Packet(packet))
    yield from ctx.decode(None)


def _unwritten_in_clip(codec, packets, held, zero_frames) -> tuple[int, int] | None:
    """(frame, blocks) of the first frame whose all-zero blocks the decoder never wrote.

    The clip is decoded twice more in one context: the first pass fills the buffer pool with
    real pictures, the second reuses those buffers, so unwritten blocks no longer come out zero.
    """
    ctx = _video_context(codec)
    for _ in _decode_all(ctx, packets):
        pass
    ctx.flush_buffers()
    for index, frame in enumerate(_decode_all(ctx, packets)):
        zero = zero_frames.get(index)
        if zero is None:
            continue
        differs = _per_block([a != b for a, b in
                              zip(_planes(held[index]), _planes(frame), strict=True)])
        unwritten = int((zero & differs).sum())
        if unwritten:
            return index, unwritten
    return None


def _length_size(stream) -> int | None:
    """NAL length-prefix size of an MP4 H.264/HEVC stream (None: not length-prefixed)."""
    extra = stream.codec_context.extradata or b""
    name = stream.codec_context.name
    if name == "hevc" and len(extra) >= 23 and extra[0] == 1:
        return (extra[21] & 3) + 1
    if name == "h264" and len(extra) >= 7 and extra[0] == 1:
        return (extra[4] & 3) + 1
    return None
