"""The control room under App.run_test, against real networks on loopback."""

from __future__ import annotations

import os
import re
import signal
import threading

import pytest
from swergio import MESSAGE_TYPE, Client, Trigger
from textual.widgets import Checkbox, Input, Label, RichLog

from cartpole_tui.env import defaults
from cartpole_tui.env.components.control import ControlClient
from cartpole_tui.env.components.environment import EnvironmentComponent
from cartpole_tui.env.components.random_agent import RandomAgent
from cartpole_tui.env.events import RunFinished
from cartpole_tui.env.runtime import schedule
from cartpole_tui.env.runtime.session import SessionOptions
from cartpole_tui.env.wire.broker import Broker
from cartpole_tui.tui.app import ControlRoomApp
from cartpole_tui.tui.bindings import KEYS
from cartpole_tui.tui.screens.modals import HelpScreen, UnreachableScreen
from cartpole_tui.tui.widgets.control_panel import ControlPanel
from cartpole_tui.tui.widgets.runs_table import RunsTable
from cartpole_tui.tui.widgets.score_plot import ScorePlot

from conftest import free_port, screen_text, start_swergio_client, until


@pytest.fixture
def agent(broker):
    instance = RandomAgent("127.0.0.1", broker.port, seed=5).start()
    yield instance
    instance.close()


def make_app(tmp_path, port=None, **kwargs) -> ControlRoomApp:
    options = SessionOptions(connect=f"127.0.0.1:{port}" if port else None, seed=11, agent="random")
    return ControlRoomApp(options, db_path=str(tmp_path / "runs.sqlite3"), **kwargs)


def log_text(app) -> str:
    return "\n".join(line.text for line in app.query_one("#log-pane", RichLog).lines)


def runs(app):
    return app.store.runs() if app.store else []


async def connected(pilot):
    await until(
        pilot,
        lambda: pilot.app.connection == "connected",
        what="the app to connect",
        seen=lambda: (pilot.app.connection, log_text(pilot.app)),
    )


async def start_run(pilot, episodes: str, deterministic: bool = False):
    field = pilot.app.query_one("#episodes", Input)
    field.value = episodes
    if deterministic != pilot.app.query_one("#deterministic", Checkbox).value:
        await pilot.press("d")
    await pilot.press("s")


async def test_default_network_start_shows_episodes_and_the_env_done_average(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await connected(pilot)
        assert app.session.embedded and app.session.address.startswith("127.0.0.1:")
        await start_run(pilot, "12")
        done = await until(pilot, lambda: [r for r in runs(app) if r.state == "done"], what="the run to end")
        assert done[0].finished == 12 and len(app.history) == 12
        await until(pilot, lambda: "average" in log_text(app), what="the ENV_DONE line in the log")
        assert f"{done[0].avg_score:.1f}" in log_text(app)
        table = app.query_one(RunsTable)
        await until(
            pilot,
            lambda: table.row_count and f"{done[0].avg_score:.1f}" in map(str, table.get_row_at(0)),
            what="the average in the runs table",
        )
        assert "run 1 done" in str(app.query_one("#progress-label", Label).render())


@pytest.mark.parametrize(
    "typed, reason",
    [
        ("0", "1–1,000,000"),
        ("abc", "a number 1–1,000,000"),
        ("", "type 1–1,000,000"),
        ("-3", "a number"),
        ("2.5", "a number"),
        ("99999999999", "not in 1–1,000,000"),
    ],
)
async def test_bad_episode_count_is_explained_and_nothing_is_sent(tmp_path, broker, agent, typed, reason):
    app = make_app(tmp_path, broker.port)
    async with app.run_test(size=(100, 30)) as pilot:
        await connected(pilot)
        before = broker.stats()["rooms"]["control"].messages
        await start_run(pilot, typed)
        error = app.query_one("#episodes-error", Label)
        await until(pilot, lambda: reason in str(error.render()), what="the error next to the field")
        assert broker.stats()["rooms"]["control"].messages == before
        assert runs(app) == []


async def test_stop_ends_the_run_as_stopped(tmp_path, broker, agent):
    app = make_app(tmp_path, broker.port)
    async with app.run_test(size=(100, 30)) as pilot:
        await connected(pilot)
        await start_run(pilot, "1000000")
        await until(pilot, lambda: len(app.history) >= 3, what="a few episodes")
        await pilot.press("x")
        stopped = await until(pilot, lambda: [r for r in runs(app) if r.state == "stopped"], what="stopped")
        assert 3 <= stopped[0].finished < 1_000_000
        assert not app.query_one("#start").disabled


async def test_evolve_without_an_evolution_component_says_so(tmp_path, broker, agent):
    app = make_app(tmp_path, broker.port, evolution_timeout=0.5)
    async with app.run_test(size=(120, 40)) as pilot:
        await connected(pilot)
        await pilot.press("e")
        state = app.query_one("#evo-state", Label)
        await until(pilot, lambda: "no answer" in str(state.render()), what="evo: no answer")
        await until(pilot, lambda: "no evolution component answered" in log_text(app), what="the log line")


def plain_evolution(port: int) -> Client:
    """An unmodified swergio 0.0.2 client answering EVOLUTION with a bare EVO_DONE (no report)."""
    evolution = Client("evolution", "127.0.0.1", port, "utf-8", 10)
    evolution.add_eventHandler(
        lambda msg: {"STATUS": "EVO_DONE"} if msg.get("EVOLUTION") else None,
        MESSAGE_TYPE.DATA.CUSTOM,
        responseRooms="control",
        trigger=Trigger(MESSAGE_TYPE.DATA.CUSTOM, "control"),
    )
    start_swergio_client(evolution)
    return evolution


async def test_the_schedule_is_refused_on_the_embedded_network_of_random_agents(tmp_path):
    """`r` with --agent random trained and evaluated round 1, waited 30 s for an evolution nothing
    answers and said "schedule failed" (`run --schedule --agent random` is refused at once)."""
    app = make_app(tmp_path)  # the embedded network, random agents
    async with app.run_test(size=(100, 30)) as pilot:
        await connected(pilot)
        await pilot.press("r")
        refusal = "the schedule evolves the swarm: --agent random has no evolution"
        await until(pilot, lambda: refusal in [n.message for n in app._notifications], what="the refusal")
        assert "schedule" not in screen_text(app) and not runs(app)


async def test_evolve_with_an_evolution_component_shows_done(tmp_path, broker, agent):
    evolution = plain_evolution(broker.port)
    app = make_app(tmp_path, broker.port)
    async with app.run_test(size=(100, 30)) as pilot:
        await connected(pilot)
        await pilot.press("e")
        state = app.query_one("#evo-state", Label)
        await until(pilot, lambda: "done" in str(state.render()), what="evo: done")
    evolution.close()


async def test_evolve_is_refused_while_a_run_plays_and_taken_after(tmp_path, broker, agent):
    """Evolving replaced the models while their episodes were measured: `s` was refused during a
    run, `e` was not (new-user pass 4)."""
    evolution = plain_evolution(broker.port)
    app = make_app(tmp_path, broker.port)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await connected(pilot)
            await start_run(pilot, "1000000")
            await until(pilot, lambda: len(app.history) >= 3, what="a few episodes")
            await pilot.press("e")
            state = app.query_one("#evo-state", Label)
            refusal = "a run is going: evolve between runs (x stops it)"
            await until(pilot, lambda: refusal in [n.message for n in app._notifications], what="the refusal")
            assert "running" not in str(state.render()) and "done" not in str(state.render())
            await pilot.press("x")
            await until(pilot, lambda: [r for r in runs(app) if r.state == "stopped"], what="stopped")
            await pilot.press("e")
            await until(pilot, lambda: "done" in str(state.render()), what="evo: done between runs")
    finally:
        evolution.close()


async def test_broker_lost_and_back(tmp_path):
    port = free_port()
    first = Broker("127.0.0.1", port).start()
    agent = RandomAgent("127.0.0.1", port).start()
    app = make_app(tmp_path, port)
    async with app.run_test(size=(100, 30)) as pilot:
        await connected(pilot)
        await start_run(pilot, "3")
        await until(pilot, lambda: [r for r in runs(app) if r.state == "done"], what="a first run")
        first.stop()
        agent.close()
        await until(pilot, lambda: app.connection == "disconnected", what="disconnected")
        second = Broker("127.0.0.1", port).start()
        agent = RandomAgent("127.0.0.1", port).start()
        await connected(pilot)
        await start_run(pilot, "2")
        await until(pilot, lambda: len([r for r in runs(app) if r.state == "done"]) == 2, what="a run after")
        assert len(app.history) == 5  # nothing shown before was lost
    agent.close()
    second.stop()


async def test_unreachable_broker_shows_a_retry_screen(tmp_path):
    port = free_port()
    app = make_app(tmp_path, port)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, UnreachableScreen), what="the unreachable screen")
        assert f"127.0.0.1:{port}" in app.screen.reason
        broker = Broker("127.0.0.1", port).start()
        await pilot.press("r")
        await connected(pilot)
        broker.stop()


async def test_keys_toggle_panes_help_and_deterministic(tmp_path, broker, agent):
    app = make_app(tmp_path, broker.port)
    async with app.run_test(size=(120, 40)) as pilot:
        await connected(pilot)
        for key, pane in (
            ("1", "#plot-pane"),
            ("2", "#cart-pane"),
            ("3", "#runs-pane"),
            ("4", "#network-pane"),
            ("5", "#log-pane"),
        ):
            shown = app.query_one(pane).display
            await pilot.press(key)
            assert app.query_one(pane).display is not shown
        det = app.query_one("#deterministic", Checkbox)
        assert "▐ ▌ Det" in screen_text(app)  # off: no mark (not only another colour)
        await pilot.press("d")
        await pilot.pause()
        assert det.value is True and "▐X▌ Det" in screen_text(app)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("end")  # the help scrolls: its last section
        await pilot.pause()
        assert "Log (focused)" in screen_text(app) and "scroll back" in screen_text(app)  # the log's keys too
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_small_terminal_keeps_plot_controls_and_status(tmp_path, broker, agent):
    app = make_app(tmp_path, broker.port)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot)
        for selector in ("#status", ControlPanel, "#plot-pane", "#progress-row"):
            widget = app.query_one(selector)
            assert widget.display and widget.region.height > 0 and widget.region.bottom <= 24
        assert not app.query_one("#network-pane").display
        await pilot.resize_terminal(120, 40)
        await pilot.pause()
        await pilot.resize_terminal(60, 15)
        await pilot.pause()


async def test_mark_runs_to_compare_and_export_them(tmp_path, broker, agent, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = make_app(tmp_path, broker.port)
    async with app.run_test(size=(120, 40)) as pilot:
        await connected(pilot)
        for n in (4, 6):
            await start_run(pilot, str(n))
            await until(
                pilot,
                lambda done=(1 if n == 4 else 2): len([r for r in runs(app) if r.state == "done"]) == done,
                what=f"run of {n}",
            )
        table = app.query_one(RunsTable)
        await until(pilot, lambda: table.row_count == 2, what="two rows")
        table.focus()
        table.move_cursor(row=0)
        await pilot.press("space")
        plot = app.query_one(ScorePlot)
        await until(pilot, lambda: len(plot.overlays) == 1, what="an overlay")
        assert len(plot.overlays[0].values) == 4
        await pilot.press("c")
        written = await until(pilot, lambda: list(tmp_path.glob("cartpole-runs-*.csv")), what="the export")
        rows = written[0].read_text().splitlines()
        assert len(rows) == 1 + 4 and all(row.startswith("1,") for row in rows[1:])
        assert str(written[0]) in log_text(app).replace("\n", "")


async def test_schedule_runs_rounds_and_x_stops_it(tmp_path, broker):
    from cartpole_tui.env.swarm.swarm import Swarm

    swarm = Swarm("127.0.0.1", broker.port, models=4, seed=2).start()
    app = make_app(tmp_path, broker.port)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await connected(pilot)
            await pilot.press("r")
            await until(pilot, lambda: "round 1:" in log_text(app), what="a first round in the log")
            assert [r.params.deterministic for r in runs(app)][:2] == [False, True]  # train, then evaluate
            await pilot.press("x")
            await until(pilot, lambda: "(your x)" in log_text(app).replace("\n", ""), what="the schedule to end")
            assert not app.controller.schedule_running  # a new schedule may start
            rounds = log_text(app).count("round ")
            assert rounds >= 1 and all(r.state != "running" for r in runs(app))
    finally:
        swarm.close()


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_the_progress_line_says_the_schedules_round_and_target_and_how_it_ended(tmp_path, broker, size):
    """At 80x24 (no log pane) nothing on screen said that a schedule was going, its round, its
    target, or how it ended (a toast of a few seconds)."""
    from cartpole_tui.env.swarm.swarm import Swarm

    swarm = Swarm("127.0.0.1", broker.port, models=4, seed=2).start()
    app = make_app(tmp_path, broker.port)

    def progress_line() -> str:
        return screen_text(app).splitlines()[2].strip()

    try:
        async with app.run_test(size=size) as pilot:
            await connected(pilot)
            await pilot.press("r")
            going = r"^(━|╸|╺)+\s+\d+% \S+ schedule round (\d+) · target 475 · run \d+ · \d+/20"
            shown = await until(pilot, lambda: re.search(going, progress_line()), what="the schedule on the line")
            assert int(shown[2]) >= 1
            await pilot.press("x")
            # x may land as the round's run ends by itself: "· run 7 done ·" (CI, under load)
            ended = r"^schedule stopped (in|after) round \d+ \(your x\)( · run \d+ (stopped|done) · .*)?$"
            await until(
                pilot,
                lambda: re.search(ended, progress_line()),
                what="how it ended, on the line",
                seen=lambda: (progress_line(), log_text(app)),
            )
            assert len(screen_text(app).splitlines()[2].rstrip()) < size[0]  # whole, not cut at the edge
    finally:
        swarm.close()


async def test_x_during_a_schedule_says_its_run_is_stopped_now(tmp_path, broker, agent, monkeypatch):
    """The log said "schedule stopping after the current run", then the run stopped at once."""
    monkeypatch.setattr(defaults, "SCHEDULE_TRAIN_JOINED", 1_000_000)  # x lands in the first run (a network joined)
    app = make_app(tmp_path, broker.port)
    async with app.run_test(size=(120, 40)) as pilot:
        await connected(pilot)
        await pilot.press("r")
        await until(pilot, lambda: len(app.history) >= 3, what="the schedule's first run playing")
        await pilot.press("x")
        await until(pilot, lambda: "schedule stopped in round 1 (your x)" in log_text(app), what="the schedule to end")
        said = log_text(app).split("schedule stopping", 1)[1].splitlines()
        assert said[0] == ": its run going is stopped, and it ends", said
        told = sorted(line[9:] for line in said[1:3])  # the STOP's answer and the run's end, in either order
        assert told[0].startswith("run 1 stopped: ") and told[1] == "stop requested", said


async def test_x_between_a_schedules_runs_says_no_run_of_it_starts(tmp_path, broker, agent):
    app = make_app(tmp_path, broker.port)  # random agents: no evolution answers, the schedule waits at its first
    async with app.run_test(size=(120, 40)) as pilot:
        await connected(pilot)
        await pilot.press("r")
        # run 2, the evaluation, is stopped at its first episode below the target
        ended = lambda: re.search(r"run 2 (done|stopped)", log_text(app)) and app.current is None  # noqa: E731
        await until(pilot, ended, what="round 1's evolution")
        await pilot.press("e")  # it said "a run is going: evolve between runs" with no run going
        refusal = "the schedule is going: it evolves between its runs (x stops it)"
        await until(pilot, lambda: refusal in [n.message for n in app._notifications], what="the refusal")
        await pilot.press("x")
        await until(pilot, lambda: "schedule stopping" in log_text(app), 5, "the line")
        assert log_text(app).split("schedule stopping", 1)[1].startswith(": no run of it starts, and it ends")


def test_a_stop_asked_while_a_schedules_run_starts_stops_that_run(broker, closing):
    """Between the schedule's check of its stop and its run's START, x's STOP found no run: the
    run played to its end, and the log's "its run going is stopped" was not so."""
    closing(RandomAgent("127.0.0.1", broker.port, seed=5).start())
    closing(EnvironmentComponent("127.0.0.1", broker.port, seed=5).start())
    ended: list[RunFinished] = []
    control = ControlClient(
        "127.0.0.1", broker.port, on_event=lambda e: ended.append(e) if isinstance(e, RunFinished) else None
    )
    closing(control)
    stop = threading.Event()
    stopped: list[schedule.ScheduleStopped] = []

    def play() -> None:
        try:
            # on_phase is called once the stop was checked: the latest moment x can land before the START
            schedule.run_schedule(control, train=1_000_000, stop=stop, on_phase=lambda *_: stop.set())
        except schedule.ScheduleStopped as error:
            stopped.append(error)

    playing = threading.Thread(target=play, daemon=True)
    playing.start()
    playing.join(20)
    if playing.is_alive():
        control.stop_run()
        pytest.fail("the run started after the stop played on")
    assert stopped[0].result.rounds == [] and [run.stopped for run in ended] == [True]


async def test_the_embedded_environment_is_seen_before_the_run_it_plays(tmp_path):
    """The log said "run 1 started" and then "component seen: environment": the environment the
    app started joined before the app's control client, which saw it only at its first message."""
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await connected(pilot)
        await until(pilot, lambda: "component seen: environment" in log_text(app), 10, "the environment seen")
        await start_run(pilot, "5")
        await until(pilot, lambda: "run 1 done" in log_text(app), what="the run")
        lines = log_text(app).splitlines()
        seen = next(i for i, line in enumerate(lines) if line.endswith("component seen: environment"))
        assert seen < next(i for i, line in enumerate(lines) if "run 1 started" in line), lines
        assert sum("component seen: environment" in line for line in lines) == 1, lines


async def test_a_run_goes_on_behind_the_help_screen(tmp_path, broker, agent):
    app = make_app(tmp_path, broker.port)
    async with app.run_test(size=(100, 30)) as pilot:
        await connected(pilot)
        await start_run(pilot, "1000000")
        await until(pilot, lambda: len(app.history) >= 2, what="episodes")
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        seen = len(app.history)
        await until(pilot, lambda: len(app.history) > seen + 5, what="episodes while the help is open")
        await pilot.press("escape")
        await pilot.press("x")
        await until(pilot, lambda: [r for r in runs(app) if r.state == "stopped"], what="stopped")


async def test_the_embedded_network_is_restarted_when_it_dies(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await connected(pilot)
        first = app.session.address
        os.kill(app.session.network.pid, signal.SIGKILL)  # the child dies as a crash would kill it
        await until(pilot, lambda: app.connection == "disconnected", what="disconnected")
        await connected(pilot)
        assert app.session.network.alive and app.session.address != first
        await start_run(pilot, "3")
        await until(pilot, lambda: [r for r in runs(app) if r.state == "done"], what="a run on the new network")


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
async def test_the_help_screen_shows_every_key_it_documents(tmp_path, size):
    app = ControlRoomApp(SessionOptions(offline=True), db_path=str(tmp_path / "runs.sqlite3"))
    async with app.run_test(size=size) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        help_box = app.screen.query_one("#help-text")
        assert help_box.region.width >= 60 and help_box.region.height >= 10
        seen = ""
        for _ in range(10):  # at 80x24 the help scrolls: page through it as a person would
            seen += screen_text(app)
            await pilot.press("pagedown")
            await pilot.pause()
        flat = " ".join(seen.split())
        for key in KEYS:
            assert f"{key.display} {key.help[:30]}" in flat, key
        assert "ctrl+p" in flat and "command palette" in flat
