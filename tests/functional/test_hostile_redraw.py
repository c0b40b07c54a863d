"""Hostile text from the network on the app's screen: each test failed before its fix.

An environment's RUN_STARTED names the environment (ENV_ID); the environment pane is titled by
it. Textual reads a plain string set as a border title as markup: a closing tag of no opening one
raised MarkupError and ended the app, and an ``@click`` action made the title a button.
"""

from __future__ import annotations

import time

from test_app import until

from cartpole_tui.env.events import EnvSpaces
from cartpole_tui.env.runtime.session import SessionOptions
from cartpole_tui.env.wire import protocol
from cartpole_tui.env.wire.transport import Component
from cartpole_tui.tui.app import ControlRoomApp

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
