"""Models that survive a restart: the swarm's population on disk (issue 10)."""

from __future__ import annotations

import numpy as np
import pytest
from test_app import connected, runs, start_run, until
from test_cli import cli, one_clear_line

from cartpole_tui.env.components.control import ControlClient
from cartpole_tui.env.runtime.session import SessionOptions
from cartpole_tui.env.swarm import saved
from cartpole_tui.env.swarm.policy import LAYOUT, N_WEIGHTS, SLICES, Population
from cartpole_tui.env.swarm.swarm import Swarm
from cartpole_tui.env.wire import protocol
from cartpole_tui.tui.app import ControlRoomApp

from conftest import only_json, wait_for


def solving_weights() -> np.ndarray:
    """One model in the published order that balances the pole: push where 0.1x + 0.5ẋ + 3θ + θ̇ points."""
    weights = np.zeros(N_WEIGHTS)
    layers = {name: weights[SLICES[name]].reshape(shape) for name, shape in LAYOUT}
    layers["pi_w0"][0] = 10 * np.array([0.1, 0.5, 3.0, 1.0])
    layers["pi_w1"][0, 0] = 10.0
    layers["act_w"][:, 0] = (-10.0, 10.0)
    return weights


def test_a_file_keeps_weights_generation_and_seed_in_the_published_order(tmp_path):
    path = str(tmp_path / "p.npz")
    population = Population(3, seed=1)
    saved.save(path, saved.SavedPopulation(population.weights, generation=7, seed=42))
    back = saved.load(path)
    assert np.array_equal(back.weights, population.weights) and back.generation == 7 and back.seed == 42
    with np.load(path) as raw:  # what another program reads: plain arrays, documented keys
        assert raw["weights"].shape == (3, 755) and str(raw["format"]) == saved.FORMAT
    np.savez(path, weights=solving_weights())  # one published model's vector, nothing else
    assert saved.load(path).weights.shape == (1, 755)
    np.savez(path, weights=np.zeros((2, 10)))
    with pytest.raises(ValueError, match=r"\(models, 755\)"):
        saved.load(path)


def test_a_file_keeps_the_rows_that_vote(tmp_path):
    path = str(tmp_path / "p.npz")
    weights = Population(4, seed=1).weights
    saved.save(path, saved.SavedPopulation(weights, voters=(2, 0)))
    assert saved.load(path).voters == (2, 0)
    assert saved.fit_voters((2, 0), 2) == (0,) and saved.fit_voters((3,), 2) is None  # rows beyond --models
    saved.save(path, saved.SavedPopulation(weights))
    assert saved.load(path).voters is None  # every row votes
    for voters in ([4], [1, 1], [0.5]):
        np.savez(path, weights=weights, voters=np.asarray(voters))
        with pytest.raises(ValueError, match="voters"):
            saved.load(path)


def test_the_swarm_saves_after_each_evolution_and_starts_from_the_file(tmp_path, broker):
    path = str(tmp_path / "p.npz")
    swarm = Swarm("127.0.0.1", broker.port, models=4, seed=3, save=path).start()
    control = ControlClient("127.0.0.1", broker.port)
    try:
        done = control.evolve(timeout=10)
        assert done.generation == 1 and len(done.fitness) == 4
        kept = saved.load(path)  # written before EVO_DONE was sent
        assert kept.generation == 1
        wait_for(lambda: np.allclose(np.sort(swarm.models.population.weights, 0), np.sort(kept.weights, 0)))
    finally:
        control.close()
        swarm.close()
    again = Swarm("127.0.0.1", broker.port, models=4, load=path, save=path)
    try:
        assert np.array_equal(again.models.population.weights, kept.weights)
        assert again.evolution.generations == 1 and kept.seed == 3
    finally:
        again.close()


def embedded_app(tmp_path, fresh: bool = False) -> ControlRoomApp:
    db = str(tmp_path / "runs.sqlite3")
    options = SessionOptions(seed=5, population_file=saved.beside_history(db), fresh=fresh)
    return ControlRoomApp(options, db_path=db)


async def deterministic_average(app, episodes: str = "10", evolve_to: int | None = None) -> float:
    """The average of one deterministic run; then, with ``evolve_to``, one evolution saved to disk."""
    async with app.run_test(size=(120, 40)) as pilot:
        await connected(pilot)
        before = len(runs(app))  # the history may hold the runs of an earlier start
        await start_run(pilot, episodes, deterministic=True)
        done = await until(
            pilot, lambda: [r for r in runs(app)[before:] if r.state == "done"], what="the run", timeout=120
        )
        if evolve_to is not None:
            await pilot.press("e")
            path = app.options.population_file
            await until(pilot, lambda: saved.load(path).generation == evolve_to, what="the evolution saved")
        return done[0].avg_score


async def test_a_restarted_control_room_plays_with_what_was_saved(tmp_path):
    """A solving population beside the history: the next start's first deterministic run solves,
    its evolution is saved; --fresh starts from random models."""
    path = saved.beside_history(str(tmp_path / "runs.sqlite3"))
    saved.save(path, saved.SavedPopulation(np.tile(solving_weights(), (20, 1)), generation=12, seed=5))
    assert await deterministic_average(embedded_app(tmp_path), evolve_to=13) >= 475
    assert await deterministic_average(embedded_app(tmp_path)) >= 475  # the evolved one, elite kept
    fresh = await deterministic_average(embedded_app(tmp_path, fresh=True))
    assert fresh < 475  # --fresh: random models again


def test_what_a_schedule_confirmed_is_what_its_saved_population_plays_in_the_next_process(tmp_path):
    """`run --schedule` solves; the next `run`, a new process restoring the population kept beside the
    history, plays 100 deterministic episodes as well: the vote the check confirmed is in the file (the
    fittest models' vote lived in the aggregation's memory once, and the next start played 142)."""
    db = str(tmp_path / "runs.sqlite3")
    scheduled = cli("run", "--schedule", "--seed", "5", "--db", db, "--json")
    assert scheduled.returncode == 0 and only_json(scheduled.stdout)["solved"], scheduled.stderr
    played = cli("run", "--episodes", "100", "--deterministic", "--seed", "1000", "--db", db, "--json")
    assert played.returncode == 0 and "restored generation" in played.stderr, played.stderr
    result = only_json(played.stdout)
    assert result["episodes"] == 100 and result["avg_score"] >= 475


def test_evolution_reports_are_range_checked():
    good = {"GENERATION": 3, "FITNESS": [1, 2.5, 0], "ELITE": 1, "DIVERSITY": 0.5}
    assert protocol.evolution_report(good) == {
        "generation": 3,
        "fitness": (1.0, 2.5, 0.0),
        "elite": 1,
        "diversity": 0.5,
    }
    hostile = {"GENERATION": -1, "FITNESS": [1, float("nan")], "ELITE": 9, "DIVERSITY": "big"}
    assert protocol.evolution_report(hostile) == {}
    assert protocol.evolution_report({"FITNESS": [0.0] * 5000, "GENERATION": True}) == {}
    assert protocol.evolution_report({"FITNESS": [1, 2], "ELITE": 5}) == {"fitness": (1.0, 2.0)}


def test_swarm_load_of_a_missing_file_is_one_line():
    one_clear_line(cli("swarm", "--connect", "127.0.0.1:9", "--load", "/nonexistent/p.npz"), 1, "no such file")


def test_serve_keeps_the_population_with_the_history_as_the_terminal_does(monkeypatch, tmp_path):
    import argparse

    from cartpole_tui.tui.cli import serve
    from cartpole_tui.tui.cli.errors import CommandError

    seen = {}

    class Recorded(Exception):
        pass

    def network(**options):
        seen.update(options)
        raise Recorded

    monkeypatch.setattr(serve, "LocalNetwork", network)
    db = str(tmp_path / "runs.sqlite3")
    args = argparse.Namespace(
        connect=None,
        models=20,
        seed=None,
        agent="swarm",
        db=db,
        no_env=True,
        token_file=None,
        fresh=False,
        env_id="CartPole-v1",
    )
    with pytest.raises((Recorded, CommandError)), serve.served_network(args):
        pass
    assert seen["population_file"] == f"{db}.population.npz" and seen["fresh"] is False
