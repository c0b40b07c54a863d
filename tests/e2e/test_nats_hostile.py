"""Gateways under issue 17's attacks, on a real 3-node NATS cluster: names too long for a NATS
subject, a server that closes the connection, garbage and inflated stats published by a
foreign NATS client, and generated frames from both sides. Each test failed before its fix.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import HealthCheck, given, settings
from swergio import MESSAGE_TYPE, Trigger
from test_nats import NETWORK, heard, start_gateways, stop_gateways

from cartpole_tui.env.wire import broker_stats, protocol, subjects
from cartpole_tui.env.wire.gateway import MAX_STATS_MESSAGE, NatsRelay
from cartpole_tui.env.wire.transport import Component
from tests.hostile import FRAMES, Raw, nested, still_routes
from tests.nats_cluster import NatsCluster

from conftest import wait_for

HOST = "127.0.0.1"
CUSTOM = MESSAGE_TYPE.DATA.CUSTOM
LONG = "." * 1400  # escaped for a subject: 4,200 bytes, over nats-server's 4 KiB control line


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with NatsCluster(3, str(tmp_path_factory.mktemp("nats"))) as instance:
        yield instance


@pytest.fixture
def gateways(cluster):
    brokers = start_gateways(cluster)
    yield brokers
    stop_gateways(brokers)


def listening(port: int, room: str, closing) -> list[dict]:
    """What a member of ``room`` gets; ``{"LOST": reason}`` when its connection ends."""
    got: list[dict] = []
    member = Component("member", HOST, port, on_disconnect=lambda reason: got.append({"LOST": reason}))
    member.add_eventHandler(got.append, None, trigger=Trigger(CUSTOM, room))
    closing(member.start())
    return got


def texts(got: list[dict]) -> list[str]:
    return [m.get("TEXT") for m in list(got)]


def foreign_publisher(relay: NatsRelay, closing) -> NatsRelay:
    """Another NATS client with rights on the network's subjects (not a gateway)."""
    peer = NatsRelay([relay.bridge.servers[0]], NETWORK).start(5)
    closing(peer)
    return peer


# --- 2. a name too long for a NATS subject -------------------------------------------------------------

LONG_NAMES = {
    "JOINROOM": {"TYPE": protocol.JOINROOM, "ROOM": LONG, "TO_ROOM": protocol.COMMAND_ROOM},
    "REGISTER": {"TYPE": protocol.REGISTER, "NAME": LONG, "TO_ROOM": protocol.COMMAND_ROOM},
    "TO_ROOM": {"TYPE": protocol.CUSTOM, "TO_ROOM": LONG},
    "TO": {"TYPE": protocol.CUSTOM, "TO": LONG, "TO_ROOM": "chat"},
}


@pytest.mark.parametrize("message", LONG_NAMES.values(), ids=LONG_NAMES.keys())
def test_a_name_too_long_for_nats_is_refused_and_the_gateway_stays_on_nats(gateways, closing, message):
    a, b, _ = gateways
    got = listening(b.port, "chat", closing)
    wait_for(lambda: heard(a, "chat", 1), 10, "the member on B to be heard of on A")
    offender = Raw(a.port, None if message["TYPE"] == protocol.REGISTER else "offender")
    offender.send({**message, "ID": "the-long-one"})
    still_routes(b.port, talker_port=a.port)  # A is still on NATS (the server had closed its connection for good)
    refusal = offender.recv()
    assert refusal["SENT_BY"] == protocol.BROKER and refusal["ROOT_ID"] == "the-long-one"
    assert "too long for gateway mode" in refusal[protocol.REFUSED] and a.names_refused == 1
    offender.send(protocol.custom("chat", TEXT="still here"))  # and the offender still connected
    wait_for(lambda: "still here" in texts(got), 5, "the offender's next message on B")
    assert a.relay.bridge.server_errors == 0 and a.relay.bridge.reconnects == 0


def test_the_gateway_reconnects_after_the_server_closes_its_connection(gateways, closing):
    a, b, _ = gateways
    bridge = a.relay.bridge

    async def protocol_error() -> None:  # the server answers -ERR 'Unknown Protocol Operation' and closes
        assert bridge.nc is not None
        bridge.nc._transport.write(b"NOT-A-NATS-OPERATION\r\n")
        await bridge.nc._transport.drain()

    asyncio.run_coroutine_threadsafe(protocol_error(), bridge._loop).result(5)
    wait_for(lambda: bridge.reconnects == 1 and bridge.connected_url, 10, "gateway A to reconnect")
    assert bridge.server_errors == 1
    still_routes(b.port, talker_port=a.port)  # A to B: A publishes again
    still_routes(a.port, talker_port=b.port)  # B to A: A's subscriptions were made again


def test_a_network_name_too_long_for_nats_is_one_line_and_exit_1(cluster, capsys):
    from cartpole_tui.tui.cli.parser import main

    assert main(["broker", "--port", "0", "--nats", cluster.url(0), "--network", "n" * 2000]) == 1
    err = capsys.readouterr().err
    assert err == "cartpole-tui: the network name is too long for NATS (2,000 characters)\n"


# --- 3. garbage from NATS --------------------------------------------------------------------------------

GARBAGE = {
    "not JSON": protocol.frame_bytes(b"not json"),
    "not UTF-8": protocol.frame_bytes(b'{"TYPE": "DATA/CUSTOM", "X": "\xff\xfe"}'),
    "a JSON list": protocol.frame_bytes(b'[{"TYPE": "DATA/CUSTOM"}]'),
    "no TYPE": protocol.frame_bytes(b'{"TO_ROOM": "control"}'),
    "nested 995 deep": protocol.frame_bytes(b'{"TYPE": "DATA/CUSTOM", "X": ' + b"[" * 995 + b"]" * 995 + b"}"),
    "past the receivers' depth": protocol.frame_bytes(
        f'{{"TYPE": "DATA/CUSTOM", "X": {nested(protocol.RECEIVED_MAX_DEPTH)}}}'.encode()
    ),
}


def test_garbage_published_on_nats_reaches_no_client_and_is_counted(gateways, closing):
    members = [listening(broker.port, protocol.CONTROL, closing) for broker in gateways]
    peer = foreign_publisher(gateways[0].relay, closing)

    def everyone_gets(text: str) -> None:
        def arrived() -> bool:
            if all(text in texts(got) for got in members):
                return True
            peer.publish("room", protocol.CONTROL, protocol.encode_frame(protocol.custom(protocol.CONTROL, TEXT=text)))
            return False

        wait_for(arrived, 10, f"{text!r} on every gateway")

    everyone_gets("before")  # every gateway's subscription is in place
    refused_before = [broker.relay.refused for broker in gateways]
    for garbage in GARBAGE.values():
        peer.publish("room", protocol.CONTROL, garbage)
    everyone_gets("after")  # one publisher's messages arrive in order: the garbage has been dealt with
    for broker, before in zip(gateways, refused_before, strict=True):
        assert broker.relay.refused - before == len(GARBAGE)
        assert broker._thread.is_alive()
    assert not any("LOST" in m for got in members for m in got)  # nobody was disconnected
    assert {m.get("TEXT") for got in members for m in got} == {"before", "after"}


def read_stats(watcher: Raw) -> tuple[int, dict]:
    frame = watcher._exactly(int(watcher._exactly(protocol.HEADER_LENGTH)))
    return len(frame), json.loads(frame)


def fake_stats(gateway: str, names: int, name_length: int) -> bytes:
    clients = [f"{gateway}-{i}".ljust(name_length, "x") for i in range(names)]
    rooms = {f"{gateway}-room-{i}": [1, 1, 1] for i in range(broker_stats.STATS_MAX_ROOMS)}
    stats = {"clients": clients, "rooms": rooms, "frames_refused": 0, "undeliverable": 0}
    return json.dumps({"GATEWAY": gateway, "STATS": stats}).encode()


def test_a_foreign_stats_publisher_cannot_inflate_local_stats_or_stop_a_gateway(gateways, closing):
    a = gateways[0]
    watcher = Raw(a.port, "watcher", rooms=[protocol.STATS_ROOM])
    size, _ = read_stats(watcher)
    assert size < 4096
    peer = foreign_publisher(a.relay, closing)
    stats_subject = subjects.stats_subject(NETWORK)
    oversized = fake_stats("big", 20_000, 100)  # 2 MB: no gateway sends such
    assert len(oversized) > MAX_STATS_MESSAGE
    deep = b'{"GATEWAY": "deep", "STATS": ' + b"[" * 995 + b"]" * 995 + b"}"  # stopped the gateway's loop
    flood = [fake_stats(f"g{i:03}", broker_stats.STATS_MAX_CLIENTS, 100) for i in range(300)]  # each a gateway's most
    flood += [oversized, deep, fake_stats("long", 10, 10_000)]
    merged = 0
    for _ in range(30):  # the figures queued before the flood, then three seconds of the merged ones
        for payload in flood:  # a second's worth, as the fake gateways would publish them
            peer.bridge.publish(stats_subject, payload)
        size, message = read_stats(watcher)
        stats = message["STATS"]
        assert size < 64 * 1024  # a foreign publisher made it 2.4 MB a second
        assert len(stats["clients"]) <= broker_stats.STATS_MAX_CLIENTS
        assert len(stats["rooms"]) <= broker_stats.STATS_MAX_ROOMS
        if stats["gateways"] > 300:
            assert stats["all_clients"] >= 300 * broker_stats.STATS_MAX_CLIENTS  # the count says how many in all
            merged += 1
            if merged == 3:
                break
    assert merged == 3
    assert "big" not in a.relay._others and "long" not in a.relay._others
    assert a._thread.is_alive()
    still_routes(gateways[1].port, talker_port=a.port)


# --- beyond: generated frames, from a client and from NATS ---------------------------------------------


@pytest.fixture(scope="module")
def shared_gateways(cluster):
    brokers = start_gateways(cluster, "properties")
    peer = NatsRelay([cluster.url(0)], "properties").start(5)
    yield brokers, peer
    peer.close()
    stop_gateways(brokers)


@pytest.mark.timeout(900)
def test_after_any_frame_from_a_client_or_nats_two_fresh_clients_still_exchange_a_message(shared_gateways):
    brokers, peer = shared_gateways
    a, b, _ = brokers

    @settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(frame=FRAMES)
    def check(frame: bytes) -> None:
        hostile = Raw(a.port, "hostile", rooms=["prop", protocol.LOGGING_ROOM, protocol.STATS_ROOM])
        try:
            hostile.sock.sendall(frame)
        except OSError:
            pass  # closed by the broker: allowed
        finally:
            hostile.close()
        for room in ("prop", protocol.LOGGING_ROOM, protocol.CONTROL):
            peer.publish("room", room, frame)
        peer.publish("client", "listener", frame)
        peer.bridge.publish(subjects.stats_subject("properties"), frame[protocol.HEADER_LENGTH :])
        still_routes(b.port, talker_port=a.port)
        still_routes(a.port, talker_port=b.port)
        assert all(broker._thread.is_alive() for broker in brokers)

    check()
