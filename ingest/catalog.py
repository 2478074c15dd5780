"""Each destination's own SQLite catalog in `<dest>/.ingest/catalog.sqlite`.

A row is written only after its file has been verified, renamed into place and the folder
fsynced, so no row can point at an incomplete file.

This module is the catalog's only door: it owns every table (the schema and its migrations,
`MIGRATIONS`) and is the only caller of `sqlite3.connect` in ingest (tests/test_catalog_schema.py
holds it to that). `Catalog` opens one for writing, migrating it first; `open_readonly` reads one
as it is, whichever ingest wrote it.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import tempfile
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Self

from ingest import __version__
from ingest.errors import UsageError
from ingest.safety import Acceptance

STATE_DIR = ".ingest"
CATALOG_NAME = "catalog.sqlite"
# Row statuses that mean "this copy is proven good": a re-run treats them as done.
GOOD = ("verified", "recopied", "duplicate")
# Latest findings (`last_result`) after which a copy no longer counts, whatever proved it once:
# offload, status and an s3:// destination all read them so.
LOST = ("corrupt", "missing")


# --- the schema ------------------------------------------------------------------------------
# Every table of a catalog, in the order ingest came to need them. Before `PRAGMA user_version`
# counted the steps, each module created its own tables when it first needed them (CREATE ...
# IF NOT EXISTS), so a catalog at user_version 0 may hold any mix of them: every step also
# copes with finding its work already done. `Catalog` brings a catalog up to SCHEMA_VERSION in
# one transaction; `open_readonly` never changes it.


def _v1_offload(db: sqlite3.Connection) -> None:
    """The first catalog: what an offload writes."""
    for sql in (
        "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT)",
        "CREATE TABLE IF NOT EXISTS sessions("
        " id TEXT PRIMARY KEY, command TEXT, source TEXT, source_volume TEXT,"
        " started_at TEXT, finished_at TEXT, tool_version TEXT)",
        "CREATE TABLE IF NOT EXISTS files("
        " id INTEGER PRIMARY KEY, path TEXT UNIQUE NOT NULL, size INTEGER NOT NULL,"
        " mtime_ns INTEGER NOT NULL, xxh3_128 TEXT NOT NULL, kind TEXT, capture_time TEXT,"
        " camera_make TEXT, camera_model TEXT, source_volume TEXT, source_path TEXT,"
        " session_id TEXT, status TEXT NOT NULL, detail TEXT, ingested_at TEXT NOT NULL,"
        " last_verified_at TEXT, last_result TEXT)",
        "CREATE INDEX IF NOT EXISTS files_hash ON files(xxh3_128)",
        "CREATE INDEX IF NOT EXISTS files_source ON files(source_path, size, mtime_ns)",
        "CREATE TABLE IF NOT EXISTS checks("
        " id INTEGER PRIMARY KEY, file_id INTEGER NOT NULL, session_id TEXT, at TEXT NOT NULL,"
        " result TEXT NOT NULL, detail TEXT)",
        "CREATE INDEX IF NOT EXISTS checks_file ON checks(file_id)",
    ):
        db.execute(sql)


def _v2_verify(db: sqlite3.Connection) -> None:
    """`ingest verify` and its `--repair`. verify_state: when verify last looked at each file,
    kept apart from `files.last_verified_at` (which the offload also sets at ingest) because
    verify's order needs "never re-verified since ingest". peers: the other destinations of
    each offload, so a later verify of this archive alone knows where to find a good copy."""
    db.execute("CREATE TABLE IF NOT EXISTS verify_state("
               " file_id INTEGER PRIMARY KEY, at TEXT NOT NULL, result TEXT NOT NULL)")
    db.execute("CREATE TABLE IF NOT EXISTS peers("
               " root TEXT PRIMARY KEY, session_id TEXT, recorded_at TEXT)")


def _v3_remote_objects(db: sqlite3.Connection) -> None:
    """An s3:// destination's catalog: what the store said about each object it took."""
    db.execute("CREATE TABLE IF NOT EXISTS remote_objects("
               " path TEXT PRIMARY KEY, size INTEGER NOT NULL, etag TEXT, checksum TEXT,"
               " uploaded_at TEXT NOT NULL)")


def _v4_acceptances(db: sqlite3.Connection) -> None:
    """`ingest accept`: card files the photographer accepted as lost, and undos of that."""
    db.execute("CREATE TABLE IF NOT EXISTS acceptances("
               " id INTEGER PRIMARY KEY, card_path TEXT NOT NULL, size INTEGER NOT NULL,"
               " mtime_ns INTEGER NOT NULL, xxh3_128 TEXT, reason TEXT NOT NULL,"
               " accepted_at TEXT NOT NULL, source_volume TEXT, session_id TEXT,"
               " undone_at TEXT)")
    db.execute("CREATE INDEX IF NOT EXISTS acceptances_card"
               " ON acceptances(card_path, size, mtime_ns)")


def _v5_card_fingerprint(db: sqlite3.Connection) -> None:
    """Which card an acceptance was made on, so it cannot cover another card's file of that
    name. The first `ingest accept` made its table without it; later ones made it with it,
    hence the look first."""
    if "card_fingerprint" not in _columns_of(db, "acceptances"):
        db.execute("ALTER TABLE acceptances ADD COLUMN card_fingerprint TEXT")


# Append only. A released step is never edited: catalogs that went through it exist.
MIGRATIONS = (_v1_offload, _v2_verify, _v3_remote_objects, _v4_acceptances,
              _v5_card_fingerprint)
SCHEMA_VERSION = len(MIGRATIONS)  # `PRAGMA user_version` of an up-to-date catalog


def _columns_of(db: sqlite3.Connection, table: str) -> set[str]:
    """The table's columns; empty when there is no such table."""
    return {r[1] for r in db.execute(f"PRAGMA table_info({table})")}


def _user_version(db: sqlite3.Connection) -> int:
    return db.execute("PRAGMA user_version").fetchone()[0]


class CatalogTooNew(UsageError):
    """The catalog was written by a newer ingest than this one, which cannot know what the
    newer layout means: it is neither read nor migrated nor rebuilt nor written to. One line,
    exit 2. Deliberately not a sqlite3.DatabaseError, which would read as a corrupt catalog
    and have it moved aside and rebuilt."""

    def __init__(self, label: str, version: int):
        super().__init__(
            f"destination {label}: its catalog was written by a newer version of ingest "
            f"(catalog schema {version}; ingest {__version__} knows up to {SCHEMA_VERSION}): "
            "upgrade ingest, then run the command again")
        self.version = version


def _checked_version(db: sqlite3.Connection, label: str) -> int:
    version = _user_version(db)
    if version > SCHEMA_VERSION:
        raise CatalogTooNew(label, version)
    return version


def _migrate(db: sqlite3.Connection, label: str) -> None:
    """Bring the catalog up to SCHEMA_VERSION: every missing step in one transaction, so a run
    killed midway leaves it as it was. An up-to-date catalog is only read."""
    if _checked_version(db, label) == SCHEMA_VERSION:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        # Asked again under the write lock: another process may have migrated it meanwhile.
        for step in MIGRATIONS[_checked_version(db, label):]:
            step(db)
        # Where ingest's first catalogs kept their version, for whoever reads `meta`;
        # user_version is the one that counts.
        db.execute("INSERT OR REPLACE INTO meta VALUES('schema_version', ?)",
                   (str(SCHEMA_VERSION),))
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        db.commit()
    except BaseException:
        db.rollback()
        raise


class CatalogUnusable(UsageError):
    """SQLite cannot keep a catalog on this destination's file system at all: one plain line
    for the user (exit 2, or that destination's error), never a traceback. Deliberately not a
    sqlite3.DatabaseError, which would read as a corrupt catalog and have it rebuilt."""


def _refused(e: sqlite3.OperationalError) -> bool:
    """The file system, not the catalog, failed: an I/O error (SQLITE_IOERR_SHMMAP where the
    -shm file cannot be mapped shared, SQLITE_IOERR_SHMLOCK or _LOCK where a lock request
    fails, ...) or WAL's locking protocol breaking down. A corrupt file is another error."""
    name = getattr(e, "sqlite_errorname", "") or ""
    return name.startswith("SQLITE_IOERR") or name == "SQLITE_PROTOCOL"


LOCK_PROBE_PREFIX = ".lock-probe-"  # a crash may leave one: preflight.remove_stale_probes


def _locks_refused(folder: str) -> str | None:
    """Why POSIX record locks, which SQLite takes on the catalog, fail in this folder (None
    when they work). Asked first because SQLite reports a refused lock (ENOLCK, as on NFS
    without its lock service) as "database is locked" and retries it for its whole timeout.
    Tried on a scratch file: closing any descriptor of a file drops every POSIX lock this
    process holds on it, so the catalog itself must not be opened for this."""
    try:
        fd, probe = tempfile.mkstemp(prefix=LOCK_PROBE_PREFIX, dir=folder)
    except OSError:
        return None  # cannot write here at all: SQLite says so in its own words
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.lockf(fd, fcntl.LOCK_UN)
        return None
    except OSError as e:
        return e.strerror or str(e)
    finally:
        os.close(fd)
        try:
            os.unlink(probe)
        except FileNotFoundError:
            pass  # swept by the run holding the destination's lock (preflight.remove_stale_probes)


def _connect(path: str, label: str) -> tuple[sqlite3.Connection, bool]:
    """Open the catalog in WAL mode, or, where the file system cannot do WAL, in rollback-
    journal mode. Returns the connection, migrated (`_migrate`), and whether it is in WAL mode.

    WAL needs a shared memory mapping of `catalog.sqlite-shm` and POSIX locks. Network and
    FUSE file systems may refuse the mapping (sshfs with -o direct_io does: every access then
    fails with "disk I/O error"). A rollback journal (journal_mode=DELETE) needs only the
    locks, and with synchronous=FULL it is as crash-safe: every commit survives a killed run
    or a power cut, and the next open rolls a half-written one back from its hot journal. It
    only makes a reader (`ingest status`) wait while a write commits; ingest is the only
    writer anyway (ingest.lock). Where even that fails (no locks), nothing can keep the
    catalog safely there, and the user is told so in one line."""
    refused = _locks_refused(os.path.dirname(path))
    if refused is not None:
        raise CatalogUnusable(
            f"destination {label}: its file system refuses file locks ({refused}), which "
            "ingest's catalog (SQLite) needs to stay crash-safe: offload to a local disk, or "
            "mount the share with file locking enabled")
    db = sqlite3.connect(path, timeout=30)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        _migrate(db, label)  # the first read: where the -shm mapping and locks are used
        return db, True
    except sqlite3.OperationalError as e:
        db.close()
        if not _refused(e):
            raise
        wal_error = e
    except BaseException:  # CatalogTooNew
        db.close()
        raise
    db = sqlite3.connect(path, timeout=30)
    try:
        # EXCLUSIVE first: then SQLite opens a WAL-mode file (the attempt above, or a catalog
        # written on a disk that could do WAL) with its index in this process's memory instead
        # of the -shm file, and journal_mode=DELETE folds the WAL back into the database (no
        # committed row is lost). NORMAL again afterwards, so readers can share the file.
        db.execute("PRAGMA locking_mode=EXCLUSIVE")
        mode = db.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
        db.execute("PRAGMA locking_mode=NORMAL")
        db.execute("PRAGMA synchronous=FULL")
        _migrate(db, label)
    except sqlite3.OperationalError as e:
        db.close()
        if not _refused(e):
            raise
        without = str(e)
    except BaseException:
        db.close()
        raise
    else:
        if mode == "delete":
            return db, False
        db.close()
        without = f"the journal stays in {mode} mode"
    raise CatalogUnusable(
        f"destination {label}: SQLite cannot keep ingest's catalog on its file system "
        f"({wal_error} in WAL mode, {without} with a rollback journal): offload to a local "
        "disk, or check the disk and how the share is mounted")


@dataclass(frozen=True, slots=True)
class Row:
    id: int
    path: str
    size: int
    mtime_ns: int
    xxh3_128: str
    kind: str | None
    capture_time: str | None
    camera_make: str | None
    camera_model: str | None
    source_volume: str | None
    source_path: str | None
    session_id: str | None
    status: str
    detail: str | None
    ingested_at: str
    last_verified_at: str | None
    last_result: str | None


_COLUMNS = ", ".join(Row.__slots__)


def catalog_path(dest_root: str) -> str:
    return os.path.join(dest_root, STATE_DIR, CATALOG_NAME)


def db_text(path: str) -> str:
    """Card names may hold bytes that are not UTF-8 (surrogate-escaped in Python); SQLite
    stores UTF-8 only, so such bytes are kept as a reversible backslash escape."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class _Reader:
    """The lookups a read-only catalog shares with a writable one. A writable catalog is
    migrated, so every table is there; a read-only one may come from an older ingest, so a
    table or column it lacks reads as empty, as that ingest would have read it."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db
        self._columns: dict[str, set[str]] = {}

    def _has(self, table: str, column: str | None = None) -> bool:
        if table not in self._columns:
            self._columns[table] = _columns_of(self.db, table)
        found = self._columns[table]
        return bool(found) and (column is None or column in found)

    def close(self) -> None:
        """Never raises: a catalog on a disk that died mid-run may fail even to close, and the
        run still owes its report; SQLite's journal keeps the file sound for the next run."""
        try:
            self.db.close()
        except sqlite3.Error:
            pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # files --------------------------------------------------------------------------------
    def by_hash(self, digest: str) -> list[Row]:
        cur = self.db.execute(f"SELECT {_COLUMNS} FROM files WHERE xxh3_128=? ORDER BY id",
                              (digest,))
        return [Row(*r) for r in cur]

    def by_path(self, path: str) -> Row | None:
        r = self.db.execute(f"SELECT {_COLUMNS} FROM files WHERE path=?",
                            (db_text(path),)).fetchone()
        return Row(*r) if r else None

    def by_source(self, source_path: str, size: int, mtime_ns: int) -> list[Row]:
        cur = self.db.execute(
            f"SELECT {_COLUMNS} FROM files WHERE source_path=? AND size=? AND mtime_ns=?",
            (db_text(source_path), size, mtime_ns))
        return [Row(*r) for r in cur]

    def all_rows(self) -> list[Row]:
        return [Row(*r) for r in self.db.execute(f"SELECT {_COLUMNS} FROM files ORDER BY path")]

    # verify -------------------------------------------------------------------------------
    def last_checks(self) -> dict[int, str]:
        """file id -> time of its latest verify check."""
        if not self._has("verify_state"):
            return {}
        return dict(self.db.execute("SELECT file_id, at FROM verify_state"))

    def recorded_peers(self) -> list[str]:
        """The other destinations of this one's offloads, most recently recorded first."""
        if not self._has("peers"):
            return []
        return [r for (r,) in self.db.execute(
            "SELECT root FROM peers ORDER BY recorded_at DESC, root")]

    # acceptances --------------------------------------------------------------------------
    def acceptance(self, card_path: str, size: int, mtime_ns: int) -> Acceptance | None:
        """The newest acceptance of one card file in this catalog, standing or undone (an undo
        is an event that `safety.newest` weighs against other catalogs). The file is known by
        its path on the card, size and time; `Acceptance.covers` then asks for the same
        content. A catalog from before acceptances existed has none; one from before card
        fingerprints has acceptances that name no card."""
        if not self._has("acceptances"):
            return None
        card = "card_fingerprint" if self._has("acceptances", "card_fingerprint") else "NULL"
        row = self.db.execute(
            f"SELECT card_path, xxh3_128, reason, accepted_at, id, {card}, undone_at "
            "FROM acceptances WHERE card_path=? AND size=? AND mtime_ns=? ORDER BY id DESC "
            "LIMIT 1", (db_text(card_path), size, mtime_ns)).fetchone()
        return Acceptance(*row) if row else None


class Catalog(_Reader):
    """A destination's catalog opened for writing: created if need be, and migrated to
    SCHEMA_VERSION. `label` names the destination in messages (default: `dest_root`; an
    s3:// destination keeps its catalog in a temporary folder)."""

    def __init__(self, dest_root: str, *, label: str | None = None):
        os.makedirs(os.path.join(dest_root, STATE_DIR), exist_ok=True)
        self.path = catalog_path(dest_root)
        # Python's implicit BEGIN before a write makes each `with self.db:` block one
        # transaction: one WAL fsync per batch, not one per statement.
        db, self.wal = _connect(self.path, label or dest_root)
        super().__init__(db)

    # the catalog as a whole ---------------------------------------------------------------
    def quick_check(self) -> str:
        """SQLite's own look at the file: "ok", or the first problem it found."""
        return self.db.execute("PRAGMA quick_check").fetchone()[0]

    def is_empty(self) -> bool:
        """No file and no session: never used, or a file that lost its content (SQLite reads
        a catalog truncated to 0 bytes as a new one)."""
        return self.db.execute("SELECT (SELECT COUNT(*) FROM files) + "
                               "(SELECT COUNT(*) FROM sessions)").fetchone()[0] == 0

    def set_meta(self, items: dict[str, str]) -> None:
        """Notes about the catalog itself (a rebuild's time and reason), in one transaction."""
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO meta VALUES(?, ?)", items.items())

    # sessions -----------------------------------------------------------------------------
    def start_session(self, sid: str, command: str, source: str | None, volume: str | None,
                      started_at: str, version: str) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO sessions VALUES(?,?,?,?,?,?,?)",
                            (sid, command, source, volume, started_at, None, version))

    def finish_session(self, sid: str, finished_at: str) -> None:
        with self.db:
            self.db.execute("UPDATE sessions SET finished_at=? WHERE id=?", (finished_at, sid))

    # files --------------------------------------------------------------------------------
    def add(self, **row) -> int:
        """One file, in its own transaction. `row` as for `_insert`."""
        with self.db:
            return self._insert(**row)

    def _insert(self, *, path: str, size: int, mtime_ns: int, digest: str, kind: str,
                capture_time: str | None, make: str | None, model: str | None,
                source_volume: str | None, source_path: str | None, session_id: str,
                status: str, now: str) -> int:
        cur = self.db.execute(
            "INSERT INTO files(path,size,mtime_ns,xxh3_128,kind,capture_time,camera_make,"
            "camera_model,source_volume,source_path,session_id,status,ingested_at,"
            "last_verified_at,last_result) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT(path) DO UPDATE SET size=excluded.size, mtime_ns=excluded.mtime_ns,"
            " xxh3_128=excluded.xxh3_128, status=excluded.status, session_id=excluded.session_id,"
            " last_verified_at=excluded.last_verified_at, last_result=excluded.last_result",
            (db_text(path), size, mtime_ns, digest, kind, capture_time, make, model,
             source_volume, db_text(source_path) if source_path else None, session_id, status,
             now, now, "copied"))
        return cur.lastrowid or self.by_path(path).id

    def add_many(self, rows: list[dict]) -> None:
        """Several `add`s in one transaction: one fsync of the WAL instead of one per file."""
        with self.db:
            for row in rows:
                self._insert(**row)

    def set_status_many(self, items: list[tuple[str, str, str | None]], now: str,
                        session_id: str | None = None) -> None:
        """(path, status, detail) for many files in one transaction."""
        with self.db:
            for path, status, detail in items:
                self._set_status(path, status, detail, now, session_id)

    def set_status(self, path: str, status: str, detail: str | None, now: str,
                   session_id: str | None = None) -> None:
        with self.db:
            self._set_status(path, status, detail, now, session_id)

    def _set_status(self, path: str, status: str, detail: str | None, now: str,
                    session_id: str | None) -> None:
        self.db.execute(
            "UPDATE files SET status=?, detail=?, last_verified_at=?, last_result=? "
            "WHERE path=?", (status, detail, now, status, db_text(path)))
        row = self.by_path(path)
        if row:
            self.db.execute("INSERT INTO checks(file_id,session_id,at,result,detail) "
                            "VALUES(?,?,?,?,?)", (row.id, session_id, now, status, detail))

    def record_finding(self, file_id: int, result: str, detail: str | None, now: str,
                       session_id: str | None) -> None:
        """A later look at an archived copy (the offload re-reading a twin before it trusts
        it as a duplicate) found it `result`. `files.status`, the offload's verdict on the card
        file, stays; `last_result` is the copy's latest known state, which `status` reads."""
        with self.db:
            self.db.execute("INSERT INTO checks(file_id,session_id,at,result,detail) "
                            "VALUES(?,?,?,?,?)", (file_id, session_id, now, result, detail))
            self.db.execute("UPDATE files SET last_verified_at=?, last_result=? WHERE id=?",
                            (now, result, file_id))

    def record_check(self, file_id: int, session_id: str, at: str, result: str,
                     detail: str | None) -> None:
        """A verify check of one file, in a short transaction of its own, so a run killed at
        any point keeps every finished check. `files.status` (the offload's verdict) is left
        alone; only the check fields change."""
        with self.db:
            self.db.execute("INSERT INTO checks(file_id,session_id,at,result,detail) "
                            "VALUES(?,?,?,?,?)", (file_id, session_id, at, result, detail))
            self.db.execute("UPDATE files SET last_verified_at=?, last_result=? WHERE id=?",
                            (at, result, file_id))
            self.db.execute("INSERT OR REPLACE INTO verify_state(file_id, at, result) "
                            "VALUES(?,?,?)", (file_id, at, result))

    def add_object(self, *, etag: str | None, checksum: str | None, **row) -> int:
        """One file an object store took, with what the store said about its object (ETag,
        checksum), in one transaction: the two rows never part. `row` as for `add`."""
        with self.db:
            file_id = self._insert(**row)
            self.record_object(row["path"], row["size"], etag, checksum, row["now"])
        return file_id

    def record_object(self, path: str, size: int, etag: str | None, checksum: str | None,
                      now: str) -> None:
        """What an object store said about the object it took at `path` (an s3://
        destination). Commits, together with whatever the caller's open transaction holds
        (the object's file row, so the two never part)."""
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO remote_objects VALUES(?,?,?,?,?)",
                            (path, size, etag, checksum, now))

    # peers --------------------------------------------------------------------------------
    def record_peers(self, roots: Sequence[str], session_id: str | None = None,
                     now: str | None = None, *, own: str | None = None) -> None:
        """Remember the other destinations of an offload (this one's own root, `own`, is left
        out), so a later verify of this archive alone still knows where to look for a good
        copy. `roots` are named as the run opened them: real folder paths, canonical URLs;
        `own` defaults to the folder holding this catalog."""
        own = own or os.path.realpath(os.path.dirname(os.path.dirname(self.path)))
        with self.db:
            for root in roots:
                if root != own:
                    self.db.execute("INSERT OR REPLACE INTO peers VALUES(?,?,?)",
                                    (root, session_id, now))

    # acceptances --------------------------------------------------------------------------
    # These two do not commit: `ingest accept` commits every catalog only once all took it.
    def accept(self, card_path: str, size: int, mtime_ns: int, digest: str | None,
               reason: str, now: str, volume: str | None, session_id: str | None,
               card: str | None) -> None:
        self.db.execute(
            "INSERT INTO acceptances(card_path,size,mtime_ns,xxh3_128,reason,accepted_at,"
            "source_volume,session_id,card_fingerprint) VALUES(?,?,?,?,?,?,?,?,?)",
            (db_text(card_path), size, mtime_ns, digest, reason, now, volume, session_id, card))

    def undo_acceptance(self, card_path: str, size: int, mtime_ns: int, now: str) -> int:
        """Take back every standing acceptance of this card file; returns how many."""
        return self.db.execute(
            "UPDATE acceptances SET undone_at=? WHERE card_path=? AND size=? AND mtime_ns=?"
            " AND undone_at IS NULL", (now, db_text(card_path), size, mtime_ns)).rowcount

    def take_back_acceptances(self, *, undo: bool, stamp: str, session_id: str) -> None:
        """Reverse one `ingest accept` run that other catalogs could not take (committed)."""
        with self.db:
            if undo:
                self.db.execute("UPDATE acceptances SET undone_at=NULL WHERE undone_at=?",
                                (stamp,))
            else:
                self.db.execute("DELETE FROM acceptances WHERE session_id=?", (session_id,))


# --- read-only ---------------------------------------------------------------------------------


class ReadOnlyCatalog(_Reader):
    """A catalog opened for reading only (`open_readonly`): never created, migrated or
    written, so it works on a write-protected archive disk and leaves a sibling archive as it
    was. `version` is its `PRAGMA user_version`."""

    def __init__(self, db: sqlite3.Connection, path: str, version: int):
        super().__init__(db)
        self.path = path
        self.version = version


def open_readonly(path: str, *, label: str | None = None, timeout: float = 30,
                  allow_newer: bool = False) -> ReadOnlyCatalog:
    """Open the catalog file at `path` for reading only.

    Raises sqlite3.Error when it cannot be read as a catalog, and CatalogTooNew (a UsageError)
    when a newer ingest wrote it, unless `allow_newer`: a caller that proves by other means
    whatever it reads (repair re-hashes every candidate it finds) may still use its files.
    `label` names the destination in that message (default: the folder holding `.ingest`)."""
    uri = "file:" + urllib.parse.quote(path)
    label = label or os.path.dirname(os.path.dirname(path))
    last: sqlite3.Error | None = None
    # A WAL database opened read-only needs its -shm file; on a read-only mount it cannot be
    # made, and nothing can be writing there either, so the file is then read as immutable.
    for mode in ("?mode=ro", "?mode=ro&immutable=1"):
        try:
            db = sqlite3.connect(uri + mode, uri=True, timeout=timeout)
        except sqlite3.Error as e:
            last = e
            continue
        try:
            version = _user_version(db)
            if version > SCHEMA_VERSION and not allow_newer:
                raise CatalogTooNew(label, version)
            db.execute("SELECT count(*) FROM files").fetchone()  # a catalog, and readable
            return ReadOnlyCatalog(db, path, version)
        except sqlite3.Error as e:
            db.close()
            last = e
        except BaseException:
            db.close()
            raise
    raise last
