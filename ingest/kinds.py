"""File classification by extension, and the operating system's own clutter on cards."""

from __future__ import annotations

from ingest.model import Kind

# Every extension LibRaw 0.22 identifies as a camera RAW (plus QuickTake). Lower case.
RAW_EXTENSIONS = frozenset(
    """3fr ari arw bay cap cr2 cr3 crw cs1 dc2 dcr dcs dng drf eip erf fff gpr iiq k25 kc2 kdc
    mdc mef mfw mos mrw nef nrw obm orf ori pef ptx pxn qtk raf raw rw2 rwl rwz sr2 srf srw sti
    x3f""".split()
)
JPEG_EXTENSIONS = frozenset({"jpg", "jpeg", "jpe", "jfif"})
HEIF_EXTENSIONS = frozenset({"heic", "heif", "hif", "avif"})
TIFF_EXTENSIONS = frozenset({"tif", "tiff"})
VIDEO_EXTENSIONS = frozenset(
    "mov mp4 m4v mts m2ts avi mxf braw r3d insv lrv 3gp mkv mpg mpeg crm".split()
)
# Files that belong to an image and follow it into its folder.
SIDECAR_EXTENSIONS = frozenset("xmp wav thm xml aae dop pp3 cos lrf".split())

IMAGE_KINDS = frozenset({Kind.RAW, Kind.JPEG, Kind.HEIF, Kind.TIFF})

# Folder and file names that the OS puts on a card; they are skipped and counted.
SYSTEM_DIRS = frozenset(
    {".Trashes", ".Spotlight-V100", ".fseventsd", ".TemporaryItems", "System Volume Information",
     "$RECYCLE.BIN", ".ingest"}
)
SYSTEM_FILES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini", ".metadata_never_index"})


def classify(name: str) -> Kind:
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if ext in RAW_EXTENSIONS:
        return Kind.RAW
    if ext in JPEG_EXTENSIONS:
        return Kind.JPEG
    if ext in HEIF_EXTENSIONS:
        return Kind.HEIF
    if ext in TIFF_EXTENSIONS:
        return Kind.TIFF
    if ext in VIDEO_EXTENSIONS:
        return Kind.VIDEO
    if ext in SIDECAR_EXTENSIONS:
        return Kind.SIDECAR
    return Kind.OTHER


def is_system_dir(name: str) -> bool:
    return name in SYSTEM_DIRS


def is_system_file(name: str) -> bool:
    return name in SYSTEM_FILES or name.startswith("._")
