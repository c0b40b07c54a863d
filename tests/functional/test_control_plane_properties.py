"""Property test (issue 17, "beyond these cases"): generated control-plane messages into a live
network with a ``--no-env`` control room recording into a real SQLite file.

A plain client publishes EPISODE_DONE, ENV_DONE, RUN_STARTED and RUN_STATE whose fields hold
any JSON value, NaN, infinities, huge integers, long strings and lone surrogates (mixed with
plausible ones, so that runs and episodes do get recorded). After each example the history
holds only valid rows and the session still records.
"""

from __future__ import annotations

import math
import sqlite3
import time

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cartpole_tui.env.events import NetworkError
from cartpole_tui.env.history.store import RunStore
from cartpole_tui.env.runtime.session import Session, SessionOptions
from cartpole_tui.env.wire import protocol
from cartpole_tui.env.wire.broker import Broker
from cartpole_tui.env.wire.transport import Component

from conftest import wait_for

HOST = "127.0.0.1"
RUN_IDS = ("run-a", "run-b", "run-c")
TEXT = st.text(max_size=8) | st.sampled_from(["\ud800", "x" * 65, "y" * 5000, "", "[b]x[/b]", "\x1b[2J"])
ODD = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([2**63, -(2**63) - 1, 2**70, 10**9 + 1, -1, 0, 10**400, -(10**400)])  # (JSON: any digits)
    | st.floats()  # NaN and the infinities among them
    | st.sampled_from([float("nan"), float("inf"), 1e308, -1e308, 1e13])
    | TEXT
)
JSON = st.recursive(
    ODD, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3), max_leaves=6
)
PLAUSIBLE = {
    "RUN_ID": st.sampled_from(RUN_IDS),
    "EPISODE": st.integers(1, 5),
    "SCORE": st.floats(0, 500),
    "STEPS": st.integers(0, 500),
    "AVG_SCORE": st.floats(0, 500),
    "EPISODES": st.integers(1, 10),
    "STOPPED": st.booleans(),
    "DETERMINISTIC": st.booleans(),
    "SEED": st.none() | st.integers(0, 2**32 - 1),
    "INSTANCES": st.integers(1, 8),
    "ENV_ID": st.just("CartPole-v1"),
    "STARTED": st.floats(1e9, 2e9),
    "ENDED_AT": st.floats(1e9, 2e9),
    "FINISHED": st.integers(0, 10),
    "SCORES": st.lists(st.floats(0, 500), max_size=5),
    "HISTORY": st.none() | st.text(max_size=20),
    "HISTORY_HOST": st.text(max_size=10),
}
STATUSES = (protocol.EPISODE_DONE, protocol.EPISODES_DONE, protocol.ENV_DONE, protocol.RUN_STARTED, protocol.RUN_STATE)
COLUMNS = ("EPISODE", "SCORE", "STEPS")  # EPISODES_DONE's are lists


@st.composite
def control_messages(draw: st.DrawFn) -> dict:
    """A control-room message of one of the four kinds: each field plausible, odd or missing."""
    message: dict[str, object] = {"STATUS": draw(st.sampled_from(STATUSES))}
    for key, plausible in PLAUSIBLE.items():
        choice = draw(st.sampled_from(("plausible", "plausible", "odd", "missing")))
        if choice != "missing":
            message[key] = draw(plausible if choice == "plausible" else JSON)
    if message["STATUS"] == protocol.EPISODES_DONE:
        for key in COLUMNS:  # one entry most often, so that some are recorded
            if key in message and draw(st.booleans()):
                message[key] = [message[key]]
    return message


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """Broker, ``--no-env`` control room with its own history file, and a plain client."""
    broker = Broker(HOST, 0).start()
    db = tmp_path_factory.mktemp("properties") / "followed.sqlite3"
    store = RunStore.open(str(db))
    events: list[object] = []
    options = SessionOptions(connect=f"{HOST}:{broker.port}", embed_env=False, agent="random")
    session = Session(options, store=store, on_event=events.append).open()
    client = Component("publisher", HOST, broker.port)
    yield session, store, events, client, db
    client.close()
    session.close()
    store.close()
    broker.stop()


def handled(client: Component, events: list[object]) -> None:
    """Wait until the control room has handled everything sent so far (it handles in order)."""
    marker = protocol.new_id()
    client.send(protocol.custom(protocol.CONTROL, STATUS=protocol.ENV_ERROR, ERROR=marker))
    wait_for(lambda: any(isinstance(e, NetworkError) and marker in e.text for e in events), what="the marker")


def assert_history_valid(store: RunStore, db) -> None:
    assert store.flush(10.0)
    assert store.error is None and store.on_disk, store.error  # still recording to its file
    with sqlite3.connect(db) as conn:
        episodes = conn.execute("SELECT run_uid, idx, score, steps, wall_time FROM episodes").fetchall()
        runs = conn.execute("SELECT run_uid, episodes, seed, started, avg_score, finished FROM runs").fetchall()
    for _, index, score, steps, wall_time in episodes:
        assert 1 <= index <= protocol.MAX_EPISODES
        assert math.isfinite(score) and abs(score) <= protocol.MAX_SCORE
        assert 0 <= steps <= protocol.MAX_EPISODE_STEPS and math.isfinite(wall_time)
    keys = [(uid, index) for uid, index, *_ in episodes]
    assert len(keys) == len(set(keys))  # episode numbers unique per run
    for uid, size, seed, started, average, finished in runs:
        assert protocol.valid_run_id(uid) and 0 <= size <= protocol.MAX_EPISODES
        assert seed is None or 0 <= seed <= protocol.MAX_SEED
        assert math.isfinite(started) and (average is None or abs(average) <= protocol.MAX_SCORE)
        assert finished >= 0
    # what the file holds is what the session kept (the first copy of each episode)
    for record in store.runs():
        kept = [(e.index, e.score, e.steps) for e in store.episodes(record.run_uid)]
        assert sorted(kept) == sorted((i, s, n) for u, i, s, n, _ in episodes if u == record.run_uid)


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(control_messages(), min_size=1, max_size=6))
@example([{"STATUS": protocol.EPISODES_DONE, "RUN_ID": "run-a", "EPISODE": [1], "SCORE": [10**400], "STEPS": [1]}])
def test_generated_control_messages_leave_only_valid_history(live, caplog, messages):
    _, store, events, client, db = live
    for message in messages:
        client.send(protocol.custom(protocol.CONTROL, **message))
    handled(client, events)
    assert_history_valid(store, db)
    # refused with a reason (a NetworkError), never by a handler's traceback
    assert not [r.getMessage() for r in caplog.records if "handler" in r.getMessage() and "failed" in r.getMessage()]
    # the session still records what a real environment would send
    run_id = f"check-{time.monotonic_ns()}"
    facts = protocol.run_facts(run_id, 2, False, None, 1, "CartPole-v1", time.time())
    client.send(protocol.run_started(facts, None))
    client.send(protocol.episode_done(run_id, 1, 21.0, 21, time.time()))
    handled(client, events)
    assert store.flush(10.0)
    assert [(e.index, e.score) for e in store.episodes(run_id)] == [(1, 21.0)]
    del events[:]  # the markers were found; keep the list short
