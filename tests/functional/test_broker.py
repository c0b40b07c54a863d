"""The broker over real loopback sockets: bad input, odd input, routing, shutdown, compatibility.

Every bad-input test also checks that a bystander — an unmodified swergio 0.0.2 client
listening in a thread — still gets a message sent after the trouble by another client.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
import time
import uuid

import pytest
import swergio
from swergio import MESSAGE_TYPE, Trigger

from cartpole_tui.env.wire import protocol
from cartpole_tui.env.wire.broker import Broker
from cartpole_tui.env.wire.transport import Component
from tests.hostile import Raw

from conftest import answer, wait_for

HOST = "127.0.0.1"
BYSTANDER_ROOM = "bystanders"


# --- helpers -------------------------------------------------------------------------


def custom(room: str | None = None, **fields) -> dict:
    return protocol.custom(room, NONCE=uuid.uuid4().hex, **fields)


def members(broker: Broker, room: str) -> int:
    counters = broker.stats()["rooms"].get(room)
    return counters.members if counters else 0


def wait_members(broker: Broker, room: str, n: int) -> None:
    wait_for(lambda: members(broker, room) == n, 5, f"{n} member(s) in {room!r}")


def wait_clients(broker: Broker, name: str, n: int) -> None:
    wait_for(lambda: broker.stats()["clients"].count(name) == n, 5, f"{n} client(s) named {name!r}")


class Bystander:
    """An unmodified ``swergio.Client`` in ``listen()``, recording what reaches its room."""

    def __init__(self, broker: Broker):
        self.broker = broker
        self.received: queue.Queue = queue.Queue()
        self.client = swergio.Client("bystander", HOST, broker.port)
        self.client.add_eventHandler(
            self.received.put, MESSAGE_TYPE.DATA.CUSTOM, trigger=Trigger(MESSAGE_TYPE.DATA.CUSTOM, BYSTANDER_ROOM)
        )
        self.thread = threading.Thread(target=self._listen, name="bystander", daemon=True)
        self.thread.start()
        wait_members(broker, BYSTANDER_ROOM, 1)

    def _listen(self) -> None:
        try:
            self.client.listen()
        except OSError:  # swergio's close() after EOF writes to the dead socket
            pass

    def expect(self, nonce: str) -> dict:
        """The message carrying ``nonce``, skipping earlier ones; fails after 5 s."""
        while True:
            try:
                message = self.received.get(timeout=5)
            except queue.Empty:
                raise AssertionError(f"the bystander never received message {nonce}") from None
            if message.get("NONCE") == nonce:
                return message

    def still_served(self, via: Raw | None = None) -> None:
        """A message sent now (by ``via`` or a fresh client) reaches the bystander."""
        sender = via or Raw(self.broker.port, "talker")
        message = custom(BYSTANDER_ROOM)
        sender.send(message)
        assert self.expect(message["NONCE"])["SENT_BY"] == sender.name
        assert self.thread.is_alive()
        if via is None:
            sender.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.client.client.shutdown(socket.SHUT_RDWR)
        self.thread.join(5)
        self.client.client.close()


@contextlib.contextmanager
def running_broker(**options):
    instance = Broker(HOST, 0, **options).start()
    try:
        yield instance
    finally:
        instance.stop()


@contextlib.contextmanager
def bystander_on(broker: Broker):
    watcher = Bystander(broker)
    try:
        yield watcher
    finally:
        watcher.close()


@pytest.fixture
def bystander(broker):
    with bystander_on(broker) as watcher:
        yield watcher


def thread_cpu_seconds(thread: threading.Thread) -> float:
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


# --- malformed frames: the sender is closed, nobody else notices ------------------------

MALFORMED = {
    "bad header": b"12ab      " + b"{}",
    "body not JSON": protocol.frame_bytes(b"{not json"),
    "body a JSON array": protocol.frame_bytes(b'[{"TYPE": "DATA/CUSTOM"}]'),
    "JSON without TYPE": protocol.frame_bytes(b'{"TO_ROOM": "bystanders"}'),
    "bad UTF-8": protocol.frame_bytes(b'{"TYPE": "DATA/CUSTOM", "X": "\xff\xfe"}'),
    "deeply nested JSON": protocol.frame_bytes(b"[" * 100_000),
}


@pytest.mark.parametrize("frame", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_frame_closes_only_its_sender(broker, bystander, frame):
    offender = Raw(broker.port, "offender")
    offender.send(custom(BYSTANDER_ROOM))  # a good frame first: it is delivered
    bystander.received.get(timeout=5)
    offender.sock.sendall(frame)
    assert offender.closed_by_broker()
    wait_for(lambda: broker.frames_refused == 1, 5, "the refused frame to be counted")
    wait_clients(broker, "offender", 0)
    bystander.still_served()


def test_frame_over_the_size_cap_closes_its_sender():
    with running_broker(max_frame=1000) as broker, bystander_on(broker) as bystander:
        offender = Raw(broker.port, "offender")
        offender.send(custom(BYSTANDER_ROOM, PAD="x" * 500))  # under the cap: delivered
        bystander.received.get(timeout=5)
        offender.send(custom(BYSTANDER_ROOM, PAD="x" * 2000))
        assert offender.closed_by_broker()
        assert broker.frames_refused == 1
        bystander.still_served()


def test_frame_cut_short_by_a_close(broker, bystander):
    offender = Raw(broker.port, "offender")
    offender.sock.sendall(protocol.encode_frame(custom(BYSTANDER_ROOM))[:25])
    offender.sock.shutdown(socket.SHUT_WR)
    assert offender.closed_by_broker()
    wait_clients(broker, "offender", 0)
    bystander.still_served()


# --- legal but odd: nobody is dropped ---------------------------------------------------


def test_message_to_a_room_nobody_joined(broker, bystander):
    sender = Raw(broker.port, "sender")
    wait_clients(broker, "sender", 1)
    before = broker.undeliverable
    sender.send(custom("empty-room"))
    wait_for(lambda: broker.undeliverable == before + 1, 5, "the message to count as undeliverable")
    bystander.still_served(via=sender)


def test_leaving_a_room_one_is_not_in(broker, bystander):
    sender = Raw(broker.port, "sender")
    sender.send({"TYPE": protocol.LEAVEROOM, "ROOM": "never-joined", "TO_ROOM": protocol.COMMAND_ROOM})
    bystander.still_served(via=sender)
    assert "sender" in broker.stats()["clients"]


def test_unknown_type_is_routed_like_any_other(broker, bystander):
    receiver = Raw(broker.port, "receiver", rooms=["odd"])
    wait_members(broker, "odd", 1)
    sender = Raw(broker.port, "sender")
    sender.send({"TYPE": "NOT/A_TYPE", "TO_ROOM": "odd", "X": 1})
    assert receiver.recv()["TYPE"] == "NOT/A_TYPE"
    sender.send({"TYPE": "NOT/A_TYPE", "TO_ROOM": BYSTANDER_ROOM})  # swergio ignores it
    bystander.still_served(via=sender)


def test_duplicate_name_a_direct_message_reaches_both(broker, bystander):
    twins = [Raw(broker.port, "twin"), Raw(broker.port, "twin")]
    wait_clients(broker, "twin", 2)
    sender = Raw(broker.port, "sender")
    message = custom(TO="twin")
    sender.send(message)
    for twin in twins:
        assert twin.recv()["NONCE"] == message["NONCE"]
    bystander.still_served(via=sender)


def test_direct_message_while_an_unregistered_client_is_connected(broker, bystander):
    anonymous = Raw(broker.port)
    target = Raw(broker.port, "target")
    wait_clients(broker, "target", 1)
    assert "(unregistered)" in broker.stats()["clients"]
    sender = Raw(broker.port, "sender")
    message = custom(TO="target")
    sender.send(message)
    assert target.recv()["NONCE"] == message["NONCE"]
    bystander.still_served(via=sender)
    anonymous.send(custom(BYSTANDER_ROOM))  # it may still talk without a name
    assert bystander.received.get(timeout=5)["SENT_BY"] == "{}:{}".format(*anonymous.sock.getsockname())


def test_client_disconnecting_before_registering(broker, bystander):
    early = Raw(broker.port)
    wait_for(lambda: "(unregistered)" in broker.stats()["clients"], 5, "the connection to be accepted")
    early.close()
    wait_for(lambda: "(unregistered)" not in broker.stats()["clients"], 5, "the connection to be dropped")
    bystander.still_served()


# --- framing over TCP ----------------------------------------------------------------------


def test_header_and_body_written_byte_by_byte_are_one_frame(broker, bystander):
    sender = Raw(broker.port, "sender")
    wait_clients(broker, "sender", 1)
    message = custom(BYSTANDER_ROOM)
    for byte in protocol.encode_frame(message):
        sender.sock.sendall(bytes([byte]))
    assert bystander.expect(message["NONCE"])["SENT_BY"] == "sender"
    bystander.still_served(via=sender)


def test_several_frames_in_one_write_are_each_delivered(broker, bystander):
    sender = Raw(broker.port, "sender")
    messages = [custom(BYSTANDER_ROOM, I=i) for i in range(5)]
    sender.sock.sendall(b"".join(protocol.encode_frame(m) for m in messages))
    assert [bystander.received.get(timeout=5)["I"] for _ in messages] == list(range(5))


def test_slow_reader_is_dropped_while_others_keep_receiving(caplog):
    caplog.set_level(logging.INFO, logger="cartpole_tui.env.wire.broker")
    pumped, pad = 600, "x" * 16_000
    with running_broker(max_outbox=256 * 1024) as broker, bystander_on(broker) as bystander:
        got = []
        fast = Component("fast", HOST, broker.port)
        fast.add_eventHandler(
            lambda message: got.append(message["I"]),
            MESSAGE_TYPE.DATA.CUSTOM,
            trigger=Trigger(MESSAGE_TYPE.DATA.CUSTOM, "flood"),
        )
        fast.start()
        slow = Raw(broker.port, "slow", rooms=["flood"], rcvbuf=4096)  # never reads
        wait_members(broker, "flood", 2)
        sender = Raw(broker.port, "sender")
        for i in range(pumped):
            sender.send(custom("flood", I=i, PAD=pad))
        wait_for(lambda: len(got) == pumped, 20, "the fast reader to get every message")
        assert got == list(range(pumped))
        wait_clients(broker, "slow", 0)
        assert any("slow@" in r.getMessage() and "stopped reading" in r.getMessage() for r in caplog.records)
        bystander.still_served(via=sender)
        fast.close()
        slow.close()


# --- routing -----------------------------------------------------------------------------


def test_sent_by_is_added_and_a_claimed_one_replaced(broker):
    # issue 17 item 12: the broker sets SENT_BY, always (it used to keep what a client put there)
    receiver = Raw(broker.port, "receiver", rooms=["r"])
    wait_members(broker, "r", 1)
    sender = Raw(broker.port, "alice")
    sender.send(custom("r"))
    sender.send(custom("r", SENT_BY="someone-else"))
    sender.send(custom("r", SENT_BY="alice"))
    assert [receiver.recv()["SENT_BY"] for _ in range(3)] == ["alice"] * 3


def test_forward_messages_are_copied_to_logging(broker):
    logger = Raw(broker.port, "logger", rooms=[protocol.LOGGING_ROOM])
    receiver = Raw(broker.port, "receiver", rooms=["r"])
    wait_members(broker, protocol.LOGGING_ROOM, 1)
    wait_members(broker, "r", 1)
    sender = Raw(broker.port, "sender")
    sender.send(custom("r"))  # DATA/CUSTOM: not logged
    forward = {"ID": protocol.new_id(), "TYPE": protocol.FORWARD, "TO_ROOM": "r", "X": [1.5, 2]}
    sender.send(forward)
    assert receiver.recv()["TYPE"] == protocol.CUSTOM
    assert receiver.recv()["TYPE"] == protocol.FORWARD
    log = logger.recv()
    assert log["TYPE"] == protocol.LOG_MESSAGES and log["TO_ROOM"] == protocol.LOGGING_ROOM
    assert log["MESSAGE"] == {**forward, "SENT_BY": "sender"}


def test_room_message_does_not_return_to_its_sender(broker):
    sender = Raw(broker.port, "sender", rooms=["r"])
    other = Raw(broker.port, "other", rooms=["r"])
    wait_members(broker, "r", 2)
    to_room = custom("r")
    sender.send(to_room)
    assert other.recv()["NONCE"] == to_room["NONCE"]
    marker = custom(TO="sender")  # same connection, so it arrives after anything routed before it
    other.send(marker)
    assert sender.recv()["NONCE"] == marker["NONCE"]


def test_stats_count_messages_bytes_and_clients(broker):
    receiver = Raw(broker.port, "receiver", rooms=["r"])
    wait_members(broker, "r", 1)
    sender = Raw(broker.port, "sender")
    # SENT_BY is set so the broker forwards the frames byte for byte.
    frames = [protocol.encode_frame(custom("r", SENT_BY="sender", I=i, PAD="y" * i)) for i in range(3)]
    for frame in frames:
        sender.sock.sendall(frame)
    for _ in frames:
        receiver.recv()
    stats = broker.stats()
    assert stats["rooms"]["r"].messages == 3
    assert stats["rooms"]["r"].bytes == sum(map(len, frames))
    assert stats["rooms"]["r"].members == 1
    assert sorted(stats["clients"]) == ["receiver", "sender"]
    assert stats["address"] == f"{HOST}:{broker.port}"


# --- shutdown and idling --------------------------------------------------------------------


def test_stop_closes_every_connection_promptly():
    reasons = []
    broker = Broker(HOST, 0).start()
    raw = Raw(broker.port, "raw")
    component = Component("component", HOST, broker.port, on_disconnect=reasons.append).start()
    wait_clients(broker, "component", 1)
    started = time.monotonic()
    broker.stop()
    # Well under the loop's 1 s select timeout: stop() wakes the loop rather than waiting it out.
    assert time.monotonic() - started < 0.9
    assert not broker._thread.is_alive()
    assert raw.closed_by_broker()
    wait_for(lambda: reasons, 5, "the component to hear of the disconnect")
    assert reasons == ["broker closed the connection"]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((HOST, broker.port), timeout=1)
    component.close()


def test_broker_idles_while_a_frame_is_half_sent(broker, bystander):
    holder = Raw(broker.port, "holder")
    frame = protocol.encode_frame(custom(BYSTANDER_ROOM))
    holder.sock.sendall(frame[:20])
    # The half frame was in the broker's socket before the talker below connected, so once
    # the bystander hears the talker the broker has read it.
    bystander.still_served()
    before = thread_cpu_seconds(broker._thread)
    window = 0.5
    threading.Event().wait(window)  # a measuring window, not a synchronisation
    used = thread_cpu_seconds(broker._thread) - before
    assert used < 0.2 * window, f"broker thread used {used:.3f}s of CPU in {window}s holding a half frame"
    holder.sock.sendall(frame[20:])
    assert bystander.received.get(timeout=5)["SENT_BY"] == "holder"


# --- compatibility with swergio 0.0.2 -----------------------------------------------------


ROUND_TRIPS = 10


class SwergioPair:
    """The environment/model exchange of the CartPole network, on any two swergio-style clients."""

    def __init__(self, make_client, round_trips: int):
        self.round_trips = round_trips
        self.steps = 0
        self.done = threading.Event()
        self.env = make_client("environment")
        answer(self.env, self.on_action, "action", "observation")
        self.model = make_client("model")
        answer(self.model, self.on_observation, "observation", "action")

    def on_action(self, message):
        self.steps += 1
        if self.steps == self.round_trips:
            self.done.set()
            return None
        return {"OBSERVATION": [0.0, 0.1, 0.2, self.steps], "REWARD": 1.0, "DONE": False}

    @staticmethod
    def on_observation(message):
        return {"ACTION": [int(message["OBSERVATION"][3]) % 2]}

    def run(self, listen) -> None:
        for client in (self.env, self.model):
            threading.Thread(target=listen, args=(client,), daemon=True).start()
        self.env.send(
            {
                "ID": protocol.new_id(),
                "TYPE": protocol.CUSTOM,
                "TO_ROOM": "observation",
                "OBSERVATION": [0.0, 0.0, 0.0, 0.0],
            }
        )
        assert self.done.wait(30), f"only {self.steps} of {self.round_trips} round trips"


def swergio_listen(client: swergio.Client) -> None:
    with contextlib.suppress(OSError):
        client.listen()


def test_swergio_clients_play_through_our_broker(broker):
    pair = SwergioPair(lambda name: swergio.Client(name, HOST, broker.port), ROUND_TRIPS)
    wait_members(broker, "observation", 2)
    wait_members(broker, "action", 2)
    pair.run(swergio_listen)
    assert pair.steps == ROUND_TRIPS
    for client in (pair.env, pair.model):
        client.close()
    wait_for(lambda: not broker.stats()["clients"], 5, "both clients to leave")


def test_our_components_play_through_swergio_server(capsys):
    server = swergio.Server(HOST, 0, protocol.FORMAT, protocol.HEADER_LENGTH)
    port = server.server.getsockname()[1]
    server.server.listen()  # start() listens again; doing it first lets clients connect at once
    threading.Thread(target=server.start, name="swergio-server", daemon=True).start()
    pair = SwergioPair(lambda name: Component(name, HOST, port), ROUND_TRIPS)
    # swergio's server fails on a message to a room it has not seen joined: wait for the joins.
    wait_for(
        lambda: len(server.rooms.get("observation", ())) == 2 and len(server.rooms.get("action", ())) == 2,
        5,
        "both components to join their rooms",
    )
    pair.run(Component.listen)
    assert pair.steps == ROUND_TRIPS
    for component in (pair.env, pair.model):
        component.close()
    wait_for(lambda: not server.clients, 5, "the server to drop both clients")
    server.server.close()
