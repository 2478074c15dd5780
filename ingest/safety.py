"""When a card file is safe: the one rule that `offload`, `status`, `verify` and `accept` share.

A card file is safe when at least `min_copies` copies of it sit on distinct devices other than
the card's own, each proven intact by the latest evidence held about it (the offload's read-back
from disk, then every later `verify`: a copy found `corrupt` or `missing` no longer counts),
and nothing marks the file itself as bad (a flagged offload status, a copy found `damaged`). A file the photographer has accepted as lost
(`ingest accept`) no longer holds the card back, for as long as its content is the content
that was accepted: one that changes again is new damage.

Every command gathers its evidence its own way (the offload from what it just proved, `status`
from the catalogs, `verify` from what it re-read) and hands it to `judge`; the card-level line
comes from `card_verdict`. So the summary line, `safe_to_format` in the JSON, the HTML banner
and `ingest status` cannot disagree.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import xxhash

# What holds a file back when it is not a problem of the file itself.
NOT_COPIED, TOO_FEW_COPIES, CHANGED_SINCE_ACCEPTED = (
    "not_copied", "too_few_copies", "changed_since_accepted")
ACCEPTED = "accepted"

# The order in which a file's own problems decide its headline: what the photographer must do
# first. Card damage outranks anything a re-run could fix.
_PROBLEM_ORDER = ("changed_since_accepted", "damaged_on_card", "unreadable", "damaged",
                  "unverified", "needs_recopy", "corrupt", "missing")


def st_dev(path: str) -> int:
    """The device a path lives on. Two folders on one disk share it and die together."""
    return os.stat(path).st_dev


def store_device_id(label: str) -> int:
    """A stable id for an object store's device (one endpoint and bucket), negative so it can
    never equal a local `st_dev`."""
    return -1 - (xxhash.xxh3_64_intdigest(label.encode()) >> 2)


class DeviceNames:
    """Names a device id the way the user knows it (`/dev/sdb1`), from the mount table."""

    def __init__(self, mountinfo: str | None = "/proc/self/mountinfo"):
        """`mountinfo=None`: no names, only `device MAJOR:MINOR`."""
        self.names: dict[tuple[int, int], str] = {}
        self.extra: dict[int, str] = {}  # object stores: negative ids, never a disk's
        lines: list[str] = []
        if mountinfo:
            try:
                with open(mountinfo, encoding="utf-8", errors="replace") as f:
                    lines = f.read().splitlines()
            except OSError:
                pass
        for line in lines:
            head, _, tail = line.partition(" - ")
            fields, rest = head.split(), tail.split()
            if len(fields) < 5 or len(rest) < 2:
                continue
            try:
                major, minor = (int(x) for x in fields[2].split(":"))
            except ValueError:
                continue
            fstype, what = rest[0], rest[1]
            name = what if what.startswith("/dev/") else f"{fstype} at {fields[4]}"
            self.names.setdefault((major, minor), name)

    def label(self, dev: int | None) -> str:
        if dev is None:
            return "an unknown device"
        if dev in self.extra:
            return self.extra[dev]
        key = (os.major(dev), os.minor(dev)) if dev >= 0 else (-1, -1)
        return self.names.get(key) or f"device {key[0]}:{key[1]}"


@dataclass(frozen=True, slots=True)
class CopyEvidence:
    """One copy of a card file, as the latest evidence shows it."""

    destination: str
    path: str
    device: int | None  # None: the copy's device could not be read (it is gone)
    proven: bool  # re-read from disk and matched, and no later check found it bad
    problem: str | None = None  # why it does not count, in plain words


@dataclass(frozen=True, slots=True)
class Acceptance:
    """`ingest accept`: the photographer knows this card file is lost or damaged."""

    card_path: str
    digest: str | None  # the content accepted (xxh3-128); None: it could not be read then
    reason: str
    accepted_at: str
    id: int = 0
    # The card's listing when it was accepted (`card_fingerprint`): what tells an unreadable
    # file from another card's unreadable file with the same name, size and time.
    card: str | None = None
    undone_at: str | None = None

    def covers(self, digest: str | None, card: str | None) -> bool:
        """Whether the file now is what was accepted: the same content, or, for a file that
        could not be read, still unreadable on the very card it was accepted from."""
        if self.digest is None:
            return digest is None and self.card is not None and self.card == card
        return self.digest == digest

    @property
    def last_event(self) -> str:
        return self.undone_at or self.accepted_at

    def describe(self) -> str:
        return f"accepted as lost on {self.accepted_at[:10]}: {self.reason}"

    def to_json(self) -> dict:
        return {"reason": self.reason, "accepted_at": self.accepted_at}


@dataclass(slots=True)
class FileEvidence:
    """Everything known about one card file that bears on "may the card be formatted?"."""

    path: str
    digest: str | None  # its content now; None when it could not be read
    copies: list[CopyEvidence] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (status, words)
    acceptance: Acceptance | None = None
    card: str | None = None  # `card_fingerprint` of the card it is on, where one was read


@dataclass(frozen=True, slots=True)
class FileVerdict:
    safe: bool  # holds nothing back: enough proven copies, or an accepted loss
    accepted: bool
    key: str | None  # what holds it back (a status value or one of the keys above)
    reasons: tuple[str, ...]  # the first is the headline
    devices: int  # distinct devices with a counting copy
    counting: tuple[CopyEvidence, ...]
    stale: str | None = None  # why an acceptance of this file no longer covers it


def judge(ev: FileEvidence, *, card_device: int | None, min_copies: int,
          names: DeviceNames | None = None) -> FileVerdict:
    names = names or DeviceNames(None)
    counting = tuple(c for c in ev.copies if c.proven and c.device is not None
                     and c.device != card_device)
    devices = len({c.device for c in counting})
    problems = sorted(ev.problems, key=lambda p: _problem_rank(p[0]))  # headline first
    accepted = ev.acceptance
    if accepted is not None and accepted.covers(ev.digest, ev.card):
        found = tuple(dict.fromkeys(f"found: {p[1]}" for p in problems))
        # What is left of a damaged photo is still kept like any other: only a file with no
        # bytes to copy (unreadable) is accepted without its copies.
        if ev.digest is None or devices >= min_copies:
            return FileVerdict(True, True, ACCEPTED, (accepted.describe(), *found), devices,
                               counting)
        short = _shortfall(ev, counting, devices, card_device, min_copies, names) \
            if ev.copies else ["not copied"]
        return FileVerdict(False, False, TOO_FEW_COPIES,
                           (f"{accepted.describe()}, but what is left of it is not kept: "
                            f"{short[0]}", *short[1:]), devices, counting)
    stale = None
    if accepted is not None and accepted.digest is not None and accepted.card == ev.card:
        # The same file on the same card (path, size, time and the card's listing all as when
        # accepted) with other content: it changed again, which is new damage. A file accepted
        # as unreadable that now reads, or one on another card, is judged on its own.
        problems.insert(0, (CHANGED_SINCE_ACCEPTED,
                            f"changed since it was {accepted.describe()}: new damage; look at "
                            "it again"))
    elif accepted is not None:
        # Say why an acceptance the photographer remembers no longer applies.
        stale = (f"it was {accepted.describe()}, but the card or the file has changed since: "
                 "run ingest accept again if it is still lost")
    verdict = _judge_own(ev, problems, counting, devices, card_device, min_copies, names)
    if stale and not verdict.safe:
        return FileVerdict(False, False, verdict.key, (*verdict.reasons, stale), devices,
                           counting, stale)
    return verdict


def _judge_own(ev: FileEvidence, problems: list[tuple[str, str]],
               counting: tuple[CopyEvidence, ...], devices: int, card_device: int | None,
               min_copies: int, names: DeviceNames) -> FileVerdict:
    """The verdict from the file's own evidence, with no acceptance that covers it."""
    if problems:
        key = min((p[0] for p in problems), key=_problem_rank)
        texts = tuple(dict.fromkeys(p[1] for p in problems))
        return FileVerdict(False, False, key, texts, devices, counting)
    if devices >= min_copies:
        return FileVerdict(True, False, None, (), devices, counting)
    if not ev.copies:
        return FileVerdict(False, False, NOT_COPIED, ("not copied",), devices, counting)
    return FileVerdict(False, False, TOO_FEW_COPIES,
                       tuple(_shortfall(ev, counting, devices, card_device, min_copies, names)),
                       devices, counting)


def _problem_rank(key: str) -> int:
    return _PROBLEM_ORDER.index(key) if key in _PROBLEM_ORDER else len(_PROBLEM_ORDER)


def _shortfall(ev: FileEvidence, counting: tuple[CopyEvidence, ...], devices: int,
               card_device: int | None, min_copies: int, names: DeviceNames) -> list[str]:
    out = []
    where = ", ".join(names.label(d) for d in sorted({c.device for c in counting}))
    if len(counting) >= min_copies:
        if devices == 1:
            both = "both" if len(counting) == 2 else "all"
            out.append(f"{len(counting)} copies but {both} on the same device ({where})")
        else:
            out.append(f"{len(counting)} copies but on only {devices} devices ({where}), "
                       f"needs {min_copies}")
    else:
        n = len(counting)
        line = f"{n} verified {'copy' if n == 1 else 'copies'}, needs {min_copies}"
        on_card = sum(1 for c in ev.copies if c.proven and c.device == card_device)
        if on_card:
            line += f" ({on_card} more on the card's own device, which formatting erases)"
        out.append(line)
    out += [f"copy {c.destination}/{c.path} {c.problem}" for c in ev.copies
            if c.problem and not c.proven]
    return out


@dataclass(frozen=True, slots=True)
class CardVerdict:
    safe_to_format: bool
    line: str  # the one line every output shows
    accepted: int
    held: int  # files and card entries that hold the card back


def card_verdict(verdicts: Iterable[FileVerdict], *, held_back: int = 0) -> CardVerdict:
    """`held_back`: card entries that have no file verdict (unlistable, too deep, not a regular
    file) but may not be lost to a format."""
    verdicts = list(verdicts)
    held = [v for v in verdicts if not v.safe]
    accepted = sum(1 for v in verdicts if v.accepted)
    n_held = len(held) + held_back
    if n_held:
        verb = "is" if n_held == 1 else "are"
        why = _held_summary(held, held_back)
        return CardVerdict(False, f"NOT safe to format: {n_held} {_files(n_held)} {verb} held "
                           f"back ({why})", accepted, n_held)
    if not verdicts:
        return CardVerdict(True, "Safe to format: the card holds no files to copy", 0, 0)
    proven = [v for v in verdicts if not v.accepted]
    tail = f"; {accepted} accepted as lost" if accepted else ""
    if not proven:
        return CardVerdict(True, f"Safe to format: all {len(verdicts)} {_files(len(verdicts))} "
                           f"are accepted as lost", accepted, 0)
    k = min(v.devices for v in proven)
    subject = "the 1 file has" if len(proven) == 1 else f"all {len(proven)} files have"
    if accepted:
        subject = ("1 file has" if len(proven) == 1 else f"{len(proven)} files have")
    return CardVerdict(True, f"Safe to format: {subject} {k} verified "
                       f"{'copy' if k == 1 else 'copies'} on {k} "
                       f"{'device' if k == 1 else 'devices'}{tail}", accepted, 0)


_HELD_WORDS = {
    NOT_COPIED: "not copied",
    TOO_FEW_COPIES: "too few copies",
    CHANGED_SINCE_ACCEPTED: "changed since accepted as lost",
}


def _held_summary(held: list[FileVerdict], held_back: int) -> str:
    counts: dict[str, int] = {}
    for v in held:
        counts[v.key or ""] = counts.get(v.key or "", 0) + 1
    parts = [f"{n} {_HELD_WORDS.get(k, k.replace('_', ' '))}"
             for k, n in sorted(counts.items(), key=lambda kv: (_problem_rank(kv[0]), -kv[1]))]
    if held_back:
        parts.append(f"{held_back} card {'entry' if held_back == 1 else 'entries'} not copied")
    return ", ".join(parts)


def _files(n: int) -> str:
    return "file" if n == 1 else "files"


# What a card's fingerprint lists: the photos and clips, not the camera's own index files,
# which it rewrites whenever the card goes back in.
_FINGERPRINT_KINDS = frozenset({"raw", "jpeg", "heif", "tiff", "video"})


def card_fingerprint(files: Iterable, upto_ns: int) -> str:
    """Which card a file is on, as one hash: path, size and time of every photo and clip on it
    shot no later than that file (`upto_ns`, its mtime). Later shots do not change it, so an
    acceptance outlives the next shoot; another card, or a card whose earlier photos were
    deleted, is another card, which errs on the side of keeping the card. `files`: objects
    with rel, size, mtime_ns and kind (`SourceFile`)."""
    h = xxhash.xxh3_64()
    for rel, size, mtime_ns in sorted((f.rel, f.size, f.mtime_ns) for f in files
                                      if str(f.kind) in _FINGERPRINT_KINDS
                                      and f.mtime_ns <= upto_ns):
        h.update(f"{rel}\0{size}\0{mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def newest(acceptances: Iterable[Acceptance | None]) -> Acceptance | None:
    """Of one card file's acceptances in several catalogs, the latest event wins: an undo in
    one catalog takes back an older acceptance in another."""
    found = [a for a in acceptances if a is not None]
    if not found:
        return None
    last = max(found, key=lambda a: a.last_event)
    return None if last.undone_at else last


def device_or_none(device_of: Callable[[str], int], path: str) -> int | None:
    try:
        return device_of(path)
    except OSError:
        return None


def shared_device_warnings(card_device: int | None, destinations: list[tuple[str, int | None]],
                           min_copies: int, names: DeviceNames) -> list[str]:
    """Said before the first copy, and again at the end: destinations that cannot give the
    card's files `min_copies` copies on separate devices, whatever the run does."""
    out = []
    by_device: dict[int | None, list[str]] = {}
    for root, dev in destinations:
        by_device.setdefault(dev, []).append(root)
    for dev, roots in by_device.items():
        if dev is not None and dev == card_device:
            for root in roots:
                out.append(f"{root} is on the card's own device ({names.label(dev)}): its "
                           "copies do not count, because formatting the card erases them")
        elif len(roots) > 1:
            out.append(f"{' and '.join(roots)} are on the same device ({names.label(dev)}): "
                       "together they count as one copy")
    n = len(usable_devices(card_device, by_device))
    if n < min_copies:
        out.append(f"The destinations give {n} separate {'device' if n == 1 else 'devices'} "
                   f"apart from the card, and safe to format needs {min_copies}: they cannot "
                   "make the card safe to format. Add a destination on another disk.")
    return out


def usable_devices(card_device: int | None, devices: Iterable[int | None]) -> set[int]:
    """The devices whose copies can count: known, and not the card's own."""
    return {dev for dev in devices if dev is not None and dev != card_device}
