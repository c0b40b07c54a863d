"""Every number on screen true (issue 20): one steps/s for one run wherever it shows, and a
compare legend that says its smoothing window."""

from __future__ import annotations

import sqlite3

import pytest
from test_app import log_text, until
from test_control_room import loaded, offline_app
from textual.widgets import Input

from cartpole_tui.env.runtime.session import SessionOptions
from cartpole_tui.tui.app import ControlRoomApp

from conftest import screen_text


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_a_finished_runs_steps_a_second_are_one_figure_the_historys(tmp_path, size):
    db = tmp_path / "runs.sqlite3"
    app = ControlRoomApp(SessionOptions(seed=5, agent="swarm", models=4, parallel=16), db_path=str(db))
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: app.connection == "connected", what="the app to connect")
        app.query_one("#episodes", Input).value = "120"
        await pilot.press("s")
        await until(pilot, lambda: [r for r in app.store.runs() if r.state == "done"], timeout=60, what="the run")
        assert app.session.environment.instances == 16  # vectorised: where the two figures were ~100x apart
        assert app.store.flush()
        with sqlite3.connect(db) as connection:
            steps, started, ended = connection.execute("SELECT total_steps, started, ended FROM runs").fetchone()
        figure = f"{steps / (ended - started):,.0f}"  # steps over seconds, as the history has them
        status = lambda: screen_text(app).splitlines()[0].rstrip()  # noqa: E731
        await until(pilot, lambda: status().endswith(f"  {figure} steps/s"), what=f"{figure} on the status line")
        table = app.main.runs_table
        await until(
            pilot, lambda: table.row_count and str(table.get_row_at(0)[7]) == figure, what="the same in the runs table"
        )
        assert f" {figure} " in screen_text(app).splitlines()[table.region.y + 2]  # the row as drawn
        if app.main.panes["log-pane"].display:  # from 32 rows up: the log says the same
            await until(pilot, lambda: f"(ENV_DONE), {figure} steps/s" in log_text(app), what="the log line")
            assert f"{figure} steps/s" in screen_text(app).split("\n", 1)[1]


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_the_compare_legend_says_its_smoothing_window(tmp_path, size):
    app = offline_app(tmp_path)
    async with app.run_test(size=size) as pilot:
        await loaded(pilot)
        table = app.main.runs_table
        table.focus()
        table.move_cursor(row=2)
        await pilot.press("space")
        number = table.current
        run = app.store.run(number)
        scores = app.store.episode_scores(run.run_uid)
        await until(pilot, lambda: len(app.main.plot.overlays) == 1, what="the overlay")
        await until(pilot, lambda: f"1━ run {number} mean(100)" in screen_text(app), what="mean(100) in the legend")
        while app.main.plot.window != 1:
            await pilot.press("w")
        last = f"1━ run {number} mean(1) {scores[-1]:.1f}"  # at w=1 the mean is the last score, not the average
        await until(pilot, lambda: last in screen_text(app), what=f"{last!r} on screen")
        assert app.main.plot.overlays[0].window == 1  # the means were worked out again for the new window
        assert f"{run.avg_score:.1f}" in " ".join(map(str, table.get_row_at(2)))  # the table's figure: the average
