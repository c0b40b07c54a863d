"""Property tests of the wire's decoders under hostile values: each returns range-checked values
or raises ProtocolError, never another exception (a handler's traceback is no clear message).

JSON carries integers of up to 4,300 digits (Python's limit), far past float's range: such a
number once escaped ``math.isfinite`` as OverflowError.
"""

from __future__ import annotations

import base64
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cartpole_tui.env import defaults
from cartpole_tui.env.swarm.batching import parse_logits
from cartpole_tui.env.swarm.client import finite_vector
from cartpole_tui.env.wire import batch, protocol

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HUGE = st.sampled_from([10**400, -(10**400), 10**4000, 2**1024, 2**63, -(2**63) - 1])
ODD = (
    st.none()
    | st.booleans()
    | st.integers()
    | HUGE
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["\ud800", "AAAA", "AA==", "é===", "A=A=", "", "x" * 81])
)
JSON = st.recursive(
    ODD, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner), max_leaves=8
)
NUMBER = st.integers(-3, 3) | st.floats() | HUGE | st.booleans()


def number_in(value: float, bound: float) -> bool:
    return isinstance(value, float) and math.isfinite(value) and abs(value) <= bound


def fields(*keys: str, values=JSON) -> st.SearchStrategy[dict]:
    """Messages with any of ``keys``, each any JSON value (numbers and lists of them most often)."""
    return st.dictionaries(st.sampled_from(keys), values | st.lists(NUMBER, max_size=4) | NUMBER)


EPISODE_KEYS = ("EPISODE", "SCORE", "STEPS", "RUN_ID", "ENDED_AT")


@FAST
@given(fields(*EPISODE_KEYS))
@example({"EPISODE": 1, "SCORE": 10**400})
def test_an_episode_done_is_valid_or_a_protocol_error(message):
    try:
        _, episode, score, steps, ended_at = protocol.parse_episode_done(message)
    except protocol.ProtocolError:
        return
    assert 1 <= episode <= protocol.MAX_EPISODES and number_in(score, protocol.MAX_SCORE)
    assert 0 <= steps <= protocol.MAX_EPISODE_STEPS and (ended_at is None or 0 <= ended_at < protocol.MAX_TIME)


@FAST
@given(fields(*EPISODE_KEYS, values=st.lists(NUMBER, min_size=1, max_size=3)), st.integers(1, 3))
def test_episodes_done_are_valid_or_a_protocol_error(message, same):
    for key in ("EPISODE", "SCORE", "STEPS"):  # most often columns of one length
        message.setdefault(key, [1] * same)
    try:
        _, episodes, _ = protocol.parse_episodes_done(message)
    except protocol.ProtocolError:
        return
    for episode, score, steps in episodes:
        assert 1 <= episode <= protocol.MAX_EPISODES and number_in(score, protocol.MAX_SCORE)
        assert 0 <= steps <= protocol.MAX_EPISODE_STEPS


@FAST
@given(fields("AVG_SCORE", "EPISODES", "STOPPED", "RUN_ID", "ENDED_AT"))
def test_an_env_done_is_valid_or_a_protocol_error(message):
    try:
        _, average, episodes, stopped, _ = protocol.parse_env_done(message)
    except protocol.ProtocolError:
        return
    assert number_in(average, protocol.MAX_SCORE) and isinstance(stopped, bool)
    assert episodes is None or 0 <= episodes <= protocol.MAX_EPISODES


SPACES_KEYS = ("ENV_ID", "OBSERVATION_SIZE", "ACTION_COUNT", "REWARD_THRESHOLD", "MAX_EPISODE_STEPS", "RUN_ID")


@FAST
@given(fields(*SPACES_KEYS))
@example({"ENV_ID": "x", "OBSERVATION_SIZE": 4, "ACTION_COUNT": 2, "REWARD_THRESHOLD": 10**400})
def test_an_announcement_is_valid_or_a_protocol_error(message):
    try:
        spaces = protocol.parse_announcement(message)
    except protocol.ProtocolError:
        return
    assert 0 < len(spaces.env_id) <= defaults.ENV_ID_MAX and spaces.env_id.isprintable()
    assert 1 <= spaces.observations <= defaults.ENV_OBSERVATIONS_MAX and 2 <= spaces.actions <= defaults.ENV_ACTIONS_MAX
    assert spaces.reward_threshold is None or number_in(spaces.reward_threshold, protocol.MAX_SCORE)
    assert spaces.max_episode_steps is None or 1 <= spaces.max_episode_steps <= protocol.MAX_EPISODE_STEPS


RUN_KEYS = ("RUN_ID", "EPISODES", "DETERMINISTIC", "SEED", "INSTANCES", "STARTED", "FINISHED", "STEPS", "SCORES")


@FAST
@given(fields(*RUN_KEYS, *SPACES_KEYS[1:], "HISTORY", "HISTORY_HOST"))
@example(
    {"RUN_ID": "r", "EPISODES": 2, "DETERMINISTIC": False, "INSTANCES": 1, "STARTED": 1.0}
    | {"FINISHED": 0, "STEPS": 0, "SCORES": [1.0, 10**400]}
)
def test_run_facts_and_progress_are_valid_or_a_protocol_error(message):
    message.setdefault("ENV_ID", "CartPole-v1")
    try:
        facts = protocol.parse_run_facts(message)
        finished, steps, scores = protocol.parse_run_progress(message, facts["episodes"])
    except protocol.ProtocolError:
        return
    assert 0 <= finished <= facts["episodes"] and steps >= 0
    assert all(number_in(score, protocol.MAX_SCORE) for score in scores)


@FAST
@given(fields("OBSERVATION", "REWARD", "DONE"))
def test_a_cart_or_observation_step_is_valid_or_a_protocol_error(message):
    try:
        observation, reward, _ = protocol.parse_observation_step(message)
    except protocol.ProtocolError:
        return
    assert all(math.isfinite(v) for v in observation) and (reward is None or math.isfinite(reward))


@FAST
@given(fields("GENERATION", "FITNESS", "ELITE", "DIVERSITY"))
def test_an_evolution_report_keeps_only_checked_values(message):
    report = protocol.evolution_report(message)
    assert all(math.isfinite(v) for v in report.get("fitness", ()))
    assert math.isfinite(report.get("diversity", 0.0))


@FAST
@given(st.lists(NUMBER, max_size=4), st.integers(1, 4))
@example([10**400, -(10**400)], 2)  # their sum as integers is 0
def test_a_finite_vector_is_the_list_or_none(value, length):
    vector = finite_vector(value, length)
    assert vector is None or (len(vector) == length and all(math.isfinite(v) for v in vector))


FRAME_TEXT = st.text(alphabet="AB/+=é\n ", max_size=12) | st.sampled_from(["AA==", "AAA=", "AA=A", "/w==", "AAAA"])


@FAST
@given(fields("WIDTH", "HEIGHT", values=FRAME_TEXT | JSON), FRAME_TEXT)
def test_a_frame_is_valid_or_a_protocol_error(message, text):
    message.setdefault("FRAME", text)
    try:
        frame = protocol.parse_frame(message)
    except protocol.ProtocolError:
        return
    assert 1 <= frame.width <= defaults.FRAME_DOTS[0] and 1 <= frame.height <= defaults.FRAME_DOTS[1]
    assert len(frame.bits) == (frame.width * frame.height + 7) // 8


ARRAY_TEXT = st.binary(max_size=24).map(lambda b: base64.b64encode(b).decode()) | FRAME_TEXT


@FAST
@given(fields("COMPONENT_IDS", "INSTANCES", "BATCH_LOGITS", values=ARRAY_TEXT | JSON), st.integers(2, 4))
def test_batch_logits_are_valid_or_none(message, actions):
    parsed = parse_logits(message, actions)
    if parsed is None:
        return
    ids, instances, logits = parsed
    assert logits.shape == (len(ids), len(instances), actions)
    assert np.isfinite(logits).all() and ((instances >= 0) & (instances < batch.MAX_INSTANCES)).all()


def test_batch_logits_name_a_bounded_number_of_distinct_models_for_some_instances():
    none = batch.encode_array([], batch.INDEX)
    # no instances: no bytes bound the ids, each of which the aggregation remembered
    assert (
        parse_logits({"COMPONENT_IDS": [str(i) for i in range(10**5)], "INSTANCES": none, "BATCH_LOGITS": ""}) is None
    )
    one = batch.encode_array([0], batch.INDEX)
    many = [str(i) for i in range(defaults.MODELS_MAX + 1)]
    assert (
        parse_logits(
            {
                "COMPONENT_IDS": many,
                "INSTANCES": one,
                "BATCH_LOGITS": batch.encode_array([0.0] * len(many), batch.LOGIT),
            }
        )
        is None
    )
    twice = {"COMPONENT_IDS": ["a", "a"], "INSTANCES": one, "BATCH_LOGITS": batch.encode_array([0.0, 0.0], batch.LOGIT)}
    assert parse_logits(twice) is None
    long = {"COMPONENT_IDS": ["m" * 65], "INSTANCES": one, "BATCH_LOGITS": batch.encode_array([0.0], batch.LOGIT)}
    assert parse_logits(long) is None
    good = {"COMPONENT_IDS": ["a", "b"], "INSTANCES": one, "BATCH_LOGITS": batch.encode_array([1.0, 2.0], batch.LOGIT)}
    assert parse_logits(good)[2].tolist() == [[[0.0, 1.0]], [[0.0, 2.0]]]


def test_a_batch_names_each_instance_once():
    """Repeated instance numbers were taken: 16 MiB of them asked the models for tens of GB."""
    repeated = batch.encode_array([0] * (batch.MAX_INSTANCES + 1), batch.INDEX)
    for message in ({"INSTANCES": repeated}, {"INSTANCES": batch.encode_array([3, 1, 3], batch.INDEX)}):
        with pytest.raises(protocol.ProtocolError, match="distinct instance numbers"):
            batch.instances_of(message)
    stepped = {"STEPPED": batch.encode_array([2, 2], batch.INDEX), "REWARDS": batch.encode_array([1.0, 1.0], "<f8")}
    with pytest.raises(protocol.ProtocolError, match="STEPPED"):
        batch.parse_results(stepped | {"DONES": batch.encode_array([0, 0], batch.FLAG)})
    every = batch.encode_array(range(batch.MAX_INSTANCES), batch.INDEX)
    assert batch.instances_of({"INSTANCES": every}).tolist() == list(range(batch.MAX_INSTANCES))


@FAST
@given(st.lists(st.integers(0, batch.MAX_INSTANCES - 1), max_size=40))
def test_instance_numbers_are_distinct_or_refused(numbers):
    text = batch.encode_array(numbers, batch.INDEX)
    try:
        decoded = batch.instances_of({"INSTANCES": text})
    except protocol.ProtocolError:
        assert len(set(numbers)) < len(numbers)
        return
    assert decoded.tolist() == numbers and len(set(numbers)) == len(numbers)


@FAST
@given(
    fields("FINISHED", "SCORES", "SCORE_EPISODES", "SCORE_STEPS", "SCORE_ENDED", "BEST", "FINISHED_STEPS"),
    st.integers(1, 4),
)
@example({"FINISHED": 1, "SCORES": [1.0], "SCORE_EPISODES": [1], "SCORE_ENDED": [10**400]}, 2)
@example({"FINISHED": 1, "STEPS": 0, "SCORES": [1.0], "FINISHED_STEPS": 1, "BEST": 10**400}, 2)
def test_a_run_states_numbered_episodes_and_figures_are_valid_or_a_protocol_error(message, episodes):
    """RUN_STATE's additions (SCORE_EPISODES, SCORE_STEPS, SCORE_ENDED, BEST, FINISHED_STEPS):
    a late joiner records them in its file and shows them."""
    message.setdefault("STEPS", 0)
    try:
        finished, _, scores = protocol.parse_run_progress(message, episodes)
        numbered = protocol.parse_score_episodes(message, len(scores), episodes, finished)
        figures = protocol.parse_finished_figures(message, finished)
    except protocol.ProtocolError:
        return
    if numbered is not None:
        numbers, lengths, ended = numbered
        assert len(numbers) == len(lengths) == len(scores) == len(set(numbers)) <= finished
        assert all(type(n) is int and 1 <= n <= episodes for n in numbers)
        assert all(type(n) is int and 0 <= n <= protocol.MAX_EPISODE_STEPS for n in lengths)
        assert ended is None or (len(ended) == len(scores) and all(0 <= t < protocol.MAX_TIME for t in ended))
    if figures is not None:
        best, steps = figures
        assert best is None or number_in(best, protocol.MAX_SCORE)
        assert type(steps) is int and 0 <= steps <= protocol.MAX_EPISODES * protocol.MAX_EPISODE_STEPS


@FAST
@given(fields("SCHEDULE", "ENDING", values=JSON | st.sampled_from(protocol.SCHEDULE_ENDINGS)))
def test_a_schedule_ending_is_one_of_ours_or_none(message):
    """SCHEDULE_ENDED's ENDING is logged in other rooms: only our words, never a peer's text."""
    assert protocol.parse_schedule_ending(message) in (None, *protocol.SCHEDULE_ENDINGS)
