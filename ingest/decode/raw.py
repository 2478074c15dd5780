"""RAW verification with rawpy/LibRaw: force the unpack, then check what came out.

LibRaw's exceptions alone are not enough (see shared/notes/observed-damage.md):
- `LibRawFileUnsupportedError` is raised both for formats this build lacks and for files whose
  header is destroyed or cut short, so the file's own structure decides between the two;
- some damaged or stub files unpack without any error into zeros or constant rows, so the
  sensor data and the file size are checked against what the header claims.

What this decoder cannot check is "unsupported", never "damaged": a camera LibRaw does not list
(exact match, decode/cameras.py), a codec this build lacks, an image past LibRaw's memory limit
in a file that can hold it, a machine out of memory, a headerless raw of a size LibRaw does not
know. "Damaged" needs proof from the file itself.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rawpy
import simplejpeg

from ingest.decode import DAMAGED, NO_MEMORY, UNSUPPORTED, check, outcome
from ingest.decode.cameras import camera_support
from ingest.decode.jpeg import scale_args
from ingest.decode.lj92 import is_dct
from ingest.decode.sensor import sensor_checks

LIBRAW_VERSION = ".".join(str(n) for n in rawpy.libraw_version)


def decoder_name() -> str:
    return f"rawpy {rawpy.__version__} / LibRaw {LIBRAW_VERSION}"


# ---------------------------------------------------------------------------------------------
# Container sniffing: which format do the first bytes claim?

# (offset, magic, container). Every container named here is one LibRaw reads.
_MAGICS: tuple[tuple[int, bytes, str], ...] = (
    (0, b"II*\x00", "tiff"),
    (0, b"MM\x00*", "tiff"),
    (0, b"IIU\x00", "rw2"),
    (0, b"IIRO", "orf"),
    (0, b"IIRS", "orf"),
    (0, b"MMOR", "orf"),
    (6, b"HEAPCCDR", "crw"),
    (4, b"ftypcrx ", "cr3"),
    (0, b"FUJIFILMCCD-RAW", "raf"),
    (0, b"\x00MRM", "mrw"),
    (0, b"FOVb", "x3f"),
    (0, b"qktk", "qtk"),
    (0, b"qktn", "qtk"),
    (0, b"ARRI", "arri"),
    (0, b"\xff\xd8\xff", "jpeg"),
)

# DNG compression codes and the rawpy build flag that provides each optional codec.
# Codes with no flag are never in LibRaw 0.22 builds.
_DNG_CODECS_MISSING_ALWAYS = {9: "GoPro VC-5 (GPR)", 52546: "JPEG XL"}
_DNG_CODECS_BY_FLAG = {34892: ("DNGLOSSYCODEC", "lossy JPEG"), 8: ("DNGDEFLATECODEC", "Deflate")}


def sniff_container(data: bytes) -> str | None:
    for offset, magic, name in _MAGICS:
        if data[offset:offset + len(magic)] == magic:
            return name
    return None


# ---------------------------------------------------------------------------------------------
# A minimal TIFF walk: enough to know the camera, the raw image's compression and where its
# data claims to lie. Bounded (IFD count, entry count) so a damaged header cannot loop.

_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
_MAX_IFDS = 64
_MAX_ENTRIES = 4096
_WANTED = {254, 256, 257, 258, 259, 262, 271, 272, 273, 277, 279, 322, 324, 325, 330, 513, 514,
           34665, 50706}
_CFA, _LINEAR_RAW = 32803, 34892


@dataclass(slots=True)
class Ifd:
    offset: int
    subtype: int | None = None
    width: int = 0
    height: int = 0
    bits: int = 0
    samples: int = 1
    compression: int | None = None
    photometric: int | None = None
    data_bytes: int = 0
    data_end: int = 0
    tile_width: int = 0
    # (offset, byte count) of each strip or tile of the image data, in file order of the tags
    ranges: list[tuple[int, int]] = field(default_factory=list)
    dct: bool = False  # compression 7 holding lossy DCT tiles (Blackmagic CinemaDNG), not LJ92


@dataclass(slots=True)
class TiffInfo:
    make: str = ""
    model: str = ""
    dng: bool = False
    ifds: list[Ifd] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def raw_ifd(self) -> Ifd | None:
        """The full-resolution raw image: CFA/LinearRaw in DNG, else the largest main image."""
        main = [i for i in self.ifds if i.subtype in (None, 0) and i.width and i.height]
        raw = [i for i in main if i.photometric in (_CFA, _LINEAR_RAW)]
        pool = raw or main
        return max(pool, key=lambda i: i.width * i.height) if pool else None


def read_tiff(data: bytes) -> TiffInfo:
    info = TiffInfo()
    size = len(data)
    e = "<" if data[:2] == b"II" else ">"
    (first,) = struct.unpack_from(e + "I", data, 4)
    queue = [first]
    seen: set[int] = set()
    while queue and len(seen) < _MAX_IFDS:
        off = queue.pop(0)
        if off == 0 or off in seen:
            continue
        seen.add(off)
        if off + 2 > size:
            info.problems.append(f"an IFD is claimed at byte {off}, past the end of the file")
            continue
        (n,) = struct.unpack_from(e + "H", data, off)
        if n == 0 or n > _MAX_ENTRIES or off + 2 + 12 * n + 4 > size:
            info.problems.append(f"the IFD at byte {off} ({n} entries) runs past the end of the file")
            continue
        tags = _read_entries(data, e, off, n, info)
        ifd = _ifd_from_tags(off, tags, size, info)
        if ifd.compression == 7 and ifd.ranges:
            first, count = ifd.ranges[0]
            ifd.dct = is_dct(data[first:first + min(count, 4096)])
        info.ifds.append(ifd)
        if not info.make:
            info.make = _text(tags.get(271))
        if not info.model:
            info.model = _text(tags.get(272))
        info.dng = info.dng or 50706 in tags
        queue.extend(_ints(tags.get(330)))
        exif = _ints(tags.get(34665))
        if exif and exif[0] >= size:
            info.problems.append(f"the Exif IFD is claimed at byte {exif[0]}, past the end of the file")
        (nxt,) = struct.unpack_from(e + "I", data, off + 2 + 12 * n)
        if nxt:
            queue.append(nxt)
    return info


def _read_entries(data: bytes, e: str, off: int, n: int, info: TiffInfo,
                  wanted: frozenset[int] | set[int] = _WANTED) -> dict[int, object]:
    tags: dict[int, object] = {}
    for k in range(n):
        pos = off + 2 + 12 * k
        tag, typ, count = struct.unpack_from(e + "HHI", data, pos)
        if tag not in wanted or typ not in _TYPE_SIZES:
            continue
        length = _TYPE_SIZES[typ] * count
        if length <= 4:
            start = pos + 8
        else:
            (start,) = struct.unpack_from(e + "I", data, pos + 8)
            if start + length > len(data):
                info.problems.append(f"TIFF tag {tag} points at byte {start}, past the end of the file")
                continue
        raw = data[start:start + length]
        if typ == 2:
            tags[tag] = raw
        elif typ == 3:
            tags[tag] = struct.unpack(f"{e}{count}H", raw)
        elif typ in (4, 13):
            tags[tag] = struct.unpack(f"{e}{count}I", raw)
        elif typ in (1, 7):
            tags[tag] = tuple(raw)
    return tags


def _ints(value: object) -> list[int]:
    return list(value) if isinstance(value, tuple) else []


def _text(value: object) -> str:
    return value.split(b"\x00")[0].decode("latin-1").strip() if isinstance(value, bytes) else ""


def _first(value: object, default: int | None) -> int | None:
    ints = _ints(value)
    return ints[0] if ints else default


def _ifd_from_tags(off: int, tags: dict[int, object], size: int, info: TiffInfo) -> Ifd:
    ifd = Ifd(offset=off, subtype=_first(tags.get(254), None), width=_first(tags.get(256), 0) or 0,
              height=_first(tags.get(257), 0) or 0, bits=_first(tags.get(258), 0) or 0,
              samples=_first(tags.get(277), 1) or 1, compression=_first(tags.get(259), None),
              photometric=_first(tags.get(262), None),
              tile_width=_first(tags.get(322), 0) if 324 in tags else 0)
    for off_tag, cnt_tag in ((273, 279), (324, 325), (513, 514)):
        offsets, counts = _ints(tags.get(off_tag)), _ints(tags.get(cnt_tag))
        if not offsets or len(offsets) != len(counts):
            continue
        ifd.data_bytes += sum(counts)
        if off_tag != 513:  # 513/514: a JPEG preview, not the image's strips or tiles
            ifd.ranges.extend(zip(offsets, counts, strict=True))
        ifd.data_end = max(ifd.data_end, max(o + c for o, c in zip(offsets, counts, strict=True)))
    if ifd.data_end > size:
        info.problems.append(
            f"image data of the {ifd.width}x{ifd.height} image at IFD {off} ends at byte "
            f"{ifd.data_end}, but the file has {size} bytes")
    return ifd


def _cr3_tiff(data: bytes) -> TiffInfo | None:
    """CR3 keeps its Make/Model in a TIFF inside the CMT1 box near the start."""
    pos = data.find(b"CMT1", 0, 1 << 16)
    if pos < 0:
        return None
    body = data[pos + 4:pos + 4 + (1 << 16)]
    if sniff_container(body) != "tiff":
        return None
    try:
        return read_tiff(body)
    except struct.error:
        return None


# ---------------------------------------------------------------------------------------------
# Telling "this LibRaw cannot read the format" from "the file is broken".

@dataclass(slots=True)
class Structure:
    container: str | None
    tiff: TiffInfo | None
    size: int
    ext: str
    head: bytes
    ciff_tail: bool = False  # no header, but the file ends as a Canon CRW does (_ciff_tail)


def _ciff_tail(data: bytes) -> bool:
    """A Canon CRW (CIFF) keeps its root directory at the end: the last 4 bytes give its offset
    from the heap start (byte 26 in every CRW), and there a count of 10-byte entries runs up to
    exactly those 4 bytes. That survives a destroyed header; a headerless sensor dump (CHDK
    writes .CRW too) matches it only by a one-in-billions chance."""
    if len(data) < 32:
        return False
    (offset,) = struct.unpack_from("<I", data, len(data) - 4)
    pos = 26 + offset
    if pos + 2 > len(data):
        return False
    (count,) = struct.unpack_from("<H", data, pos)
    return count > 0 and pos + 2 + 10 * count + 4 == len(data)


def read_structure(data: bytes, path: str) -> Structure:
    container = sniff_container(data)
    tiff = None
    try:
        if container in ("tiff", "rw2", "orf"):  # RW2 and ORF differ from TIFF in magic only
            tiff = read_tiff(data)
        elif container == "cr3":
            tiff = _cr3_tiff(data)
        elif container == "raf":
            # RAF names the camera at byte 28, before its embedded TIFF.
            tiff = TiffInfo(make="Fujifilm", model=_text(bytes(data[28:60])))
    except struct.error:
        tiff = TiffInfo(problems=["the TIFF header is cut short"])
    ext = Path(path).suffix.lower()
    ciff = container is None and ext == ".crw" and _ciff_tail(data)
    return Structure(container, tiff, len(data), ext, bytes(data[:8]), ciff)


def classify_unsupported(st: Structure, stage: str) -> tuple[str, str]:
    """Verdict and reason for a LibRawFileUnsupportedError, from the file's own structure."""
    lib = f"LibRaw {LIBRAW_VERSION}"
    if st.container is None:
        if st.ext not in RAW_EXTENSIONS:
            return UNSUPPORTED, (f"neither the extension '{st.ext}' nor the first bytes "
                                 f"({st.head.hex()}) name a format {lib} reads")
        if st.ciff_tail:
            return DAMAGED, (f"a Canon CRW whose header is destroyed (its first bytes are "
                             f"{st.head.hex()}; its directory at the end is intact)")
        if st.ext in HEADERLESS_EXTENSIONS:
            return UNSUPPORTED, (f"no header {lib} recognises, and no camera it knows writes "
                                 f"headerless raws of {st.size} bytes (it knows those by exact "
                                 f"size); its checksum still proves the copy")
        return DAMAGED, (f"the file is named {st.ext} but its first bytes ({st.head.hex()}) are "
                         f"no RAW header {lib} knows: header destroyed")
    if st.container == "jpeg":
        return DAMAGED, f"a JPEG stream named {st.ext}: {lib} rejects it as a RAW file"
    if st.container != "tiff":
        # CRW, CR3, RAF, ... are LibRaw formats; a CRW cut short fails this way because its
        # directory sits at the end of the file. Only a camera LibRaw does not list (a body
        # newer than this LibRaw) makes such a file unsupported rather than damaged.
        named = st.tiff if st.tiff is not None and st.tiff.make else None
        if named is not None and camera_support(named.make, named.model)[0] is False:
            return UNSUPPORTED, (f"camera '{_camera_name(named)}' is not in {lib}'s camera "
                                 f"list ({st.container.upper()} file)")
        return DAMAGED, f"{lib} reads {st.container.upper()} files but rejected this one at {stage}"
    tiff = st.tiff or TiffInfo()
    if tiff.problems:
        return DAMAGED, "TIFF structure broken: " + "; ".join(tiff.problems[:3])
    raw_ifd = tiff.raw_ifd()
    if tiff.dng and raw_ifd is not None and raw_ifd.photometric not in (_CFA, _LINEAR_RAW):
        # The DNG specification names CFA and LinearRaw for raw images; a writer that stores a
        # monochrome frame as BlackIsZero makes a file LibRaw does not read, not a broken one.
        return UNSUPPORTED, (f"a DNG whose image is stored as PhotometricInterpretation "
                             f"{raw_ifd.photometric} (neither CFA nor LinearRaw), which {lib} "
                             f"does not read")
    if tiff.dng and raw_ifd is not None:
        missing = _missing_codec(raw_ifd.compression)
        if missing:
            note = camera_support(tiff.make, tiff.model)[1]
            note = f"; LibRaw lists the camera as '{note}'" if "not supported" in note else ""
            return UNSUPPORTED, (f"DNG compressed with {missing} (compression "
                                 f"{raw_ifd.compression}), which {lib} in rawpy "
                                 f"{rawpy.__version__} is built without{note}")
    camera = _camera_name(tiff)
    if not tiff.dng:
        known, entry = camera_support(tiff.make, tiff.model)
        if known is False:
            return UNSUPPORTED, f"camera '{camera or 'unnamed'}' is not in {lib}'s camera list"
        if known and "not supported" in entry.lower():
            return UNSUPPORTED, f"{lib} lists this camera as '{entry}'"
    if raw_ifd is None:
        return DAMAGED, f"the TIFF structure holds no raw image for '{camera or 'unnamed'}'"
    what = f"'{camera}'" if camera else "this DNG"
    codec = " and its compression" if tiff.dng else ""
    return DAMAGED, (f"{lib} supports {what}{codec}, yet rejected the file at {stage}: "
                     f"header or metadata damaged")


def _camera_name(tiff: TiffInfo | None) -> str:
    if tiff is None:
        return ""
    make, model = tiff.make, tiff.model
    if make and model.lower().startswith(make.split(" ")[0].lower()):
        return model
    return f"{make} {model}".strip()


def _missing_codec(compression: int | None) -> str | None:
    if compression in _DNG_CODECS_MISSING_ALWAYS:
        return _DNG_CODECS_MISSING_ALWAYS[compression]
    if compression in _DNG_CODECS_BY_FLAG:
        flag, name = _DNG_CODECS_BY_FLAG[compression]
        if not rawpy.flags.get(flag, False):
            return name
    return None


# Bits per pixel below which a file cannot hold the image it claims, whatever the codec.
MIN_BITS_PER_PIXEL = 0.05
# Lossless JPEG spends at least one bit per sample (shortest Huffman code); half for margin.
MIN_LJ92_BITS_PER_SAMPLE = 0.5


def _dng_raw_ifd(st: Structure) -> Ifd | None:
    """The raw IFD, trusted only in DNG: makers' TIFF-based formats may declare compression 1
    for compressed data (Olympus) or keep sizes in private tags (Panasonic)."""
    if st.container != "tiff" or st.tiff is None or not st.tiff.dng:
        return None
    return st.tiff.raw_ifd()


def size_check(st: Structure, raw_height: int, raw_width: int) -> dict:
    raw_ifd = _dng_raw_ifd(st)
    if raw_ifd is not None and raw_ifd.data_bytes and raw_ifd.width and raw_ifd.height:
        samples = raw_ifd.width * raw_ifd.height * max(1, raw_ifd.samples)
        if raw_ifd.compression == 1 and raw_ifd.bits:
            need = samples * raw_ifd.bits // 8
            if raw_ifd.data_bytes < need * 0.98:
                return check("data_size", False,
                             f"uncompressed raw data holds {raw_ifd.data_bytes} bytes; "
                             f"{raw_ifd.width}x{raw_ifd.height}x{raw_ifd.bits} bits needs {need}")
            return check("data_size", True, f"uncompressed, {raw_ifd.data_bytes} bytes as claimed")
        if raw_ifd.compression == 7 and raw_ifd.dct:
            bps = raw_ifd.data_bytes * 8 / samples
            if bps < MIN_LOSSY_JPEG_BITS_PER_SAMPLE:
                return check("data_size", False,
                             f"lossy JPEG raw data of {raw_ifd.data_bytes} bytes for {samples} "
                             f"samples ({bps:.4f} bits each; a DC and an end-of-block code per "
                             f"8x8 block need more)")
            return check("data_size", True, f"lossy JPEG, {bps:.2f} bits per sample")
        if raw_ifd.compression == 7:
            bps = raw_ifd.data_bytes * 8 / samples
            if bps < MIN_LJ92_BITS_PER_SAMPLE:
                return check("data_size", False,
                             f"lossless-JPEG raw data of {raw_ifd.data_bytes} bytes for "
                             f"{samples} samples ({bps:.3f} bits each; at least 1 is needed)")
            return check("data_size", True, f"lossless JPEG, {bps:.2f} bits per sample")
    pixels = max(1, raw_height * raw_width)
    bpp = st.size * 8 / pixels
    if bpp < MIN_BITS_PER_PIXEL:
        return check("data_size", False,
                     f"file of {st.size} bytes for {raw_width}x{raw_height} pixels "
                     f"({bpp:.4f} bits per pixel): too small to hold the image")
    return check("data_size", True, f"{bpp:.2f} bits per pixel in the file")


def structure_check(st: Structure) -> dict | None:
    """Raw image data claimed past the end of file (LibRaw reads zeros there silently)."""
    raw_ifd = _dng_raw_ifd(st)
    if raw_ifd is None or not raw_ifd.data_end:
        return None
    if raw_ifd.data_end > st.size:
        return check("structure", False,
                     f"raw image data is claimed up to byte {raw_ifd.data_end}, but the file "
                     f"has {st.size} bytes (truncated)")
    return check("structure", True, "raw image data lies inside the file")


# ---------------------------------------------------------------------------------------------
# The decode.

@dataclass(slots=True)
class RawDecode:
    result: dict
    raw: rawpy.RawPy | None = None        # open and unpacked, for the preview; caller closes
    thumb: np.ndarray | None = None       # embedded preview pixels (RGB), already decoded
    thumb_long_edge: int = 0              # the embedded preview's long edge as stored
    camera: str = ""
    data: bytes = b""                     # the file, for an embedded preview after a failure


def _thumb_check(raw: rawpy.RawPy, long_edge: int | None = None
                 ) -> tuple[dict, np.ndarray | None, int]:
    """(check, preview pixels, the preview's long edge as stored in the file)."""
    try:
        thumb = raw.extract_thumb()
    except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
        return check("embedded_preview", True, "none in the file"), None, 0
    except rawpy.LibRawError as exc:
        return check("embedded_preview", False, f"{type(exc).__name__}: {exc}"), None, 0
    if thumb.format == rawpy.ThumbFormat.JPEG:
        try:
            # Entropy decoding (where corruption shows) runs in full at any DCT scale, so one
            # strict decode at the preview's size is both the proof and the preview pixels.
            h, w = simplejpeg.decode_jpeg_header(thumb.data)[:2]
            pixels = simplejpeg.decode_jpeg(thumb.data, strict=True,
                                            **scale_args(w, h, long_edge))
        except ValueError as exc:
            return (check("embedded_preview", False, f"embedded JPEG does not decode: {exc}"),
                    None, 0)
        return check("embedded_preview", True, f"JPEG {w}x{h} decodes strictly"), pixels, \
            max(w, h)
    pixels = np.asarray(thumb.data)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        return (check("embedded_preview", True, f"bitmap of shape {pixels.shape} (not shown)"),
                None, 0)
    return (check("embedded_preview", True, f"bitmap {pixels.shape[1]}x{pixels.shape[0]}"),
            pixels, max(pixels.shape[:2]))


def verify_raw(path: str, data: bytes, preview_long_edge: int | None = None) -> RawDecode:
    """Open from memory (the bytes are read once by the caller), unpack, check."""
    name = decoder_name()
    st = read_structure(data, path)
    camera = _camera_name(st.tiff)
    raw = rawpy.RawPy()
    stage = "open"
    claimed = None
    try:
        raw.open_buffer(io.BytesIO(data))
        stage = "unpack"
        sizes = raw.sizes  # what LibRaw will size its buffer by; a failed unpack zeroes them
        claimed = (max(sizes.raw_width, sizes.width + sizes.left_margin),
                   max(sizes.raw_height, sizes.height + sizes.top_margin))
        image = raw.raw_image  # forces the unpack; open only identifies the file
    except rawpy.LibRawError as exc:
        raw.close()
        return RawDecode(_failure(name, exc, st, stage, data, claimed), camera=camera,
                         data=data)
    checks = [check("unpack", True,
                    f"{raw.raw_type.name} {'x'.join(map(str, image.shape))}, "
                    f"black {min(raw.black_level_per_channel)}, white {raw.white_level}")]
    structure = structure_check(st)
    if structure is not None:
        checks.append(structure)
    checks.append(size_check(st, raw.sizes.raw_height, raw.sizes.raw_width))
    checks += sensor_checks(raw, _dng_raw_ifd(st), data)
    thumb_check, thumb, thumb_long_edge = _thumb_check(raw, preview_long_edge)
    checks.append(thumb_check)
    return RawDecode(outcome(name, checks), raw=raw, thumb=thumb,
                     thumb_long_edge=thumb_long_edge, camera=camera)


def embedded_preview_only(data: bytes) -> tuple[np.ndarray, int] | None:
    """The camera's embedded preview of a file whose sensor data did not unpack.

    A failed unpack leaves the rawpy object unusable (LibRawOutOfOrderCallError), so a fresh
    one is opened over the same bytes in memory and only the thumbnail is unpacked. The JPEG
    is decoded leniently: this is for showing what survived, not for proof.
    """
    raw = rawpy.RawPy()
    try:
        raw.open_buffer(io.BytesIO(data))
        thumb = raw.extract_thumb()
        flip = int(raw.sizes.flip)
    except rawpy.LibRawError:
        return None
    finally:
        raw.close()
    if thumb.format == rawpy.ThumbFormat.JPEG:
        try:
            pixels = simplejpeg.decode_jpeg(thumb.data, strict=False)
        except ValueError:
            return None
    else:
        pixels = np.asarray(thumb.data)
        if pixels.ndim != 3 or pixels.shape[2] != 3:
            return None
    return pixels, flip


def _failure(name: str, exc: rawpy.LibRawError, st: Structure, stage: str, data: bytes,
             claimed: tuple[int, int] | None) -> dict:
    what = f"{type(exc).__name__} at {stage}: {_exc_text(exc)}"
    if isinstance(exc, rawpy.LibRawFileUnsupportedError | rawpy.LibRawNotImplementedError):
        verdict, reason = classify_unsupported(st, stage)
    elif isinstance(exc, rawpy.LibRawUnsufficientMemoryError | rawpy.LibRawMemPoolOverflowError):
        # LibRaw could not allocate. In rawpy's OpenMP build its allocator reports a failed
        # malloc as a pool overflow (libraw_alloc.h: with LIBRAW_USE_OPENMP a NULL pointer
        # leaves `ok` false and throws LIBRAW_EXCEPTION_MEMPOOL); seen under an address-space
        # limit. A real overflow (over 511 blocks alive at once) is known from no file.
        verdict, reason = UNSUPPORTED, NO_MEMORY
    elif isinstance(exc, rawpy.LibRawTooBigError):
        verdict, reason = classify_too_big(st, data, claimed)
    else:
        verdict, reason = DAMAGED, _fatal_reason(exc, st)
    checks = [check(stage, False, f"{what}; {reason}")]
    return outcome(name, checks, verdict=verdict, error=f"{what}; {reason}")


def _fatal_reason(exc: rawpy.LibRawError, st: Structure) -> str:
    if isinstance(exc, rawpy.LibRawIOError):
        return "the data ends before the image does (truncated or unreadable)"
    if isinstance(exc, rawpy.LibRawDataError):
        return "the compressed image data is corrupt"
    return "LibRaw could not decode the image data"


# ---------------------------------------------------------------------------------------------
# "Too big": LibRaw's memory limit, or a header that claims more than the file holds.

# LibRaw will not unpack an image whose buffer would pass rawparams.max_raw_memory_mb, which is
# LIBRAW_MAX_ALLOC_MB_DEFAULT (2048) in libraw_const.h; rawpy offers no way to raise it. unpack()
# sizes the buffer as width x (height + 8) x 2 bytes for CFA or one-colour data and x 8 bytes
# (four 16-bit planes) for the rest, so a 400 MP pixel-shift or panorama DNG in RGB passes it.
LIBRAW_MAX_ALLOC_MB = 2048
LIBRAW_MAX_SIDE = 65535  # unpack() calls a larger side corrupt
# The fewest bits each codec spends per sample, whatever the image: a file holding less cannot
# hold the image its header claims.
# - uncompressed: all of them (2 % margin for padding conventions);
# - lossless JPEG: one (its shortest Huffman code); half of that for margin (see above);
# - Deflate: zlib's best ratio is about 1032:1;
# - lossy (baseline) JPEG: two bits (a DC and an end-of-block code) per 8x8 block, chroma at no
#   less than 1/16 of luma: over 1/100 bit per sample; 1/128 for margin.
MIN_DEFLATE_RATIO = 1032
MIN_LOSSY_JPEG_BITS_PER_SAMPLE = 1 / 128
_LAYOUT_TAGS = frozenset({278, 284, 322, 323})  # RowsPerStrip, PlanarConfig, TileWidth/Length


def _layout(data: bytes, ifd: Ifd) -> dict[int, int]:
    e = "<" if data[:2] == b"II" else ">"
    try:
        (n,) = struct.unpack_from(e + "H", data, ifd.offset)
        tags = _read_entries(data, e, ifd.offset, n, TiffInfo(), _LAYOUT_TAGS)
    except struct.error:
        return {}
    return {tag: _first(tags.get(tag), 0) or 0 for tag in _LAYOUT_TAGS}


def _min_bits_per_sample(ifd: Ifd) -> float | None:
    bits = ifd.bits or 8
    if ifd.compression == 1:
        return bits * 0.98
    if ifd.compression == 7:
        return MIN_LOSSY_JPEG_BITS_PER_SAMPLE if ifd.dct else MIN_LJ92_BITS_PER_SAMPLE
    if ifd.compression in (8, 32946):
        return bits / MIN_DEFLATE_RATIO
    if ifd.compression == 34892:
        return MIN_LOSSY_JPEG_BITS_PER_SAMPLE
    return None  # JPEG XL, VC-5 and others: no floor known, so no proof from the size


def cannot_hold(st: Structure, data: bytes, width: int, height: int) -> str | None:
    """Why the file cannot hold the width x height image its header claims, or None when its
    structure shows no such thing. In DNG the raw IFD is checked tile by tile; elsewhere only
    the file's size against the pixel count (makers' TIFFs are not trusted, see _dng_raw_ifd)."""
    if not (0 < width <= LIBRAW_MAX_SIDE and 0 < height <= LIBRAW_MAX_SIDE):
        return f"a side outside the 1 to {LIBRAW_MAX_SIDE} pixels any camera writes"
    if st.tiff is not None and st.tiff.problems:
        return "; ".join(st.tiff.problems[:3])
    ifd = _dng_raw_ifd(st)
    if ifd is None:
        bpp = st.size * 8 / (width * height)
        if bpp < MIN_BITS_PER_PIXEL:
            return f"{st.size} bytes make {bpp:.4f} bits per pixel, too few for any codec"
        return None
    if not (0 < ifd.width <= LIBRAW_MAX_SIDE and 0 < ifd.height <= LIBRAW_MAX_SIDE):
        return f"its raw image claims {ifd.width}x{ifd.height} pixels"
    layout = _layout(data, ifd)
    planes = max(1, ifd.samples) if layout.get(284) == 2 else 1
    tile_w, tile_h = layout.get(322, 0), layout.get(323, 0)
    if tile_w and tile_h:
        expected = -(-ifd.width // tile_w) * -(-ifd.height // tile_h) * planes
        unit = f"{tile_w}x{tile_h} tiles"
    else:
        rows = min(layout.get(278) or ifd.height, ifd.height)
        expected = -(-ifd.height // rows) * planes
        unit = f"strips of {rows} rows"
    if len(ifd.ranges) != expected:
        return (f"a {ifd.width}x{ifd.height} image in {unit} has {expected} of them, "
                f"the file lists {len(ifd.ranges)}")
    floor = _min_bits_per_sample(ifd)
    samples = ifd.width * ifd.height * max(1, ifd.samples)
    if floor is not None and ifd.data_bytes * 8 < samples * floor:
        return (f"{ifd.data_bytes} bytes of image data for {samples} samples "
                f"(compression {ifd.compression} needs at least {floor:.4g} bits each)")
    return None


def classify_too_big(st: Structure, data: bytes, claimed: tuple[int, int] | None
                     ) -> tuple[str, str]:
    """LibRawTooBigError: damaged only when the file provably cannot hold what it claims.

    A legitimate image can pass LibRaw's memory limit (a 400 MP pixel-shift composite in RGB
    needs 3 GB); that file is complete and only this decoder cannot check it."""
    ifd = _dng_raw_ifd(st)
    width, height = claimed or ((ifd.width, ifd.height) if ifd is not None else (0, 0))
    if not (width and height):
        return UNSUPPORTED, ("LibRaw refused the file as too big to unpack and nothing in it "
                             "shows damage; its checksum still proves the copy")
    problem = cannot_hold(st, data, width, height)
    if problem:
        return DAMAGED, (f"the header claims a {width}x{height} image that the file cannot "
                         f"hold: {problem}")
    size = f"{width}x{height} ({width * height / 1e6:.0f} MP)"
    need = width * (height + 8) * 2 * (4 if ifd is not None and ifd.samples > 1 else 1)
    limit = LIBRAW_MAX_ALLOC_MB * 2**20
    intact = "the file itself looks intact and its checksum still proves the copy"
    if need > limit:
        return UNSUPPORTED, (f"the {size} image needs {need / 2**30:.1f} GB to unpack, more "
                             f"than the {LIBRAW_MAX_ALLOC_MB} MB LibRaw allows; {intact}")
    if ifd is None and 4 * need > limit:
        return UNSUPPORTED, (f"the {size} image may need up to {4 * need / 2**30:.1f} GB to "
                             f"unpack, more than the {LIBRAW_MAX_ALLOC_MB} MB LibRaw allows; "
                             f"{intact}")
    return UNSUPPORTED, f"LibRaw refused the {size} image as too big to unpack; {intact}"


def _exc_text(exc: BaseException) -> str:
    text = exc.args[0] if exc.args else str(exc)
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    return str(text)


# Extensions LibRaw reads (for the pipeline's sorting and for reasons in error texts).
RAW_EXTENSIONS = frozenset(
    ".3fr .ari .arw .bay .braw .cr2 .cr3 .crw .cs1 .dcr .dng .erf .fff .gpr .iiq .k25 .kdc "
    ".mdc .mef .mos .mrw .nef .nrw .orf .pef .ptx .pxn .qtk .raf .raw .rw2 .rwl .rwz .sr2 .srf "
    ".srw .sti .x3f".split())
# Extensions that headerless raws come with: sensor dumps LibRaw identifies only by their exact
# file size. CHDK (Canon PowerShot firmware add-on) names its dumps .CRW or .CR2 by default,
# Casio's are .BAY, Kodak's, Nokia's and the Pentax/Nikon "secret menu" ones .RAW. A file under
# one of these names with no header LibRaw knows is either such a dump of a size LibRaw has no
# entry for (a camera it does not know, or a cut or padded file) or a real CRW/CR2 whose header
# was destroyed. Only a CRW tells: its directory sits at the end (_ciff_tail). Otherwise nothing
# in the file says which, so it is not called damaged; the copy's checksum against the card
# still catches any difference from the card.
HEADERLESS_EXTENSIONS = frozenset({".raw", ".bay", ".crw", ".cr2"})
