"""A process that brings its environment asks its state until that environment hears the
query before it sends anything else: swergio.Server reads each client in a thread of its own
and routed `run --connect`'s START before the environment's JOINROOM of ``control`` (the real
published network, under load). The environment tells it in-process: a peer's answer, whatever
its SENT_BY and ROOT_ID, never ends the wait. The answer names the query (ROOT_ID); a flood of
queries shares a few answers."""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from swergio import MESSAGE_TYPE, Trigger
from test_swarm import Probe

from cartpole_tui.env import defaults
from cartpole_tui.env.components.control import ControlClient
from cartpole_tui.env.components.vector_env import BatchClient, VectorEnvironmentComponent
from cartpole_tui.env.runtime.session import Session, SessionOptions
from cartpole_tui.env.swarm.swarm import Swarm
from cartpole_tui.env.wire import protocol
from cartpole_tui.env.wire.transport import Component, ConnectionLost

from conftest import wait_for

HOST = "127.0.0.1"
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


class LateToControl(BatchClient):
    """An environment's client whose JOINROOM of ``control`` comes 1 s late, as when swergio.Server's
    thread for that client was not scheduled (the real published network at load 14)."""

    def join_room(self, room: str) -> None:
        if room != protocol.CONTROL or room in self.rooms:
            return super().join_room(room)
        self.rooms.add(room)
        join = {"ID": protocol.new_id(), "TYPE": protocol.JOINROOM, "ROOM": room, "TO_ROOM": protocol.COMMAND_ROOM}
        timer = threading.Timer(1.0, Component.send, (self, join))
        timer.daemon = True
        timer.start()


def test_a_run_with_our_environment_through_swergio_server_waits_until_it_listens(swergio_server, monkeypatch):
    """`run --connect` through swergio.Server said "the environment did not answer" once in six
    runs (fails without the wait). Its RUN_STATE said on joining can reach the control room
    before its JOINROOM: only the answer to a query counts (the wait ends on it, not on time)."""
    monkeypatch.setattr(VectorEnvironmentComponent, "client_class", LateToControl)
    monkeypatch.setattr(defaults, "ENV_LISTEN_TIMEOUT", 30.0)
    swarm = Swarm(HOST, swergio_server, models=2, seed=1).start()
    session = Session(SessionOptions(connect=f"{HOST}:{swergio_server}"))
    try:
        session.open()
        assert session.control is not None and session.environment is not None
        assert session.environment.heard_control.is_set()
        result = session.control.run(3, seed=1, idle_timeout=10)
        assert not result.stopped and result.episodes == 3
    finally:
        session.close()
        swarm.close()


class DeafAndDropped(BatchClient):
    """An environment's client that never joins ``control`` and whose connection breaks 0.5 s in."""

    def join_room(self, room: str) -> None:
        if room != protocol.CONTROL:
            return super().join_room(room)
        self.rooms.add(room)
        timer = threading.Timer(0.5, self.client.shutdown, (socket.SHUT_RDWR,))
        timer.daemon = True
        timer.start()


def test_an_environment_lost_while_it_is_asked_fails_the_join(broker, monkeypatch):
    """Not 10 s of asking and a control room "connected" without its environment: the app joins again."""
    monkeypatch.setattr(VectorEnvironmentComponent, "client_class", DeafAndDropped)
    monkeypatch.setattr(defaults, "ENV_LISTEN_TIMEOUT", 30.0)
    session = Session(SessionOptions(connect=f"{HOST}:{broker.port}"))
    try:
        with pytest.raises(ConnectionLost, match="the environment lost its connection before it answered"):
            session.open()
        assert session.control is None and session.environment is None  # closed, nothing left running
    finally:
        session.close()


def test_the_environments_answer_names_the_query_it_answers(broker, closing):
    env = VectorEnvironmentComponent(HOST, broker.port).start()
    closing(env)
    asker = Probe(broker.port, protocol.CONTROL, name="asker")
    closing(asker)
    query = asker.send(protocol.CONTROL, QUERY=protocol.QUERY_STATE)
    # the RUN_STATE said on joining, if it came after the asker joined, names no query
    answer = next(m for m in heard(asker) if m.get("STATUS") == protocol.RUN_STATE and "ROOT_ID" in m)
    assert answer["ROOT_ID"] == query["ID"]
    for bad in (["a list"], "x" * (protocol.MAX_RUN_ID + 1), None):
        asker.client.send({**protocol.state_query(), "ID": bad})
        answer = next(m for m in heard(asker) if m.get("STATUS") == protocol.RUN_STATE)
        assert "ROOT_ID" not in answer
    assert env.client.listening


def heard(probe: Probe, silence: float = 5.0) -> Iterator[dict]:
    """What ``probe`` hears, one message at a time (queue.Empty after ``silence`` s without any)."""
    while True:
        yield probe.get(timeout=silence)[0]


def overheard_query(control: ControlClient, impostor: Probe) -> dict | None:
    """A state query of ``control``'s that ``impostor`` heard (asked again until it is in the room)."""
    control.query_state()
    try:
        return next(m for m in heard(impostor, 0.5) if m.get("QUERY") == protocol.QUERY_STATE)
    except queue.Empty:
        return None


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(root=JSON)
def test_whatever_a_peer_answers_a_query_of_ours_the_control_room_stays(broker, root):
    """A peer in ``control`` sees the queries' IDs: nothing it answers them with raises."""
    control = ControlClient(HOST, broker.port)
    impostor = Probe(broker.port, protocol.CONTROL, name="environment")
    try:
        query = wait_for(lambda: overheard_query(control, impostor), 10, "the impostor to hear a query")
        for root_id in (root, query["ID"]):
            impostor.client.send({**protocol.run_state(None, 0, 0, [], None), "ROOT_ID": root_id})
        control.query_state()
        wait_for(lambda: control.environment_answered, 5, "the impostor's answers to be read")
        assert control.client.listening
    finally:
        impostor.close()
        control.close()


class Deaf(BatchClient):
    """An environment's client that never joins ``control``."""

    def join_room(self, room: str) -> None:
        if room != protocol.CONTROL:
            return super().join_room(room)
        self.rooms.add(room)


def answering_impostor(port: int, name: str, sent_by: str | None = None) -> Component:
    """A peer in ``control`` that answers every state query it overhears, naming it (ROOT_ID)."""
    client = Component(name, HOST, port)

    def on_control(msg: dict) -> None:
        if protocol.is_state_query(msg):
            answer = {**protocol.run_state(None, 0, 0, [], None), "ROOT_ID": msg["ID"]}
            client.send(answer if sent_by is None else {**answer, "SENT_BY": sent_by})

    client.add_eventHandler(on_control, None, trigger=Trigger(MESSAGE_TYPE.DATA.CUSTOM, protocol.CONTROL))
    return client.start()


def test_a_peer_registered_as_environment_does_not_end_the_wait(broker, monkeypatch):
    """Names are not unique on a broker (and swergio.Server keeps the SENT_BY a client writes): a
    peer that registers as "environment" once ours started (after the probe for another one)
    answered our queries and the wait ended with ours not yet in ``control``."""
    monkeypatch.setattr(VectorEnvironmentComponent, "client_class", Deaf)
    monkeypatch.setattr(defaults, "ENV_LISTEN_TIMEOUT", 1.5)
    original, peers = Session._start_environment, []

    def with_impostor(self, host, port):
        peers.append(answering_impostor(port, "environment"))
        original(self, host, port)

    monkeypatch.setattr(Session, "_start_environment", with_impostor)
    session = Session(SessionOptions(connect=f"{HOST}:{broker.port}"))
    try:
        t0 = time.monotonic()
        session.open()
        assert time.monotonic() - t0 >= 1.5  # asked until the limit: ours never heard `control`
        assert session.environment is not None and not session.environment.heard_control.is_set()
    finally:
        session.close()
        for peer in peers:
            peer.close()


def test_through_swergio_server_a_forged_sent_by_does_not_end_the_wait(swergio_server, monkeypatch):
    """swergio.Server keeps the SENT_BY a client writes: "environment" is anyone's."""
    monkeypatch.setattr(VectorEnvironmentComponent, "client_class", Deaf)
    monkeypatch.setattr(defaults, "ENV_LISTEN_TIMEOUT", 3.0)  # beyond the probe's 1 s wait for stats
    peer = answering_impostor(swergio_server, "someone", sent_by="environment")
    session = Session(SessionOptions(connect=f"{HOST}:{swergio_server}"))
    try:
        t0 = time.monotonic()
        session.open()
        assert time.monotonic() - t0 >= 3.0
    finally:
        session.close()
        peer.close()


def test_a_flood_of_state_queries_gets_a_few_answers(broker, closing):
    """Every answer carries the run's latest episodes to every member of ``control``: a peer's
    1,000 queries a second brought a run to a halt, and 10,000 had the broker close a control
    room that could not keep up. Queries within STATE_ANSWER_INTERVAL share one answer, which
    names the latest of them."""
    env = VectorEnvironmentComponent(HOST, broker.port).start()
    closing(env)
    asker = Probe(broker.port, protocol.CONTROL, name="asker")
    closing(asker)
    wait_for(lambda: overheard_by_env(env, asker), 10, "the environment to answer a query")
    queries = [protocol.state_query() for _ in range(500)]
    asker.client.send_many(queries)
    answers = []
    with contextlib.suppress(queue.Empty):
        for message in heard(asker, 1.0):
            if message.get("STATUS") == protocol.RUN_STATE:
                answers.append(message)
    assert 1 <= len(answers) <= 50  # of 500: a few intervals went by while they came (2 on a quiet machine)
    assert answers[-1]["ROOT_ID"] == queries[-1]["ID"]  # the last query is answered
    assert env.client.listening


def overheard_by_env(env: VectorEnvironmentComponent, asker: Probe) -> bool:
    """A query of ``asker``'s answered (asked again until the environment is in the room); the room then quiet."""
    asker.send(protocol.CONTROL, QUERY=protocol.QUERY_STATE)
    try:
        next(m for m in heard(asker, 0.5) if m.get("STATUS") == protocol.RUN_STATE)
    except queue.Empty:
        return False
    with contextlib.suppress(queue.Empty):
        for _ in heard(asker, 0.3):
            pass
    return True
