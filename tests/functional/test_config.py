"""The config file: defaults set once, flags override, a bad file is one line, the theme persists."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_app import connected, make_app

from cartpole_tui.env import defaults
from cartpole_tui.tui.cli import config
from cartpole_tui.tui.cli.commands import remember_theme
from cartpole_tui.tui.cli.parser import apply_config, build_parser

APP = Path(sys.executable).parent / "cartpole-tui"


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def parsed(argv: list[str], path: Path):
    args = build_parser().parse_args(argv)
    apply_config(args, config.load(path))
    return args


def test_the_file_sets_defaults_and_flags_override_them(tmp_path):
    path = write(tmp_path, 'connect = "127.0.0.1:9999"\ndb = "~/runs.db"\nredraw_hz = 5\ntheme = "nord"\n')
    args = parsed([], path)
    assert args.connect == "127.0.0.1:9999" and args.redraw_hz == 5 and args.theme == "nord"
    assert args.db == str(Path("~/runs.db").expanduser())
    args = parsed(["--connect", "127.0.0.1:1234", "--redraw-hz", "1", "--db", ":memory:"], path)
    assert (args.connect, args.redraw_hz, args.db) == ("127.0.0.1:1234", 1.0, ":memory:")
    assert parsed(["--offline"], path).connect is None  # browsing history never joins the configured broker
    assert parsed(["evolve"], path).connect == "127.0.0.1:9999"  # --connect is required there, or the file's


def test_no_file_means_the_built_in_defaults(tmp_path):
    args = parsed([], tmp_path / "missing.toml")
    assert args.connect is None and args.db is None and args.redraw_hz == defaults.REDRAW_HZ


def export_with_config(home, config_file, *args: str) -> subprocess.CompletedProcess:
    """`cartpole-tui export ARGS` with ``config_file`` named by $CARTPOLE_TUI_CONFIG."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), config.CONFIG_ENV: str(config_file)}
    return subprocess.run([str(APP), "export", *args], capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('db = "x"\nconect = "127.0.0.1:1"\n', "line 2: unknown key 'conect'"),
        ('theme = "nord"\nredraw_hz = "fast"\n', "line 2: redraw_hz must be a number"),
        ('\n\nconnect = "localhost"\n', "line 3: connect: expected HOST:PORT"),
        ("redraw_hz = 500\n", "line 1: redraw_hz: expected repaints a second between 0.1 and 30"),
        ('db = "x\n', "not valid TOML"),
    ],
)
def test_a_bad_file_is_one_line_naming_the_key_and_its_line_exit_2(tmp_path, text, expected):
    path = write(tmp_path, text)
    done = export_with_config(tmp_path, path, "--db", ":memory:")
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and expected in done.stderr and str(path) in done.stderr
    assert "Traceback" not in done.stderr


def test_the_default_path_is_in_the_xdg_config_directory_and_in_help(tmp_path, monkeypatch):
    monkeypatch.delenv(config.CONFIG_ENV, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config.config_path() == tmp_path / "xdg" / "cartpole-tui" / "config.toml"
    assert str(tmp_path / "xdg" / "cartpole-tui" / "config.toml") in build_parser().format_help()


def test_saving_a_value_keeps_the_rest_of_the_file(tmp_path):
    path = write(tmp_path, '# mine\ndb = "a.db"\ntheme = "nord"\n')
    config.save_value(path, "theme", "dracula")
    assert path.read_text() == '# mine\ndb = "a.db"\ntheme = "dracula"\n'
    config.save_value(tmp_path / "new" / "config.toml", "theme", 'odd"name')
    assert config.load(tmp_path / "new" / "config.toml").values == {"theme": 'odd"name'}


async def test_the_palettes_theme_choice_is_remembered_and_used_next_time(tmp_path):
    path = write(tmp_path, 'theme = "nord"\n')
    app = make_app(tmp_path)
    remember_theme(app, config.load(path).get("theme"), lambda name: config.save_value(path, "theme", name))
    async with app.run_test() as pilot:
        await connected(pilot)
        assert app.theme == "nord"
        app.theme = "gruvbox"  # what the palette's "Change theme" does
        await pilot.pause(0.1)
    assert config.load(path).get("theme") == "gruvbox"


def test_the_token_file_comes_from_the_flag_then_the_environment_then_the_file(tmp_path, monkeypatch):
    path = write(tmp_path, 'token_file = "/from/config"\n')
    monkeypatch.delenv("CARTPOLE_TUI_TOKEN_FILE", raising=False)
    assert parsed(["run"], path).token_file == "/from/config"
    monkeypatch.setenv("CARTPOLE_TUI_TOKEN_FILE", "/from/env")
    assert parsed(["broker"], path).token_file == "/from/env"
    assert parsed(["swarm", "--connect", "127.0.0.1:1", "--token-file", "/from/flag"], path).token_file == "/from/flag"


def test_a_bad_trust_block_is_a_usage_error():
    done = subprocess.run([str(APP), "broker", "--trust", "10.0.0.0/33"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--trust" in done.stderr and "10.0.0.0/33" in done.stderr


def test_a_missing_file_named_by_the_environment_variable_is_a_usage_error(tmp_path):
    """A typo in $CARTPOLE_TUI_CONFIG ran without the file's connect, token and db, not a word said."""
    missing = tmp_path / "nonexist.toml"
    done = export_with_config(tmp_path, missing, "--db", ":memory:")
    assert done.returncode == 2 and done.stdout == "", done.stderr
    assert done.stderr == f"cartpole-tui: config {missing}: no such file (${config.CONFIG_ENV} names it)\n"


def test_a_db_from_the_file_in_a_missing_folder_names_the_files_line(tmp_path):
    """It said "--db /nonexist/x.db: no folder …", blaming a flag the user never gave."""
    path = write(tmp_path, f'theme = "nord"\ndb = "{tmp_path}/no/x.db"\n')
    done = export_with_config(tmp_path, path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"cartpole-tui export: db in {path}, line 2: no folder {tmp_path}/no "), done.stderr
