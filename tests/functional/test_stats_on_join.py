"""The broker's stats on a join to the stats room."""

from __future__ import annotations

from cartpole_tui.env import defaults
from cartpole_tui.env.components.control import ControlClient
from cartpole_tui.env.wire import protocol
from tests.conftest import wait_for

HOST = "127.0.0.1"


def test_a_join_just_after_a_round_of_stats_hears_them_within_the_gap(monkeypatch, broker):
    """A quiet network (an `env` command's idle environment): the broker sleeps in select() up to
    1 s. A client joining the stats room within STATS_ON_JOIN_GAP of the last stats is due its
    stats at last + 0.1 s, but nothing wakes the loop until the select times out."""
    monkeypatch.setattr(protocol, "STATS_INTERVAL", 3600.0)
    first = ControlClient(HOST, broker.port, name="first")
    try:
        assert first.wait_stats(5) is not None
        wait_for(lambda: broker._last_stats > 0, 5, "the first stats")
        # the broker's loop is now in select(timeout=1.0); join again at once
        late = ControlClient(HOST, broker.port, name="late")
        try:
            # within the probe's wait for another environment (it waited 1 s and came a moment late)
            stats = late.wait_stats(defaults.ENV_PROBE_TIMEOUT)
        finally:
            late.close()
    finally:
        first.close()
    assert stats is not None


def test_joining_and_leaving_the_stats_room_in_a_loop_does_not_multiply_the_members_stats(broker):
    """A peer sending JOINROOM/LEAVEROOM _stats in a loop made the broker compute and send its
    stats to every member 10 times a second instead of once (each round is O(rooms) and up to
    ~35 kB to every member: every control room decoding and redrawing them)."""
    import socket
    import threading

    from tests.functional.test_broker_limits import join, read_message

    bystander = join(broker.port, "bystander", protocol.STATS_ROOM)
    reader = bystander.makefile("rb")
    assert read_message(reader)["TYPE"] == protocol.LOG_CUSTOM  # the round its own join brought
    attacker = join(broker.port, "looper")
    stop = threading.Event()
    both = b"".join(
        protocol.encode_frame({"ID": "x", "TYPE": kind, "ROOM": protocol.STATS_ROOM, "TO_ROOM": protocol.COMMAND_ROOM})
        for kind in (protocol.JOINROOM, protocol.LEAVEROOM)
    )

    def loop() -> None:
        while not stop.is_set():
            attacker.sendall(both)
            stop.wait(0.002)

    def drain() -> None:  # the attacker reads what it is sent
        attacker.settimeout(None)
        try:
            while attacker.recv(1 << 16):
                pass
        except OSError:
            pass

    threading.Thread(target=loop, daemon=True).start()
    threading.Thread(target=drain, daemon=True).start()
    heard = []

    def count() -> None:
        bystander.settimeout(None)
        try:
            while True:
                heard.append(read_message(reader).get("TO_ROOM") == protocol.STATS_ROOM)
        except (OSError, ValueError):
            pass

    threading.Thread(target=count, daemon=True).start()
    stop.wait(3.0)
    stop.set()
    attacker.close()
    bystander.shutdown(socket.SHUT_RDWR)
    bystander.close()
    assert sum(heard) <= 5, f"the bystander heard {sum(heard)} rounds of stats in 3 s (one a second is due)"
