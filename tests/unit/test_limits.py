"""One set of limits (env/defaults.py): the command line, the app's field and the environment
take and refuse the same values; the command line's JSON is strict."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

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


# --- the README's limits table names every bound and deadline of env/defaults.py -----------------

_BOUND = re.compile(r"MAX|MIN|TIMEOUT|WAIT|KEPT|PER_|BACKOFF|FORGET|INTERVAL|TRIES|SECONDS|QUIET")
_FACTS = {"EPISODE_MAX_SCORE"}  # CartPole-v1's best episode: a fact of the game, not a bound
README = Path(__file__).resolve().parents[2] / "README.md"


def bounds() -> dict[str, object]:
    """The public bounds and deadlines of env/defaults.py, by name."""
    return {
        name: value
        for name, value in vars(defaults).items()
        if name.isupper() and not name.startswith("_") and _BOUND.search(name) and name not in _FACTS
    }


def limits_table() -> list[str]:
    """The rows of the README's table of limits (the one headed ``| bound | value |``)."""
    lines = README.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "| bound | value |")
    rows = []
    for line in lines[start + 2 :]:
        if not line.strip().startswith("|"):
            break
        rows.append(line)
    return rows


def renderings(value: object) -> list[str]:
    """How a value may be written in the README: 10,000, 0.5, 2^30, 2^63−1, 10^12."""
    if isinstance(value, tuple):
        return [text for item in value for text in renderings(item)]
    shown = [f"{value:,}" if isinstance(value, int) else f"{value:g}"]
    if isinstance(value, float) and value >= 1e4 and f"{value:e}".startswith("1.000000e+"):
        shown.append(f"10^{int(f'{value:e}'.split('+')[1])}")
    if isinstance(value, int) and value > 1024:
        for power in range(11, 64):
            if value == 2**power:
                shown.append(f"2^{power}")
            if value == 2**power - 1:
                shown.append(f"2^{power}−1")
    return shown


def unlisted() -> list[str]:
    """The bounds the table lacks, or shows without their value (written just before the name:
    ``10 s (`REGISTER_TIMEOUT`)``, after any earlier backquoted text of the row)."""
    rows = limits_table()
    missing = []
    for name, value in bounds().items():
        row = next((row for row in rows if f"`{name}`" in row), None)
        items = value if isinstance(value, tuple) else (value,)
        if row is None:
            missing.append(f"{name} is not in the table")
            continue
        before = row[: row.index(f"`{name}`")]
        shown = _numbers(before[before.rfind("`") + 1 :])
        missing += [f"{name}: {item} is not shown before it" for item in items if not set(renderings(item)) & shown]
    return missing


def _numbers(row: str) -> set[str]:
    """The row's numbers as written (10,000 / 0.5 / 2^63−1)."""
    return set(re.findall(r"[0-9][0-9,.^−]*[0-9]|[0-9]", row))


def test_every_bound_of_the_defaults_is_in_the_readme_limits_table_with_its_value():
    """Each bound and deadline of env/defaults.py is named (`NAME`) in a row that shows its value."""
    assert len(bounds()) > 30
    assert unlisted() == []


def test_the_table_check_sees_a_bound_missing_or_its_value_changed(monkeypatch):
    monkeypatch.setattr(defaults, "NEW_TIMEOUT", 7.5, raising=False)
    monkeypatch.setattr(defaults, "REGISTER_TIMEOUT", 11.0)
    assert unlisted() == ["REGISTER_TIMEOUT: 11.0 is not shown before it", "NEW_TIMEOUT is not in the table"]
