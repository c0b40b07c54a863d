"""swergio rooms and names as NATS subjects (gateway mode).

``swergio.<network>.room.<room>``, ``swergio.<network>.client.<name>`` and
``swergio.<network>.stats``. A name becomes one subject token: ``[A-Za-z0-9_-]+`` passes
unchanged (so ``observation``, ``_command``), every other UTF-8 byte becomes ``%XX`` (so
``.``, ``*``, ``>``, spaces and ``%`` itself cannot split or widen a subject), and the
empty name is ``%``. The mapping is injective, so two names never share a subject.
A subject is at most ``MAX_SUBJECT`` bytes: nats-server closes a connection that sends a
longer control line than it allows (4 KiB by default), so longer names are not carried.
"""

from __future__ import annotations

import re

PREFIX = "swergio"
ROOM = "room"
CLIENT = "client"
STATS = "stats"
MAX_SUBJECT = 1024  # bytes of a subject; nats-server's control line (PUB/SUB + subject) is 4 KiB by default
_PLAIN = re.compile(r"[A-Za-z0-9_-]+\Z")
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_TOKEN = re.compile(r"(?:[A-Za-z0-9_-]|%[0-9A-F]{2})+\Z")


def encode_token(name: str) -> str:
    if _PLAIN.match(name):
        return name
    if not name:
        return "%"
    return "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in name.encode("utf-8", "surrogatepass"))


def decode_token(token: str) -> str:
    """The name ``encode_token`` made ``token`` from; ValueError for a token it cannot make."""
    if token == "%":
        return ""
    if not _TOKEN.match(token):
        raise ValueError(f"not an encoded name: {token!r}")
    out = bytearray()
    i = 0
    while i < len(token):
        if token[i] == "%":
            out.append(int(token[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(ord(token[i]))
            i += 1
    return out.decode("utf-8", "surrogatepass")


def subject(network: str, kind: str, name: str) -> str:
    """The subject of room or client ``name`` (``kind`` is ROOM or CLIENT) in ``network``."""
    return f"{PREFIX}.{encode_token(network)}.{kind}.{encode_token(name)}"


def fits(network: str, kind: str, name: str) -> bool:
    """Whether the subject of ``name`` is at most MAX_SUBJECT bytes (decided without encoding a
    name that is too long already: its subject has at least one byte per character)."""
    return len(name) <= MAX_SUBJECT and len(subject(network, kind, name)) <= MAX_SUBJECT


def stats_subject(network: str) -> str:
    return f"{PREFIX}.{encode_token(network)}.{STATS}"


def parse(network: str, text: str) -> tuple[str, str] | None:
    """(kind, name) of a room or client subject of ``network``; None for any other subject."""
    parts = text.split(".")
    if len(parts) != 4 or parts[0] != PREFIX or parts[1] != encode_token(network) or parts[2] not in (ROOM, CLIENT):
        return None
    try:
        name = decode_token(parts[3])
    except ValueError:
        return None
    return (parts[2], name) if encode_token(name) == parts[3] else None  # one spelling per name
