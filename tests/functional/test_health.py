"""Stalls, components leaving, a second environment: told within seconds, named."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from cartpole_tui.env.components.control import ControlClient
from cartpole_tui.env.components.environment import EnvironmentComponent
from cartpole_tui.env.components.random_agent import RandomAgent
from cartpole_tui.env.wire.transport import Component
from tests.conftest import wait_for
from tests.published import PublishedAggregation, PublishedModel

HOST = "127.0.0.1"
CLI = os.path.join(os.path.dirname(sys.executable), "cartpole-tui")


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=timeout)


def test_a_component_that_dies_is_named_within_3_seconds(broker):
    events = []
    control = ControlClient(HOST, broker.port, on_event=events.append)
    victim = Component("swarm-part", HOST, broker.port)
    try:
        wait_for(lambda: control.stats and "swarm-part" in control.stats.clients, 5, "the victim in the stats")
        victim.client.shutdown(socket.SHUT_RDWR)  # as kill -9: no DISCONNECT
        gone = time.monotonic()
        wait_for(lambda: any("swarm-part left the network" in getattr(e, "text", "") for e in events), 5, "left")
        assert time.monotonic() - gone <= 3.0
    finally:
        control.close()


def test_a_stalled_run_is_reported_naming_the_room(broker):
    models = [PublishedModel(broker.port, seed) for seed in range(19)]  # one short: it never answers
    aggregation = PublishedAggregation(broker.port)
    try:
        wait_for(
            lambda: getattr(broker.stats()["rooms"].get("logits"), "members", 0) == 20, 10, "models and aggregation"
        )
        result = cli(
            "run", "--connect", f"{HOST}:{broker.port}", "--episodes", "1", "--db", ":memory:", "--timeout", "6"
        )
        assert result.returncode == 1
        assert "action: run stalled: the aggregation sent no ACTION for the last observation" in result.stderr
    finally:
        for part in [*models, aggregation]:
            part.client.close()


def test_a_second_environment_is_refused(broker):
    env = EnvironmentComponent(HOST, broker.port).start()
    try:
        wait_for(lambda: "environment" in broker.stats()["clients"], 5, "the first environment")
        result = cli("run", "--connect", f"{HOST}:{broker.port}", "--episodes", "1", "--db", ":memory:")
        assert result.returncode == 1 and "--no-env" in result.stderr and "Traceback" not in result.stderr
        assert broker.stats()["clients"].count("environment") == 1
    finally:
        env.close()


def stats(at: float, obs: int, logits: int, actions: int, clients=("environment",), listening: int = 2):
    """``listening``: the observation room's members (the environment and the agents)."""
    from cartpole_tui.env.events import BrokerStats

    rooms = {"observation": (listening, obs, 0), "logits": (1, logits, 0), "action": (1, actions, 0)}
    return BrokerStats(tuple(clients), rooms, 0, 0, at)


def stalled_warning(*steps, listening: int = 2):
    from cartpole_tui.env.components.health import NetworkHealth

    health = NetworkHealth(stall_seconds=3)
    health.observe(stats(0, 0, 0, 0), running=False)
    warnings = []
    for at, counts in enumerate(steps, start=1):
        warnings += health.observe(stats(at, *counts, listening=listening), running=True)
    (warning,) = warnings
    return warning, health


def stalled_room(*steps) -> str:
    return stalled_warning(*steps)[0].source


def test_the_stalled_room_is_told_from_the_counts():
    healthy = [(10, 200, 9), (20, 400, 19)]
    assert stalled_room(*healthy, *[(21, 420, 21)] * 4) == "observation"  # the environment went quiet
    assert stalled_room(*healthy, *[(21, 400, 20)] * 4) == "logits"  # the models went quiet
    assert stalled_room(*healthy, *[(21, 420, 20)] * 4) == "action"  # the aggregation went quiet
    assert stalled_room(*[(1, 19, 0)] * 5) == "action"  # 19 models: the published aggregation waits for 20


def test_a_stall_with_only_the_environment_in_the_observation_room_is_the_agents_leaving():
    healthy = [(10, 200, 9), (20, 400, 19)]
    warning, health = stalled_warning(*healthy, *[(21, 420, 20)] * 4, listening=1)
    assert warning.text.startswith("run stalled: the agents left; no agent is left in room observation")
    assert health.gone == warning  # the control client gives up on it
    warning, health = stalled_warning(*healthy, *[(21, 420, 20)] * 4, listening=2)
    assert "agents left" not in warning.text and health.gone is None
    # no agent ever answered in this run: none was there to leave
    warning, health = stalled_warning(*[(1, 0, 0)] * 5, listening=1)
    assert warning.text.startswith("run stalled: no agent is in room observation to answer (no observation")
    assert warning.text.endswith(": is a swarm running?") and health.gone == warning


async def test_the_app_names_a_stalled_room_and_a_component_that_left(tmp_path, broker):
    from textual.widgets import Input, RichLog

    from cartpole_tui.env.runtime.session import SessionOptions
    from cartpole_tui.tui.app import ControlRoomApp
    from tests.conftest import polls

    models = [PublishedModel(broker.port, seed) for seed in range(19)]
    aggregation = PublishedAggregation(broker.port)
    app = ControlRoomApp(SessionOptions(connect=f"{HOST}:{broker.port}"), db_path=str(tmp_path / "r.sqlite3"))

    def log() -> str:
        return "\n".join(line.text for line in app.query_one("#log-pane", RichLog).lines)

    try:
        async with app.run_test(size=(120, 40)) as pilot:
            for ready in polls(lambda: app.connection == "connected", 20, "connected"):
                if not ready:
                    await pilot.pause(0.02)
            app.query_one("#episodes", Input).value = "1"
            await pilot.press("s")
            for ready in polls(lambda: "action: run stalled" in log(), 20, "the stall in the log"):
                if not ready:
                    await pilot.pause(0.05)
            aggregation.client.client.shutdown(socket.SHUT_RDWR)  # gone without a word
            for ready in polls(lambda: "aggregation left the network" in log(), 5, "the departure in the log"):
                if not ready:
                    await pilot.pause(0.05)
    finally:
        for part in [*models, aggregation]:
            try:
                part.client.close()
            except OSError:
                pass


async def test_the_app_refuses_a_second_environment_and_says_no_env(tmp_path, broker):
    from cartpole_tui.env.runtime.session import SessionOptions
    from cartpole_tui.tui.app import ControlRoomApp
    from cartpole_tui.tui.screens.modals import UnreachableScreen
    from tests.conftest import polls, screen_text

    env = EnvironmentComponent(HOST, broker.port).start()
    app = ControlRoomApp(SessionOptions(connect=f"{HOST}:{broker.port}"), db_path=str(tmp_path / "r.sqlite3"))
    try:
        wait_for(lambda: "environment" in broker.stats()["clients"], 5, "the first environment")
        async with app.run_test(size=(120, 40)) as pilot:
            refused = lambda: isinstance(app.screen, UnreachableScreen) and "--no-env" in screen_text(app)  # noqa: E731
            for ready in polls(refused, 20, "the refusal saying --no-env"):
                if not ready:
                    await pilot.pause(0.02)
            assert broker.stats()["clients"].count("environment") == 1
    finally:
        env.close()


def test_a_second_environment_is_refused_whenever_the_stats_come(monkeypatch, broker):
    """`run --connect` beside an `env` command was accepted 7 times of 7 (new-user pass 6): its probe
    waits ENV_PROBE_TIMEOUT (1 s) for the stats, which came once a second. A client joining the
    stats room now hears them at once; here the next round of stats is an hour away."""
    from cartpole_tui.env.wire import protocol

    monkeypatch.setattr(protocol, "STATS_INTERVAL", 3600.0)  # read by the broker in this process
    watcher = ControlClient(HOST, broker.port, name="watcher")
    env = EnvironmentComponent(HOST, broker.port).start()
    try:
        assert watcher.wait_stats(5) is not None  # the round of stats due at the start is gone
        wait_for(lambda: "environment" in broker.stats()["clients"], 5, "the environment")
        ran = subprocess.run(
            [CLI, "run", "--connect", f"{HOST}:{broker.port}", "--episodes", "2", "--db", ":memory:"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        env.close()
        watcher.close()
    assert ran.returncode == 1, ran.stderr
    said = f"cartpole-tui: an environment is already on {HOST}:{broker.port}: add --no-env to use it instead"
    assert ran.stderr.startswith(said), ran.stderr
    assert broker.stats()["clients"].count("environment") <= 1


def test_run_says_the_agents_left_and_gives_up_when_they_are_gone(broker):
    """Issue 17, beyond the cases: the agents stop mid-run. `run` names them as gone and gives
    up once no agent is left in the observation room (before, it waited out its 60 s time-out
    and ended on "no episode finished")."""
    agent = RandomAgent(HOST, broker.port, seed=1).start()
    started = subprocess.Popen(
        [CLI, "run", "--connect", f"{HOST}:{broker.port}", "--episodes", "1000000", "--timeout", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # the room is there once the run's environment joins it: the process may still be starting
        playing = lambda: (room := broker.stats()["rooms"].get("action")) is not None and room.messages > 200  # noqa: E731
        wait_for(playing, 30, "the run playing")
        mark = broker._next_stats  # run's control client is in the stats room: the next stats reach it
        wait_for(lambda: broker._next_stats > mark, 5, "stats sent to the run's control client")
        agent.close()
        _, stderr = started.communicate(timeout=30)  # well within the run's 60 s time-out
    finally:
        started.kill()
    lines = [line for line in stderr.splitlines() if not line.startswith("episode")]
    assert started.returncode == 1, stderr
    assert "random-agent left the network" in lines
    assert lines[-1].startswith("cartpole-tui: run stalled: the agents left (random-agent)"), lines
    assert "no agent is left in room observation" in lines[-1]
    assert sum("run stalled" in line for line in lines) == 1, lines  # once: not also "observation: run stalled"
    assert not any("sent no observation" in line or "no episode finished" in line for line in lines)


def test_run_on_a_network_without_agents_says_so_once(broker):
    """Nobody there to play: one line, the command's error (it was said twice, once bare as
    "observation: run stalled: …"), and not "the agents left"."""
    done = subprocess.run(
        [CLI, "run", "--connect", f"{HOST}:{broker.port}", "--episodes", "5", "--db", ":memory:"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("cartpole-tui: run stalled: no agent is in room observation to answer"), done.stderr
    assert done.stderr.endswith(": is a swarm running?\n") and done.stderr.count("\n") == 1, done.stderr


async def test_a_schedule_whose_run_no_agent_plays_says_why_once(tmp_path, broker):
    """The app's schedule on a network without agents: the stall that ends its run is said once
    ("observation: run stalled: …"); the schedule's end points to it (it said it again)."""
    from cartpole_tui.env.runtime.session import SessionOptions
    from cartpole_tui.tui.app import ControlRoomApp
    from tests.conftest import until
    from tests.functional.test_app import log_text

    app = ControlRoomApp(SessionOptions(connect=f"{HOST}:{broker.port}"), db_path=str(tmp_path / "r.sqlite3"))
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.connection == "connected", 20, "connected")
        await pilot.press("r")
        await until(pilot, lambda: "schedule: ended" in log_text(app), 30, "the schedule's end")
        lines = log_text(app).splitlines()
        assert sum("run stalled" in line for line in lines) == 1, lines
        assert any(line.endswith("schedule: ended: its run could not go on (above)") for line in lines), lines


def test_run_json_on_a_network_without_agents_still_prints_one_object(broker, tmp_path):
    """`run --json` that stalled printed nothing on standard output (`| jq` got nothing), while an
    interrupted run prints its object: now a stall prints one too, with why, and exits 1. The run
    given up on is stopped where it plays: it stayed "running" in the environment's file, and a
    swarm joining later found it there, waiting."""
    import json
    import sqlite3

    for schedule in ([], ["--schedule", "--rounds", "1"]):
        episodes = [] if schedule else ["--episodes", "3"]
        db = tmp_path / f"runs{len(schedule)}.sqlite3"
        done = subprocess.run(
            [CLI, "run", *schedule, *episodes, "--connect", f"{HOST}:{broker.port}", "--db", str(db), "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1, done.stderr
        said = done.stderr.strip().splitlines()[-1]
        assert said.startswith("cartpole-tui: run stalled: no agent is in room observation"), done.stderr
        report = json.loads(done.stdout)  # exactly one object
        assert report["stopped"] is True and report["error"] == said.removeprefix("cartpole-tui: "), report
        assert report["scores" if not schedule else "rounds"] == []
        if not schedule:
            assert report["avg_score"] is None and report["episodes"] == 0  # it said 0 for no episode
        with sqlite3.connect(db) as history:
            assert history.execute("SELECT state FROM runs").fetchall() == [("stopped",)]


def test_run_json_that_fails_before_its_run_still_prints_one_object(tmp_path):
    """A broker that cannot be reached: standard output was empty and `| jq` succeeded on nothing."""
    import json

    with socket.socket() as closed:  # a loopback port nobody listens on
        closed.bind((HOST, 0))
        port = closed.getsockname()[1]
    for schedule in ([], ["--schedule", "--rounds", "1"]):
        done = subprocess.run(
            [CLI, "run", *schedule, "--connect", f"{HOST}:{port}", "--db", ":memory:", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1, done.stderr
        said = done.stderr.strip().splitlines()[-1]
        assert said.startswith("cartpole-tui: ") and str(port) in said, done.stderr
        report = json.loads(done.stdout)
        assert report["stopped"] is True and report["error"] == said.removeprefix("cartpole-tui: "), report
