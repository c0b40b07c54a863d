"""Hostile text from the network, or a hostile history file, on the app's screen: each test
failed before its fix.

An environment's RUN_STARTED names the environment (ENV_ID); the environment pane is titled by
it. Textual reads a plain string set as a border title as markup: a closing tag of no opening one
raised MarkupError and ended the app, and an ``@click`` action made the title a button.
"""

from __future__ import annotations

import re
import sqlite3
import time

from test_app import until

from cartpole_tui.env.events import EnvSpaces
from cartpole_tui.env.history.store import RunStore
from cartpole_tui.env.runtime.session import SessionOptions
from cartpole_tui.env.wire import protocol
from cartpole_tui.env.wire.transport import Component
from cartpole_tui.tui.app import ControlRoomApp
from tests.functional.test_store import play, record_run

HOST = "127.0.0.1"


async def test_an_environment_id_is_the_panes_title_as_written_never_markup(tmp_path, broker, closing):
    options = SessionOptions(connect=f"{HOST}:{broker.port}", embed_env=False)
    app = ControlRoomApp(options, db_path=str(tmp_path / "h.sqlite3"))
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.connection == "connected", what="the room to join")
        environment = Component("environment", HOST, broker.port)
        closing(environment)
        for number, env_id in enumerate(["[/nope]", "[@click=app.quit]Quit-v0[/]", "[b]Bold[/b]-v0"], 1):
            facts = protocol.run_facts(f"r{number}", 5, False, None, 1, env_id, time.time(), EnvSpaces(env_id, 4, 2))
            environment.send(protocol.run_started(facts, None))
            await until(pilot, lambda n=number: len(app.run_progress.numbers) == n, 10, f"run {number} started")
            title = app.main.cart._border_title
            assert title is not None and title.plain == env_id and not title.spans, (env_id, title)
        assert app.is_running


def a_history_with_a_state_of_markup(path: str) -> None:
    """A run history whose runs table lacks its CHECK on state (a file made elsewhere, another
    process's the control room follows), one run's state '[/x]'."""
    with RunStore.open(path) as store:
        record_run(store, "a", play(3, seed=1))
    db = sqlite3.connect(path)
    db.execute("PRAGMA writable_schema = ON")
    (schema,) = db.execute("SELECT sql FROM sqlite_master WHERE name = 'runs'").fetchone()
    unchecked = re.sub(r"CHECK *\(state IN \([^)]*\)\)", "", schema)
    assert unchecked != schema
    db.execute("UPDATE sqlite_master SET sql = ? WHERE name = 'runs'", (unchecked,))
    db.commit()
    db.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE runs SET state = '[/x]'")


async def test_a_runs_state_from_a_history_file_is_shown_as_written_never_markup(tmp_path):
    """The runs table wrote the state into markup ('[green]done[/]'): '[/x]' raised MarkupError
    and ended the app."""
    path = str(tmp_path / "h.sqlite3")
    a_history_with_a_state_of_markup(path)
    app = ControlRoomApp(SessionOptions(offline=True), db_path=path)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.main.runs_table
        await until(pilot, lambda: table.row_count == 1, 10, "the run in the table")
        await pilot.pause()
        assert str(table.get_row_at(0)[-1]) == "[/x]"
        assert app.is_running
