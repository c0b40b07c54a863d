"""Component's transport over real loopback sockets: writes, concurrency, errors, shutdown, dispatch.

A raw server socket stands in for the broker where the test needs to see (or break) the
bytes; the real broker is used where a second client is needed.
"""

from __future__ import annotations

import queue
import socket
import threading

import pytest
from swergio import MESSAGE_TYPE, Trigger
from test_broker import wait_members

from cartpole_tui.env.wire import protocol
from cartpole_tui.env.wire.transport import Component, ConnectionFailed, ConnectionLost, parse_address

HOST = "127.0.0.1"


class RawServer:
    """A listening socket that accepts one Component and reads its frames exactly."""

    def __init__(self):
        self.listener = socket.create_server((HOST, 0))
        self.port = self.listener.getsockname()[1]
        self.conn: socket.socket | None = None

    def accept(self) -> socket.socket:
        self.listener.settimeout(5)
        self.conn, _ = self.listener.accept()
        self.conn.settimeout(5)
        self.reader = self.conn.makefile("rb")
        return self.conn

    def read_frame(self) -> dict | None:
        """The next frame's message, or None at EOF; fails on anything that is not a whole frame."""
        header = self.reader.read(protocol.HEADER_LENGTH)
        if not header:
            return None
        body = self.reader.read(protocol.parse_header(header))
        return protocol.decode_body(body)

    def drop(self) -> None:
        """Close the accepted connection (the reader holds the socket open until it closes too)."""
        if self.conn is not None:
            self.reader.close()
            self.conn.close()

    def close(self) -> None:
        self.drop()
        self.listener.close()


@pytest.fixture
def server():
    instance = RawServer()
    yield instance
    instance.close()


def connected(server: RawServer, name: str = "component", **kwargs) -> Component:
    """A Component attached to ``server``, its registration frames already read."""
    component = Component(name, HOST, server.port, **kwargs)
    server.accept()
    assert server.read_frame()["TYPE"] == protocol.REGISTER
    assert server.read_frame()["TYPE"] == protocol.JOINROOM
    return component


class SendSpy:
    """The component's real socket, with every ``sendall`` payload recorded."""

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self.writes: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self._sock.sendall(data)

    def __getattr__(self, name):
        return getattr(self._sock, name)


def test_each_frame_is_one_write_on_a_nodelay_socket(server):
    component = connected(server)
    assert component.client.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    spy = component.client = SendSpy(component.client)
    messages = [protocol.custom("r", I=i, PAD="z" * (10**i)) for i in range(4)]
    for message in messages:
        component.send(message)
    assert spy.writes == [protocol.encode_frame(m) for m in messages]
    assert [server.read_frame() for _ in messages] == messages
    component.close()


def test_concurrent_senders_never_interleave_frames(server):
    component = connected(server)
    per_thread = 200
    received = []
    reader = threading.Thread(target=lambda: received.extend(iter(server.read_frame, None)))
    reader.start()

    def pump(tag: str) -> None:
        for i in range(per_thread):  # big frames, so sendall takes several writes each
            component.send(protocol.custom("r", TAG=tag, I=i, PAD=tag * (20_000 + 37 * i)))

    senders = [threading.Thread(target=pump, args=(tag,)) for tag in "ab"]
    for thread in senders:
        thread.start()
    for thread in senders:
        thread.join(30)
    component.close()
    reader.join(30)
    data = [m for m in received if m["TYPE"] == protocol.CUSTOM]
    for tag in "ab":
        assert [m["I"] for m in data if m["TAG"] == tag] == list(range(per_thread))
    assert received[-1]["TYPE"] == protocol.DISCONNECT


def test_broker_closing_ends_listen_with_a_reason(server):
    reasons = queue.Queue()
    component = connected(server, on_disconnect=reasons.put).start()
    server.drop()
    assert reasons.get(timeout=5) == "broker closed the connection"
    component._thread.join(5)
    assert not component._thread.is_alive()
    # closed before a word: what a broker refusing our token does too (not "Broken pipe")
    with pytest.raises(ConnectionLost, match="closed the connection at once"):
        component.send(protocol.custom("r"))


def test_send_on_a_broken_connection_raises(server):
    component = connected(server)  # not listening: only send can notice
    server.drop()
    with pytest.raises(ConnectionLost):
        for _ in range(100):  # the first writes may still land in the kernel before the reset
            component.send(protocol.custom("r", PAD="p" * 1000))
    component.close()


BAD_FROM_SERVER = {
    "bad header": (b"not-a-len!{}", "bad header"),
    "not JSON": (protocol.frame_bytes(b"{oops"), "not JSON"),
    "no TYPE": (protocol.frame_bytes(b'{"X": 1}'), "no TYPE"),
    "cut short": (b"100       {}", "connection closed inside a frame"),
    "nested too deep": (protocol.frame_bytes(b"[" * 100_000), "nested too deeply"),
}


@pytest.mark.parametrize("frame, reason", BAD_FROM_SERVER.values(), ids=BAD_FROM_SERVER.keys())
def test_malformed_frame_from_the_broker_ends_listen_with_a_reason(server, frame, reason):
    reasons = queue.Queue()
    component = connected(server, on_disconnect=reasons.put).start()
    server.conn.sendall(frame)
    server.conn.shutdown(socket.SHUT_WR)
    assert reason in reasons.get(timeout=5)
    component._thread.join(5)
    assert not component._thread.is_alive()


def test_close_says_disconnect_waits_for_the_broker_to_let_it_go_and_joins_the_listener(server):
    """swergio.Server relays frames to a client until it has read its DISCONNECT; a socket closed
    before then made the relay raise in the thread of the frame's sender, whose connection the
    server then closed (the app's control client, its probe closed just before it joined)."""
    reasons = []
    component = connected(server, on_disconnect=reasons.append).start()
    returned = threading.Event()
    closer = threading.Thread(target=lambda: (component.close(), returned.set()), daemon=True)
    closer.start()
    assert server.read_frame()["TYPE"] == protocol.DISCONNECT
    assert server.read_frame() is None  # its write side shut: nothing more comes
    let_go_early = returned.wait(0.3)
    server.conn.sendall(protocol.encode_frame({"ID": "relayed", "TYPE": protocol.CUSTOM, "TO_ROOM": "x"}))
    server.drop()  # the broker lets it go
    closer.join(5)
    assert not let_go_early and returned.is_set()
    assert not component._thread.is_alive()
    assert component.closed
    assert reasons == []  # an intended close is not a lost connection
    component.close()  # twice is harmless


def test_unreachable_broker_raises_a_readable_connection_failed():
    with socket.create_server((HOST, 0)) as probe:
        port = probe.getsockname()[1]
    with pytest.raises(ConnectionFailed, match=rf"cannot reach broker at 127\.0\.0\.1:{port}: .*refused"):
        Component("lonely", HOST, port, connect_timeout=2)


def test_a_raising_handler_does_not_kill_the_component(broker, caplog):
    handled = queue.Queue()

    def handler(message):
        if message.get("BOOM"):
            raise RuntimeError("handler bug")
        handled.put(message["I"])

    flaky = Component("flaky", HOST, broker.port)
    flaky.add_eventHandler(handler, MESSAGE_TYPE.DATA.CUSTOM, trigger=Trigger(MESSAGE_TYPE.DATA.CUSTOM, "r"))
    flaky.start()
    wait_members(broker, "r", 1)
    sender = Component("sender", HOST, broker.port)
    sender.send(protocol.custom("r", BOOM=True))
    sender.send(protocol.custom("r", I=2))
    assert handled.get(timeout=5) == 2
    assert flaky._thread.is_alive()
    assert any("handler handler failed" in r.getMessage() for r in caplog.records)
    sender.close()
    flaky.close()


def test_a_handler_that_loses_the_connection_ends_listen_quietly(broker, caplog):
    gone = queue.Queue()
    lost = Component("lost", HOST, broker.port, on_disconnect=gone.put)

    def handler(message):
        raise ConnectionLost("send to broker failed: Broken pipe")  # as a reply on a dead socket does

    lost.add_eventHandler(handler, MESSAGE_TYPE.DATA.CUSTOM, trigger=Trigger(MESSAGE_TYPE.DATA.CUSTOM, "r"))
    lost.start()
    wait_members(broker, "r", 1)
    sender = Component("sender", HOST, broker.port)
    sender.send(protocol.custom("r", I=1))
    assert "Broken pipe" in gone.get(timeout=5)  # reported as the end of the connection
    assert not any("failed" in r.getMessage() and r.exc_info for r in caplog.records)  # no traceback
    sender.close()
    lost.close()


def test_direct_message_is_dispatched_without_crashing(broker):
    direct = {"ID": protocol.new_id(), "TYPE": protocol.CUSTOM, "TO": "target", "X": 1}
    trigger = Trigger(MESSAGE_TYPE.DATA.CUSTOM, "r")
    with pytest.raises(KeyError):  # what swergio's own dispatch would do with it
        trigger.is_triggered(direct)
    handled = queue.Queue()
    target = Component("target", HOST, broker.port)
    target.add_eventHandler(handled.put, MESSAGE_TYPE.DATA.CUSTOM, trigger=trigger)
    target.start()
    wait_members(broker, "r", 1)
    sender = Component("sender", HOST, broker.port)
    sender.send(direct)
    assert handled.get(timeout=5)["X"] == 1
    sender.send(protocol.custom("r", X=2))  # and it goes on handling room messages
    assert handled.get(timeout=5)["X"] == 2
    sender.close()
    target.close()


@pytest.mark.parametrize(
    "text, expected",
    [("127.0.0.1:8080", ("127.0.0.1", 8080)), ("localhost:1", ("localhost", 1)), ("[::1]:9000", ("::1", 9000))],
)
def test_parse_address_accepts_host_port(text, expected):
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["127.0.0.1", ":8080", "host:", "host:0", "host:65536", "host:80a"])
def test_parse_address_refuses_with_a_readable_message(text):
    with pytest.raises(ValueError, match="expected HOST:PORT"):
        parse_address(text)
