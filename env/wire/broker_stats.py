"""The broker's figures: clients, rooms, refused and undeliverable frames.

:func:`snapshot` copies them out of the broker's :class:`~cartpole_tui.env.wire.rooms.Rooms`
(safe from any thread); :func:`bounded` is the copy sent to the ``_stats`` room every
``protocol.STATS_INTERVAL`` (an addition): the busiest rooms as [members, messages, bytes]
and the first names, so one message a second stays small however many there are.
"""

from __future__ import annotations

from typing import Any, TypedDict

from cartpole_tui.env.wire.rooms import RoomCounters, Rooms

STATS_MAX_ROOMS = 100  # the busiest rooms in a stats message; STATS_MAX_CLIENTS names
STATS_MAX_CLIENTS = 200


class BrokerStats(TypedDict):
    address: str
    clients: list[str]  # every peer's name, "(unregistered)" before it has one; sorted
    rooms: dict[str, RoomCounters]
    frames_refused: int  # malformed frames (their senders were closed)
    undeliverable: int  # frames that reached nobody
    refused: int  # connections turned away by admission


def snapshot(rooms: Rooms, address: str, *, frames_refused: int, undeliverable: int, refused: int) -> BrokerStats:
    with rooms.lock:
        counters = {
            room: RoomCounters(len(rooms.members.get(room, ())), c.messages, c.bytes)
            for room, c in rooms.counters.items()
        }
        clients = sorted(p.name or "(unregistered)" for p in rooms.peers)
    return {
        "address": address,
        "clients": clients,
        "rooms": counters,
        "frames_refused": frames_refused,
        "undeliverable": undeliverable,
        "refused": refused,
    }


def bounded(stats: BrokerStats) -> dict[str, Any]:
    """``stats`` as the ``_stats`` room gets them (JSON): at most STATS_MAX_ROOMS rooms and
    STATS_MAX_CLIENTS names, with ``all_clients`` the number of names in all."""
    busiest = sorted(stats["rooms"].items(), key=lambda item: -item[1].messages)[:STATS_MAX_ROOMS]
    rooms = {room: [c.members, c.messages, c.bytes] for room, c in busiest}
    clients = stats["clients"][:STATS_MAX_CLIENTS]
    return {**stats, "rooms": rooms, "clients": clients, "all_clients": len(stats["clients"])}
