"""Room and client names as NATS subject tokens: one token each, reversible, never widening."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cartpole_tui.env.wire import subjects

NETWORK = "cartpole"


@settings(deadline=None)  # a busy machine is not a slow encoder
@given(st.text())
def test_any_name_is_one_token_and_comes_back(name):
    token = subjects.encode_token(name)
    assert token and not any(ch in token for ch in ".*> \t\r\n")
    assert token.isascii() and subjects.decode_token(token) == name
    for kind in (subjects.ROOM, subjects.CLIENT):
        assert subjects.parse(NETWORK, subjects.subject(NETWORK, kind, name)) == (kind, name)


@settings(deadline=None)  # a busy machine is not a slow encoder
@given(st.text(), st.text())
def test_two_names_never_share_a_subject(first, second):
    if first != second:
        assert subjects.encode_token(first) != subjects.encode_token(second)


@settings(deadline=None)  # a busy machine is not a slow encoder
@given(st.text(), st.text())
def test_a_subject_belongs_to_one_network(network, other):
    subject = subjects.subject(network, subjects.ROOM, "observation")
    assert (subjects.parse(other, subject) is not None) == (network == other)


@pytest.mark.parametrize("name", ["observation", "_command", "_logging", "_stats", "model-7"])
def test_plain_names_read_as_themselves(name):
    assert subjects.subject("net", subjects.ROOM, name) == f"swergio.net.room.{name}"


@pytest.mark.parametrize("token", ["%4", "%zz", "a%41", "a.b", "%41", "%C3"])
def test_tokens_no_name_makes_are_not_taken(token):
    assert subjects.parse("net", f"swergio.net.client.{token}") is None
