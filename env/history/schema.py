"""The run-history database schema and its migrations.

A database records its version in ``schema_version`` (one row). A new file is built
by running every migration from 0, so the path an old file takes is the path every
file takes. Version 1 is the first schema; version 2 adds a per-run summary (so
listing runs never scans the episodes) and the process that owns a running run (so
opening the database never marks another live process's run failed). Version 3 marks the
runs a control room recorded from the network (``followed``) rather than where they were played.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

V1 = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE runs (
    run_uid       TEXT PRIMARY KEY,
    number        INTEGER NOT NULL UNIQUE,
    episodes      INTEGER NOT NULL,
    deterministic INTEGER NOT NULL,
    seed          INTEGER,
    env_id        TEXT NOT NULL,
    address       TEXT NOT NULL,
    started       REAL NOT NULL,
    ended         REAL,
    avg_score     REAL,
    state         TEXT NOT NULL CHECK (state IN ('running', 'done', 'stopped', 'failed'))
);
CREATE TABLE episodes (
    run_uid   TEXT NOT NULL REFERENCES runs (run_uid),
    idx       INTEGER NOT NULL,
    score     REAL NOT NULL,
    steps     INTEGER NOT NULL,
    wall_time REAL NOT NULL,
    PRIMARY KEY (run_uid, idx)
) WITHOUT ROWID;
INSERT INTO schema_version (version) VALUES (1);
"""

V2 = """
ALTER TABLE runs ADD COLUMN finished INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN best REAL;
ALTER TABLE runs ADD COLUMN total_steps INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN last_episode_at REAL;
ALTER TABLE runs ADD COLUMN owner_pid INTEGER;
ALTER TABLE runs ADD COLUMN owner_host TEXT;
UPDATE runs SET
    finished = (SELECT count(*) FROM episodes e WHERE e.run_uid = runs.run_uid),
    best = (SELECT max(score) FROM episodes e WHERE e.run_uid = runs.run_uid),
    total_steps = (SELECT coalesce(sum(steps), 0) FROM episodes e WHERE e.run_uid = runs.run_uid),
    last_episode_at = (SELECT max(wall_time) FROM episodes e WHERE e.run_uid = runs.run_uid);
UPDATE schema_version SET version = 2;
"""

V3 = """
ALTER TABLE runs ADD COLUMN followed INTEGER NOT NULL DEFAULT 0;
UPDATE schema_version SET version = 3;
"""

MIGRATIONS = (V1, V2, V3)  # MIGRATIONS[i] takes a database from version i to i + 1
VERSION = len(MIGRATIONS)

RUN_COLUMNS = (
    "number, run_uid, episodes, deterministic, seed, env_id, address, started, ended, "
    "avg_score, state, finished, best, total_steps, last_episode_at, followed"
)


class UnusableSchema(Exception):
    """A database this program must not write to: from a newer version, or not ours at all."""


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` on an autocommit connection; rolled back on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # SQLite may already have rolled back (e.g. on SQLITE_FULL)
            conn.execute("ROLLBACK")
        raise


def version_of(conn: sqlite3.Connection) -> int:
    """The schema version of ``conn``'s database; 0 for an empty database."""
    tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "schema_version" not in tables:
        if tables:
            raise UnusableSchema("is not a cartpole-tui run history")
        return 0
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    found = int(row[0]) if row else 0
    if found > VERSION:
        raise UnusableSchema(f"was made by a newer cartpole-tui (schema {found}, this one knows {VERSION})")
    return found


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the database up to :data:`VERSION` in one transaction; returns the version found.

    ``conn`` must be in autocommit mode (``isolation_level=None``). Raises
    :class:`UnusableSchema` for a database from a newer version or another program.
    """
    found = version_of(conn)
    if found == VERSION:
        return found
    with transaction(conn):
        found = version_of(conn)  # another process may have migrated while we waited
        for script in MIGRATIONS[found:]:
            for statement in script.split(";"):
                if statement.strip():
                    conn.execute(statement)
    return found
