"""Values of `cartpole-tui`'s options: each checked where it is parsed, with one clear line
when it is wrong (argparse turns ArgumentTypeError into a usage error)."""

from __future__ import annotations

import argparse
import ipaddress

from cartpole_tui.env.wire import auth, batch
from cartpole_tui.env.wire.gateway import parse_servers
from cartpole_tui.env.wire.transport import parse_address


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def instances(text: str) -> int:
    value = positive_int(text)
    if value > batch.MAX_INSTANCES:
        raise argparse.ArgumentTypeError(f"expected at most {batch.MAX_INSTANCES} instances, got {value}")
    return value


def address(text: str) -> str:
    try:
        parse_address(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


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
