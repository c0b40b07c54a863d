"""The main screen as SVG, compared with the approved pictures (pytest --snapshot-update renews them)."""

import pytest

from cartpole_tui.env.runtime.session import SessionOptions
from cartpole_tui.tui.app import ControlRoomApp
from screenshots.demo_history import write_history


@pytest.fixture
def history_app(tmp_path):
    path = str(tmp_path / "runs.sqlite3")
    write_history(path)
    return ControlRoomApp(SessionOptions(offline=True), db_path=path)


async def _loaded(pilot):
    """Until all six runs are in the table and the plot has drawn every episode."""
    app = pilot.app
    for _ in range(1000):
        main = app.main  # the auto-pilot may start before the main screen is composed
        ready = main is not None and main.is_mounted and main.plot.is_mounted
        if ready and len(app.history) == 220 and main.runs_table.row_count == 6 and main.plot.shows_latest_data:
            return
        await pilot.pause(0.01)
    raise AssertionError("the history did not load and draw within 10 s")


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_main_screen(snap_compare, history_app, size):
    assert snap_compare(history_app, terminal_size=size, run_before=_loaded)
