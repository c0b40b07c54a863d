"""Property tests: the frame decoder and the environment's validation under arbitrary input."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cartpole_tui.env.components.environment import EnvironmentLogic
from cartpole_tui.env.wire import protocol

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@FAST
@given(st.binary(max_size=40))
def test_a_header_is_a_length_or_a_frame_error(header):
    try:
        length = protocol.parse_header(header)
    except protocol.FrameError:
        return
    assert 0 <= length <= protocol.DEFAULT_MAX_FRAME and len(header) == protocol.HEADER_LENGTH


@FAST
@given(st.binary(max_size=200))
def test_a_body_is_a_message_or_a_frame_error(body):
    try:
        message = protocol.decode_body(body)
    except protocol.FrameError as error:
        assert str(error)
        return
    assert isinstance(message, dict) and isinstance(message["TYPE"], str)


def depth(value) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 0


TRICKY_TEXT = st.text(alphabet=st.sampled_from('[]{}"\\ua\u00e9\u2603\n'), max_size=8)
DEEP_JSON = st.recursive(
    st.none() | st.integers() | st.floats() | TRICKY_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TRICKY_TEXT, inner, max_size=3),
    max_leaves=30,
)


@FAST
@given(DEEP_JSON, st.booleans())
def test_nesting_is_the_depth_of_the_json_whatever_its_strings_hold(value, ascii_only):
    body = json.dumps(value, ensure_ascii=ascii_only).encode()
    assert protocol.nesting(body) == depth(value)
    assert protocol.nests_deeper_than(body, 3) == (depth(value) > 3)


@FAST
@given(DEEP_JSON)
def test_a_message_is_decoded_within_the_depth_bound_and_refused_past_it(value):
    body = json.dumps({"TYPE": "x", "V": value}).encode()
    try:
        message = protocol.decode_body(body, max_depth=3)
    except protocol.FrameError as error:
        assert "nested too deeply" in str(error) and 1 + depth(value) > 3
        return
    assert json.dumps(message["V"]) == json.dumps(value)  # (NaN is not equal to itself: compared as text)
    assert 1 + depth(value) <= 3


@FAST
@given(st.dictionaries(st.sampled_from(["NR_OF_EPISODE", "DETERMINISTIC", "SEED", "RUN_ID", "X"]), JSON))
def test_any_start_is_taken_or_refused_with_a_reason(message):
    logic = EnvironmentLogic(seed=1)
    try:
        logic.start(message)
    except protocol.ProtocolError as error:
        assert str(error) and logic.run is None
        return
    assert logic.run is not None


_LOGIC = EnvironmentLogic(seed=1)


@FAST
@given(st.dictionaries(st.sampled_from(["ACTION", "ROOT_ID", "SENT_BY"]), JSON))
def test_any_action_steps_drops_or_says_env_error(message):
    if _LOGIC.run is None:
        _LOGIC.start(protocol.start_run(10**6, False))
    control, payload = _LOGIC.step(message)
    if payload is None and control:
        assert control[0]["STATUS"] == protocol.ENV_ERROR and control[0]["ERROR"]
    json.dumps(control)  # whatever is sent can be sent
