"""What the progress line says of a run, beside the plot, the runs table and the status line.

The app is fed the run events a session hands it (``app.handle``, as its controller does) and
read from its screen: a vectorised run's episodes end out of number order, and the plot takes
them in number order.
"""

from __future__ import annotations

import re

from textual.widgets import Input

from cartpole_tui.env.events import EpisodeFinished, RunFinished, RunStarted
from cartpole_tui.env.runtime.session import SessionOptions
from cartpole_tui.tui.app import ControlRoomApp

from conftest import screen_text, until


def progress_line(app) -> str:
    return screen_text(app).splitlines()[2]


async def test_a_new_runs_line_names_no_score_of_the_last_run(tmp_path):
    """Run 2's episode 1 still plays while its later ones end: the plot's latest is still run 1's
    last (37), and the progress line said "run 2 · 2/20 · last 37"; then "last —" up to 19/20. It
    names run 2's latest to end until the plot has one of run 2."""
    app = ControlRoomApp(SessionOptions(offline=True), db_path=str(tmp_path / "runs.sqlite3"))
    async with app.run_test(size=(80, 24)) as pilot:
        app.handle(RunStarted("r1", 2, False))
        for episode, score in ((1, 12.0), (2, 37.0)):
            app.handle(EpisodeFinished("r1", episode, score, int(score), 0.0))
        app.handle(RunFinished("r1", 24.5, 2))
        app.handle(RunStarted("r2", 20, False))
        for episode, score in ((2, 60.0), (3, 44.0)):
            app.handle(EpisodeFinished("r2", episode, score, int(score), 0.0))
        await until(pilot, lambda: "run 2 · 2/20" in progress_line(app), what="run 2's count")
        await until(pilot, lambda: progress_line(app).rstrip().endswith("run 2 · 2/20 · last 44"), 5, "run 2's latest")
        app.handle(EpisodeFinished("r2", 1, 9.0, 9, 0.0))  # episode 1 ends: the plot takes 1, 2, 3
        await until(pilot, lambda: "run 2 · 3/20" in progress_line(app), what="run 2's third episode")
        await until(pilot, lambda: "run 2 · 3/20 · last 44 · mean(100) 32.4" in progress_line(app), 5, "run 2's last")


def told(screen: str) -> tuple[str | None, str | None, str]:
    """(the status line's steps/s, the runs table's latest row's steps/s, the progress line)."""
    lines = screen.splitlines()
    status = re.search(r"([\d,]+) steps/s\s*$", lines[0])
    rows = [re.search(r"\s([\d,]+)\s+(?:running|done|stopped)\s*┃", line) for line in lines if line.startswith("┃")]
    rows = [row for row in rows if row]
    return status.group(1) if status else None, rows[-1].group(1) if rows else None, lines[2]


async def test_the_status_lines_steps_per_second_changes_with_the_runs_table(tmp_path):
    """The status line had run 13's steps/s while the progress line still said "last run 12 done"
    and the table had no run 13: they are one redraw group now, with the plot."""
    app = ControlRoomApp(SessionOptions(seed=2, agent="swarm", models=4), db_path=str(tmp_path / "runs.sqlite3"))
    seen = []
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.connection == "connected", what="the app to connect")
        app.query_one("#episodes", Input).value = "200"

        def ended(number: int) -> bool:
            seen.append(told(screen_text(app)))
            return f"run {number} done" in seen[-1][2]

        for number in (1, 2, 3):
            await pilot.press("s")
            await until(pilot, lambda n=number: ended(n), what=f"run {number} to end on the progress line")
    shown = [(status, row) for status, row, _ in seen if status is not None]
    assert len({row for _, row in shown}) >= 3  # the runs' figures were seen as they changed
    assert all(status == row for status, row in shown), [s for s in shown if s[0] != s[1]]


async def test_the_focused_log_scrolls_with_its_keys_and_stays_where_it_was_put(tmp_path):
    """With the log focused, Home, Up and Down seemed to do nothing while lines came: each new
    line scrolled it back to the latest, so its start could not be read during a run."""
    app = ControlRoomApp(SessionOptions(offline=True), db_path=str(tmp_path / "runs.sqlite3"))
    async with app.run_test(size=(120, 40)) as pilot:
        for n in range(1, 41):
            app.log_line(f"line {n} of the log")
        log = lambda: re.split(r"[─━] Log [─━]", screen_text(app), maxsplit=1)[1]  # noqa: E731
        await until(pilot, lambda: "line 40 of the log" in log(), what="the latest line")
        app.main.log_pane.focus()
        await pilot.press("home")
        await until(pilot, lambda: "line 1 of the log" in log(), 5, "the first line after Home")
        await pilot.press("down")
        await until(pilot, lambda: "line 1 of the log" not in log() and "line 2 of the log" in log(), 5, "Down")
        await pilot.press("up")
        await until(pilot, lambda: "line 1 of the log" in log(), 5, "Up")
        app.log_line("line 41 of the log")  # a new line does not take the reader away
        await pilot.pause(0.2)
        assert "line 1 of the log" in log() and "line 41" not in log()
        await pilot.press("end")
        await until(pilot, lambda: "line 41 of the log" in log(), 5, "the latest line after End")
        app.log_line("line 42 of the log")  # at the end, it follows again
        await until(pilot, lambda: "line 42 of the log" in log(), 5, "the new line")


async def test_a_run_the_history_shows_before_its_news_is_named_on_the_progress_line(tmp_path):
    """A room joining mid-run records the run as its news comes, and its table may show it a redraw
    before the room is told: its first screen said "no run yet" beside "1  1005/2000 … running"."""
    app = ControlRoomApp(SessionOptions(offline=True), db_path=str(tmp_path / "runs.sqlite3"))
    async with app.run_test(size=(120, 40)) as pilot:
        first = lambda: "no run yet" in progress_line(app) and app.store is not None  # noqa: E731
        await until(pilot, first, what="the first screen")
        store = app.store
        assert store is not None
        store.begin_run(
            "r1", episodes=2000, deterministic=False, seed=None, env_id="CartPole-v1", address="", started=1.0
        )
        for index in range(1, 6):
            store.add_episode("r1", index, 20.0, 20, 2.0)
        await until(pilot, lambda: re.search(r"┃\s+1\s+5/2000\s", screen_text(app)), what="the run in the table")
        # the label's width follows its text one layout later: "last run 1" (as wide as "no run yet")
        # can show for a frame, so the whole label is waited for
        told = "last run 1 · 5/2000 episodes, running"
        await until(
            pilot, lambda: told in progress_line(app), what="the run named on the line", seen=lambda: progress_line(app)
        )
