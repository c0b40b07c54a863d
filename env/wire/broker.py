"""The swergio broker: routes frames between components, survives bad ones.

Speaks swergio 0.0.2 as PROTOCOL.md describes it (rooms, TO, SENT_BY, ``_command``,
``_logging``) so unmodified swergio clients work through it. One thread runs a
selector loop over non-blocking sockets: no locks on the message path, no thread
per client that could spin, and a slow reader only fills its own bounded outbox
before it is disconnected. With a ``relay`` (gateway mode, env/wire/gateway.py) it is one
of several brokers sharing the network's rooms over NATS.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import selectors
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from cartpole_tui.env import defaults
from cartpole_tui.env.wire import auth, batch, protocol

log = logging.getLogger(__name__)

DEFAULT_MAX_OUTBOX = 8 * 1024 * 1024
DEFAULT_MEMORY_BUDGET = 256 * 1024 * 1024  # all peers' unfinished frames and outboxes together
FRAME_TIMEOUT = 10.0  # s a frame may take to arrive whole
MAX_ROOMS = 10_000
STATS_MAX_ROOMS = 100  # the busiest rooms in a stats message; STATS_MAX_CLIENTS names
STATS_MAX_CLIENTS = 200
_ACCEPT_BACKOFF = (0.05, 1.0)  # s: first and longest pause of accept() after it failed
_RECV_SIZE = 1 << 18
_LOGGED_TYPES = frozenset({protocol.FORWARD, protocol.GRADIENT})
# Linux only: swergio 0.0.2 clients write header and body in two send()s without
# TCP_NODELAY, so each body waits (Nagle) for our ACK of its header, which delayed ACK
# holds back ~40 ms. Setting TCP_QUICKACK sends the pending ACK at once; the kernel clears
# it again, so it is re-armed after every read that saw a frame in pieces. Clients that
# write whole frames (ours) never pay the extra ACK packets.
_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


def _quickack(sock: socket.socket) -> None:
    if _QUICKACK is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
    except OSError:  # only an optimisation: a socket refusing it is served as before
        pass


_KEPT_ROOMS = frozenset((*protocol.NETWORK_ROOMS, protocol.STATS_ROOM))


def _load_malloc_trim():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


_MALLOC_TRIM = _load_malloc_trim()


def _return_memory() -> None:
    """Give freed heap back to the system: a dead reader's outbox is many small frames that
    glibc otherwise keeps (100 MB of 20 dead readers' outboxes stayed after they were gone)."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


@dataclass(eq=False)
class Peer:
    """One connected client as the broker sees it."""

    sock: socket.socket
    address: str
    name: str | None = None
    rooms: set[str] = field(default_factory=set)
    inbox: bytearray = field(default_factory=bytearray)  # the start of a frame still arriving
    awaiting: int = 0  # bytes the frame in the inbox needs in all
    inbox_since: float = 0.0  # when the unfinished frame in the inbox began to arrive
    outbox: deque = field(default_factory=deque)
    outbox_bytes: int = 0
    doomed: str | None = None  # the reason it is to be closed, once it is
    admitted: bool = True  # False until a broker with a token has seen it register with it
    batch: bool = False  # said "BATCH": true in its REGISTER (env/wire/batch.py)

    @property
    def label(self) -> str:
        return f"{self.name or '(unregistered)'}@{self.address}"


@dataclass
class RoomCounters:
    members: int = 0
    messages: int = 0
    bytes: int = 0


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
        relay=None,
        token: str | None = None,
        trust: tuple = (),
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        frame_timeout: float = FRAME_TIMEOUT,
    ):
        self.memory_budget = memory_budget
        self.frame_timeout = frame_timeout
        self._accept_paused_until: float | None = None
        self._accept_backoff = _ACCEPT_BACKOFF[0]
        self._accept_failures = 0
        self._accept_logged = 0.0
        self._next_sweep = 0.0
        self.max_frame = max_frame
        self.max_outbox = max_outbox
        self.enable_logging = enable_logging
        self.token = token  # None: every client is admitted, as with swergio's own server
        self.trust = tuple(trust)  # ip networks admitted without a token
        self.refused = 0
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
        self._peers: set[Peer] = set()
        self._doomed: list[Peer] = []
        self._batch: dict[Peer, list[bytes]] | None = None  # frames routed while reading one recv
        self._rooms: dict[str, set[Peer]] = {room: set() for room in protocol.RESERVED_ROOMS}
        self._counters: dict[str, RoomCounters] = {room: RoomCounters() for room in protocol.RESERVED_ROOMS}
        self._stats_lock = threading.Lock()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self.frames_refused = 0
        self.undeliverable = 0
        self.started_at = time.monotonic()
        self._next_stats = 0.0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

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
                        self._serve(key.data, mask)
                self._publish_stats_when_due()
                self._resume_accepting_when_due()
                self._sweep_unfinished_frames()
        finally:
            for peer in list(self._peers):
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

    def stats(self) -> dict:
        """Clients (names), rooms with members, messages and bytes, refused frames."""
        with self._stats_lock:
            rooms = {
                room: RoomCounters(len(self._rooms.get(room, ())), c.messages, c.bytes)
                for room, c in self._counters.items()
            }
            clients = sorted(p.name or "(unregistered)" for p in self._peers)
        return {
            "address": self.address,
            "clients": clients,
            "rooms": rooms,
            "frames_refused": self.frames_refused,
            "undeliverable": self.undeliverable,
            "refused": self.refused,
        }

    def _publish_stats_when_due(self) -> None:
        """Every STATS_INTERVAL, send stats() to the members of the stats room (an addition)."""
        now = time.monotonic()
        members = self._rooms.get(protocol.STATS_ROOM)
        if not (members or self.relay) or now < self._next_stats:
            return
        self._next_stats = now + protocol.STATS_INTERVAL
        snapshot = self.stats()
        busiest = sorted(snapshot["rooms"].items(), key=lambda item: -item[1].messages)[:STATS_MAX_ROOMS]
        rooms = {room: [c.members, c.messages, c.bytes] for room, c in busiest}
        clients = snapshot["clients"][:STATS_MAX_CLIENTS]  # bounded: one stats message a second to each member
        snapshot = {**snapshot, "rooms": rooms, "clients": clients, "all_clients": len(snapshot["clients"])}
        if self.relay is not None:  # the whole network's figures: every gateway's clients and rooms
            snapshot = self.relay.network_stats(snapshot)
        if not members:
            return
        frame = protocol.encode_frame(protocol.broker_stats(snapshot))
        for member in tuple(members):
            self._send(member, frame)
        self._close_doomed()

    # --- connections ----------------------------------------------------------------

    def _select_timeout(self) -> float:
        if self._accept_paused_until is None:
            return 1.0
        return max(0.0, min(1.0, self._accept_paused_until - time.monotonic()))

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
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            peer = Peer(sock, f"{addr[0]}:{addr[1]}")
            peer.admitted = self.token is None or auth.is_trusted(addr[0], self.trust)
            with self._stats_lock:
                self._peers.add(peer)
            self._selector.register(sock, selectors.EVENT_READ, peer)
            log.info("connection from %s", peer.address)

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass

    def _serve(self, peer: Peer, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            self._flush(peer)
        if mask & selectors.EVENT_READ and peer.doomed is None:
            self._read(peer)
        self._close_doomed()

    def _doom(self, peer: Peer, reason: str) -> None:
        if peer.doomed is None:
            peer.doomed = reason
            self._doomed.append(peer)

    def _close_doomed(self) -> None:
        while self._doomed:
            peer = self._doomed.pop()
            self._close(peer, peer.doomed)

    def _close(self, peer: Peer, reason: str) -> None:
        if peer not in self._peers:
            return
        with self._stats_lock:
            self._peers.discard(peer)
            for room in peer.rooms:
                self._rooms.get(room, set()).discard(peer)
                self._interest("room", room, False)
                self._free_if_empty(room)
        if peer.name:
            self._interest("client", peer.name, False)
        held = peer.outbox_bytes + len(peer.inbox)
        peer.outbox.clear()
        peer.inbox = bytearray()
        if held >= 1 << 20:
            _return_memory()
        try:
            self._selector.unregister(peer.sock)
        except (KeyError, ValueError):
            pass
        peer.sock.close()
        log.info("closed %s: %s", peer.label, reason)

    # --- reading ----------------------------------------------------------------------

    def _socket_call(self, peer: Peer, call, argument, what: str):
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
        if not data:
            self._doom(peer, "connection closed inside a frame" if peer.inbox else "client closed the connection")
            return
        split = bool(peer.inbox)  # this read goes on with a frame begun in an earlier one
        if split:
            peer.inbox += data
            if len(peer.inbox) < peer.awaiting:  # a big frame still arriving: no copy until it is whole
                self._check_budget(peer)
                _quickack(peer.sock)
                return
            data = bytes(peer.inbox)
        offset = 0
        peer.awaiting = 0  # set again below when a frame's body is still to come
        self._batch = {}
        try:
            while len(data) - offset >= protocol.HEADER_LENGTH:
                length = protocol.parse_header(data[offset : offset + protocol.HEADER_LENGTH], self.max_frame)
                end = offset + protocol.HEADER_LENGTH + length
                if len(data) < end:
                    peer.awaiting = end - offset
                    break
                frame = data[offset:end] if offset or end < len(data) else data
                offset = end
                self._handle(peer, frame)
                if peer.doomed is not None:
                    return
        except protocol.FrameError as error:
            self.frames_refused += 1
            self._doom(peer, f"malformed frame: {error}")
            return
        finally:
            had = bool(peer.inbox)
            peer.inbox = bytearray(data[offset:]) if offset < len(data) else bytearray()
            if peer.inbox and (offset or not had):  # a new frame began: its clock starts
                peer.inbox_since = time.monotonic()
            self._flush_batch()
            if split or peer.inbox:  # frames in pieces: a client writing them in two sends
                _quickack(peer.sock)

    def _buffered(self) -> int:
        return sum(len(p.inbox) + p.outbox_bytes for p in self._peers)

    def _check_budget(self, peer: Peer) -> None:
        """Doom ``peer`` when its unfinished frame takes the broker over its memory budget."""
        if len(peer.inbox) >= 1 << 20 and self._buffered() > self.memory_budget:
            self._doom(peer, f"over the broker's memory budget ({self.memory_budget} bytes buffered in all)")

    def _sweep_unfinished_frames(self) -> None:
        """Once a second: close peers whose frame has not arrived whole within frame_timeout."""
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + 1.0
        for peer in tuple(self._peers):
            if peer.inbox and now - peer.inbox_since > self.frame_timeout:
                self._doom(peer, f"a frame unfinished after {self.frame_timeout:.0f}s")
        self._close_doomed()

    def _handle(self, peer: Peer, frame: bytes) -> None:
        """Act on one frame; it is forwarded as received unless SENT_BY has to be added."""
        message = protocol.decode_body(frame[protocol.HEADER_LENGTH :])
        kind = message["TYPE"]
        if not peer.admitted and not self._admit(peer, message):
            return
        if kind == protocol.DISCONNECT:
            self._doom(peer, "client said DISCONNECT")
            return
        if kind == protocol.REGISTER:
            self._register(peer, message)
        elif batch.is_census_request(message):
            self._send(peer, protocol.encode_frame(batch.census_answer(message, self._census(peer))))
            return
        elif kind in (protocol.JOINROOM, protocol.LEAVEROOM):
            self._membership(peer, message, join=kind == protocol.JOINROOM)
        if auth.TOKEN_KEY in message:  # a REGISTER: the token goes no further than the broker
            message.pop(auth.TOKEN_KEY)
            message.setdefault("SENT_BY", peer.name or peer.address)
            frame = protocol.frame_bytes(json.dumps(message).encode(protocol.FORMAT))  # small: re-encoded
        elif "SENT_BY" not in message:
            message["SENT_BY"] = peer.name or peer.address
            frame = self._with_sent_by(frame, message["SENT_BY"])
            if frame is None:
                self.undeliverable += 1
                log.warning("%s: a frame with SENT_BY added would be over the cap; dropped", peer.label)
                return
        self._route(peer, message, frame)

    def _admit(self, peer: Peer, message: dict) -> bool:
        """A peer's first frame must be REGISTER with the token; otherwise it is closed unheard."""
        if message["TYPE"] != protocol.REGISTER:
            reason = "refused: sent a message before registering with the token"
        elif auth.TOKEN_KEY not in message:
            reason = "refused: REGISTER without a token"
        elif not auth.tokens_match(message[auth.TOKEN_KEY], self.token):
            reason = "refused: wrong token"
        else:
            peer.admitted = True
            return True
        self.refused += 1
        log.warning("%s %s", peer.address, reason)
        self._doom(peer, reason)
        return False

    def _with_sent_by(self, frame: bytes, name: str) -> bytes | None:
        """``frame`` with SENT_BY added as its first key, the body otherwise byte for byte
        as sent (re-encoding could grow it past the cap); None when it would exceed the cap."""
        body = frame[protocol.HEADER_LENGTH :]
        brace = body.index(b"{")  # decode_body accepted it: an object, maybe after whitespace
        field = b'{"SENT_BY":' + json.dumps(name).encode(protocol.FORMAT) + b","
        if len(body) + len(field) - 1 > self.max_frame:
            return None
        return protocol.frame_bytes(field + body[brace + 1 :])

    def _register(self, peer: Peer, message: dict) -> None:
        name = message.get("NAME")
        if not isinstance(name, str) or not name:
            log.warning("%s sent REGISTER without a NAME; ignored", peer.label)
            return
        if any(p.name == name for p in self._peers if p is not peer):
            log.info("%s registers a name already in use; messages TO it reach all of them", name)
        if peer.name != name:
            if peer.name:
                self._interest("client", peer.name, False)
            self._interest("client", name, True)
        with self._stats_lock:
            peer.name = name
            peer.batch = message.get(batch.BATCH) is True
        log.info("%s registered as %s", peer.address, name)

    def _free_if_empty(self, room: str) -> None:
        """Forget a room nobody is in (the network's own rooms keep their counters)."""
        if not self._rooms.get(room) and room not in protocol.RESERVED_ROOMS and room not in _KEPT_ROOMS:
            self._rooms.pop(room, None)
            self._counters.pop(room, None)

    def _membership(self, peer: Peer, message: dict, join: bool) -> None:
        room = message.get("ROOM")
        if not isinstance(room, str):
            log.warning("%s sent %s without a ROOM; ignored", peer.label, message["TYPE"])
            return
        if join != (room in peer.rooms):
            self._interest("room", room, join)
        with self._stats_lock:
            if join and room not in self._rooms and len(self._rooms) >= MAX_ROOMS:
                log.warning("%s: JOINROOM refused: %d rooms already", peer.label, MAX_ROOMS)
                return
            if join:
                self._rooms.setdefault(room, set()).add(peer)
                self._counters.setdefault(room, RoomCounters())
                peer.rooms.add(room)
            elif room in peer.rooms:
                self._rooms[room].discard(peer)
                peer.rooms.discard(room)
                self._free_if_empty(room)

    def _interest(self, kind: str, name: str, joined: bool) -> None:
        """Gateway mode: the relay follows a room's or a name's local membership."""
        if self.relay is not None:
            (self.relay.joined if joined else self.relay.left)(kind, name)

    def _census(self, asker: Peer) -> dict[str, tuple[int, int]]:
        """Per step room: (members other than the asker, of them not BATCH)."""
        rooms = {}
        for room in batch.CENSUS_ROOMS:
            others = [p for p in self._rooms.get(room, ()) if p is not asker]
            rooms[room] = (len(others), sum(not p.batch for p in others))
        return rooms

    # --- routing ------------------------------------------------------------------------

    def _route(self, sender: Peer, message: dict, frame: bytes) -> None:
        delivered = False
        room = message.get("TO_ROOM")
        if isinstance(room, str):
            counters = self._counters.get(room)
            if counters is None and self.relay is not None and self.relay.has_members(room):
                counters = self._counters[room] = RoomCounters()  # a room with members elsewhere
            if counters is not None:
                counters.messages += 1
                counters.bytes += len(frame)
            for member in tuple(self._rooms.get(room, ())):
                if member is not sender:
                    self._send(member, frame)
                    delivered = True
        target = message.get("TO")
        if isinstance(target, str):
            for peer in tuple(self._peers):
                if peer.name == target:
                    self._send(peer, frame)
                    delivered = True
        if self.relay is not None:  # after local delivery: other gateways never hold up local clients
            if isinstance(room, str):
                delivered = self.relay.publish("room", room, frame) or delivered
            if isinstance(target, str):
                delivered = self.relay.publish("client", target, frame) or delivered
        if not delivered:
            self.undeliverable += 1
        if self.enable_logging and message["TYPE"] in _LOGGED_TYPES and self._logging_members():
            wrapped = protocol.encode_frame(
                {
                    "ID": protocol.new_id(),
                    "TO_ROOM": protocol.LOGGING_ROOM,
                    "TYPE": protocol.LOG_MESSAGES,
                    "MESSAGE": message,
                }
            )
            for member in tuple(self._rooms[protocol.LOGGING_ROOM]):
                self._send(member, wrapped)
            if self.relay is not None:
                self.relay.publish("room", protocol.LOGGING_ROOM, wrapped)

    def _logging_members(self) -> bool:
        room = protocol.LOGGING_ROOM
        return bool(self._rooms[room]) or (self.relay is not None and self.relay.has_members(room))

    def _deliver_relayed(self) -> None:
        """Frames other gateways sent: to local members only, never published again."""
        self._batch = {}
        try:
            for kind, name, frame in self.relay.drain():
                if kind == "room":
                    receivers = tuple(self._rooms.get(name, ()))
                else:
                    receivers = tuple(peer for peer in self._peers if peer.name == name)
                for peer in receivers:
                    self._send(peer, frame)
        finally:
            self._flush_batch()
        self._close_doomed()

    def _send(self, peer: Peer, frame: bytes) -> None:
        # Frames from one recv (e.g. 20 LOGITS written at once) leave in one write per
        # receiver: a loopback send costs ~15 µs, so one per frame dominated the routing.
        if self._batch is not None:
            self._batch.setdefault(peer, []).append(frame)
        else:
            self._write(peer, frame)

    def _flush_batch(self) -> None:
        batch, self._batch = self._batch, None
        for peer, frames in batch.items():
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
