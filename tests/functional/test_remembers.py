"""A trainer that remembers (issue 20): headless runs use and keep the app's population
(``<db>.population.npz``), ``--fresh`` starts over, and every start says what it restored."""

from __future__ import annotations

import signal
import subprocess

import numpy as np
import pytest
from test_app import log_text, until
from test_population_file import solving_weights

from cartpole_tui.env.runtime.session import SessionOptions
from cartpole_tui.env.swarm import saved
from cartpole_tui.tui.app import ControlRoomApp

from conftest import CLI, cli, only_json, screen_text


@pytest.fixture
def solved_db(tmp_path) -> str:
    """A run history with a solving population of generation 12 beside it."""
    db = str(tmp_path / "runs.sqlite3")
    weights = np.tile(solving_weights(), (20, 1))
    saved.save(saved.beside_history(db), saved.SavedPopulation(weights, generation=12, seed=1))
    return db


def squeezed(text: str) -> str:
    """``text`` without whitespace: a wrapped line still reads the same."""
    return "".join(text.split())


def average(result: subprocess.CompletedProcess) -> float:
    assert result.returncode == 0, result.stderr
    return only_json(result.stdout)["avg_score"]


def test_a_schedule_solves_and_the_next_headless_run_plays_what_it_learned(tmp_path):
    db = str(tmp_path / "runs.sqlite3")
    trained = cli("run", "--schedule", "--seed", "1", "--db", db, "--json", timeout=300)
    assert trained.returncode == 0, trained.stderr
    assert only_json(trained.stdout)["solved"]
    assert (
        f"20 models from random weights; saved to {db}.population.npz as it learns (each evolution, each new vote)"
        in trained.stderr
    )
    generation = saved.load(f"{db}.population.npz").generation
    assert generation >= 1
    again = cli("run", "--episodes", "20", "--deterministic", "--db", db, "--json")
    assert average(again) >= 475  # it averaged 9.40: a throwaway random swarm
    assert f"restored generation {generation}, 20 models, from {db}.population.npz" in again.stderr.splitlines()


def test_headless_runs_restore_and_fresh_starts_over(solved_db):
    restored = cli("run", "--episodes", "20", "--deterministic", "--db", solved_db, "--json")
    assert average(restored) >= 475
    assert restored.stderr.splitlines()[0] == f"restored generation 12, 20 models, from {solved_db}.population.npz"
    # seed 7: an untrained vote that plays ~10 (without biases some untrained ones solve: seed 3's)
    fresh = cli("run", "--episodes", "20", "--deterministic", "--db", solved_db, "--fresh", "--seed", "7", "--json")
    assert average(fresh) < 100
    assert "20 models from random weights (--fresh)" in fresh.stderr
    fewer = cli("run", "--episodes", "4", "--deterministic", "--db", solved_db, "--models", "4", "--json")
    assert "restored generation 12, 20 models (the first 4 used)" in fewer.stderr
    memory = cli("run", "--episodes", "2", "--db", ":memory:", "--json")
    assert "20 models from random weights (not saved)" in memory.stderr


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_the_app_says_what_it_restored_and_the_population_pane_shows_it(solved_db, size):
    options = SessionOptions(seed=1, population_file=saved.beside_history(solved_db))
    app = ControlRoomApp(options, db_path=solved_db)
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: app.connection == "connected", what="the app to connect")
        note = squeezed(f"population: restored generation 12, 20 models, from {solved_db}.population.npz")
        # in the log, whole (a long path wraps); the components seen at the start may scroll it out of view
        logged = lambda: note in squeezed(log_text(app)) or not app.main.panes["log-pane"].display  # noqa: E731
        await until(pilot, logged, what="the log line")
        if not app.main.panes["population-pane"].display:
            await pilot.press("6")
        await until(
            pilot, lambda: "gen 12 restored, 20 models" in screen_text(app), what="the restored generation on screen"
        )
        assert "no evolution yet" not in screen_text(app)


def test_swarm_load_says_what_it_loaded(solved_db, broker):
    path = saved.beside_history(solved_db)
    swarm = subprocess.Popen(
        [CLI, "swarm", "--connect", f"127.0.0.1:{broker.port}", "--load", path], stdout=subprocess.PIPE, text=True
    )
    try:
        assert "Ctrl-C to stop" in swarm.stdout.readline()
        assert swarm.stdout.readline().strip() == f"restored generation 12, 20 models, from {path}"
    finally:
        swarm.send_signal(signal.SIGINT)
        assert swarm.wait(10) == 0
