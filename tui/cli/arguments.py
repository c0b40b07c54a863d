"""Values of `cartpole-tui`'s options: each checked where it is parsed, with one clear line
when it is wrong (argparse turns ArgumentTypeError into a usage error)."""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
from collections.abc import Callable

from cartpole_tui.env import defaults
from cartpole_tui.env.components.spaces import spaces_of
from cartpole_tui.env.wire import auth
from cartpole_tui.env.wire.gateway import parse_servers
from cartpole_tui.env.wire.transport import parse_address


def environment(text: str) -> str:
    """A gymnasium environment id we can play (a Box observation, Discrete actions); one line otherwise."""
    try:
        return spaces_of(text).env_id
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def allowed(low: int, high: int) -> str:
    """A range as the messages say it: ``1–1,000,000``."""
    return f"{low:,}–{high:,}"


def whole_number(low: int, high: int, what: str = "") -> Callable[[str], int]:
    """An option type: a whole number in ``low..high``, else a usage error naming the range."""

    def check(text: str) -> int:
        expected = f"expected {what or 'a whole number'} {allowed(low, high)}"
        given = text if len(text) <= 40 else f"{text[:40]}…"
        try:
            value = int(text)
        except ValueError:  # also a number of more than 4,300 digits
            raise argparse.ArgumentTypeError(f"{expected}, got {given!r}") from None
        if not low <= value <= high:  # said as typed: "got 1,000,001" had a separator nobody typed
            raise argparse.ArgumentTypeError(f"{expected}, got {given}")
        return value

    check.__name__ = what or "whole number"  # argparse names the type in some messages
    return check


# Every whole-number option, with its limits from env/defaults.py (the app and the environment
# check the same ones).
episodes = whole_number(1, defaults.EPISODES_MAX)
checks = whole_number(0, defaults.EPISODES_MAX)  # --confirm: 0 for no closing check
seed = whole_number(0, defaults.SEED_MAX)
instances = whole_number(1, defaults.PARALLEL_MAX, "a number of instances")
models = whole_number(1, defaults.MODELS_MAX, "a number of models")
rounds = whole_number(1, defaults.ROUNDS_MAX)
run_number = whole_number(1, defaults.RUN_NUMBER_MAX, "a run number")
frame_bytes = whole_number(defaults.FRAME_MIN, defaults.FRAME_MAX, "a frame size in bytes")
connections = whole_number(1, defaults.CONNECTIONS_MAX, "a number of connections")
sessions = whole_number(1, defaults.SESSIONS_MAX, "a number of sessions")


def missing_folder(path: str) -> str | None:
    """The folder a file at ``path`` would go in, when it does not exist (None when it does)."""
    folder = os.path.dirname(os.path.abspath(path))
    return None if os.path.isdir(folder) else folder


def address(text: str) -> str:
    try:
        parse_address(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def score(text: str) -> float:
    """A score (the schedule's target): a finite number within the scores we keep."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not abs(value) <= defaults.SCORE_MAX:
        raise argparse.ArgumentTypeError(f"expected a score within ±{defaults.SCORE_MAX:g}, got {text!r}")
    return value


def seconds(text: str) -> float:
    """A time-out: a finite number of seconds above zero (at most a day)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 86_400:
        raise argparse.ArgumentTypeError(f"expected seconds above 0 (at most 86400), got {text!r}")
    return value


def redraw_rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.1 <= value <= 30:
        raise argparse.ArgumentTypeError(f"expected repaints a second between 0.1 and 30, got {text!r}")
    return value


def cidr(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return auth.parse_networks([text])[0]
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def port_number(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) < 65536:
        raise argparse.ArgumentTypeError(f"expected a port 0-65535, got {text!r}")
    return int(text)


def nats_servers(text: str) -> list[str]:
    try:
        return parse_servers(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
