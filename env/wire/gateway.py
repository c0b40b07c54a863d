"""Gateway mode: the broker's rooms and names carried between brokers over NATS.

A :class:`NatsRelay` plugged into a :class:`~cartpole_tui.env.wire.broker.Broker` makes it
one gateway of a network: it publishes what its local clients send to rooms and names
(after delivering locally, without waiting for NATS), subscribes to a room's or a name's
subject while it has local members, and hands the broker what other gateways sent,
which the broker delivers locally only. Frames pass as bytes, never re-encoded.

Any NATS client with rights on the network's subjects can publish on them, so what
arrives is checked as a broker checks a client's frame (one frame, a JSON object with a
TYPE, within the depth bound) and dropped and counted otherwise. Each gateway publishes
its own stats on the network's stats subject and merges the others' (checked and
bounded) into the ``_stats`` message its local clients see.
"""

from __future__ import annotations

import heapq
import json
import socket
import time
from collections import Counter
from itertools import chain
from typing import Any, TypeGuard

from cartpole_tui.env.wire import broker_stats, framing, protocol, subjects
from cartpole_tui.env.wire.nats_bridge import NatsBridge

_STATS_TTL = 3 * protocol.STATS_INTERVAL  # a gateway silent this long has left the merge
_MAX_GATEWAYS = 1000
# A gateway's stats message: its bounded figures (broker_stats.bounded), at most ~190 KB even
# when every name is 100 characters that JSON escapes as \uXXXX. A bigger one is not a gateway's.
MAX_STATS_MESSAGE = 256 * 1024


class NatsRelay:
    """What a broker in gateway mode calls; all methods run in the broker's selector thread."""

    def __init__(
        self,
        servers: list[str],
        network: str = "default",
        *,
        max_frame: int = protocol.DEFAULT_MAX_FRAME,
        credentials: str | None = None,
    ) -> None:
        if not subjects.fits(network, subjects.ROOM, ""):
            raise ValueError(f"the network name is too long for NATS ({len(network):,} characters)")
        self.network = network
        self.max_frame = max_frame
        self.bridge = NatsBridge(servers, name=f"cartpole-tui gateway ({network})", credentials=credentials)
        self.gateway_id = protocol.new_id()
        self._interest: Counter[tuple[str, str]] = Counter()  # (kind, name) -> local members
        self._stats_subject = subjects.stats_subject(network)
        self._others: dict[str, tuple[float, dict[str, Any]]] = {}  # gateway id -> (received at, its stats)
        self.refused = 0  # what came over NATS and is not a well-formed frame or gateway stats

    def start(self, timeout: float = 10.0) -> NatsRelay:
        """Connect; NatsUnavailable (one line) when no server answers."""
        self.bridge.start(timeout)
        self.bridge.subscribe(self._stats_subject)
        return self

    def close(self) -> None:
        self.bridge.close()

    @property
    def wake_fd(self) -> socket.socket:
        return self.bridge.wake_fd

    # --- local interest ----------------------------------------------------------------------

    def joined(self, kind: str, name: str) -> None:
        """A local client joined room ``name`` (kind "room") or registered as ``name`` ("client")."""
        self._interest[kind, name] += 1
        if self._interest[kind, name] == 1:
            self.bridge.subscribe(subjects.subject(self.network, kind, name))

    def left(self, kind: str, name: str) -> None:
        if self._interest[kind, name] <= 0:
            return
        self._interest[kind, name] -= 1
        if self._interest[kind, name] == 0:
            del self._interest[kind, name]
            self.bridge.unsubscribe(subjects.subject(self.network, kind, name))

    def refusal(self, kind: str, name: str) -> str | None:
        """Why room or client ``name`` cannot be carried over NATS (its subject too long), or None."""
        if subjects.fits(self.network, kind, name):
            return None
        return (
            f"a {kind} name of {len(name):,} characters is too long for gateway mode: "
            f"its NATS subject would be over {subjects.MAX_SUBJECT:,} bytes"
        )

    # --- frames ----------------------------------------------------------------------------------

    def publish(self, kind: str, name: str, frame: bytes) -> bool:
        """Send a local client's frame to the other gateways; False when it could not go."""
        return self.bridge.publish(subjects.subject(self.network, kind, name), frame)

    def drain(self) -> list[tuple[str, str, bytes]]:
        """(kind, name, frame) that other gateways sent; stats messages are taken in here."""
        out = []
        for subject, data in self.bridge.drain():
            if subject == self._stats_subject:
                self._take_stats(data)
                continue
            target = subjects.parse(self.network, subject)
            # Any NATS client can publish on these subjects: pass on exactly one good frame, or nothing.
            if target is None or not framing.is_well_formed(data, self.max_frame):
                self.refused += 1
                continue
            out.append((*target, data))
        return out

    # --- stats ---------------------------------------------------------------------------------

    def remote_members(self, room: str) -> int:
        """Members of ``room`` on the other gateways, as they last reported them."""
        return sum(stats["rooms"].get(room, (0,))[0] for _, stats in list(self._others.values()))

    def remote_clients(self) -> list[str]:
        """The names the other gateways last reported."""
        return [name for _, stats in list(self._others.values()) for name in stats["clients"]]

    def has_members(self, room: str) -> bool:
        return self.remote_members(room) > 0

    def network_stats(self, local: dict[str, Any]) -> dict[str, Any]:
        """Publish this gateway's ``local`` stats (broker_stats.bounded) and return them merged
        with the other gateways' latest, bounded as one gateway's are."""
        nats = {"url": self.bridge.connected_url, "dropped": self.bridge.dropped, "refused": self.refused}
        own = {**local, "nats": nats}
        self.bridge.publish(self._stats_subject, json.dumps({"GATEWAY": self.gateway_id, "STATS": own}).encode())
        now = time.monotonic()
        for gateway, (at, _) in list(self._others.items()):
            if now - at > _STATS_TTL:
                del self._others[gateway]
        merged = {**own, "rooms": {r: list(v) for r, v in own["rooms"].items()}}
        for _, stats in self._others.values():
            merged["all_clients"] += stats["all_clients"]
            for room, values in stats["rooms"].items():
                total = merged["rooms"].setdefault(room, [0, 0, 0])
                for i in range(3):
                    total[i] += values[i]
            merged["frames_refused"] += stats["frames_refused"]
            merged["undeliverable"] += stats["undeliverable"]
        every_name = chain(own["clients"], *(stats["clients"] for _, stats in self._others.values()))
        merged["clients"] = heapq.nsmallest(broker_stats.STATS_MAX_CLIENTS, every_name)  # the first, sorted
        busiest = heapq.nlargest(broker_stats.STATS_MAX_ROOMS, merged["rooms"].items(), key=lambda item: item[1][1])
        merged["rooms"] = dict(busiest)
        merged["gateways"] = 1 + len(self._others)
        return merged

    def _take_stats(self, data: bytes) -> None:
        try:
            if len(data) > MAX_STATS_MESSAGE:
                raise ValueError("too big for a gateway's stats")
            message = protocol.decode_json(data)
            gateway, stats = message["GATEWAY"], _checked_stats(message["STATS"])
        except (ValueError, TypeError, KeyError, AttributeError):  # FrameError is a ValueError
            self.refused += 1
            return
        known = gateway in self._others or len(self._others) < _MAX_GATEWAYS
        if isinstance(gateway, str) and gateway != self.gateway_id and known:
            self._others[gateway] = (time.monotonic(), stats)


def _checked_stats(stats: dict[str, Any]) -> dict[str, Any]:
    """Another gateway's stats, checked against what broker_stats.bounded sends; ValueError or
    TypeError when they are not such."""
    clients, rooms = stats["clients"], stats["rooms"]
    if not isinstance(clients, list) or not all(isinstance(c, str) for c in clients):
        raise TypeError("clients must be a list of names")
    if not isinstance(rooms, dict):
        raise TypeError("rooms must be an object")
    if len(clients) > broker_stats.STATS_MAX_CLIENTS or len(rooms) > broker_stats.STATS_MAX_ROOMS:
        raise ValueError("more names or rooms than a gateway reports")
    if any(len(name) > broker_stats.STATS_MAX_NAME for name in (*clients, *rooms)):
        raise ValueError("a longer name than a gateway reports")
    checked = {}
    for room, values in rooms.items():
        if not isinstance(values, list) or len(values) != 3 or not all(_is_count(v) for v in values):
            raise ValueError("room counters must be three whole numbers >= 0")
        checked[room] = values
    return {
        "clients": clients,
        "all_clients": _count(stats.get("all_clients", len(clients))),
        "rooms": checked,
        "frames_refused": _count(stats["frames_refused"]),
        "undeliverable": _count(stats["undeliverable"]),
    }


_MAX_COUNT = 2**53  # exact in every JSON reader


def _is_count(value: object) -> TypeGuard[int]:
    return type(value) is int and 0 <= value < _MAX_COUNT


def _count(value: object) -> int:
    if not _is_count(value):
        raise ValueError("a count must be a whole number >= 0")
    return value


def parse_servers(text: str) -> list[str]:
    """``nats://HOST:PORT[,nats://…]`` (also tls://, user:password@) as a list; ValueError if not."""
    from urllib.parse import urlsplit

    servers = [part.strip() for part in text.split(",") if part.strip()]
    if not servers:
        raise ValueError("expected nats://HOST:PORT[,nats://HOST:PORT…]")
    for server in servers:
        try:
            url = urlsplit(server)
            port = url.port
        except ValueError:
            url, port = None, None
        if url is None or url.scheme not in ("nats", "tls") or not url.hostname or port is None:
            raise ValueError(f"expected nats://HOST:PORT, got {server!r}")
    return servers
