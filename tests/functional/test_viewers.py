"""Several control rooms on one shared network (the README's: broker, `env --db FILE`, swarm, and
any number of `--no-env --db FILE` control rooms): each draws what the history file holds.

The environment here is a session in this process writing the shared file with 100 instances
(episodes end out of number order); every control room is the app under App.run_test.
"""

from __future__ import annotations

import re
import threading

import pytest
from test_app import log_text, until

from cartpole_tui.env.components.control import ControlClient
from cartpole_tui.env.events import RunFinished
from cartpole_tui.env.history.store import RunStore
from cartpole_tui.env.runtime.schedule import ScheduleResult
from cartpole_tui.env.runtime.session import Session, SessionOptions
from cartpole_tui.env.swarm.swarm import Swarm
from cartpole_tui.env.wire import protocol
from cartpole_tui.tui.app import ControlRoomApp
from cartpole_tui.tui.controller import ScheduleStoppedBy

from conftest import screen_text, wait_for

SIZE = (120, 40)


@pytest.fixture
def shared(broker, closing, tmp_path):
    """The shared network's environment and swarm; returns the history file they write."""
    closing(Swarm("127.0.0.1", broker.port, models=4, seed=1).start())
    db = tmp_path / "shared.sqlite3"
    store = RunStore.open(str(db))
    closing(store)
    closing(Session(SessionOptions(connect=f"127.0.0.1:{broker.port}", seed=3, parallel=100), store=store).open())
    return db


def viewer(broker, db) -> ControlRoomApp:
    return ControlRoomApp(SessionOptions(connect=f"127.0.0.1:{broker.port}", embed_env=False), db_path=str(db))


def read_runs(db):
    with RunStore.open(str(db), read_only=True) as store:
        return store.runs()


def plot_rows(app) -> list[str]:
    """The score plot as the screen shows it: its rows, legend and axis, without its neighbours."""
    lines = screen_text(app).splitlines()
    top = next(i for i, line in enumerate(lines) if line.startswith("╭─ Score"))
    width = lines[top].index("╮") + 1
    bottom = next(i for i in range(top, len(lines)) if lines[i].startswith("╰"))
    return [line[:width] for line in lines[top : bottom + 1]]


async def drawn_from_the_file(broker, db) -> list[str]:
    """The plot of a control room opened now: drawn from the history file alone (once the file
    has the last run's end: its ENV_DONE may be heard before the end is committed)."""
    wait_for(lambda: read_runs(db) and read_runs(db)[-1].state != "running", 10, "the run's end in the file")
    late = viewer(broker, db)
    async with late.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: late.connection == "connected" and len(late.history), what="the history read")
        await pilot.pause(1.5)  # the plot redraws at half the redraw rate
        return plot_rows(late)


def runs_told(app) -> list[str]:
    """The log's lines of runs starting and ending (without their times)."""
    lines = [line.split(" ", 1)[1] for line in log_text(app).splitlines()]
    return [
        line
        for line in lines
        if line.startswith("run ") and any(f" {what}: " in line for what in ("started", "done", "stopped"))
    ]


def slow_after_sending(app) -> None:
    """The thread that sends a start goes on late (a loaded machine): the environment's
    RUN_STARTED is heard before that thread does anything more."""
    control, store = app.session.control, app.store
    sent: set[str] = set()
    send, noted = control.client.send, control.on_run_sent

    def sending(message: dict) -> None:
        send(message)
        if protocol.is_start(message):
            sent.add(message["RUN_ID"])

    def noting(started) -> None:
        if started.run_id in sent:  # already on its way: wait until its announcement came
            wait_for(lambda: store.has_run(started.run_id), 10, "the run's RUN_STARTED")
        noted(started)

    control.client.send, control.on_run_sent = sending, noting


async def test_the_room_that_started_a_schedule_draws_it_as_its_followers_and_the_history(broker, shared):
    """The room that started a schedule noted each start after sending it; an answer heard first
    had the run begun again a second later (a loaded machine): "run 1 started" after run 4, and
    episodes drawn at other places than in the history (B and a room opened later agreed)."""
    a, b = viewer(broker, shared), viewer(broker, shared)
    async with a.run_test(size=SIZE) as pilot_a, b.run_test(size=SIZE) as pilot_b:
        await until(pilot_a, lambda: a.connection == "connected", what="A to connect")
        await until(pilot_b, lambda: b.connection == "connected", what="B to connect")
        slow_after_sending(a)
        await pilot_a.press("r")
        await until(pilot_a, lambda: "round 3:" in log_text(a), timeout=90, what="three rounds")
        await pilot_a.press("x")
        await until(pilot_a, lambda: "schedule stopped" in log_text(a), what="the schedule to stop")
        await until(pilot_b, lambda: runs_told(b)[-1:] == runs_told(a)[-1:], what="B to tell A's last run's end")
        await pilot_a.pause(1.5)
        assert runs_told(a) == runs_told(b)  # A began no run again ("run 1 started" after run 4)
        seen = {"A": plot_rows(a), "B": plot_rows(b)}
    history = await drawn_from_the_file(broker, shared)
    assert seen["A"] == history, "\n".join(["A:", *seen["A"], "the history:", *history])
    assert seen["B"] == history


async def test_a_room_joining_mid_run_draws_the_run_in_the_historys_order(broker, shared):
    """A late joiner drew the run going as its episodes came (a vectorised run's end out of
    number order) and lost those that ended while it joined; at the run's end it now draws the
    history's copy."""
    starter = ControlClient("127.0.0.1", broker.port, name="starter")
    try:
        done = threading.Event()
        threading.Thread(target=lambda: (starter.run(3000, seed=4), done.set()), daemon=True).start()

        wait_for(lambda: read_runs(shared) and read_runs(shared)[-1].finished >= 300, 60, "the run to play a while")
        c = viewer(broker, shared)
        async with c.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: "run 1 · " in str(c.main.progress_label.render()), what="C to join the run")
            assert not done.is_set(), "the run ended before C joined: nothing tested"
            await until(pilot, lambda: done.is_set() and c.current is None, timeout=90, what="the run's end")
            history = await drawn_from_the_file(broker, shared)
            try:
                await until(pilot, lambda: plot_rows(c) == history, timeout=10, what="C to draw the history")
            finally:
                print("\n".join(["C:", *plot_rows(c), "the history:", *history]))
    finally:
        starter.close()


async def test_a_schedules_end_is_told_after_its_last_runs_end(broker, shared):
    """Where the environment is elsewhere the run's end comes from its ENV_DONE: the schedule's
    thread was woken before it was handed on, and the log said "schedule solved" (or "ended")
    before "run 17 done"."""
    app = viewer(broker, shared)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connection == "connected", what="the app to connect")
        # the network's thread hands the run's end on late (a loaded machine): a schedule told
        # first would be seen first
        control, controller = app.session.control, app.controller
        told, push, hand_on = threading.Event(), controller.push, control.on_event

        def pushing(event) -> None:
            push(event)
            told.set() if isinstance(event, (ScheduleResult, ScheduleStoppedBy)) else None

        def handing_on(event) -> None:
            if isinstance(event, RunFinished):
                told.wait(0.5)
            hand_on(event)

        controller.push, control.on_event = pushing, handing_on
        await pilot.press("r")
        await until(pilot, lambda: "round 1:" in log_text(app), timeout=60, what="a round")
        await pilot.press("x")
        await until(pilot, lambda: "schedule stopped" in log_text(app), what="the schedule's end")
        await until(pilot, lambda: app.current is None, what="the last run's end")
        lines = log_text(app).splitlines()
        last_run = max(i for i, line in enumerate(lines) if " stopped: " in line or " done: " in line)
        assert "schedule stopped" in lines[-1] and last_run < len(lines) - 1, lines


async def test_an_evolution_asked_elsewhere_is_shown_and_a_late_room_says_what_it_has_not_seen(broker, shared):
    """Followers showed "evo: idle" and "no evolution yet" beside an evolved network: an EVO_DONE
    answering another room's request was dropped, and a room that joins later cannot know."""
    wide = (160, 45)  # the population pane shows from 152 columns
    a, b = viewer(broker, shared), viewer(broker, shared)
    async with a.run_test(size=wide) as pilot_a, b.run_test(size=wide) as pilot_b:
        await until(pilot_a, lambda: a.connection == "connected", what="A to connect")
        await until(pilot_b, lambda: b.connection == "connected", what="B to connect")
        for generation in (1, 2):
            await pilot_a.press("e")
            await until(pilot_b, lambda g=generation: f"evo: gen {g} at" in screen_text(b), what=f"B: gen {generation}")
        assert "evolution asked by another control room: generation 2" in log_text(b).replace("\n", "")
        assert "no evolution" not in screen_text(b) and "gen 2" in screen_text(b)
        late = viewer(broker, shared)
        async with late.run_test(size=wide) as pilot:
            await until(pilot, lambda: late.connection == "connected", what="a late room to connect")
            lines = screen_text(late).splitlines()
            top = next(i for i, line in enumerate(lines) if "─ Population" in line)
            pane = " ".join(line.split("││")[-1].strip(" │") for line in lines[top + 1 : top + 4])
            assert pane.startswith("no evolution seen since this control room joined:"), pane


async def test_an_evolution_asked_elsewhere_is_told_whole_at_80_columns(broker, shared):
    """At 80x24 a follower's controls line read "evo: gen 4 at 10:40:1": the time cut. Where
    the line is short the status takes a shorter form, never a cut one."""
    a, narrow, wide = viewer(broker, shared), viewer(broker, shared), viewer(broker, shared)
    rooms = a.run_test(size=SIZE), narrow.run_test(size=(80, 24)), wide.run_test(size=SIZE)
    async with rooms[0] as pilot_a, rooms[1] as pilot_n, rooms[2] as pilot_w:
        for app, pilot in ((a, pilot_a), (narrow, pilot_n), (wide, pilot_w)):
            await until(pilot, lambda app=app: app.connection == "connected", what="the rooms to connect")
        await pilot_a.press("e")
        line = r"evo: gen 1 (at )?\d\d:\d\d:\d\d( \(asked elsewhere\))?$"
        shown = await until(pilot_n, lambda: re.search(line, screen_text(narrow).splitlines()[1].rstrip()), 30)
        assert len(screen_text(narrow).splitlines()[1].rstrip()) < 80, shown[0]  # whole, not cut at the edge
        told = await until(pilot_w, lambda: re.search(line, screen_text(wide).splitlines()[1].rstrip()), 30)
        assert told[0].endswith(" (asked elsewhere)") and " at " in told[0]


async def test_a_followers_runs_table_keeps_up_with_its_progress_line_through_a_schedule(broker, shared):
    """The runs table repainted once a second: through a schedule's short runs a follower's table
    said "21  0/20 … running" beside "run 22 done". It repaints when a run starts or ends."""
    a, b = viewer(broker, shared), viewer(broker, shared)
    behind = []
    async with a.run_test(size=SIZE) as pilot_a, b.run_test(size=SIZE) as pilot_b:
        await until(pilot_a, lambda: a.connection == "connected", what="A to connect")
        await until(pilot_b, lambda: b.connection == "connected", what="B to connect")
        await pilot_a.press("r")
        await until(pilot_a, lambda: "run 3 started" in log_text(b), what="the schedule's third run")
        for _ in range(20):
            await pilot_b.pause(0.25)
            lines = screen_text(b).splitlines()
            told = re.search(r"run (\d+) ", lines[2])
            running = [int(line.split()[1]) for line in lines if line.startswith("┃") and "running" in line]
            if told and any(number < int(told.group(1)) for number in running):
                behind.append((lines[2].strip(), running))
        await pilot_a.press("x")
        await until(pilot_a, lambda: "schedule stopped" in log_text(a), what="the schedule's end")
    assert not behind, behind


def eta_seconds(app) -> int | None:
    """The progress line's ETA in seconds (None: not shown yet)."""
    shown = re.search(r"% (\d\d):(\d\d):(\d\d) ", screen_text(app).splitlines()[2])
    return None if shown is None else int(shown[1]) * 3600 + int(shown[2]) * 60 + int(shown[3])


async def test_a_late_joiners_eta_agrees_with_a_follower_that_saw_the_run_start(broker, shared):
    """A room that joined at 50 % once said 3 s left where the run had 13 s to go (its ETA as if
    the run began when it joined); the bar's ETA now comes from the rate seen since joining."""
    starter = ControlClient("127.0.0.1", broker.port, name="starter")
    b = viewer(broker, shared)
    try:
        async with b.run_test(size=SIZE) as pilot_b:
            await until(pilot_b, lambda: b.connection == "connected", what="B to connect")
            threading.Thread(target=lambda: starter.run(6000, True, seed=4), daemon=True).start()
            await until(
                pilot_b,
                lambda: (read_runs(shared) or [None])[-1] and read_runs(shared)[-1].finished >= 1500,
                60,
                "a quarter",
            )
            c = viewer(broker, shared)
            async with c.run_test(size=SIZE) as pilot_c:
                await until(pilot_c, lambda: eta_seconds(c), what="C's ETA")
                shown = c.run_progress.finished
                # the first second's rate is rough: compared once C saw a few hundred more episodes
                await until(pilot_c, lambda: c.run_progress.finished >= shown + 600, what="600 more episodes")
                late, early = eta_seconds(c), eta_seconds(b)
                assert late is not None and early is not None
                # the old one was 4 times too short (3 s left for 13 s)
                assert early / 2 <= late <= early * 2, (late, early)
                starter.stop_run()
                await until(pilot_c, lambda: c.current is None and b.current is None, what="the run's end")
    finally:
        starter.close()
