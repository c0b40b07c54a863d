"""The broker's figures: clients, rooms, refused and undeliverable frames.

:func:`snapshot` copies them out of the broker's :class:`~cartpole_tui.env.wire.rooms.Rooms`
(safe from any thread); :func:`bounded` is the copy sent to the ``_stats`` room every
``protocol.STATS_INTERVAL`` (an addition): the busiest rooms as [members, messages, bytes]
and the first names, each name at most STATS_MAX_NAME characters, so one message a second
stays small however many and however long they are.
"""

from __future__ import annotations

from typing import Any, TypedDict

from cartpole_tui.env.wire.protocol import UNREGISTERED
from cartpole_tui.env.wire.rooms import RoomCounters, Rooms

STATS_MAX_ROOMS = 100  # the busiest rooms in a stats message; STATS_MAX_CLIENTS names
STATS_MAX_CLIENTS = 200
STATS_MAX_NAME = 100  # characters: a longer client name is cut short, a room so named left out


class BrokerStats(TypedDict):
    address: str
    clients: list[str]  # every peer's name, "(unregistered)" before it has one; sorted
    rooms: dict[str, RoomCounters]
    frames_refused: int  # malformed frames (their senders were closed)
    undeliverable: int  # frames that reached nobody
    refused: int  # connections turned away by admission
    registers_refused: int  # REGISTERs beyond the bound on one connection


def snapshot(
    rooms: Rooms, address: str, *, frames_refused: int, undeliverable: int, refused: int, registers_refused: int
) -> BrokerStats:
    with rooms.lock:
        counters = {
            room: RoomCounters(len(rooms.members.get(room, ())), c.messages, c.bytes)
            for room, c in rooms.counters.items()
        }
        clients = sorted(p.name or UNREGISTERED for p in rooms.peers)
    return {
        "address": address,
        "clients": clients,
        "rooms": counters,
        "frames_refused": frames_refused,
        "undeliverable": undeliverable,
        "refused": refused,
        "registers_refused": registers_refused,
    }


def bounded(stats: BrokerStats) -> dict[str, Any]:
    """``stats`` as the ``_stats`` room gets them (JSON): at most STATS_MAX_ROOMS rooms and
    STATS_MAX_CLIENTS names, with ``all_clients`` the number of names in all."""
    named = [(room, c) for room, c in stats["rooms"].items() if len(room) <= STATS_MAX_NAME]
    busiest = sorted(named, key=lambda item: -item[1].messages)[:STATS_MAX_ROOMS]
    rooms = {room: [c.members, c.messages, c.bytes] for room, c in busiest}
    clients = [_shortened(name) for name in stats["clients"][:STATS_MAX_CLIENTS]]
    return {**stats, "rooms": rooms, "clients": clients, "all_clients": len(stats["clients"])}


def _shortened(name: str) -> str:
    return name if len(name) <= STATS_MAX_NAME else name[: STATS_MAX_NAME - 1] + "…"
