"""One set of limits (env/defaults.py): the command line, the app's field and the environment
take and refuse the same values; the command line's JSON is strict."""

from __future__ import annotations

import argparse
import json

import pytest

from cartpole_tui.env import defaults
from cartpole_tui.env.components.environment import EnvironmentLogic
from cartpole_tui.env.runtime.schedule import ScheduleSettings
from cartpole_tui.env.wire import protocol
from cartpole_tui.tui.cli import arguments
from cartpole_tui.tui.cli.commands import strict_json
from cartpole_tui.tui.widgets.control_panel import parse_episodes


def test_the_command_line_the_field_and_the_environment_take_the_same_episodes():
    most = defaults.EPISODES_MAX
    assert arguments.episodes(str(most)) == parse_episodes(str(most)) == most
    assert protocol.parse_start({"NR_OF_EPISODE": most})[0] == most
    with pytest.raises(argparse.ArgumentTypeError, match="1–1,000,000"):
        arguments.episodes(str(most + 1))
    with pytest.raises(ValueError, match="1–1,000,000"):
        parse_episodes(str(most + 1))
    with pytest.raises(protocol.ProtocolError, match=str(most)):
        protocol.parse_start({"NR_OF_EPISODE": most + 1})
    with pytest.raises(ValueError):
        ScheduleSettings(train=most + 1)


def test_the_command_line_and_the_environment_take_the_same_seeds():
    for seed in (0, defaults.SEED_MAX):
        assert arguments.seed(str(seed)) == protocol.parse_start({"NR_OF_EPISODE": 1, "SEED": seed})[2] == seed
    for seed in (-1, defaults.SEED_MAX + 1):
        with pytest.raises(argparse.ArgumentTypeError, match="0–4,294,967,295"):
            arguments.seed(str(seed))
        with pytest.raises(protocol.ProtocolError):
            protocol.parse_start({"NR_OF_EPISODE": 1, "SEED": seed})
        with pytest.raises(ValueError, match="seed"):
            EnvironmentLogic(seed=seed)


def test_json_is_strict_a_peers_non_finite_number_is_null():
    text = strict_json({"avg_score": float("nan"), "scores": [1.0, float("inf")], "rounds": ({"x": -float("inf")},)})
    assert json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in strict JSON")) == {
        "avg_score": None,
        "scores": [1.0, None],
        "rounds": [{"x": None}],
    }
