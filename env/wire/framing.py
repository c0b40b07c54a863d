"""Frames as they come off a non-blocking socket, and edits that keep a frame's body as sent.

protocol.py says what one frame is (header, JSON body). This room deals with bytes that
arrive in any pieces: an :class:`Inbox` cuts each read into whole frames and keeps the
start of an unfinished one (and when it began, for the broker's frame time-out). Beside it:
the broker's edits of a frame — its SENT_BY set (spliced in without re-encoding the body
where it can), its TOKEN taken out, the ``_logging`` copy wrapped around the body as sent —
and the check of bytes that arrive whole from elsewhere (NATS).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from cartpole_tui.env.wire import auth, protocol

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


def signed(frame: bytes, message: protocol.Message, sender: str, max_frame: int) -> bytes | None:
    """The frame to pass on for ``message`` (decoded from ``frame``): its SENT_BY is always
    ``sender`` (what a client says there is never kept) and a TOKEN never goes on. ``message``
    is changed the same way. None when the result would exceed ``max_frame``.

    The body stays byte for byte as sent when SENT_BY only has to be added (the common case:
    swergio adds none to what a client sends first) or already says ``sender`` (ours and
    swergio's replies); otherwise the message, which passed the broker's depth bound, is
    re-encoded."""
    had = "SENT_BY" in message
    claimed = message.get("SENT_BY")
    message["SENT_BY"] = sender
    if auth.TOKEN_KEY in message:
        message.pop(auth.TOKEN_KEY)
    elif not had:
        return with_sent_by(frame, sender, max_frame)
    elif claimed == sender and _says_sent_by_once(frame):
        return frame
    body = protocol.encode_body(message)
    return protocol.frame_bytes(body) if len(body) <= max_frame else None


def _says_sent_by_once(frame: bytes) -> bool:
    """Whether a frame spells SENT_BY once and plainly (no escapes anywhere): then it has one
    SENT_BY key and every JSON parser reads the one the broker checked (of two, some take
    the first, Python's json the last)."""
    return frame.count(b'"SENT_BY"') == 1 and b"\\u" not in frame


def with_sent_by(frame: bytes, name: str, max_frame: int) -> bytes | None:
    """``frame`` with SENT_BY added as its first key, the body otherwise byte for byte as sent
    (re-encoding could grow it past the cap); None when it would exceed the cap. The body must
    have passed :func:`protocol.decode_body` (a JSON object, maybe after whitespace) and hold
    no SENT_BY."""
    body = frame[_HEADER:]
    brace = body.index(b"{")
    field = b'{"SENT_BY":' + json.dumps(name).encode(protocol.FORMAT) + b","
    if len(body) + len(field) - 1 > max_frame:
        return None
    return protocol.frame_bytes(field + body[brace + 1 :])


def for_logging(frame: bytes, max_frame: int) -> bytes | None:
    """swergio's ``_logging`` copy of a frame, ``{"TYPE": "LOG/MESSAGES", "MESSAGE": ...}``,
    built around the body as sent (never re-encoded); None when it would exceed ``max_frame``."""
    head = {"ID": protocol.new_id(), "TO_ROOM": protocol.LOGGING_ROOM, "TYPE": protocol.LOG_MESSAGES}
    opening = protocol.encode_body(head)[:-1] + b',"MESSAGE":'
    body = frame[_HEADER:]
    if len(opening) + len(body) + 1 > max_frame:
        return None
    return protocol.frame_bytes(opening + body + b"}")


def is_one_frame(data: bytes, max_frame: int) -> bool:
    """Whether ``data`` is exactly one frame: a valid header and as many bytes as it announces."""
    try:
        length = protocol.parse_header(data[:_HEADER], max_frame)
    except protocol.FrameError:
        return False
    return len(data) == _HEADER + length


def is_well_formed(data: bytes, max_frame: int) -> bool:
    """Whether ``data`` is exactly one frame whose body a component would accept (UTF-8 JSON,
    an object with a TYPE, within the receivers' depth bound). For frames from NATS, which any
    NATS client could have published."""
    if not is_one_frame(data, max_frame):
        return False
    try:
        protocol.decode_body(data[_HEADER:])
    except protocol.FrameError:
        return False
    return True
