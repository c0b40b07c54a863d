"""Hostile SCHEDULE and SCHEDULE_ENDED on the control plane: each test failed before its fix.

A plain client on a live broker says a schedule goes where none does: a START whose run never
plays (the environment refuses it, or there is none), a replay of a START whose schedule
ended, a replay of this room's own START. Another room's ``s`` is refused while a schedule goes,
so each of them refused it until someone pressed ``x`` (which STOPs the network's run going).
"""

from __future__ import annotations

import threading

from cartpole_tui.env.components.control import ControlClient
from cartpole_tui.env.events import NetworkError
from cartpole_tui.env.wire import protocol
from cartpole_tui.env.wire.transport import Component

from conftest import wait_for

HOST = "127.0.0.1"


def room(broker, closing) -> tuple[ControlClient, list[object]]:
    events: list[object] = []
    control = ControlClient(HOST, broker.port, on_event=events.append)
    closing(control)
    return control, events


def attacker(broker, closing) -> Component:
    peer = Component("attacker", HOST, broker.port)
    closing(peer)
    return peer


def heard(peer: Component, events: list[object], marker: str) -> None:
    """What ``peer`` sent before has been handled by the room: a marker after it came back."""
    peer.send(protocol.custom(protocol.CONTROL, STATUS=protocol.ENV_ERROR, ERROR=marker))
    wait_for(lambda: any(isinstance(e, NetworkError) and marker in e.text for e in events), 10, marker)


def test_a_start_whose_run_never_plays_locks_no_room_for_ever(broker, closing):
    """One START with SCHEDULE and nothing after it (no environment plays it: refused, forged, or
    its RUN_ID already played) refused every room's s until x; now as long as a run waits."""
    control, events = room(broker, closing)
    control._schedules.idle = 0.5  # RUN_IDLE_TIMEOUT, shortened
    peer = attacker(broker, closing)
    peer.send(protocol.start_run(5, False, schedule="forged"))
    heard(peer, events, "start sent")
    assert control.schedule_elsewhere  # at first it is taken as going
    wait_for(lambda: not control.schedule_elsewhere, 10, "the silent schedule forgotten")


def test_a_start_replayed_after_its_schedule_ended_is_no_schedule(broker, closing):
    control, events = room(broker, closing)
    peer = attacker(broker, closing)
    start = protocol.start_run(5, False, schedule="s1")
    peer.send(start)
    heard(peer, events, "start sent")
    assert control.schedule_elsewhere
    peer.send(protocol.schedule_ended("s1"))
    heard(peer, events, "ended sent")
    assert not control.schedule_elsewhere
    peer.send(start)  # the replay
    heard(peer, events, "replay sent")
    assert not control.schedule_elsewhere


def test_a_replay_of_this_rooms_own_start_is_no_schedule_elsewhere(broker, closing):
    control, events = room(broker, closing)
    control.begin_schedule(threading.Event())
    peer = attacker(broker, closing)
    peer.send(protocol.start_run(5, False, schedule=control._schedules.ours))
    heard(peer, events, "own start replayed")
    assert not control.schedule_elsewhere
