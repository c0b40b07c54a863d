"""Run history under pressure: a lock held for long, a read-only filesystem for export."""

from __future__ import annotations

import io
import sqlite3
import subprocess
import threading

from cartpole_tui.env.history.export import export_runs
from cartpole_tui.env.history.store import RunStore
from tests.conftest import wait_for
from tests.test_store import saved_history, tmpfs  # noqa: F401 (fixture)


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


def test_export_reads_a_history_on_a_read_only_filesystem(tmpfs):  # noqa: F811
    folder = tmpfs("1m")
    db = str(folder / "runs.sqlite3")
    saved_history(db)
    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
    out = io.StringIO()
    assert export_runs(db, None, "csv", out) == 1
    assert "saved" in out.getvalue() or out.getvalue().count("\n") >= 4
