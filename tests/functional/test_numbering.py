"""A vectorised run numbers its episodes in start order: no length bias in the order.

Numbered as they ended, the first 100 episodes of an untrained swarm's run were sorted by
score (short ones end first): every run's curve rose as if it learned. The history, the
export, the JSON report and the plot all take the episodes in number order.
"""

from __future__ import annotations

import csv
import io
import sqlite3

import numpy as np
from textual.widgets import Input

from cartpole_tui.env.runtime.session import SessionOptions
from cartpole_tui.tui.app import ControlRoomApp

from conftest import cli, only_json, screen_text, until


def ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties given their average rank (Spearman's convention)."""
    order = np.argsort(values, kind="stable")
    ranked = np.empty(len(values))
    ranked[order] = np.arange(1, len(values) + 1)
    for value in np.unique(values):
        tied = values == value
        ranked[tied] = ranked[tied].mean()
    return ranked


def rank_correlation(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.corrcoef(ranks(x), ranks(y))[0, 1])


def test_a_vectorised_run_of_an_untrained_swarm_has_no_order_in_its_numbers(tmp_path):
    db = tmp_path / "runs.sqlite3"
    # seed 7: an untrained vote of ~10-step episodes (without biases some untrained ones play long)
    result = cli("run", "--episodes", "1000", "--deterministic", "--seed", "7", "--db", str(db), "--json")
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT idx, score, wall_time FROM episodes ORDER BY idx").fetchall()
    numbers = np.array([idx for idx, _, _ in rows])
    scores = np.array([score for _, score, _ in rows])
    assert sorted(numbers.tolist()) == list(range(1, 1001))  # each number 1..N exactly once
    assert len(set(scores[:100])) > 2  # an untrained swarm: scores differ (8 to 11 steps)
    correlation = rank_correlation(numbers[:100], scores[:100])
    assert abs(correlation) < 0.5, correlation
    # the same run numbered as its episodes ended, as before: the first 100 sorted by score
    ended = np.argsort([wall for _, _, wall in rows], kind="stable")[:100]
    assert rank_correlation(np.arange(100), scores[ended]) > 0.8
    assert only_json(result.stdout)["scores"] == scores.tolist()  # the report is in number order too
    exported = cli("export", "--db", str(db), "--format", "csv")
    assert exported.returncode == 0, exported.stderr
    table = [row for row in csv.DictReader(io.StringIO(exported.stdout)) if row.get("episode")]
    assert [int(row["episode"]) for row in table] == list(range(1, 1001))
    assert [float(row["score"]) for row in table] == scores.tolist()


async def test_the_plot_takes_a_vectorised_runs_episodes_in_number_order(tmp_path):
    db = tmp_path / "runs.sqlite3"
    app = ControlRoomApp(SessionOptions(seed=3, agent="swarm", models=4, parallel=16), db_path=str(db))
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.connection == "connected", what="the app to connect")
        app.query_one("#episodes", Input).value = "200"
        await pilot.press("d", "s")
        done = await until(pilot, lambda: [r for r in app.store.runs() if r.state == "done"], what="the run")
        run = done[0]
        assert run.finished == 200
        await until(pilot, lambda: f"run {run.number} done" in screen_text(app), what="the run's end on screen")
        stored = app.store.episodes(run.run_uid)
        assert [e.index for e in stored] == list(range(1, 201))
        assert app.store.flush()
        with sqlite3.connect(db) as connection:
            on_disk = [s for (s,) in connection.execute("SELECT score FROM episodes ORDER BY idx")]
        assert [e.score for e in stored] == on_disk
        assert app.history.scores.tolist() == on_disk  # the plot's points, in number order
        # its legend, at the plot's next repaint (1 Hz): episode 200's score
        await until(pilot, lambda: app.main.plot.summary.startswith(f"last {on_disk[-1]:g}"), what="the legend")
