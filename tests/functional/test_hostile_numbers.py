"""Hostile numbers on the control plane (issue 17, items 5, 6 and 9): each test failed before its fix.

A plain client on a live broker sends what our environment never would: NaN and huge
numbers, copies of a finished episode, a string where a boolean belongs, run ids of every
shape, and a flood of component names. The control room's history (real SQLite), the run
command's JSON and the app must stay valid and working.
"""

from __future__ import annotations

import contextlib
import math
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from swergio import MESSAGE_TYPE, Trigger
from test_hostile import log_text, until

from cartpole_tui.env.components.environment import EnvironmentLogic
from cartpole_tui.env.components.random_agent import RandomAgent
from cartpole_tui.env.components.seen import MAX_NAMES
from cartpole_tui.env.components.vector_env import VectorEnvironmentComponent, VectorLogic
from cartpole_tui.env.events import EpisodeFinished, NetworkError
from cartpole_tui.env.history.store import RunStore
from cartpole_tui.env.runtime.session import Session, SessionOptions
from cartpole_tui.env.wire import protocol
from cartpole_tui.env.wire.broker import Broker
from cartpole_tui.env.wire.transport import Component
from cartpole_tui.tui.app import ControlRoomApp
from tests.hostile import Raw

from conftest import wait_for

HOST = "127.0.0.1"
CLI = os.path.join(os.path.dirname(sys.executable), "cartpole-tui")


@contextlib.contextmanager
def following(port: int, db: Path):
    """A ``--no-env`` control room recording into its own file ``db``, and an attacker:
    (session, store, events, attacker)."""
    store = RunStore.open(str(db))
    events: list[object] = []
    options = SessionOptions(connect=f"{HOST}:{port}", embed_env=False, agent="random")
    session = Session(options, store=store, on_event=events.append).open()
    attacker = Component("attacker", HOST, port)
    try:
        yield session, store, events, attacker
    finally:
        attacker.close()
        session.close()
        store.close()


@pytest.fixture
def network(broker, tmp_path):
    """A real environment (one instance) and random agent, a ``--no-env`` control room recording
    into its own file, and an attacker: (session, store, events, attacker, db path)."""
    agent = RandomAgent(HOST, broker.port, seed=5).start()
    environment = VectorEnvironmentComponent(HOST, broker.port, parallel=1, seed=3).start()
    db = tmp_path / "followed.sqlite3"
    with following(broker.port, db) as (session, store, events, attacker):
        yield session, store, events, attacker, db
    environment.close()
    agent.close()


def sent_and_heard(attacker: Component, events: list[object], *messages: dict) -> None:
    """Send ``messages`` to the control room, then wait until the control room has handled them
    (it handles them in order: an ENV_ERROR sent last comes back as a NetworkError)."""
    marker = protocol.new_id()
    for message in messages:
        attacker.send(protocol.custom(protocol.CONTROL, **message))
    attacker.send(protocol.custom(protocol.CONTROL, STATUS=protocol.ENV_ERROR, ERROR=marker))
    wait_for(lambda: any(isinstance(e, NetworkError) and marker in e.text for e in events), what="the marker")


def file_rows(db, run_id: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT idx, score, steps FROM episodes WHERE run_uid = ? ORDER BY idx", (run_id,)
        ).fetchall()


def state_of(store: RunStore, run_id: str) -> str | None:
    return next((r.state for r in store.runs() if r.run_uid == run_id), None)


def episode(run_id: str, index, score, steps) -> dict:
    return {"STATUS": protocol.EPISODE_DONE, "RUN_ID": run_id, "EPISODE": index, "SCORE": score, "STEPS": steps}


def test_fake_episodes_neither_replace_nor_break_the_followed_history(network):
    session, store, events, attacker, db = network
    run_id = session.control.start_run(3)
    wait_for(lambda: state_of(store, run_id) == "done", timeout=30, what="the run done")
    store.flush()
    real = file_rows(db, run_id)
    assert [row[0] for row in real] == [1, 2, 3]
    sent_and_heard(
        attacker,
        events,
        episode(run_id, 1, 9999.0, 10),  # a copy of a recorded episode: the first wins
        episode(run_id, 4, float("nan"), 1),  # NaN: SQLite's NOT NULL gave the file up
        episode(run_id, 5, 1.0, 2**63),  # steps beyond int64: raised with the columns half appended
        episode(run_id, 6, 1e308, 1),
        episode(run_id, 7, float("inf"), 1),
        episode(run_id, True, 1.0, 1),
    )
    store.flush()
    assert store.error is None and store.on_disk, store.error
    assert file_rows(db, run_id) == real
    assert store.episodes(run_id) and [e.index for e in store.episodes(run_id)] == [1, 2, 3]
    assert not any(isinstance(e, EpisodeFinished) and e.score == 9999.0 for e in events)  # nor the plot
    assert store.add_episode(run_id, 2, 9999.0, 1, 1.0) is False and store.duplicate_episodes == 1
    assert all(math.isfinite(s) for s in store.episode_scores(run_id))
    # the session still records: a new run of the real environment is saved whole
    second = session.control.start_run(2)
    wait_for(lambda: state_of(store, second) == "done", timeout=30, what="the second run done")
    store.flush()
    assert [row[0] for row in file_rows(db, second)] == [1, 2]


def test_a_nan_or_stringly_env_done_does_not_end_the_run(network):
    session, store, events, attacker, _ = network
    run_id = session.control.start_run(100_000)
    wait_for(lambda: state_of(store, run_id) == "running", what="the run recorded")
    done = {"STATUS": protocol.ENV_DONE, "RUN_ID": run_id, "EPISODES": 1}
    sent_and_heard(
        attacker,
        events,
        {**done, "AVG_SCORE": float("nan"), "STOPPED": False},
        {**done, "AVG_SCORE": 10.0, "STOPPED": "false"},
        {**done, "AVG_SCORE": 10.0, "STOPPED": False, "EPISODES": 2**70},
    )
    assert state_of(store, run_id) == "running"
    assert sum(isinstance(e, NetworkError) and "malformed ENV_DONE" in e.text for e in events) == 3
    session.control.stop_run()
    wait_for(lambda: state_of(store, run_id) == "stopped", what="the run stopped by the real stop")
    assert store.error is None


def test_run_json_never_prints_nan(broker, tmp_path):
    """A fake environment answers the start with a NaN ENV_DONE: `run --json` printed `NaN` (no
    JSON parser takes it) and exited 0; now it says the ENV_DONE was malformed and, nothing else
    coming, gives up after its time-out."""
    fake = Component("fake-environment", HOST, broker.port)
    fake.join_room(protocol.CONTROL)

    def answer(msg: dict) -> None:
        if protocol.is_start(msg):
            done = {"STATUS": protocol.ENV_DONE, "RUN_ID": msg["RUN_ID"], "EPISODES": 2, "STOPPED": False}
            fake.send(protocol.custom(protocol.CONTROL, **done, AVG_SCORE=float("nan")))

    custom = MESSAGE_TYPE.DATA.CUSTOM
    fake.add_eventHandler(answer, None, trigger=Trigger(custom, protocol.CONTROL))
    fake.start()
    try:
        result = subprocess.run(
            [
                CLI,
                "run",
                "--connect",
                f"{HOST}:{broker.port}",
                "--no-env",
                "--episodes",
                "2",
                "--json",
                "--db",
                str(tmp_path / "r.sqlite3"),
                "--timeout",
                "3",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        fake.close()
    assert "NaN" not in result.stdout, result.stdout
    assert result.returncode != 0 and "malformed ENV_DONE" in result.stdout + result.stderr, result


# --- 6. the vectorised start checks RUN_ID as the one-instance start does ---------------------


@pytest.mark.parametrize(
    "run_id", ["", "x" * 65, "y" * 100_000, "\ud800", 7], ids=["empty", "65", "100k", "surrogate", "int"]
)
def test_the_vectorised_start_refuses_a_bad_run_id(run_id):
    logic = VectorLogic(EnvironmentLogic())
    message = protocol.start_run(40, False, seed=1)
    message["RUN_ID"] = run_id
    with pytest.raises(protocol.ProtocolError, match="RUN_ID"):
        logic.start(message, 4)
    assert logic.base.run is None


def test_the_vectorised_start_refuses_the_playing_runs_id():
    logic = VectorLogic(EnvironmentLogic())
    first = protocol.start_run(400, False, seed=1)
    logic.start(first, 4)
    playing = logic.base.run
    again = protocol.start_run(400, False, run_id=first["RUN_ID"], seed=2)
    with pytest.raises(protocol.ProtocolError, match="already playing"):
        logic.start(again, 4)
    assert logic.base.run is playing  # not stopped, not replaced


def test_the_vectorised_component_refuses_a_bad_run_id_before_its_census(broker, closing):
    """Over the wire: the refusal is an ENV_ERROR at once, and the run playing goes on."""
    agent = RandomAgent(HOST, broker.port, seed=5).start()
    closing(agent)
    environment = VectorEnvironmentComponent(HOST, broker.port, parallel=4, seed=3).start()
    closing(environment)
    events: list[object] = []
    options = SessionOptions(connect=f"{HOST}:{broker.port}", embed_env=False, agent="random")
    session = Session(options, store=None, on_event=events.append).open()
    closing(session)
    run_id = session.control.start_run(100_000)
    wait_for(lambda: environment.logic.run is not None and environment.logic.run.run_id == run_id, what="the run")
    for bad in ("", "\ud800", run_id):
        message = protocol.start_run(100, False)
        message["RUN_ID"] = bad
        session.control.client.send(message)
    wait_for(
        lambda: sum(isinstance(e, NetworkError) and "start refused" in e.text for e in events) == 3,
        what="three refusals",
    )
    assert environment.logic.run is not None and environment.logic.run.run_id == run_id
    session.control.stop_run()


# --- 9. a flood of component names costs neither memory that stays nor a log line each ------------


async def test_a_flood_of_names_is_bounded_and_summarised(tmp_path):
    # A broker that passes on every REGISTER of one socket (ours refuses beyond
    # REGISTERS_PER_CONNECTION; swergio.Server does not): the app bounds what it is given.
    broker = Broker(HOST, 0, max_registers=10_000).start()
    try:
        app = ControlRoomApp(
            SessionOptions(connect=f"{HOST}:{broker.port}", embed_env=False), db_path=str(tmp_path / "r.sqlite3")
        )
        async with app.run_test(size=(120, 50)) as pilot:
            await until(pilot, lambda: app.connection == "connected", what="connected")
            flooder = Raw(broker.port, "flooder")
            names = 3000
            flood_began = time.monotonic()
            for i in range(names):
                flooder.send({"TYPE": protocol.REGISTER, "NAME": f"flood-{i}", "TO_ROOM": protocol.COMMAND_ROOM})
            await until(pilot, lambda: "more components seen" in log_text(app), what="the summary line")
            # a round of stats (one a second) names the flooder by its latest name, which may have
            # left the 200 names kept by then: counted again, once a round (CI: 3,002 of 3,001)
            rounds = math.ceil((time.monotonic() - flood_began) / protocol.STATS_INTERVAL) + 1
            told = log_text(app).count("component seen: flood-")
            summarised = sum(
                int(line.split(": ")[1].split(" more")[0].replace(",", ""))
                for line in log_text(app).splitlines()
                if "more components seen" in line
            )
            assert told < 200 and told + summarised <= names + 1 + rounds  # + the flooder, named in the stats
            assert len(app.main.network.components) <= MAX_NAMES
            assert app.is_running
            flooder.close()
    finally:
        broker.stop()
