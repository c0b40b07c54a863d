"""The swergio broker: routes frames between components, survives bad ones.

Speaks swergio 0.0.2 as PROTOCOL.md describes it (rooms, TO, SENT_BY, ``_command``,
``_logging``) so unmodified swergio clients work through it. One thread runs a
selector loop over non-blocking sockets: no locks on the message path, no thread
per client that could spin, and a slow reader only fills its own bounded outbox
before it is disconnected. With a ``relay`` (gateway mode, env/wire/gateway.py) it is one
of several brokers sharing the network's rooms over NATS.

This module is the loop and its wiring: accepting connections (at most so many per
address, each to REGISTER within a deadline), reading (frames are cut by
env/wire/framing.py), acting on each frame (admission: env/wire/admission.py; rooms, names
and routing: env/wire/rooms.py), writing with bounded outboxes inside one memory budget,
and closing. Its figures are env/wire/broker_stats.py's.

Nothing here recurses on a peer's data: a frame nesting deeper than ``protocol.MAX_DEPTH``
is refused before it is parsed, and frames are passed on as sent or re-encoded only within
that bound. A fault while serving one peer closes that peer, not the loop; should the loop
itself end in an exception, ``serve_forever`` raises it (the ``broker`` command then exits 1).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import selectors
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

from cartpole_tui.env import defaults
from cartpole_tui.env.wire import auth, batch, broker_stats, framing, protocol
from cartpole_tui.env.wire.admission import BACKING_OFF, Admission, RefusalLog
from cartpole_tui.env.wire.peer import Peer
from cartpole_tui.env.wire.rooms import Relay, Rooms

log = logging.getLogger(__name__)

DEFAULT_MAX_OUTBOX = 8 * 1024 * 1024
DEFAULT_MEMORY_BUDGET = 256 * 1024 * 1024  # all peers' unfinished frames and outboxes together
FRAME_TIMEOUT = 10.0  # s a frame may take to arrive whole
_ACCEPT_BACKOFF = (0.05, 1.0)  # s: first and longest pause of accept() after it failed
_RECV_SIZE = 1 << 18
_LOGGED_TYPES = frozenset({protocol.FORWARD, protocol.GRADIENT})
# Linux only: swergio 0.0.2 clients write header and body in two send()s without
# TCP_NODELAY, so each body waits (Nagle) for our ACK of its header, which delayed ACK
# holds back ~40 ms. Setting TCP_QUICKACK sends the pending ACK at once; the kernel clears
# it again, so it is re-armed after every read that saw a frame in pieces. Clients that
# write whole frames (ours) never pay the extra ACK packets.
_QUICKACK = getattr(socket, "TCP_QUICKACK", None)

_Argument = TypeVar("_Argument")
_Result = TypeVar("_Result")


def _quickack(sock: socket.socket) -> None:
    if _QUICKACK is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
    except OSError:  # only an optimisation: a socket refusing it is served as before
        pass


def _load_malloc_trim() -> Callable[[int], object] | None:
    try:
        trim: Callable[[int], object] = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    return trim


_MALLOC_TRIM = _load_malloc_trim()


def _return_memory() -> None:
    """Give freed heap back to the system: a dead reader's outbox is many small frames that
    glibc otherwise keeps (100 MB of 20 dead readers' outboxes stayed after they were gone)."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


class Broker:
    """A swergio broker bound to ``host:port`` (port 0 picks a free one).

    ``serve_forever()`` runs the loop in the calling thread; ``start()`` runs it in a
    daemon thread. ``stats()`` is safe to call from any thread.
    """

    def __init__(
        self,
        host: str = defaults.LOOPBACK,
        port: int = defaults.PORT,
        *,
        max_frame: int = protocol.DEFAULT_MAX_FRAME,
        max_outbox: int = DEFAULT_MAX_OUTBOX,
        enable_logging: bool = True,
        relay: Relay | None = None,
        token: str | None = None,
        trust: tuple[auth.Network, ...] = (),
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        frame_timeout: float = FRAME_TIMEOUT,
        register_timeout: float = defaults.REGISTER_TIMEOUT,
        max_per_address: int = defaults.MAX_CONNECTIONS_PER_ADDRESS,
        max_registers: int = defaults.REGISTERS_PER_CONNECTION,
    ) -> None:
        self.memory_budget = memory_budget
        self.frame_timeout = frame_timeout
        self.register_timeout = register_timeout  # s a connection may go without registering a name
        self.max_per_address = max_per_address  # open connections from one IP address
        self.max_registers = max_registers  # REGISTERs one connection may send
        self._per_host: Counter[str] = Counter()
        self._refusal_log = RefusalLog()
        self._accept_paused_until: float | None = None
        self._accept_backoff = _ACCEPT_BACKOFF[0]
        self._accept_failures = 0
        self._accept_logged = 0.0
        self._next_sweep = 0.0
        self.max_frame = max_frame
        self.max_outbox = max_outbox
        self.enable_logging = enable_logging
        self._admission = Admission(token, tuple(trust))
        self._listener = socket.create_server((host, port), reuse_port=False, backlog=128)
        self._listener.setblocking(False)
        self.host, self.port = self._listener.getsockname()[:2]
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self.relay = relay  # gateway mode: told of local interest and frames, hands over remote frames
        if relay is not None:
            self._selector.register(relay.wake_fd, selectors.EVENT_READ, "relay")
        self._rooms = Rooms(relay)
        self._doomed: list[tuple[Peer, str]] = []
        self._batch: dict[Peer, list[bytes]] | None = None  # frames routed while reading one recv
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self.frames_refused = 0
        self.undeliverable = 0
        self.names_refused = 0  # gateway mode: names too long to carry over NATS
        self.registers_refused = 0  # REGISTERs beyond max_registers on one connection
        self.started_at = time.monotonic()
        self._next_stats = 0.0  # the next round of stats to every member of the stats room
        self._last_stats = 0.0  # the last round, to all or to joiners only
        self._stats_joiners: set[Peer] = set()  # joined the stats room since the last round

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def refused(self) -> int:
        """Connections turned away for want of the token."""
        return self._admission.refused

    @property
    def backed_off(self) -> int:
        """Of them, those closed as they arrived because their address was being backed off."""
        return self._admission.backed_off

    # --- lifecycle -------------------------------------------------------------

    def start(self) -> Broker:
        self._thread = threading.Thread(target=self.serve_forever, name="broker", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        log.info("broker listening on %s", self.address)
        try:
            while not self._stopping:
                for key, mask in self._selector.select(timeout=self._select_timeout()):
                    if key.fileobj is self._listener:
                        self._accept()
                    elif key.data == "wake":
                        self._drain_wake()
                    elif key.data == "relay":
                        self._deliver_relayed()
                    else:
                        self._serve_contained(key.data, mask)
                self._publish_stats_when_due()
                self._resume_accepting_when_due()
                self._sweep()
        finally:
            for peer in list(self._rooms.peers):
                self._close(peer, "broker shutting down")
            self._selector.close()
            self._listener.close()
            self._wake_r.close()
            self._wake_w.close()
            self._stopped.set()
            log.info("broker on %s stopped", self.address)

    def stop(self, timeout: float = 5.0) -> None:
        """Close every connection and the listening socket; safe from any thread."""
        self._stopping = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    # --- statistics ---------------------------------------------------------------

    def stats(self) -> broker_stats.BrokerStats:
        """Clients (names), rooms with members, messages and bytes, refused frames."""
        return broker_stats.snapshot(
            self._rooms,
            self.address,
            frames_refused=self.frames_refused,
            undeliverable=self.undeliverable,
            refused=self.refused,
            registers_refused=self.registers_refused,
        )

    def _early_stats_due(self) -> float | None:
        """When the clients that joined the stats room since the last round hear them, or None."""
        return self._last_stats + protocol.STATS_ON_JOIN_GAP if self._stats_joiners else None

    def _publish_stats_when_due(self) -> None:
        """Every STATS_INTERVAL, send stats() to the members of the stats room (an addition); a
        client that joined it hears them at most STATS_ON_JOIN_GAP after the last round, alone
        (a peer joining and leaving in a loop adds no frames to the other members)."""
        now = time.monotonic()
        members = self._rooms.members.get(protocol.STATS_ROOM)
        early = self._early_stats_due()
        full = now >= self._next_stats
        if not (members or self.relay) or not (full or (early is not None and now >= early)):
            if not members:
                self._stats_joiners.clear()
            return
        receivers = tuple(members or ()) if full else tuple(p for p in self._stats_joiners if p in (members or ()))
        self._stats_joiners.clear()
        self._last_stats = now
        if full:
            self._next_stats = now + protocol.STATS_INTERVAL
        figures = broker_stats.bounded(self.stats())
        if self.relay is not None:  # the whole network's figures: every gateway's clients and rooms
            figures = self.relay.network_stats(figures)
        if not receivers:
            return
        frame = protocol.encode_frame(protocol.broker_stats(figures))
        for member in receivers:
            self._send(member, frame)
        self._close_doomed()

    # --- connections ----------------------------------------------------------------

    def _select_timeout(self) -> float:
        now, timeout = time.monotonic(), 1.0
        if self._accept_paused_until is not None:
            timeout = min(timeout, self._accept_paused_until - now)
        if self._rooms.members.get(protocol.STATS_ROOM) or self.relay is not None:
            timeout = min(timeout, self._next_stats - now)
        early = self._early_stats_due()  # a client joined the stats room: it hears them soon
        if early is not None:
            timeout = min(timeout, early - now)
        return max(0.0, timeout)

    def _pause_accepting(self, error: OSError) -> None:
        """accept() failed (e.g. out of file descriptors): the connection stays in the backlog
        and the listener stays readable, so stop selecting it for a while instead of spinning."""
        now = time.monotonic()
        self._accept_failures += 1
        if now - self._accept_logged >= 1.0:  # one line a second, however often it fails
            log.warning(
                "accept failed %d time(s): %s; pausing %.2fs", self._accept_failures, error, self._accept_backoff
            )
            self._accept_logged, self._accept_failures = now, 0
        self._selector.unregister(self._listener)
        self._accept_paused_until = now + self._accept_backoff
        self._accept_backoff = min(_ACCEPT_BACKOFF[1], self._accept_backoff * 2)

    def _resume_accepting_when_due(self) -> None:
        if self._accept_paused_until is not None and time.monotonic() >= self._accept_paused_until:
            self._accept_paused_until = None
            self._selector.register(self._listener, selectors.EVENT_READ, None)

    def _accept(self) -> None:
        while True:
            try:
                sock, addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:  # e.g. out of file descriptors: keep serving the others
                self._pause_accepting(error)
                return
            self._accept_backoff = _ACCEPT_BACKOFF[0]
            host, now = addr[0], time.monotonic()
            refusal = self._door_refusal(host, now)
            if refusal is not None:  # closed unheard, before it costs more than its descriptor
                sock.close()
                self._log_refusal(refusal, host, now)
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            peer = Peer(sock, host, addr[1], connected_at=now)
            peer.admitted = self._admission.admits_on_arrival(host)
            self._per_host[host] += 1
            self._rooms.add(peer)
            self._selector.register(sock, selectors.EVENT_READ, peer)
            log.info("connection from %s", peer.address)

    def _door_refusal(self, host: str, now: float) -> str | None:
        """Why a new connection from ``host`` is closed as it arrives, or None."""
        if self._per_host[host] >= self.max_per_address:
            return f"refused: {self.max_per_address} connections from this address already"
        if self._admission.backing_off(host, now):
            return BACKING_OFF
        return None

    def _log_refusal(self, reason: str, host: str, now: float) -> None:
        """The first refusal of each kind in an interval now, the rest in the interval's summary."""
        if self._refusal_log.note(reason, host, now):
            log.warning("%s %s (more are summed up every %.0fs)", host, reason, self._refusal_log.interval)

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass

    def _serve_contained(self, peer: Peer, mask: int) -> None:
        """Serve one peer's event; a fault in doing so (a bug this peer's data ran into) closes
        that peer, logged with its traceback, and the others are served on."""
        try:
            self._serve(peer, mask)
        except Exception:
            log.exception("%s: internal error while serving it; closing it", peer.label)
            self._batch = None
            self._doom(peer, "internal error")
            self._close_doomed()

    def _serve(self, peer: Peer, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            self._flush(peer)
        if mask & selectors.EVENT_READ and peer.doomed is None:
            self._read(peer)
        self._close_doomed()

    def _doom(self, peer: Peer, reason: str) -> None:
        if peer.doomed is None:
            peer.doomed = reason
            self._doomed.append((peer, reason))

    def _close_doomed(self) -> None:
        while self._doomed:
            self._close(*self._doomed.pop())

    def _close(self, peer: Peer, reason: str) -> None:
        if peer not in self._rooms.peers:
            return
        self._rooms.remove(peer)
        self._per_host[peer.host] -= 1
        if self._per_host[peer.host] <= 0:
            del self._per_host[peer.host]
        held = peer.outbox_bytes + len(peer.inbox)
        peer.outbox.clear()
        peer.inbox.clear()
        if held >= 1 << 20:
            _return_memory()
        try:
            self._selector.unregister(peer.sock)
        except (KeyError, ValueError):
            pass
        peer.sock.close()
        log.info("closed %s: %s", peer.label, reason)

    # --- reading ----------------------------------------------------------------------

    def _socket_call(
        self, peer: Peer, call: Callable[[_Argument], _Result], argument: _Argument, what: str
    ) -> _Result | None:
        """``call(argument)`` on the peer's socket; None when it would block, or when it
        failed (then the peer is doomed)."""
        try:
            return call(argument)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as error:
            self._doom(peer, f"{what} failed: {error.strerror or error}")
            return None

    def _read(self, peer: Peer) -> None:
        data = self._socket_call(peer, peer.sock.recv, _RECV_SIZE, "receive")
        if data is None:
            return
        inbox = peer.inbox
        if not data:
            self._doom(peer, "connection closed inside a frame" if inbox.buffer else "client closed the connection")
            return
        split = bool(inbox.buffer)  # this read goes on with a frame begun in an earlier one
        if split:
            whole = inbox.extend(data)
            if whole is None:  # a big frame still arriving
                self._check_budget(peer)
                _quickack(peer.sock)
                return
            data = whole

        def handle(frame: bytes) -> bool:
            self._handle(peer, frame)
            return peer.doomed is None  # read no further from a peer to be closed

        self._batch = {}
        try:
            inbox.cut(data, self.max_frame, handle)
        except protocol.FrameError as error:
            self.frames_refused += 1
            self._doom(peer, f"malformed frame: {error}")
        finally:
            self._flush_batch()
            if split or inbox.buffer:  # frames in pieces: a client writing them in two sends
                _quickack(peer.sock)

    def _buffered(self) -> int:
        return sum(len(p.inbox) + p.outbox_bytes for p in self._rooms.peers)

    def _check_budget(self, peer: Peer) -> None:
        """Doom ``peer`` when its unfinished frame takes the broker over its memory budget."""
        if len(peer.inbox) >= 1 << 20 and self._buffered() > self.memory_budget:
            self._doom(peer, f"over the broker's memory budget ({self.memory_budget} bytes buffered in all)")

    def _sweep(self) -> None:
        """Once a second: close peers whose frame has not arrived whole within frame_timeout and
        those still without a name after register_timeout; log the refusals held back."""
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + 1.0
        for peer in tuple(self._rooms.peers):
            if peer.inbox.overdue(now, self.frame_timeout):
                self._doom(peer, f"a frame unfinished after {self.frame_timeout:.0f}s")
            elif peer.name is None and now - peer.connected_at > self.register_timeout:
                self._doom(peer, f"no REGISTER with a NAME within {self.register_timeout:g}s")
        self._close_doomed()
        self._admission.forget_quiet(now, defaults.AUTH_FORGET)
        summary = self._refusal_log.summary(now)
        if summary is not None:
            log.warning("%s", summary)

    # --- acting on a frame ------------------------------------------------------------------

    def _handle(self, peer: Peer, frame: bytes) -> None:
        """Act on one frame and pass it on, as received where SENT_BY allows (framing.signed)."""
        message = protocol.decode_body(frame[protocol.HEADER_LENGTH :], protocol.MAX_DEPTH)
        kind = message["TYPE"]
        if not peer.admitted and not self._admit(peer, message):
            return
        if kind == protocol.DISCONNECT:
            self._doom(peer, "client said DISCONNECT")
            return
        refusal = self._rooms.refusal(message)  # gateway mode: a name NATS cannot carry
        if refusal is not None:
            self._refuse(peer, message, refusal)
            return
        if kind == protocol.REGISTER:
            peer.registers += 1
            if peer.registers > self.max_registers:
                self._refuse_register(peer, message)
                return
            self._rooms.register(peer, message)
        elif batch.is_census_request(message):
            self._send(peer, protocol.encode_frame(batch.census_answer(message, self._rooms.census(peer))))
            return
        elif kind in (protocol.JOINROOM, protocol.LEAVEROOM):
            self._rooms.membership(peer, message, join=kind == protocol.JOINROOM)
            if kind == protocol.JOINROOM and message.get("ROOM") == protocol.STATS_ROOM:
                # heard at once, not up to STATS_INTERVAL later: by the joiner alone, at most
                # every STATS_ON_JOIN_GAP (joins in a loop neither make more nor reach the others)
                self._stats_joiners.add(peer)
        signed = framing.signed(frame, message, peer.sender, self.max_frame)
        if signed is None:
            self.undeliverable += 1
            log.warning("%s: a frame with SENT_BY set would be over the cap; dropped", peer.label)
            return
        if not self._rooms.route(peer, message, signed, self._send):
            self.undeliverable += 1
        if self.enable_logging and kind in _LOGGED_TYPES and self._rooms.wants_logging():
            wrapped = framing.for_logging(signed, self.max_frame)
            if wrapped is None:
                self.undeliverable += 1  # its copy would be over the cap; the message itself went on
            else:
                self._rooms.copy_to_logging(wrapped, self._send)

    def _admit(self, peer: Peer, message: protocol.Message) -> bool:
        """A peer's first frame must be REGISTER with the token; otherwise it is closed unheard."""
        now = time.monotonic()
        reason = self._admission.refusal(peer.host, message, now)
        if reason is None:
            peer.admitted = True
            return True
        self._log_refusal(reason, peer.host, now)
        self._doom(peer, reason)
        return False

    def _refuse(self, peer: Peer, message: protocol.Message, reason: str) -> None:
        """Tell ``peer`` that its ``message`` was not acted on, and why; the peer stays."""
        self.names_refused += 1
        self._log_refusal("refused: a name too long for NATS", peer.host, time.monotonic())
        self._send(peer, protocol.encode_frame(protocol.refused(reason, message.get("ID"))))

    def _refuse_register(self, peer: Peer, message: protocol.Message) -> None:
        """A REGISTER beyond ``max_registers`` on one connection (a flood of names from one
        socket): not acted on, not passed on, counted; logged once an interval, told once."""
        self.registers_refused += 1
        reason = f"refused: more than {self.max_registers} REGISTERs on one connection"
        self._log_refusal(reason, peer.host, time.monotonic())
        if peer.registers == self.max_registers + 1:
            self._send(
                peer, protocol.encode_frame(protocol.refused(reason.removeprefix("refused: "), message.get("ID")))
            )

    def _deliver_relayed(self) -> None:
        """Frames other gateways sent: to local members only, never published again."""
        assert self.relay is not None  # registered with the selector only in gateway mode
        self._batch = {}
        try:
            for kind, name, frame in self.relay.drain():
                for peer in self._rooms.local_receivers(kind, name):
                    self._send(peer, frame)
        finally:
            self._flush_batch()
        self._close_doomed()

    # --- writing ------------------------------------------------------------------------

    def _send(self, peer: Peer, frame: bytes) -> None:
        # Frames from one recv (e.g. 20 LOGITS written at once) leave in one write per
        # receiver: a loopback send costs ~15 µs, so one per frame dominated the routing.
        if self._batch is not None:
            self._batch.setdefault(peer, []).append(frame)
        else:
            self._write(peer, frame)

    def _flush_batch(self) -> None:
        frames_by_peer, self._batch = self._batch, None
        for peer, frames in (frames_by_peer or {}).items():
            self._write(peer, frames[0] if len(frames) == 1 else b"".join(frames))

    def _write(self, peer: Peer, frame: bytes) -> None:
        if peer.doomed is not None:
            return
        if peer.outbox:
            if peer.outbox_bytes + len(frame) > self.max_outbox or self._buffered() + len(frame) > self.memory_budget:
                self._doom(peer, f"stopped reading ({peer.outbox_bytes} bytes waiting)")
                return
            peer.outbox.append(memoryview(frame))
            peer.outbox_bytes += len(frame)
            return
        sent = self._socket_call(peer, peer.sock.send, frame, "send")
        if peer.doomed is not None:
            return
        sent = sent or 0  # None: it would block
        if sent < len(frame):
            peer.outbox.append(memoryview(frame)[sent:])
            peer.outbox_bytes += len(frame) - sent
            self._selector.modify(peer.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, peer)

    def _flush(self, peer: Peer) -> None:
        while peer.outbox:
            chunk = peer.outbox[0]
            sent = self._socket_call(peer, peer.sock.send, chunk, "send")
            if sent is None:
                return
            peer.outbox_bytes -= sent
            if sent < len(chunk):
                peer.outbox[0] = chunk[sent:]
                return
            peer.outbox.popleft()
        if peer.doomed is None:
            self._selector.modify(peer.sock, selectors.EVENT_READ, peer)
