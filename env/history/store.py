"""Run history in SQLite: every run and every episode, written as it arrives.

The caller (the app's thread, the environment's thread) only updates the store's
in-memory copy and enqueues; one writer thread (env/history/writer.py) owns the write
connection and commits whatever is queued in one transaction, at most ``LINGER`` seconds
after it arrived. WAL mode with ``synchronous=NORMAL``: a committed episode survives the
process being killed (not a power cut). This module opens the file, keeps the session in
memory, answers the reads and is the public face: :class:`RunStore`.

A lock held by another writer past the busy time-out only delays writes: they are kept
(up to MAX_BACKLOG) and retried, and ``on_error`` is told once when they are delayed and once
when they caught up. When storage goes bad (corrupt file, locked at open, read-only, full disk)
the store says so once through ``on_error``, stops writing to the file and keeps the
session in memory; reads then come from memory (and, where it can still be read, the
file). Nothing already committed to the file is touched.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import socket
import sqlite3
import threading
import weakref
from array import array
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from numpy.typing import NDArray

from cartpole_tui.env import defaults
from cartpole_tui.env.history.failures import describe, writable
from cartpole_tui.env.history.records import END_STATES, Episode, RunParams, RunRecord
from cartpole_tui.env.history.schema import RUN_COLUMNS, UnusableSchema, migrate, transaction, version_of
from cartpole_tui.env.history.writer import AddEpisode, BeginRun, EndRun, Unrecorded, Writer
from cartpole_tui.env.paths import NotRegularFile, default_db_path, refuse_special

# The store is where its callers find the values it hands out.
__all__ = ["END_STATES", "MEMORY", "Episode", "RunParams", "RunRecord", "RunStore"]

MEMORY = ":memory:"
DEFAULT_BUSY_TIMEOUT = 5.0
HOST = socket.gethostname()
_MAPPED = defaults.EPISODES_MAX + 1  # episode numbers a run gives (1..its episodes): a bit each, 125 KB at most
_INT64 = -(2**63)  # SQLite's and array("q")'s smallest integer; the largest is -_INT64 - 1

log = logging.getLogger(__name__)


class _Episodes:
    """A session run's episodes, column by column (compact at a million episodes)."""

    def __init__(self) -> None:
        self.index, self.score = array("q"), array("d")
        self.steps, self.wall_time = array("q"), array("d")
        self.highest = 0  # the highest index recorded
        self.seen = bytearray()  # bit i: episode i is recorded (0 <= i < _MAPPED; grown as they come)

    def copy(self) -> _Episodes:
        """A snapshot (a memcpy per column: cheap to take under the store's lock)."""
        other = _Episodes()
        for name in ("index", "score", "steps", "wall_time"):
            getattr(other, name).extend(getattr(self, name))
        return other

    def rows(self) -> list[Episode]:
        """In index order (a vectorised run's episodes end out of it)."""
        return sorted(Episode(*row) for row in zip(self.index, self.score, self.steps, self.wall_time))

    def column(self, name: str) -> np.ndarray:
        """One column as float64, in index order."""
        values = np.array(getattr(self, name), dtype=np.float64)
        index = np.frombuffer(self.index, dtype=np.int64) if len(self.index) else np.zeros(0, dtype=np.int64)
        return values[np.argsort(index, kind="stable")]

    def has(self, index: int) -> bool:
        """Whether episode ``index`` is recorded: a bit for the numbers a run gives (a scan of the
        column for each, at 1,000 instances ending out of order, took most of a recorded run)."""
        if index > self.highest:
            return False
        if 0 <= index < _MAPPED:
            byte = index >> 3
            return byte < len(self.seen) and bool(self.seen[byte] >> (index & 7) & 1)
        return index in self.index  # a number no run of ours gives: the column is scanned

    def add(self, index: int, score: float, steps: int, wall_time: float) -> None:
        self.index.append(index)
        self.score.append(score)
        self.steps.append(steps)
        self.wall_time.append(wall_time)
        self.highest = max(self.highest, index)
        if 0 <= index < _MAPPED:
            byte = index >> 3
            if byte >= len(self.seen):  # doubled (amortised), never past the map
                size = min(max(byte + 1, 2 * len(self.seen)), _MAPPED // 8 + 1)
                self.seen.extend(bytes(size - len(self.seen)))
            self.seen[byte] |= 1 << (index & 7)


def _pid_alive(pid: int | None, host: str | None) -> bool:
    if pid is None or host != HOST:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_open_stores: weakref.WeakSet[RunStore] = weakref.WeakSet()


@atexit.register
def _close_open_stores() -> None:
    """Write what is queued before the interpreter kills the (daemon) writer threads."""
    for store in list(_open_stores):
        store.close()


class RunStore:
    """Run history backed by one SQLite file (or by memory alone for ``":memory:"``).

    Build it with :meth:`open`. Writes (``begin_run``, ``add_episode``, ``end_run``)
    never touch the disk in the caller's thread. ``on_error`` is called once when storage
    is given up (and on a delayed/caught-up lock), from the opening or the writer thread.
    """

    def __init__(
        self, path: str, on_error: Callable[[str], None] | None, busy_timeout: float, max_bytes: int | None
    ) -> None:
        self.path = path
        self.error: str | None = None  # the message given to on_error, once storage went bad
        self._on_error = on_error
        self._error_lock = threading.Lock()
        self._busy_timeout = busy_timeout
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._runs: dict[str, RunRecord] = {}
        self._session: dict[str, _Episodes] = {}
        self._unrecorded: dict[str, int] = {}  # a joined run's steps of episodes it has no rows of
        self._next_number = 1
        self._revision = 0
        self.duplicate_episodes = 0  # second copies of a recorded episode, refused
        self._reader: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()
        self._writer = Writer(path, report=self._report, notice=self._notice, renumber=self._renumber)
        self._closed = False

    @classmethod
    def open(
        cls,
        path: str | None = None,
        on_error: Callable[[str], None] | None = None,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        max_bytes: int | None = None,
        read_only: bool = False,
    ) -> RunStore:
        """Open (creating or migrating) the history at ``path``; None means :func:`default_db_path`.

        Loads the past runs and marks runs left "running" by a dead process as failed.
        ``busy_timeout`` is how long a write waits for another writer before the store
        gives up on the file; ``max_bytes`` caps the file's size (writes beyond it fail
        as on a full disk).
        """
        store = cls(path or default_db_path(), on_error, busy_timeout, max_bytes)
        disk = None  # the writer's connection; None in memory mode
        if read_only and store.path != MEMORY:  # export: nothing written, so a read-only filesystem is fine
            store._open_read_only()
        elif store.path != MEMORY:
            disk = store._open_disk()
        store._writer.start(disk)
        _open_stores.add(store)
        return store

    # --- opening -----------------------------------------------------------------

    def _open_disk(self) -> sqlite3.Connection | None:
        """The writer's connection, the past runs loaded; None when the file cannot be used."""
        conn = None
        try:
            refuse_special(self.path)  # a FIFO blocks SQLite; beside a device it makes -journal files
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False)
            version_of(conn)  # refuse a file that isn't ours before changing anything in it
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            if self._max_bytes is not None:
                page_size = conn.execute("PRAGMA page_size").fetchone()[0]
                conn.execute(f"PRAGMA max_page_count={max(1, self._max_bytes // page_size)}")
            migrate(conn)
            self._recover(conn)
            self._load(conn)
            return conn
        except (OSError, sqlite3.Error, UnusableSchema) as error:
            if conn is not None:
                conn.close()
            self._report(describe(error, self.path))
            self._runs.clear()
            if not isinstance(error, NotRegularFile):
                self._load_readable()
            return None

    def _open_read_only(self) -> None:
        try:
            refuse_special(self.path)
            conn = self._read_connection()
            version_of(conn)
            self._load(conn)
        except (NotRegularFile, sqlite3.Error, UnusableSchema) as error:
            self._runs.clear()
            self._report(describe(error, self.path, in_memory=False))

    @staticmethod
    def _recover(conn: sqlite3.Connection) -> None:
        """Mark runs whose owning process is gone (a crash) as failed; keep their episodes."""
        rows = conn.execute("SELECT run_uid, owner_pid, owner_host FROM runs WHERE state = 'running'").fetchall()
        dead = [(uid,) for uid, pid, host in rows if not _pid_alive(pid, host)]
        if not dead:
            return
        with transaction(conn):
            conn.executemany(
                "UPDATE runs SET state = 'failed', ended = coalesce(ended, last_episode_at, started) "
                "WHERE run_uid = ? AND state = 'running'",
                dead,
            )

    def _load(self, conn: sqlite3.Connection) -> None:
        for row in conn.execute(f"SELECT {RUN_COLUMNS} FROM runs ORDER BY number"):
            (
                number,
                uid,
                episodes,
                det,
                seed,
                env_id,
                address,
                started,
                ended,
                avg,
                state,
                finished,
                best,
                total_steps,
                last_at,
                followed,
            ) = row
            params = RunParams(episodes, bool(det), seed, env_id, address)
            self._runs[uid] = RunRecord(
                number, uid, params, started, ended, avg, state, finished, best, total_steps, last_at, bool(followed)
            )
            self._next_number = max(self._next_number, number + 1)

    def holds(self, history: tuple[str, str]) -> bool:
        """Whether ``history`` ((host, path), as an environment announces it) is this store's file."""
        host, path = history
        if self.path == MEMORY or host != HOST:
            return False
        try:
            return os.path.samefile(path, self.path)
        except OSError:
            return False

    def refresh(self) -> bool:
        """Read the runs another process writes into this file (its environment's) anew; True when
        something changed. The runs this session records are left as they are in memory."""
        if self.path == MEMORY:
            return False
        with self._lock:
            watched = [uid for uid, r in self._runs.items() if r.state == "running" and uid not in self._session]
            newest = self._next_number
        marks = ",".join("?" * len(watched))
        where = f"number >= ? OR run_uid IN ({marks})" if watched else "number >= ?"
        try:
            with self._read_lock:
                rows = (
                    self._read_connection()
                    .execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE {where} ORDER BY number", (newest, *watched))
                    .fetchall()
                )
        except sqlite3.Error as error:
            log.debug("refresh of %s failed: %s", self.path, error)
            return False
        changed = False
        with self._lock:
            for row in rows:
                number, uid, episodes, det, seed, env_id, address, started, *rest = row
                if uid in self._session:
                    continue
                params = RunParams(episodes, bool(det), seed, env_id, address)
                ended, avg, state, finished, best, total_steps, last_at, followed = rest
                record = RunRecord(
                    number,
                    uid,
                    params,
                    started,
                    ended,
                    avg,
                    state,
                    finished,
                    best,
                    total_steps,
                    last_at,
                    bool(followed),
                )
                if self._runs.get(uid) != record:
                    self._runs[uid] = record
                    self._next_number = max(self._next_number, number + 1)
                    changed = True
            if changed:
                self._revision += 1
        return changed

    def _load_readable(self) -> None:
        """After a failed open, still show past runs if the file can be read."""
        try:
            self._load(self._read_connection())
        except (sqlite3.Error, UnusableSchema):
            self._runs.clear()

    def _read_connection(self) -> sqlite3.Connection:
        if self._reader is None:
            self._reader = self._open_reader()
        return self._reader

    def _open_reader(self) -> sqlite3.Connection:
        """A read-only connection. On a read-only filesystem SQLite cannot make the WAL index
        (CANTOPEN); nobody can be writing there, so the file is then read as immutable."""
        uri = f"file:{quote(os.path.abspath(self.path))}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=self._busy_timeout, check_same_thread=False)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError:
            conn.close()
            if writable(self.path):
                raise
        return sqlite3.connect(uri + "&immutable=1", uri=True, check_same_thread=False)

    # --- writing (caller's thread: memory and queue only) ----------------------------

    def begin_run(
        self,
        run_uid: str,
        *,
        episodes: int,
        deterministic: bool,
        seed: int | None,
        env_id: str,
        address: str,
        started: float,
        followed: bool = False,
    ) -> int:
        """Record a new running run; returns its number (1, 2, 3 … across the file). ``followed``:
        recorded from the network by a control room, not by the process that plays it."""
        params = RunParams(int(episodes), bool(deterministic), seed, env_id, address)
        with self._lock:
            if run_uid in self._runs:
                raise ValueError(f"run {run_uid} already exists")
            number = self._next_number
            self._next_number += 1
            self._runs[run_uid] = RunRecord(number, run_uid, params, float(started), followed=followed)
            self._session[run_uid] = _Episodes()
            self._revision += 1
            self._writer.put(BeginRun(run_uid, number, params, float(started), os.getpid(), HOST, followed))
        return number

    def add_episode(self, run_uid: str, index: int, score: float, steps: int, wall_time: float) -> bool:
        """Record a finished episode of a run begun in this session (``wall_time``: Unix seconds
        when it ended); KeyError for any other run, ValueError (nothing recorded) for a value
        SQLite or the columns cannot hold. False (nothing recorded, ``duplicate_episodes`` counts it)
        for a second copy of a recorded episode: the first wins."""
        index, score, steps, wall_time = int(index), float(score), int(steps), float(wall_time)
        in_range = all(_INT64 <= value < -_INT64 for value in (index, steps))
        if not in_range or not (math.isfinite(score) and math.isfinite(wall_time)):
            raise ValueError(f"episode {index} of run {run_uid}: a value out of range (score {score}, steps {steps})")
        with self._lock:
            record, episodes = self._runs[run_uid], self._session[run_uid]
            if episodes.has(index):
                self.duplicate_episodes += 1
                return False
            episodes.add(index, score, steps, wall_time)
            record.finished += 1
            record.best = score if record.best is None else max(record.best, score)
            record.total_steps += steps
            if record.last_episode_at is None or wall_time > record.last_episode_at:
                record.last_episode_at = wall_time
            self._revision += 1
            self._writer.put(
                AddEpisode(
                    run_uid,
                    index,
                    score,
                    steps,
                    wall_time,
                    record.finished,
                    record.best,
                    record.total_steps,
                    record.last_episode_at,
                )
            )
        return True

    def add_unrecorded(
        self, run_uid: str, finished_steps: int, best: float | None, coming: dict[int, int] | None = None
    ) -> None:
        """The steps and best score of episodes of a run begun in this session that it has no rows
        of: a run joined mid-run, told them in the environment's RUN_STATE. ``finished_steps``: all
        its finished episodes' steps, as told (FINISHED_STEPS); ``coming``: episodes (number: steps)
        that FINISHED_STEPS counts and that are recorded after this call. The steps of neither its
        rows nor ``coming`` are the unrecorded ones; a room joining the same run again (a reconnect)
        replaces them, so none is counted twice. Its steps/s is then the run's (the recorded
        episodes' steps over the whole run's time read 25,895 for 37,682). Its count of episodes
        stays what it recorded. KeyError for any other run, ValueError (nothing changed) for a
        value out of range."""
        finished_steps = int(finished_steps)
        if not 0 <= finished_steps < -_INT64 or (best is not None and not math.isfinite(best)):
            raise ValueError(f"run {run_uid}: unrecorded figures out of range (steps {finished_steps}, best {best})")
        with self._lock:
            record, episodes = self._runs[run_uid], self._session[run_uid]  # begun here, as add_episode's
            pending = sum(n for index, n in (coming or {}).items() if not episodes.has(index))
            unrecorded = max(0, finished_steps - sum(episodes.steps) - pending)
            before = self._unrecorded.get(run_uid, 0)
            if unrecorded > before:
                if record.total_steps + unrecorded - before >= -_INT64:
                    raise ValueError(f"run {run_uid}: unrecorded steps {unrecorded} past SQLite's integers")
                record.total_steps += unrecorded - before
                self._unrecorded[run_uid] = unrecorded
            if best is not None:
                record.best = best if record.best is None else max(record.best, best)
            self._revision += 1
            self._writer.put(
                Unrecorded(run_uid, record.finished, record.best, record.total_steps, record.last_episode_at)
            )

    def end_run(self, run_uid: str, *, avg_score: float | None, state: str, ended: float) -> None:
        """Close a run begun in this session: ``state`` is "done" (ENV_DONE arrived), "stopped" or
        "failed"; KeyError for any other run (another process's run is never ended here)."""
        if state not in END_STATES:
            raise ValueError(f"state must be one of {END_STATES}, not {state!r}")
        avg = None if avg_score is None else float(avg_score)
        with self._lock:
            if run_uid not in self._session:
                raise KeyError(run_uid)
            record = self._runs[run_uid]
            if record.finished == 0 and not avg:  # ENV_DONE's 0.0 over no episode: no average (Acrobot's best is < 0)
                avg = None
            record.avg_score, record.state, record.ended = avg, state, float(ended)
            self._revision += 1
            self._writer.put(EndRun(run_uid, avg, state, float(ended)))

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued so far is committed (or given up on); False on timeout."""
        return self._writer.flush(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop the writer and close the file."""
        if self._closed:
            return
        self._closed = True
        self._writer.stop(timeout)
        with self._read_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- reading ---------------------------------------------------------------------

    @property
    def on_disk(self) -> bool:
        """True while runs are being saved to the file."""
        return self._writer.on_disk

    @property
    def revision(self) -> int:
        """Grows with every change to what :meth:`runs` returns: redraw only when it moved."""
        return self._revision

    def runs(self) -> list[RunRecord]:
        """Every run, past and current, by number (copies: safe to keep). Never touches disk."""
        with self._lock:
            return [replace(r) for r in sorted(self._runs.values(), key=lambda r: r.number)]

    def has_run(self, run_uid: str) -> bool:
        """Whether the file holds a run of this id (past or current). Never touches disk."""
        with self._lock:
            return run_uid in self._runs

    def run(self, number: int) -> RunRecord | None:
        """The run with this number, or None."""
        return next((r for r in self.runs() if r.number == number), None)

    def episodes(self, run_uid: str) -> list[Episode]:
        """A run's episodes in index order (not always the order they finished): from memory
        for this session's runs, else from the file (a read in the caller's thread)."""
        with self._lock:
            session = self._session.get(run_uid)
            snapshot = session.copy() if session is not None else None
        if snapshot is not None:
            return snapshot.rows()
        return [Episode(*row) for row in self._read_episodes(run_uid, "idx, score, steps, wall_time")]

    def episode_scores(self, run_uid: str) -> NDArray[np.float64]:
        """A run's episode scores in index order, as float64 (for plots and comparisons)."""
        return self._episode_column(run_uid, "score")

    def episode_times(self, run_uid: str) -> NDArray[np.float64]:
        """When each of a run's episodes ended (Unix seconds), in index order, as float64."""
        return self._episode_column(run_uid, "wall_time")

    def _episode_column(self, run_uid: str, column: str) -> NDArray[np.float64]:
        with self._lock:
            if run_uid in self._session:
                return self._session[run_uid].column(column)
        rows = self._read_episodes(run_uid, column)
        return np.fromiter((value for (value,) in rows), dtype=np.float64, count=len(rows))

    def _read_episodes(self, run_uid: str, columns: str) -> list[tuple[Any, ...]]:
        if self.path == MEMORY:
            return []
        try:
            with self._read_lock:
                return (
                    self._read_connection()
                    .execute(f"SELECT {columns} FROM episodes WHERE run_uid = ? ORDER BY idx", (run_uid,))
                    .fetchall()
                )
        except sqlite3.Error as error:
            self._report(describe(error, self.path))
            return []

    # --- telling (the opening, reading and writer threads) ---------------------------------

    def _report(self, message: str) -> None:
        """Storage went bad: ``on_error`` is told the first time only."""
        with self._error_lock:
            first, self.error = self.error is None, self.error or message
        if not first:
            log.debug("further storage error: %s", message)
            return
        if self._on_error is None:
            log.warning("%s", message)
            return
        try:
            self._on_error(message)
        except Exception:  # the callback's bug must not stop the writer
            log.exception("on_error callback failed")

    def _notice(self, message: str) -> None:
        """Tell (through ``on_error``) about a passing problem; the file is not given up."""
        log.warning("%s", message)
        if self._on_error is not None:
            try:
                self._on_error(message)
            except Exception:
                log.exception("on_error callback failed")

    def _renumber(self, run_uid: str, number: int) -> None:
        """The writer found ``run_uid``'s number taken by another process: it has ``number`` now."""
        with self._lock:
            self._runs[run_uid].number = number
            self._revision += 1
            self._next_number = max(self._next_number, number + 1)
