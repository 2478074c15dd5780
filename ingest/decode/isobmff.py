"""Just enough ISO-BMFF / HEIF box parsing to find every coded image item's bytes.

Why our own parser: libheif hides where an item's coded data lies and conceals damage inside it,
so the strict HEVC check (decode/heif.py) needs the item list, the iloc extents, the hvcC
parameter sets and the grid references itself. Everything here is bounded: a box may not reach
past its parent, counts are capped, and any inconsistency raises `StructureError`, which the
caller reports as damage (a camera never writes a box that overruns its parent).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

# No real HEIF has anywhere near this many items, extents or properties; a corrupt count would
# otherwise make the parser loop for minutes.
_MAX_ENTRIES = 100_000
_MAX_DEPTH = 16


class StructureError(ValueError):
    """The boxes contradict themselves or the file (overrun, truncation, impossible count)."""


@dataclass(slots=True)
class Box:
    type: str
    start: int      # offset of the box header in the file
    body: int       # offset of the first byte after the header
    end: int        # offset one past the last byte of the box


@dataclass(slots=True)
class HvcConfig:
    length_size: int          # bytes per NAL length prefix in the item data (1, 2 or 4)
    parameter_sets: list[bytes]  # VPS/SPS/PPS/SEI NAL units, without prefixes
    bit_depth_luma: int
    chroma_format: int


@dataclass(slots=True)
class Item:
    id: int
    type: str
    name: str = ""
    hidden: bool = False
    construction_method: int = 0
    base_offset: int = 0
    extents: list[tuple[int, int]] = field(default_factory=list)  # (offset, length) as stored
    properties: list[tuple[str, Box, bool]] = field(default_factory=list)  # (type, box, essential)


@dataclass(slots=True)
class Heif:
    data: bytes
    top: list[Box]
    brands: list[str]
    primary: int | None
    items: dict[int, Item]
    refs: dict[str, dict[int, list[int]]]  # reference type -> from item -> [to items]
    idat: Box | None

    def item_bytes(self, item: Item) -> list[tuple[int, int]]:
        """The item's data as (file offset, length) ranges, checked to lie inside the file."""
        return item_ranges(self, item)


def _u(data: bytes, pos: int, size: int, end: int) -> int:
    if size == 0:
        return 0
    if pos + size > end:
        raise StructureError(f"field at {pos} runs past the end of its box ({end})")
    return int.from_bytes(data[pos:pos + size], "big")


def iter_boxes(data: bytes, start: int, end: int) -> list[Box]:
    boxes = []
    pos = start
    while pos < end:
        if end - pos < 8:
            raise StructureError(f"{end - pos} stray bytes at {pos} where a box header should be")
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            if end - pos < 16:
                raise StructureError(f"box at {pos} cut inside its 64-bit size")
            size = struct.unpack_from(">Q", data, pos + 8)[0]
            header = 16
        elif size == 0:
            size = end - pos
        if kind == b"uuid":
            header += 16
        if size < header:
            raise StructureError(f"box {kind!r} at {pos} claims {size} bytes, less than its header")
        if pos + size > end:
            raise StructureError(f"box {kind.decode('latin-1')!r} at {pos} ({size} bytes) runs "
                                 f"{pos + size - end} bytes past its parent / the file end")
        boxes.append(Box(kind.decode("latin-1"), pos, pos + header, pos + size))
        if len(boxes) > _MAX_ENTRIES:
            raise StructureError("absurd number of boxes")
        pos += size
    return boxes


def _children(data: bytes, box: Box, skip: int = 0) -> list[Box]:
    return iter_boxes(data, box.body + skip, box.end)


def _first(boxes: list[Box], kind: str) -> Box | None:
    return next((b for b in boxes if b.type == kind), None)


def _full(data: bytes, box: Box) -> tuple[int, int]:
    header = _u(data, box.body, 4, box.end)
    return header >> 24, header & 0xFFFFFF


def _count(n: int, what: str) -> int:
    if n > _MAX_ENTRIES:
        raise StructureError(f"absurd {what} count {n}")
    return n


def _printable(kind: bytes) -> bool:
    return all(0x20 <= c < 0x7F for c in kind)


def top_level_boxes(data: bytes) -> tuple[list[Box], int | None]:
    """The file's top-level boxes, and where foreign trailing bytes start (None: there are none).

    A top-level box that runs past the end of the file is truncation. Bytes that do not even
    look like a box header (size under 8, a non-text type) are a trailer some other tool
    appended; the image does not depend on them, so they are reported, not judged.
    """
    boxes = []
    pos, end = 0, len(data)
    while pos < end:
        if end - pos < 8:
            return boxes, pos
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1 and end - pos >= 16:
            size, header = struct.unpack_from(">Q", data, pos + 8)[0], 16
        elif size == 0:
            size = end - pos
        if size < header or not _printable(kind):
            return boxes, pos
        if pos + size > end:
            raise StructureError(f"top-level box {kind.decode('latin-1')!r} at {pos} needs "
                                 f"{size} bytes, but the file ends {pos + size - end} bytes "
                                 "early: truncated")
        boxes.append(Box(kind.decode("latin-1"), pos, pos + header, pos + size))
        if len(boxes) > _MAX_ENTRIES:
            raise StructureError("absurd number of boxes")
        pos += size
    return boxes, None


def parse_heif(data: bytes) -> Heif:
    top, _ = top_level_boxes(data)
    if not top or top[0].type != "ftyp" or top[0].end - top[0].body < 8:
        raise StructureError("no ftyp box at the start")
    ftyp = top[0]
    brands = [data[p:p + 4].decode("latin-1") for p in range(ftyp.body, ftyp.end - 3, 4)]
    del brands[1]  # minor_version is not a brand
    meta = _first(top, "meta")
    if meta is None:
        raise StructureError("no meta box")
    kids = _children(data, meta, 4)
    items: dict[int, Item] = {}
    _parse_iinf(data, _first(kids, "iinf"), items)
    _parse_iloc(data, _first(kids, "iloc"), items)
    _parse_iprp(data, _first(kids, "iprp"), items)
    pitm = _first(kids, "pitm")
    primary = None
    if pitm is not None:
        version, _ = _full(data, pitm)
        primary = _u(data, pitm.body + 4, 2 if version == 0 else 4, pitm.end)
        if primary not in items:
            raise StructureError(f"primary item {primary} is not in iinf")
    return Heif(data, top, brands, primary, items, _parse_iref(data, _first(kids, "iref")),
                _first(kids, "idat"))


def _cstring(data: bytes, pos: int, end: int) -> tuple[str, int]:
    stop = data.find(b"\0", pos, end)
    if stop < 0:
        return data[pos:end].decode("utf-8", "replace"), end
    return data[pos:stop].decode("utf-8", "replace"), stop + 1


def _parse_iinf(data: bytes, iinf: Box | None, items: dict[int, Item]) -> None:
    if iinf is None:
        raise StructureError("meta has no iinf box")
    version, _ = _full(data, iinf)
    size = 2 if version == 0 else 4
    count = _count(_u(data, iinf.body + 4, size, iinf.end), "item")
    entries = [b for b in iter_boxes(data, iinf.body + 4 + size, iinf.end) if b.type == "infe"]
    if len(entries) != count:
        raise StructureError(f"iinf says {count} items but holds {len(entries)} infe boxes")
    for infe in entries:
        version, flags = _full(data, infe)
        if version < 2:
            raise StructureError(f"infe version {version} (HEIF needs 2 or 3)")
        pos = infe.body + 4
        id_size = 2 if version == 2 else 4
        item_id = _u(data, pos, id_size, infe.end)
        pos += id_size + 2  # item_protection_index
        if pos + 4 > infe.end:
            raise StructureError("infe cut before its item type")
        kind = data[pos:pos + 4].decode("latin-1")
        name, _ = _cstring(data, pos + 4, infe.end)
        if item_id in items:
            raise StructureError(f"item {item_id} declared twice")
        items[item_id] = Item(item_id, kind, name, hidden=bool(flags & 1))


def _parse_iloc(data: bytes, iloc: Box | None, items: dict[int, Item]) -> None:
    if iloc is None:
        raise StructureError("meta has no iloc box")
    version, _ = _full(data, iloc)
    if version > 2:
        raise StructureError(f"iloc version {version}")
    end = iloc.end
    sizes = _u(data, iloc.body + 4, 2, end)
    offset_size, length_size = sizes >> 12, (sizes >> 8) & 15
    base_size, index_size = (sizes >> 4) & 15, sizes & 15
    if version == 0:
        index_size = 0
    for s in (offset_size, length_size, base_size, index_size):
        if s not in (0, 4, 8):
            raise StructureError(f"iloc field size {s} (must be 0, 4 or 8)")
    pos = iloc.body + 6
    count_size = 2 if version < 2 else 4
    count = _count(_u(data, pos, count_size, end), "iloc item")
    pos += count_size
    for _ in range(count):
        id_size = 2 if version < 2 else 4
        item_id = _u(data, pos, id_size, end)
        pos += id_size
        method = 0
        if version in (1, 2):
            method = _u(data, pos, 2, end) & 15
            pos += 2
        pos += 2  # data_reference_index (0: this file)
        base = _u(data, pos, base_size, end)
        pos += base_size
        n = _count(_u(data, pos, 2, end), "extent")
        pos += 2
        extents = []
        for _ in range(n):
            pos += index_size
            offset = _u(data, pos, offset_size, end)
            length = _u(data, pos + offset_size, length_size, end)
            pos += offset_size + length_size
            extents.append((offset, length))
        item = items.get(item_id)
        if item is None:
            raise StructureError(f"iloc locates item {item_id}, which iinf does not declare")
        item.construction_method, item.base_offset, item.extents = method, base, extents


def _parse_iprp(data: bytes, iprp: Box | None, items: dict[int, Item]) -> None:
    if iprp is None:
        return
    kids = _children(data, iprp)
    ipco = _first(kids, "ipco")
    props = _children(data, ipco) if ipco is not None else []
    for ipma in (b for b in kids if b.type == "ipma"):
        version, flags = _full(data, ipma)
        pos = ipma.body + 4
        count = _count(_u(data, pos, 4, ipma.end), "ipma entry")
        pos += 4
        for _ in range(count):
            id_size = 2 if version < 1 else 4
            item_id = _u(data, pos, id_size, ipma.end)
            pos += id_size
            n = _u(data, pos, 1, ipma.end)
            pos += 1
            for _ in range(n):
                if flags & 1:
                    value = _u(data, pos, 2, ipma.end)
                    pos += 2
                    essential, index = bool(value >> 15), value & 0x7FFF
                else:
                    value = _u(data, pos, 1, ipma.end)
                    pos += 1
                    essential, index = bool(value >> 7), value & 0x7F
                if index == 0:
                    continue  # "no property" by definition
                if index > len(props):
                    raise StructureError(f"item {item_id} uses property {index}, but ipco holds "
                                         f"{len(props)}")
                item = items.get(item_id)
                if item is None:
                    raise StructureError(f"ipma names item {item_id}, which iinf does not declare")
                box = props[index - 1]
                item.properties.append((box.type, box, essential))


def _parse_iref(data: bytes, iref: Box | None) -> dict[str, dict[int, list[int]]]:
    refs: dict[str, dict[int, list[int]]] = {}
    if iref is None:
        return refs
    version, _ = _full(data, iref)
    size = 2 if version == 0 else 4
    for ref in iter_boxes(data, iref.body + 4, iref.end):
        pos = ref.body
        source = _u(data, pos, size, ref.end)
        n = _u(data, pos + size, 2, ref.end)
        pos += size + 2
        targets = [_u(data, pos + i * size, size, ref.end) for i in range(n)]
        refs.setdefault(ref.type, {}).setdefault(source, []).extend(targets)
    return refs


def item_ranges(heif: Heif, item: Item) -> list[tuple[int, int]]:
    """(file offset, length) of each extent of an item, checked against the file / idat."""
    data = heif.data
    if item.construction_method == 0:
        lo, hi = 0, len(data)
    elif item.construction_method == 1:
        if heif.idat is None:
            raise StructureError(f"item {item.id} lives in idat, but there is no idat box")
        lo, hi = heif.idat.body, heif.idat.end
    else:
        raise StructureError(f"item {item.id} uses iloc construction method "
                             f"{item.construction_method} (item offsets), which HEIF images "
                             "do not use")
    if not item.extents:
        raise StructureError(f"item {item.id} ({item.type}) has no extents")
    out = []
    for offset, length in item.extents:
        start = lo + item.base_offset + offset
        if length == 0 and len(item.extents) == 1:
            length = hi - start  # "the whole rest" by definition
        if start < lo or start + length > hi or length <= 0:
            where = "file" if item.construction_method == 0 else "idat box"
            raise StructureError(f"item {item.id} ({item.type}) extent {start}+{length} lies "
                                 f"outside the {where} ({lo}..{hi}): truncated?")
        out.append((start, length))
    return out


def parse_hvcc(data: bytes, box: Box) -> HvcConfig:
    end = box.end
    if end - box.body < 23:
        raise StructureError("hvcC shorter than its fixed 23-byte part")
    body = box.body
    chroma = data[body + 16] & 3
    depth = (data[body + 17] & 7) + 8
    length_size = (data[body + 21] & 3) + 1
    if length_size == 3:
        raise StructureError("hvcC says 3-byte NAL lengths (only 1, 2 or 4 exist)")
    arrays = data[body + 22]
    pos = body + 23
    sets = []
    for _ in range(arrays):
        pos += 1  # completeness + NAL type
        n = _u(data, pos, 2, end)
        pos += 2
        for _ in range(n):
            size = _u(data, pos, 2, end)
            pos += 2
            if pos + size > end:
                raise StructureError("hvcC parameter set runs past its box")
            sets.append(bytes(data[pos:pos + size]))
            pos += size
    return HvcConfig(length_size, sets, depth, chroma)


def parse_ispe(data: bytes, box: Box) -> tuple[int, int]:
    return _u(data, box.body + 4, 4, box.end), _u(data, box.body + 8, 4, box.end)


def parse_grid(data: bytes, start: int, end: int) -> tuple[int, int, int, int]:
    """A grid item's payload: (rows, columns, output width, output height)."""
    flags = _u(data, start + 1, 1, end)
    rows, cols = _u(data, start + 2, 1, end) + 1, _u(data, start + 3, 1, end) + 1
    size = 4 if flags & 1 else 2
    return rows, cols, _u(data, start + 4, size, end), _u(data, start + 4 + size, size, end)
