"""A NATS connection (nats-py, asyncio in its own thread) for a selector loop.

The selector thread calls :meth:`NatsBridge.publish`, :meth:`subscribe` and
:meth:`unsubscribe`; they never block and are carried out in the order they were
made (one queue), so a subscription is on the server before anything published
after it. Inbound messages queue up and wake the selector through :attr:`wake_fd`;
:meth:`drain` hands them over. nats-py is imported when a bridge starts, so nothing
else needs it.

The connection is kept whatever ends it: nats-py reconnects after a lost server by itself,
but closes for good when the server sends an error before closing (e.g. a control line over
its limit); here such an error reconnects too. A subject longer than subjects.MAX_SUBJECT
is never sent.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cartpole_tui.env.wire.subjects import MAX_SUBJECT

if TYPE_CHECKING:  # nats-py is imported when a bridge starts
    from nats.aio.client import Client
    from nats.aio.subscription import Subscription

log = logging.getLogger(__name__)

_PUB, _SUB, _UNSUB = range(3)
_Op = tuple[int, str, bytes]  # (_PUB/_SUB/_UNSUB, subject, data to publish or b"")


class NatsUnavailable(ConnectionError):
    """No NATS server of the list answered (or nats-py is not installed)."""


class NatsBridge:
    """One NATS connection with ``no_echo``: what it publishes never comes back to it."""

    def __init__(
        self,
        servers: list[str],
        *,
        name: str = "swergio-gateway",
        connect_timeout: float = 2.0,
        reconnect_wait: float = 0.25,
        pending_size: int = 8 * 1024 * 1024,
        max_queued: int = 100_000,
        credentials: str | None = None,
    ) -> None:
        self.servers = list(servers)
        self.name = name
        self._options: dict[str, Any] = {
            "name": name,
            "no_echo": True,
            "connect_timeout": connect_timeout,
            "pending_size": pending_size,
            "ping_interval": 5,
            "max_outstanding_pings": 2,
            # without it a forced flush racing a disconnect can wait forever and stall the pump
            "flush_timeout": 1.0,
        }
        if credentials:  # a .creds file (JWT + NKey seed); nats-py then needs the nkeys package
            self._options["user_credentials"] = credentials
        self._reconnect_wait = reconnect_wait
        self.max_queued = max_queued
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"nats-{name}", daemon=True)
        self.nc: Client | None = None
        self._ops: deque[_Op] = deque()  # selector thread -> asyncio thread, in order
        self._ops_scheduled = False
        self._ops_ready = asyncio.Event()  # bound to the asyncio thread's loop when the pump first waits
        self._pump: asyncio.Task[None] | None = None
        self._in: deque[tuple[str, bytes]] = deque()  # asyncio thread -> selector thread
        self._wake_pending = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._subs: dict[str, Subscription] = {}
        self.published = self.received = self.dropped = self.reconnects = 0
        self.server_errors = 0  # errors the server sent, each followed by a reconnection
        self.disconnected_at: float | None = None
        self._closing = False

    @property
    def wake_fd(self) -> socket.socket:
        return self._wake_r

    @property
    def connected_url(self) -> str | None:
        """HOST:PORT of the NATS node in use (never its user or password), or None."""
        nc = self.nc
        if nc is None or not nc.is_connected:
            return None
        url = nc.connected_url
        return None if url is None else f"{url.hostname}:{url.port}"

    @property
    def max_payload(self) -> int:
        return self.nc.max_payload if self.nc is not None else 1 << 20

    # --- lifecycle ------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> NatsBridge:
        """Connect to the first server that answers; NatsUnavailable when none does."""
        try:
            import nats  # noqa: F401  (the optional extra: cartpole-tui[nats])
        except ImportError:
            raise NatsUnavailable("gateway mode needs nats-py: pip install 'cartpole-tui[nats]'") from None
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._connect(), self._loop).result(timeout)
        except Exception as error:
            self._stop_loop()
            reason = str(error) or type(error).__name__
            shown = ", ".join(_without_secrets(server) for server in self.servers)
            raise NatsUnavailable(f"cannot reach NATS at {shown}: {reason}") from None
        return self

    async def _connect(self) -> None:
        nc = self.nc = _arrival_order_client(self._on_msg, self._on_server_error)
        # Fail fast: each seed tried once, no pause (max_reconnect_attempts=0 would mean forever)...
        await nc.connect(
            self.servers,
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
            max_reconnect_attempts=1,
            reconnect_time_wait=0,
            **self._options,
        )
        # ...then reconnect forever: nats-py reads these options on every attempt.
        nc.options["max_reconnect_attempts"] = -1
        nc.options["reconnect_time_wait"] = self._reconnect_wait
        self._pump = asyncio.create_task(self._run_ops(nc))
        log.info("NATS: connected to %s", self.connected_url)

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued, then close the connection."""
        if self._thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout)
            except Exception as error:  # closing while NATS is gone: nothing more to save
                log.debug("NATS close: %r", error)
            self._stop_loop()
        self._wake_r.close()
        self._wake_w.close()

    async def _close(self) -> None:
        self._closing = True
        while self._ops:  # let the pump send what is queued
            await asyncio.sleep(0.001)
        if self._pump is not None:
            self._pump.cancel()
        if self.nc is not None and not self.nc.is_closed:
            try:
                await self.nc.drain()
            except Exception:  # e.g. while reconnecting
                await self.nc.close()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    # --- connection events (asyncio thread) ---------------------------------------------

    async def _on_error(self, error: Exception) -> None:
        log.debug("NATS: %s", error)

    async def _on_disconnected(self) -> None:
        self.disconnected_at = time.monotonic()
        if not self._closing:
            log.warning("NATS: lost the server; reconnecting (local clients stay connected)")

    def _on_server_error(self, text: str) -> None:
        self.server_errors += 1
        log.warning("NATS: the server said %s; reconnecting", text)

    async def _on_reconnected(self) -> None:
        self.reconnects += 1
        gap = time.monotonic() - (self.disconnected_at or time.monotonic())
        log.warning(
            "NATS: reconnected to %s after %.0f ms; %d frames could not be sent so far "
            "(frames in flight to the lost server are lost uncounted)",
            self.connected_url,
            gap * 1000,
            self.dropped,
        )

    # --- outbound (selector thread) ------------------------------------------------------

    def publish(self, subject: str, data: bytes) -> bool:
        """Queue ``data`` for ``subject``; False (and counted in ``dropped``) when it cannot go."""
        if len(data) > self.max_payload or len(self._ops) >= self.max_queued or len(subject) > MAX_SUBJECT:
            self.dropped += 1  # too big for NATS, or NATS has been gone long enough to fill the queue
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning(
                    "NATS: %d frames could not be sent so far (this one: %d bytes; the NATS cap is %d)",
                    self.dropped,
                    len(data),
                    self.max_payload,
                )
            return False
        self._queue((_PUB, subject, data))
        return True

    def subscribe(self, subject: str) -> None:
        if len(subject) > MAX_SUBJECT:  # the server would close the connection (callers check first)
            log.warning("NATS: not subscribing to a subject of %d bytes (at most %d)", len(subject), MAX_SUBJECT)
            return
        self._queue((_SUB, subject, b""))

    def unsubscribe(self, subject: str) -> None:
        self._queue((_UNSUB, subject, b""))

    def _queue(self, op: _Op) -> None:
        self._ops.append(op)
        if not self._ops_scheduled:  # one cross-thread wake-up per burst, not per message
            self._ops_scheduled = True
            self._loop.call_soon_threadsafe(self._ops_ready.set)

    async def _run_ops(self, nc: Client) -> None:
        from nats import errors

        lost = (errors.OutboundBufferLimitError, errors.ConnectionClosedError, errors.MaxPayloadError)
        ops = self._ops
        while True:
            await self._ops_ready.wait()
            self._ops_ready.clear()
            self._ops_scheduled = False
            while ops:
                kind, subject, data = ops.popleft()
                try:
                    if kind == _PUB:
                        await nc.publish(subject, data)  # appends to nats-py's pending buffer
                        self.published += 1
                    elif kind == _SUB:
                        if subject not in self._subs:
                            self._subs[subject] = await nc.subscribe(subject)  # read in arrival order
                    elif subject in self._subs:
                        await self._subs.pop(subject).unsubscribe()
                except lost:
                    if kind == _PUB:
                        self.dropped += 1  # a NATS gap longer than the pending buffer holds
                except Exception as error:  # never let one bad operation end the pump
                    log.warning("NATS: %s %s failed: %r", ("publish", "subscribe", "unsubscribe")[kind], subject, error)

    # --- inbound ---------------------------------------------------------------------------

    def _on_msg(self, subject: bytes, data: bytes) -> None:
        self.received += 1
        self._in.append((subject.decode(), data))
        if not self._wake_pending:
            self._wake_pending = True
            try:
                self._wake_w.send(b"\0")
            except (BlockingIOError, OSError):
                pass  # the wake socket is full: a wake-up is pending already

    def drain(self) -> list[tuple[str, bytes]]:
        """(subject, data) received so far; call in the selector thread when wake_fd is readable."""
        # Consume the wake bytes first, then re-arm, then pop: re-arming before reading could
        # swallow a wake-up sent in between and leave the flag set with nobody to clear it.
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        self._wake_pending = False
        items: list[tuple[str, bytes]] = []
        queued = self._in
        while queued:
            items.append(queued.popleft())
        return items


def _arrival_order_client(on_message: Callable[[bytes, bytes], None], on_server_error: Callable[[str], None]) -> Client:
    """A nats-py client that hands every message of our subscriptions to ``on_message`` as it is
    read, and reconnects after an error from the server instead of closing for good.

    nats-py queues each subscription's messages for a task of its own, so one sender's
    messages on two subjects (a room, then a name) could be handed over out of order, and each
    costs a task switch; PROTOCOL.md keeps a sender's order whatever the room. And on an
    ``-ERR`` it closes the client, which then never reconnects, although the server has only
    closed this one connection (a permissions error, which leaves it open, is nats-py's)."""
    from nats.aio.client import Client
    from nats.errors import Error
    from nats.protocol.parser import PERMISSIONS_ERR, STALE_CONNECTION

    class ArrivalOrderClient(Client):
        async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes) -> None:
            if sid not in self._subs:
                return  # unsubscribed while the message was on its way
            self.stats["in_msgs"] += 1
            self.stats["in_bytes"] += len(data)
            on_message(subject, data)

        async def _process_err(self, err_msg: str) -> None:
            if STALE_CONNECTION in err_msg or PERMISSIONS_ERR in err_msg:
                await super()._process_err(err_msg)
                return
            on_server_error(err_msg.strip())
            await self._process_op_err(Error(f"nats: {err_msg.strip()}"))

    return ArrivalOrderClient()


def _without_secrets(server: str) -> str:
    """A server URL as it may be shown: a user's password replaced by ***."""
    scheme, sep, rest = server.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not at:
        return server
    return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***@{host}"
