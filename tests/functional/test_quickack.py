"""Unmodified swergio 0.0.2 clients at full speed through our broker (TCP_QUICKACK).

Their two-write frames without TCP_NODELAY wait ~45 ms a frame for a delayed ACK unless
the broker ACKs at once: 300 round trips take ~14 s without it and well under 1 s with it.
"""

from __future__ import annotations

import socket

import pytest
from swergio import Client

from conftest import answer, start_swergio_client, wait_for

ROUNDS = 300


@pytest.mark.skipif(not hasattr(socket, "TCP_QUICKACK"), reason="the platform has no TCP_QUICKACK")
def test_published_clients_ping_pong_through_our_broker_without_delayed_acks(broker):
    count = {"rounds": 0}
    ponger = Client("ponger", "127.0.0.1", broker.port, "utf-8", 10)
    answer(ponger, lambda msg: {"N": msg["N"]}, "ping", "pong")
    start_swergio_client(ponger)
    pinger = Client("pinger", "127.0.0.1", broker.port, "utf-8", 10)

    def on_pong(msg):
        count["rounds"] += 1
        return {"N": count["rounds"]} if count["rounds"] < ROUNDS else None

    answer(pinger, on_pong, "pong", "ping")
    start_swergio_client(pinger)
    # The ponger's joins are in; a READY-style first message from it starts the exchange.
    wait_for(lambda: broker.stats()["rooms"].get("ping") and broker.stats()["rooms"]["ping"].members, 5, "joins")
    ponger.send({"ID": "0", "TYPE": "DATA/CUSTOM", "TO_ROOM": "pong", "N": 0})
    # ~14 s at the delayed-ACK pace; the whole exchange must be done in a third of that.
    wait_for(lambda: count["rounds"] >= ROUNDS, timeout=5, what=f"{ROUNDS} round trips")
    for client in (pinger, ponger):
        client.close()
