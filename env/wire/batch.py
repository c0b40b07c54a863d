"""Vectorised runs on the wire: one message a batch step per room instead of one per model.

All additive (README "Protocol additions"). A client that understands batches says so
with ``"BATCH": true`` in its REGISTER. Before a run of more than one instance the
environment asks our broker for a CENSUS of the per-step rooms; it vectorises only when
every other member of them said BATCH (a published component never does; a broker that
does not answer, such as swergio.Server, means one instance as before). Batch messages
use their own keys, never the published ones, so a published component could not
misread one even if it received it. Arrays of numbers travel as base64 of little-endian
floats (observations float32, which is what gymnasium's CartPole returns; logits float64):
exact, and far cheaper than hundreds of JSON numbers a step.
"""

from __future__ import annotations

import base64

import numpy as np
from numpy.typing import ArrayLike, NDArray

from cartpole_tui.env import defaults
from cartpole_tui.env.wire import protocol

BATCH = "BATCH"  # in REGISTER: true; in batch messages: the run's instance count
CENSUS = "CENSUS"
CENSUS_ROOMS = (protocol.OBSERVATION, protocol.LOGITS, protocol.ACTION)
MAX_INSTANCES = defaults.PARALLEL_MAX


def census_request() -> protocol.Message:
    """client → broker: who is in the per-step rooms (answered only to the asker)."""
    rooms = list(CENSUS_ROOMS)
    return {"ID": protocol.new_id(), "TYPE": protocol.COMMAND_CUSTOM, "TO_ROOM": protocol.COMMAND_ROOM, CENSUS: rooms}


def is_census_request(message: protocol.Message) -> bool:
    return message.get("TYPE") == protocol.COMMAND_CUSTOM and isinstance(message.get(CENSUS), list)


def census_answer(request: protocol.Message, rooms: dict[str, tuple[int, int]]) -> protocol.Message:
    """broker → asker: per room [other members, of them not BATCH]."""
    return {
        "ID": protocol.new_id(),
        "TYPE": protocol.COMMAND_CUSTOM,
        "SENT_BY": protocol.BROKER,
        "ROOT_ID": request.get("ID"),
        CENSUS: {room: list(counts) for room, counts in rooms.items()},
    }


def census_allows_batches(answer: protocol.Message) -> bool:
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
    listeners: int = rooms[protocol.OBSERVATION][0]
    return listeners >= 1


# --- the per-step messages --------------------------------------------------------------


def is_batch(message: protocol.Message) -> bool:
    return type(message.get(BATCH)) is int


def encode_array(values: ArrayLike, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(values, dtype=dtype).tobytes()).decode("ascii")


def _base64(text: object) -> bytes:
    if isinstance(text, (str, bytes)):  # what JSON gives: text, or no buffer at all
        try:
            return base64.b64decode(text, validate=True)
        except ValueError:  # binascii.Error is one
            pass
    raise protocol.ProtocolError("an array must be base64 text")


def decode_array(text: object, dtype: str, shape: tuple[int, ...]) -> NDArray[np.float64]:
    """A float64 array of ``shape`` from base64 ``text``; ProtocolError unless exactly that, finite."""
    raw = _base64(text)
    if len(raw) != np.dtype(dtype).itemsize * int(np.prod(shape)):
        raise protocol.ProtocolError(f"an array of shape {shape} was expected")
    array = np.frombuffer(raw, dtype=dtype).reshape(shape).astype(np.float64)
    if not np.isfinite(array).all():
        raise protocol.ProtocolError("arrays must hold finite numbers")
    return array


def observation(n: int, instances: list[int], observations: ArrayLike, deterministic: bool) -> protocol.Message:
    """environment → models, aggregation: ``instances`` are to act on ``observations``
    (the step's results, where there was a step, are added by the environment as
    STEPPED, REWARDS, DONES, ACTIONS)."""
    return {
        BATCH: n,
        "INSTANCES": instances,
        "OBSERVATIONS": encode_array(observations, "<f4"),
        "DETERMINISTIC": bool(deterministic),
    }


def actions(n: int, instances: list[int], chosen: list[int]) -> protocol.Message:
    """aggregation → environment: one action per instance."""
    return {BATCH: n, "INSTANCES": instances, "ACTIONS": chosen}


def int_list(value: object, what: str, low: int, high: int) -> list[int]:
    """``value`` as a list of ints in [low, high); ProtocolError otherwise."""
    if type(value) is not list or not all(type(x) is int and low <= x < high for x in value):
        raise protocol.ProtocolError(f"{what} must be a list of whole numbers in {low}..{high - 1}")
    return value


def parse_actions(message: protocol.Message, instances: list[int], n_actions: int) -> list[int]:
    """The ACTIONS of a batch ACTION for exactly ``instances``; ProtocolError otherwise."""
    if message.get("INSTANCES") != instances:
        raise protocol.ProtocolError(f"INSTANCES must be {instances}, got {message.get('INSTANCES')!r}")
    chosen = int_list(message.get("ACTIONS"), "ACTIONS", 0, n_actions)
    if len(chosen) != len(instances):
        raise protocol.ProtocolError(f"ACTIONS must hold {len(instances)} actions, got {len(chosen)}")
    return chosen


def parse_observation(message: protocol.Message, size: int) -> tuple[list[int], NDArray[np.float64]]:
    """(instances, observations (M, size)) of a batch observation; ProtocolError when malformed."""
    instances = int_list(message.get("INSTANCES"), "INSTANCES", 0, MAX_INSTANCES)
    return instances, decode_array(message.get("OBSERVATIONS"), "<f4", (len(instances), size))


def parse_parallel(message: protocol.Message, default: int) -> int:
    """The start's PARALLEL (instances asked for; additive), or ``default``."""
    value = message.get("PARALLEL", default)
    if type(value) is not int or not 1 <= value <= MAX_INSTANCES:
        raise protocol.ProtocolError(f"PARALLEL must be a whole number in 1..{MAX_INSTANCES}, got {value!r}")
    return value
