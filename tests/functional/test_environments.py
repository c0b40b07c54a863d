"""Beyond CartPole (issue 21): every shipped environment played in the app and headless, the
swarm's models sized from it, a population or a swarm of another shape refused by name, and
the environment pane drawing another environment's picture."""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3

import numpy as np
import pytest
from test_app import log_text, start_run
from textual.app import App, ComposeResult
from textual.widgets import Input

from cartpole_tui.env.components.control import ControlClient, WrongEnvironment
from cartpole_tui.env.components.environment import EnvironmentComponent
from cartpole_tui.env.components.frames import picture
from cartpole_tui.env.components.spaces import make_env, spaces_of
from cartpole_tui.env.components.vector_env import VectorEnvironmentComponent
from cartpole_tui.env.events import EnvironmentObserver, RunFinished
from cartpole_tui.env.runtime.session import SessionOptions
from cartpole_tui.env.swarm import saved
from cartpole_tui.env.swarm.policy import n_weights
from cartpole_tui.env.swarm.swarm import Swarm
from cartpole_tui.env.wire import protocol
from cartpole_tui.tui.app import ControlRoomApp
from cartpole_tui.tui.data.braille import BASE
from cartpole_tui.tui.widgets.cart_view import CartView
from tests.hostile import Raw

from conftest import cli, one_clear_line, only_json, screen_text, until, wait_for

HOST = "127.0.0.1"
THRESHOLDS = {"CartPole-v1": "475", "Acrobot-v1": "-100", "MountainCar-v0": "-110", "LunarLander-v3": "200"}


def _box2d() -> bool:
    try:
        import Box2D  # noqa: F401
    except ImportError:
        return False
    return True


ENVIRONMENTS = [
    pytest.param(e, marks=[pytest.mark.skipif(not _box2d(), reason="gymnasium's box2d extra")])
    if e == "LunarLander-v3"
    else e
    for e in THRESHOLDS
]


def braille_cells(text: str) -> int:
    return sum(BASE < ord(c) <= BASE + 0xFF for c in text)


@pytest.mark.parametrize("env_id", ENVIRONMENTS)
async def test_each_environment_plays_a_run_in_the_app(tmp_path, env_id):
    options = SessionOptions(seed=3, agent="swarm", models=4, env_id=env_id)
    app = ControlRoomApp(options, db_path=str(tmp_path / "runs.sqlite3"))
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.connection == "connected", what="the app to connect")
        app.query_one("#episodes", Input).value = "3"
        await pilot.press("s")
        done = await until(
            pilot, lambda: [r for r in app.store.runs() if r.state == "done"], timeout=90, what="the run to end"
        )
        assert done[0].finished == 3 and done[0].params.env_id == env_id
        await until(pilot, lambda: "average" in log_text(app), what="the ENV_DONE line in the log")
        plot = app.main.plot
        assert plot.threshold == float(THRESHOLDS[env_id])
        # the solved line is labelled with the environment's threshold, and the legend says what it is
        await until(pilot, lambda: f"{THRESHOLDS[env_id]}┤" in screen_text(app), what="the solved line's label")
        legend = f"┈ solved ≥ {THRESHOLDS[env_id]}"
        await until(pilot, lambda: legend in plot.summary, what="the legend saying what the line is")
        if min(app.history.scores) < float(THRESHOLDS[env_id]) - 1:  # below the threshold: the axis goes there
            lowest = float(min(app.history.scores))

            def bottom() -> float:
                labels = re.findall(r"(-?[\d.]+k?)┤", screen_text(app))
                return min(float(label.replace("k", "e3")) for label in labels)

            await until(pilot, lambda: bottom() <= lowest, what=f"the axis down to {lowest}")
        pane = app.main.cart
        if env_id == "CartPole-v1":
            # drawn at the next redraw: a run of 14 steps can end between two (the checks above then
            # passed at once, with no pause for the redraw timer)
            await until(pilot, lambda: "▐███▌" in str(pane.render()), what="the cart drawn")
            assert pane.frame is None
        else:
            await until(pilot, lambda: pane.frame is not None, what="a picture of the environment")
            drawn = str(pane.render())
            assert braille_cells(drawn) > 10 and "▐███▌" not in drawn
            # the pane is titled by the environment it draws (the picture, once captioned too, fills it)
            top = screen_text(app).splitlines()[pane.region.y]
            assert f"─ {env_id} ─" in top[pane.region.x : pane.region.right], top


@pytest.mark.parametrize("env_id", ENVIRONMENTS)
def test_each_environment_plays_headless(tmp_path, env_id):
    ran = cli("run", "--env-id", env_id, "--episodes", "3", "--json", "--seed", "2", "--db", str(tmp_path / "r.db"))
    assert ran.returncode == 0, ran.stderr
    report = only_json(ran.stdout)
    assert report["episodes"] == 3 and len(report["scores"]) == 3
    if env_id == "Acrobot-v1":
        assert all(-500 <= s <= 0 for s in report["scores"])


@pytest.mark.parametrize("env_id", ["Acrobot-v1", "MountainCar-v0"])
def test_the_swarms_models_follow_the_environment_and_its_file_records_it(broker, closing, tmp_path, env_id):
    spaces = spaces_of(env_id)
    path = str(tmp_path / "population.npz")
    swarm = Swarm(HOST, broker.port, models=4, seed=1, save=path, env_id=env_id).start()
    closing(swarm)
    assert swarm.models.population.weights.shape == (4, n_weights(spaces.observations, spaces.actions))
    environment = EnvironmentComponent(HOST, broker.port, env_id=env_id, seed=1).start()
    closing(environment)
    control = ControlClient(HOST, broker.port)
    closing(control)
    finished = control.run(2, seed=1, idle_timeout=30)
    assert finished.episodes == 2
    control.evolve(timeout=30)
    written = wait_for(lambda: saved.load(path, spaces) if _exists(path) else None, what="the saved population")
    assert (written.spaces.env_id, written.spaces.observations, written.spaces.actions) == (
        env_id,
        spaces.observations,
        spaces.actions,
    )
    assert written.weights.shape == (4, n_weights(6 if env_id == "Acrobot-v1" else 2, 3))


def _exists(path: str) -> bool:
    return os.path.exists(path)


def test_a_population_of_another_shape_is_refused_in_one_line(tmp_path, broker):
    path = str(tmp_path / "cartpole.npz")
    saved.save(path, saved.SavedPopulation(np.zeros((3, 755))))
    with pytest.raises(ValueError) as refused:
        Swarm(HOST, broker.port, models=3, load=path, env_id="Acrobot-v1")
    assert str(refused.value) == (
        f"{path}: a population for CartPole-v1 (4 observations, 2 actions), not Acrobot-v1 (6 observations, 3 actions)"
    )
    ran = cli("swarm", "--connect", f"{HOST}:{broker.port}", "--env-id", "Acrobot-v1", "--load", path)
    one_clear_line(ran, 1, "a population for CartPole-v1 (4 observations, 2 actions), not Acrobot-v1")


def test_another_games_population_is_not_written_over_by_save(tmp_path, broker):
    """`swarm --save FILE --env-id Acrobot-v1` wrote an Acrobot population over a solved CartPole
    one without a word, though loading that file is refused in one line (new-user pass 5)."""
    path = str(tmp_path / "cartpole.npz")
    saved.save(path, saved.SavedPopulation(np.ones((3, 755))))
    before = (tmp_path / "cartpole.npz").read_bytes()
    ran = cli("swarm", "--connect", f"{HOST}:{broker.port}", "--env-id", "Acrobot-v1", "--save", path)
    one_clear_line(ran, 1, "a population for CartPole-v1 (4 observations, 2 actions), not Acrobot-v1")
    assert "--save would write over it" in ran.stderr and (tmp_path / "cartpole.npz").read_bytes() == before


def test_the_app_keeps_each_environments_population_beside_its_history(tmp_path):
    db = str(tmp_path / "runs.sqlite3")
    assert saved.beside_history(db) == f"{db}.population.npz"  # CartPole's, as before
    assert saved.beside_history(db, "Acrobot-v1") == f"{db}.Acrobot-v1.population.npz"


class RunEnds(EnvironmentObserver):
    """The runs an environment ended, as its recorder hears them."""

    def __init__(self) -> None:
        self.runs: list[RunFinished] = []

    def on_run_finished(self, result: RunFinished) -> None:
        self.runs.append(result)


def test_models_built_for_another_environment_are_named_not_fed(broker, closing):
    """Said once, by its sender, and the environment ends the run (stopped): it stayed "running"
    there, and every control room waited for models that would never answer."""
    closing(Swarm(HOST, broker.port, models=2, seed=1).start())  # CartPole's models
    environment = EnvironmentComponent(HOST, broker.port, env_id="Acrobot-v1", seed=1)
    ended = RunEnds()
    environment.add_observer(ended)
    closing(environment.start())
    heard: list[object] = []
    control = ControlClient(HOST, broker.port, on_event=heard.append)
    closing(control)
    with pytest.raises(WrongEnvironment) as refused:
        control.run(2, idle_timeout=30)
    assert str(refused.value).startswith(  # the sender once ("models"), not "models: models built …"
        "models built for CartPole-v1 (4 observations, 2 actions), not Acrobot-v1 (6 observations, 3 actions)"
    )
    assert "--env-id Acrobot-v1" in str(refused.value)
    wait_for(lambda: ended.runs, 5, "the environment to end the run")
    assert ended.runs[0].stopped and ended.runs[0].run_id == control.run_id and environment.logic.run is None


def test_run_says_a_wrong_environment_once(broker, closing):
    """`run` printed the models' refusal twice: once bare (a warning), once as its error."""
    closing(Swarm(HOST, broker.port, models=2, seed=1).start())  # CartPole's models
    done = cli(
        "run", "--connect", f"{HOST}:{broker.port}", "--env-id", "Acrobot-v1", "--episodes", "2", "--db", ":memory:"
    )
    one_clear_line(done, 1, "cartpole-tui: models built for CartPole-v1 (4 observations, 2 actions), not Acrobot-v1")
    assert done.stderr.count("models built") == 1 and "--env-id Acrobot-v1" in done.stderr


def test_a_wrong_environment_is_said_even_when_the_runs_end_is_heard_first(broker, closing):
    """The environment ends the run (ENV_DONE, stopped) as soon as WRONG_ENV reaches it: heard by
    the control room before its waiting thread woke, the wait returned "stopped" and never said why
    (a flaky CI run). Both messages arrive before the wait begins here, in the order they can."""
    heard: list[object] = []
    control = ControlClient(HOST, broker.port, on_event=heard.append)
    closing(control)
    run_id = control.start_run(2)
    peer = Raw(broker.port, "models")
    closing(peer.sock)
    peer.send(protocol.wrong_env("models built for CartPole-v1, not Acrobot-v1", run_id))
    peer.send(protocol.env_done(0.0, run_id, 0, stopped=True))
    wait_for(lambda: not control.playing, 5, "the run's end to be heard")
    with pytest.raises(WrongEnvironment) as refused:
        control.wait_run(idle_timeout=5)
    assert "models built for CartPole-v1, not Acrobot-v1" in str(refused.value)


async def test_a_control_room_says_the_environment_the_network_plays(tmp_path, broker, closing):
    """Started for CartPole-v1 (the default), it joins a network whose environment plays Acrobot:
    the status line said CartPole-v1 throughout; a run's announcement sets it, the axis too."""
    closing(Swarm(HOST, broker.port, models=2, seed=1, env_id="Acrobot-v1").start())
    closing(EnvironmentComponent(HOST, broker.port, env_id="Acrobot-v1", seed=1).start())
    options = SessionOptions(connect=f"{HOST}:{broker.port}", embed_env=False)
    app = ControlRoomApp(options, db_path=str(tmp_path / "runs.sqlite3"))
    async with app.run_test(size=(120, 40)) as pilot:
        status = lambda: screen_text(app).splitlines()[0]  # noqa: E731
        await until(pilot, lambda: "● connected" in status(), 20, "the room to join")
        assert "CartPole-v1" in status()
        control = ControlClient(HOST, broker.port)
        closing(control)
        control.start_run(2)
        await until(pilot, lambda: "Acrobot-v1" in status(), 20, "the status line to say Acrobot-v1")
        assert "CartPole-v1" not in status() and app.main.plot.threshold == -100.0


async def test_a_run_ended_by_a_swarm_of_another_game_says_why_at_80x24(tmp_path, broker, closing):
    """The reason (and its fix) was in the log alone, which an 80x24 screen does not show: the
    progress line said "run 1 stopped · no episode finished" (new-user pass 5)."""
    closing(Swarm(HOST, broker.port, models=2, seed=1).start())  # CartPole's models
    closing(EnvironmentComponent(HOST, broker.port, env_id="Acrobot-v1", seed=1).start())
    options = SessionOptions(connect=f"{HOST}:{broker.port}", embed_env=False)
    app = ControlRoomApp(options, db_path=str(tmp_path / "runs.sqlite3"))
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: "● connected" in screen_text(app), 20, "the room to join")
        await start_run(pilot, "2")
        fix = "start the swarm with --env-id Acrobot-v1"
        await until(pilot, lambda: any(fix in n.message for n in app._notifications), 20, "the reason told")


def test_a_run_against_a_swarm_of_another_environment_says_so_headless(broker, closing):
    closing(Swarm(HOST, broker.port, models=2, seed=1).start())
    ran = cli(
        "run", "--connect", f"{HOST}:{broker.port}", "--env-id", "Acrobot-v1", "--episodes", "2", "--db", ":memory:"
    )
    assert ran.returncode != 0
    assert "not Acrobot-v1 (6 observations, 3 actions)" in ran.stderr and "did not answer" not in ran.stderr


def test_a_schedule_on_acrobot_runs_its_rounds(tmp_path):
    ran = cli(
        "run", "--schedule", "--env-id", "Acrobot-v1", "--rounds", "2", "--train", "8", "--eval", "4",
        "--seed", "1", "--db", str(tmp_path / "r.db"), "--json", timeout=300,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    report = only_json(ran.stdout)
    assert len(report["rounds"]) == 2 and report["settings"]["target"] == -100.0
    assert "did not answer" not in ran.stderr
    # steps, not the sum of (negative) rewards: as the history has the training runs' episodes
    with contextlib.closing(sqlite3.connect(tmp_path / "r.db")) as db:
        query = "SELECT SUM(e.steps) FROM episodes e JOIN runs r USING (run_uid) WHERE r.deterministic = 0"
        (trained,) = db.execute(query).fetchone()
    assert report["rounds"][-1]["train_steps"] == trained > 0


def test_a_schedule_aims_at_the_threshold_of_the_game_the_network_plays(broker, closing):
    """`run --schedule --connect … --no-env` without --env-id aimed at CartPole's 475 on a network
    playing Acrobot (scores <= 0): every evaluation failed, never solved (new-user pass 5)."""
    closing(Swarm(HOST, broker.port, models=2, seed=1, env_id="Acrobot-v1").start())
    closing(VectorEnvironmentComponent(HOST, broker.port, env_id="Acrobot-v1", seed=1, parallel=100).start())
    address = f"{HOST}:{broker.port}"
    args = ["--rounds", "1", "--train", "2", "--eval", "2", "--seed", "1", "--db", ":memory:", "--json"]
    ran = cli("run", "--schedule", "--connect", address, "--no-env", *args, timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert only_json(ran.stdout)["settings"]["target"] == -100.0
    assert "the network plays Acrobot-v1: target -100 (its reward_threshold)" in ran.stderr
    # a target given is the user's: kept whatever the network plays
    ran = cli("run", "--schedule", "--connect", address, "--no-env", "--target", "-50", *args, timeout=120)
    assert only_json(ran.stdout)["settings"]["target"] == -50.0 and "the network plays" not in ran.stderr


BARE = """import gymnasium
gymnasium.register("Bare-v0", entry_point="gymnasium.envs.classic_control.cartpole:CartPoleEnv", max_episode_steps=20)
"""


def test_any_registered_environment_plays_and_one_without_threshold_needs_a_target(tmp_path):
    (tmp_path / "bare_env.py").write_text(BARE)  # an environment of the user's own, registered on import
    settings = {"env": {**os.environ, "PYTHONPATH": str(tmp_path)}}
    ran = cli("run", "--env-id", "bare_env:Bare-v0", "--episodes", "2", "--db", ":memory:", "--json", **settings)
    assert ran.returncode == 0 and only_json(ran.stdout)["episodes"] == 2, ran.stderr
    ran = cli("run", "--schedule", "--env-id", "bare_env:Bare-v0", "--db", ":memory:", **settings)
    one_clear_line(ran, 1, "bare_env:Bare-v0 has no reward_threshold: give the schedule a target (--target)")
    ran = cli(
        "run", "--schedule", "--env-id", "bare_env:Bare-v0", "--target", "15", "--rounds", "1", "--train", "4",
        "--eval", "2", "--db", ":memory:", "--json", **settings,
    )  # fmt: skip
    assert ran.returncode == 0 and only_json(ran.stdout)["settings"]["target"] == 15.0, ran.stderr


class PaneApp(App):
    def __init__(self, pane: CartView):
        super().__init__()
        self.pane = pane

    def compose(self) -> ComposeResult:
        yield self.pane


@pytest.mark.parametrize("size", [(28, 12), (60, 20)])
async def test_the_pane_draws_another_environments_picture(size):
    env = make_env("Acrobot-v1", render_mode="rgb_array")
    try:
        env.reset(seed=4)
        frame = picture(env.render())
    finally:
        env.close()
    pane = CartView()
    pane.styles.width = size[0]
    app = PaneApp(pane)
    async with app.run_test(size=size) as pilot:
        pane.frame = frame
        await pilot.pause()
        lines = screen_text(app).splitlines()
    drawn = [line[: size[0]] for line in lines[: size[1]]]
    picture_rows = drawn  # the whole pane (its title names the environment)
    # Acrobot at rest: its dotted horizon across the picture and its links hanging from the middle
    horizon = max(picture_rows, key=lambda line: braille_cells(line))
    assert braille_cells(horizon) >= size[0] // 2  # the horizon: across most of the picture
    below = picture_rows[picture_rows.index(horizon) + 1 :]
    middle = [line[size[0] // 2 - 3 : size[0] // 2 + 3] for line in below]
    assert sum(braille_cells(part) > 0 for part in middle) >= 2, "\n".join(drawn)
    assert all(braille_cells(line[:3]) == 0 for line in below), "\n".join(drawn)  # nothing at the edges


def two_games_history(path: str) -> None:
    """A file with a CartPole run (scores 200) between two Acrobot runs (scores -500 and -90)."""
    from cartpole_tui.env.history.store import RunStore

    with RunStore.open(path) as store:
        for uid, env_id, score in (
            ("a1", "Acrobot-v1", -500.0),
            ("c1", "CartPole-v1", 200.0),
            ("a2", "Acrobot-v1", -90.0),
        ):
            store.begin_run(
                uid, episodes=4, deterministic=False, seed=1, env_id=env_id, address="127.0.0.1:1", started=1.0
            )
            for index in range(4):
                store.add_episode(uid, index + 1, score, abs(int(score)), 2.0 + index)
            store.end_run(uid, avg_score=score, state="done", ended=6.0)


async def test_the_plot_holds_the_runs_of_the_environment_played_and_starts_over_with_another(tmp_path):
    """A history holds every game's runs: the plot drew Acrobot's -500s and CartPole's 200s on one
    axis, one mean(100) over both, under the solved line of one (new-user pass 4)."""
    path = str(tmp_path / "runs.sqlite3")
    two_games_history(path)
    app = ControlRoomApp(SessionOptions(offline=True, env_id="Acrobot-v1"), db_path=path)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: len(app.history) == 8 and app.main.runs_table.row_count == 3, what="the history")
        assert set(app.history.scores.tolist()) == {-500.0, -90.0} and set(app.history.runs.tolist()) == {1, 3}
        await until(pilot, lambda: "last run 3 done · avg -90.0 over 4 episodes" in screen_text(app), what="run 3")

        def dim(number: int) -> bool:  # the other game's rows are listed, dim
            return all("dim" in str(getattr(c, "style", "")) for c in app.main.runs_table.get_row(str(number))[1:])

        await until(pilot, lambda: dim(2) and not dim(1) and not dim(3), what="CartPole's row dim")
        # a run of another game announced: the plot starts over with that game's past runs
        app._show_environment(spaces_of("CartPole-v1"))
        await until(pilot, lambda: app.history.runs.tolist() == [2] * 4, what="CartPole's past run alone")
        assert app.history.scores.tolist() == [200.0] * 4
        await until(pilot, lambda: dim(1) and not dim(2) and dim(3), what="Acrobot's rows dim")


async def test_a_game_with_no_past_runs_keeps_the_plot_to_its_own_runs_when_one_ends(tmp_path):
    """The plot started over for a game the history held no runs of; when that game's first run
    ended, the history's earlier runs "missed" by the plot were read again: CartPole's 200s came
    back beside Acrobot's, one mean(100) of +303 for scores that are all negative (new-user pass 5)."""
    path = str(tmp_path / "runs.sqlite3")
    two_games_history(path)
    app = ControlRoomApp(SessionOptions(offline=True, env_id="CartPole-v1"), db_path=path)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.history.runs.tolist() == [2] * 4, what="CartPole's run")
        app._show_environment(spaces_of("MountainCar-v0"))  # no run of it in the file
        await until(pilot, lambda: len(app.history) == 0, what="the plot to start over")
        store = app.store
        store.begin_run(
            "m1", episodes=2, deterministic=False, seed=1, env_id="MountainCar-v0", address="x", started=7.0
        )
        for index in range(2):
            store.add_episode("m1", index + 1, -200.0, 200, 8.0 + index)
        store.end_run("m1", avg_score=-200.0, state="done", ended=9.0)
        record = next(run for run in store.runs() if run.run_uid == "m1")
        app._check_plotted(record, -200.0)  # as a run's end does
        await until(pilot, lambda: len(app.history) == 2, what="the ended run read again")
        assert app.history.runs.tolist() == [record.number] * 2 and app.history.scores.tolist() == [-200.0] * 2


async def test_a_run_of_another_game_is_not_marked_and_a_game_changed_drops_the_marks(tmp_path):
    """A mark overlays a run's mean on the plot's axis: Acrobot's -500 and -90 were both drawn flat on
    CartPole's 0 line, the mix the plot holding one environment's runs had taken away; the progress
    line said Acrobot's "last run 3 done · avg -90.0" above it."""
    path = str(tmp_path / "runs.sqlite3")
    two_games_history(path)
    app = ControlRoomApp(SessionOptions(offline=True, env_id="CartPole-v1"), db_path=path)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.main.runs_table
        await until(pilot, lambda: table.row_count == 3, what="the runs")
        # the progress line names the plot's game's last run, not the file's (Acrobot's run 3)
        await until(pilot, lambda: "last run 2 done · avg 200.0 over 4 episodes" in screen_text(app))
        table.focus()
        for row in (0, 1):  # Acrobot's run 1, then CartPole's run 2
            table.move_cursor(row=row)
            await pilot.press("space")
        refusal = "run 1 played Acrobot-v1, the plot CartPole-v1: not marked"
        await until(pilot, lambda: refusal in [n.message for n in app._notifications], what="the refusal")
        await until(pilot, lambda: "run 2 mean(100) 200.0" in screen_text(app), what="run 2 compared")
        assert "run 1 mean" not in screen_text(app) and table.marked == {2}
        # the network plays Acrobot now: CartPole's run 2 would be drawn on its axis
        app._show_environment(spaces_of("Acrobot-v1"))
        await until(pilot, lambda: not app.main.plot.overlays and "run 2 mean" not in screen_text(app))
        assert "◆  2" not in screen_text(app) and not table.marked


async def test_the_run_that_changed_the_game_keeps_the_episodes_drawn_while_its_past_was_read(tmp_path):
    """A run of another game starts the plot over and that game's past runs are read in a thread,
    the run going among them (the recorder began it first): their arrival replaced the episodes
    drawn meanwhile with the file's copy of a moment before, and those were gone from the plot."""
    from cartpole_tui.tui.controller import HistoryLoaded

    path = str(tmp_path / "runs.sqlite3")
    two_games_history(path)
    app = ControlRoomApp(SessionOptions(offline=True, env_id="CartPole-v1"), db_path=path)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.history.runs.tolist() == [2] * 4, what="CartPole's run")
        app._show_environment(spaces_of("Acrobot-v1"))
        await until(pilot, lambda: app.history.runs.tolist() == [1] * 4 + [3] * 4, what="Acrobot's past")
        for score in (-400.0, -300.0, -200.0):  # run 4's episodes, drawn as they end
            app.history.append(score, 4, 9.0)
        # the past as read when run 4 had one episode in the file
        app._on_history_loaded(HistoryLoaded([(4, np.array([-400.0]), None)], [np.array([9.0])], "Acrobot-v1"))
        assert app.history.scores.tolist()[-3:] == [-400.0, -300.0, -200.0]
        await until(pilot, lambda: "last -200" in screen_text(app), what="run 4's latest on the plot")
