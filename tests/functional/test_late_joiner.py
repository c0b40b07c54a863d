"""A control room joining mid-run a vectorised run that another room's environment plays.

Room A is a session with the embedded network (its environment, a swarm, its own file); room B
the app with ``--connect … --no-env`` and a file of its own, started once A's run has finished
more episodes than a RUN_STATE carries. A vectorised run's episodes end out of number order:
the scores B is told on joining must be recorded under their own numbers, and what B could not
be told is said, not recorded as something else.
"""

from __future__ import annotations

import re
import sqlite3

from test_app import log_text

from cartpole_tui.env.events import EpisodeFinished, RunJoined, RunStarted
from cartpole_tui.env.history.store import RunStore
from cartpole_tui.env.runtime.run_events import RunEvents
from cartpole_tui.env.runtime.session import Session, SessionOptions
from cartpole_tui.env.wire import protocol
from cartpole_tui.env.words import steps_per_second
from cartpole_tui.tui.app import ControlRoomApp

from conftest import screen_text, until, wait_for

EPISODES = 6000


def episode_rows(path: str) -> dict[int, tuple[float, int, float]]:
    with sqlite3.connect(path) as db:
        return {
            idx: (score, steps, at)
            for idx, score, steps, at in db.execute("SELECT idx, score, steps, wall_time FROM episodes")
        }


def running_row(screen: str) -> tuple[int, str, str, str] | None:
    """(count, best, time, steps/s) of run 1's row while it runs."""
    row = re.search(rf"┃\s+1\s+(\d+)/{EPISODES}\s+no\s+…\s+(\S+)\s+(\S+)\s+(\S+)\s+running\s+┃", screen)
    return (int(row.group(1)), *row.groups()[1:]) if row else None


def figures_at(path: str, count: int) -> tuple[str, str, str] | None:
    """The environment's best, time and steps/s when ``count`` episodes had ended (its file); None
    when ``count`` falls inside one step's episodes (they end together: which of them were heard
    by then, the file cannot say)."""
    with sqlite3.connect(path) as db:
        started = db.execute("SELECT started FROM runs").fetchone()[0]
        first = db.execute(
            "SELECT score, steps, wall_time FROM episodes ORDER BY wall_time LIMIT ?", (count + 1,)
        ).fetchall()
    if len(first) > count and first[count][2] == first[count - 1][2]:
        return None
    first = first[:count]
    played_for = first[-1][2] - started
    return (
        f"{max(s for s, _, _ in first):g}",
        f"{played_for:.1f}s",
        steps_per_second(sum(n for _, n, _ in first) / played_for),
    )


def run_row(path: str) -> tuple:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT episodes, finished, state FROM runs").fetchone()


async def test_a_room_joining_a_vectorised_run_records_each_episode_under_its_number(tmp_path):
    played_path, own_path = str(tmp_path / "a.sqlite3"), str(tmp_path / "b.sqlite3")
    store = RunStore.open(played_path)
    room_a = Session(SessionOptions(seed=11, agent="swarm", models=4), store=store).open()
    try:
        room_a.control.start_run(EPISODES, False, 11)
        played = lambda: store.runs()[-1] if store.runs() else None  # noqa: E731
        wait_for(lambda: played() and played().finished > protocol.MAX_STATE_SCORES + 100, 60, "A's run to pass 1,100")
        options = SessionOptions(connect=room_a.address, embed_env=False, agent="swarm")
        app = ControlRoomApp(options, db_path=own_path)
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: "run 1 · " in screen_text(app).splitlines()[2], what="the joined run's line")
            assert "no run yet" not in screen_text(app)
            rows = []

            def ended() -> bool:
                screen = screen_text(app)
                # the table last painted from what the room heard of the join: the row painted before
                # it can be the history's partial record (README: up to one redraw)
                painted = app._shown_counted.get(1)
                if painted is not None and painted.steps is not None:
                    rows.append(running_row(screen))
                return "run 1 done" in screen.splitlines()[2]

            await until(pilot, ended, timeout=120, what="the end on the progress line")
            await until(pilot, lambda: run_row(own_path)[2] == "done", what="B's row to end done")
            screen, log = screen_text(app), log_text(app)
    finally:
        room_a.close()
        store.close()
    truth, own = episode_rows(played_path), episode_rows(own_path)
    assert len(truth) == EPISODES and run_row(played_path) == (EPISODES, EPISODES, "done")
    # every episode B recorded is the environment's, under its own number (steps and time too)
    assert {idx: own[idx] for idx in own} == {idx: truth[idx] for idx in own}
    missed = EPISODES - len(own)
    told = re.search(r"joined mid-run: ([\d,]+) episodes? ended before", log)
    assert told and int(told.group(1).replace(",", "")) == missed, (log, missed)
    assert 0 < missed < EPISODES - protocol.MAX_STATE_SCORES
    # what B's screen says agrees with its file: the table's count, and the end's line
    assert run_row(own_path) == (EPISODES, len(own), "done")
    # its steps and best are the run's (the missed episodes' told by the RUN_STATE): its steps/s is
    # the environment's, not the recorded part's steps over the whole run's time (new-user pass 6)
    with sqlite3.connect(own_path) as db:
        own_steps, own_best = db.execute("SELECT total_steps, best FROM runs").fetchone()
    assert own_steps == sum(steps for _, steps, _ in truth.values()) > sum(steps for _, steps, _ in own.values())
    assert own_best == max(score for score, _, _ in truth.values())
    assert re.search(rf"┃\s+1\s+{len(own)}/{EPISODES}\s", screen), screen
    assert f"{len(own):,} of them recorded here" in log, log
    assert "ignored a second EPISODE_DONE" not in log
    # while it ran, B's row had the environment's figures at its count, though B missed episodes
    rows = sorted({row for row in rows if row is not None})
    compared = [(row, figures_at(played_path, row[0])) for row in rows]
    compared = [(row, truth) for row, truth in compared if truth is not None]
    assert len(rows) >= 2 and compared, rows
    assert all(row[1:] == truth for row, truth in compared), compared


def test_a_late_answer_to_the_state_query_still_tells_the_run(tmp_path):
    """On a loaded network the environment's RUN_STATE came after the one-second wait: the episodes
    held meanwhile began the run as one of unknown size, and the answer (its size, its latest
    episodes) was ignored. Episodes named by RUN_ID are ours, whose answer is waited for."""
    path = str(tmp_path / "own.sqlite3")
    store = RunStore.open(path)
    told: list[object] = []
    events = RunEvents(told.append, environment_here=False, store=store, announce_wait=60)
    events.asked_state()
    for episode in (7, 9):  # heard before the answer, which counts both and tells 7's score
        events.from_network(EpisodeFinished("run-a", episode, 30.0, 30, 5.0))
    events._waited()  # the one-second wait is over (its timer, run now)
    assert told == []  # still held: an environment that names runs answers
    run = RunStarted("run-a", 40, False, started=1.0, instances=4, env_id="CartPole-v1")
    told_scores = {"numbers": (2, 5, 7), "lengths": (10, 20, 30), "ended": (2.0, 3.0, 5.0), "figures": (30.0, 120)}
    events.from_network(RunJoined(run, 8, 200, (10.0, 20.0, 30.0), **told_scores))
    # 7 and 9 are not handed on again (FINISHED counts them: the progress line said 10/40), and of
    # the 8 finished, 4 are not known here: 2, 5, 7 told, 9 heard
    assert [type(e).__name__ for e in told] == ["RunJoined"] and told[0].run.episodes == 40
    assert told[0].missed == 4
    events.from_network(EpisodeFinished("run-a", 11, 12.0, 12, 6.0))
    assert [type(e).__name__ for e in told] == ["RunJoined", "EpisodeFinished"]
    store.close()
    assert episode_rows(path) == {
        2: (10.0, 10, 2.0),
        5: (20.0, 20, 3.0),
        7: (30.0, 30, 5.0),
        9: (30.0, 30, 5.0),
        11: (12.0, 12, 6.0),
    }
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT episodes, finished FROM runs").fetchone() == (40, 5)
