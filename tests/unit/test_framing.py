"""The broker's framing room: reads in any pieces cut into the frames that were sent."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cartpole_tui.env.wire import protocol
from cartpole_tui.env.wire.framing import Inbox, is_one_frame, with_sent_by

MAX = protocol.DEFAULT_MAX_FRAME


def frames_of(*bodies: bytes) -> list[bytes]:
    return [protocol.frame_bytes(body) for body in bodies]


def feed(inbox: Inbox, data: bytes, handled: list[bytes], max_frame: int = MAX) -> None:
    """What the broker does with one read: every whole frame is handled."""

    def handle(frame: bytes) -> bool:
        handled.append(frame)
        return True

    if inbox.buffer:
        whole = inbox.extend(data)
        if whole is None:
            return
        data = whole
    inbox.cut(data, max_frame, handle)


@settings(deadline=None)  # a busy machine is not a slow parser
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=8), st.data())
def test_any_split_of_a_stream_gives_back_its_frames(bodies, data):
    frames = frames_of(*bodies)
    stream = b"".join(frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    inbox, handled = Inbox(), []
    for start, end in zip([0, *cuts], [*cuts, len(stream)]):
        if end > start:
            feed(inbox, stream[start:end], handled)
    assert handled == frames
    assert len(inbox) == 0


def test_a_big_frame_waits_whole_and_its_clock_starts_with_its_first_bytes():
    frame = frames_of(b"x" * 1000)[0]
    inbox, handled = Inbox(), []
    feed(inbox, frame[:300], handled)
    started = inbox.since
    assert handled == [] and inbox.awaiting == len(frame) and started > 0
    feed(inbox, frame[300:600], handled)
    assert handled == [] and len(inbox) == 600 and inbox.since == started  # same frame, same clock
    assert inbox.overdue(started + 11, 10) and not inbox.overdue(started + 9, 10)
    feed(inbox, frame[600:], handled)
    assert handled == [frame] and len(inbox) == 0 and not inbox.overdue(started + 11, 10)


def test_a_bad_header_comes_after_the_frames_before_it():
    good = frames_of(b'{"TYPE":"A"}')[0]
    inbox, handled = Inbox(), []
    with pytest.raises(protocol.FrameError, match="bad header"):
        feed(inbox, good + b"not a header", handled)
    assert handled == [good]


def test_a_header_over_the_cap_is_refused():
    with pytest.raises(protocol.FrameError, match="over the 100-byte cap"):
        feed(Inbox(), frames_of(b"x" * 101)[0], [], max_frame=100)


def test_handing_over_stops_when_the_handler_says_so_and_the_rest_is_kept():
    first, second = frames_of(b"1", b"2")
    inbox, handled = Inbox(), []

    def handle_and_stop(frame: bytes) -> bool:
        handled.append(frame)
        return False  # e.g. the frame doomed its sender

    inbox.cut(first + second, MAX, handle_and_stop)
    assert handled == [first] and bytes(inbox.buffer) == second


def test_sent_by_goes_first_and_the_body_stays_as_sent():
    body = b' {"TYPE": "DATA/CUSTOM",  "X": 1.50}'
    signed = with_sent_by(protocol.frame_bytes(body), "model-1", MAX)
    assert signed is not None and is_one_frame(signed, MAX)
    assert signed[protocol.HEADER_LENGTH :] == b'{"SENT_BY":"model-1","TYPE": "DATA/CUSTOM",  "X": 1.50}'
    assert json.loads(signed[protocol.HEADER_LENGTH :])["SENT_BY"] == "model-1"


def test_sent_by_that_would_pass_the_cap_is_none():
    body = b'{"TYPE":"A"}'
    assert with_sent_by(protocol.frame_bytes(body), "n", len(body) + 13) is None
    assert with_sent_by(protocol.frame_bytes(body), "n", len(body) + 14) is not None


@pytest.mark.parametrize(
    ("data", "one"),
    [
        (protocol.frame_bytes(b"{}"), True),
        (protocol.frame_bytes(b"{}") + b"x", False),  # more than one frame's bytes
        (protocol.frame_bytes(b"{}")[:-1], False),  # less
        (b"abcdefghij{}", False),  # no header
        (b"", False),
    ],
)
def test_one_frame_exactly(data, one):
    assert is_one_frame(data, MAX) is one
