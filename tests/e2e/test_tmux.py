"""End to end: the installed `cartpole-tui` in a real terminal (tmux), driven by its keys.

Each test runs the venv's console script in a tmux server of its own (its own socket,
killed in teardown), reads the screen with ``capture-pane`` and waits for what it
expects with a timeout; keys go one at a time, each important step waited for on screen.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
import uuid
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest

from conftest import wait_for

TMUX = shutil.which("tmux")
APP = shutil.which("cartpole-tui", path=str(Path(sys.executable).parent))

pytestmark = [
    pytest.mark.skipif(TMUX is None, reason="tmux is not installed (CI installs it)"),
    pytest.mark.timeout(180),
]

STARTUP_TIMEOUT = 60.0  # the app, its embedded network child and the joining; generous on a loaded machine
STEP_TIMEOUT = 30.0
EXITED = "cartpole-tui exited with status"
# A shell exports these (bash's checkwinsize) into pytest from the terminal it runs in; the app
# under test gets only what a test gives it, so the tests pass from a terminal as in CI.
SIZE_VARIABLES = ("COLUMNS", "LINES")


class TmuxTerminal:
    """One command in a ``width`` x ``height`` window of a tmux server with its own socket.

    A shell runs the command and then prints ``EXITED <status>``; the pane stays after
    that (``remain-on-exit``), so the line can be read.
    """

    def __init__(self, command: list[str], width: int, height: int, cwd: Path, env: dict[str, str]):
        self.socket = f"cartpole-e2e-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        environment = [arg for name, value in env.items() for arg in ("-e", f"{name}={value}")]
        self.tmux(
            "set-option",
            "-g",
            "remain-on-exit",
            "on",
            ";",
            "new-session",
            "-d",
            "-s",
            "e2e",
            "-x",
            str(width),
            "-y",
            str(height),
            "-c",
            str(cwd),
            *environment,
            f'{shlex.join(command)}; echo "{EXITED} $?"',
        )
        self.socket_path = self.tmux("display-message", "-p", "#{socket_path}").strip()

    def tmux(self, *args: str) -> str:
        # the first call starts the server, whose environment every pane inherits
        clean = {name: value for name, value in os.environ.items() if name not in SIZE_VARIABLES}
        return subprocess.run(
            [TMUX, "-L", self.socket, "-f", os.devnull, *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
            env=clean,
        ).stdout

    def kill(self) -> None:
        """Stop the server and everything in it; tmux 3.3 leaves its socket file behind, so remove it."""
        subprocess.run([TMUX, "-L", self.socket, "kill-server"], capture_output=True, timeout=10)
        Path(self.socket_path).unlink(missing_ok=True)

    def screen(self, history: bool = False) -> list[str]:
        """The visible lines; with ``history``, the lines scrolled off above them first."""
        return self.tmux("capture-pane", "-p", "-t", "e2e", *(("-S", "-") if history else ())).splitlines()

    def pane(self, variable: str) -> str:
        return self.tmux("display-message", "-p", "-t", "e2e", f"#{{{variable}}}").strip()

    def press(self, key: str) -> None:
        self.tmux("send-keys", "-t", "e2e", key)

    def wait(self, predicate, what: str, timeout: float = STEP_TIMEOUT, history: bool = False):
        """Wait until ``predicate(screen lines)`` is truthy; on time-out the message shows the screen."""
        try:
            return wait_for(lambda: predicate(self.screen(history)), timeout, what)
        except AssertionError as error:
            raise AssertionError(f"{error}; the screen:\n" + "\n".join(self.screen(history))) from None


@pytest.fixture
def terminal(tmp_path):
    """Start ``cartpole-tui`` with ``--db <tmp>/runs.db`` in a tmux window of the given size."""
    started: list[TmuxTerminal] = []

    def start(width: int, height: int, *args: str, env: dict[str, str] | None = None) -> TmuxTerminal:
        assert APP is not None, f"no cartpole-tui console script next to {sys.executable}"
        # The embedded network keeps a log file in the temporary directory: keep it in the test's.
        term = TmuxTerminal(
            [APP, "--db", str(tmp_path / "runs.db"), *args],
            width,
            height,
            cwd=tmp_path,
            env={"TMPDIR": str(tmp_path), **(env or {})},
        )
        started.append(term)
        term.wait(
            lambda lines: lines and "● connected" in lines[0], "the status line to say connected", STARTUP_TIMEOUT
        )
        return term

    yield start
    for term in started:
        term.kill()


def line_matching(pattern: str):
    """A screen predicate: the first match of ``pattern`` on any line, or None."""
    regex = re.compile(pattern)
    return lambda lines: next((m for m in map(regex.search, lines) if m), None)


def quit_and_wait_exit(term: TmuxTerminal) -> None:
    term.press("q")
    exited = term.wait(line_matching(rf"{EXITED} (\d+)"), "the app to exit after q", history=True)
    assert exited.group(1) == "0"
    wait_for(lambda: term.pane("pane_dead") == "1", STEP_TIMEOUT, "the pane's shell to end")


def test_a_run_started_from_the_keyboard_finishes_on_screen_and_in_the_history(terminal, tmp_path):
    term = terminal(100, 30, "--seed", "3")

    term.press("n")  # Textual puts the terminal's cursor where the focused input's cursor is
    wait_for(
        lambda: "Episodes" in term.screen()[int(term.pane("cursor_y"))],
        STEP_TIMEOUT,
        "the cursor in the episodes field after n",
    )
    term.press("1")  # replaces the selected default
    term.wait(line_matching(r"Episodes 1 "), "the episodes field to show 1")
    term.press("2")
    term.wait(line_matching(r"Episodes 12 "), "the episodes field to show 12")
    term.press("Enter")

    row = term.wait(line_matching(r"[│┃]\s+1\s+12\s+no\s+(\d+\.\d)\s.*\bdone\b"), "run 1 done in the runs table")
    average = row.group(1)
    term.wait(line_matching(rf"run 1 done · avg {re.escape(average)}\b"), "the progress label with the average")
    term.press("5")  # the log pane starts hidden below 32 rows
    term.wait(
        line_matching(rf"run 1 done: average {re.escape(average)} over 12 episodes \(ENV_DONE\)"),
        "the log line of the finished run",
    )

    quit_and_wait_exit(term)
    with sqlite3.connect(tmp_path / "runs.db") as db:
        runs = db.execute("SELECT number, episodes, state, avg_score, run_uid FROM runs").fetchall()
        assert [run[:3] for run in runs] == [(1, 12, "done")]
        assert str(Decimal(repr(runs[0][3])).quantize(Decimal("0.1"), ROUND_HALF_UP)) == average  # half up
        scores = [score for (score,) in db.execute("SELECT score FROM episodes WHERE run_uid = ?", (runs[0][4],))]
    assert len(scores) == 12
    assert sum(scores) / 12 == pytest.approx(runs[0][3])


def drawn_whole(term: TmuxTerminal) -> list[str]:
    """The screen once its last line, the footer, is drawn: "connected" can show before the frame is done."""
    term.wait(lambda lines: lines and re.search(r"\bq Quit\b", lines[-1]), "the footer on the last line")
    return term.screen()


def assert_essentials_fit_80x24(lines: list[str]) -> None:
    assert len(lines) == 24
    assert re.search(r"^ ?127\.0\.0\.1:\d+ │ CartPole-v1 │.*● connected", lines[0]), lines[0]
    assert any(re.search(r"Episodes\s+20\b.*\bStart\b.*\bStop\b.*\bEvolve\b", line) for line in lines), lines
    assert any(re.match(r"^╭─ Score ─+", line) for line in lines), lines
    assert re.match(r"^[┏╭].* Runs .*[┓╮]$", lines[-8]) and len(lines[-8]) == 80, lines  # the runs pane, whole
    assert re.search(r"\bs Start\b.*\bq Quit\b", lines[-1]), lines[-1]


@pytest.mark.parametrize(
    "size_variables",
    [{}, {"COLUMNS": "120", "LINES": "40"}],
    ids=["plain", "stale-COLUMNS-LINES"],
)
def test_everything_essential_fits_at_80x24(terminal, size_variables):
    """The app sizes itself from the terminal, even when COLUMNS/LINES in its environment say otherwise."""
    term = terminal(80, 24, env=size_variables)
    assert_essentials_fit_80x24(drawn_whole(term))
    quit_and_wait_exit(term)


def test_the_size_variables_of_pytests_own_environment_do_not_reach_the_app(terminal, monkeypatch):
    """As when the README's test command runs from a terminal whose shell exports them."""
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.setenv("LINES", "40")
    term = terminal(80, 24)
    assert_essentials_fit_80x24(drawn_whole(term))
    quit_and_wait_exit(term)


def test_the_footer_shows_help_and_quit_at_80x24(terminal):
    term = terminal(80, 24)
    footer = drawn_whole(term)[-1]
    quit_and_wait_exit(term)
    assert re.search(r"\? Help\s+q Quit\b", footer), footer


@pytest.mark.parametrize("term_name", ["screen", "xterm-256color"])
def test_a_run_in_a_plain_terminal_without_colour(terminal, term_name):
    """TERM=screen / xterm-256color with NO_COLOR: no truecolor, no colour at all, the same screen."""
    term = terminal(80, 24, "--agent", "random", env={"TERM": term_name, "NO_COLOR": "1"})
    term.press("s")
    term.wait(line_matching(r"run 1 done · avg \d+\.\d"), "the first run to finish")
    quit_and_wait_exit(term)


@pytest.mark.parametrize("end", ["q", "terminal closed"])
def test_a_network_that_ran_well_leaves_no_log(terminal, tmp_path, end):
    """Its log (in TMPDIR, the test's folder here) is kept only when the network failed."""
    logs = lambda: list(tmp_path.glob("cartpole-tui-network-*.log"))  # noqa: E731
    term = terminal(80, 24)
    assert len(logs()) == 1  # while it runs
    if end == "q":
        quit_and_wait_exit(term)
    else:
        term.kill()  # SIGHUP, as when the window or the SSH connection closes
    wait_for(lambda: not logs(), STEP_TIMEOUT, "the network's log removed")


@pytest.mark.parametrize("end", ["q", "terminal closed"])
def test_a_run_going_when_the_app_ends_is_recorded_stopped_with_its_episodes(terminal, tmp_path, end):
    """Closing the terminal (SSH gone) mid-run left the run "running" until the next start called
    it failed; the app's environment ends it stopped, with every episode it finished."""
    term = terminal(80, 24, "--agent", "random")
    term.press("n")
    term.tmux("send-keys", "-t", "e2e", "BSpace", "1000000", "Enter")  # a run that outlives the app
    term.wait(line_matching(r"run 1 · \d+/1000000"), "episodes of the long run")
    if end == "q":
        quit_and_wait_exit(term)
    else:
        term.kill()  # SIGHUP, as when the window or the SSH connection closes
    database = tmp_path / "runs.db"

    def ended() -> tuple | None:
        with contextlib.closing(sqlite3.connect(database)) as conn:
            row = conn.execute("SELECT state, finished, (SELECT COUNT(*) FROM episodes) FROM runs").fetchone()
        return row if row and row[0] != "running" else None

    state, finished, episodes = wait_for(ended, STEP_TIMEOUT, "the run to be recorded as ended")
    assert state == "stopped" and finished == episodes > 0


def test_the_episodes_field_takes_fast_keys_in_order(terminal):
    """Keys that arrive in one read (a laggy SSH link) are typed as they were pressed."""
    term = terminal(80, 24)
    term.press("n")  # the field, its "20" selected
    wait_for(lambda: "Episodes" in term.screen()[int(term.pane("cursor_y"))], STEP_TIMEOUT, "the cursor in the field")
    term.tmux("send-keys", "-t", "e2e", "BSpace", "5", "0")  # one call: one write to the terminal
    term.wait(line_matching(r"Episodes 50 "), "the field to hold 50")
    term.tmux("send-keys", "-t", "e2e", "End", "BSpace", "BSpace", "BSpace", "7", "5")
    term.wait(line_matching(r"Episodes 75 "), "the field to hold 75")
    term.press("Escape")  # alone: an escape with more bytes after it would start an escape sequence
    term.wait(lambda lines: re.search(r"\? Help\s+q Quit", lines[-1]), "the app's keys in the footer again")
    quit_and_wait_exit(term)


def test_resizes_between_80x24_120x40_and_200x60_keep_the_screen_whole(terminal):
    """A real terminal resized (as a window or an SSH client is): the app redraws at each size."""
    term = terminal(80, 24, "--seed", "3")
    term.press("s")
    row = term.wait(line_matching(r"[│┃]\s+1\s+20\s+no\s+(\d+\.\d)\s.*\s([\d,]+)\s+done\b"), "run 1 done in the table")
    average, rate = row.group(1), row.group(2)
    for width, height in ((200, 60), (120, 40), (80, 24), (200, 60)):
        term.tmux("resize-window", "-t", "e2e", "-x", str(width), "-y", str(height))
        term.wait(
            lambda lines: len(lines) == height and lines[0].rstrip().endswith(f"  {rate} steps/s"),  # noqa: B023
            f"the status line redrawn at {width}x{height}",
        )
        term.wait(line_matching(rf"run 1 done · avg {re.escape(average)} over 20 episodes"), "the progress label")
        term.wait(line_matching(r"avg \(ENV_DONE\)\s+best\s+time\s+steps/s\s+state"), "the runs table's header, whole")
        term.wait(lambda lines: ("cartpole-tui │" in lines[0]) is (width >= 100), "the app's name from 100 columns")  # noqa: B023
        term.wait(lambda lines: re.search(r"\bq Quit\b", lines[-1]), "the footer on the last row")
        term.wait(lambda lines: all(line.strip() for line in lines), "no blank row")
    quit_and_wait_exit(term)
