"""The user's config file: defaults set once, overridden by flags.

``~/.config/cartpole-tui/config.toml`` (the XDG config directory), for example::

    connect = "127.0.0.1:8080"       # join this broker instead of the embedded network
    token_file = "~/.config/cartpole-tui/token"
    db = "~/runs.sqlite3"
    redraw_hz = 4
    theme = "nord"                   # written back when the palette's theme changes

A bad file is one line naming the key and its line, never a traceback.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from cartpole_tui.env.paths import open_regular

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

APP_NAME = "cartpole-tui"
CONFIG_ENV = "CARTPOLE_TUI_CONFIG"  # another file instead of the default (tests, several setups)
# key → (TOML types accepted, what to say when it is something else)
KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "connect": ((str,), "a string HOST:PORT"),
    "token_file": ((str,), "a string (a path)"),
    "db": ((str,), "a string (a path, or :memory:)"),
    "redraw_hz": ((int, float), "a number"),
    "theme": ((str,), "a string (a theme name)"),
}
PATH_KEYS = ("token_file", "db")
MAX_BYTES = 64 * 1024  # a config file holds a few lines
MAX_DOTS_A_LINE = 100  # a key of 32,000 dotted parts costs tomllib 20 s; no real line has 100 dots


class ConfigError(ValueError):
    """The config file cannot be used; the message is one line naming the file, line and key."""


def config_path() -> Path:
    override = os.environ.get(CONFIG_ENV)
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"


def _key_line(text: str, key: str) -> int | None:
    pattern = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=")
    for number, line in enumerate(text.splitlines(), 1):
        if pattern.match(line):
            return number
    return None


@dataclass
class Config:
    """What the file says (an empty Config when there is none)."""

    path: Path
    values: dict = field(default_factory=dict)
    text: str = ""

    def where(self, key: str) -> str:
        line = _key_line(self.text, key)
        return f"{self.path}, line {line}" if line else str(self.path)

    def get(self, key: str, convert: Callable | None = None):
        """The value for ``key`` (None when unset), through ``convert``; ConfigError naming the line."""
        value = self.values.get(key)
        if value is None or convert is None:
            return value
        try:
            return convert(str(value) if isinstance(value, (int, float)) else value)
        except Exception as error:  # argparse's ArgumentTypeError, ValueError: the message says what is wrong
            raise ConfigError(f"config {self.where(key)}: {key}: {error}") from None


def load(path: Path | None = None, checks: dict[str, Callable] | None = None) -> Config:
    """Read and check the file (``checks``: key → a converter that raises on a bad value, as
    argparse's types do); a missing file is an empty Config, unless $CARTPOLE_TUI_CONFIG names it
    (a typo there silently dropped the file's connect, token_file and db)."""
    named = path is None and bool(os.environ.get(CONFIG_ENV))
    path = path or config_path()
    try:
        text = _read(path)
    except FileNotFoundError:
        if named:
            raise ConfigError(f"config {path}: no such file (${CONFIG_ENV} names it)") from None
        return Config(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config {path}: not valid TOML: {error}") from None
    except RecursionError:  # tomllib recurses once per level of nested arrays and tables
        raise ConfigError(f"config {path}: not valid TOML: nested too deep") from None
    config = Config(path, {}, text)
    for key, value in data.items():
        if key not in KEYS:
            raise ConfigError(f"config {config.where(key)}: unknown key {key!r} (known: {', '.join(KEYS)})")
        types, expected = KEYS[key]
        if isinstance(value, bool) or not isinstance(value, types):
            raise ConfigError(f"config {config.where(key)}: {key} must be {expected}, got {type(value).__name__}")
        config.values[key] = os.path.expanduser(value) if key in PATH_KEYS and isinstance(value, str) else value
    for key, check in (checks or {}).items():
        config.get(key, check)
    return config


def _read(path: Path) -> str:
    """The file's text; FileNotFoundError when there is none, ConfigError (one line) when it
    cannot be a config file: not a regular file (a FIFO would block), too large, not UTF-8,
    or a line whose keys tomllib would take seconds over (its cost grows with the square of
    a dotted key's parts)."""
    try:
        with open_regular(str(path)) as file:
            data = file.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise
    except OSError as error:
        raise ConfigError(f"config {path}: {error.strerror or 'not a regular file'}") from None
    if len(data) > MAX_BYTES:
        raise ConfigError(f"config {path}: larger than {MAX_BYTES // 1024} KiB: not a config file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config {path}: not UTF-8 text") from None
    for number, line in enumerate(text.splitlines(), 1):
        if line.count(".") > MAX_DOTS_A_LINE:
            raise ConfigError(f"config {path}, line {number}: more than {MAX_DOTS_A_LINE} dots: not a config line")
    return text


def save_value(path: Path, key: str, value: str) -> None:
    """Set ``key = "value"`` in the file, keeping every other line (and comment) as it is."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    line = f"{key} = {_toml_string(value)}"
    number = _key_line(text, key)
    lines = text.splitlines()
    if number is None:
        # a top-level key: before the first [table], where TOML would put it in that table
        tables = [i for i, text_line in enumerate(lines) if text_line.lstrip().startswith("[")]
        lines.insert(tables[0] if tables else len(lines), line)
    else:
        lines[number - 1] = line
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _toml_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
