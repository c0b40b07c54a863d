"""Run history under pressure: a lock held for long, a read-only filesystem for export."""

from __future__ import annotations

import io
import sqlite3
import subprocess
import threading
import time

import numpy as np
import pytest

from cartpole_tui.env.components.vector_env import episode_number
from cartpole_tui.env.history.export import export_runs
from cartpole_tui.env.history.store import RunStore
from tests.conftest import wait_for
from tests.functional.test_store import saved_history, tmpfs  # noqa: F401 (fixture)


def test_a_long_lock_delays_writes_and_they_catch_up(tmp_path):
    db = str(tmp_path / "runs.sqlite3")
    messages: list[str] = []
    with RunStore.open(db, messages.append, busy_timeout=0.2) as store:
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")  # another process's long write, 1 s: 5x the busy time-out
        store.begin_run("r", episodes=500, deterministic=False, seed=None, env_id="CartPole-v1", address="", started=1)
        for i in range(1, 301):
            store.add_episode("r", i, float(i), i, 2.0 + i)
        wait_for(lambda: any("delayed" in m for m in messages), 5, "the delay to be told")
        threading.Event().wait(1.0)  # the lock is held for a while (what is tested), then let go
        holder.execute("ROLLBACK")
        holder.close()
        wait_for(lambda: any("caught up" in m for m in messages), 10, "the catch-up to be told")
        assert store.on_disk
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM episodes").fetchone()[0] == 300
    assert len(messages) == 2


def test_a_vectorised_runs_episodes_ending_out_of_order_are_recorded_at_once(tmp_path):
    """1,000 instances end their episodes out of number order: each was looked for in the run's
    column of episodes before it was added, so 40,000 of them took tens of seconds (quadratic)."""
    n, rounds = 1000, 40
    with RunStore.open(str(tmp_path / "runs.sqlite3")) as store:
        store.begin_run(
            "r", episodes=n * rounds, deterministic=False, seed=None, env_id="CartPole-v1", address="", started=1
        )
        rng = np.random.default_rng(0)
        started = time.perf_counter()
        for played in range(rounds):  # every instance's next episode, ending in a shuffled order
            for instance in rng.permutation(n).tolist():
                assert store.add_episode("r", episode_number(instance, played, n), 1.0, 1, 2.0)
        seconds = time.perf_counter() - started
        assert not store.add_episode("r", episode_number(5, 3, n), 2.0, 2, 3.0)  # a second copy: the first wins
        assert store.flush()
    assert seconds < 5.0, f"{n * rounds} episodes took {seconds:.1f} s to record"
    with sqlite3.connect(str(tmp_path / "runs.sqlite3")) as conn:
        assert conn.execute("SELECT count(*), sum(score) FROM episodes").fetchone() == (n * rounds, n * rounds)
    assert store.duplicate_episodes == 1


def test_export_reads_a_history_on_a_read_only_filesystem(tmpfs):  # noqa: F811
    folder = tmpfs("1m")
    db = str(folder / "runs.sqlite3")
    saved_history(db)
    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
    out = io.StringIO()
    assert export_runs(db, None, "csv", out) == 1
    assert "saved" in out.getvalue() or out.getvalue().count("\n") >= 4


@pytest.mark.parametrize("agents", ["random agent, one instance", "swarm, 100 instances"])
def test_kill_9_of_the_environment_loses_no_finished_episode(tmp_path, broker, agents):
    # vectorised, the episodes that end in one batch step are committed together, and EPISODES_DONE
    # goes out after that commit, as EPISODE_DONE does after each episode's
    import os
    import signal
    import sys

    from cartpole_tui.env.components.control import ControlClient
    from cartpole_tui.env.components.random_agent import RandomAgent
    from cartpole_tui.env.events import EpisodeFinished
    from cartpole_tui.env.swarm.swarm import Swarm

    db = tmp_path / "env.sqlite3"
    cli = os.path.join(os.path.dirname(sys.executable), "cartpole-tui")
    env = subprocess.Popen(
        [cli, "env", "--connect", f"127.0.0.1:{broker.port}", "--db", str(db), "--parallel", "100"],
        stdout=subprocess.PIPE,
        text=True,
    )
    if agents.startswith("swarm"):
        agent = Swarm("127.0.0.1", broker.port, models=4, seed=3).start()
    else:
        agent = RandomAgent("127.0.0.1", broker.port, seed=3).start()
    told = []
    control = ControlClient(
        "127.0.0.1", broker.port, on_event=lambda e: isinstance(e, EpisodeFinished) and told.append(e)
    )
    try:
        assert "Ctrl-C to stop" in env.stdout.readline()
        control.start_run(10**6)
        wait_for(lambda: len(told) >= 200, 30, "200 episodes")
        numbers = [e.episode for e in told]
        assert (numbers != sorted(numbers)) == agents.startswith("swarm")  # vectorised: they end out of order
        env.send_signal(signal.SIGKILL)
        env.wait(10)
        reported = len(told)  # every EPISODE_DONE goes out after its episode was committed
    finally:
        control.close()
        agent.close()
    with sqlite3.connect(db) as conn:
        saved = conn.execute("SELECT count(*) FROM episodes").fetchone()[0]
    assert saved >= reported
