"""The swergio wire contract of the CartPole network, in one place.

Framing (swergio 0.0.2): a 10-byte ASCII-decimal header, left-justified and padded
with spaces, followed by one UTF-8 JSON object. Rooms and payloads follow the
published RLGym example; everything this project adds is additive (extra keys and
extra ``STATUS`` values that published components ignore). The additions are
listed in the README under "Protocol additions".
"""

from __future__ import annotations

import json
import math
import uuid
from typing import Any

from cartpole_tui.env import defaults

HEADER_LENGTH = 10
FORMAT = "utf-8"
DEFAULT_MAX_FRAME = 16 * 1024 * 1024
MAX_EPISODES = defaults.EPISODES_MAX  # NR_OF_EPISODE: the limits the command line and the app check too
MAX_SEED = defaults.SEED_MAX
MAX_RUN_ID = 64  # RUN_ID is echoed in every step's ROOT_ID and stored

# Message type ids (swergio.MESSAGE_TYPE.*.id).
CUSTOM = "DATA/CUSTOM"
FORWARD = "DATA/FORWARD"
GRADIENT = "DATA/GRADIENT"
REGISTER = "COMMAND/REGISTER"
DISCONNECT = "COMMAND/DISCONNECT"
JOINROOM = "COMMAND/JOINROOM"
LEAVEROOM = "COMMAND/LEAVEROOM"
LOG_MESSAGES = "LOG/MESSAGES"

# Rooms.
COMMAND_ROOM = "_command"
LOGGING_ROOM = "_logging"
STATS_ROOM = "_stats"  # added: our broker sends its counters here every STATS_INTERVAL s
STATS_INTERVAL = 1.0
LOG_CUSTOM = "LOG/CUSTOM"
RESERVED_ROOMS = (COMMAND_ROOM, LOGGING_ROOM)
CONTROL = "control"
OBSERVATION = "observation"
LOGITS = "logits"
ACTION = "action"
EVOLUTION = "evolution"
NETWORK_ROOMS = (CONTROL, OBSERVATION, LOGITS, ACTION, EVOLUTION)

# STATUS values on the control room. ENV_DONE and EVO_DONE are the published ones.
ENV_DONE = "ENV_DONE"
EVO_DONE = "EVO_DONE"
EPISODE_DONE = "EPISODE_DONE"  # added: one per finished episode
ENV_ERROR = "ENV_ERROR"  # added: a bad message reached the environment


class FrameError(ValueError):
    """A frame that breaks the wire format; the connection that sent it is closed."""


class ProtocolError(ValueError):
    """A well-formed message whose content is not what the contract allows."""


# C0 controls, DEL and C1 controls (ESC, CSI 0x9b, ...): never let a peer's text reach a terminal raw.
_CONTROLS = {c: " " if c in (9, 10, 13) else "\ufffd" for c in (*range(0x20), *range(0x7F, 0xA0))}
TEXT_LIMIT = 300


def clean_text(value: Any, limit: int = TEXT_LIMIT) -> str:
    """A peer's value as one printable line: control characters replaced, at most ``limit`` chars."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.translate(_CONTROLS)


def new_id() -> str:
    return uuid.uuid4().hex


# --- framing -------------------------------------------------------------------


def encode_body(message: dict) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode(FORMAT)


def frame_bytes(body: bytes) -> bytes:
    return f"{len(body):<{HEADER_LENGTH}}".encode(FORMAT) + body


def encode_frame(message: dict) -> bytes:
    """One message as one frame, ready for a single write."""
    return frame_bytes(encode_body(message))


def parse_header(header: bytes, max_frame: int = DEFAULT_MAX_FRAME) -> int:
    """The payload length a header announces; FrameError when it is not a valid header."""
    text = header.strip(b" ")
    if not text.isdigit() or len(header) != HEADER_LENGTH:
        raise FrameError(f"bad header {header!r}")
    length = int(text)
    if length > max_frame:
        raise FrameError(f"frame of {length} bytes is over the {max_frame}-byte cap")
    return length


def decode_body(body: bytes) -> dict:
    """The JSON object in a payload; FrameError when it is not UTF-8 JSON with a TYPE."""
    try:
        message = json.loads(body.decode(FORMAT))
    except UnicodeDecodeError as error:
        raise FrameError(f"payload is not UTF-8 ({error.reason})") from None
    except ValueError as error:
        raise FrameError(f"payload is not JSON ({error})") from None
    except RecursionError:
        raise FrameError("payload is JSON nested too deeply") from None
    if not isinstance(message, dict):
        raise FrameError(f"payload is a JSON {type(message).__name__}, not an object")
    if not isinstance(message.get("TYPE"), str):
        raise FrameError("message has no TYPE")
    return message


# --- builders --------------------------------------------------------------------


def custom(room: str | None = None, **payload: Any) -> dict:
    """A DATA/CUSTOM message, addressed to ``room`` when one is given."""
    message = {"ID": new_id(), "TYPE": CUSTOM, **payload}
    if room is not None:
        message["TO_ROOM"] = room
    return message


def start_run(episodes: int, deterministic: bool, run_id: str | None = None, seed: int | None = None) -> dict:
    """control → environment: start a run. RUN_ID and SEED are additions."""
    message = custom(CONTROL, NR_OF_EPISODE=episodes, DETERMINISTIC=bool(deterministic))
    message["RUN_ID"] = run_id or new_id()
    if seed is not None:
        message["SEED"] = seed
    return message


def stop_run() -> dict:
    """control → environment (added): end the current run early."""
    return custom(CONTROL, STOP=True)


def evolution_request() -> dict:
    return custom(CONTROL, EVOLUTION=True)


def evo_done() -> dict:
    return custom(CONTROL, STATUS=EVO_DONE)


def env_done(avg_score: float, run_id: str, episodes: int, stopped: bool = False) -> dict:
    """environment → control: a run is over. EPISODES, STOPPED and RUN_ID are additions."""
    return custom(
        CONTROL,
        ROOT_ID=run_id,
        STATUS=ENV_DONE,
        AVG_SCORE=float(avg_score),
        EPISODES=episodes,
        STOPPED=stopped,
        RUN_ID=run_id,
    )


def episode_done(run_id: str, episode: int, score: float, steps: int) -> dict:
    """environment → control (added): one episode of a run finished."""
    return custom(
        CONTROL,
        ROOT_ID=run_id,
        STATUS=EPISODE_DONE,
        EPISODE=episode,
        SCORE=float(score),
        STEPS=steps,
        RUN_ID=run_id,
    )


def env_error(error: str, run_id: str | None = None) -> dict:
    """environment → control (added): a message was refused; the component keeps running."""
    return custom(CONTROL, STATUS=ENV_ERROR, ERROR=error, RUN_ID=run_id)


def observation(obs, deterministic: bool, reward=None, done=None, action=None) -> dict:
    """Payload of an environment → models message (swergio adds TYPE and TO_ROOM)."""
    payload = {"OBSERVATION": [float(x) for x in obs], "DETERMINISTIC": bool(deterministic)}
    if reward is not None:
        payload.update(REWARD=float(reward), DONE=bool(done), ACTION=action)
    return payload


def broker_stats(stats: dict) -> dict:
    """broker → members of the stats room (added): clients, rooms [members, messages, bytes]."""
    return {"ID": new_id(), "TYPE": LOG_CUSTOM, "TO_ROOM": STATS_ROOM, "SENT_BY": "_broker", "STATS": stats}


# --- validators --------------------------------------------------------------------


def parse_start(message: dict) -> tuple[int, bool, int | None]:
    """(episodes, deterministic, seed) of a start message; ProtocolError when invalid."""
    episodes = message.get("NR_OF_EPISODE")
    if isinstance(episodes, bool) or not isinstance(episodes, int) or not 1 <= episodes <= MAX_EPISODES:
        raise ProtocolError(f"NR_OF_EPISODE must be a whole number 1..{MAX_EPISODES}, got {clean_text(episodes, 40)}")
    deterministic = message.get("DETERMINISTIC", False)
    if not isinstance(deterministic, bool):
        raise ProtocolError(f"DETERMINISTIC must be true or false, got {deterministic!r}")
    seed = message.get("SEED")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED):
        raise ProtocolError(f"SEED must be a whole number 0..{MAX_SEED}, got {clean_text(seed, 40)}")
    return episodes, deterministic, seed


def parse_run_id(message: dict) -> str | None:
    """The start's RUN_ID (an addition): None when absent; ProtocolError when not a short string."""
    run_id = message.get("RUN_ID")
    if run_id is None:
        return None
    if not isinstance(run_id, str) or not 0 < len(run_id) <= MAX_RUN_ID:
        raise ProtocolError(f"RUN_ID must be a string of 1..{MAX_RUN_ID} characters")
    return run_id


def parse_action(message: dict, n_actions: int) -> int:
    """The action index of an ACTION message; ProtocolError when it is not a valid one."""
    if "ACTION" not in message:
        raise ProtocolError("ACTION is missing")
    action = message["ACTION"]
    if not isinstance(action, list) or len(action) != 1:
        raise ProtocolError(f"ACTION must be a list of one int, got {action!r}")
    value = action[0]
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(f"ACTION must hold an int, got {value!r}")
    if not 0 <= value < n_actions:
        raise ProtocolError(f"ACTION {value} is out of range 0..{n_actions - 1}")
    return value


def control_status(message: dict) -> str | None:
    """The STATUS of a control-room message, or None when it has none."""
    status = message.get("STATUS")
    return status if isinstance(status, str) else None


def is_start(message: dict) -> bool:
    return "NR_OF_EPISODE" in message


def is_stop(message: dict) -> bool:
    return message.get("STOP") is True


def is_evolution_request(message: dict) -> bool:
    return message.get("EVOLUTION") is True


# --- our evolution's population report (additive keys of EVO_DONE) ------------------

MAX_REPORTED_MODELS = defaults.MODELS_MAX  # a report about more models is not ours: ignored


def _finite(value) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def evolution_report(msg: dict) -> dict:
    """GENERATION, FITNESS, ELITE, DIVERSITY of an EVO_DONE, range-checked; what fails a check is left out.

    Keys of the result: ``generation`` (int ≥ 0), ``fitness`` (tuple of finite floats),
    ``elite`` (an index into fitness), ``diversity`` (finite, ≥ 0).
    """
    out: dict = {}
    generation = msg.get("GENERATION")
    if isinstance(generation, int) and not isinstance(generation, bool) and 0 <= generation < 2**53:
        out["generation"] = generation
    fitness = msg.get("FITNESS")
    if isinstance(fitness, list) and 0 < len(fitness) <= MAX_REPORTED_MODELS:
        values = [_finite(v) for v in fitness]
        if None not in values:
            out["fitness"] = tuple(values)
            elite = msg.get("ELITE")
            if isinstance(elite, int) and not isinstance(elite, bool) and 0 <= elite < len(values):
                out["elite"] = elite
    diversity = _finite(msg.get("DIVERSITY"))
    if diversity is not None and diversity >= 0:
        out["diversity"] = diversity
    return out
