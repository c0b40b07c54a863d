"""Hostile and faulty peers (issue 9, part 2): each test failed before its fix."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import pytest
from textual.widgets import RichLog

from cartpole_tui.env.components.control import ControlClient
from cartpole_tui.env.components.environment import EnvironmentComponent, EnvironmentLogic
from cartpole_tui.env.components.random_agent import RandomAgent
from cartpole_tui.env.events import EnvironmentObserver
from cartpole_tui.env.runtime.run_events import RunEvents
from cartpole_tui.env.runtime.session import SessionOptions
from cartpole_tui.env.wire import protocol
from cartpole_tui.env.wire.broker import Broker
from cartpole_tui.env.wire.transport import Component
from cartpole_tui.tui.app import ControlRoomApp

from conftest import screen_text, until, wait_for

HOST = "127.0.0.1"
CLI = os.path.join(os.path.dirname(sys.executable), "cartpole-tui")


def log_text(app) -> str:
    return "\n".join(line.text for line in app.query_one("#log-pane", RichLog).lines)


# --- 1. markup and control characters from the network ------------------------------------------------


async def test_markup_and_escapes_from_peers_are_shown_as_text(tmp_path, broker):
    agent = RandomAgent(HOST, broker.port, seed=1).start()
    app = ControlRoomApp(SessionOptions(connect=f"{HOST}:{broker.port}"), db_path=str(tmp_path / "r.sqlite3"))
    async with app.run_test(size=(120, 50)) as pilot:
        await until(pilot, lambda: app.connection == "connected", what="connected")
        hostile = Component("[/]\x1b[2J", HOST, broker.port)
        hostile.join_room("[/]room")
        for _ in range(500):  # the busiest room: first in the network pane
            hostile.send(protocol.custom("[/]room", X=1))
        hostile.send(protocol.custom(protocol.CONTROL, STATUS=protocol.ENV_ERROR, ERROR="[red]boom[/] \x1b]0;x\x07"))
        await until(pilot, lambda: "boom" in log_text(app), what="the ENV_ERROR in the log")
        await until(pilot, lambda: "component seen: [/]" in log_text(app), what="the hostile name in the log")
        await until(pilot, lambda: "[/]room" in screen_text(app), what="the hostile room in the network pane")
        text = log_text(app) + screen_text(app)
        assert "[red]boom[/]" in text and "[/]" in text
        assert "\x1b" not in text and "\x07" not in text
        assert app.is_running
        hostile.close()
    agent.close()


def test_peer_text_is_cleaned_at_the_edge():
    assert protocol.clean_text("a\x1b[2Jb\x9bc\x07") == "a\ufffd[2Jb\ufffdc\ufffd"
    assert len(protocol.clean_text("x" * 10_000)) == protocol.TEXT_LIMIT


# --- 2. SENT_BY is added without re-encoding, never past the cap -------------------------------------


def raw_client(port: int, name: str, room: str | None = None) -> socket.socket:
    sock = socket.create_connection((HOST, port))
    frames = [protocol.custom(protocol.COMMAND_ROOM, TYPE=protocol.REGISTER, NAME=name)]
    frames[0]["TYPE"] = protocol.REGISTER
    if room:
        frames.append({"ID": "j", "TYPE": protocol.JOINROOM, "ROOM": room, "TO_ROOM": protocol.COMMAND_ROOM})
    sock.sendall(b"".join(protocol.encode_frame(f) for f in frames))
    return sock


def read_frame(sock: socket.socket) -> bytes:
    reader = sock.makefile("rb")
    header = reader.read(protocol.HEADER_LENGTH)
    return header + reader.read(int(header))


@pytest.mark.timeout(15)
def test_sent_by_is_added_without_growing_the_body_past_the_cap():
    cap = 4096
    broker = Broker(HOST, 0, max_frame=cap).start()
    try:
        receiver = raw_client(broker.port, "rx", "big")
        sender = raw_client(broker.port, "tx")
        wait_for(lambda: broker.stats()["rooms"].get("big") and broker.stats()["rooms"]["big"].members == 1)
        # spaces after separators, as json.dumps writes them: re-encoding would not shrink it
        body = json.dumps({"TYPE": protocol.CUSTOM, "TO_ROOM": "big", "DATA": "x" * (cap - 80)}).encode()
        assert len(body) <= cap
        sender.sendall(protocol.frame_bytes(body))
        frame = read_frame(receiver)
        assert len(frame) - protocol.HEADER_LENGTH <= cap
        assert frame.endswith(body[1:]) and b'"SENT_BY":"tx"' in frame
        shell = json.dumps({"TYPE": protocol.CUSTOM, "TO_ROOM": "big", "D": ""}).encode()
        too_big = json.dumps({"TYPE": protocol.CUSTOM, "TO_ROOM": "big", "D": "x" * (cap - len(shell))}).encode()
        assert len(too_big) == cap  # at the cap: SENT_BY would push it over
        sender.sendall(protocol.frame_bytes(too_big) + protocol.frame_bytes(body))
        assert read_frame(receiver).endswith(body[1:])  # the over-cap one was dropped, the next delivered
    finally:
        broker.stop()


# --- 3, 4. starts with bad values: ENV_ERROR, history and the replaced run intact -----------------------


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("SEED", 2**64, "SEED"),
        ("SEED", -1, "SEED"),
        ("NR_OF_EPISODE", 10**30, "NR_OF_EPISODE"),
        ("RUN_ID", "r" * 5_000_000, "RUN_ID"),
    ],
)
def test_out_of_range_start_is_refused_and_changes_nothing(field, value, words):
    logic = EnvironmentLogic(seed=1)
    logic.start(protocol.start_run(3, False, run_id="keep"))
    message = protocol.start_run(3, False)
    message[field] = value
    with pytest.raises(protocol.ProtocolError, match=words):
        logic.start(message)
    assert logic.run.run_id == "keep"


def test_a_start_with_the_current_run_id_is_refused():
    logic = EnvironmentLogic(seed=1)
    logic.start(protocol.start_run(3, False, run_id="same"))
    with pytest.raises(protocol.ProtocolError, match="already playing"):
        logic.start(protocol.start_run(3, False, run_id="same"))


def test_a_failing_start_ends_the_replaced_run_and_says_env_error():
    logic = EnvironmentLogic(seed=1)
    logic.start(protocol.start_run(3, False, run_id="old"))

    class Failing(EnvironmentObserver):
        def on_run_started(self, event):
            raise RuntimeError("disk on fire")

    logic.observers.append(Failing())
    control, payload = logic.start(protocol.start_run(3, False, run_id="new"))
    assert payload is None and logic.run is None
    assert [m["STATUS"] for m in control] == [protocol.ENV_DONE, protocol.ENV_ERROR]
    assert control[0]["RUN_ID"] == "old" and control[0]["STOPPED"] is True
    assert "disk on fire" in control[1]["ERROR"]


# --- 13. one action per observation ---------------------------------------------------------------------


def test_actions_without_root_id_cannot_start_parallel_chains():
    logic = EnvironmentLogic(seed=1)
    _, first = logic.start(protocol.start_run(50, False))
    sent = [first] + [logic.step({"ACTION": [0]})[1] for _ in range(5)]  # five fakes: five steps, not chains
    # the real aggregation then answers each observation it saw: only the last one still waits
    answers = [logic.step({"ACTION": [0], "ROOT_ID": obs["ROOT_ID"]})[1] for obs in sent]
    assert [a is not None for a in answers] == [False] * 5 + [True]
    assert logic.stale_actions == 5


def test_an_answer_to_an_old_observation_is_dropped():
    logic = EnvironmentLogic(seed=1)
    _, first = logic.start(protocol.start_run(50, False))
    _, second = logic.step({"ACTION": [0], "ROOT_ID": first["ROOT_ID"]})
    assert logic.step({"ACTION": [1], "ROOT_ID": first["ROOT_ID"]}) == ([], None)
    assert logic.step({"ACTION": [1], "ROOT_ID": second["ROOT_ID"]})[1] is not None


# --- 14. a foreign ENV_DONE without RUN_ID ---------------------------------------------------------------


def test_foreign_env_done_is_ignored_while_our_environment_plays(broker):
    env = EnvironmentComponent(HOST, broker.port, seed=1).start()
    slow = Component("slow-agent", HOST, broker.port)  # never answers: the run stays open
    events = []
    control = ControlClient(HOST, broker.port, on_event=events.append)
    run_events = RunEvents(events.append, environment_here=True)
    run_events.expect_environment("environment")
    control.admits = run_events.admits
    faker = Component("faker", HOST, broker.port)
    try:
        wait_for(
            lambda: getattr(broker.stats()["rooms"].get("control"), "members", 0) == 2, 5, "env and control on control"
        )
        control.start_run(5)
        faker.send(protocol.custom(protocol.CONTROL, STATUS=protocol.ENV_DONE, AVG_SCORE=500.0))
        wait_for(
            lambda: any("ignored ENV_DONE" in getattr(e, "text", "") for e in events),
            5,
            "the warning",
        )
        assert control._result is None
        assert [e.source for e in events if hasattr(e, "source")] == ["faker"]
    finally:
        for part in (faker, control, slow, env):
            part.close()


# --- 5, 11. exit codes --------------------------------------------------------------------------------


def test_export_into_a_closed_pipe_is_quiet(tmp_path):
    db = tmp_path / "r.sqlite3"
    logic = EnvironmentLogic(seed=1)
    from cartpole_tui.env.history.recorder import StoreRecorder
    from cartpole_tui.env.history.store import RunStore

    with RunStore.open(str(db)) as store:
        logic.observers.append(StoreRecorder(store, "CartPole-v1", "x"))
        for _ in range(30):
            logic.start(protocol.start_run(2, False))
            while logic.run is not None:
                logic.step({"ACTION": [0]})
    shell = f"{CLI} export --db {db} --format json | head -c 10"
    result = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr == "", result.stderr


# --- 9. run: SIGTERM and Ctrl-C stop the run, record it, say the average ---------------------------


def test_a_schedule_json_interrupted_prints_the_rounds_it_played(tmp_path):
    """`run --schedule --json` stopped by Ctrl-C wrote nothing on stdout: the rounds played, stopped."""
    unreachable = ["--target", "100000"]  # rounds go on until the signal
    args = [CLI, "run", "--schedule", *unreachable, "--seed", "1", "--db", str(tmp_path / "r.db"), "--json"]
    child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while "round 2:" not in child.stderr.readline():
            assert child.poll() is None, "the schedule ended"
        child.send_signal(signal.SIGINT)
        stdout, stderr = child.communicate(timeout=20)
        assert child.returncode == 130, stderr
        report = json.loads(stdout)
        assert report["stopped"] is True and report["solved"] is False and len(report["rounds"]) >= 2
        assert [r["round"] for r in report["rounds"]] == list(range(1, len(report["rounds"]) + 1))
        assert "interrupted: schedule stopped in round " in stderr and "Traceback" not in stderr
    finally:
        if child.poll() is None:
            child.kill()


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_run_json_interrupted_still_prints_its_one_object(tmp_path, broker, signum, code):
    """`| jq` got nothing from an interrupted `run --json`: the object says what was played, stopped."""
    agent = RandomAgent(HOST, broker.port, seed=1).start()
    db = tmp_path / "runs.sqlite3"
    args = [CLI, "run", "--connect", f"{HOST}:{broker.port}", "--episodes", "1000000", "--db", str(db), "--json"]
    child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen = [child.stderr.readline() for _ in range(3)]
        assert all("episode" in line for line in seen), seen
        child.send_signal(signum)
        stdout, stderr = child.communicate(timeout=20)
        assert child.returncode == code, stderr
        report = json.loads(stdout)  # one strict object, nothing else
        from cartpole_tui.env.history.store import RunStore

        with RunStore.open(str(db)) as store:
            (run,) = store.runs()
        assert report["stopped"] is True and report["episodes"] == run.finished == len(report["scores"]) >= 3
        assert report["avg_score"] == pytest.approx(run.avg_score)
        # the stopped run's rate, as the history has it (it said null; new-user pass 6)
        assert run.steps_per_s and report["steps_per_s"] == pytest.approx(run.steps_per_s)
        from cartpole_tui.env.words import steps_per_second

        assert f", {steps_per_second(run.steps_per_s)} steps/s" in stderr
    finally:
        if child.poll() is None:
            child.kill()
        agent.close()


# --- 9. run: SIGTERM and Ctrl-C stop the run, record it, say the average ---------------------------


@pytest.mark.parametrize(
    "signum, code, word", [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")]
)
@pytest.mark.parametrize("remote_env", [False, True])
def test_run_interrupted_stops_records_and_says_the_average(tmp_path, broker, signum, code, word, remote_env):
    agent = RandomAgent(HOST, broker.port, seed=1).start()
    env = EnvironmentComponent(HOST, broker.port, seed=2).start() if remote_env else None
    db = tmp_path / "runs.sqlite3"
    args = [CLI, "run", "--connect", f"{HOST}:{broker.port}", "--episodes", "1000000", "--db", str(db)]
    child = subprocess.Popen(
        args + (["--no-env"] if remote_env else []), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        seen = [child.stderr.readline() for _ in range(3)]  # episode lines go with the progress, on stderr
        assert all("episode" in line for line in seen), seen
        child.send_signal(signum)
        _, stderr = child.communicate(timeout=20)
        assert child.returncode == code, stderr
        assert f"{word}: run stopped; average score" in stderr and "Traceback" not in stderr
        from cartpole_tui.env.history.store import RunStore

        with RunStore.open(str(db)) as store:
            (run,) = store.runs()
        assert run.state == "stopped" and run.finished >= 3
        if remote_env:
            assert env.logic.run is None  # the remote environment stopped playing
    finally:
        if child.poll() is None:
            child.kill()
        agent.close()
        if env is not None:
            env.close()


# --- 5. the app's exit code ------------------------------------------------------------------------------


async def test_the_unreachable_screens_quit_exits_1(tmp_path):
    from cartpole_tui.tui.screens.modals import UnreachableScreen

    from conftest import free_port

    app = ControlRoomApp(SessionOptions(connect=f"{HOST}:{free_port()}"), db_path=str(tmp_path / "r.sqlite3"))
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, UnreachableScreen), what="the unreachable screen")
        await pilot.press("q")
    assert app.return_code == 1


def test_an_app_that_dies_of_an_exception_exits_non_zero(tmp_path, monkeypatch):
    from cartpole_tui.tui.cli import parser

    def crash(self):
        raise KeyError("boom")  # as the KeyError in _on_Disconnected did

    monkeypatch.setattr(ControlRoomApp, "on_mount", crash)
    original_run = ControlRoomApp.run
    monkeypatch.setattr(ControlRoomApp, "run", lambda self: original_run(self, headless=True))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))  # no user's config file
    assert parser.main(["--offline", "--db", str(tmp_path / "r.sqlite3")]) != 0
