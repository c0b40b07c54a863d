"""Which environments we play, what they announce, and how their pictures and axes are made."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

from cartpole_tui.env.components.frames import picture
from cartpole_tui.env.components.spaces import CARTPOLE, make_env, spaces, spaces_of
from cartpole_tui.env.events import EnvSpaces, FrameSeen
from cartpole_tui.env.runtime.schedule import best_episode, target_for
from cartpole_tui.env.swarm.policy import N_WEIGHTS, Population, n_weights
from cartpole_tui.env.wire import protocol
from cartpole_tui.tui.data.plot_canvas import environment_axis, score_range

SHIPPED = {
    "CartPole-v1": (4, 2, 475.0),
    "Acrobot-v1": (6, 3, -100.0),
    "MountainCar-v0": (2, 3, -110.0),
    "LunarLander-v3": (8, 4, 200.0),
}


def _box2d() -> bool:
    try:
        import Box2D  # noqa: F401
    except ImportError:
        return False
    return True


def shipped(env_id: str):
    marks = [pytest.mark.skipif(not _box2d(), reason="gymnasium's box2d extra")] if env_id == "LunarLander-v3" else []
    return pytest.param(env_id, marks=marks)


@pytest.mark.parametrize("env_id", [shipped(e) for e in SHIPPED])
def test_each_shipped_environment_has_its_spaces_and_threshold(env_id):
    found = spaces_of(env_id)
    assert (found.observations, found.actions, found.reward_threshold) == SHIPPED[env_id]
    assert target_for(found) == SHIPPED[env_id][2]
    env = make_env(env_id)
    try:
        assert spaces(env, env_id) == found  # CartPole's constant is what gymnasium says
    finally:
        env.close()


@pytest.mark.parametrize(
    ("env_id", "words"),
    [
        ("Pendulum-v1", "Pendulum-v1 has a Box action space"),
        ("Blackjack-v1", "Blackjack-v1 has a Tuple observation; cartpole-tui plays"),
        ("NoSuchEnv-v0", "unknown gymnasium environment 'NoSuchEnv-v0'"),
        ("", "an environment id is 1..80 printable characters"),
        ("Cart\x1b[2JPole-v1", "an environment id is 1..80 printable characters"),
    ],
)
def test_an_environment_we_cannot_play_is_refused_in_one_line(env_id, words):
    with pytest.raises(ValueError) as refused:
        spaces_of(env_id)
    assert words in str(refused.value) and "\n" not in str(refused.value)


def test_an_observation_of_more_dimensions_is_refused_with_its_shape(monkeypatch):
    class Picture(gym.Env):
        observation_space = gym.spaces.Box(0, 255, (8, 6, 3), dtype=np.uint8)
        action_space = gym.spaces.Discrete(2)

    monkeypatch.setattr(gym, "make", lambda *args, **kwargs: Picture())
    with pytest.raises(ValueError, match=r"^Pixels-v0 has a Box observation of shape \(8, 6, 3\) \(one dimension"):
        make_env("Pixels-v0")


def test_a_missing_extra_is_named_with_its_install_line(monkeypatch):
    def make(*args, **kwargs):
        raise gym.error.DependencyNotInstalled(
            "Box2D is not installed, you can install it by run `pip install swig` followed by "
            '`pip install "gymnasium[box2d]"`'
        )

    monkeypatch.setattr(gym, "make", make)
    with pytest.raises(ValueError) as refused:
        make_env("LunarLander-v3")
    assert str(refused.value) == (
        "LunarLander-v3 needs gymnasium's box2d extra: pip install 'cartpole-tui[box2d]'"
        " (from a checkout: pip install -e '.[box2d]')"
    )


def test_an_environment_without_threshold_needs_a_target():
    bare = EnvSpaces("Bare-v0", 3, 2, None)
    with pytest.raises(ValueError, match="Bare-v0 has no reward_threshold: give the schedule a target"):
        target_for(bare)
    assert target_for(bare, -7.5) == -7.5
    assert best_episode(CARTPOLE) == 500 and best_episode(spaces_of("Acrobot-v1")) is None
    assert environment_axis(bare) == (0.0, 1.0, None)  # no solved line


def test_models_are_sized_from_the_spaces_and_cartpole_keeps_755():
    assert n_weights() == N_WEIGHTS == 755
    acrobot = spaces_of("Acrobot-v1")
    population = Population(3, 1, acrobot.observations, acrobot.actions)
    assert population.weights.shape == (
        3,
        6 * 16 + 16 + 16 * 16 + 16 + 6 * 16 + 16 + 16 * 16 + 16 + 3 * 16 + 3 + 16 + 1,
    )
    assert population.logits(np.zeros(6)).shape == (3, 3)
    assert population.batch_logits(np.zeros((5, 6))).shape == (3, 5, 3)


def test_run_started_announces_the_spaces_and_a_viewer_reads_them():
    acrobot = spaces_of("Acrobot-v1")
    facts = protocol.run_facts("r1", 5, False, None, 1, acrobot.env_id, 1.0e9, acrobot)
    message = json.loads(json.dumps(protocol.run_started(facts, None)))
    assert protocol.parse_run_facts(message)["spaces"] == acrobot
    bad_values = (
        ("OBSERVATION_SIZE", 0),
        ("ACTION_COUNT", 10**6),
        ("REWARD_THRESHOLD", "NaN"),
        ("OBSERVATION_SIZE", True),
    )
    for key, bad in bad_values:
        with pytest.raises(protocol.ProtocolError):
            protocol.parse_run_facts({**message, key: bad})
    published = {k: v for k, v in message.items() if k not in ("OBSERVATION_SIZE", "ACTION_COUNT")}
    assert protocol.parse_run_facts(published)["spaces"] is None  # one that tells none


def test_a_picture_is_a_few_hundred_bytes_and_comes_back_as_sent():
    env = make_env("MountainCar-v0", render_mode="rgb_array")
    try:
        env.reset(seed=1)
        shown = picture(env.render())
    finally:
        env.close()
    assert shown is not None and (shown.width, shown.height) == (64, 43)  # 600 x 400 kept in 64 x 48
    wire = json.dumps(protocol.frame(shown, "r1")).encode()
    assert len(wire) < 700  # 5 a second: ~3.5 KB/s, under the pane's 8 KiB/s
    assert protocol.parse_frame(json.loads(wire)) == shown
    dots = np.unpackbits(np.frombuffer(shown.bits, dtype=np.uint8))[: 64 * 43].reshape(43, 64)
    assert 50 < dots.sum() < 64 * 43 // 2  # the hill and the car, not the background


@pytest.mark.parametrize(
    "change",
    [
        {"WIDTH": 65},
        {"HEIGHT": 0},
        {"FRAME": "////"},
        {"FRAME": "not base64!"},
        {"FRAME": 7},
    ],
)
def test_a_bad_picture_is_refused(change):
    good = protocol.frame(FrameSeen(8, 2, b"\xff\x00"), None)
    assert protocol.parse_frame(good) == FrameSeen(8, 2, b"\xff\x00")
    with pytest.raises(protocol.ProtocolError):
        protocol.parse_frame({**good, **change})


def test_the_axis_follows_negative_scores():
    low, high, solved = environment_axis(spaces_of("Acrobot-v1"))
    assert (low, high, solved) == (-100.0, 0.0, -100.0)
    assert score_range(low, high, -500.0, -63.0) == (-500.0, 0.0)  # widened down, rounded out
    assert score_range(0.0, 500.0, 8.0, 500.0) == (0.0, 500.0)  # CartPole's stays as it is
    assert score_range(0.0, 200.0, -431.2, 250.0) == (-500.0, 300.0)  # LunarLander: both ways
