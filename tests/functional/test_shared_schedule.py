"""Two control rooms on one network, one running the learning schedule (finding 40).

A start from the other room landed between the schedule's runs: the schedule's next start
replaced it, or it replaced the schedule's run, and neither room was told. The schedule's
STARTs say SCHEDULE and its end SCHEDULE_ENDED: the other room refuses ``s`` while it goes, and
its ``x`` stops the schedule, said in both rooms.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import threading

from test_app import log_text, start_run, until

from cartpole_tui.env.components.control import ControlClient
from cartpole_tui.env.components.vector_env import VectorEnvironmentComponent
from cartpole_tui.env.events import NetworkError, RunFinished, RunStarted
from cartpole_tui.env.runtime.run_events import RunEvents
from cartpole_tui.env.runtime.schedule import ScheduleStopped, run_schedule
from cartpole_tui.env.runtime.session import SessionOptions
from cartpole_tui.env.swarm.swarm import Swarm
from cartpole_tui.tui.app import ControlRoomApp

from conftest import CLI, screen_text, wait_for

HOST = "127.0.0.1"
REFUSED = "a schedule is running in another control room (x stops it)"


def network(broker, closing) -> None:
    """An environment and a learning swarm on ``broker`` (seed 3: its untrained models play ~10-step
    episodes; seed 2's vote plays 500s at once, and a schedule ended before the other room heard it)."""
    closing(Swarm(HOST, broker.port, models=4, seed=3).start())
    closing(VectorEnvironmentComponent(HOST, broker.port, seed=1).start())


def other_room(tmp_path, broker) -> ControlRoomApp:
    return ControlRoomApp(
        SessionOptions(connect=f"{HOST}:{broker.port}", embed_env=False), db_path=str(tmp_path / "b.sqlite3")
    )


class Schedule:
    """Room A: a schedule in a thread of its own, its control client's events kept."""

    def __init__(self, broker, closing, **settings):
        self.events: list[object] = []
        self.control = ControlClient(HOST, broker.port, on_event=self.events.append)
        closing(self.control)
        self.outcome: list[object] = []
        self.thread = threading.Thread(target=self._play, args=(settings,), daemon=True)

    def _play(self, settings: dict) -> None:
        try:
            self.outcome.append(run_schedule(self.control, final_eval=0, target=None, **settings))
        except ScheduleStopped as stopped:
            self.outcome.append(stopped)

    def ended(self) -> list[RunFinished]:
        return [e for e in self.events if isinstance(e, RunFinished)]


@contextlib.asynccontextmanager
async def room_b_while_a_holds(tmp_path, broker, closing, rounds: int):
    """Room B (the app) while room A's schedule of ``rounds`` on the network holds between its runs,
    at its first evolution, where another room's s or e lands: (app, pilot, schedule, go_on), A
    going on once ``go_on`` is set."""
    network(broker, closing)
    in_gap, go_on = threading.Event(), threading.Event()

    def on_phase(name: str, number: int) -> None:
        if (name, number) == ("evolve", 1):
            in_gap.set()
            go_on.wait(30)

    schedule = Schedule(broker, closing, rounds=rounds, train=4, evaluate=2, on_phase=on_phase)
    app = other_room(tmp_path, broker)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.connection == "connected", what="room B to join")
        schedule.thread.start()
        await until(pilot, in_gap.is_set, what="room A's schedule between its runs")
        yield app, pilot, schedule, go_on


async def test_a_start_between_another_rooms_schedule_runs_is_refused(tmp_path, broker, closing):
    async with room_b_while_a_holds(tmp_path, broker, closing, rounds=2) as (app, pilot, schedule, go_on):
        await start_run(pilot, "20")
        await until(pilot, lambda: [n.message for n in app._notifications] == [REFUSED], 10, "the refusal")
        # the toast goes in seconds: the log keeps why s did nothing
        assert f"not started: {REFUSED}" in screen_text(app)
        go_on.set()
        await until(pilot, lambda: not schedule.thread.is_alive(), what="room A's schedule to end")
        assert len(schedule.outcome[0].rounds) == 2 and not any(run.stopped for run in schedule.ended())
        await until(pilot, lambda: not app.controller.schedule_elsewhere, 5, "SCHEDULE_ENDED heard")
        assert "stopped" not in log_text(app)


async def test_an_evolution_between_another_rooms_schedule_runs_is_refused(tmp_path, broker, closing):
    """`e` is refused while this room's run or schedule plays; another room's schedule, between its
    runs (where its own evolution is due), took it: its round 1 ended two generations on."""
    async with room_b_while_a_holds(tmp_path, broker, closing, rounds=1) as (app, pilot, schedule, go_on):
        await pilot.press("e")
        await until(pilot, lambda: [n.message for n in app._notifications] == [REFUSED], 10, "the refusal")
        assert f"not evolved: {REFUSED}" in screen_text(app) and "evo: idle" in screen_text(app)
        go_on.set()
        await until(pilot, lambda: not schedule.thread.is_alive(), what="room A's schedule to end")


async def test_x_in_another_room_stops_the_schedule_and_both_rooms_say_so(tmp_path, broker, closing):
    network(broker, closing)
    schedule = Schedule(broker, closing, train=1_000_000)
    app = other_room(tmp_path, broker)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.connection == "connected", what="room B to join")
        schedule.thread.start()
        await until(pilot, lambda: app.controller.schedule_elsewhere and app.current, what="room A's schedule playing")
        await pilot.press("x")
        await until(pilot, lambda: not schedule.thread.is_alive(), 10, "room A's schedule to end")
        assert isinstance(schedule.outcome[0], ScheduleStopped)
        told = [e.line for e in schedule.events if isinstance(e, NetworkError)]
        assert told == [
            "schedule: another control room sent STOP (its x): its run going is stopped, and this schedule ends"
        ]
        await until(pilot, lambda: "the schedule of another control room ends on it" in log_text(app), 5, "B's line")
        await until(pilot, lambda: not app.controller.schedule_elsewhere, 5, "SCHEDULE_ENDED heard")
        await start_run(pilot, "3")  # the network is free again
        await until(pilot, lambda: "run 2 done" in log_text(app), what="room B's own run")


def room(tmp_path, broker, name: str) -> ControlRoomApp:
    return ControlRoomApp(
        SessionOptions(connect=f"{HOST}:{broker.port}", embed_env=False), db_path=str(tmp_path / f"{name}.sqlite3")
    )


async def test_a_room_that_quits_mid_schedule_says_so_and_the_other_room_may_start_at_once(tmp_path, broker, closing):
    """Closing the browser tab (or quitting the room) that ran a schedule ended it without a
    word: the other rooms refused s for 35 s (SCHEDULE_GAP_TIMEOUT). The room says SCHEDULE_ENDED
    on its way out, and the others log it and start at once."""
    network(broker, closing)
    a, b = room(tmp_path, broker, "a"), room(tmp_path, broker, "b")
    async with b.run_test(size=(120, 40)) as pilot_b:
        async with a.run_test(size=(120, 40)) as pilot_a:
            await until(pilot_a, lambda: a.connection == "connected", what="room A to join")
            await until(pilot_b, lambda: b.connection == "connected", what="room B to join")
            await pilot_a.press("r")
            await until(pilot_b, lambda: b.controller.schedule_elsewhere, 30, "B to hear A's schedule")
            going = "another control room's schedule · "  # on B's progress line, where s is refused
            await until(pilot_b, lambda: going in screen_text(b).splitlines()[2], 5, "B to say A's schedule goes")
        # A is gone (its run going plays on: closing a room ends nothing)
        left = "another control room's schedule ended: its control room left"
        await until(pilot_b, lambda: left in screen_text(b), 5, "B to log that A's schedule ended")
        await until(pilot_b, lambda: going not in screen_text(b).splitlines()[2], 5, "B's progress line to follow")
        await until(pilot_b, lambda: b.current is None, 60, "A's last run to end")
        await start_run(pilot_b, "3")
        await until(pilot_b, lambda: re.search(r"run \d+ done", log_text(b)), 30, "B's own run")
        assert REFUSED not in log_text(b)


async def test_a_stopped_schedule_says_in_which_round_and_whose_x(tmp_path, broker, closing):
    """A schedule stopped by an x was summed up "schedule ended after 0 rounds, not solved"."""
    network(broker, closing)
    a, b = room(tmp_path, broker, "a"), room(tmp_path, broker, "b")
    stopped = re.compile(r"schedule stopped (in|after) round \d+ \((another control room's|your) x\)")
    async with a.run_test(size=(120, 40)) as pilot_a, b.run_test(size=(120, 40)) as pilot_b:
        await until(pilot_a, lambda: a.connection == "connected", what="room A to join")
        await until(pilot_b, lambda: b.connection == "connected", what="room B to join")
        for turn, (who, pilot) in enumerate((("another control room's", pilot_b), ("your", pilot_a))):
            await pilot_a.press("r")
            await until(pilot_a, lambda: a.current is not None, 30, "A's schedule playing")
            await until(pilot_b, lambda: b.controller.schedule_elsewhere, 30, "B to know of it")  # B's x stops it
            await pilot.press("x")
            await until(pilot_a, lambda t=turn: len(stopped.findall(log_text(a))) > t, 30, "A's schedule to stop")
            assert stopped.findall(log_text(a))[turn][1] == who
            assert stopped.search(screen_text(a)), screen_text(a)  # the latest line, on the screen
            await until(pilot_a, lambda: not a.controller.schedule_running and a.current is None, 30, "A idle")
        assert "not solved" not in log_text(a) and "0 rounds" not in log_text(a)


def test_a_run_is_told_started_once_when_its_announcement_comes_late():
    """The schedule's room logged "run 121 started" twice, a second apart: on a loaded machine the
    environment's RUN_STARTED came after the wait for an unannounced start (the published
    environment announces none), which took the run as begun; the other room's run 120, which the
    start replaced, then ended (its ENV_DONE began it again) and RUN_STARTED began 121 again."""
    told: list[object] = []
    events = RunEvents(told.append, environment_here=False, announce_wait=60)
    run_120 = RunStarted("r120", 20, False, started=1.0, instances=1)
    assert events.admits(run_120, "environment")  # as the control client asks: an environment that announces
    events.from_network(run_120)
    events.sent(RunStarted("r121", 5, True))
    events._unannounced("r121")  # the wait for its announcement ends first (its timer, 1 s in the app)
    events.from_network(RunFinished("r120", 9.0, 3, stopped=True))  # replaced by 121
    events.from_network(RunStarted("r121", 5, True, started=2.0, instances=1))
    events.from_network(RunStarted("r121", 5, True, started=2.0, instances=1))  # a second copy changes nothing
    events.from_network(RunFinished("r121", 500.0, 5))
    said = [(type(e).__name__, e.run_id) for e in told]
    assert said == [
        ("RunStarted", "r120"),
        ("RunFinished", "r120"),
        ("RunStarted", "r121"),
        ("RunFinished", "r121"),
    ], said


def test_run_schedule_stopped_from_another_room_says_so_and_exits_1(broker, closing):
    network(broker, closing)
    other = ControlClient(HOST, broker.port)
    closing(other)
    headless = subprocess.Popen(
        [CLI, "run", "--schedule", "--connect", f"{HOST}:{broker.port}", "--no-env", "--train", "1000000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: other.schedule_elsewhere, 30, "the schedule's first start")
        other.stop_run()
        _, stderr = headless.communicate(timeout=30)
    finally:
        headless.kill()
    assert headless.returncode == 1, stderr
    assert stderr.splitlines()[-1] == "cartpole-tui: another control room sent STOP: schedule stopped in round 1"
