"""The unrecorded steps and best a room joining mid-run keeps in its history."""

from __future__ import annotations

from cartpole_tui.env.events import EpisodeFinished, RunJoined, RunStarted
from cartpole_tui.env.history.store import MEMORY, RunStore
from cartpole_tui.env.runtime.run_events import RunEvents

RUN = RunStarted("r", 100, False, None, 1.0, instances=4)


def state(finished: int, told: range, steps_each: int = 10) -> RunJoined:
    numbers = tuple(told)
    return RunJoined(
        RUN,
        finished,
        finished * steps_each,
        tuple(float(n) for n in numbers),
        numbers,
        (steps_each,) * len(numbers),
        None,
        (float(finished), finished * steps_each),
    )


def test_a_room_that_joins_the_same_run_again_counts_no_step_twice():
    """A reconnect (lost(), then the RUN_STATE again): the episodes recorded live before the loss
    were counted as unrecorded a second time, their steps added again to the run's row."""
    with RunStore.open(MEMORY) as store:
        events = RunEvents(lambda e: None, environment_here=False, store=store)
        events.from_network(state(2, range(1, 3)))  # joined: episodes 1, 2 told
        for n in range(3, 11):  # heard live
            events.from_network(EpisodeFinished("r", n, float(n), 10, 1.0))
        events.lost()
        events.from_network(state(12, range(11, 13)))  # joined again: 11, 12 told
        (run,) = store.runs()
        assert run.finished == 12
        assert run.total_steps == 120, f"{run.total_steps} steps for 12 episodes of 10"


def test_a_run_state_told_again_adds_nothing():
    """The run's RUN_STATE again once it left the runs remembered as begun (RUN_IDS_KEPT: here
    after a reconnect): each one added FINISHED_STEPS (up to 10**15) again; ~9,000 of them took
    total_steps past SQLite's int64."""
    with RunStore.open(MEMORY) as store:
        events = RunEvents(lambda e: None, environment_here=False, store=store)
        for _ in range(5):
            events.from_network(state(50, range(49, 51), steps_each=10**9))
            events.lost()
        (run,) = store.runs()
        assert run.total_steps == 50 * 10**9, run.total_steps


def test_unrecorded_steps_told_twice_never_take_the_total_past_int64(tmp_path):
    """add_unrecorded added its steps each time: two of 2**62 took total_steps past 2**63 - 1, the
    writer failed (Python int too large to convert to SQLite INTEGER), and every run of the
    session, this one's row too, was kept in memory only."""
    path = str(tmp_path / "h.db")
    with RunStore.open(path) as store:
        store.begin_run("r", episodes=10, deterministic=False, seed=1, env_id="CartPole-v1", address="", started=1.0)
        store.add_unrecorded("r", 2**62, None)
        store.add_unrecorded("r", 2**62, None)  # the same run's state told again
        store.begin_run("q", episodes=10, deterministic=False, seed=1, env_id="CartPole-v1", address="", started=1.0)
        store.add_episode("q", 1, 1.0, 1, 2.0)
    with RunStore.open(path) as store:
        assert {r.run_uid: r.total_steps for r in store.runs()} == {"r": 2**62, "q": 1}
