"""The focus a hidden pane hands on, with modals and the episodes field."""

from __future__ import annotations

from test_app import until
from test_resizes import resized
from textual.widgets import Input


async def test_a_resize_under_the_help_screen_ends_nothing_and_the_focus_comes_back(tmp_path):
    from test_control_room import loaded, offline_app

    app = offline_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot)
        main = app.main
        main.log_pane.focus()
        await until(pilot, lambda: app.focused is main.log_pane, what="the log focused")
        await pilot.press("question_mark")
        await until(pilot, lambda: app.screen is not main, what="the help screen")
        for size in ((80, 24), (120, 40), (80, 24)):
            await pilot.resize_terminal(*size)
            await pilot.pause(0.1)
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is main, what="the main screen again")
        await resized(pilot, (80, 24))
        assert app.is_running
        assert main.focused is not None and not main._hidden(main.focused), main.focused
        await resized(pilot, (120, 40))
        await until(pilot, lambda: app.focused is main.log_pane, what="the log focused again")


async def test_typing_in_the_episodes_field_across_resizes_keeps_the_keys_there(tmp_path):
    from cartpole_tui.env.runtime.session import SessionOptions
    from cartpole_tui.tui.app import ControlRoomApp

    app = ControlRoomApp(SessionOptions(seed=5, agent="swarm", models=2, parallel=2), db_path=str(tmp_path / "r.db"))
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.connection == "connected", what="the app to connect")
        main = app.main
        main.log_pane.focus()
        await until(pilot, lambda: app.focused is main.log_pane, what="the log focused")
        await resized(pilot, (80, 24))  # the log goes: the runs table has the keys
        await until(pilot, lambda: app.focused is main.runs_table, what="the runs table focused")
        field = main.query_one("#episodes", Input)
        field.focus()
        await until(pilot, lambda: app.focused is field, what="the episodes field focused")
        field.value = ""
        await pilot.press("1", "2")
        await resized(pilot, (120, 40))  # the log is back; the keys stay in the field
        await pilot.press("3")
        await resized(pilot, (80, 24))
        await pilot.press("4")
        assert app.focused is field
        assert field.value == "1234", field.value
