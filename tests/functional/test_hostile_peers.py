"""Hostile peers against today's surfaces: a START heard from another room names the published
environment's run, RUN_STATE tells a late joiner its episodes by number, a SCHEDULE_ENDED says
how. A bad message changes nothing recorded, nothing of it is markup or an escape, the room stays up."""

from __future__ import annotations

from test_app import log_text, until
from test_followers import follower
from test_published import all_joined
from test_swarm import Probe, members

from cartpole_tui.env.components.control import ControlClient
from cartpole_tui.env.swarm.aggregation import Aggregation
from cartpole_tui.env.wire import batch, protocol
from cartpole_tui.env.wire.transport import Component
from tests.published import PublishedNetwork

from conftest import screen_text, wait_for


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
            # the published environment's last DONE comes after its ENV_DONE: the run is done, then whole
            await until(
                pilot,
                lambda: app.store.runs() and (app.store.runs()[0].state, app.store.runs()[0].finished) == ("done", 3),
                what="the run's three episodes recorded",
            )
            (before,) = app.store.runs()
            assert before.run_uid == first
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


def hostile_state(run_id: str, episodes: int, **keys) -> dict:
    """A RUN_STATE whose every value is at a bound of its range."""
    facts = {
        "RUN_ID": run_id,
        "EPISODES": episodes,
        "DETERMINISTIC": False,
        "INSTANCES": 1000,
        "ENV_ID": "[b]Cart\x1b[2J",
        "STARTED": protocol.MAX_TIME - 1,  # after every episode it tells: no rate, nothing negative
    }
    return protocol.custom(protocol.CONTROL, STATUS=protocol.RUN_STATE, **facts, **keys)


async def test_a_hostile_run_state_at_every_bound_records_checked_values_and_shows_text(broker, tmp_path):
    """RUN_STATE's additions at their bounds (numbers 1..EPISODES, the largest steps, times from 0,
    BEST at MAX_SCORE, FINISHED_STEPS at its top): the late joiner records them, shows them as
    text, and stays up; then one out of range changes nothing."""
    environment = Component("environment", "127.0.0.1", broker.port)
    environment.join_room(protocol.CONTROL)
    scores = [protocol.MAX_SCORE, -protocol.MAX_SCORE, 0.5]
    good = hostile_state(
        "[red]run\x1b]0;x\x07",
        2000,
        FINISHED=3,
        STEPS=0,
        SCORES=scores,
        SCORE_EPISODES=[2000, 1, 1999],
        SCORE_STEPS=[protocol.MAX_EPISODE_STEPS, 0, 1],
        SCORE_ENDED=[0, protocol.MAX_TIME - 0.5, 1.0],
        BEST=protocol.MAX_SCORE,
        FINISHED_STEPS=protocol.MAX_EPISODES * protocol.MAX_EPISODE_STEPS,
    )
    app = follower(broker, tmp_path / "own.sqlite3")
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.connection == "connected", what="the room to connect")
            environment.send(good)
            await until(pilot, lambda: app.store.runs(), what="the joined run recorded")
            await until(pilot, lambda: len(app.store.episodes(app.store.runs()[0].run_uid)) == 3, what="its episodes")
            (run,) = app.store.runs()
            rows = app.store.episodes(run.run_uid)
            assert sorted(e.index for e in rows) == [1, 1999, 2000]
            assert all(abs(e.score) <= protocol.MAX_SCORE and 0 <= e.wall_time < protocol.MAX_TIME for e in rows)
            # out of range, one key each: refused whole, nothing recorded or shown of it
            for bad in (
                {"SCORE_EPISODES": [2001, 1, 2]},
                {"SCORE_EPISODES": [1, 1, 2]},
                {"SCORE_STEPS": [protocol.MAX_EPISODE_STEPS + 1, 0, 0]},
                {"SCORE_ENDED": [protocol.MAX_TIME, 0, 0]},
                {"SCORE_ENDED": [-1, 0, 0]},
                {"BEST": 10**400},
                {"FINISHED_STEPS": -1},
                {"SCORE_EPISODES": [1, 2]},
                {"FINISHED": 2},  # three told of two finished: an episode of them is none
            ):
                environment.send({**good, "RUN_ID": "other", **bad})
            await until(pilot, lambda: "malformed RUN_STATE" in log_text(app), what="a refusal said")
            await pilot.pause(0.5)
            assert [r.run_uid for r in app.store.runs()] == [run.run_uid]
            text = log_text(app) + screen_text(app)
            assert "\x1b" not in text and "\x07" not in text and app.is_running
    finally:
        environment.close()


async def test_a_schedule_ended_tells_only_our_words_of_how(broker, tmp_path):
    """Another room's SCHEDULE_ENDED is logged with how it ended: a peer's ENDING that is not one
    of ours is not shown (markup, escapes, a format string)."""
    peer = Component("control", "127.0.0.1", broker.port)
    peer.join_room(protocol.CONTROL)
    app = follower(broker, tmp_path / "own.sqlite3")
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.connection == "connected", what="the room to connect")
            for number, ending in enumerate(("[red]won[/]\x1b[2J {0} %s", ["left"], "left"), start=1):
                peer.send(protocol.start_run(5, False, schedule=f"s{number}"))
                await until(pilot, lambda: app.controller.control.schedule_elsewhere, what="the schedule heard")
                peer.send({**protocol.schedule_ended(f"s{number}"), "ENDING": ending})
                await until(pilot, lambda n=number: log_text(app).count("schedule ended") >= n, what="its end logged")
            ends = [line for line in log_text(app).splitlines() if "schedule ended" in line]
            assert ends[0].endswith("another control room's schedule ended"), ends
            assert ends[1].endswith("another control room's schedule ended"), ends
            assert ends[2].endswith("another control room's schedule ended: its control room left"), ends
            assert "\x1b" not in screen_text(app) and app.is_running
    finally:
        peer.close()


def test_a_deterministic_step_is_not_played_by_a_peers_named_players(broker, closing):
    """A peer's batch LOGITS naming players (PLAYERS, which a pool once sent beside our aggregation)
    once chose an evaluation's actions alone (no vote, the other models not waited for) and its
    episodes were credited as solo ones: now it is one model's logits, waiting for the vote."""
    aggregation = Aggregation("127.0.0.1", broker.port, seed=0, models=3).start()
    closing(aggregation)
    probe = Probe(broker.port, protocol.ACTION)
    closing(probe)
    wait_for(lambda: members(broker, protocol.LOGITS) == 1, 5, "aggregation to join logits")
    two = {batch.BATCH: 1, "INSTANCES": batch.encode_array([0, 1], batch.INDEX), "DETERMINISTIC": True}
    probe.send(
        protocol.LOGITS,
        **two,
        COMPONENT_IDS=["a"],
        PLAYERS=batch.encode_array([0, 0], batch.INDEX),
        BATCH_LOGITS=batch.encode_array([5.0, 5.0], batch.LOGIT),  # action 1 for both
    )
    # every model's logits, action 0 for both: the vote's answer
    everyone = batch.encode_array([-5.0] * 6, batch.LOGIT)
    probe.send(protocol.LOGITS, **two, COMPONENT_IDS=["a", "b", "c"], BATCH_LOGITS=everyone)
    (action,) = probe.get()
    assert batch.decode_ints(action["ACTIONS"], batch.ACTION, 0, 2, 2).tolist() == [0, 0]
    assert aggregation.batches.players == {}
