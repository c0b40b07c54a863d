"""Frames as they come off a non-blocking socket, and edits that keep a frame's body as sent.

protocol.py says what one frame is (header, JSON body). This room deals with bytes that
arrive in any pieces: an :class:`Inbox` cuts each read into whole frames and keeps the
start of an unfinished one (and when it began, for the broker's frame time-out). Beside it:
the SENT_BY splice the broker applies to a frame without re-encoding its body, and the
one-frame check for bytes that arrive whole from elsewhere (NATS).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from cartpole_tui.env.wire import protocol

_HEADER = protocol.HEADER_LENGTH


class Inbox:
    """What one peer has sent of a frame that is still arriving, and since when."""

    __slots__ = ("awaiting", "buffer", "since")

    def __init__(self) -> None:
        self.buffer = bytearray()  # the start of a frame still arriving
        self.awaiting = 0  # bytes the frame in the buffer needs in all (0: its header is incomplete)
        self.since = 0.0  # when that frame began to arrive (time.monotonic)

    def __len__(self) -> int:
        return len(self.buffer)

    def extend(self, data: bytes) -> bytes | None:
        """A read that goes on with the frame in the buffer: every byte so far once that frame
        is whole, None while it is still arriving (a big frame is not copied until then)."""
        self.buffer += data
        if len(self.buffer) < self.awaiting:
            return None
        return bytes(self.buffer)

    def cut(self, data: bytes, max_frame: int, handle: Callable[[bytes], bool]) -> None:
        """Hand the whole frames of ``data`` to ``handle`` in order, until it returns False, and
        keep what follows the last one handed over. FrameError on a header that is not one
        (what came before it has been handed over)."""
        offset = 0
        self.awaiting = 0  # set again below when a frame's body is still to come
        try:
            while len(data) - offset >= _HEADER:
                length = protocol.parse_header(data[offset : offset + _HEADER], max_frame)
                end = offset + _HEADER + length
                if len(data) < end:
                    self.awaiting = end - offset
                    break
                frame = data[offset:end] if offset or end < len(data) else data
                offset = end
                if not handle(frame):
                    return
        finally:
            self._keep(data, offset)

    def _keep(self, data: bytes, offset: int) -> None:
        had = bool(self.buffer)
        self.buffer = bytearray(data[offset:]) if offset < len(data) else bytearray()
        if self.buffer and (offset or not had):  # a new frame began: its clock starts
            self.since = time.monotonic()

    def overdue(self, now: float, timeout: float) -> bool:
        """Whether an unfinished frame has taken longer than ``timeout`` seconds so far."""
        return bool(self.buffer) and now - self.since > timeout

    def clear(self) -> None:
        self.buffer = bytearray()


def with_sent_by(frame: bytes, name: str, max_frame: int) -> bytes | None:
    """``frame`` with SENT_BY added as its first key, the body otherwise byte for byte as sent
    (re-encoding could grow it past the cap); None when it would exceed the cap. The body must
    have passed :func:`protocol.decode_body` (a JSON object, maybe after whitespace)."""
    body = frame[_HEADER:]
    brace = body.index(b"{")
    field = b'{"SENT_BY":' + json.dumps(name).encode(protocol.FORMAT) + b","
    if len(body) + len(field) - 1 > max_frame:
        return None
    return protocol.frame_bytes(field + body[brace + 1 :])


def is_one_frame(data: bytes, max_frame: int) -> bool:
    """Whether ``data`` is exactly one frame: a valid header and as many bytes as it announces."""
    try:
        length = protocol.parse_header(data[:_HEADER], max_frame)
    except protocol.FrameError:
        return False
    return len(data) == _HEADER + length
