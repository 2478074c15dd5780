"""One catalog module (issue 22): every table, one schema version with migrations, the only
`sqlite3.connect`.

Old catalogs are written here with the SQL each earlier ingest ran (from git history), not
with today's code, so a change to the migrations cannot quietly change what it is tested
against.
"""

from __future__ import annotations

import ast
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import ingest
from ingest import catalog as catalog_module
from ingest.catalog import (
    SCHEMA_VERSION,
    Catalog,
    CatalogTooNew,
    catalog_path,
    open_readonly,
)
from ingest.errors import UsageError
from ingest.rebuild import open_or_rebuild

# --- the layouts earlier versions wrote ------------------------------------------------------
# ingest/catalog.py `_SCHEMA` as of 744bf66 (the first catalog), unchanged until 344c66e.
FIRST = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS sessions(
    id TEXT PRIMARY KEY, command TEXT, source TEXT, source_volume TEXT,
    started_at TEXT, finished_at TEXT, tool_version TEXT);
CREATE TABLE IF NOT EXISTS files(
    id INTEGER PRIMARY KEY,
    path TEXT UNIQUE NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    xxh3_128 TEXT NOT NULL,
    kind TEXT,
    capture_time TEXT,
    camera_make TEXT,
    camera_model TEXT,
    source_volume TEXT,
    source_path TEXT,
    session_id TEXT,
    status TEXT NOT NULL,
    detail TEXT,
    ingested_at TEXT NOT NULL,
    last_verified_at TEXT,
    last_result TEXT);
CREATE INDEX IF NOT EXISTS files_hash ON files(xxh3_128);
CREATE INDEX IF NOT EXISTS files_source ON files(source_path, size, mtime_ns);
CREATE TABLE IF NOT EXISTS checks(
    id INTEGER PRIMARY KEY, file_id INTEGER NOT NULL, session_id TEXT, at TEXT NOT NULL,
    result TEXT NOT NULL, detail TEXT);
CREATE INDEX IF NOT EXISTS checks_file ON checks(file_id);
"""
# ingest/verify/check.py `_STATE_SCHEMA` (9f9a0bf): made by the first `ingest verify`.
VERIFY_STATE = """
CREATE TABLE IF NOT EXISTS verify_state(
    file_id INTEGER PRIMARY KEY, at TEXT NOT NULL, result TEXT NOT NULL);
"""
# ingest/verify/repair.py `_PEERS_SCHEMA` (9f9a0bf): by verify, and by each offload since 1a2bf02.
PEERS = """
CREATE TABLE IF NOT EXISTS peers(root TEXT PRIMARY KEY, session_id TEXT, recorded_at TEXT);
"""
# ingest/remote/stage.py `_OBJECTS_SCHEMA` (ce6578f): an s3:// destination's catalog.
REMOTE_OBJECTS = """
CREATE TABLE IF NOT EXISTS remote_objects(
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, etag TEXT, checksum TEXT,
    uploaded_at TEXT NOT NULL);
"""
# ingest/catalog.py `_SCHEMA`, acceptances as 344c66e made them (no card_fingerprint) ...
ACCEPTANCES_FIRST = """
CREATE TABLE IF NOT EXISTS acceptances(
    id INTEGER PRIMARY KEY, card_path TEXT NOT NULL, size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL, xxh3_128 TEXT, reason TEXT NOT NULL, accepted_at TEXT NOT NULL,
    source_volume TEXT, session_id TEXT, undone_at TEXT);
CREATE INDEX IF NOT EXISTS acceptances_card ON acceptances(card_path, size, mtime_ns);
"""
# ... and as 6cc074e made them, until this change (7040860 added the column to older tables).
ACCEPTANCES = """
CREATE TABLE IF NOT EXISTS acceptances(
    id INTEGER PRIMARY KEY, card_path TEXT NOT NULL, size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL, xxh3_128 TEXT, reason TEXT NOT NULL, accepted_at TEXT NOT NULL,
    source_volume TEXT, session_id TEXT, undone_at TEXT, card_fingerprint TEXT);
CREATE INDEX IF NOT EXISTS acceptances_card ON acceptances(card_path, size, mtime_ns);
"""
ALTERED = "ALTER TABLE acceptances ADD COLUMN card_fingerprint TEXT;"

# Tables were made when a command first needed them, so any mix of them is a real catalog.
LAYOUTS = {
    "744bf66 first offload": [FIRST],
    "9f9a0bf verify before any peers": [FIRST, VERIFY_STATE, PEERS],
    "1a2bf02 offload, never verified": [FIRST, PEERS],
    "ce6578f s3 destination": [FIRST, REMOTE_OBJECTS, VERIFY_STATE],
    "344c66e first ingest accept": [FIRST, PEERS, VERIFY_STATE, ACCEPTANCES_FIRST],
    "344c66e accept, no verify": [FIRST, PEERS, ACCEPTANCES_FIRST],
    "6cc074e card fingerprints": [FIRST, PEERS, VERIFY_STATE, ACCEPTANCES],
    "7040860 fingerprint added later": [FIRST, PEERS, VERIFY_STATE, ACCEPTANCES_FIRST, ALTERED],
    "6cc074e accept, no peers": [FIRST, ACCEPTANCES],
}

DIGEST = "0123456789abcdef0123456789abcdef"
ROWS = {
    "meta": [("schema_version", "1"), ("rebuilt_at", "2026-11-27T00:00:00+00:00")],
    "sessions": [("s1", "offload", "/card", "CARD", "2026-11-26T10:00:00+00:00",
                  "2026-11-26T10:05:00+00:00", "0.1.0")],
    "files": [(1, "2026/a.CR3", 10, 111, DIGEST, "raw", None, "Canon", "R5", "CARD",
               "DCIM/a.CR3", "s1", "verified", None, "2026-11-26T10:01:00+00:00",
               "2026-11-26T10:01:00+00:00", "verified"),
              (2, "2026/b.JPG", 20, 222, "f" * 32, "jpeg", None, None, None, "CARD",
               "DCIM/b.JPG", "s1", "verified", None, "2026-11-26T10:02:00+00:00", None, None)],
    "checks": [(1, 1, "s1", "2026-11-26T10:01:00+00:00", "verified", None)],
    "verify_state": [(1, "2026-11-28T00:00:00+00:00", "verified")],
    "peers": [("/mnt/other", "s1", "2026-11-26T10:00:00+00:00")],
    "remote_objects": [("2026/a.CR3", 10, '"etag"', "sha256:x", "2026-11-26T10:03:00+00:00")],
}
ACCEPTED = (1, "DCIM/c.CR3", 30, 333, DIGEST, "lost", "2026-12-01T00:00:00+00:00", "CARD",
            "s2", None)


def write_old(root: Path, scripts: list[str]) -> str:
    """A catalog as an earlier ingest left it: WAL mode, user_version 0."""
    (root / ".ingest").mkdir(parents=True, exist_ok=True)
    path = catalog_path(str(root))
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    for script in scripts:
        db.executescript(script)
    tables = _tables(db)
    with db:
        for table, rows in ROWS.items():
            if table in tables:
                marks = ",".join("?" * len(rows[0]))
                db.executemany(f"INSERT INTO {table} VALUES({marks})", rows)
        if "acceptances" in tables:
            fingerprint = ("card-1",) if "card_fingerprint" in _columns(db, "acceptances") else ()
            db.execute(f"INSERT INTO acceptances VALUES({','.join('?' * (10 + len(fingerprint)))})",
                       ACCEPTED + fingerprint)
    db.close()
    return path


def _tables(db: sqlite3.Connection) -> set[str]:
    return {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def _columns(db: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in db.execute(f"PRAGMA table_info({table})")]


def dump(path: str) -> dict:
    """Every table's columns and rows, every index, and user_version."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        out = {t: (_columns(db, t), sorted(db.execute(f"SELECT * FROM {t}"), key=repr))
               for t in _tables(db)}
        out["(indexes)"] = sorted(db.execute(
            "SELECT name, tbl_name FROM sqlite_master WHERE type='index' AND sql IS NOT NULL"))
        out["(user_version)"] = db.execute("PRAGMA user_version").fetchone()[0]
        return out
    finally:
        db.close()


def written(root: Path) -> tuple[bytes, int]:
    """The catalog's bytes and how many bytes of its WAL hold changes not yet in them. A
    reader may leave an empty -wal and the -shm index beside a WAL-mode catalog (SQLite's
    own files for reading it; `ingest status` always did); neither holds a change."""
    path = Path(catalog_path(str(root)))
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes(), wal.stat().st_size if wal.exists() else 0


@pytest.fixture(scope="module")
def current(tmp_path_factory) -> dict:
    """What this ingest makes of an empty folder."""
    root = tmp_path_factory.mktemp("fresh")
    Catalog(str(root)).close()
    return dump(catalog_path(str(root)))


# --- (a) the only sqlite3.connect ------------------------------------------------------------


def _connect_calls(tree: ast.AST) -> list[int]:
    """Lines that call sqlite3's connect, under any name it was imported as."""
    modules, functions = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {a.asname or a.name for a in node.names if a.name == "sqlite3"}
        elif isinstance(node, ast.ImportFrom) and node.module == "sqlite3":
            functions |= {a.asname or a.name for a in node.names if a.name == "connect"}
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if (isinstance(f, ast.Attribute) and f.attr == "connect" and isinstance(f.value, ast.Name)
                and f.value.id in modules) or (isinstance(f, ast.Name) and f.id in functions):
            lines.append(node.lineno)
    return lines


def test_only_the_catalog_module_connects_to_sqlite():
    package = Path(ingest.__file__).parent
    found = {}
    for path in sorted(package.rglob("*.py")):
        lines = _connect_calls(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        if lines:
            found[path.relative_to(package.parent).as_posix()] = lines
    assert set(found) == {"ingest/catalog.py"}, found


def test_the_scan_sees_every_spelling():
    src = ("import sqlite3\nimport sqlite3 as lite\nfrom sqlite3 import connect as c\n"
           "sqlite3.connect('a')\nlite.connect('b')\nc('c')\nother.connect('d')\n"
           "# sqlite3.connect('comment')\n")
    assert _connect_calls(ast.parse(src)) == [4, 5, 6]


# --- (b) every earlier layout migrates -------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
def test_an_earlier_catalog_migrates_keeping_every_row(tmp_path, layout, current):
    path = write_old(tmp_path, LAYOUTS[layout])
    before = dump(path)
    assert before["(user_version)"] == 0

    with Catalog(str(tmp_path)) as cat:
        # What the commands read works on it at once.
        assert [r.path for r in cat.by_hash(DIGEST)] == ["2026/a.CR3"]
        assert cat.last_checks() == ({1: "2026-11-28T00:00:00+00:00"}
                                     if "verify_state" in before else {})
        accepted = cat.acceptance("DCIM/c.CR3", 30, 333)
        assert (accepted is not None) == ("acceptances" in before)
    after = dump(path)

    # The same layout as a catalog this ingest creates.
    assert {t: v[0] for t, v in after.items() if not t.startswith("(")} \
        == {t: v[0] for t, v in current.items() if not t.startswith("(")}
    assert after["(indexes)"] == current["(indexes)"]
    assert after["(user_version)"] == SCHEMA_VERSION
    # Every row kept, with the columns it had (a column added later is NULL in old rows).
    for table, (columns, rows) in ((t, v) for t, v in before.items() if not t.startswith("(")):
        kept = {tuple(r[:len(columns)]) for r in after[table][1]}
        for row in rows:
            if table == "meta" and row[0] == "schema_version":
                continue  # kept in step with user_version
            assert tuple(row) in kept, (table, row)
    assert ("schema_version", str(SCHEMA_VERSION)) in after["meta"][1]

    # A second open finds nothing to do and writes nothing.
    files = written(tmp_path)
    with Catalog(str(tmp_path)) as cat:
        assert cat.db.total_changes == 0
    assert written(tmp_path) == files

    # And what the commands write goes into the tables an earlier ingest had not made.
    with Catalog(str(tmp_path)) as cat:
        cat.record_check(2, "s3", "2026-12-03T00:00:00+00:00", "verified", None)
        cat.record_peers([str(tmp_path), "/mnt/third"], "s3", "2026-12-03T00:00:00+00:00")
        cat.record_object("2026/b.JPG", 20, None, None, "2026-12-03T00:00:00+00:00")
        assert cat.last_checks()[2] == "2026-12-03T00:00:00+00:00"
        assert cat.recorded_peers()[0] == "/mnt/third"  # its own root is not a peer
        assert str(tmp_path) not in cat.recorded_peers()


def test_the_migration_is_one_transaction(tmp_path, monkeypatch):
    path = write_old(tmp_path, LAYOUTS["1a2bf02 offload, never verified"])
    before = dump(path)

    def broken(db):
        raise sqlite3.OperationalError("a step that fails after the others ran")

    monkeypatch.setattr(catalog_module, "MIGRATIONS", (*catalog_module.MIGRATIONS, broken))
    monkeypatch.setattr(catalog_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(sqlite3.OperationalError, match="a step that fails"):
        Catalog(str(tmp_path))
    assert dump(path) == before


def test_a_new_catalog_is_made_at_the_current_version(tmp_path, current):
    assert current["(user_version)"] == SCHEMA_VERSION
    assert {"files", "sessions", "checks", "meta", "verify_state", "peers", "remote_objects",
            "acceptances"} <= set(current)
    assert "card_fingerprint" in current["acceptances"][0]


# --- (c) a newer catalog is refused ----------------------------------------------------------


@pytest.fixture()
def newer(tmp_path) -> Path:
    """A catalog a future ingest wrote: one more migration, a table this one does not know."""
    with Catalog(str(tmp_path)) as cat:
        cat.start_session("s1", "offload", None, None, "2026-12-03T00:00:00+00:00", "9.9")
        cat.db.execute("CREATE TABLE future(x)")
        cat.db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    return tmp_path


def _is_refusal(message: str) -> None:
    assert "\n" not in message
    assert "newer version of ingest" in message
    assert f"catalog schema {SCHEMA_VERSION + 1}" in message
    assert "upgrade ingest" in message


def test_a_newer_catalog_is_refused_and_left_alone(newer):
    files = written(newer)
    with pytest.raises(CatalogTooNew) as e:
        Catalog(str(newer))
    assert isinstance(e.value, UsageError)  # exit 2, one line
    assert not isinstance(e.value, sqlite3.DatabaseError)  # never read as corrupt
    _is_refusal(str(e.value))
    assert str(newer) in str(e.value)
    # Not rebuilt either: the offload's open would otherwise move it aside as corrupt.
    with pytest.raises(CatalogTooNew):
        open_or_rebuild(str(newer))
    with pytest.raises(CatalogTooNew):
        open_readonly(catalog_path(str(newer)), label="the archive")
    assert written(newer) == files


def test_a_newer_catalog_may_be_read_where_the_caller_asks(newer):
    with open_readonly(catalog_path(str(newer)), allow_newer=True) as cat:
        assert cat.version == SCHEMA_VERSION + 1
        assert cat.all_rows() == []


def test_the_command_line_says_it_in_one_line_and_exits_2(newer):
    r = subprocess.run([sys.executable, "-m", "ingest", "verify", str(newer)],
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(Path(ingest.__file__).parent.parent)})
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    _is_refusal(lines[0])


# --- (d) read-only opens read what is there --------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_read_only_open_of_an_earlier_catalog_writes_nothing(tmp_path, layout):
    write_old(tmp_path, LAYOUTS[layout])
    scripts = LAYOUTS[layout]
    files = written(tmp_path)
    with open_readonly(catalog_path(str(tmp_path))) as cat:
        assert cat.version == 0
        assert [r.path for r in cat.all_rows()] == ["2026/a.CR3", "2026/b.JPG"]
        assert [r.id for r in cat.by_hash(DIGEST)] == [1]
        assert cat.by_path("2026/b.JPG").size == 20
        assert cat.last_checks() == ({1: "2026-11-28T00:00:00+00:00"}
                                     if VERIFY_STATE in scripts else {})
        assert cat.recorded_peers() == (["/mnt/other"] if PEERS in scripts else [])
        accepted = cat.acceptance("DCIM/c.CR3", 30, 333)
        if ACCEPTANCES_FIRST in scripts or ACCEPTANCES in scripts:
            assert accepted.digest == DIGEST
            assert accepted.card == ("card-1" if ACCEPTANCES in scripts or ALTERED in scripts
                                     else None)
        else:
            assert accepted is None
        assert cat.acceptance("DCIM/other.CR3", 1, 1) is None
    assert written(tmp_path) == files


def test_a_read_only_open_of_what_is_not_a_catalog_fails_as_sqlite_does(tmp_path):
    (tmp_path / "catalog.sqlite").write_bytes(b"not a database, " * 100)
    with pytest.raises(sqlite3.DatabaseError):
        open_readonly(str(tmp_path / "catalog.sqlite"))
    with pytest.raises(sqlite3.OperationalError):
        open_readonly(str(tmp_path / "missing.sqlite"))
    assert not (tmp_path / "missing.sqlite").exists()
