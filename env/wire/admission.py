"""The broker's door: who may talk through it.

A broker without a token admits everyone, as swergio's own server does. With one, a
connection from a trusted network is admitted as it arrives; any other must send a
REGISTER carrying the token as its first frame, or it is refused unheard. The token is
taken out of the REGISTER before it goes on: it goes no further than the broker.
(env/wire/auth.py holds the token files and the constant-time comparison.)
"""

from __future__ import annotations

import json

from cartpole_tui.env.wire import auth, protocol


class Admission:
    """``token`` None: everyone is admitted. ``refused`` counts the connections turned away."""

    def __init__(self, token: str | None, trust: tuple[auth.Network, ...]) -> None:
        self.token = token
        self.trust = trust  # ip networks admitted without a token
        self.refused = 0

    def admits_on_arrival(self, host: str) -> bool:
        """Whether a connection from ``host`` is admitted before it has said anything."""
        return self.token is None or auth.is_trusted(host, self.trust)

    def refusal(self, first: protocol.Message) -> str | None:
        """None when a peer's ``first`` message admits it (a REGISTER with the token); otherwise
        why it is refused, counted. The reason never holds the token."""
        if first["TYPE"] != protocol.REGISTER:
            reason = "refused: sent a message before registering with the token"
        elif auth.TOKEN_KEY not in first:
            reason = "refused: REGISTER without a token"
        elif self.token is None or not auth.tokens_match(first[auth.TOKEN_KEY], self.token):
            reason = "refused: wrong token"
        else:
            return None
        self.refused += 1
        return reason


def strip_token(message: protocol.Message, sender: str) -> bytes:
    """The frame to pass on for a ``message`` that carries a token (a REGISTER): re-encoded
    without it (it is small). The token is taken out of ``message`` too, and SENT_BY set
    when it has none."""
    message.pop(auth.TOKEN_KEY)
    message.setdefault("SENT_BY", sender)
    return protocol.frame_bytes(json.dumps(message).encode(protocol.FORMAT))
