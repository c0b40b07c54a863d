"""A start waiting for the broker's census, overridden by a STOP or another START (no sockets:
the environment's client is a recorder)."""

from __future__ import annotations

from cartpole_tui.env.components.vector_env import VectorEnvironmentComponent
from cartpole_tui.env.events import EnvironmentObserver
from cartpole_tui.env.wire import protocol


class RecordingClient:
    """Stands in for the swergio client: keeps what is sent."""

    def __init__(self, name, host, port, **_):
        self.name, self.sent = name, []

    def add_eventHandler(self, *_, **__):
        pass

    def send(self, message):
        self.sent.append(message)

    def send_many(self, messages):
        self.sent.extend(messages)

    def start(self):
        return self

    def close(self):
        pass


class Environment(VectorEnvironmentComponent):
    client_class = RecordingClient


def told(env) -> list[tuple[object, object]]:
    return [(m.get("STATUS"), m.get("RUN_ID")) for m in env.client.sent if m.get("STATUS")]


def start(episodes: int, parallel: int | None = None) -> dict:
    message = protocol.start_run(episodes, False)
    if parallel is not None:
        message["PARALLEL"] = parallel
    return message


def test_a_pending_run_replaced_keeps_the_last_runs_unanswered_observation_waited_for():
    """Announcing the pending run cleared the observation the last run left unanswered: the next
    run's first observation went out at once, its LOGITS mixed with the old one's."""
    env = Environment("127.0.0.1", 1, parallel=4, census_timeout=30)
    assert env._on_control(start(5, parallel=1)) is not None  # run A: its first observation out
    env._on_control(start(5))  # B waits for its census
    assert env._pending is not None
    env._on_control(start(5, parallel=1))  # C replaces B before the census answers
    assert env.logic.wait_before_first > 0  # C waits for A's ACTION, as any next run does


def test_a_pending_run_whose_start_fails_is_still_ended():
    class Refusing(EnvironmentObserver):
        def on_run_started(self, event):
            raise RuntimeError("the store refused it")

    env = Environment("127.0.0.1", 1, parallel=4, census_timeout=30)
    pending = start(5)
    env._on_control(pending)
    env.add_observer(Refusing())
    env._on_control(protocol.stop_run())
    assert (protocol.ENV_DONE, pending["RUN_ID"]) in told(env)  # whoever waits for it is not left waiting


def test_a_pending_run_whose_id_was_recorded_meanwhile_is_still_ended():
    env = Environment("127.0.0.1", 1, parallel=4, census_timeout=30)
    pending = start(5)
    env._on_control(pending)
    env.logic.recorded = lambda run_id: run_id == pending["RUN_ID"]  # a shared history took it
    env._on_control(protocol.stop_run())
    assert told(env)[-1] == (protocol.ENV_DONE, pending["RUN_ID"])


def observations(env) -> list[dict]:
    return [m for m in env.client.sent if m.get("TO_ROOM") == protocol.OBSERVATION]


def test_a_vectorised_start_drops_the_first_observation_a_replaced_run_held_back():
    """B's first observation waits for A's ACTION; a vectorised start ends B while it waits, and
    B's observation went out when A's ACTION (or the wait) came: after B's ENV_DONE."""
    env = Environment("127.0.0.1", 1, parallel=4, census_timeout=30)
    assert env._on_control(start(5, parallel=1)) is not None  # run A: its first observation out
    assert env._on_control(start(5, parallel=1)) is None  # run B: held back until A's ACTION
    assert env._deferred is not None
    env._on_control(start(5))  # C, vectorised: B ends stopped, C waits for its census
    sent = len(observations(env))
    env._send_deferred()  # what A's ACTION, or the wait's timer, does
    assert observations(env)[sent:] == []
