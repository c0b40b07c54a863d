"""Two control rooms on one network: one starts a run, the other follows it.

The follower is the app (App.run_test, no environment of its own); the starter a headless
session whose environment plays the run and writes the history. Started in either order,
the follower shows the run's true size, lists it in its runs table while it plays and
ends it done, without a restart.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys

import pytest
from test_app import log_text, until
from test_published import all_joined
from test_swarm import members
from textual.widgets import Label

from cartpole_tui.env.components.control import ControlClient
from cartpole_tui.env.components.random_agent import RandomAgent
from cartpole_tui.env.events import CartSeen, RunStarted
from cartpole_tui.env.history.store import RunStore
from cartpole_tui.env.runtime.session import Session, SessionOptions
from cartpole_tui.env.swarm.swarm import Swarm
from cartpole_tui.env.wire import protocol
from cartpole_tui.env.words import steps_per_second
from cartpole_tui.tui.app import ControlRoomApp
from cartpole_tui.tui.widgets.runs_table import RunsTable
from tests.published import PublishedNetwork

from conftest import screen_text, wait_for

CLI = os.path.join(os.path.dirname(sys.executable), "cartpole-tui")


@pytest.fixture
def agent(broker):
    instance = RandomAgent("127.0.0.1", broker.port, seed=5).start()
    yield instance
    instance.close()


@pytest.fixture
def starter(broker, agent, tmp_path):
    """A control room with the environment (one instance: a random agent plays it slowly enough)."""
    store = RunStore.open(str(tmp_path / "played.sqlite3"))
    options = SessionOptions(connect=f"127.0.0.1:{broker.port}", seed=3, agent="random", parallel=1)
    session = Session(options, store=store).open()
    yield session
    session.close()
    store.close()


def follower(broker, db_path) -> ControlRoomApp:
    options = SessionOptions(connect=f"127.0.0.1:{broker.port}", embed_env=False, agent="random")
    return ControlRoomApp(options, db_path=str(db_path))


def table_row(app, number: int) -> list[str]:
    table = app.query_one(RunsTable)
    for index in range(table.row_count):
        cells = [str(cell) for cell in table.get_row_at(index)]
        if cells[1] == str(number):
            return cells
    return []


async def follows_to_the_end(pilot, app, episodes: int, store_of_run: RunStore) -> None:
    """The follower's log, progress label and runs table show the run of ``episodes`` and its end."""
    await until(pilot, lambda: f"started: {episodes:,} episodes" in log_text(app), what="the run's true size")
    label = app.query_one("#progress-label", Label)
    await until(pilot, lambda: f"/{episodes}" in str(label.render()), what="x/N in the progress label")
    number = app.run_progress.numbers[app.current.run_id] if app.current else None
    assert number is not None
    await until(pilot, lambda: table_row(app, number), what="the run in the runs table while it plays")
    await until(pilot, lambda: "done" in table_row(app, number)[-1], timeout=60, what="the row to end done")
    assert f"run {number} done: average" in log_text(app)
    played = store_of_run.runs()[-1]
    assert played.state == "done" and played.finished == episodes
    assert table_row(app, number)[2] == str(episodes)
    # one steps/s for the run in its log line, its runs table and its status line (the log's once
    # came from a record a second old, or from the follower's clock at ENV_DONE: 3,082 vs 3,033)
    rate = table_row(app, number)[7]
    assert rate and f"over {episodes:,} episodes (ENV_DONE), {rate} steps/s" in log_text(app), (rate, log_text(app))
    status = lambda: screen_text(app).splitlines()[0].rstrip()  # noqa: E731
    await until(pilot, lambda: status().endswith(f"  {rate} steps/s"), what=f"{rate} steps/s on the status line")


async def test_a_follower_started_first_shows_the_run_it_did_not_start(broker, starter, tmp_path):
    app = follower(broker, tmp_path / "played.sqlite3")  # the file the starter's environment writes
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.connection == "connected", what="the follower to connect")
        starter.control.start_run(400, False, 3)
        await until(pilot, lambda: app.main.cart.observation is not None, what="the cart, from the cart room")
        await follows_to_the_end(pilot, app, 400, starter.recorder.store)
        # sharing the environment's file: the follower wrote nothing of its own
        assert [r.followed for r in app.store.runs()] == [False]
        assert table_row(app, 1)[7] == f"{starter.recorder.store.runs()[-1].steps_per_s:,.0f}"  # the starter's figure


async def test_a_follower_joining_mid_run_catches_up_and_records_it_as_followed(broker, starter, tmp_path):
    starter.control.start_run(900, False, 3)
    wait_for(lambda: starter.recorder.store.runs() and starter.recorder.store.runs()[-1].finished >= 20, 30, "a start")
    app = follower(broker, tmp_path / "own.sqlite3")  # another machine's file: it records what it follows
    async with app.run_test(size=(120, 40)) as pilot:
        await follows_to_the_end(pilot, app, 900, starter.recorder.store)
        followed = app.store.runs()[-1]
        assert followed.followed and followed.state == "done" and 0 < followed.finished <= 900
        assert followed.params.episodes == 900


def told_on_screen(app) -> tuple[tuple, tuple] | None:
    """(what the progress line says of a run: number, episodes, state), (what its row in the runs
    table says); None while the progress line names no count."""
    lines = screen_text(app).splitlines()
    going = re.search(r"run (\d+) · (\d+)/\d+", lines[2])
    ended = re.search(r"run (\d+) (done|stopped) · avg \S+ over (\d+) episodes", lines[2])
    if going:
        told = (going.group(1), going.group(2), "running")
    elif ended:
        told = (ended.group(1), ended.group(3), ended.group(2))
    else:
        return None
    row = next((line for line in lines if re.match(rf"┃\s+◆?\s*{told[0]}\s", line)), "")
    cells = re.match(rf"┃\s+◆?\s*({told[0]})\s+(\d+)(?:/\d+)?\s.*\s(running|done|stopped)\s*┃", row)
    return told, cells.groups() if cells else (row,)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_a_follower_sharing_the_environments_file_tells_one_moment_through_short_runs(
    broker, starter, tmp_path, size
):
    """Through a schedule's short runs a follower's table said "21  0/20 … running" beside
    "run 22 done" (finding 9): its history is the environment's file, read once a second."""
    app = follower(broker, tmp_path / "played.sqlite3")
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: app.connection == "connected", what="the follower to connect")
        seen: set[tuple] = set()

        async def agrees() -> None:
            told = told_on_screen(app)
            if told is not None and told[0] not in seen:
                agree = lambda: (t := told_on_screen(app)) is not None and t[0] == t[1]  # noqa: E731
                await until(pilot, agree, 0.5, f"the runs table to say what the progress line says: {told}")
                seen.add(told[0])

        for number in range(1, 4):
            played = asyncio.create_task(asyncio.to_thread(starter.control.run, 40, False, seed=3, idle_timeout=30))
            while not played.done():
                await agrees()
                await pilot.pause(0.05)
            await played
            ended = (str(number), "40", "done")
            await until(pilot, lambda ended=ended: (told_on_screen(app) or [()])[0] == ended, what=f"{ended} told")
            await agrees()
        assert {(str(n), "40", "done") for n in (1, 2, 3)} <= seen, seen


def cli_process(*args: str) -> subprocess.Popen:
    return subprocess.Popen([CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def read_runs(db: str):
    with RunStore.open(db, read_only=True) as store:
        return store.runs()


def test_killing_the_starting_control_room_leaves_the_run_to_end_done(broker, agent, tmp_path):
    db = str(tmp_path / "shared.sqlite3")
    address = f"127.0.0.1:{broker.port}"
    env = cli_process("env", "--connect", address, "--db", db, "--parallel", "1")
    try:
        assert "connected" in env.stdout.readline()
        run = cli_process("run", "--connect", address, "--no-env", "--db", db, "--episodes", "1500")
        wait_for(lambda: read_runs(db) and read_runs(db)[-1].finished >= 20, 60, "the run to play")
        run.send_signal(signal.SIGKILL)
        run.wait(10)
        wait_for(lambda: read_runs(db)[-1].state != "running", 120, "the run to end")
        (played,) = read_runs(db)  # the starter wrote no run of its own into the shared file
        assert played.state == "done" and played.finished == 1500 and not played.followed
        with RunStore.open(db, read_only=True) as store:
            assert [e.index for e in store.episodes(played.run_uid)] == list(range(1, 1501))
    finally:
        env.terminate()
        env.wait(10)


def test_killing_the_environment_fails_the_run_with_its_episodes_kept(broker, agent, tmp_path):
    db = str(tmp_path / "shared.sqlite3")
    address = f"127.0.0.1:{broker.port}"
    env = cli_process("env", "--connect", address, "--db", db, "--parallel", "1")
    run = None
    try:
        assert "connected" in env.stdout.readline()
        run = cli_process("run", "--connect", address, "--no-env", "--db", db, "--episodes", "100000", "--timeout", "5")
        wait_for(lambda: read_runs(db) and read_runs(db)[-1].finished >= 20, 60, "the run to play")
        env.send_signal(signal.SIGKILL)
        env.wait(10)
        kept = read_runs(db)[-1].finished
        with RunStore.open(db) as store:  # the next open finds the environment dead
            (failed,) = store.runs()
            assert failed.state == "failed" and failed.finished == kept >= 20
            assert len(store.episodes(failed.run_uid)) == kept
    finally:
        for process in (run, env):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(10)


async def test_with_the_published_environment_a_follower_counts_from_its_observations(broker, tmp_path):
    """It announces nothing and reports no episode: the follower watches ``observation`` instead."""
    net = PublishedNetwork(broker.port, environment=True, evolution=False)
    all_joined(broker, net.clients)
    watching = members(broker, "observation")
    starter = ControlClient("127.0.0.1", broker.port, name="starter")
    app = follower(broker, tmp_path / "own.sqlite3")
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.connection == "connected", what="the follower to connect")
            await until(
                pilot, lambda: members(broker, "observation") > watching, what="the follower to watch observations"
            )
            run_id = starter.start_run(5)
            # its size from the other room's START (the real network showed "6/0", then "run ? done")
            await until(pilot, lambda: "run 1 started: 5 episodes" in log_text(app), what="the run's size")
            await until(pilot, lambda: app.main.cart.observation is not None, what="the cart, from observations")
            await until(pilot, lambda: "run 1 done: average" in log_text(app), timeout=90, what="the ENV_DONE")
            await until(pilot, lambda: app.store.runs() and app.store.runs()[-1].finished == 5, what="5 episodes")
            (run,) = app.store.runs()
            assert run.followed and run.state == "done" and run.total_steps > 0
            assert run.run_uid == run_id and run.params.episodes == 5
            assert re.search(r"run 1 done: average [\d.]+ over 5 episodes \(ENV_DONE\)", log_text(app)), log_text(app)
            await until(pilot, lambda: table_row(app, 1)[2:3] == ["5"], what="5 episodes in the runs table")
            assert "waiting for agents" not in log_text(app)
    finally:
        starter.close()
        net.close()


async def test_with_the_published_environment_a_follower_joining_mid_run_records_what_it_saw(broker, tmp_path):
    """A room that joins while their run plays begins it at the first observation it hears (it
    showed "no run yet", then "run ? done" and no row): the episode it joined midway is not counted,
    the size it was not told is "?", the ENV_DONE's average is the run's."""
    net = PublishedNetwork(broker.port, environment=True, evolution=False)
    all_joined(broker, net.clients)
    starter = ControlClient("127.0.0.1", broker.port, name="starter")
    environment, aggregation = net.environment, net.aggregation
    assert environment is not None and aggregation is not None
    try:
        starter.start_run(16)
        wait_for(lambda: environment.episodes_counter >= 3, 60, "their run to be under way")
        app = follower(broker, tmp_path / "own.sqlite3")
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: "seen: started elsewhere" in log_text(app), timeout=30, what="the run joined")
            await until(pilot, lambda: "run 1 done: average" in log_text(app), timeout=120, what="the ENV_DONE")
            # their last DONE comes after the ENV_DONE: the run is whole once its last observation is answered
            await until(pilot, lambda: aggregation.actions == environment.observations, what="the last answered")
            await until(
                pilot,
                lambda: (
                    app.store.runs()
                    and app.store.runs()[-1].state == "done"
                    and table_row(app, 1)[2:3] == [f"{app.store.runs()[-1].finished}/?"]
                ),
                what="the run recorded and shown as seen, of ? asked",
            )
            (run,) = app.store.runs()
            seen = len(app.store.episodes(run.run_uid))
            assert run.followed and 1 <= seen == run.finished < 16 - 3
            assert run.avg_score == pytest.approx(environment.totalscore / 16)
    finally:
        starter.close()
        net.close()


async def test_a_follower_with_a_file_of_its_own_records_the_environments_times(broker, starter, tmp_path):
    """Its steps/s and time are the environment's: its episodes and its end are stamped when they
    ended there (ENDED_AT), not when heard here (late under load: 5,780 steps/s beside 7,854)."""
    app = follower(broker, tmp_path / "own.sqlite3")
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.connection == "connected", what="the follower to connect")
        starter.control.start_run(200, False, 3)
        await follows_to_the_end(pilot, app, 200, starter.recorder.store)
        played, followed = starter.recorder.store.runs()[-1], app.store.runs()[-1]
        assert followed.followed and followed.run_uid == played.run_uid
        times = lambda store: [e.wall_time for e in store.episodes(played.run_uid)]  # noqa: E731
        assert times(app.store) == times(starter.recorder.store)
        assert followed.steps_per_s == played.steps_per_s
        assert followed.ended == played.ended  # its end too (ENV_DONE's ENDED_AT): one duration
        assert table_row(app, followed.number)[6:8] == [f"{played.duration:.1f}s", f"{played.steps_per_s:,.0f}"]


def test_a_control_room_that_joined_before_the_environment_leaves_it_vectorised(broker, closing):
    """Nothing answered its state query, so it took the network for the published environment
    and watched ``observation``; a member there that takes no batches kept every run to one
    instance (bench.app --followers: 267 vs 5,227 steps/s). Our environment says it is there
    when it joins, and the control room leaves the room."""
    closing(Swarm("127.0.0.1", broker.port, models=2, seed=1).start())
    wait_for(lambda: members(broker, protocol.LOGITS) == 1, 10, "the swarm to join")
    agents = members(broker, protocol.OBSERVATION)
    address = f"127.0.0.1:{broker.port}"
    follower = Session(SessionOptions(connect=address, embed_env=False)).open()
    closing(follower)
    rooms = follower.control.client.rooms
    wait_for(lambda: protocol.OBSERVATION in rooms, 10, "the follower to watch observations (no environment yet)")

    started: list[RunStarted] = []
    starter = Session(SessionOptions(connect=address, seed=3, parallel=10), on_event=started.append).open()
    closing(starter)
    wait_for(lambda: protocol.OBSERVATION not in rooms, 10, "the follower to leave observation")
    # the swarm's and the environment's own (it joins the rooms it sends to), not the follower's
    wait_for(lambda: members(broker, protocol.OBSERVATION) == agents + 1, 10, "the follower out of observation")
    result = starter.control.run(30, False, seed=3, idle_timeout=30)
    assert result.episodes == 30
    assert [event.instances for event in started if isinstance(event, RunStarted)] == [10]


async def test_the_cart_seen_from_the_network_is_drawn_at_the_redraw_rate_not_as_it_comes(tmp_path):
    """The cart room brings up to 10 views a second: each used to repaint the cart pane (a
    follower wrote 12–15 KiB/s at 80x24); now only the latest is drawn at the next repaint."""
    app = ControlRoomApp(SessionOptions(offline=True), db_path=str(tmp_path / "runs.sqlite3"))
    async with app.run_test(size=(80, 24)) as pilot:
        for step in range(50):  # as the control client's thread hands them on
            app.controller._from_session(CartSeen((0.01 * step, 0.0, 0.0, 0.0)))
        assert not app.controller.drain()  # nothing queued for the screen
        await until(pilot, lambda: app.main.cart.observation == (0.49, 0.0, 0.0, 0.0), what="the latest view drawn")


def test_another_rooms_run_stopped_before_any_episode_is_counted_as_none(broker):
    """A watching room said "run 54 stopped · avg 0.0 over 100 episodes" for another room's run
    stopped with nothing played: its ENV_DONE (EPISODES 0) was counted with this room's own scores."""
    from cartpole_tui.env.events import RunFinished
    from tests.conftest import wait_for
    from tests.hostile import Raw

    heard: list[object] = []
    control = ControlClient("127.0.0.1", broker.port, on_event=heard.append)
    environment = Raw(broker.port, "environment")
    try:
        own = control.start_run(3)
        environment.send(protocol.episodes_done(own, [1, 2, 3], [500.0, 500.0, 500.0], [500] * 3, 1.0))
        environment.send(protocol.env_done(500.0, own, 3))
        assert control.wait_run(idle_timeout=5).episodes == 3
        environment.send(protocol.env_done(0.0, "another-rooms-run", 0, stopped=True))
        ended = lambda: [e for e in heard if isinstance(e, RunFinished) and e.run_id == "another-rooms-run"]  # noqa: E731
        wait_for(ended, 5, "the other room's run to end")
        assert ended()[0].episodes == 0 and ended()[0].stopped
    finally:
        environment.sock.close()
        control.close()


async def test_a_followers_running_row_has_the_environments_figures_at_its_count(broker, starter, tmp_path):
    """Two rooms at one count (286/2000) showed best 83, 0.4s, 11,815 steps/s and 47, 0.2s, 9,673
    (finding 9): the count was heard, the other figures read from the file once a second, each
    room at its own moment. Every figure of the row is now of the count's moment: the environment's
    (its file's figures after that many episodes), whichever room shows it."""
    app = follower(broker, tmp_path / "played.sqlite3")  # sharing the environment's file
    rows: list[tuple[int, str, str, str]] = []
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.connection == "connected", what="the follower to connect")
        starter.control.start_run(600, False, 3)

        def running_row() -> bool:
            row = re.search(r"┃\s+1\s+(\d+)/600\s+no\s+…\s+(\S+)\s+(\S+)\s+(\S+)\s+running\s+┃", screen_text(app))
            if row:
                rows.append((int(row.group(1)), *row.groups()[1:]))
            return "run 1 done" in screen_text(app).splitlines()[2]

        await until(pilot, running_row, timeout=90, what="the run to end")
    played = starter.recorder.store.runs()[-1]
    episodes = starter.recorder.store.episodes(played.run_uid)  # one instance: they end in number order
    assert len({row[0] for row in rows}) >= 3, rows  # the row was seen at several counts
    for count, best, duration, rate in rows:
        first = episodes[:count]
        played_for = first[-1].wall_time - played.started
        truth = (
            f"{max(e.score for e in first):g}",
            f"{played_for:.1f}s",
            steps_per_second(sum(e.steps for e in first) / played_for),
        )
        assert (best, duration, rate) == truth, (count, (best, duration, rate), truth)
