"""The app over a vectorised run: every episode counted, the run's average, the cart moving."""

from __future__ import annotations

import re

from textual.widgets import Input

from cartpole_tui.env.runtime.session import SessionOptions
from cartpole_tui.env.words import average as shown_average
from cartpole_tui.tui.app import ControlRoomApp

from conftest import screen_text, until


async def test_a_vectorised_run_in_the_app_counts_every_episode(tmp_path):
    options = SessionOptions(seed=11, agent="swarm", models=4, parallel=8)
    app = ControlRoomApp(options, db_path=str(tmp_path / "runs.sqlite3"))
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.connection == "connected", what="the app to connect")
        app.query_one("#episodes", Input).value = "400"
        await pilot.press("s")
        titles = set()

        def ended():
            # the plot waits for lower numbers: its title says how many ended episodes wait (the
            # plot looked frozen at 140 while 1,780 had ended, new-user pass 4)
            title = re.search(r"Score · ([\d,]+) held for earlier episodes", screen_text(app))
            if title:
                titles.add(int(title.group(1).replace(",", "")))
            return [r for r in app.store.runs() if r.state == "done"]

        done = await until(pilot, ended, what="the run to end")
        assert titles and all(0 < held < 400 for held in titles), titles
        await until(pilot, lambda: "╭─ Score ─" in screen_text(app), what="the plain title after the end")
        assert app.session.environment.instances == 8  # vectorised: the swarm understands batches
        assert done[0].finished == 400 and len(app.history) == 400
        assert app.controller.latest_observation is not None  # the cart shows instance 0
        average = f"avg {shown_average(done[0].avg_score)}"
        await until(pilot, lambda: average in screen_text(app), what=f"{average!r} on screen")
