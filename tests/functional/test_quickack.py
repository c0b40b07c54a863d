"""Unmodified swergio 0.0.2 clients at full speed through our broker (TCP_QUICKACK).

Their two-write frames without TCP_NODELAY wait ~45 ms a frame for a delayed ACK unless
the broker ACKs at once: 300 round trips take ~14 s without it and well under 1 s with it.
"""

from __future__ import annotations

import socket
import time

import pytest
from swergio import Client

from cartpole_tui.env.wire import broker as broker_module
from cartpole_tui.env.wire.broker import Broker

from conftest import answer, start_swergio_client, wait_for

ROUNDS = 60


def ping_pong(broker: Broker) -> float:
    """Seconds for ROUNDS round trips of two unmodified swergio clients through ``broker``."""
    port = broker.port
    count = {"rounds": 0}
    ponger = Client("ponger", "127.0.0.1", port, "utf-8", 10)
    answer(ponger, lambda msg: {"N": msg["N"]}, "ping", "pong")
    start_swergio_client(ponger)
    pinger = Client("pinger", "127.0.0.1", port, "utf-8", 10)

    def on_pong(msg):
        count["rounds"] += 1
        return {"N": count["rounds"]} if count["rounds"] < ROUNDS else None

    answer(pinger, on_pong, "pong", "ping")
    start_swergio_client(pinger)
    try:
        rooms = lambda: broker.stats()["rooms"]  # noqa: E731
        wait_for(lambda: all(rooms().get(r) and rooms()[r].members for r in ("ping", "pong")), 5, "joins")
        started = time.monotonic()
        # The ponger's first message starts the exchange.
        ponger.send({"ID": "0", "TYPE": "DATA/CUSTOM", "TO_ROOM": "pong", "N": 0})
        # (seen once in a loaded full run: the rounds stopped; the count says where)
        wait_for(lambda: count["rounds"] >= ROUNDS, timeout=60, what=f"{ROUNDS} round trips", seen=lambda: count)
        return time.monotonic() - started
    finally:
        for client in (pinger, ponger):
            client.close()


@pytest.mark.skipif(not hasattr(socket, "TCP_QUICKACK"), reason="the platform has no TCP_QUICKACK")
def test_published_clients_ping_pong_through_our_broker_without_delayed_acks(monkeypatch):
    """Side by side, under whatever load the machine has: our broker, then one that does not set
    TCP_QUICKACK (~45 ms a round trip, the kernel's delayed-ACK timer, which load does not shorten)."""
    with_ack = Broker("127.0.0.1", 0).start()
    try:
        quick = ping_pong(with_ack)
    finally:
        with_ack.stop()
    monkeypatch.setattr(broker_module, "_QUICKACK", None)
    without = Broker("127.0.0.1", 0).start()
    try:
        delayed = ping_pong(without)
    finally:
        without.stop()
    assert delayed / quick >= 2, (quick, delayed)  # ~14x here when quiet; a 5-s bound failed under load
