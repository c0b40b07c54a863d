"""The broker's door: who is admitted on arrival, why a first message is refused, the token kept in."""

from __future__ import annotations

import json

import pytest

from cartpole_tui.env.wire import auth, protocol
from cartpole_tui.env.wire.admission import Admission
from cartpole_tui.env.wire.framing import signed

TOKEN = "s3cret-token"


def register(**extra: object) -> protocol.Message:
    return {"ID": "r", "TYPE": protocol.REGISTER, "NAME": "model", "TO_ROOM": protocol.COMMAND_ROOM, **extra}


def test_without_a_token_everyone_is_admitted_on_arrival():
    assert Admission(None, ()).admits_on_arrival("203.0.113.9")


def test_with_a_token_only_trusted_networks_are_admitted_on_arrival():
    door = Admission(TOKEN, auth.parse_networks(["10.0.0.0/8"]))
    assert door.admits_on_arrival("10.1.2.3") and door.admits_on_arrival("::ffff:10.1.2.3")
    assert not door.admits_on_arrival("127.0.0.1")


@pytest.mark.parametrize(
    ("first", "reason"),
    [
        (protocol.custom("control"), "refused: sent a message before registering with the token"),
        (register(), "refused: REGISTER without a token"),
        (register(TOKEN=TOKEN[:-1]), "refused: wrong token"),
        (register(TOKEN=["not", "text"]), "refused: wrong token"),
    ],
)
def test_a_first_message_without_the_token_is_refused_and_counted(first, reason):
    door = Admission(TOKEN, ())
    assert door.refusal("127.0.0.1", first, 0.0) == reason and door.refused == 1
    assert TOKEN not in reason


def test_a_register_with_the_token_admits():
    door = Admission(TOKEN, ())
    assert door.refusal("127.0.0.1", register(TOKEN=TOKEN), 0.0) is None and door.refused == 0


def test_the_token_goes_no_further_than_the_broker():
    message = register(TOKEN=TOKEN)
    frame = signed(protocol.frame_bytes(protocol.encode_body(message)), message, "model", 1 << 20)
    assert frame is not None
    passed_on = json.loads(frame[protocol.HEADER_LENGTH :])
    assert auth.TOKEN_KEY not in message and auth.TOKEN_KEY not in passed_on
    assert passed_on["SENT_BY"] == "model" and passed_on["NAME"] == "model"
    assert TOKEN.encode() not in frame
