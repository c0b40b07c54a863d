"""A live control room resized between 80x24, 120x40 and 200x60 (issue 20, the new-user pass):
after each resize every pane is whole, no row is left blank, and the status line, the
progress label, the runs table and the log say all they said, nothing cut."""

from __future__ import annotations

import re

import pytest
from test_app import log_text, until
from test_control_room import assert_fits
from textual.widgets import Input

from cartpole_tui.env.runtime.session import SessionOptions
from cartpole_tui.tui.app import ControlRoomApp

from conftest import screen_text

SIZES = ((80, 24), (120, 40), (200, 60), (80, 24), (200, 60), (120, 40))


async def resized(pilot, size: tuple[int, int]) -> list[str]:
    """The screen's lines once the app has laid itself out and drawn at ``size``."""
    app = pilot.app
    await pilot.resize_terminal(*size)
    await until(pilot, lambda: tuple(app.size) == size, what=f"the app at {size}")
    await until(pilot, lambda: app.main.plot.shows_latest_data, what="the plot redrawn")
    await pilot.pause()
    return screen_text(app).splitlines()


@pytest.mark.timeout(240)
async def test_a_live_control_room_survives_resizes_whole(tmp_path):
    app = ControlRoomApp(SessionOptions(seed=5, agent="swarm", models=4, parallel=16), db_path=str(tmp_path / "r.db"))
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.connection == "connected", what="the app to connect")
        app.query_one("#episodes", Input).value = "120"
        await pilot.press("s")
        await until(pilot, lambda: "run 1 done: average" in log_text(app), timeout=90, what="the run's end")
        run = app.store.runs()[-1]
        table = app.main.runs_table
        await until(pilot, lambda: table.row_count and "done" in str(table.get_row_at(0)[8]), what="the table's row")
        rate, avg = str(app.main.runs_table.get_row_at(0)[7]), str(app.main.runs_table.get_row_at(0)[4])
        last_log = log_text(app).splitlines()[-1]
        for size in SIZES:
            lines = await resized(pilot, size)
            width, height = size
            assert len(lines) == height and all(len(line) == width for line in lines), size
            assert_fits(app)
            blank = [number for number, line in enumerate(lines) if not line.strip()]
            assert not blank, (size, blank, "\n".join(lines))
            assert "● connected" in lines[0] and lines[0].rstrip().endswith(f"  {rate} steps/s"), (size, lines[0])
            label = f"run 1 done · avg {avg} over {run.finished} episodes"
            assert any(label in line for line in lines), (size, label, "\n".join(lines))
            box = table.region
            header, row = (line[box.x : box.right] for line in lines[box.y + 1 : box.y + 3])
            assert "avg (ENV_DONE)" in header and header.rstrip(" │┃").endswith("state"), (size, header)
            assert f" {avg} " in row and f" {rate} " in row and "done" in row, (size, row)
            if app.main.log_pane.display:  # the log's latest line, whole, at its bottom
                log = app.main.log_pane.region
                rows = " ".join(line[log.x + 1 : log.right - 1] for line in lines[log.y + 1 : log.bottom - 1])
                assert " ".join(last_log.split()) in " ".join(rows.split()), (size, rows)
            assert "q Quit" in lines[-1], (size, lines[-1])


@pytest.mark.parametrize("hide", ["resize", "key"])
async def test_a_focused_pane_that_goes_away_hands_the_keys_to_the_runs_table(tmp_path, hide):
    """The log focused at 120x40, then hidden (80x24 has no log; or its key): no pane had the
    heavy border and space marked nothing until two Tabs (new-user pass 6)."""
    from test_control_room import loaded, offline_app

    app = offline_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot)
        app.main.log_pane.focus()
        await until(pilot, lambda: app.focused is app.main.log_pane, what="the log focused")
        if hide == "resize":
            await resized(pilot, (80, 24))
        else:
            await pilot.press("5")  # the log's pane key
        await until(pilot, lambda: not app.main.log_pane.display, what="the log hidden")
        table = app.main.runs_table
        await until(pilot, lambda: app.focused is table, what="the runs table focused")
        row = table.cursor_row
        await pilot.press("space")
        number = str(table.get_row_at(row)[1])
        marked = lambda: any(re.match(rf"[┃│]\s*◆\s+{number}\s", line) for line in screen_text(app).splitlines())  # noqa: E731
        await until(pilot, marked, 5, f"run {number} marked on the screen", seen=lambda: screen_text(app))
        if hide == "resize":  # back at 120x40 the log is shown again, and focused as it was
            await resized(pilot, (120, 40))
        else:
            await pilot.press("5")
        await until(pilot, lambda: app.focused is app.main.log_pane, what="the log focused again")
