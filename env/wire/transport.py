"""A swergio client with a sound transport.

:class:`Component` keeps swergio 0.0.2's model — a named client, rooms, event
handlers with triggers, replies built by ``EventHandler`` — and replaces only the
transport: one write per frame with TCP_NODELAY (the shipped client's two writes
meet Nagle's algorithm and the peer's delayed ACK: ~11 steps/s), a lock so threads
can share a client, exact reads, clear errors instead of spins or silence, and a
clean shutdown.
"""

from __future__ import annotations

import inspect
import io
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any, cast

import swergio

from cartpole_tui.env import defaults
from cartpole_tui.env.wire import auth, protocol

log = logging.getLogger(__name__)


class ConnectionFailed(ConnectionError):
    """The broker could not be reached."""


class ConnectionLost(ConnectionError):
    """The broker closed the connection or it broke."""


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` → (host, port); ValueError with a readable message otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT (e.g. {defaults.LOOPBACK}:{defaults.PORT}), got {text!r}")
    return host.strip("[]"), int(port)


Handler = Callable[..., Any]  # a swergio handler: the message and the client's kwargs it names


def _accepted_args(function: Handler) -> frozenset[str]:
    return frozenset(inspect.getfullargspec(function).args)


class Component(swergio.Client):  # type: ignore[misc]  # swergio ships no types: Client is Any
    """A swergio client for one component of the network.

    Use it as a ``swergio.Client``: ``add_eventHandler`` and ``Trigger`` work as
    documented there. ``start()`` listens in a daemon thread; ``listen()`` blocks.
    ``on_disconnect`` is called with the reason when the connection ends without
    ``close()`` having been called. A subclass with ``batch = True`` says in its REGISTER
    that it understands batch messages (:mod:`cartpole_tui.env.wire.batch`).
    """

    batch = False
    _reader: io.BufferedReader  # made by connect(), which swergio's __init__ calls

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        *,
        connect_timeout: float = defaults.CONNECT_TIMEOUT,
        max_frame: int = protocol.DEFAULT_MAX_FRAME,
        on_disconnect: Callable[[str], None] | None = None,
        token: str | None = None,
        **kwargs: Any,
    ) -> None:
        self._token = token if token is not None else auth.client_token()
        self._send_lock = threading.Lock()
        self._closing = threading.Event()
        self._connect_timeout = connect_timeout
        self._max_frame = max_frame
        self._args_cache: dict[Handler, frozenset[str]] = {}
        self._thread: threading.Thread | None = None
        self.on_disconnect = on_disconnect
        super().__init__(name, host, port, protocol.FORMAT, protocol.HEADER_LENGTH, **kwargs)

    # --- transport -------------------------------------------------------------

    def connect(self, server: str, port: int) -> socket.socket:
        try:
            sock = socket.create_connection((server, port), timeout=self._connect_timeout)
        except OSError as error:
            reason = error.strerror or str(error) or type(error).__name__
            raise ConnectionFailed(f"cannot reach broker at {server}:{port}: {reason}") from None
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # a BufferedReader ("rb", buffered); typeshed says IOBase for a buffering that is not a literal
        self._reader = cast(io.BufferedReader, sock.makefile("rb", buffering=1 << 16))
        return sock

    def register(self) -> None:
        # swergio's REGISTER, with additive keys: the broker's token when there is one, and
        # BATCH when this client understands batch messages (env/wire/batch.py).
        message = {
            "ID": protocol.new_id(),
            "TYPE": protocol.REGISTER,
            "NAME": self.name,
            "TO_ROOM": protocol.COMMAND_ROOM,
        }
        if self._token:
            message[auth.TOKEN_KEY] = self._token
        if self.batch:
            message["BATCH"] = True
        self.send(message)
        for room in swergio.client.reserved_rooms:
            self.join_room(room)

    def send(self, message: protocol.Message) -> None:
        self.send_frames(protocol.encode_frame(message))

    def send_many(self, messages: list[protocol.Message]) -> None:
        """Several messages in one write."""
        self.send_frames(b"".join(protocol.encode_frame(m) for m in messages))

    def send_frames(self, data: bytes) -> None:
        """Ready-made frames in one write; ConnectionLost when the broker cannot be written to."""
        with self._send_lock:
            try:
                self.client.sendall(data)
            except OSError as error:
                raise ConnectionLost(
                    f"send to broker failed: {error.strerror or error}{self._refusal_hint()}"
                ) from None

    def _refusal_hint(self) -> str:
        # A broker with a token closes a client that does not present it, without a word.
        if self._token:
            return " (if the broker has a token: is this --token-file its token?)"
        return " (if the broker has a token: give it with --token-file)"

    def _read_exactly(self, n: int) -> bytes:
        try:
            data = self._reader.read(n)
        except (OSError, ValueError) as error:  # ValueError: the reader was closed
            raise ConnectionLost(f"connection broken: {error}") from None
        if len(data) < n:
            raise ConnectionLost(
                "broker closed the connection"
                if not data
                else f"connection closed inside a frame ({len(data)} of {n} bytes)"
            )
        return data

    def receive(self) -> protocol.Message:
        """The next message; ConnectionLost or FrameError instead of swergio's ``False``."""
        length = protocol.parse_header(self._read_exactly(protocol.HEADER_LENGTH), self._max_frame)
        return protocol.decode_body(self._read_exactly(length))

    # --- dispatch ----------------------------------------------------------------

    def filter_dict(self, dictionary: dict[str, Any], function: Handler) -> dict[str, Any]:
        # swergio inspects the handler's signature on every message; do it once.
        args = self._args_cache.get(function)
        if args is None:
            args = self._args_cache[function] = _accepted_args(function)
        return {k: v for k, v in dictionary.items() if k in args}

    @staticmethod
    def _is_triggered(handler: swergio.EventHandler, message: protocol.Message) -> bool:
        # swergio's Trigger raises KeyError on a direct message (no TO_ROOM) when the
        # trigger has rooms; this is the documented rule without that crash.
        trigger = handler.trigger
        if trigger is None or not any(t.id == message.get("TYPE") for t in trigger.types):
            return False
        if "TO_ROOM" not in message:
            return bool(trigger.directmessage)
        return trigger.rooms is not None and message["TO_ROOM"] in trigger.rooms

    @staticmethod
    def _replies(handler: swergio.EventHandler, response: protocol.Message | None) -> list[protocol.Message]:
        # swergio's EventHandler.handle, with a shallow copy per response room where it
        # deep-copies: the copies differ only in TO_ROOM, and deepcopy costs ~10 µs a reply.
        if response is None:
            return []
        response.setdefault("ID", protocol.new_id())
        if handler.responseType is not None:
            response["TYPE"] = handler.responseType.id
        if handler.responseComponent is not None:
            response["TO"] = handler.responseComponent
        return [{**response, "TO_ROOM": room} for room in handler.responseRooms or ()]

    def dispatch(self, message: protocol.Message) -> None:
        """Run every handler the message triggers and send their replies."""
        if message.get("SENT_BY") == protocol.BROKER and protocol.REFUSED in message:
            log.warning(
                "%s: the broker refused a message: %s", self.name, protocol.clean_text(message[protocol.REFUSED])
            )
        for handler in list(self.eventHandlers):
            if not self._is_triggered(handler, message):
                continue
            try:
                response = handler.handleFunction(message, **self.filter_dict(self.kwargs, handler.handleFunction))
            except ConnectionLost:
                raise  # not a handler's bug: the connection is gone, and listen() ends on it
            except Exception:  # a handler's bug must not end the component
                log.exception("%s: handler %s failed", self.name, handler.handleFunction.__name__)
                continue
            for reply in self._replies(handler, response):
                self.send(self.add_propagated_fields(message, reply))

    def listen(self) -> None:
        """Receive and dispatch until the connection ends; returns after ``close()``."""
        try:
            while True:
                self.dispatch(self.receive())
        except (ConnectionLost, protocol.FrameError) as error:
            if not self._closing.is_set():
                log.warning("%s: %s", self.name, error)
                self._shutdown_socket()
                if self.on_disconnect is not None:
                    self.on_disconnect(str(error))

    def start(self) -> Component:
        """Listen in a daemon thread."""
        self._thread = threading.Thread(target=self.listen, name=f"swergio-{self.name}", daemon=True)
        self._thread.start()
        return self

    # --- shutdown ------------------------------------------------------------------

    def _shutdown_socket(self) -> None:
        try:
            self.client.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.client.close()

    def close(self) -> None:
        """Say DISCONNECT (when still possible), close, and wait for the listener."""
        if self._closing.is_set():
            return
        self._closing.set()
        try:
            self.send({"ID": protocol.new_id(), "TYPE": protocol.DISCONNECT, "TO_ROOM": protocol.COMMAND_ROOM})
        except ConnectionLost:
            pass
        self._shutdown_socket()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    @property
    def closed(self) -> bool:
        return self._closing.is_set()
