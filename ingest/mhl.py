"""ASC MHL histories: append a generation to a folder's `ascmhl/` history, read one back.

The layout follows the ASC MHL v2.0 spec as the reference tool `ascmhl` reads and writes it:
`<root>/ascmhl/NNNN_<folder>_<YYYY-MM-DD_HHMMSS>Z.mhl` (namespace urn:ASC:MHL:v2.0), plus
`ascmhl_chain.xml` (urn:ASC:MHL:DIRECTORY:v2.0) holding the c4 id of every manifest, so a later
edit to a manifest is detectable. We write file hashes only (no directory hashes: they are
optional and `ascmhl create` adds them when it next runs).

Card files come from unknown sources, so parsing uses the standard library's expat, which
resolves no external entities.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import xxhash

from ingest.fsio import PARTIAL_SUFFIX, write_atomic

MHL_NS = "urn:ASC:MHL:v2.0"
CHAIN_NS = "urn:ASC:MHL:DIRECTORY:v2.0"
FOLDER = "ascmhl"
CHAIN_FILE = "ascmhl_chain.xml"
PROCESSES = ("in-place", "transfer", "flatten")
ACTIONS = ("original", "verified", "failed")
# ascmhl's order of preference when it verifies; read_history lists hashes in this order.
HASH_FORMATS = ("md5", "sha1", "xxh128", "xxh3", "xxh64", "c4")
# ascmhl's own defaults, plus our state folder and the partials a killed copy leaves behind,
# which would otherwise show up as "new files" in `ascmhl verify`.
DEFAULT_IGNORE: tuple[str, ...] = (
    ".DS_Store", "ascmhl", "ascmhl/", ".ingest", ".ingest/", f"*{PARTIAL_SUFFIX}",
)

_MANIFEST_NAME = re.compile(r"^(\d{4,})(?:_(.+))?\.mhl$")
# Characters XML 1.0 cannot carry. A bare CR is representable but a parser turns it into LF,
# so a path holding one would not survive the round trip either.
_NOT_XML = re.compile("[^\t\n\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]|\r")
_C4_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


@dataclass(frozen=True, slots=True)
class MhlEntry:
    """One file's hash record in a generation. `path` is relative to the history root (POSIX)."""

    path: str
    size: int
    mtime: datetime | int  # an aware datetime, or nanoseconds since the epoch
    xxh128: str
    action: str  # original | verified | failed
    hashdate: datetime


class Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


# --- hashing ---------------------------------------------------------------------------------


def c4_encode(sha512_digest: bytes) -> str:
    """The C4 id of a SHA-512 digest: "c4" + base58 of the digest, left-padded to 90 chars."""
    value = int.from_bytes(sha512_digest, "big")
    digits = []
    while value:
        value, rem = divmod(value, 58)
        digits.append(_C4_ALPHABET[rem])
    return "c4" + "".join(reversed(digits)).rjust(88, _C4_ALPHABET[0])


def c4_id(data: bytes) -> str:
    return c4_encode(hashlib.sha512(data).digest())


class _C4Hasher:
    def __init__(self) -> None:
        self._sha = hashlib.sha512()

    def update(self, data: bytes, /) -> None:
        self._sha.update(data)

    def hexdigest(self) -> str:
        # Not hex, but the value format ascmhl records for c4.
        return c4_encode(self._sha.digest())


def make_hasher(fmt: str) -> Hasher:
    """A hasher whose hexdigest() matches the value ascmhl records for `fmt`.

    xxh128 is XXH3-128 and xxh3 is XXH3-64, both as xxhash's canonical (big-endian) hex.
    """
    factories = {
        "md5": hashlib.md5, "sha1": hashlib.sha1, "xxh128": xxhash.xxh3_128,
        "xxh3": xxhash.xxh3_64, "xxh64": xxhash.xxh64, "xxh32": xxhash.xxh32, "c4": _C4Hasher,
    }
    try:
        return factories[fmt]()
    except KeyError:
        raise ValueError(f"unknown ASC MHL hash format: {fmt!r}") from None


# --- writing ---------------------------------------------------------------------------------


def representable(path: str) -> bool:
    """Whether a file name can be recorded in an MHL manifest (XML 1.0, UTF-8) unchanged."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes kept as surrogate escapes
        return False
    return _NOT_XML.search(path) is None


def add_generation(
    root: Path,
    entries: Iterable[MhlEntry],
    *,
    process: str = "transfer",
    tool_version: str,
    now: datetime,
    ignore: Sequence[str] = DEFAULT_IGNORE,
    tool_name: str = "ingest",
    hostname: str | None = None,
) -> Path:
    """Append generation N+1 to `<root>/ascmhl/` and record its c4 in the chain; return its path.

    Entries whose path cannot be written as XML (see `representable`) are left out: the caller
    checks that first and says so on the file's record. An action of `verified` or `failed`
    only means something to ascmhl for a path an earlier generation recorded as `original`
    (see `read_history`); ascmhl treats anything else as a new file. The ignore patterns are
    merged with those of the latest generation, as ascmhl itself does.
    """
    if process not in PROCESSES:
        raise ValueError(f"process must be one of {PROCESSES}, not {process!r}")
    entries = list(entries)
    for entry in entries:
        _check_entry(entry)
    folder = root / FOLDER
    folder.mkdir(exist_ok=True)
    existing = _manifests(folder)
    chain = _read_chain(folder / CHAIN_FILE)
    number = max([n for n, _ in existing] + [n for n, _, _ in chain] + [0]) + 1
    patterns = _merge(_latest_ignore(existing), ignore)

    stamp = now.astimezone(UTC).strftime("%Y-%m-%d_%H%M%S")
    name = f"{number:04d}_{root.resolve().name}_{stamp}Z.mhl"
    manifest = _manifest_xml(
        [e for e in entries if representable(e.path)], process=process, patterns=patterns,
        now=now, tool=(tool_name, tool_version), hostname=hostname or socket.gethostname(),
    )
    _write_atomic(folder / name, manifest)
    _write_atomic(folder / CHAIN_FILE, _chain_xml(chain + [(number, name, c4_id(manifest))]))
    return folder / name


def _check_entry(entry: MhlEntry) -> None:
    parts = entry.path.split("/")
    if entry.path.startswith("/") or not {"", ".", ".."}.isdisjoint(parts) or parts[0] == FOLDER:
        raise ValueError(f"not a path inside the history root: {entry.path!r}")
    if entry.action not in ACTIONS:
        raise ValueError(f"action must be one of {ACTIONS}, not {entry.action!r}")


def _manifest_xml(
    entries: list[MhlEntry], *, process: str, patterns: list[str], now: datetime,
    tool: tuple[str, str], hostname: str,
) -> bytes:
    root = ET.Element("hashlist", {"version": "2.0", "xmlns": MHL_NS})
    creator = ET.SubElement(root, "creatorinfo")
    ET.SubElement(creator, "creationdate").text = _iso(now, micro=False)
    ET.SubElement(creator, "hostname").text = _xml_text(hostname)
    ET.SubElement(creator, "tool", {"version": tool[1]}).text = tool[0]
    info = ET.SubElement(root, "processinfo")
    ET.SubElement(info, "process").text = process
    ignore = ET.SubElement(info, "ignore")
    for pattern in patterns:
        ET.SubElement(ignore, "pattern").text = pattern
    if entries:  # the schema wants at least one entry inside <hashes>
        hashes = ET.SubElement(root, "hashes")
        for e in entries:
            item = ET.SubElement(hashes, "hash")
            ET.SubElement(item, "path", {
                "size": str(e.size), "lastmodificationdate": _iso(_as_datetime(e.mtime), micro=False),
            }).text = e.path
            ET.SubElement(item, "xxh128", {
                "action": e.action, "hashdate": _iso(e.hashdate, micro=True),
            }).text = e.xxh128.lower()
    return _serialise(root)


def _chain_xml(generations: list[tuple[int, str, str]]) -> bytes:
    root = ET.Element("ascmhldirectory", {"xmlns": CHAIN_NS})
    for number, name, c4 in generations:
        item = ET.SubElement(root, "hashlist", {"sequencenr": str(number)})
        ET.SubElement(item, "path").text = name
        ET.SubElement(item, "c4").text = c4
    return _serialise(root)


def _serialise(root: ET.Element) -> bytes:
    ET.indent(root, space="  ")
    body = ET.tostring(root, encoding="unicode")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n").encode("utf-8")


def _iso(moment: datetime, *, micro: bool) -> str:
    # A naive datetime is taken as local time, as datetime.astimezone() does.
    moment = moment.astimezone(UTC)
    return (moment if micro else moment.replace(microsecond=0)).isoformat()


def _as_datetime(mtime: datetime | int) -> datetime:
    if isinstance(mtime, datetime):
        return mtime
    return datetime.fromtimestamp(mtime // 1_000_000_000, UTC)


def _xml_text(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text.encode("utf-8", "replace").decode("utf-8"))


def _merge(first: Iterable[str], second: Iterable[str]) -> list[str]:
    merged: list[str] = []
    for pattern in [*first, *second]:
        if pattern not in merged:
            merged.append(pattern)
    return merged


def _write_atomic(path: Path, data: bytes) -> None:
    write_atomic(path, data)


# --- reading ---------------------------------------------------------------------------------


def _tag(element: ET.Element) -> str:
    return element.tag.rpartition("}")[2]


def _manifests(folder: Path) -> list[tuple[int, Path]]:
    """The generation manifests in an ascmhl folder, oldest first."""
    found = []
    if folder.is_dir():
        for item in folder.iterdir():
            match = _MANIFEST_NAME.match(item.name)
            if match and item.is_file():
                found.append((int(match.group(1)), item))
    return sorted(found)


def _read_chain(chain_file: Path) -> list[tuple[int, str, str]]:
    if not chain_file.is_file():
        return []
    generations = []
    for item in ET.parse(chain_file).getroot():
        if _tag(item) != "hashlist":
            continue
        fields = {_tag(child): (child.text or "").strip() for child in item}
        generations.append((int(item.get("sequencenr", "0")), fields.get("path", ""),
                            fields.get("c4", "")))
    return generations


def _latest_ignore(manifests: list[tuple[int, Path]]) -> list[str]:
    for _, path in reversed(manifests):
        try:
            root = ET.parse(path).getroot()
        except (ET.ParseError, OSError):
            continue
        return [p.text for p in root.iter() if _tag(p) == "pattern" and p.text]
    return []


def verify_chain(root: Path) -> list[str]:
    """Problems with `<root>/ascmhl`'s chain: manifests missing, edited, or unreadable."""
    folder = root / FOLDER
    try:
        chain = _read_chain(folder / CHAIN_FILE)
    except (ET.ParseError, OSError, ValueError) as exc:
        return [f"{CHAIN_FILE}: unreadable ({exc})"]
    if not chain and _manifests(folder):
        return [f"{CHAIN_FILE}: missing"]
    problems = []
    for _, name, c4 in chain:
        try:
            actual = c4_id((folder / name).read_bytes())
        except OSError:
            problems.append(f"{name}: missing")
            continue
        if actual != c4:
            problems.append(f"{name}: changed since it was written (c4 {actual}, chain says {c4})")
    return problems


def read_history(root: Path) -> dict[str, list[tuple[str, str]]]:
    """The reference hashes an ASC MHL history holds, per file path relative to `root`.

    Per format this is the first value recorded without `failed` (the one ascmhl verifies
    against; later `verified` entries repeat it), listed in ascmhl's order of preference.
    Nested histories in subfolders are included with their paths prefixed. A manifest that
    cannot be parsed is skipped; `verify_chain` reports it.
    """
    result: dict[str, list[tuple[str, str]]] = {}
    for dirpath, dirnames, _ in os.walk(root):
        if FOLDER in dirnames:
            prefix = Path(dirpath).relative_to(root).as_posix()
            for rel, hashes in _read_one_history(Path(dirpath) / FOLDER).items():
                result[rel if prefix == "." else f"{prefix}/{rel}"] = hashes
        dirnames[:] = [d for d in dirnames if d not in (FOLDER, ".ingest")]
    return result


def _read_one_history(folder: Path) -> dict[str, list[tuple[str, str]]]:
    recorded: dict[str, dict[str, str]] = {}
    for _, manifest in _manifests(folder):
        try:
            tree = ET.parse(manifest)
        except (ET.ParseError, OSError):
            continue
        for item in tree.getroot().iter():
            if _tag(item) != "hash":
                continue
            path, previous, values = None, None, {}
            for child in item:
                tag = _tag(child)
                if tag == "path":
                    path = child.text
                elif tag == "previousPath":
                    previous = child.text
                elif tag in HASH_FORMATS and child.get("action") != "failed" and child.text:
                    values[tag] = child.text.strip()
            if not path:
                continue
            # A renamed file keeps the hashes recorded under its old name.
            known = recorded.pop(previous, {}) if previous else recorded.get(path, {})
            recorded[path] = {**values, **known}
    return {
        path: [(fmt, values[fmt]) for fmt in HASH_FORMATS if fmt in values]
        for path, values in recorded.items()
        if values
    }
