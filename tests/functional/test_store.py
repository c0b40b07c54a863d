"""Run history on real SQLite files: durability, crash recovery, migration, bad storage."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest

from cartpole_tui.env.components.environment import EnvironmentLogic
from cartpole_tui.env.events import EnvironmentObserver
from cartpole_tui.env.history import schema
from cartpole_tui.env.history.recorder import StoreRecorder
from cartpole_tui.env.history.store import MEMORY, RunStore
from cartpole_tui.env.paths import default_db_path
from cartpole_tui.env.wire import protocol
from tests.conftest import wait_for

RUN_ARGS = dict(episodes=5, deterministic=False, seed=3, env_id="CartPole-v1", address="127.0.0.1:8080")


def random_episodes(seed: int = 0) -> Iterator[tuple[float, int]]:
    """(score, steps) of real CartPole episodes played by a random policy, without end."""
    env = gym.make("CartPole-v1")
    env.action_space.seed(seed)
    env.reset(seed=seed)
    while True:
        score, steps, done = 0.0, 0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            score, steps, done = score + reward, steps + 1, terminated or truncated
        yield score, steps
        env.reset()


def play(n: int, seed: int = 0) -> list[tuple[float, int]]:
    return list(itertools.islice(random_episodes(seed), n))


def record_run(store: RunStore, uid: str, episodes: list[tuple[float, int]], state: str | None = "done") -> int:
    number = store.begin_run(uid, **{**RUN_ARGS, "episodes": len(episodes)}, started=time.time())
    for index, (score, steps) in enumerate(episodes):
        store.add_episode(uid, index, score, steps, time.time())
    if state is not None:
        avg = sum(s for s, _ in episodes) / len(episodes) if episodes else None
        store.end_run(uid, avg_score=avg, state=state, ended=time.time())
    return number


def on_disk(path, sql: str, *args) -> list[tuple]:
    """Query the file with a fresh connection of our own, as another program would."""
    with contextlib.closing(sqlite3.connect(path, uri=str(path).startswith("file:"))) as conn:
        return conn.execute(sql, args).fetchall()


def file_bytes(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "runs.sqlite3")


# --- normal operation ------------------------------------------------------------------


def test_runs_and_episodes_survive_reopen_and_numbers_continue(db):
    played = play(6)
    with RunStore.open(db) as store:
        assert record_run(store, "first", played[:4]) == 1
        assert record_run(store, "second", played[4:], state="stopped") == 2
    with RunStore.open(db) as store:
        first, second = store.runs()
        assert (first.number, first.state, second.state) == (1, "done", "stopped")
        assert first.finished == 4 and first.best == max(s for s, _ in played[:4])
        assert first.total_steps == sum(n for _, n in played[:4])
        assert first.avg_score == pytest.approx(np.mean([s for s, _ in played[:4]]))
        assert first.params.seed == 3 and first.params.address == "127.0.0.1:8080"
        # steps over the time from the start to the last episode (not to the end: who heard that varies)
        assert first.steps_per_s == pytest.approx(first.total_steps / (first.last_episode_at - first.started))
        np.testing.assert_array_equal(store.episode_scores("first"), [s for s, _ in played[:4]])
        assert [(e.score, e.steps) for e in store.episodes("second")] == played[4:]
        before = store.revision
        assert record_run(store, "third", played[:1]) == 3
        assert store.revision == before + 3  # begun, one episode, ended


@pytest.mark.parametrize("last", [True, False], ids=["unrecorded-last", "an-episode-after"])
def test_a_joined_runs_unrecorded_steps_and_best_reach_the_file(db, last):
    """A room joining mid-run is told the steps and best of the episodes it has no rows of: its
    row counts them (its steps/s is the run's), its episodes count stays what it recorded; a value
    out of range changes nothing."""
    with RunStore.open(db) as store:
        store.begin_run(
            "joined", episodes=100, deterministic=False, seed=1, env_id="CartPole-v1", address="", started=1.0
        )
        store.add_episode("joined", 40, 30.0, 30, 11.0)
        store.add_unrecorded("joined", 1230, 180.0)  # all its finished episodes' steps: 30 recorded
        for bad in ((-1, None), (2**63, None), (5, float("nan"))):
            with pytest.raises(ValueError):
                store.add_unrecorded("joined", *bad)
        with pytest.raises(KeyError):
            store.add_unrecorded("elsewhere", 5, None)
        if not last:
            store.add_episode("joined", 41, 20.0, 20, 12.0)
    with RunStore.open(db) as store:
        (run,) = store.runs()
        assert (run.finished, run.total_steps, run.best) == ((1, 1230, 180.0) if last else (2, 1250, 180.0))
        assert len(store.episodes("joined")) == run.finished


def test_a_run_ended_before_any_episode_has_no_average(db):
    """ENV_DONE says 0.0 over no episode: for Acrobot (threshold −100) that read as a perfect run in
    the table, the export and the plot of run averages. It is none, on disk and on screen."""
    from cartpole_tui.tui.widgets.runs_table import _cells

    with RunStore.open(db) as store:
        store.begin_run("early", **{**RUN_ARGS, "episodes": 5}, started=time.time())
        store.end_run("early", avg_score=0.0, state="stopped", ended=time.time())
        record_run(store, "played", [(0.0, 500)], state="done")  # a real 0.0 (one episode) stays
        early, played = store.runs()
        assert (early.avg_score, played.avg_score) == (None, 0.0)
        cells = _cells(early, marked=False)
        assert (cells[2], cells[4], str(cells[8]).endswith("stopped")) == ("0/5", "—", True)
    assert on_disk(db, "SELECT avg_score FROM runs ORDER BY number") == [(None,), (0.0,)]


def test_a_stopped_big_runs_row_says_of_how_many(db):
    """A stopped run of 200,000 showed "79588" alone (79588/200000 is wider than the column): read
    as a run of 79,588 (new-user pass 5). The count is shortened, the "of how many" kept."""
    from cartpole_tui.tui.widgets.runs_table import _cells

    with RunStore.open(db) as store:
        store.begin_run("big", **{**RUN_ARGS, "episodes": 200_000}, started=time.time())
        for index in range(3):
            store.add_episode("big", index + 1, 10.0, 10, time.time())
        store.end_run("big", avg_score=10.0, state="stopped", ended=time.time())
        (big,) = store.runs()
        assert _cells(big, marked=False)[2] == "3/200000"
        assert _cells(replace(big, finished=79_588), marked=False)[2] == "80k/200k"


def test_episodes_reach_disk_without_flush(db):
    with RunStore.open(db) as store:
        record_run(store, "run", play(3), state=None)
        wait_for(lambda: on_disk(db, "SELECT count(*) FROM episodes")[0][0] == 3, 5, "episodes committed")
        assert on_disk(db, "SELECT state, finished FROM runs") == [("running", 3)]


def test_caller_never_waits_for_a_locked_disk(db):
    """While another writer holds the lock, the caller keeps recording; the writer catches up."""
    RunStore.open(db).close()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    errors = []
    store = RunStore.open(db, errors.append, busy_timeout=60)
    try:
        record_run(store, "run", play(20), state=None)
        assert store.runs()[0].finished == 20  # recorded in memory, in the caller's thread
        assert not store.flush(timeout=0.3)  # the writer is still waiting for the lock
        holder.execute("ROLLBACK")
        assert store.flush(timeout=30)
        assert on_disk(db, "SELECT count(*) FROM episodes")[0][0] == 20 and errors == []
    finally:
        holder.close()
        store.close()


def test_memory_store_touches_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with RunStore.open(MEMORY) as store:
        record_run(store, "run", play(2))
        assert store.flush() and store.runs()[0].finished == 2 and not store.on_disk
    assert list(tmp_path.iterdir()) == []


def test_default_path_is_in_the_xdg_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_db_path() == str(tmp_path / "cartpole-tui" / "runs.sqlite3")


def test_two_stores_on_one_file_never_share_a_number(db):
    with RunStore.open(db) as a, RunStore.open(db) as b:
        assert record_run(a, "from-a", play(1)) == 1
        a.flush()
        b.begin_run("from-b", **RUN_ARGS, started=time.time())  # b read max(number) before a wrote
        b.flush()
        assert b.run(2).run_uid == "from-b"
    assert on_disk(db, "SELECT number, run_uid FROM runs ORDER BY number") == [(1, "from-a"), (2, "from-b")]


class Collector(EnvironmentObserver):
    def __init__(self):
        self.episodes, self.finished = [], []

    def on_episode(self, event):
        self.episodes.append(event)

    def on_run_finished(self, event):
        self.finished.append(event)


def test_recorder_saves_what_the_environment_reports(db):
    """The real environment logic (gymnasium, no sockets) with the recorder attached, as in the app."""
    logic = EnvironmentLogic("CartPole-v1")
    collector = Collector()
    rng = np.random.default_rng(0)
    with RunStore.open(db) as store:
        logic.observers += [StoreRecorder(store, "CartPole-v1", "127.0.0.1:4000"), collector]
        for episodes, stop_after in ((6, 6), (50, 3)):
            logic.start(protocol.start_run(episodes, False, seed=11))
            stop_at = len(collector.episodes) + stop_after
            while logic.run is not None and len(collector.episodes) < stop_at:
                logic.step({"ACTION": [int(rng.integers(2))], "ROOT_ID": logic.awaiting})
            logic.stop()
    with RunStore.open(db) as store:
        full, stopped = store.runs()
        assert (full.state, full.params.episodes, full.params.seed, stopped.state) == ("done", 6, 11, "stopped")
        assert full.params.address == "127.0.0.1:4000" and full.avg_score == collector.finished[0].avg_score
        assert (full.finished, stopped.finished) == (6, 3)
        saved = store.episodes(full.run_uid) + store.episodes(stopped.run_uid)
    assert [(e.index, e.score, e.steps, e.wall_time) for e in saved] == [
        (e.episode, e.score, e.steps, e.wall_time) for e in collector.episodes
    ]


# --- crash recovery --------------------------------------------------------------------

CHILD = textwrap.dedent("""
    import json, sys, time
    import gymnasium as gym
    from cartpole_tui.env.history.store import RunStore

    store = RunStore.open(sys.argv[1])
    store.begin_run("killed", episodes=10**6, deterministic=False, seed=7, env_id="CartPole-v1",
                    address="127.0.0.1:0", started=time.time())
    env = gym.make("CartPole-v1")
    env.action_space.seed(7)
    env.reset(seed=7)
    unreported = []
    for index in range(10**6):
        score, steps, done = 0.0, 0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            score, steps, done = score + reward, steps + 1, terminated or truncated
        env.reset()
        store.add_episode("killed", index, score, steps, time.time())
        unreported.append([index, score, steps])
        if index % 5 == 4 and store.flush(10):  # durable now: tell the parent
            for episode in unreported:
                print(json.dumps(episode), flush=True)
            unreported.clear()
""")


def test_sigkill_mid_run_keeps_every_reported_episode(db):
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, db],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.path.dirname(os.path.dirname(__file__)),
    ) as child:
        try:
            reported = [json.loads(child.stdout.readline()) for _ in range(40)]
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
    assert child.returncode == -signal.SIGKILL
    errors = []
    with RunStore.open(db, errors.append) as store:
        (run,) = store.runs()
        stored = {e.index: [e.index, e.score, e.steps] for e in store.episodes("killed")}
    assert errors == []
    assert run.state == "failed" and run.ended is not None
    assert all(stored.get(episode[0]) == episode for episode in reported)
    assert run.finished == len(stored) >= len(reported)


def test_what_is_queued_is_written_when_a_program_exits_without_close(db):
    script = textwrap.dedent("""
        import sys, time
        from cartpole_tui.env.history.store import RunStore
        store = RunStore.open(sys.argv[1])
        store.begin_run("exits", episodes=3, deterministic=False, seed=None, env_id="CartPole-v1",
                        address="127.0.0.1:0", started=time.time())
        for index in range(3):
            store.add_episode("exits", index, 10.0 + index, 10, time.time())
    """)
    subprocess.run([sys.executable, "-c", script, db], check=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert on_disk(db, "SELECT idx, score FROM episodes ORDER BY idx") == [(0, 10.0), (1, 11.0), (2, 12.0)]


def test_a_live_run_of_another_store_is_not_marked_failed(db):
    with RunStore.open(db) as live:
        live.begin_run("live", **RUN_ARGS, started=time.time())
        live.flush()
        with RunStore.open(db) as other:
            assert other.runs()[0].state == "running"


# --- migration -------------------------------------------------------------------------

# The first schema exactly as version 1 shipped it (kept here, not imported: it must not drift).
SCHEMA_V1 = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE runs (
    run_uid TEXT PRIMARY KEY, number INTEGER NOT NULL UNIQUE, episodes INTEGER NOT NULL,
    deterministic INTEGER NOT NULL, seed INTEGER, env_id TEXT NOT NULL, address TEXT NOT NULL,
    started REAL NOT NULL, ended REAL, avg_score REAL,
    state TEXT NOT NULL CHECK (state IN ('running', 'done', 'stopped', 'failed')));
CREATE TABLE episodes (
    run_uid TEXT NOT NULL REFERENCES runs (run_uid), idx INTEGER NOT NULL, score REAL NOT NULL,
    steps INTEGER NOT NULL, wall_time REAL NOT NULL, PRIMARY KEY (run_uid, idx)) WITHOUT ROWID;
INSERT INTO schema_version (version) VALUES (1);
INSERT INTO runs VALUES ('old-done', 4, 3, 1, NULL, 'CartPole-v1', '10.0.0.2:8080', 100.0, 110.0, 20.0, 'done');
INSERT INTO runs VALUES ('old-crashed', 5, 10, 0, 9, 'CartPole-v1', '10.0.0.2:8080', 200.0, NULL, NULL, 'running');
INSERT INTO episodes VALUES ('old-done', 0, 10.0, 10, 101.0), ('old-done', 1, 30.0, 30, 105.0),
    ('old-done', 2, 20.0, 20, 109.0), ('old-crashed', 0, 44.0, 44, 201.5), ('old-crashed', 1, 12.0, 12, 202.5);
"""


def test_migrates_a_first_schema_file(db):
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.executescript(SCHEMA_V1)
    errors = []
    with RunStore.open(db, errors.append) as store:
        done, crashed = store.runs()
        assert errors == [] and store.on_disk
        assert (done.finished, done.best, done.total_steps, done.state) == (3, 30.0, 60, "done")
        assert (crashed.finished, crashed.best, crashed.last_episode_at) == (2, 44.0, 202.5)
        assert crashed.state == "failed" and crashed.ended == 202.5
        np.testing.assert_array_equal(store.episode_scores("old-done"), [10.0, 30.0, 20.0])
        assert record_run(store, "new", play(2)) == 6
    assert on_disk(db, "SELECT version FROM schema_version") == [(schema.VERSION,)]
    assert on_disk(db, "SELECT finished FROM runs WHERE run_uid = 'new'") == [(2,)]


def test_a_newer_schema_is_left_untouched(db):
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.executescript(SCHEMA_V1 + "UPDATE schema_version SET version = 99;")
    before = file_bytes(db)
    errors = []
    with RunStore.open(db, errors.append) as store:
        record_run(store, "session", play(1))
        assert store.runs()[-1].run_uid == "session"
    assert len(errors) == 1 and "newer" in errors[0]
    assert file_bytes(db) == before


# --- bad storage -----------------------------------------------------------------------


def assert_keeps_session_in_memory(store: RunStore, errors: list[str], expected: str) -> None:
    """The store said so once and still records a whole run in memory."""
    played = play(5, seed=1)
    number = record_run(store, "session", played)
    store.add_episode("session", 5, 9.0, 9, time.time())  # more writes: still one message
    assert store.flush()
    assert len(errors) == 1 and expected in errors[0], errors
    assert store.error == errors[0] and not store.on_disk
    session = store.run(number)
    assert session.run_uid == "session" and session.finished == 6
    np.testing.assert_array_equal(store.episode_scores("session"), [s for s, _ in played] + [9.0])


def test_corrupt_file(db):
    with open(db, "wb") as f:
        f.write(os.urandom(8192))
    before = file_bytes(db)
    errors = []
    with RunStore.open(db, errors.append) as store:
        assert errors and "corrupt" in errors[0]
        assert_keeps_session_in_memory(store, errors, "corrupt")
    assert file_bytes(db) == before


def saved_history(db) -> list[tuple]:
    with RunStore.open(db) as store:
        record_run(store, "saved", play(4, seed=2))
    return on_disk(db, "SELECT * FROM episodes ORDER BY idx")


def test_locked_by_another_writer(db):
    """A lock held past the busy time-out delays the writes (said once); they catch up after."""
    saved_history(db)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    errors = []
    try:
        with RunStore.open(db, errors.append, busy_timeout=0.2) as store:
            record_run(store, "session", play(5, seed=1))
            assert store.flush()
            assert len(errors) == 1 and "locked by another writer" in errors[0] and "delayed" in errors[0]
            assert store.on_disk and [r.run_uid for r in store.runs()] == ["saved", "session"]
            assert len(store.episodes("saved")) == 4  # past runs still read from the file
            holder.execute("ROLLBACK")
            assert store.flush()
            assert len(errors) == 2 and "caught up" in errors[1]
    finally:
        holder.close()
    assert on_disk(db, "SELECT run_uid FROM runs ORDER BY number") == [("saved",), ("session",)]


def test_locked_at_open_by_a_rollback_journal_writer(db):
    saved = saved_history(db)
    on_disk(db, "PRAGMA journal_mode=DELETE")
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # without WAL this also shuts out readers
    errors = []
    try:
        with RunStore.open(db, errors.append, busy_timeout=0.2) as store:
            assert_keeps_session_in_memory(store, errors, "locked")
    finally:
        holder.close()
    assert on_disk(db, "SELECT * FROM episodes ORDER BY idx") == saved
    assert on_disk(db, "PRAGMA journal_mode") == [("delete",)]


def test_another_programs_database_is_left_untouched(db):
    on_disk(db, "CREATE TABLE notes (text)")
    before = file_bytes(db)
    errors = []
    with RunStore.open(db, errors.append) as store:
        assert_keeps_session_in_memory(store, errors, "not a cartpole-tui run history")
    assert file_bytes(db) == before


@contextlib.contextmanager
def immutable(path):
    """Make ``path`` immutable (chattr +i): read-only even for root, unlike chmod."""
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here (needs root on a filesystem that supports it)")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_read_only_file(db):
    saved = saved_history(db)
    errors = []
    with immutable(db), RunStore.open(db, errors.append) as store:
        assert_keeps_session_in_memory(store, errors, "read-only")
        assert [r.run_uid for r in store.runs()] == ["saved", "session"]
        assert len(store.episodes("saved")) == 4
    assert on_disk(db, "SELECT * FROM episodes ORDER BY idx") == saved


def test_read_only_directory(tmp_path):
    folder = tmp_path / "history"
    folder.mkdir()
    errors = []
    with immutable(folder), RunStore.open(str(folder / "runs.sqlite3"), errors.append) as store:
        assert_keeps_session_in_memory(store, errors, "read-only")
    assert list(folder.iterdir()) == []


@pytest.fixture
def tmpfs(tmp_path):
    """Mounts a real tmpfs of a given size (needs root; skips otherwise); unmounted after the test."""
    mounted = []

    def mount(size: str):
        point = tmp_path / f"tmpfs{len(mounted)}"
        point.mkdir()
        if (
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], capture_output=True
            ).returncode
            != 0
        ):
            pytest.skip("cannot mount a tmpfs here (needs root)")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", str(point)], check=True)


def test_read_only_filesystem(tmpfs):
    folder = tmpfs("1m")
    db = str(folder / "runs.sqlite3")
    saved = saved_history(db)
    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
    errors = []
    with RunStore.open(db, errors.append) as store:
        assert_keeps_session_in_memory(store, errors, "read-only")
        assert [r.run_uid for r in store.runs()] == ["saved", "session"]
        assert [tuple(e) for e in store.episodes("saved")] == [row[1:] for row in saved]
    assert on_disk(f"file:{db}?mode=ro&immutable=1", "SELECT * FROM episodes ORDER BY idx") == saved


@pytest.mark.parametrize("limit", ["max_page_count", "small filesystem"])
def test_full_disk(limit, request, db):
    """SQLITE_FULL, made honestly: the file capped by max_page_count, or a filesystem really full."""
    if limit == "small filesystem":  # really full: 256 KiB, without filling the machine's disk
        db, max_bytes = str(request.getfixturevalue("tmpfs")("256k") / "runs.sqlite3"), None
    else:
        max_bytes = 32 * 1024
    errors = []
    scores = []
    with RunStore.open(db, errors.append, max_bytes=max_bytes) as store:
        store.begin_run("big", **RUN_ARGS, started=time.time())
        episodes = itertools.islice(random_episodes(seed=4), 20_000)
        for index, (score, steps) in enumerate(episodes):
            store.add_episode("big", index, score, steps, time.time())
            scores.append(score)
            if index % 200 == 199:
                store.flush()
                if errors:
                    break
        assert len(errors) == 1 and "full" in errors[0]
        np.testing.assert_array_equal(store.episode_scores("big"), scores)
    saved = on_disk(db, "SELECT idx, score FROM episodes ORDER BY idx")
    assert on_disk(db, "PRAGMA integrity_check") == [("ok",)]
    assert 0 < len(saved) < len(scores) and [s for _, s in saved] == scores[: len(saved)]
    assert on_disk(db, "SELECT finished FROM runs") == [(len(saved),)]


@pytest.mark.parametrize(
    "best, shown",
    [
        (500.0, "500"),
        (-99.5, "-99.5"),
        (-101.73172327500839, "-102"),
        (-12345.6, "-12k"),
        (12345.6, "12.3k"),
        (-1e9, "-1.0G"),
        (-1e12, "-1T"),
        (7.25, "7.3"),
    ],
)
def test_a_runs_best_score_is_whole_in_its_column(db, best, shown):
    """Every other environment scores below zero: LunarLander's best of -101.73 showed as "-101."."""
    from cartpole_tui.tui.widgets.runs_table import WIDTHS, _cells

    with RunStore.open(db) as store:
        record_run(store, "played", [(best, 20)], state="done")
        (run,) = store.runs()
    assert _cells(run, marked=False)[5] == shown and len(shown) <= WIDTHS[5]
