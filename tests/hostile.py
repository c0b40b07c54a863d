"""Hostile frames for the property tests of the broker and the gateways (issue 17).

``FRAMES`` draws one frame's bytes: well-formed messages with odd keys and values, JSON
nested up to far past ``protocol.MAX_DEPTH``, bodies that are not UTF-8, not JSON, not an
object or without a TYPE, headers that lie about the length, and plain noise.
"""

from __future__ import annotations

import json

from hypothesis import strategies as st

from cartpole_tui.env.wire import protocol

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
    message: dict[str, object] = {"TYPE": draw(st.sampled_from(TYPES))}
    for key in draw(st.lists(st.sampled_from(KEYS), max_size=4, unique=True)):
        message[key] = draw(JSON | st.sampled_from(ROOMS))
    body = json.dumps(message, separators=draw(st.sampled_from([(",", ":"), (", ", ": ")])))
    depth = draw(st.sampled_from([0, 0, protocol.MAX_DEPTH - 2, protocol.MAX_DEPTH, 200, 990, 5000]))
    if depth:
        body = body[:-1] + ',"DEEP":' + nested(depth) + "}"
    return body.encode()


BODIES = st.one_of(
    messages(),
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
