"""Walk a source folder in a stable order and say what each file is."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from ingest.kinds import classify, is_system_dir, is_system_file
from ingest.model import Kind, SourceFile


@dataclass(frozen=True, slots=True)
class Skipped:
    rel: str
    reason: str

    @property
    def holds_back(self) -> bool:
        """A symlink's target is copied under its own name (or lies off the card); anything
        else skipped is card content this run could not copy."""
        return not self.reason.startswith("symlink")


@dataclass(slots=True)
class Discovery:
    files: list[SourceFile] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)  # not copied, and reported
    system_files: list[str] = field(default_factory=list)  # OS clutter, counted
    histories: list[str] = field(default_factory=list)  # ASC MHL folders: checked, not copied


def stem_of(name: str) -> str:
    """`DSC_1.NEF` and `DSC_1.xmp` and darktable's `DSC_1.NEF.xmp` share the stem `DSC_1`."""
    base = name.rsplit(".", 1)[0] if "." in name else name
    if "." in base and classify(base) is not Kind.OTHER:
        base = base.rsplit(".", 1)[0]
    return base


def _order_key(f: SourceFile) -> tuple:
    # Sidecars sort after the images of the same folder and stem, so they can follow them.
    folder, _, name = f.rel.rpartition("/")
    return (folder, stem_of(name), f.kind is Kind.SIDECAR, name)


def discover(root: str) -> Discovery:
    """Never raises for a single bad entry: it becomes a `Skipped` record."""
    root = os.path.realpath(root)
    out = Discovery()
    _walk(root, root, "", out, depth=0)
    out.files.sort(key=_order_key)
    return out


HISTORY_DIR = "ascmhl"  # an ASC MHL history: its hashes are checked against the card files
_MAX_DEPTH = 256  # far deeper than any camera writes (a looped, corrupt FAT stops here);
# a file below it is skipped and reported, so the limit must not hide plausible folders


def _walk(root: str, path: str, rel: str, out: Discovery, depth: int) -> None:
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)
    except OSError as e:
        out.skipped.append(Skipped(rel or ".", f"folder could not be listed: {e.strerror or e}"))
        return
    for entry in entries:
        erel = f"{rel}/{entry.name}" if rel else entry.name
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError as e:
            out.skipped.append(Skipped(erel, f"could not be read: {e.strerror or e}"))
            continue
        if stat.S_ISLNK(st.st_mode):
            _symlink(root, entry.path, erel, out)
            continue
        if stat.S_ISDIR(st.st_mode):
            if is_system_dir(entry.name):
                out.system_files.append(erel + "/")
            elif entry.name == HISTORY_DIR:
                out.histories.append(erel)
            elif depth >= _MAX_DEPTH:
                out.skipped.append(Skipped(erel, f"folder nested deeper than {_MAX_DEPTH} levels"))
            else:
                _walk(root, entry.path, erel, out, depth + 1)
            continue
        if is_system_file(entry.name):
            out.system_files.append(erel)
            continue
        if not stat.S_ISREG(st.st_mode):
            out.skipped.append(Skipped(erel, "not a regular file (device, FIFO or socket)"))
            continue
        out.files.append(SourceFile(erel, entry.path, classify(entry.name), st.st_size,
                                    st.st_mtime_ns))


def _symlink(root: str, path: str, rel: str, out: Discovery) -> None:
    target = os.path.realpath(path)
    if os.path.commonpath([root, target]) != root:
        out.skipped.append(Skipped(rel, "symlink leads outside the source: not followed"))
        return
    # A link inside the card points at a file we copy anyway under its own name.
    out.skipped.append(Skipped(rel, "symlink to a file inside the source: its target is copied"))
