"""Hostile peers for the broker's and the gateways' tests: a bare socket that frames by hand
(``Raw``), hostile frames for the property tests (issue 17), and the check that follows every
attack: two fresh clients still exchange a message (``still_routes``).

``FRAMES`` draws one frame's bytes: well-formed messages with odd keys and values, JSON
nested up to far past ``protocol.MAX_DEPTH``, bodies that are not UTF-8, not JSON, not an
object or without a TYPE, headers that lie about the length, and plain noise.
"""

from __future__ import annotations

import json
import socket

from hypothesis import strategies as st
from swergio import MESSAGE_TYPE, Trigger

from cartpole_tui.env.wire import protocol
from cartpole_tui.env.wire.transport import Component
from tests.conftest import wait_for

HOST = "127.0.0.1"


class Raw:
    """A bare socket that frames by hand, to send what no swergio client would."""

    def __init__(self, port: int, name: str | None = None, rooms=(), rcvbuf: int | None = None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # before connect, so the window is small from the start
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(5)
        self.sock.connect((HOST, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.name = name
        if name is not None:
            self.send({"TYPE": protocol.REGISTER, "NAME": name, "TO_ROOM": protocol.COMMAND_ROOM})
        for room in rooms:
            self.send({"TYPE": protocol.JOINROOM, "ROOM": room, "TO_ROOM": protocol.COMMAND_ROOM})

    def send(self, message: dict) -> None:
        self.sock.sendall(protocol.encode_frame(message))

    def _exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError(f"connection closed after {len(data)} of {n} bytes")
            data += chunk
        return data

    def recv(self) -> dict:
        return json.loads(self._exactly(int(self._exactly(protocol.HEADER_LENGTH))))

    def closed_by_broker(self) -> bool:
        """True when the broker closed this connection (recv gives b"")."""
        return self.sock.recv(1) == b""

    def close(self) -> None:
        self.sock.close()


ROOMS = ("prop", protocol.LOGGING_ROOM, protocol.COMMAND_ROOM, protocol.STATS_ROOM, protocol.CONTROL)
TYPES = (
    protocol.CUSTOM,
    protocol.FORWARD,
    protocol.GRADIENT,
    protocol.REGISTER,
    protocol.JOINROOM,
    protocol.LEAVEROOM,
    protocol.COMMAND_CUSTOM,
    protocol.LOG_MESSAGES,
    "",
    "X" * 300,
)
TEXT = st.text(max_size=12) | st.sampled_from(["environment", "_broker", "\ud800", "a.b*>", "." * 1400, "%"])
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | TEXT
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=10,
)
KEYS = ("TO_ROOM", "TO", "ROOM", "NAME", "SENT_BY", "TOKEN", "ID", "CENSUS", "BATCH", "ROOT_ID", "MESSAGE")


def nested(depth: int, inner: str = "1") -> str:
    """``depth`` levels of alternating arrays and objects around ``inner``."""
    text = inner
    for level in range(depth):
        text = f"[{text}]" if level % 2 else f'{{"k":{text}}}'
    return text


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    """A JSON object with a TYPE and some of the keys the broker acts on, any values, and
    maybe one member nested deep; encoded as UTF-8 (lone surrogates escaped)."""
    logged = st.sampled_from([protocol.FORWARD, protocol.GRADIENT])  # copied to _logging: re-encoded once
    message: dict[str, object] = {"TYPE": draw(logged | st.sampled_from(TYPES))}
    for key in draw(st.lists(st.sampled_from(KEYS), max_size=4, unique=True)):
        message[key] = draw(JSON | st.sampled_from(ROOMS))
    body = json.dumps(message, separators=draw(st.sampled_from([(",", ":"), (", ", ": ")])))
    # around the bound, and around the ~1,000 levels where Python's json gives up (RecursionError)
    bound = protocol.MAX_DEPTH
    depth = draw(st.sampled_from([0, 0, bound - 2, bound - 1, bound, bound + 1, 5000]) | st.integers(970, 1000))
    if depth:
        body = body[:-1] + ',"DEEP":' + nested(depth) + "}"
    return body.encode()


BODIES = st.one_of(
    messages(),
    messages(),  # twice: most of the examples are messages
    st.binary(max_size=64),
    st.sampled_from(
        [
            b"not json",
            b'{"TYPE": "DATA/CUSTOM", "X": "\xff\xfe"}',
            b'[{"TYPE": "DATA/CUSTOM"}]',
            b'{"TO_ROOM": "prop"}',
            b'{"TYPE": 7}',
            b'{"TYPE": "DATA/CUSTOM", "TO_ROOM": "prop", "X": NaN}',
            '{"TYPE": "DATA/CUSTOM", "TO_ROOM": "prop", "X": "\u00e9\u2603"}'.encode("latin-1", "replace"),
            b'\xef\xbb\xbf{"TYPE": "DATA/CUSTOM"}',
            b"[" * 995 + b"]" * 995,
        ]
    ),
)


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    """One frame: a body with a true header, or a header that says more or less."""
    body = draw(BODIES)
    lie = draw(st.sampled_from([0, 0, 0, -1, 1]))
    if lie and body:
        return f"{len(body) + lie:<{protocol.HEADER_LENGTH}}".encode() + body
    return protocol.frame_bytes(body)


FRAMES = frames()


def still_routes(port: int, token: str | None = None, room: str = "check", talker_port: int | None = None) -> None:
    """Two fresh clients: one joins ``room`` on the broker at ``port``, the other sends to it
    (through the broker at ``talker_port``, another gateway, when given); the message arrives."""
    heard: list[dict] = []
    listener = Component("listener", HOST, port, token=token)
    listener.add_eventHandler(heard.append, None, trigger=Trigger(MESSAGE_TYPE.DATA.CUSTOM, room))
    listener.start()
    talker = Component("talker", HOST, talker_port or port, token=token)
    nonce = protocol.new_id()

    def arrived() -> bool:
        if any(m.get("NONCE") == nonce for m in heard):
            return True
        talker.send(protocol.custom(room, NONCE=nonce))  # again: the listener's JOINROOM may still be on its way
        return False

    try:
        wait_for(arrived, 10, "two fresh clients to exchange a message")
    finally:
        talker.close()
        listener.close()
