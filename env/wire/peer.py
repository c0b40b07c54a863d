"""One connected client as the broker sees it.

Its socket, its address and when it connected, the
:class:`~cartpole_tui.env.wire.framing.Inbox` its frames arrive in, the outbox of what it
has not read yet, the name it registered and the rooms it joined, and the reason it is to
be closed once it is. The broker's rooms share it: only the broker's selector thread
changes a peer.
"""

from __future__ import annotations

import socket
from collections import deque
from dataclasses import dataclass, field

from cartpole_tui.env.wire.framing import Inbox


@dataclass(eq=False)
class Peer:
    """One connected client; a peer is equal only to itself."""

    sock: socket.socket
    host: str  # its IP address
    port: int
    connected_at: float = 0.0  # time.monotonic() when it was accepted
    name: str | None = None
    rooms: set[str] = field(default_factory=set)
    inbox: Inbox = field(default_factory=Inbox)
    outbox: deque[memoryview] = field(default_factory=deque)
    outbox_bytes: int = 0
    doomed: str | None = None  # the reason it is to be closed, once it is
    admitted: bool = True  # False until a broker with a token has seen it register with it
    batch: bool = False  # said "BATCH": true in its REGISTER (env/wire/batch.py)
    registers: int = 0  # REGISTERs it sent (the broker acts on the first max_registers)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def label(self) -> str:
        return f"{self.name or '(unregistered)'}@{self.address}"

    @property
    def sender(self) -> str:
        """What the broker puts in SENT_BY for it: its name, or its address before it has one."""
        return self.name or self.address
