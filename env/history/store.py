"""Run history in SQLite: every run and every episode, written as it arrives.

The caller (the app's thread, the environment's thread) only updates the store's
in-memory copy and enqueues; one writer thread owns the write connection and commits
whatever is queued in one transaction, at most :data:`LINGER` seconds after it
arrived. WAL mode with ``synchronous=NORMAL``: a committed episode survives the
process being killed (not a power cut).

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
import os
import queue
import socket
import sqlite3
import threading
import weakref
from array import array
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote

import numpy as np

from cartpole_tui.env.history.schema import RUN_COLUMNS, UnusableSchema, migrate, transaction, version_of
from cartpole_tui.env.paths import default_db_path

MEMORY = ":memory:"
LINGER = 0.05  # seconds between the writer's batches; an episode waits at most this long
DEFAULT_BUSY_TIMEOUT = 5.0
MAX_BACKLOG = 200_000  # writes kept while another writer holds the lock; beyond, the file is given up
END_STATES = ("done", "stopped", "failed")
HOST = socket.gethostname()

log = logging.getLogger(__name__)

# SQLite primary result codes (sqlite3.h), for telling bad storage apart.
_BUSY, _LOCKED, _READONLY, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = 5, 6, 8, 11, 13, 14, 26


@dataclass(frozen=True)
class RunParams:
    """What a run was started with."""

    episodes: int
    deterministic: bool
    seed: int | None
    env_id: str
    address: str


@dataclass
class RunRecord:
    """One run as the runs table shows it; ``finished`` counts its recorded episodes."""

    number: int
    run_uid: str
    params: RunParams
    started: float
    ended: float | None = None
    avg_score: float | None = None
    state: str = "running"
    finished: int = 0
    best: float | None = None
    total_steps: int = 0
    last_episode_at: float | None = None

    @property
    def duration(self) -> float | None:
        """Seconds from its start to its end, or to its last episode while running."""
        end = self.ended if self.ended is not None else self.last_episode_at
        return None if end is None else max(0.0, end - self.started)

    @property
    def steps_per_s(self) -> float | None:
        """Environment steps per second of wall time over :attr:`duration`."""
        duration = self.duration
        return self.total_steps / duration if duration else None


class Episode(NamedTuple):
    """One finished episode; ``wall_time`` is when it finished (Unix seconds)."""

    index: int
    score: float
    steps: int
    wall_time: float


class _Episodes:
    """A session run's episodes, column by column (compact at a million episodes)."""

    def __init__(self) -> None:
        self.index, self.score = array("q"), array("d")
        self.steps, self.wall_time = array("q"), array("d")

    def copy(self) -> _Episodes:
        """A snapshot (a memcpy per column: cheap to take under the store's lock)."""
        other = _Episodes()
        for name in ("index", "score", "steps", "wall_time"):
            getattr(other, name).extend(getattr(self, name))
        return other

    def rows(self) -> list[Episode]:
        return [Episode(*row) for row in zip(self.index, self.score, self.steps, self.wall_time)]


def _primary_code(error: BaseException) -> int | None:
    code = getattr(error, "sqlite_errorcode", None)  # Python 3.11+
    return code & 0xFF if code is not None else None


def _writable(path: str) -> bool:
    """Whether ``path`` (or, before it exists, its folder) may be written: false on a read-only
    filesystem or an immutable file, even for root."""
    return os.access(path if os.path.exists(path) else os.path.dirname(os.path.abspath(path)), os.W_OK)


def describe(error: BaseException, path: str, *, in_memory: bool = True) -> str:
    """One clear sentence about what is wrong with the database at ``path``; ``in_memory``: and that
    the session carries on in memory (a store opened for writing; a read, the export, just fails)."""
    text = str(error)
    primary = _primary_code(error)
    detail = f" ({text})"
    if isinstance(error, UnusableSchema):
        what, detail = text, ""
    elif isinstance(error, OSError):
        what = "cannot be created"
    elif primary in (_CORRUPT, _NOTADB) or "not a database" in text or "malformed" in text:
        what = "is corrupt or not a database"
    elif primary in (_BUSY, _LOCKED) or "locked" in text:
        what = "is locked by another writer"
    elif primary == _READONLY or "readonly" in text or not _writable(path):
        what = "is read-only"
    elif primary == _FULL or "full" in text:
        what = "is full"
    elif primary == _CANTOPEN or "unable to open" in text:
        what = "cannot be opened"
    else:
        what = "failed"
    if not in_memory:
        return f"Run history {path} {what}{detail}."
    return (
        f"Run history {path} {what}{detail}: this session's runs are kept in memory "
        "only; runs already saved there are left as they are."
    )


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


_RUN, _EPISODE, _END = "run", "episode", "end"
_STOP = object()
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
        self._next_number = 1
        self._revision = 0
        self._disk: sqlite3.Connection | None = None  # the writer's; None in memory mode
        self._reader: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._wake = threading.Event()
        self._writer = threading.Thread(target=self._write_loop, name="run-store-writer", daemon=True)
        self._closed = False
        self._backlog: list[tuple] = []  # writes a lock held back, retried with the next batch
        self._delayed = False

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
        if read_only and store.path != MEMORY:  # export: nothing written, so a read-only filesystem is fine
            store._open_read_only()
        elif store.path != MEMORY:
            store._open_disk()
        store._writer.start()
        _open_stores.add(store)
        return store

    # --- opening -----------------------------------------------------------------

    def _open_disk(self) -> None:
        conn = None
        try:
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
            self._disk = conn
        except (OSError, sqlite3.Error, UnusableSchema) as error:
            if conn is not None:
                conn.close()
            self._report(describe(error, self.path))
            self._runs.clear()
            self._load_readable()

    def _open_read_only(self) -> None:
        try:
            conn = self._read_connection()
            version_of(conn)
            self._load(conn)
        except (sqlite3.Error, UnusableSchema) as error:
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
            ) = row
            params = RunParams(episodes, bool(det), seed, env_id, address)
            self._runs[uid] = RunRecord(
                number, uid, params, started, ended, avg, state, finished, best, total_steps, last_at
            )
            self._next_number = max(self._next_number, number + 1)

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
            if _writable(self.path):
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
    ) -> int:
        """Record a new running run; returns its number (1, 2, 3 … across the file)."""
        params = RunParams(int(episodes), bool(deterministic), seed, env_id, address)
        with self._lock:
            if run_uid in self._runs:
                raise ValueError(f"run {run_uid} already exists")
            number = self._next_number
            self._next_number += 1
            self._runs[run_uid] = RunRecord(number, run_uid, params, float(started))
            self._session[run_uid] = _Episodes()
            self._revision += 1
            self._queue.put((_RUN, run_uid, number, params, float(started), os.getpid(), HOST))
        return number

    def add_episode(self, run_uid: str, index: int, score: float, steps: int, wall_time: float) -> None:
        """Record a finished episode of a run begun in this session (``wall_time``: Unix seconds
        when it ended); KeyError for any other run."""
        index, score, steps, wall_time = int(index), float(score), int(steps), float(wall_time)
        with self._lock:
            record, episodes = self._runs[run_uid], self._session[run_uid]
            episodes.index.append(index)
            episodes.score.append(score)
            episodes.steps.append(steps)
            episodes.wall_time.append(wall_time)
            record.finished += 1
            record.best = score if record.best is None else max(record.best, score)
            record.total_steps += steps
            if record.last_episode_at is None or wall_time > record.last_episode_at:
                record.last_episode_at = wall_time
            self._revision += 1
            self._queue.put(
                (
                    _EPISODE,
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

    def end_run(self, run_uid: str, *, avg_score: float | None, state: str, ended: float) -> None:
        """Close a run: ``state`` is "done" (ENV_DONE arrived), "stopped" or "failed"."""
        if state not in END_STATES:
            raise ValueError(f"state must be one of {END_STATES}, not {state!r}")
        avg = None if avg_score is None else float(avg_score)
        with self._lock:
            record = self._runs[run_uid]
            record.avg_score, record.state, record.ended = avg, state, float(ended)
            self._revision += 1
            self._queue.put((_END, run_uid, avg, state, float(ended)))

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued so far is committed (or given up on); False on timeout."""
        if not self._writer.is_alive():
            return True
        done = threading.Event()
        self._queue.put(done)
        self._wake.set()
        return done.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop the writer and close the file."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._wake.set()
        self._writer.join(timeout)
        with self._read_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- reading ---------------------------------------------------------------------

    @property
    def on_disk(self) -> bool:
        """True while runs are being saved to the file."""
        return self._disk is not None

    @property
    def revision(self) -> int:
        """Grows with every change to what :meth:`runs` returns: redraw only when it moved."""
        return self._revision

    def runs(self) -> list[RunRecord]:
        """Every run, past and current, by number (copies: safe to keep). Never touches disk."""
        with self._lock:
            return [replace(r) for r in sorted(self._runs.values(), key=lambda r: r.number)]

    def run(self, number: int) -> RunRecord | None:
        """The run with this number, or None."""
        return next((r for r in self.runs() if r.number == number), None)

    def episodes(self, run_uid: str) -> list[Episode]:
        """A run's episodes (in index order, which is the order they finished): from memory
        for this session's runs, else from the file (a read in the caller's thread)."""
        with self._lock:
            session = self._session.get(run_uid)
            snapshot = session.copy() if session is not None else None
        if snapshot is not None:
            return snapshot.rows()
        return [Episode(*row) for row in self._read_episodes(run_uid, "idx, score, steps, wall_time")]

    def episode_scores(self, run_uid: str) -> np.ndarray:
        """A run's episode scores in index order, as float64 (for plots and comparisons)."""
        return self._episode_column(run_uid, "score")

    def episode_times(self, run_uid: str) -> np.ndarray:
        """When each of a run's episodes ended (Unix seconds), in index order, as float64."""
        return self._episode_column(run_uid, "wall_time")

    def _episode_column(self, run_uid: str, column: str) -> np.ndarray:
        with self._lock:
            if run_uid in self._session:
                return np.array(getattr(self._session[run_uid], column), dtype=np.float64)
        rows = self._read_episodes(run_uid, column)
        return np.fromiter((value for (value,) in rows), dtype=np.float64, count=len(rows))

    def _read_episodes(self, run_uid: str, columns: str) -> list[tuple]:
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

    # --- the writer thread -------------------------------------------------------------

    def _report(self, message: str) -> None:
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

    def _write_loop(self) -> None:
        # The writer polls rather than blocking on the queue: beside a busy gymnasium loop,
        # waking a thread blocked on a queue cost ~390 µs of CPU, a timed wait's wake-up
        # ~40 µs (measured here); idle, 20 polls a second cost under 1 ms of CPU a second.
        while True:
            self._wake.wait(LINGER)  # flush() and close() cut this short
            self._wake.clear()
            batch = []
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._write([op for op in batch if isinstance(op, tuple)])
            for op in batch:
                if isinstance(op, threading.Event):
                    op.set()
            if any(op is _STOP for op in batch):
                if self._disk is not None:
                    self._disk.close()
                    self._disk = None
                return

    def _write(self, ops: list[tuple]) -> None:
        conn = self._disk
        ops = self._backlog + ops
        self._backlog = []
        if conn is None or not ops:
            return
        try:
            with transaction(conn):
                self._apply(conn, ops)
        except sqlite3.OperationalError as error:
            if _primary_code(error) in (_BUSY, _LOCKED) and len(ops) <= MAX_BACKLOG:
                self._delay(ops, error)  # another writer holds the lock: keep the ops, try again
                return
            self._give_up(conn, error)
        except Exception as error:  # whatever it is, the file is given up, the session kept
            self._give_up(conn, error)
            return
        if self._delayed:
            self._delayed = False
            self._notice(f"Run history {self.path}: caught up, {len(ops)} delayed writes saved.")

    def _delay(self, ops: list[tuple], error: sqlite3.Error) -> None:
        self._backlog = ops
        if not self._delayed:
            self._delayed = True
            self._notice(
                f"Run history {self.path} is locked by another writer ({error}): writes are delayed "
                f"and retried (up to {MAX_BACKLOG:,} kept in memory)."
            )

    def _give_up(self, conn: sqlite3.Connection, error: BaseException) -> None:
        conn.close()
        self._disk = None
        self._backlog = []
        self._report(describe(error, self.path))

    def _notice(self, message: str) -> None:
        """Tell (through ``on_error``) about a passing problem; the file is not given up."""
        log.warning("%s", message)
        if self._on_error is not None:
            try:
                self._on_error(message)
            except Exception:
                log.exception("on_error callback failed")

    def _apply(self, conn: sqlite3.Connection, ops: list[tuple]) -> None:
        """Queue order is kept: a run's row goes in before its episodes."""
        episodes: list[tuple] = []
        summaries: dict[str, tuple] = {}  # the latest per run wins
        for op in ops:
            if op[0] == _EPISODE:
                episodes.append(op[1:6])
                summaries[op[1]] = op[6:]
                continue
            self._insert_episodes(conn, episodes)
            if op[0] == _RUN:
                self._insert_run(conn, *op[1:])
            else:
                _, uid, avg, state, ended = op
                conn.execute(
                    "UPDATE runs SET avg_score = ?, state = ?, ended = ? WHERE run_uid = ?", (avg, state, ended, uid)
                )
        self._insert_episodes(conn, episodes)
        conn.executemany(
            "UPDATE runs SET finished = ?, best = ?, total_steps = ?, last_episode_at = ? WHERE run_uid = ?",
            [(*summary, uid) for uid, summary in summaries.items()],
        )

    @staticmethod
    def _insert_episodes(conn: sqlite3.Connection, episodes: list[tuple]) -> None:
        conn.executemany(
            "INSERT OR REPLACE INTO episodes (run_uid, idx, score, steps, wall_time) VALUES (?, ?, ?, ?, ?)", episodes
        )
        episodes.clear()

    def _insert_run(
        self, conn: sqlite3.Connection, uid: str, number: int, params: RunParams, started: float, pid: int, host: str
    ) -> None:
        taken = conn.execute("SELECT run_uid FROM runs WHERE number = ?", (number,)).fetchone()
        if taken is not None and taken[0] != uid:
            # Another process took this number since we opened: take the next free one.
            number = conn.execute("SELECT max(number) + 1 FROM runs").fetchone()[0]
            with self._lock:
                self._runs[uid].number = number
                self._revision += 1
                self._next_number = max(self._next_number, number + 1)
        conn.execute(
            "INSERT INTO runs (run_uid, number, episodes, deterministic, seed, env_id, address, "
            "started, state, owner_pid, owner_host) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?)",
            (
                uid,
                number,
                params.episodes,
                int(params.deterministic),
                params.seed,
                params.env_id,
                params.address,
                started,
                pid,
                host,
            ),
        )
