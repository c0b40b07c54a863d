"""Vectorised runs on the wire: one message a batch step per room instead of one per model.

All additive (README "Protocol additions"). A client that understands batches says so
with ``"BATCH": true`` in its REGISTER. Before a run of more than one instance the
environment asks our broker for a CENSUS of the per-step rooms; it vectorises only when
every other member of them said BATCH (a published component never does; a broker that
does not answer, such as swergio.Server, means one instance as before). Batch messages
use their own keys, never the published ones, so a published component could not
misread one even if it received it.
"""

from __future__ import annotations

import math

from cartpole_tui.env.wire import protocol

COMMAND_CUSTOM = "COMMAND/CUSTOM"
BATCH = "BATCH"  # in REGISTER: true; in batch messages: the run's instance count
CENSUS = "CENSUS"
CENSUS_ROOMS = (protocol.OBSERVATION, protocol.LOGITS, protocol.ACTION)
MAX_INSTANCES = 1024


def census_request() -> dict:
    """client → broker: who is in the per-step rooms (answered only to the asker)."""
    rooms = list(CENSUS_ROOMS)
    return {"ID": protocol.new_id(), "TYPE": COMMAND_CUSTOM, "TO_ROOM": protocol.COMMAND_ROOM, CENSUS: rooms}


def is_census_request(message: dict) -> bool:
    return message.get("TYPE") == COMMAND_CUSTOM and isinstance(message.get(CENSUS), list)


def census_answer(request: dict, rooms: dict[str, tuple[int, int]]) -> dict:
    """broker → asker: per room [other members, of them not BATCH]."""
    return {
        "ID": protocol.new_id(),
        "TYPE": COMMAND_CUSTOM,
        "SENT_BY": "_broker",
        "ROOT_ID": request.get("ID"),
        CENSUS: {room: list(counts) for room, counts in rooms.items()},
    }


def census_allows_batches(answer: dict) -> bool:
    """True when someone listens to observations and every other member of the per-step
    rooms said BATCH (rooms hold listeners only: our swarm sends LOGITS and ACTION
    without joining those rooms)."""
    rooms = answer.get(CENSUS)
    if not isinstance(rooms, dict):
        return False
    for room in CENSUS_ROOMS:
        counts = rooms.get(room)
        if not (isinstance(counts, list) and len(counts) == 2 and all(type(c) is int for c in counts)):
            return False
        if counts[1] != 0:
            return False
    return rooms[protocol.OBSERVATION][0] >= 1


# --- the per-step messages --------------------------------------------------------------


def is_batch(message: dict) -> bool:
    return type(message.get(BATCH)) is int


def observation(n: int, instances: list[int], observations, deterministic: bool, stepped=None) -> dict:
    """environment → models, aggregation: ``instances`` are to act on ``observations``;
    ``stepped`` = (instances, rewards, dones, actions) of the step just taken, if any."""
    payload = {
        BATCH: n,
        "INSTANCES": instances,
        "OBSERVATIONS": [[float(x) for x in obs] for obs in observations],
        "DETERMINISTIC": bool(deterministic),
    }
    if stepped is not None:
        which, rewards, dones, actions = stepped
        payload.update(STEPPED=which, REWARDS=[float(r) for r in rewards], DONES=dones, ACTIONS=actions)
    return payload


def actions(n: int, instances: list[int], chosen: list[int]) -> dict:
    """aggregation → environment: one action per instance."""
    return {BATCH: n, "INSTANCES": instances, "ACTIONS": chosen}


def int_list(value, what: str, low: int, high: int) -> list[int]:
    """``value`` as a list of ints in [low, high); ProtocolError otherwise."""
    if type(value) is not list or not all(type(x) is int and low <= x < high for x in value):
        raise protocol.ProtocolError(f"{what} must be a list of whole numbers in {low}..{high - 1}")
    return value


def parse_actions(message: dict, instances: list[int], n_actions: int) -> list[int]:
    """The ACTIONS of a batch ACTION for exactly ``instances``; ProtocolError otherwise."""
    if message.get("INSTANCES") != instances:
        raise protocol.ProtocolError(f"INSTANCES must be {instances}, got {message.get('INSTANCES')!r}")
    chosen = int_list(message.get("ACTIONS"), "ACTIONS", 0, n_actions)
    if len(chosen) != len(instances):
        raise protocol.ProtocolError(f"ACTIONS must hold {len(instances)} actions, got {len(chosen)}")
    return chosen


def parse_observation(message: dict, size: int) -> tuple[list[int], list[list[float]]]:
    """(instances, observations) of a batch observation; ProtocolError when malformed."""
    instances = int_list(message.get("INSTANCES"), "INSTANCES", 0, MAX_INSTANCES)
    observations = message.get("OBSERVATIONS")
    if type(observations) is not list or len(observations) != len(instances):
        raise protocol.ProtocolError("OBSERVATIONS must hold one observation per instance")
    for obs in observations:
        if type(obs) is not list or len(obs) != size or not all(type(x) in (int, float) for x in obs):
            raise protocol.ProtocolError(f"each observation must be {size} numbers")
        if not math.isfinite(sum(obs)):
            raise protocol.ProtocolError("observations must be finite")
    return instances, observations


def parse_parallel(message: dict, default: int) -> int:
    """The start's PARALLEL (instances asked for; additive), or ``default``."""
    value = message.get("PARALLEL", default)
    if type(value) is not int or not 1 <= value <= MAX_INSTANCES:
        raise protocol.ProtocolError(f"PARALLEL must be a whole number in 1..{MAX_INSTANCES}, got {value!r}")
    return value
