"""Vectorised runs on the wire: one message a batch step per room instead of one per model.

All additive (README "Protocol additions"). A client that understands batches says so
with ``"BATCH": true`` in its REGISTER. Before a run of more than one instance the
environment asks our broker for a CENSUS of the per-step rooms; it vectorises only when
every other member of them said BATCH (a published component never does; a broker that
does not answer, such as swergio.Server, means one instance as before). Batch messages
use their own keys, never the published ones, so a published component could not
misread one even if it received it. Every per-instance array travels as base64 of
little-endian numbers (:data:`INDEX` instance numbers, :data:`ACTION` actions, :data:`FLAG`
dones, rewards float64, observations and logits float32, which is what gymnasium's CartPole
returns): at 1,000 instances a step's JSON lists of numbers cost the broker, the models and
the aggregation each more to parse than everything else they did (python -m bench.swarm).
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
INDEX = "<u2"  # instance numbers (INSTANCES, STEPPED): MAX_INSTANCES fits
ACTION = "<i4"  # ACTIONS
FLAG = "|u1"  # DONES: 0 or 1
REWARD = "<f8"  # REWARDS: exactly what the environment returned
OBSERVATION = "<f4"  # OBSERVATIONS
LOGIT = "<f4"  # BATCH_LOGITS
WEIGHT = "<f8"  # BATCH_WEIGHTS: exactly the models' float64 weights
BATCH_WEIGHTS = "BATCH_WEIGHTS"  # in our evolution's GET: true; in a pool's answer and in SET: the weights


def weight_parts(rows: int, width: int) -> list[slice]:
    """The rows of ``rows`` models of ``width`` weights, as one BATCH_WEIGHTS message each carries:
    at most BATCH_WEIGHTS_MAX_BYTES of weights (one model at least)."""
    per = max(1, defaults.BATCH_WEIGHTS_MAX_BYTES // (width * np.dtype(WEIGHT).itemsize))
    return [slice(start, start + per) for start in range(0, rows, per)]


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
    """Numbers as base64 of ``dtype`` (whole numbers must fit it: the sender's own)."""
    return base64.b64encode(np.ascontiguousarray(values, dtype=dtype).tobytes()).decode("ascii")


def _base64(text: object) -> bytes:
    if isinstance(text, (str, bytes)):  # what JSON gives: text, or no buffer at all
        try:
            return base64.b64decode(text, validate=True)
        except ValueError:  # binascii.Error is one
            pass
    raise protocol.ProtocolError("an array must be base64 text")


def decode_ints(text: object, dtype: str, low: int, high: int, count: int | None = None) -> NDArray[np.intp]:
    """Whole numbers in [low, high) from base64 ``text`` (exactly ``count`` of them when given);
    ProtocolError otherwise."""
    raw = _base64(text)
    size = np.dtype(dtype).itemsize
    if len(raw) % size or (count is not None and len(raw) != count * size):
        raise protocol.ProtocolError(f"{count if count is not None else 'whole'} numbers of {size} bytes were expected")
    values = np.frombuffer(raw, dtype=dtype).astype(np.intp)
    if values.size and (values.min() < low or values.max() >= high):
        raise protocol.ProtocolError(f"numbers must be in {low}..{high - 1}")
    return values


def decode_array(text: object, dtype: str, shape: tuple[int, ...]) -> NDArray[np.float64]:
    """A float64 array of ``shape`` from base64 ``text``; ProtocolError unless exactly that, finite."""
    raw = _base64(text)
    if len(raw) != np.dtype(dtype).itemsize * int(np.prod(shape)):
        raise protocol.ProtocolError(f"an array of shape {shape} was expected")
    array = np.frombuffer(raw, dtype=dtype).reshape(shape).astype(np.float64)
    if not np.isfinite(array).all():
        raise protocol.ProtocolError("arrays must hold finite numbers")
    return array


def observation(n: int, instances: ArrayLike, observations: ArrayLike, deterministic: bool) -> protocol.Message:
    """environment → models, aggregation: ``instances`` are to act on ``observations``
    (the step's results, where there was a step, are added by the environment as
    STEPPED, REWARDS, DONES, ACTIONS: :func:`results`)."""
    return {
        BATCH: n,
        "INSTANCES": encode_array(instances, INDEX),
        "OBSERVATIONS": encode_array(observations, OBSERVATION),
        "DETERMINISTIC": bool(deterministic),
    }


def results(stepped: ArrayLike, rewards: ArrayLike, dones: ArrayLike, chosen: ArrayLike) -> protocol.Message:
    """What a batch step did, added to the next batch observation: which instances stepped, and
    their rewards, dones and actions."""
    return {
        "STEPPED": encode_array(stepped, INDEX),
        "REWARDS": encode_array(rewards, REWARD),
        "DONES": encode_array(dones, FLAG),
        "ACTIONS": encode_array(chosen, ACTION),
    }


def actions(n: int, instances: str, chosen: ArrayLike) -> protocol.Message:
    """aggregation → environment: one action per instance; ``instances`` is the INSTANCES text
    of the observation answered, passed on as it came."""
    return {BATCH: n, "INSTANCES": instances, "ACTIONS": encode_array(chosen, ACTION)}


_MOST_INDEX_TEXT = 4 * -(-MAX_INSTANCES * np.dtype(INDEX).itemsize // 3)  # base64 of MAX_INSTANCES numbers


def instance_numbers(text: object, key: str = "INSTANCES") -> NDArray[np.intp]:
    """Distinct instance numbers (so at most MAX_INSTANCES) from base64 ``text``; ProtocolError
    otherwise. Repeated ones were taken: each is a row of every model's work (K x M x 16 floats),
    so a frame of 16 MiB named ~700,000 rows, and the models' answer took tens of GB."""
    if isinstance(text, str) and len(text) > _MOST_INDEX_TEXT:  # refused before it is decoded
        raise protocol.ProtocolError(f"{key} must be at most {MAX_INSTANCES} distinct instance numbers")
    values = decode_ints(text, INDEX, 0, MAX_INSTANCES)
    if values.size and np.bincount(values).max() > 1:
        raise protocol.ProtocolError(f"{key} must be at most {MAX_INSTANCES} distinct instance numbers")
    return values


def instances_of(message: protocol.Message) -> NDArray[np.intp]:
    """The INSTANCES of a batch message; ProtocolError when malformed."""
    return instance_numbers(message.get("INSTANCES"))


def parse_actions(message: protocol.Message, instances: str, count: int, n_actions: int) -> NDArray[np.intp]:
    """The ``count`` ACTIONS of a batch ACTION answering exactly the observation whose INSTANCES
    text was ``instances``; ProtocolError otherwise."""
    if message.get("INSTANCES") != instances:
        raise protocol.ProtocolError("INSTANCES must be those of the observation answered")
    try:
        return decode_ints(message.get("ACTIONS"), ACTION, 0, n_actions, count)
    except protocol.ProtocolError as error:
        raise protocol.ProtocolError(f"ACTIONS must hold {count} actions in 0..{n_actions - 1}: {error}") from None


def parse_results(message: protocol.Message) -> tuple[NDArray[np.intp], NDArray[np.float64], NDArray[np.bool_]]:
    """(stepped, rewards, dones) of a batch observation that follows a step; ProtocolError when
    malformed."""
    stepped = instance_numbers(message.get("STEPPED"), "STEPPED")
    rewards = decode_array(message.get("REWARDS"), REWARD, (len(stepped),))
    dones = decode_ints(message.get("DONES"), FLAG, 0, 2, len(stepped)).astype(bool)
    return stepped, rewards, dones


def step_results(message: protocol.Message) -> tuple[NDArray[np.intp], NDArray[np.float64], NDArray[np.bool_]] | None:
    """:func:`parse_results` of a batch observation, or None for a run's first (no STEPPED)."""
    return None if message.get("STEPPED") is None else parse_results(message)


def parse_observation(message: protocol.Message, size: int) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
    """(instances, observations (M, size)) of a batch observation; ProtocolError when malformed."""
    instances = instances_of(message)
    return instances, decode_array(message.get("OBSERVATIONS"), OBSERVATION, (len(instances), size))


def parse_parallel(message: protocol.Message, default: int) -> int:
    """The start's PARALLEL (instances asked for; additive), or ``default``."""
    value = message.get("PARALLEL", default)
    if type(value) is not int or not 1 <= value <= MAX_INSTANCES:
        raise protocol.ProtocolError(f"PARALLEL must be a whole number in 1..{MAX_INSTANCES}, got {value!r}")
    return value
