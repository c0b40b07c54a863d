"""Hostile peers against the surfaces added beside the published environment and RUN_STATE: a
START heard from another room names the followed run, a SCHEDULE_ENDED says how. A bad message
changes nothing recorded and the room stays up."""

from __future__ import annotations

from test_app import log_text, until
from test_followers import follower
from test_published import all_joined
from test_swarm import members

from cartpole_tui.env.components.control import ControlClient
from cartpole_tui.env.wire import protocol
from tests.published import PublishedNetwork


async def test_a_start_naming_a_recorded_run_does_not_reopen_it(broker, tmp_path):
    """A follower of the published environment takes a run's id from the START it hears: one
    naming a run its file has (the last, done) began a new run under that id, so the file's run
    took the new run's episodes past its own and its average, state and end were overwritten."""
    net = PublishedNetwork(broker.port, environment=True, evolution=False)
    all_joined(broker, net.clients)
    starter = ControlClient("127.0.0.1", broker.port, name="starter")
    watching = members(broker, "observation")
    try:
        app = follower(broker, tmp_path / "own.sqlite3")
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.connection == "connected", what="the follower to connect")
            await until(pilot, lambda: members(broker, "observation") > watching, what="the follower to watch")
            first = starter.start_run(3)
            await until(pilot, lambda: "run 1 done: average" in log_text(app), timeout=90, what="run 1's end")
            await until(pilot, lambda: app.store.runs() and app.store.runs()[0].state == "done", what="recorded")
            (before,) = app.store.runs()
            assert before.run_uid == first and before.finished == 3
            # a START of 6 episodes that names run 1 (any peer on `control` can send it)
            starter.client.send(protocol.start_run(6, False, run_id=first))
            await until(pilot, lambda: log_text(app).count("done: average") >= 2, timeout=120, what="the next end")
            await until(pilot, lambda: app.store.runs()[-1].state == "done", what="the end recorded")
            runs = app.store.runs()
            assert runs[0] == before, runs
            assert len(runs) == 2, runs
            assert runs[1].run_uid != first and runs[1].params.episodes == 6
    finally:
        starter.close()
        net.close()
