"""The run store's writer: one thread that owns the write connection.

The store's callers only enqueue typed write records (:class:`BeginRun`, :class:`AddEpisode`,
:class:`EndRun`). Every :data:`LINGER` seconds (at once for a flush or close) the writer
takes all that is queued and commits it in one transaction, in queue order, a run's
episodes in one ``executemany``. A lock held by another writer keeps the writes (up to
:data:`MAX_BACKLOG`) to retry with the next batch; any other failure gives the file up
(the store is told, and keeps the session in memory).
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass

from cartpole_tui.env.history.failures import describe, is_locked
from cartpole_tui.env.history.records import RunParams
from cartpole_tui.env.history.schema import transaction

LINGER = 0.05  # seconds between the writer's batches; an episode waits at most this long
MAX_BACKLOG = 200_000  # writes kept while another writer holds the lock; beyond, the file is given up

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BeginRun:
    """A new running run's row; ``pid`` and ``host`` own it (see the store's recovery)."""

    run_uid: str
    number: int
    params: RunParams
    started: float
    pid: int
    host: str
    followed: bool = False


@dataclass(frozen=True, slots=True)
class AddEpisode:
    """One finished episode, with its run's summary as it stands after it."""

    run_uid: str
    index: int
    score: float
    steps: int
    wall_time: float
    finished: int
    best: float
    total_steps: int
    last_episode_at: float


@dataclass(frozen=True, slots=True)
class Unrecorded:
    """A run's summary after its episodes this store has no rows of (a run joined mid-run)."""

    run_uid: str
    finished: int
    best: float | None
    total_steps: int
    last_episode_at: float | None


@dataclass(frozen=True, slots=True)
class EndRun:
    """A run's end: its average and final state."""

    run_uid: str
    avg_score: float | None
    state: str
    ended: float


Write = BeginRun | AddEpisode | Unrecorded | EndRun
_Queued = Write | threading.Event | None  # an Event: set once what came before is written; None: stop


class Writer:
    """The writer thread of one store. ``report`` is told (once, by the store) when the file is
    given up, ``notice`` of a delay and its catch-up, ``renumber`` of a run whose number another
    process took in the meantime (uid, new number)."""

    def __init__(
        self,
        path: str,
        *,
        report: Callable[[str], None],
        notice: Callable[[str], None],
        renumber: Callable[[str, int], None],
    ) -> None:
        self.path = path
        self._report = report
        self._notice = notice
        self._renumber = renumber
        self._conn: sqlite3.Connection | None = None  # None: memory only, or the file given up
        self._queue: queue.SimpleQueue[_Queued] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="run-store-writer", daemon=True)
        self._backlog: list[Write] = []  # writes a lock held back, retried with the next batch
        self._delayed = False

    def start(self, conn: sqlite3.Connection | None) -> None:
        """Write to ``conn`` from now on (None: keep nothing, the store is in memory)."""
        self._conn = conn
        self._thread.start()

    @property
    def on_disk(self) -> bool:
        """True while writes go to the file."""
        return self._conn is not None

    def put(self, write: Write) -> None:
        self._queue.put(write)

    def flush(self, timeout: float) -> bool:
        """Wait until everything queued so far is committed (or given up on); False on timeout."""
        if not self._thread.is_alive():
            return True
        done = threading.Event()
        self._queue.put(done)
        self._wake.set()
        return done.wait(timeout)

    def stop(self, timeout: float) -> None:
        """Write what is queued, then close the connection and end the thread."""
        self._queue.put(None)
        self._wake.set()
        self._thread.join(timeout)

    def _loop(self) -> None:
        # The writer polls rather than blocking on the queue: beside a busy gymnasium loop,
        # waking a thread blocked on a queue cost ~390 µs of CPU, a timed wait's wake-up
        # ~40 µs (measured here); idle, 20 polls a second cost under 1 ms of CPU a second.
        while True:
            self._wake.wait(LINGER)  # flush() and stop() cut this short
            self._wake.clear()
            batch: list[_Queued] = []
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._write([item for item in batch if isinstance(item, (BeginRun, AddEpisode, Unrecorded, EndRun))])
            for item in batch:
                if isinstance(item, threading.Event):
                    item.set()
            if any(item is None for item in batch):  # `None in batch` would call each record's __eq__
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
                return

    def _write(self, writes: list[Write]) -> None:
        conn = self._conn
        writes = self._backlog + writes
        self._backlog = []
        if conn is None or not writes:
            return
        try:
            with transaction(conn):
                self._apply(conn, writes)
        except sqlite3.OperationalError as error:
            if is_locked(error) and len(writes) <= MAX_BACKLOG:
                self._delay(writes, error)  # another writer holds the lock: keep the writes, try again
                return
            self._give_up(conn, error)
            return
        except Exception as error:  # whatever it is, the file is given up, the session kept
            self._give_up(conn, error)
            return
        if self._delayed:
            self._delayed = False
            self._notice(f"Run history {self.path}: caught up, {len(writes)} delayed writes saved.")

    def _delay(self, writes: list[Write], error: sqlite3.Error) -> None:
        self._backlog = writes
        if not self._delayed:
            self._delayed = True
            self._notice(
                f"Run history {self.path} is locked by another writer ({error}): writes are delayed "
                f"and retried (up to {MAX_BACKLOG:,} kept in memory)."
            )

    def _give_up(self, conn: sqlite3.Connection, error: BaseException) -> None:
        conn.close()
        self._conn = None
        self._backlog = []
        self._report(describe(error, self.path))

    def _apply(self, conn: sqlite3.Connection, writes: list[Write]) -> None:
        """Queue order is kept: a run's row goes in before its episodes."""
        episodes: list[tuple[str, int, float, int, float]] = []
        summaries: dict[str, AddEpisode | Unrecorded] = {}  # the latest per run wins
        for write in writes:
            if isinstance(write, (AddEpisode, Unrecorded)):
                if isinstance(write, AddEpisode):
                    episodes.append((write.run_uid, write.index, write.score, write.steps, write.wall_time))
                summaries[write.run_uid] = write
                continue
            _insert_episodes(conn, episodes)
            if isinstance(write, BeginRun):
                self._insert_run(conn, write)
            else:
                conn.execute(
                    "UPDATE runs SET avg_score = ?, state = ?, ended = ? WHERE run_uid = ?",
                    (write.avg_score, write.state, write.ended, write.run_uid),
                )
        _insert_episodes(conn, episodes)
        conn.executemany(
            "UPDATE runs SET finished = ?, best = ?, total_steps = ?, last_episode_at = ? WHERE run_uid = ?",
            [(e.finished, e.best, e.total_steps, e.last_episode_at, uid) for uid, e in summaries.items()],
        )

    def _insert_run(self, conn: sqlite3.Connection, run: BeginRun) -> None:
        number = run.number
        taken = conn.execute("SELECT run_uid FROM runs WHERE number = ?", (number,)).fetchone()
        if taken is not None and taken[0] != run.run_uid:
            # Another process took this number since we opened: take the next free one.
            number = conn.execute("SELECT max(number) + 1 FROM runs").fetchone()[0]
            self._renumber(run.run_uid, number)
        params = run.params
        conn.execute(
            "INSERT INTO runs (run_uid, number, episodes, deterministic, seed, env_id, address, "
            "started, state, owner_pid, owner_host, followed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?)",
            (
                run.run_uid,
                number,
                params.episodes,
                int(params.deterministic),
                params.seed,
                params.env_id,
                params.address,
                run.started,
                run.pid,
                run.host,
                int(run.followed),
            ),
        )


def _insert_episodes(conn: sqlite3.Connection, episodes: list[tuple[str, int, float, int, float]]) -> None:
    conn.executemany(
        "INSERT OR REPLACE INTO episodes (run_uid, idx, score, steps, wall_time) VALUES (?, ?, ?, ?, ?)", episodes
    )
    episodes.clear()
