"""The plain records that flow between stages. No I/O lives here."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import StrEnum


class Kind(StrEnum):
    RAW = "raw"
    JPEG = "jpeg"
    HEIF = "heif"
    TIFF = "tiff"
    VIDEO = "video"
    SIDECAR = "sidecar"
    OTHER = "other"


class Status(StrEnum):
    # offload
    VERIFIED = "verified"
    RECOPIED = "recopied"
    NEEDS_RECOPY = "needs_recopy"
    DAMAGED_ON_CARD = "damaged_on_card"
    UNREADABLE = "unreadable"
    DUPLICATE = "duplicate"
    UNVERIFIED = "unverified"
    # verify (archive re-check)
    CORRUPT = "corrupt"
    MISSING = "missing"
    DAMAGED = "damaged"
    UNTRACKED = "untracked"
    SKIPPED = "skipped"
    # either: `ingest accept` recorded this file as a known loss, and it has not changed since
    ACCEPTED = "accepted"


# Statuses that make the exit code 1 and hold a card back from formatting.
FLAGGED_OFFLOAD = frozenset(
    {Status.NEEDS_RECOPY, Status.DAMAGED_ON_CARD, Status.UNREADABLE, Status.UNVERIFIED}
)
FLAGGED_VERIFY = frozenset({Status.CORRUPT, Status.MISSING, Status.DAMAGED})
FLAGGED = FLAGGED_OFFLOAD | FLAGGED_VERIFY
# Flagged offload statuses that the same command, run again, can clear (see ADVICE).
RERUN_HELPS = frozenset({Status.NEEDS_RECOPY, Status.UNREADABLE})

# What the user should do about each status; shown in the terminal summary, HTML and README.
# The detail of a file not read because the card itself stopped responding mid-run: the reports
# say that once, for all of them, instead of once per file.
CARD_STOPPED = "not read: the card stopped responding"

ADVICE: dict[str, str] = {
    Status.VERIFIED: "Nothing to do.",
    Status.RECOPIED: "Nothing to do: a bad copy was caught and copied again. Check the cable or disk if this repeats.",
    Status.DUPLICATE: "Nothing to do: this content is already in the archive.",
    Status.NEEDS_RECOPY: "Run the same command again to copy it again; if it keeps failing, try another reader or cable.",
    Status.DAMAGED_ON_CARD: "Re-copying won't help: the card holds the damage. Keep the card, do not format it; try another reader or recovery software. Once you know it is lost, ingest accept records that.",
    Status.UNREADABLE: "The card could not be read. Re-seat the card or try another reader, then run the same command again.",
    Status.UNVERIFIED: "Copied and hash-checked, but this decoder cannot prove the image. Keep the card until you have checked it in your editor.",
    Status.CORRUPT: "This copy changed since it was archived. Restore it from the good copy named (ingest verify --repair).",
    Status.MISSING: "This file is gone from the archive. Restore it from the good copy named (ingest verify --repair).",
    Status.DAMAGED: "The file matches its original hash but does not decode: it was bad when it was ingested.",
    Status.UNTRACKED: "Not in the catalog: it was added by hand. Nothing is wrong with it.",
    Status.SKIPPED: "Not due in this run's budget; a later run checks it.",
    Status.ACCEPTED: "Nothing to do: you accepted this file as lost (ingest accept --undo takes that back).",
    "changed_since_accepted": "It changed after you accepted it as lost: look at it again, then accept it again or take the acceptance back (ingest accept --undo).",
}


@dataclass(frozen=True, slots=True)
class SourceFile:
    """A file found on the card. `rel` is relative to the source root, POSIX separators."""

    rel: str
    abspath: str
    kind: Kind
    size: int
    mtime_ns: int


@dataclass(slots=True)
class Copy:
    destination: str
    path: str  # relative to the destination root, POSIX separators
    verified: bool
    action: str = "copied"  # copied | existing | failed
    # Where the bytes this copy replaced were kept, relative to the destination's root
    # (`.ingest/quarantine/...`): a re-copy or a repair never destroys what it replaces.
    quarantined: str | None = None

    def to_json(self) -> dict:
        return {"destination": self.destination, "path": self.path, "verified": self.verified,
                "action": self.action, "quarantined": self.quarantined}


@dataclass(slots=True)
class FileRecord:
    """One file's outcome. Every stage fills in its part; nothing raises past a record."""

    path: str
    kind: Kind
    size: int
    mtime_ns: int = 0
    xxh3_128: str | None = None
    status: Status = Status.UNVERIFIED
    detail: str = ""
    copies: list[Copy] = field(default_factory=list)
    capture_time: str | None = None
    camera_make: str | None = None
    camera_model: str | None = None
    seconds: float = 0.0
    decode: dict | None = None
    preview: str | None = None  # relative to <destination root>/.ingest/previews/
    attempts: int = 0
    history: dict | None = None  # the card's ASC MHL record for this file: format, hash, match
    acceptance: dict | None = None  # {reason, accepted_at} when `ingest accept` covers it
    # How the card's own bytes were proven (ingest.copier.SECOND_READ, ...): a second read
    # past the cache, a match with the hash an earlier verified read recorded, "off"
    # (--no-source-verify), or None when the card's content never settled.
    source_verify: str | None = None
    card_reads: int = 0  # reads of this file from the card, the second (verifying) ones included

    @property
    def flagged(self) -> bool:
        return self.status in FLAGGED

    def to_json(self) -> dict:
        # Field by field: the nested decode dicts are shared, not deep-copied as asdict would,
        # which was most of the report's cost (0.45 s per 1,000 files). Nothing edits them.
        d = {name: getattr(self, name) for name in _RECORD_FIELDS}
        d["kind"] = str(self.kind)
        d["status"] = str(self.status)
        d["copies"] = [c.to_json() for c in self.copies]
        return d


_RECORD_FIELDS = tuple(f.name for f in fields(FileRecord))
