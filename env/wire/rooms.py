"""Rooms and names: who is connected, where each frame goes, and the relay's interest.

:class:`Rooms` is the broker's directory: the connected peers, the names they registered,
the rooms they joined, and per-room counters of messages and bytes (env/wire/broker_stats.py
reports them). Routing sends a frame to its room's other members and to every peer with its
TO name, and, in gateway mode, hands it to the relay, which is told whenever local interest
in a room or a name begins or ends. Only the broker's selector thread changes the
directory; ``lock`` guards what other threads copy from it.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from cartpole_tui.env.wire import batch, protocol
from cartpole_tui.env.wire.peer import Peer

log = logging.getLogger("cartpole_tui.env.wire.broker")  # the broker's one log, whichever room writes

MAX_ROOMS = 10_000
# The name a message of these types takes or gives up: (its kind for the relay, its key).
_NAMED = {
    protocol.REGISTER: ("client", "NAME"),
    protocol.JOINROOM: ("room", "ROOM"),
    protocol.LEAVEROOM: ("room", "ROOM"),
}
_KEPT_ROOMS = frozenset((*protocol.RESERVED_ROOMS, *protocol.NETWORK_ROOMS, protocol.STATS_ROOM))

Send = Callable[[Peer, bytes], None]  # the broker's way of sending a frame to one peer


class Relay(Protocol):
    """What a broker in gateway mode is plugged into (env/wire/gateway.py's NatsRelay)."""

    @property
    def wake_fd(self) -> socket.socket: ...

    def joined(self, kind: str, name: str) -> None: ...

    def left(self, kind: str, name: str) -> None: ...

    def publish(self, kind: str, name: str, frame: bytes) -> bool: ...

    def has_members(self, room: str) -> bool: ...

    def refusal(self, kind: str, name: str) -> str | None: ...

    def drain(self) -> list[tuple[str, str, bytes]]: ...

    def network_stats(self, local: dict[str, Any]) -> dict[str, Any]: ...


@dataclass
class RoomCounters:
    members: int = 0
    messages: int = 0
    bytes: int = 0


class Rooms:
    """The peers, their names and rooms; a room without members is forgotten."""

    def __init__(self, relay: Relay | None) -> None:
        self.relay = relay
        self.lock = threading.Lock()
        self.peers: set[Peer] = set()
        self.members: dict[str, set[Peer]] = {room: set() for room in protocol.RESERVED_ROOMS}
        self.counters: dict[str, RoomCounters] = {room: RoomCounters() for room in protocol.RESERVED_ROOMS}

    # --- peers ----------------------------------------------------------------------------

    def add(self, peer: Peer) -> None:
        with self.lock:
            self.peers.add(peer)

    def remove(self, peer: Peer) -> None:
        """Take a closed peer out of its rooms (and the relay's interest)."""
        with self.lock:
            self.peers.discard(peer)
            for room in peer.rooms:
                self.members.get(room, set()).discard(peer)
                self._interest("room", room, False)
                self._free_if_empty(room)
        if peer.name:
            self._interest("client", peer.name, False)

    def register(self, peer: Peer, message: protocol.Message) -> None:
        """A REGISTER: the peer takes its NAME (several may share one) and says whether it is BATCH."""
        name = message.get("NAME")
        if not isinstance(name, str) or not name:
            log.warning("%s sent REGISTER without a NAME; ignored", peer.label)
            return
        if any(p.name == name for p in self.peers if p is not peer):
            log.info("%s registers a name already in use; messages TO it reach all of them", name)
        if peer.name != name:
            if peer.name:
                self._interest("client", peer.name, False)
            self._interest("client", name, True)
        with self.lock:
            peer.name = name
            peer.batch = message.get(batch.BATCH) is True
        log.info("%s registered as %s", peer.address, name)

    def membership(self, peer: Peer, message: protocol.Message, join: bool) -> None:
        """A JOINROOM (``join``) or LEAVEROOM of its ROOM; no room beyond MAX_ROOMS."""
        room = message.get("ROOM")
        if not isinstance(room, str):
            log.warning("%s sent %s without a ROOM; ignored", peer.label, message["TYPE"])
            return
        if join != (room in peer.rooms):
            self._interest("room", room, join)
        with self.lock:
            if join and room not in self.members and len(self.members) >= MAX_ROOMS:
                log.warning("%s: JOINROOM refused: %d rooms already", peer.label, MAX_ROOMS)
                return
            if join:
                self.members.setdefault(room, set()).add(peer)
                self.counters.setdefault(room, RoomCounters())
                peer.rooms.add(room)
            elif room in peer.rooms:
                self.members[room].discard(peer)
                peer.rooms.discard(room)
                self._free_if_empty(room)

    def _free_if_empty(self, room: str) -> None:
        """Forget a room nobody is in (the network's own rooms keep their counters)."""
        if not self.members.get(room) and room not in _KEPT_ROOMS:
            self.members.pop(room, None)
            self.counters.pop(room, None)

    def _interest(self, kind: str, name: str, joined: bool) -> None:
        """Gateway mode: the relay follows a room's or a name's local membership."""
        if self.relay is not None:
            (self.relay.joined if joined else self.relay.left)(kind, name)

    def census(self, asker: Peer) -> dict[str, tuple[int, int]]:
        """Per step room: (members other than the asker, of them not BATCH)."""
        rooms = {}
        for room in batch.CENSUS_ROOMS:
            others = [p for p in self.members.get(room, ()) if p is not asker]
            rooms[room] = (len(others), sum(not p.batch for p in others))
        return rooms

    def refusal(self, message: protocol.Message) -> str | None:
        """Gateway mode: why the relay could not carry a name ``message`` joins, takes or is
        sent to (e.g. too long for a NATS subject), or None."""
        if self.relay is None:
            return None
        names = [("room", message.get("TO_ROOM")), ("client", message.get("TO"))]
        named = _NAMED.get(message["TYPE"])
        if named is not None:
            names.append((named[0], message.get(named[1])))
        for kind, name in names:
            reason = self.relay.refusal(kind, name) if isinstance(name, str) else None
            if reason is not None:
                return reason
        return None

    # --- routing ----------------------------------------------------------------------------

    def route(self, sender: Peer, message: protocol.Message, frame: bytes, send: Send) -> bool:
        """Send ``frame`` to its TO_ROOM's members but the sender (a batch message: those that said
        BATCH) and to the peers named TO, then to the relay; False when it reached nobody."""
        delivered = False
        room = message.get("TO_ROOM")
        if isinstance(room, str):
            counters = self.counters.get(room)
            if counters is None and self.relay is not None and self.relay.has_members(room):
                with self.lock:  # stats() may be copying the counters in another thread
                    counters = self.counters[room] = RoomCounters()  # a room with members elsewhere
            if counters is not None:
                counters.messages += 1
                counters.bytes += len(frame)
            # a batch message only to members that said BATCH: a published model that joined the room
            # while a vectorised run played died on one (its handler reads OBSERVATION)
            batched = batch.is_batch(message)
            for member in tuple(self.members.get(room, ())):
                if member is not sender and (member.batch or not batched):
                    send(member, frame)
                    delivered = True
        target = message.get("TO")
        if isinstance(target, str):
            for peer in tuple(self.peers):
                if peer.name == target:
                    send(peer, frame)
                    delivered = True
        if self.relay is not None:  # after local delivery: other gateways never hold up local clients
            if isinstance(room, str):
                delivered = self.relay.publish("room", room, frame) or delivered
            if isinstance(target, str):
                delivered = self.relay.publish("client", target, frame) or delivered
        return delivered

    def wants_logging(self) -> bool:
        """Whether swergio's ``_logging`` room has members, here or on other gateways."""
        room = protocol.LOGGING_ROOM
        return bool(self.members[room]) or (self.relay is not None and self.relay.has_members(room))

    def copy_to_logging(self, wrapped: bytes, send: Send) -> None:
        """A message's ``_logging`` copy (env/wire/framing.py wraps it) to that room's members."""
        for member in tuple(self.members[protocol.LOGGING_ROOM]):
            send(member, wrapped)
        if self.relay is not None:
            self.relay.publish("room", protocol.LOGGING_ROOM, wrapped)

    def local_receivers(self, kind: str, name: str) -> tuple[Peer, ...]:
        """The members of room ``name`` (kind "room") or the peers named ``name`` ("client")."""
        if kind == "room":
            return tuple(self.members.get(name, ()))
        return tuple(peer for peer in self.peers if peer.name == name)
