"""`ingest accept`: record that card files are known to be lost or damaged, and accepted so.

A frame that is damaged on the card itself keeps `status` and the nightly `verify` red for
ever, and people learn to ignore red. Accepting it records, in every destination's catalog,
the file (its path on the card, size and time) and the content it had when accepted. From then
on the shared rule in `ingest.safety` lets it stop holding the card back, for as long as its
content is that content: a file that changes again is new damage.

Only a file whose evidence shows real damage can be accepted (damaged on the card, unreadable,
undecodable, or not provable by any decoder here). A file that can still be copied is refused:
accepting it would let the card be formatted with a readable photo on it. The command checks
every file first and records nothing unless all of them can be accepted.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime

from ingest import __version__, fsio
from ingest.catalog import Catalog
from ingest.config import utc_now
from ingest.discover import discover
from ingest.lock import DestinationLock
from ingest.model import SourceFile, Status
from ingest.preflight import UsageError, check_catalogued, check_source
from ingest.safety import DeviceNames, FileVerdict, card_fingerprint, judge, st_dev
from ingest.status import Archive
from ingest.store.urls import is_object_store
from ingest.volume import volume_identity

# What a file's verdict must say before it may be accepted as lost: damage no re-run can fix.
ACCEPTABLE = frozenset({Status.DAMAGED_ON_CARD, Status.UNREADABLE, Status.DAMAGED,
                        Status.UNVERIFIED})


@dataclass(slots=True)
class AcceptResult:
    report: dict

    @property
    def exit_code(self) -> int:
        return 0


def accept(source: str, destinations: list[str], files: list[str], reason: str | None, *,
           undo: bool = False, min_copies: int = 2, io: fsio.FileIO | None = None,
           clock: Callable[[], datetime] = utc_now,
           device_of: Callable[[str], int] = st_dev) -> AcceptResult:
    """Accept (or, with `undo`, take back) card files as known losses in every destination.

    Raises `UsageError` with one line for anything that cannot be accepted; nothing is
    recorded then. `files` are paths relative to the card, as `ingest status` lists them.
    """
    if not files:
        raise UsageError("name at least one card file with --file PATH")
    if not undo and not (reason or "").strip():
        raise UsageError("say why with --reason TEXT (it is shown wherever the file is listed)")
    if any(is_object_store(d) for d in destinations):
        raise UsageError("ingest accept records in local destinations only; give their folders")
    card = check_source(source)
    roots = check_catalogued(destinations, "destination", none="give at least one destination",
                             no_catalog="nothing was offloaded there yet")
    io = io or fsio.FileIO()
    found = discover(card)
    listed = {f.rel: f for f in found.files}
    sources = list({src.rel: src for src in (_card_file(card, f, listed) for f in files)}
                   .values())
    now = clock()
    session = now.strftime("%Y%m%dT%H%M%SZ-") + secrets.token_hex(3)
    names = DeviceNames()
    with ExitStack() as stack:
        for root in roots:
            stack.enter_context(DestinationLock(root, f"ingest accept {card}"))
        catalogs = [(root, stack.enter_context(_open(root))) for root in roots]
        archive = Archive(catalogs, [], device_of, names, device_of(card), found.files)
        entries = []
        for src in sources:
            check = archive.evidence(src, io)
            standing = check.evidence.acceptance
            check.evidence.acceptance = None  # judged on its own evidence, not the old verdict
            verdict = judge(check.evidence, card_device=archive.card_device,
                            min_copies=min_copies, names=names)
            if undo:
                if standing is None:
                    raise UsageError(f"{src.rel} is not accepted as lost in these destinations: "
                                     "nothing to take back")
            else:
                _refuse_unless_lost(src, verdict, check.evidence.problems, source, destinations)
            entries.append((src, check.evidence.digest, verdict, standing))
        stamp = now.isoformat()
        volume = volume_identity(card)
        _record_everywhere([cat for _, cat in catalogs], entries, undo, reason, stamp, volume,
                           session, found.files)
    finished = clock()
    records = [{"path": src.rel, "kind": str(src.kind), "size": src.size, "xxh3_128": digest,
                "status": "undone" if undo else Status.ACCEPTED.value,
                "reason": standing.reason if undo and standing else reason.strip(),
                "finding": verdict.reasons[0] if verdict.reasons else None,
                "detail": verdict.reasons[0] if verdict.reasons else ""}
               for src, digest, verdict, standing in entries]
    n = len(records)
    verb = "no longer accepted" if undo else "accepted as lost"
    return AcceptResult({
        "schema": "ingest-report/1",
        "command": "accept",
        "tool_version": __version__,
        "started_at": stamp,
        "finished_at": finished.isoformat(),
        "seconds": round((finished - now).total_seconds(), 3),
        "source": card,
        "destinations": [{"root": r} for r in roots],
        "undo": undo,
        "files": records,
        "summary": {"files": n, "verdict": f"{n} {'file' if n == 1 else 'files'} {verb} in "
                    f"{len(roots)} {'destination' if len(roots) == 1 else 'destinations'}"},
    })


def _open(root: str) -> Catalog:
    try:
        return Catalog(root)
    except sqlite3.Error as e:
        raise UsageError(f"the catalog of {root} cannot be opened ({e}): nothing was recorded; "
                         "check the disk, or restore .ingest/catalog.sqlite") from None


def _record_everywhere(catalogs: list[Catalog], entries: list, undo: bool, reason: str | None,
                       stamp: str, volume: str | None, session: str, card: list) -> None:
    """All catalogs take every file, or none does: the destinations must never disagree on
    what is accepted (status would then depend on which of them are given)."""
    committed: list[Catalog] = []
    try:
        for cat in catalogs:
            cat.db.execute("BEGIN IMMEDIATE")  # every write lock first, before any change
        for src, digest, _, _ in entries:
            for cat in catalogs:
                if undo:
                    cat.undo_acceptance(src.rel, src.size, src.mtime_ns, stamp)
                else:
                    cat.accept(src.rel, src.size, src.mtime_ns, digest, reason.strip(), stamp,
                               volume, session, card_fingerprint(card, src.mtime_ns))
        for cat in catalogs:
            cat.db.commit()  # in WAL mode a full disk shows here, after others committed
            committed.append(cat)
    except sqlite3.Error as e:
        for cat in catalogs:
            try:
                cat.db.rollback()
            except sqlite3.Error:
                pass
        left = _take_back(committed, undo, stamp, session)
        where = f"; but {', '.join(left)} kept it: run the same command again" if left else \
            ": nothing was recorded"
        raise UsageError(f"a destination's catalog could not be written ({e}){where}. Check "
                         "that the disk has space and no other program holds the catalog, "
                         "then run the same command again") from None


def _take_back(committed: list[Catalog], undo: bool, stamp: str, session: str) -> list[str]:
    """Undo what the catalogs that did commit took, so the destinations agree again; returns
    the catalogs where even that failed."""
    left = []
    for cat in committed:
        try:
            cat.take_back_acceptances(undo=undo, stamp=stamp, session_id=session)
        except sqlite3.Error:
            left.append(cat.path)
    return left


def _card_file(card: str, given: str, listed: dict[str, SourceFile]) -> SourceFile:
    """The card file named by `given` (relative to the card, or a path into it), exactly as
    the offload and status list it, or a usage error."""
    path = os.path.realpath(given if os.path.isabs(given) else os.path.join(card, given))
    rel = os.path.relpath(path, card).replace(os.sep, "/")
    if rel == ".." or rel.startswith("../") or os.path.isabs(rel):
        raise UsageError(f"{given} is not on the card {card}: give its path relative to the "
                         "card, as ingest status lists it")
    if rel not in listed:
        what = "is not a photo file ingest copies" if os.path.isfile(path) else \
            "is not on the card"
        raise UsageError(f"{given} {what} ({card}): give its path relative to the card, as "
                         "ingest status lists it")
    return listed[rel]


def _refuse_unless_lost(src: SourceFile, verdict: FileVerdict, problems: list[tuple[str, str]],
                        source: str, destinations: list[str]) -> None:
    if verdict.safe:
        raise UsageError(f"{src.rel} is not lost: it is safe in these destinations; nothing "
                         "was recorded")
    # Every problem must be damage: one that a re-run can clear (a failed destination beside
    # an undecodable frame) is for the re-run, not for acceptance.
    if verdict.key not in ACCEPTABLE or not {key for key, _ in problems} <= ACCEPTABLE:
        again = " ".join(["ingest offload", source, *destinations])
        raise UsageError(f"{src.rel} is not lost: it reads from the card and can still be "
                         f"copied ({verdict.reasons[0]}). Run {again} instead; nothing was "
                         "recorded")
