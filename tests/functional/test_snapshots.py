"""The main screen as SVG, compared with the approved pictures (pytest --snapshot-update renews them)."""

import pytest

from cartpole_tui.env.runtime.session import SessionOptions
from cartpole_tui.tui.app import ControlRoomApp
from screenshots.demo_history import history_shown, write_history


@pytest.fixture
def history_app(tmp_path):
    path = str(tmp_path / "runs.sqlite3")
    write_history(path)
    return ControlRoomApp(SessionOptions(offline=True), db_path=path)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_main_screen(snap_compare, history_app, size):
    assert snap_compare(history_app, terminal_size=size, run_before=history_shown)
