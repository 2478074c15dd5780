"""Write a realistic, deterministic camera card: two cameras, RAW+JPEG, sidecars, clutter,
colliding names and (optionally) one file that is already damaged on the card. `ingest demo`
offloads one, and the tests build theirs with it.

The DNGs are written by a small TIFF writer here rather than by tifffile: tifffile refuses the
ExifIFD pointer tag (34665) and needs imagecodecs even to store an already-encoded JPEG preview,
and both are what real DNGs carry and what the preview and metadata code has to handle.
"""

from __future__ import annotations

import io
import math
import os
import struct
import time
import wave
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image, TiffImagePlugin


@dataclass
class CardManifest:
    """What `build_card` wrote. Paths are relative to `root`, POSIX separators."""

    root: Path
    files: list[str] = field(default_factory=list)  # every non-clutter file
    images: list[str] = field(default_factory=list)  # DNG and JPEG
    sidecars: list[str] = field(default_factory=list)  # XMP and WAV
    videos: list[str] = field(default_factory=list)
    clutter: list[str] = field(default_factory=list)  # OS files a scanner must skip
    damaged: list[str] = field(default_factory=list)  # damaged on the card itself
    collisions: list[tuple[str, ...]] = field(default_factory=list)  # same basename, same day
    pairs: list[tuple[str, str]] = field(default_factory=list)  # (raw, jpeg) of one frame
    captured: dict[str, datetime] = field(default_factory=dict)  # capture time per file
    jpeg_previews: list[str] = field(default_factory=list)  # DNGs that embed a JPEG preview
    damage_notes: dict[str, str] = field(default_factory=dict)  # what was done to each


@dataclass(frozen=True)
class _Camera:
    make: str
    model: str
    unique_model: str
    raw_size: tuple[int, int]  # (height, width) of the CFA data
    jpeg_size: tuple[int, int]
    black: int
    white: int
    cfa: tuple[int, int, int, int]  # 0=R 1=G 2=B, row-major over the 2x2 repeat
    neutral: tuple[float, float, float]  # AsShotNeutral: raw response to a grey
    color_matrix: tuple[float, ...]  # XYZ -> camera, D65


_CAMERA_A = _Camera(
    make="NIKON CORPORATION", model="NIKON Z 6_2", unique_model="Nikon Z 6_2 (synthetic)",
    raw_size=(512, 768), jpeg_size=(800, 1200), black=1008, white=15520, cfa=(0, 1, 1, 2),
    neutral=(0.48, 1.0, 0.66),
    color_matrix=(0.92, -0.33, -0.07, -0.47, 1.26, 0.24, -0.06, 0.14, 0.71),
)
_CAMERA_B = _Camera(
    make="Canon", model="Canon EOS R6", unique_model="Canon EOS R6 (synthetic)",
    raw_size=(480, 720), jpeg_size=(720, 1080), black=256, white=4095, cfa=(2, 1, 1, 0),
    neutral=(0.52, 1.0, 0.61),
    color_matrix=(0.84, -0.18, -0.09, -0.45, 1.24, 0.23, -0.08, 0.15, 0.68),
)


@dataclass(frozen=True)
class _Frame:
    camera: _Camera
    folder: str
    number: int
    when: datetime
    kind: str  # jpg | dng | pair | video
    orientation: int = 1
    preview: bool = False  # DNG embeds a JPEG preview
    sidecars: tuple[str, ...] = ()
    video_ext: str = ".MOV"


# One block of frames per camera folder; `scale` repeats the blocks. Numbers are positions in
# a block of 8, so a skipped number is a frame deleted in camera.
_BLOCK_A1 = [  # 100NIKON, day 1
    dict(kind="jpg"),
    dict(kind="dng", preview=True, sidecars=(".XMP",)),
    dict(kind="pair"),
    dict(kind="jpg", orientation=6, sidecars=(".WAV",)),
    dict(kind="dng", sidecars=(".XMP",)),
    dict(kind="video"),
    dict(kind="jpg", orientation=8),
    dict(kind="pair", preview=True, sidecars=(".XMP",)),
]
_BLOCK_A2 = [  # 101NIKON, day 2: numbering continues from 100NIKON
    dict(kind="jpg"),
    dict(kind="dng", preview=True),
    dict(kind="pair", orientation=6, sidecars=(".WAV",)),  # portrait RAW+JPEG
    dict(kind="jpg", orientation=6),
    dict(kind="jpg"),  # the one damaged on the card (last of the first block)
]
# 100CANON, day 1. Camera B's owner set its file prefix to DSC_ (both bodies allow it), so its
# numbers collide with camera A's same-day files: a by-date layout maps both to one name.
_BLOCK_B = {1: dict(kind="jpg"), 2: dict(kind="dng", preview=True), 3: dict(kind="pair"),
            4: dict(kind="jpg", orientation=8), 6: dict(kind="video", video_ext=".MP4")}

_DAY1 = datetime(2024, 5, 11)
_DAY2 = datetime(2024, 5, 12)


def _plan(scale: int) -> list[_Frame]:
    frames = []
    n_a1 = len(_BLOCK_A1) * scale
    for i in range(n_a1):
        spec = _BLOCK_A1[i % len(_BLOCK_A1)]
        when = _DAY1 + timedelta(hours=10, minutes=2, seconds=47 * i)
        frames.append(_Frame(_CAMERA_A, "DCIM/100NIKON", i + 1, when, **spec))
    for i in range(len(_BLOCK_A2) * scale):
        spec = _BLOCK_A2[i % len(_BLOCK_A2)]
        when = _DAY2 + timedelta(hours=9, minutes=15, seconds=53 * i)
        frames.append(_Frame(_CAMERA_A, "DCIM/101NIKON", n_a1 + i + 1, when, **spec))
    for rep in range(scale):
        for pos, spec in _BLOCK_B.items():
            number = rep * 8 + pos
            when = _DAY1 + timedelta(hours=14, minutes=20, seconds=61 * number)
            frames.append(_Frame(_CAMERA_B, "DCIM/100CANON", number, when, **spec))
    return frames


def build_card(root: Path, *, seed: int = 0, damaged: bool = True, scale: int = 1) -> CardManifest:
    """Write the card under `root` (created if needed) and describe it."""
    if scale < 1:
        raise ValueError("scale must be >= 1")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    m = CardManifest(root=root)
    frames = _plan(scale)
    damaged_rel = f"DCIM/101NIKON/DSC_{len(_BLOCK_A1) * scale + len(_BLOCK_A2):04d}.JPG"

    for index, fr in enumerate(frames):
        rng = np.random.default_rng([seed, index])
        scene = _scene_params(rng)
        stem = f"{fr.folder}/DSC_{fr.number:04d}"
        written: list[tuple[str, bytes]] = []
        if fr.kind in ("dng", "pair"):
            data = _dng_bytes(fr, scene, rng)
            written.append((stem + ".DNG", data))
            m.images.append(stem + ".DNG")
            if fr.preview:
                m.jpeg_previews.append(stem + ".DNG")
        if fr.kind in ("jpg", "pair"):
            written.append((stem + ".JPG", _jpeg_bytes(fr, scene, rng)))
            m.images.append(stem + ".JPG")
        if fr.kind == "pair":
            m.pairs.append((stem + ".DNG", stem + ".JPG"))
        if fr.kind == "video":
            written.append((stem + fr.video_ext, _video_bytes(fr, rng)))
            m.videos.append(stem + fr.video_ext)
        for ext in fr.sidecars:
            body = _xmp_bytes(fr) if ext == ".XMP" else _wav_bytes(rng)
            written.append((stem + ext, body))
            m.sidecars.append(stem + ext)
        for rel, body in written:
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
            if damaged and rel == damaged_rel:
                m.damage_notes[rel] = _damage_scan(path, body)
                m.damaged.append(rel)
            _set_mtime(path, fr.when)
            m.files.append(rel)
            m.captured[rel] = fr.when

    m.clutter = _write_clutter(root, rng=np.random.default_rng([seed, 10_000]))
    m.collisions = _collisions(m)
    return m


def _set_mtime(path: Path, when: datetime) -> None:
    # Cameras write local wall-clock time into FAT, so the mtime is the capture time read as
    # local time: an mtime fallback then agrees with EXIF.
    ts = time.mktime(when.timetuple())
    os.utime(path, (ts, ts))


def _collisions(m: CardManifest) -> list[tuple[str, ...]]:
    groups: dict[tuple[str, object], list[str]] = {}
    for rel in m.files:
        groups.setdefault((rel.rsplit("/", 1)[-1], m.captured[rel].date()), []).append(rel)
    return [tuple(g) for g in groups.values() if len(g) > 1]


# --- the damage planted ----------------------------------------------------------------------

def _damage_scan(path: Path, body: bytes) -> str:
    # A blank 64 KiB run in the middle of the entropy data: Pillow still decodes it (grey
    # smear), strict libjpeg-turbo reports corrupt data. Smaller scans lose a quarter.
    start, end = jpeg_scan_range(body)
    length = min(64 * 1024, (end - start) // 4)
    offset = start + (end - start - length) // 2
    return fill_block(path, offset, length, 0x00)


# JPEG markers that carry no length field: SOI, EOI, TEM and the restart markers.
_STANDALONE = {0xD8, 0xD9, 0x01, *range(0xD0, 0xD8)}


def fill_block(path: Path | str, offset: int, length: int, byte: int = 0x00) -> str:
    """Overwrite `length` bytes at `offset` with `byte`, like a sector that reads back blank."""
    path = Path(path)
    size = path.stat().st_size
    if offset < 0 or length <= 0 or offset + length > size:
        raise ValueError(f"block {offset}+{length} outside {path.name} ({size} bytes)")
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(bytes([byte]) * length)
    return f"filled {length} bytes of {path.name} at offset {offset} with 0x{byte:02X}"


def jpeg_scan_range(data: bytes) -> tuple[int, int]:
    """Return (start, end): from the first byte after the first SOS header to the EOI marker.

    Walks the marker segments instead of searching for FFD9, because bytes appended after
    EOI (phones do this) and table payloads can contain that pair.
    """
    if data[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG: no SOI marker")
    pos = 2
    start = None
    n = len(data)
    while pos < n:
        if data[pos] != 0xFF:
            raise ValueError(f"expected a marker at offset {pos}")
        while pos < n and data[pos] == 0xFF:  # fill bytes before a marker
            pos += 1
        if pos >= n:
            break
        marker = data[pos]
        pos += 1
        if marker == 0xD9:
            if start is None:
                raise ValueError("EOI before any SOS")
            return start, pos - 2
        if marker in _STANDALONE:
            continue
        length = int.from_bytes(data[pos:pos + 2], "big")
        seg_end = pos + length
        if marker != 0xDA:
            pos = seg_end
            continue
        if start is None:
            start = seg_end
        # Entropy-coded data: FF is followed by a stuffed 00 or a restart marker inside a scan.
        pos = seg_end
        while pos < n - 1:
            if data[pos] == 0xFF and data[pos + 1] != 0x00 and not 0xD0 <= data[pos + 1] <= 0xD7:
                break
            pos += 1
    raise ValueError("no EOI marker: the JPEG is truncated")


# --- synthetic scenes -------------------------------------------------------------------------

def _scene_params(rng: np.random.Generator) -> dict:
    return {
        "sky_top": rng.uniform([0.05, 0.12, 0.3], [0.2, 0.3, 0.6]),
        "sky_low": rng.uniform([0.4, 0.45, 0.5], [0.8, 0.8, 0.85]),
        "ground": rng.uniform([0.05, 0.08, 0.02], [0.3, 0.35, 0.15]),
        "horizon": rng.uniform(0.45, 0.7),
        "wave": (rng.uniform(1, 4), rng.uniform(0, 2 * math.pi), rng.uniform(0.01, 0.05)),
        "sun": (rng.uniform(0.1, 1.4), rng.uniform(0.08, 0.3), rng.uniform(0.03, 0.06)),
        "rects": [(*rng.uniform([0, 0.3], [1.4, 0.8]), *rng.uniform([0.05, 0.1], [0.3, 0.5]),
                   rng.uniform(0.02, 0.7, 3)) for _ in range(int(rng.integers(3, 7)))],
        "discs": [(*rng.uniform([0, 0.4], [1.5, 1.0]), rng.uniform(0.03, 0.12),
                   rng.uniform(0.05, 0.9, 3)) for _ in range(int(rng.integers(2, 6)))],
    }


def _render(p: dict, h: int, w: int) -> np.ndarray:
    """Linear-light RGB (h, w, 3) float32; 1.0 is just clipped, the sun is well above."""
    # Coordinates scale with the height so shapes stay round at any aspect ratio and the
    # same scene renders at RAW and JPEG sizes alike.
    y = (np.arange(h, dtype=np.float32) + 0.5) / h
    x = (np.arange(w, dtype=np.float32) + 0.5) / h
    freq, phase, amp = p["wave"]
    horizon = (p["horizon"] + amp * np.sin(x * freq * 2 * math.pi + phase)).astype(np.float32)
    t = np.minimum(y / p["horizon"], 1)[:, None, None]
    sky = (p["sky_top"] * (1 - t) + p["sky_low"] * t).astype(np.float32)  # (h, 1, 3)
    depth = np.clip((y[:, None] - horizon) / (1 - horizon), 0, 1)[..., None]
    ground = (p["ground"].astype(np.float32) * (0.6 + 0.8 * depth)).astype(np.float32)
    img = np.where((y[:, None] < horizon)[..., None], sky, ground)
    for cx, top, rw, rh, col in p["rects"]:
        rows = _span(y, top, top + rh)
        cols = _span(x, cx - rw / 2, cx + rw / 2)
        shade = 0.7 + 0.3 * (x[cols] - cx + rw / 2) / rw
        img[rows, cols] = (shade[:, None] * col).astype(np.float32)
    for cx, cy, r, col in p["discs"]:
        _disc(img, x, y, cx, cy, r, lambda d2, r=r, col=col: col * (1 - 0.5 * d2 / (r * r)))
    sx, sy, sr = p["sun"]
    _disc(img, x, y, sx, sy, sr, lambda d2: np.full(3, 4.0))
    return img


def _span(coord: np.ndarray, lo: float, hi: float) -> slice:
    return slice(int(np.searchsorted(coord, lo)), int(np.searchsorted(coord, hi)))


def _disc(img: np.ndarray, x: np.ndarray, y: np.ndarray, cx: float, cy: float, r: float,
          colour) -> None:
    rows, cols = _span(y, cy - r, cy + r), _span(x, cx - r, cx + r)
    d2 = (x[cols][None, :] - cx) ** 2 + (y[rows][:, None] - cy) ** 2
    inside = d2 < r * r
    sub = img[rows, cols]
    sub[inside] = colour(d2[inside][:, None])


# A 12-bit lookup table instead of a float power per sample keeps the card fast to build.
_GAMMA = (np.linspace(0, 1, 4096, dtype=np.float64) ** (1 / 2.2) * 255 + 0.5).astype(np.float32)


def _encode(lin: np.ndarray) -> np.ndarray:
    """Linear light -> display-referred 0..255 (float32, not yet rounded)."""
    return _GAMMA[(np.clip(lin, 0, 1) * 4095).astype(np.uint16)]


# --- JPEG -------------------------------------------------------------------------------------

def _exif_time(when: datetime) -> str:
    return when.strftime("%Y:%m:%d %H:%M:%S")


def _jpeg_bytes(fr: _Frame, scene: dict, rng: np.random.Generator) -> bytes:
    h, w = fr.camera.jpeg_size
    lin = _render(scene, h, w)
    # Luma grain in the encoded domain: visible texture, JPEG sizes closer to a camera's.
    grain = rng.standard_normal((h, w, 1), dtype=np.float32) * np.float32(4.0)
    rgb = _encode(lin)
    rgb += grain
    rgb = np.clip(rgb, 0, 255, out=rgb).astype(np.uint8)
    exif = Image.Exif()
    exif[0x010F] = fr.camera.make
    exif[0x0110] = fr.camera.model
    exif[0x0112] = fr.orientation
    exif[0x0132] = _exif_time(fr.when)
    sub = exif.get_ifd(0x8769)
    sub[0x9003] = _exif_time(fr.when)  # DateTimeOriginal
    sub[0x9004] = _exif_time(fr.when)  # DateTimeDigitized
    sub[0x829A] = TiffImagePlugin.IFDRational(1, 250)  # ExposureTime
    sub[0x829D] = TiffImagePlugin.IFDRational(56, 10)  # FNumber
    sub[0x8827] = 400  # ISO
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=90, exif=exif.tobytes())
    return buf.getvalue()


# --- DNG --------------------------------------------------------------------------------------

def _dng_bytes(fr: _Frame, scene: dict, rng: np.random.Generator) -> bytes:
    cam = fr.camera
    h, w = cam.raw_size
    lin = _render(scene, h, w)
    # Mosaic: each photosite keeps one channel, scaled by the sensor's response to grey
    # (AsShotNeutral), so a neutral scene needs the declared white balance.
    resp = np.asarray(cam.neutral, np.float32)
    plane = np.empty((h, w), np.float32)
    for k, colour in enumerate(cam.cfa):
        r, c = divmod(k, 2)
        plane[r::2, c::2] = lin[r::2, c::2, colour] * resp[colour]
    span = cam.white - cam.black
    signal = plane * span * 0.85
    # Shot noise grows with the signal, read noise sets a floor.
    noise = rng.standard_normal(signal.shape, dtype=np.float32) * np.sqrt(signal * 0.5 + 16)
    raw = np.clip(cam.black + signal + noise, cam.black, cam.white)
    raw = np.round(raw).astype("<u2")

    ph, pw = h // 4, w // 4
    small = _encode(_render(scene, ph, pw)).astype(np.uint8)

    cfa_ifd = _Ifd({
        254: _long(0), 256: _long(w), 257: _long(h), 258: _short(16), 259: _short(1),
        262: _short(32803), 277: _short(1), 278: _long(128), 284: _short(1),
        33421: _short(2, 2), 33422: _byte(*cam.cfa), 50710: _byte(0, 1, 2), 50711: _short(1),
        50713: _short(1, 1), 50714: _long(cam.black), 50717: _long(cam.white),
        50719: _long(8, 8), 50720: _long(w - 16, h - 16),  # DefaultCrop origin / size
    }, strips=[raw[r:r + 128].tobytes() for r in range(0, h, 128)])
    subifds = [cfa_ifd]
    if fr.preview:
        jh, jw = round(640 * h / w), 640
        prev = _encode(_render(scene, jh, jw)).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(prev).save(buf, "JPEG", quality=85)
        subifds.append(_Ifd({
            254: _long(1), 256: _long(jw), 257: _long(jh), 258: _short(8, 8, 8), 259: _short(7),
            262: _short(6), 277: _short(3), 278: _long(jh), 284: _short(1),
        }, strips=[buf.getvalue()]))

    when = _exif_time(fr.when)
    exif_ifd = _Ifd({
        33434: _rational((1, 250)), 33437: _rational((56, 10)), 34855: _short(400),
        36864: (7, b"0231", 4), 36867: _ascii(when), 36868: _ascii(when),
        37386: _rational((50, 1)),
    })
    ifd0 = _Ifd({
        254: _long(1), 256: _long(pw), 257: _long(ph), 258: _short(8, 8, 8), 259: _short(1),
        262: _short(2), 271: _ascii(cam.make), 272: _ascii(cam.model),
        274: _short(fr.orientation), 277: _short(3), 278: _long(ph), 284: _short(1),
        306: _ascii(when),
        50706: _byte(1, 4, 0, 0), 50707: _byte(1, 1, 0, 0), 50708: _ascii(cam.unique_model),
        50721: _srational(*[(round(v * 10000), 10000) for v in cam.color_matrix]),
        50728: _rational(*[(round(v * 10000), 10000) for v in cam.neutral]),
        50778: _short(21),  # CalibrationIlluminant1 = D65
    }, strips=[small.tobytes()], children={330: subifds, 34665: [exif_ifd]})
    return _write_tiff(ifd0)


@dataclass
class _Ifd:
    tags: dict[int, tuple[int, bytes, int]]  # tag -> (TIFF type, little-endian payload, count)
    strips: list[bytes] = field(default_factory=list)
    children: dict[int, list[_Ifd]] = field(default_factory=dict)  # pointer tag -> IFDs


def _short(*v: int):
    return 3, struct.pack(f"<{len(v)}H", *v), len(v)


def _long(*v: int):
    return 4, struct.pack(f"<{len(v)}I", *v), len(v)


def _byte(*v: int):
    return 1, bytes(v), len(v)


def _ascii(s: str):
    b = s.encode("ascii") + b"\0"
    return 2, b, len(b)


def _rational(*pairs: tuple[int, int]):
    return 5, b"".join(struct.pack("<II", n, d) for n, d in pairs), len(pairs)


def _srational(*pairs: tuple[int, int]):
    return 10, b"".join(struct.pack("<ii", n, d) for n, d in pairs), len(pairs)


def _write_tiff(ifd0: _Ifd) -> bytes:
    """Little-endian classic TIFF laid out as cameras do: every IFD first, image data after.

    A truncated file then keeps its directories and fails at unpack, not at open.
    """
    order: list[_Ifd] = []

    def walk(ifd: _Ifd) -> None:
        order.append(ifd)
        for kids in ifd.children.values():
            for kid in kids:
                walk(kid)

    walk(ifd0)
    ifd_at: dict[int, int] = {}
    strip_at: dict[int, list[int]] = {}

    def tags_of(ifd: _Ifd) -> dict[int, tuple[int, bytes, int]]:
        tags = dict(ifd.tags)
        for tag, kids in ifd.children.items():
            tags[tag] = _long(*[ifd_at.get(id(k), 0) for k in kids])
        if ifd.strips:
            tags[273] = _long(*strip_at.get(id(ifd), [0] * len(ifd.strips)))
            tags[279] = _long(*[len(s) for s in ifd.strips])
        return tags

    # Sizes do not depend on offsets, so one pass with placeholder offsets fixes the layout.
    pos = 8
    for ifd in order:
        ifd_at[id(ifd)] = pos
        pos += len(_ifd_bytes(tags_of(ifd), 0))
    for ifd in order:
        strip_at[id(ifd)] = []
        for s in ifd.strips:
            pos += pos % 2
            strip_at[id(ifd)].append(pos)
            pos += len(s)

    buf = bytearray(b"II*\x00" + struct.pack("<I", ifd_at[id(ifd0)]))
    for ifd in order:
        buf += _ifd_bytes(tags_of(ifd), len(buf))
    for ifd in order:
        for s, at in zip(ifd.strips, strip_at[id(ifd)], strict=True):
            buf += bytes(at - len(buf))
            buf += s
    return bytes(buf)


def _ifd_bytes(tags: dict[int, tuple[int, bytes, int]], start: int) -> bytes:
    """One IFD at `start`, values longer than 4 bytes right after it; even length."""
    overflow_at = start + 2 + 12 * len(tags) + 4
    head = bytearray(struct.pack("<H", len(tags)))
    over = bytearray()
    for tag in sorted(tags):
        typ, payload, count = tags[tag]
        if len(payload) <= 4:
            head += struct.pack("<HHI", tag, typ, count) + payload.ljust(4, b"\0")
        else:
            head += struct.pack("<HHII", tag, typ, count, overflow_at + len(over))
            over += payload
            if len(over) % 2:
                over.append(0)
    return bytes(head + struct.pack("<I", 0) + over)


# --- sidecars, video, clutter -----------------------------------------------------------------

def _xmp_bytes(fr: _Frame) -> bytes:
    stamp = fr.when.strftime("%Y-%m-%dT%H:%M:%S")
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        '  <rdf:Description rdf:about=""\n'
        '    xmlns:xmp="http://ns.adobe.com/xap/1.0/"\n'
        '    xmlns:tiff="http://ns.adobe.com/tiff/1.0/"\n'
        f'    xmp:Rating="{fr.number % 5 + 1}" xmp:CreateDate="{stamp}"\n'
        f'    tiff:Make="{fr.camera.make}" tiff:Model="{fr.camera.model}"/>\n'
        ' </rdf:RDF>\n'
        '</x:xmpmeta>\n'
        '<?xpacket end="w"?>\n'
    ).encode()


def _wav_bytes(rng: np.random.Generator) -> bytes:
    rate = 8000
    t = np.arange(rate, dtype=np.float64) / rate  # one second of voice memo
    tone = np.sin(2 * math.pi * rng.uniform(180, 320) * t) * 6000
    pcm = (tone + rng.normal(0, 300, t.shape)).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def _box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", 8 + len(body)) + kind + body


def _video_bytes(fr: _Frame, rng: np.random.Generator) -> bytes:
    # ISO-BMFF boxes (ftyp, free, mdat) so type sniffers see a video; nothing decodes it.
    brand = b"qt  " if fr.video_ext == ".MOV" else b"isom"
    ftyp = _box(b"ftyp", brand + struct.pack(">I", 0x200) + brand + b"mp41")
    payload = rng.integers(0, 256, 300 * 1024, dtype=np.uint8).tobytes()
    return ftyp + _box(b"wide", b"") + _box(b"mdat", payload)


def _write_clutter(root: Path, rng: np.random.Generator) -> list[str]:
    apple_double = b"\x00\x05\x16\x07\x00\x02\x00\x00" + b"Mac OS X        " + bytes(4072)
    items = {
        ".Trashes/._.Trashes": apple_double,
        ".Trashes/501/._DSC_0099.JPG": apple_double,
        ".Spotlight-V100/Store-V2/A1B2C3D4/store.db": rng.integers(
            0, 256, 8192, dtype=np.uint8).tobytes(),
        ".Spotlight-V100/VolumeConfiguration.plist": b'<?xml version="1.0"?><plist/>\n',
        "DCIM/100NIKON/._DSC_0001.JPG": apple_double,
        "System Volume Information/IndexerVolumeGuid":
            "{3F2504E0-4F89-11D3-9A0C-0305E82C3301}".encode("utf-16-le"),
        "System Volume Information/WPSettings.dat": bytes(12),
    }
    for rel, body in items.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    return list(items)
