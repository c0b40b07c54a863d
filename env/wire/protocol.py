"""The swergio wire contract of the CartPole network, in one place.

Framing (swergio 0.0.2): a 10-byte ASCII-decimal header, left-justified and padded
with spaces, followed by one UTF-8 JSON object. Rooms and payloads follow the
published RLGym example; everything this project adds is additive (extra keys and
extra ``STATUS`` values that published components ignore). The additions are
listed in the README under "Protocol additions".
"""

from __future__ import annotations

import base64
import json
import logging
import math
import sys
import time
import uuid
from collections.abc import Iterable
from itertools import accumulate
from typing import Any, SupportsFloat

from cartpole_tui.env import defaults
from cartpole_tui.env.events import EnvSpaces, FrameSeen

HEADER_LENGTH = 10
FORMAT = "utf-8"
DEFAULT_MAX_FRAME = 16 * 1024 * 1024
MAX_EPISODES = defaults.EPISODES_MAX  # NR_OF_EPISODE: the limits the command line and the app check too
MAX_SEED = defaults.SEED_MAX
MAX_RUN_ID = 64  # RUN_ID is echoed in every step's ROOT_ID and stored
MAX_SCORE = defaults.SCORE_MAX  # |SCORE| and |AVG_SCORE| of an episode or run: far beyond any real return
MAX_EPISODE_STEPS = 10**9  # STEPS of one episode: times MAX_EPISODES still fits SQLite's 2**63
# Levels of nesting a component's message may have (a flat JSON object is 1): the broker
# refuses deeper ones, so nothing downstream recurses far on a peer's data. A receiver
# accepts one level more: the broker's ``_logging`` copy wraps a message in another object.
MAX_DEPTH = 64
RECEIVED_MAX_DEPTH = MAX_DEPTH + 1

# Message type ids (swergio.MESSAGE_TYPE.*.id).
CUSTOM = "DATA/CUSTOM"
FORWARD = "DATA/FORWARD"
GRADIENT = "DATA/GRADIENT"
REGISTER = "COMMAND/REGISTER"
DISCONNECT = "COMMAND/DISCONNECT"
JOINROOM = "COMMAND/JOINROOM"
LEAVEROOM = "COMMAND/LEAVEROOM"
COMMAND_CUSTOM = "COMMAND/CUSTOM"
LOG_MESSAGES = "LOG/MESSAGES"

# Rooms.
COMMAND_ROOM = "_command"
LOGGING_ROOM = "_logging"
STATS_ROOM = "_stats"  # added: our broker sends its counters here every STATS_INTERVAL s
STATS_INTERVAL = 1.0
# s after the last stats at the soonest that a client joining the stats room hears them: a probe
# looking for another environment waited up to a second and, at ENV_PROBE_TIMEOUT, missed it
STATS_ON_JOIN_GAP = 0.1
UNREGISTERED = "(unregistered)"  # the stats' name of a client that has not registered yet
LOG_CUSTOM = "LOG/CUSTOM"
RESERVED_ROOMS = (COMMAND_ROOM, LOGGING_ROOM)
BROKER = "_broker"  # the SENT_BY of what the broker itself sends
CONTROL = "control"
OBSERVATION = "observation"
LOGITS = "logits"
ACTION = "action"
EVOLUTION = "evolution"
NETWORK_ROOMS = (CONTROL, OBSERVATION, LOGITS, ACTION, EVOLUTION)
CART = "cart"  # added: our environment's instance 0, at most CART_HZ times a second, for viewers
CART_HZ = 10.0
MAX_CART_VALUES = 64

# STATUS values on the control room. ENV_DONE and EVO_DONE are the published ones.
ENV_DONE = "ENV_DONE"
EVO_DONE = "EVO_DONE"
EPISODE_DONE = "EPISODE_DONE"  # added: one per finished episode
EPISODES_DONE = "EPISODES_DONE"  # added: the episodes that ended in one step of a vectorised run
ENV_ERROR = "ENV_ERROR"  # added: a bad message reached the environment
WRONG_ENV = "WRONG_ENV"  # added: a component built for another environment than the run's (not fed)
SCHEDULE_ENDED = "SCHEDULE_ENDED"  # added: control → control, the schedule named by SCHEDULE ended
SCHEDULE = "SCHEDULE"  # added: the schedule a START belongs to (an id its control room made)
# added to SCHEDULE_ENDED: how it ended ("left": its control room quit or its tab closed mid-schedule)
SCHEDULE_ENDINGS = ("solved", "not solved", "stopped", "failed", "left")


Message = dict[str, Any]  # one decoded swergio message: a JSON object with a TYPE


class FrameError(ValueError):
    """A frame that breaks the wire format; the connection that sent it is closed."""


class ProtocolError(ValueError):
    """A well-formed message whose content is not what the contract allows."""


# C0 controls, DEL and C1 controls (ESC, CSI 0x9b, ...): never let a peer's text reach a terminal raw.
_CONTROLS = {c: " " if c in (9, 10, 13) else "\ufffd" for c in (*range(0x20), *range(0x7F, 0xA0))}
TEXT_LIMIT = 300


def clean_text(value: Any, limit: int = TEXT_LIMIT) -> str:
    """A peer's value as one printable line: control characters and lone surrogates replaced,
    at most ``limit`` chars."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    if not encodable(text):  # a lone surrogate: no terminal, file or SQLite takes it
        text = text.encode(FORMAT, "replace").decode(FORMAT)
    return text.translate(_CONTROLS)


class PrintableLogs(logging.Formatter):
    """Log lines for a terminal: a peer's text in a message (a client's NAME, a model's id) has its
    control characters replaced as :func:`clean_text` does, newlines too (no forged line); a
    traceback keeps its lines, each cleaned the same way."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return super().formatMessage(record).translate(_CONTROLS)

    def format(self, record: logging.LogRecord) -> str:
        return "\n".join(line.translate(_CONTROLS) for line in super().format(record).split("\n"))


def printable_logs(level: int, line: str) -> None:
    """Log to standard error at ``level``, each line as ``line`` says, through :class:`PrintableLogs`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(PrintableLogs(line))
    logging.basicConfig(level=level, handlers=[handler])


def encodable(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8 (JSON's ``\\ud800`` decodes to a lone surrogate, which cannot)."""
    if text.isascii():
        return True
    try:
        text.encode(FORMAT)
    except UnicodeEncodeError:
        return False
    return True


def new_id() -> str:
    return uuid.uuid4().hex


# --- framing -------------------------------------------------------------------


def encode_body(message: Message) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode(FORMAT)


def frame_bytes(body: bytes) -> bytes:
    return f"{len(body):<{HEADER_LENGTH}}".encode(FORMAT) + body


def encode_frame(message: Message) -> bytes:
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


def decode_body(body: bytes, max_depth: int = RECEIVED_MAX_DEPTH) -> Message:
    """The JSON object in a payload; FrameError when it is not UTF-8 JSON with a TYPE, or
    nests deeper than ``max_depth``."""
    message = decode_json(body, max_depth)
    if not isinstance(message, dict):
        raise FrameError(f"payload is a JSON {type(message).__name__}, not an object")
    if not isinstance(message.get("TYPE"), str):
        raise FrameError("message has no TYPE")
    return message


def decode_json(body: bytes, max_depth: int = RECEIVED_MAX_DEPTH) -> Any:
    """Any JSON value in ``body``; FrameError when it is not UTF-8 JSON nesting at most
    ``max_depth`` levels. The depth is measured on the bytes before the parser sees them,
    so the parser (which recurses once per level) never goes deeper than that."""
    if nests_deeper_than(body, max_depth):
        raise FrameError(f"payload is JSON nested too deeply (more than {max_depth} levels)")
    try:
        return json.loads(body.decode(FORMAT))
    except UnicodeDecodeError as error:
        raise FrameError(f"payload is not UTF-8 ({error.reason})") from None
    except ValueError as error:
        raise FrameError(f"payload is not JSON ({error})") from None
    except RecursionError:  # cannot happen within max_depth; kept so no input can escape as one
        raise FrameError("payload is JSON nested too deeply") from None


_BRACKET_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 and -1 as signed bytes
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))


def nests_deeper_than(body: bytes, limit: int) -> bool:
    """Whether the arrays and objects of JSON ``body`` nest more than ``limit`` levels; a body
    with no more than ``limit`` opening brackets in all cannot, and is not looked at further."""
    return body.count(b"[") + body.count(b"{") > limit and nesting(body) > limit


def nesting(body: bytes) -> int:
    """How deep the arrays and objects of JSON ``body`` nest (0 for a scalar). For text that is
    not JSON the figure means nothing (the parser refuses it anyway). Linear and in C: no
    Python step per byte or per bracket, and no recursion."""
    if b"\\" in body:  # escaped backslashes, then escaped quotes: the quotes left delimit strings
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    if b'"' in body:
        body = b"".join(body.split(b'"')[::2])  # what lies outside the strings: every other piece
    steps = memoryview(body.translate(_BRACKET_STEPS, _NOT_BRACKETS)).cast("b")
    return max(accumulate(steps), default=0)


# --- builders --------------------------------------------------------------------


def custom(room: str | None = None, **payload: Any) -> Message:
    """A DATA/CUSTOM message, addressed to ``room`` when one is given."""
    message = {"ID": new_id(), "TYPE": CUSTOM, **payload}
    if room is not None:
        message["TO_ROOM"] = room
    return message


def start_run(
    episodes: int,
    deterministic: bool,
    run_id: str | None = None,
    seed: int | None = None,
    schedule: str | None = None,
) -> Message:
    """control → environment: start a run. RUN_ID, SEED and SCHEDULE (a schedule's run: other
    control rooms hear it) are additions."""
    message = custom(CONTROL, NR_OF_EPISODE=episodes, DETERMINISTIC=bool(deterministic))
    message["RUN_ID"] = run_id or new_id()
    if seed is not None:
        message["SEED"] = seed
    if schedule is not None:
        message[SCHEDULE] = schedule
    return message


def schedule_ended(schedule: str, ending: str | None = None) -> Message:
    """control → control (added): the schedule whose STARTs carried ``schedule`` ended, and how
    (one of ``SCHEDULE_ENDINGS``, as ENDING)."""
    message = custom(CONTROL, STATUS=SCHEDULE_ENDED, SCHEDULE=schedule)
    if ending is not None:
        message["ENDING"] = ending
    return message


def parse_schedule_ending(message: Message) -> str | None:
    """How a SCHEDULE_ENDED says its schedule ended; None when it says not, or not in our words."""
    ending = message.get("ENDING")
    return ending if ending in SCHEDULE_ENDINGS else None


def parse_schedule(message: Message) -> str | None:
    """The SCHEDULE a message names (a START, SCHEDULE_ENDED); None when it names none or no valid one."""
    value = message.get(SCHEDULE)
    return value if valid_run_id(value) else None


def stop_run() -> Message:
    """control → environment (added): end the current run early."""
    return custom(CONTROL, STOP=True)


def evolution_request() -> Message:
    return custom(CONTROL, EVOLUTION=True)


def evo_done() -> Message:
    return custom(CONTROL, STATUS=EVO_DONE)


def env_done(
    avg_score: float, run_id: str, episodes: int, stopped: bool = False, ended_at: float | None = None
) -> Message:
    """environment → control: a run is over. EPISODES, STOPPED, RUN_ID and ENDED_AT (when, by the
    environment's clock) are additions."""
    return custom(
        CONTROL,
        ROOT_ID=run_id,
        STATUS=ENV_DONE,
        AVG_SCORE=float(avg_score),
        EPISODES=episodes,
        STOPPED=stopped,
        RUN_ID=run_id,
        ENDED_AT=float(time.time() if ended_at is None else ended_at),
    )


def episode_done(run_id: str, episode: int, score: float, steps: int, ended_at: float) -> Message:
    """environment → control (added): one episode of a run finished, at ``ended_at`` (Unix
    seconds, the environment's clock, as its RUN_STARTED's STARTED)."""
    return custom(
        CONTROL,
        ROOT_ID=run_id,
        STATUS=EPISODE_DONE,
        EPISODE=episode,
        SCORE=float(score),
        STEPS=steps,
        RUN_ID=run_id,
        ENDED_AT=float(ended_at),
    )


def wrong_env(error: str, run_id: object) -> Message:
    """swarm → control (added): its models were built for another environment than the run's."""
    return custom(CONTROL, STATUS=WRONG_ENV, ERROR=error, RUN_ID=run_id if valid_run_id(run_id) else None)


def env_error(error: str, run_id: str | None = None) -> Message:
    """environment → control (added): a message was refused; the component keeps running."""
    return custom(CONTROL, STATUS=ENV_ERROR, ERROR=error, RUN_ID=run_id)


def observation(
    obs: Iterable[float],
    deterministic: bool,
    reward: SupportsFloat | None = None,
    done: bool | None = None,
    action: list[int] | None = None,
) -> Message:
    """Payload of an environment → models message (swergio adds TYPE and TO_ROOM)."""
    payload: Message = {"OBSERVATION": [float(x) for x in obs], "DETERMINISTIC": bool(deterministic)}
    if reward is not None:
        payload.update(REWARD=float(reward), DONE=bool(done), ACTION=action)
    return payload


REFUSED = "REFUSED"  # added: why the broker did not act on a client's message


def refused(reason: str, about: object) -> Message:
    """broker → one client (added): its message (ID ``about``) was not acted on, and why.
    In ``_command``, which every swergio client has joined, so that none trips over it."""
    message = {"ID": new_id(), "TYPE": COMMAND_CUSTOM, "TO_ROOM": COMMAND_ROOM, "SENT_BY": BROKER, REFUSED: reason}
    if isinstance(about, str) and len(about) <= MAX_RUN_ID:
        message["ROOT_ID"] = about
    return message


def broker_stats(stats: dict[str, Any]) -> Message:
    """broker → members of the stats room (added): clients, rooms [members, messages, bytes]."""
    return {"ID": new_id(), "TYPE": LOG_CUSTOM, "TO_ROOM": STATS_ROOM, "SENT_BY": BROKER, "STATS": stats}


# --- validators --------------------------------------------------------------------


def parse_start(message: Message) -> tuple[int, bool, int | None]:
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


def parse_run_id(message: Message) -> str | None:
    """A message's RUN_ID (an addition): None when absent; ProtocolError when it is not
    :func:`valid_run_id`."""
    run_id = message.get("RUN_ID")
    if run_id is None:
        return None
    if not isinstance(run_id, str) or not valid_run_id(run_id):
        raise ProtocolError(f"RUN_ID must be a string of 1..{MAX_RUN_ID} characters (UTF-8)")
    return run_id


def valid_run_id(value: object) -> bool:
    """A string of 1..MAX_RUN_ID characters that UTF-8 (SQLite, the wire) can hold."""
    return isinstance(value, str) and 0 < len(value) <= MAX_RUN_ID and encodable(value)


def _score(message: Message, key: str) -> float:
    value = finite(message.get(key))
    if value is None or abs(value) > MAX_SCORE:
        raise ProtocolError(
            f"{key} must be a finite number within ±{MAX_SCORE:g}, got {clean_text(message.get(key), 40)}"
        )
    return value


def episodes_done(
    run_id: str, episodes: list[int], scores: list[float], steps: list[int], ended_at: float | None = None
) -> Message:
    """environment → control (added): the episodes of a run that ended in one vectorised step, as
    columns (one message a step, not one an episode: at 1,000 instances dozens end each step), and
    when they ended (the environment's clock)."""
    return custom(
        CONTROL,
        ROOT_ID=run_id,
        STATUS=EPISODES_DONE,
        EPISODE=episodes,
        SCORE=scores,
        STEPS=steps,
        RUN_ID=run_id,
        **({} if ended_at is None else {"ENDED_AT": ended_at}),
    )


def parse_episode_done(message: Message) -> tuple[str | None, int, float, int, float | None]:
    """(run id or None, episode, score, steps, ended at or None) of an EPISODE_DONE, every value
    range-checked; ProtocolError otherwise. STEPS may be missing (0), ENDED_AT too (None: the
    published environment's has none)."""
    run_id = parse_run_id(message)
    episode = _whole(message, "EPISODE", 1, MAX_EPISODES)
    steps = _whole(message, "STEPS", 0, MAX_EPISODE_STEPS) if message.get("STEPS") is not None else 0
    return run_id, episode, _score(message, "SCORE"), steps, parse_ended_at(message)


def parse_ended_at(message: Message) -> float | None:
    """ENDED_AT of an EPISODE_DONE, EPISODES_DONE or ENV_DONE (the environment's clock); None when
    absent (the published environment sends none); ProtocolError when it is no time."""
    ended_at = message.get("ENDED_AT")
    if ended_at is None:
        return None
    if isinstance(ended_at, bool) or not isinstance(ended_at, (int, float)) or not 0 <= ended_at < MAX_TIME:
        raise ProtocolError("ENDED_AT must be a time in Unix seconds")
    return float(ended_at)


def parse_episodes_done(message: Message) -> tuple[str | None, list[tuple[int, float, int]], float | None]:
    """(run id or None, [(episode, score, steps)], ended at or None) of an EPISODES_DONE: EPISODE,
    SCORE and STEPS are lists of one length (1..MAX_INSTANCES), each entry checked as an
    EPISODE_DONE's; ProtocolError otherwise."""
    columns: list[list[Any]] = []
    for key in ("EPISODE", "SCORE", "STEPS"):
        column = message.get(key)
        if type(column) is not list or not 1 <= len(column) <= MAX_INSTANCES:
            raise ProtocolError(f"EPISODE, SCORE and STEPS must be lists of 1..{MAX_INSTANCES} entries")
        columns.append(column)
    if len(columns[0]) != len(columns[1]) or len(columns[0]) != len(columns[2]):
        raise ProtocolError("EPISODE, SCORE and STEPS must be lists of one length")
    episodes = []
    for episode, score, steps in zip(*columns):
        _, episode, score, steps, _ = parse_episode_done({"EPISODE": episode, "SCORE": score, "STEPS": steps})
        episodes.append((episode, score, steps))
    return parse_run_id(message), episodes, parse_ended_at(message)


def parse_env_done(message: Message) -> tuple[str | None, float, int | None, bool, float | None]:
    """(run id or None, average score, episodes or None, stopped, ended at or None) of an ENV_DONE;
    ProtocolError when a value is out of range. EPISODES, STOPPED, RUN_ID and ENDED_AT are
    additions (the published ENV_DONE has only AVG_SCORE); STOPPED must be a JSON boolean."""
    run_id = parse_run_id(message)
    average = _score(message, "AVG_SCORE")
    episodes = _whole(message, "EPISODES", 0, MAX_EPISODES) if message.get("EPISODES") is not None else None
    stopped = message.get("STOPPED", False)
    if not isinstance(stopped, bool):
        raise ProtocolError(f"STOPPED must be true or false, got {clean_text(stopped, 40)}")
    return run_id, average, episodes, stopped, parse_ended_at(message)


def parse_action(message: Message, n_actions: int) -> int:
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


def control_status(message: Message) -> str | None:
    """The STATUS of a control-room message, or None when it has none."""
    status = message.get("STATUS")
    return status if isinstance(status, str) else None


def is_start(message: Message) -> bool:
    return "NR_OF_EPISODE" in message


def is_stop(message: Message) -> bool:
    return message.get("STOP") is True


def is_evolution_request(message: Message) -> bool:
    return message.get("EVOLUTION") is True


# --- our evolution's population report (additive keys of EVO_DONE) ------------------

MAX_REPORTED_MODELS = defaults.MODELS_MAX  # a report about more models is not ours: ignored


def finite(value: object) -> float | None:
    """``value`` as a finite float, or None (not a number, a bool, NaN, an infinity)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # JSON's integers have no bound (up to 4,300 digits): past float's, no number
        return None
    return number if math.isfinite(number) else None


def evolution_report(msg: Message) -> dict[str, Any]:
    """GENERATION, FITNESS, ELITE, DIVERSITY of an EVO_DONE, range-checked; what fails a check is left out.

    Keys of the result: ``generation`` (int ≥ 0), ``fitness`` (tuple of finite floats),
    ``elite`` (an index into fitness), ``diversity`` (finite, ≥ 0).
    """
    out: dict[str, Any] = {}
    generation = msg.get("GENERATION")
    if isinstance(generation, int) and not isinstance(generation, bool) and 0 <= generation < 2**53:
        out["generation"] = generation
    fitness = msg.get("FITNESS")
    if isinstance(fitness, list) and 0 < len(fitness) <= MAX_REPORTED_MODELS:
        values = [finite(v) for v in fitness]
        if None not in values:
            out["fitness"] = tuple(values)
            elite = msg.get("ELITE")
            if isinstance(elite, int) and not isinstance(elite, bool) and 0 <= elite < len(values):
                out["elite"] = elite
    diversity = finite(msg.get("DIVERSITY"))
    if diversity is not None and diversity >= 0:
        out["diversity"] = diversity
    return out


# --- run state (added): the environment announces its runs and answers who asks ------

RUN_STARTED = "RUN_STARTED"  # environment → control: a run began (no NR_OF_EPISODE: it is no start)
RUN_STATE = "RUN_STATE"  # environment → control: the answer to a state query
QUERY = "QUERY"  # control → environment: {"QUERY": "STATE"}
QUERY_STATE = "STATE"
MAX_INSTANCES = 1024  # INSTANCES of a run (batch.MAX_INSTANCES)
MAX_STATE_SCORES = 1000  # SCORES a RUN_STATE carries: the run's latest finished episodes
MAX_PATH = 4096  # HISTORY, a path on the environment's host
MAX_TIME = 2.0**40  # a wall-clock time (Unix seconds) beyond any real one


def state_query() -> Message:
    """control → environment (added): ask for the run state; the published environment ignores it."""
    return custom(CONTROL, QUERY=QUERY_STATE)


def is_state_query(message: Message) -> bool:
    return message.get(QUERY) == QUERY_STATE


def state_answer(state: Message, query: Message) -> Message:
    """RUN_STATE ``state`` as the answer to ``query``: ROOT_ID is the query's ID (swergio's way
    of naming what a reply answers), so the asker knows the environment heard it; the RUN_STATE
    an environment says on joining names none."""
    asked = query.get("ID")
    return {**state, "ROOT_ID": asked} if valid_run_id(asked) else state


def run_facts(
    run_id: str,
    episodes: int,
    deterministic: bool,
    seed: int | None,
    instances: int,
    env_id: str,
    started: float,
    spaces: EnvSpaces | None = None,
) -> dict[str, Any]:
    """The keys that describe a run in RUN_STARTED and RUN_STATE (added: the environment's
    spaces and solved score, so that a model built for another environment is named, not fed)."""
    facts: dict[str, Any] = {
        "RUN_ID": run_id,
        "EPISODES": episodes,
        "DETERMINISTIC": bool(deterministic),
        "SEED": seed,
        "INSTANCES": instances,
        "ENV_ID": env_id,
        "STARTED": float(started),
    }
    if spaces is not None:
        facts["OBSERVATION_SIZE"] = spaces.observations
        facts["ACTION_COUNT"] = spaces.actions
        facts["REWARD_THRESHOLD"] = spaces.reward_threshold
        facts["MAX_EPISODE_STEPS"] = spaces.max_episode_steps
    return facts


def run_started(facts: dict[str, Any], history: tuple[str, str] | None) -> Message:
    """environment → control (added): a run began; ``history``: (host, path) of the file it is recorded in."""
    return custom(CONTROL, ROOT_ID=facts["RUN_ID"], STATUS=RUN_STARTED, **facts, **_history(history))


def run_state(
    facts: dict[str, Any] | None,
    finished: int,
    steps: int,
    recent: list[tuple[int, float, int, float]],
    history: tuple[str, str] | None,
    finished_figures: tuple[float | None, int] = (None, 0),
) -> Message:
    """environment → control (added): the run going (none: RUN_ID null), its finished episodes and
    steps, the latest ≤ MAX_STATE_SCORES episodes to end (``recent``: number, score, steps, ended
    at) as columns, the history file. SCORE_EPISODES, SCORE_STEPS and SCORE_ENDED were added beside SCORES (a
    vectorised run's episodes end out of number order, so the latest scores are not the latest
    numbers), and BEST and FINISHED_STEPS (``finished_figures``: the finished episodes' best score
    and steps), so that a room joining late shows the run's figures, not those of what it was told."""
    body = facts if facts is not None else {"RUN_ID": None}
    recent = recent[-MAX_STATE_SCORES:]
    best, finished_steps = finished_figures
    return custom(
        CONTROL,
        STATUS=RUN_STATE,
        **body,
        FINISHED=finished,
        STEPS=steps,
        SCORES=[float(score) for _, score, _, _ in recent],
        SCORE_EPISODES=[number for number, _, _, _ in recent],
        SCORE_STEPS=[length for _, _, length, _ in recent],
        SCORE_ENDED=[float(ended) for _, _, _, ended in recent],
        BEST=best,
        FINISHED_STEPS=finished_steps,
        **_history(history),
    )


def _history(history: tuple[str, str] | None) -> dict[str, Any]:
    return {"HISTORY": None} if history is None else {"HISTORY": history[1], "HISTORY_HOST": history[0]}


def _whole(message: Message, key: str, low: int, high: int) -> int:
    value = message.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ProtocolError(f"{key} must be a whole number {low}..{high}, got {clean_text(value, 40)}")
    return value


def parse_run_facts(message: Message) -> dict[str, Any]:
    """The run a RUN_STARTED or RUN_STATE describes, every value checked; ProtocolError otherwise.

    Keys: run_id, episodes, deterministic, seed, instances, env_id, started, history (host, path) or None.
    """
    run_id = message.get("RUN_ID")
    if not valid_run_id(run_id):
        raise ProtocolError(f"RUN_ID must be a string of 1..{MAX_RUN_ID} characters (UTF-8)")
    deterministic = message.get("DETERMINISTIC")
    if not isinstance(deterministic, bool):
        raise ProtocolError("DETERMINISTIC must be true or false")
    seed = None if message.get("SEED") is None else _whole(message, "SEED", 0, MAX_SEED)
    started = message.get("STARTED")
    if isinstance(started, bool) or not isinstance(started, (int, float)) or not 0 <= started < MAX_TIME:
        raise ProtocolError("STARTED must be a time in Unix seconds")
    env_id = message.get("ENV_ID")
    if not isinstance(env_id, str) or not 0 < len(env_id) <= 80:
        raise ProtocolError("ENV_ID must be a string of 1..80 characters")
    return {
        "run_id": run_id,
        "episodes": _whole(message, "EPISODES", 1, MAX_EPISODES),
        "deterministic": deterministic,
        "seed": seed,
        "instances": _whole(message, "INSTANCES", 1, MAX_INSTANCES),
        "env_id": clean_text(env_id, 80),
        "started": float(started),
        "history": parse_history(message),
        "spaces": parse_spaces(message, clean_text(env_id, 80)),
    }


def announcement(spaces: EnvSpaces, run_id: str) -> Message:
    """The keys a run's first observation carries (added): its environment, so that a model
    built for another is named, not fed."""
    return {
        "ENV_ID": spaces.env_id,
        "OBSERVATION_SIZE": spaces.observations,
        "ACTION_COUNT": spaces.actions,
        "RUN_ID": run_id,
    }


def parse_announcement(message: Message) -> EnvSpaces:
    """The environment a run's first observation announces; ProtocolError when malformed."""
    env_id = message.get("ENV_ID")
    if not isinstance(env_id, str) or not 0 < len(env_id) <= defaults.ENV_ID_MAX:
        raise ProtocolError(f"ENV_ID must be a string of 1..{defaults.ENV_ID_MAX} characters")
    spaces = parse_spaces(message, clean_text(env_id, defaults.ENV_ID_MAX))
    if spaces is None:
        raise ProtocolError("ENV_ID without OBSERVATION_SIZE and ACTION_COUNT")
    return spaces


def parse_spaces(message: Message, env_id: str) -> EnvSpaces | None:
    """The environment's spaces a RUN_STARTED or RUN_STATE announces; None when it tells none
    (the published environment, an older one); ProtocolError when they are out of range."""
    if "OBSERVATION_SIZE" not in message and "ACTION_COUNT" not in message:
        return None
    observations = _whole(message, "OBSERVATION_SIZE", 1, defaults.ENV_OBSERVATIONS_MAX)
    actions = _whole(message, "ACTION_COUNT", 2, defaults.ENV_ACTIONS_MAX)
    threshold = message.get("REWARD_THRESHOLD")
    if threshold is not None:
        threshold = finite(threshold)
        if threshold is None or abs(threshold) > MAX_SCORE:
            raise ProtocolError(f"REWARD_THRESHOLD must be null or a finite number within ±{MAX_SCORE:g}")
    steps = None
    if message.get("MAX_EPISODE_STEPS") is not None:
        steps = _whole(message, "MAX_EPISODE_STEPS", 1, MAX_EPISODE_STEPS)
    return EnvSpaces(env_id, observations, actions, threshold, steps)


def parse_history(message: Message) -> tuple[str, str] | None:
    """(host, path) of the environment's history file, or None (none, or not a valid pair)."""
    path, host = message.get("HISTORY"), message.get("HISTORY_HOST")
    if not isinstance(path, str) or not isinstance(host, str) or not 0 < len(path) <= MAX_PATH or len(host) > 255:
        return None
    if "\0" in path or not encodable(path) or not encodable(host):  # no file system takes them
        return None
    return host, path


def parse_run_progress(message: Message, episodes: int = MAX_EPISODES) -> tuple[int, int, list[float]]:
    """(finished, steps, scores) of a RUN_STATE of a run of ``episodes``; ProtocolError when out of range."""
    finished = _whole(message, "FINISHED", 0, episodes)
    steps = _whole(message, "STEPS", 0, MAX_EPISODES * MAX_EPISODE_STEPS)
    scores = message.get("SCORES")
    if not isinstance(scores, list) or len(scores) > MAX_STATE_SCORES:
        raise ProtocolError(f"SCORES must be a list of at most {MAX_STATE_SCORES} numbers")
    values = [finite(s) for s in scores]
    if any(v is None or abs(v) > MAX_SCORE for v in values):
        raise ProtocolError(f"SCORES must hold finite numbers within ±{MAX_SCORE:g}")
    return finished, steps, [v for v in values if v is not None]


def parse_finished_figures(message: Message, finished: int) -> tuple[float | None, int] | None:
    """(best score or None, steps) of a RUN_STATE's ``finished`` episodes (BEST, FINISHED_STEPS);
    None when it tells none (an older environment); ProtocolError when out of range."""
    if message.get("FINISHED_STEPS") is None:
        return None
    steps = _whole(message, "FINISHED_STEPS", 0, MAX_EPISODES * MAX_EPISODE_STEPS)
    return (_score(message, "BEST") if finished else None), steps


def parse_score_episodes(
    message: Message, count: int, episodes: int = MAX_EPISODES, finished: int | None = None
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[float, ...] | None] | None:
    """(numbers, steps, ended at or None) of a RUN_STATE's ``count`` SCORES: its SCORE_EPISODES
    (distinct, 1..``episodes``, no more than its ``finished`` episodes), SCORE_STEPS (0 each when
    absent) and SCORE_ENDED (None when absent); None when it tells no numbers (an older
    environment); ProtocolError when they do not fit."""
    numbers = message.get("SCORE_EPISODES")
    if numbers is None:
        return None
    if finished is not None and count > finished:  # each is recorded: past FINISHED, some are no finished episode
        raise ProtocolError(f"SCORE_EPISODES must name no more episodes than FINISHED ({finished})")
    lengths = message.get("SCORE_STEPS")
    lengths = [0] * count if lengths is None else lengths
    ended = message.get("SCORE_ENDED")
    columns = (numbers, lengths) if ended is None else (numbers, lengths, ended)
    if not all(isinstance(column, list) and len(column) == count for column in columns):
        raise ProtocolError("SCORE_EPISODES, SCORE_STEPS and SCORE_ENDED must be lists as long as SCORES")
    checked = tuple(_whole({"SCORE_EPISODES": n}, "SCORE_EPISODES", 1, episodes) for n in numbers)
    if len(set(checked)) != len(checked):
        raise ProtocolError("SCORE_EPISODES must not name an episode twice")
    steps = tuple(_whole({"SCORE_STEPS": n}, "SCORE_STEPS", 0, MAX_EPISODE_STEPS) for n in lengths)
    if ended is None:
        return checked, steps, None
    times = tuple(parse_ended_at({"ENDED_AT": t}) for t in ended)
    if None in times:
        raise ProtocolError("SCORE_ENDED must hold times in Unix seconds")
    return checked, steps, tuple(t for t in times if t is not None)


def cart(observation: Iterable[float], run_id: str | None) -> Message:
    """environment → viewers (added, room ``cart``): instance 0's latest observation."""
    return custom(CART, OBSERVATION=[float(x) for x in observation], RUN_ID=run_id)


def frame(picture: FrameSeen, run_id: str | None) -> Message:
    """environment → viewers (added, room ``cart``): a picture of instance 0 (not CartPole)."""
    return custom(
        CART,
        FRAME=base64.b64encode(picture.bits).decode("ascii"),
        WIDTH=picture.width,
        HEIGHT=picture.height,
        RUN_ID=run_id,
    )


def is_frame(message: Message) -> bool:
    return "FRAME" in message


def parse_frame(message: Message) -> FrameSeen:
    """The picture of a ``cart`` message with FRAME: at most ``FRAME_DOTS`` dots, exactly as many
    bits as they need; ProtocolError otherwise."""
    width = _whole(message, "WIDTH", 1, defaults.FRAME_DOTS[0])
    height = _whole(message, "HEIGHT", 1, defaults.FRAME_DOTS[1])
    text, size = message.get("FRAME"), (width * height + 7) // 8
    if not isinstance(text, str) or len(text) != 4 * ((size + 2) // 3):
        raise ProtocolError(f"FRAME must be {size} bytes in base64")
    try:
        bits = base64.b64decode(text, validate=True)
    except ValueError:
        raise ProtocolError("FRAME must be base64") from None
    if len(bits) != size:
        raise ProtocolError(f"FRAME must be {size} bytes in base64")
    return FrameSeen(width, height, bits)


def parse_cart(message: Message) -> tuple[float, ...]:
    """The observation of a ``cart`` message: finite numbers, at most MAX_CART_VALUES; ProtocolError otherwise."""
    values = message.get("OBSERVATION")
    if not isinstance(values, list) or not 0 < len(values) <= MAX_CART_VALUES:
        raise ProtocolError(f"OBSERVATION must be a list of 1..{MAX_CART_VALUES} numbers")
    checked = [finite(v) for v in values]
    if any(v is None for v in checked):
        raise ProtocolError("OBSERVATION must hold finite numbers")
    return tuple(v for v in checked if v is not None)


def parse_observation_step(message: Message) -> tuple[tuple[float, ...], float | None, bool]:
    """(observation, reward or None for a run's first, done) of a one-instance ``observation`` message;
    ProtocolError for anything else (a batch, a malformed one)."""
    observation = parse_cart(message)
    if "REWARD" not in message:
        return observation, None, False
    reward, done = finite(message.get("REWARD")), message.get("DONE")
    if reward is None or not isinstance(done, bool):
        raise ProtocolError("REWARD must be a finite number and DONE true or false")
    return observation, reward, done
