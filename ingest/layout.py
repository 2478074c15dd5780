"""Where a card file goes inside a destination."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ingest.fsio import PARTIAL_SUFFIX
from ingest.metadata import CaptureInfo

DEFAULT_LAYOUT = "{year}/{year}-{month}-{day}/{filename}"
MIRROR = "mirror"
_FIELDS = {"year", "month", "day", "hour", "minute", "second", "filename", "stem", "ext",
           "make", "model", "card_folder", "kind"}
_FIELD_RE = re.compile(r"\{([^{}]*)\}")


class LayoutError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Layout:
    template: str

    @classmethod
    def parse(cls, text: str | None) -> Layout:
        text = (text or DEFAULT_LAYOUT).strip()
        if text == MIRROR:
            return cls("{card_folder}/{filename}")
        unknown = sorted({m for m in _FIELD_RE.findall(text)} - _FIELDS)
        if unknown:
            raise LayoutError(f"unknown layout field {{{unknown[0]}}}; use one of: "
                              + ", ".join("{" + f + "}" for f in sorted(_FIELDS)))
        if "{filename}" not in text and "{stem}" not in text:
            raise LayoutError("a layout must contain {filename} or {stem}, so file names survive")
        if text.startswith("/") or ".." in text.split("/"):
            raise LayoutError("a layout must stay inside the destination (no leading / or ..)")
        return cls(text)

    def path_for(self, rel: str, kind: str, info: CaptureInfo) -> str:
        """The file's path inside a destination, relative, POSIX."""
        card_folder, _, name = rel.rpartition("/")
        stem, dot, ext = name.rpartition(".")
        if not dot:
            stem, ext = name, ""
        t = info.time
        values = {
            "year": f"{t.year:04d}" if t else "undated",
            "month": f"{t.month:02d}" if t else "00",
            "day": f"{t.day:02d}" if t else "00",
            "hour": f"{t.hour:02d}" if t else "00",
            "minute": f"{t.minute:02d}" if t else "00",
            "second": f"{t.second:02d}" if t else "00",
            "filename": name, "stem": stem, "ext": ext,
            "make": _safe(info.make or "unknown"), "model": _safe(info.model or "unknown"),
            "card_folder": card_folder, "kind": kind,
        }
        path = _FIELD_RE.sub(lambda m: values[m.group(1)], self.template)
        parts = [p for p in path.split("/") if p not in ("", ".")]
        # A hostile card name must not climb out of the destination.
        parts = ["_" if p == ".." else p for p in parts]
        if parts and _looks_partial(parts[-1]):
            # A later run would delete it as a stale partial of its own: give it a name no
            # partial has.
            parts[-1] += "_"
        return "/".join(parts) or name


def _looks_partial(name: str) -> bool:
    return name.startswith(".") and name.endswith(PARTIAL_SUFFIX)


def _safe(text: str) -> str:
    return re.sub(r"[^\w.\- ]+", "_", text).strip() or "unknown"


NAME_MAX = 255  # bytes in one file name, on every file system a card or archive disk uses


def with_suffix(name: str, suffix: str) -> str:
    """`DSC_0001.NEF` + `3fa9c2d1` -> `DSC_0001-3fa9c2d1.NEF`: deterministic, never overwrites.

    A name already near the 255-byte limit gives up the end of its stem, so the suffixed name
    still fits (otherwise the rename fails and the file could never be archived)."""
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        stem, ext = name, ""
    tail = f"-{suffix}" + (f".{ext}" if ext else "")
    room = NAME_MAX - len(os.fsencode(tail))
    raw = os.fsencode(stem)
    if len(raw) > room:
        stem = os.fsdecode(_utf8_cut(raw, max(room, 1)))
    return stem + tail


def _utf8_cut(raw: bytes, limit: int) -> bytes:
    """The first `limit` bytes, less a UTF-8 character the cut would split in two."""
    cut = raw[:limit]
    i = len(cut) - 1
    while i > 0 and len(cut) - i < 4 and 0x80 <= cut[i] < 0xC0:  # continuation bytes
        i -= 1
    lead = cut[i] if cut else 0
    need = 2 if 0xC0 <= lead < 0xE0 else 3 if 0xE0 <= lead < 0xF0 else 4 if lead >= 0xF0 else 1
    return cut[:i] if len(cut) - i < need else cut
