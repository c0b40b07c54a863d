"""RunEvents.admits: whose news of a run counts (issue 17 (a)), without sockets."""

from __future__ import annotations

from cartpole_tui.env.events import EpisodeFinished, NetworkError, RunFinished, RunStarted
from cartpole_tui.env.runtime.run_events import RunEvents
from cartpole_tui.env.wire import protocol


def follower() -> tuple[RunEvents, list[object]]:
    told: list[object] = []
    return RunEvents(told.append, environment_here=False), told


def refusals(told: list[object]) -> list[str]:
    return [event.text for event in told if isinstance(event, NetworkError)]


def test_only_the_environment_that_answered_tells_of_runs():
    events, told = follower()
    run = protocol.new_id()
    assert events.admits(protocol.RUN_STATE, "environment")  # the state query's answer: no run going
    assert events.admits(RunStarted(run, 20, False), "environment")
    assert not events.admits(RunFinished(run, 9.0, 5), "faker")
    assert not events.admits(RunStarted(protocol.new_id(), 5, False), "faker")  # a run of its own
    assert not events.admits(EpisodeFinished(run, 1, 499.0, 499), "faker")
    assert not events.admits(RunFinished(None, 9.0, 5), "environment")  # ours names its runs
    assert events.admits(EpisodeFinished(run, 1, 12.0, 12), "environment")
    assert events.admits(RunFinished(run, 12.0, 20), "environment")
    assert events.refused == 4
    (line,) = refusals(told)  # told once; the rest counted
    assert "ignored ENV_DONE of run" in line and "from faker" in line


def test_a_flood_of_fakes_is_one_line_an_interval_and_long_names_stay_small():
    events, told = follower()
    events.admits(protocol.RUN_STATE, "environment")
    for n in range(10_000):
        assert not events.admits(RunFinished(protocol.new_id(), 1.0, 1), f"faker-{n}" + "x" * 1000)
    assert events.refused == 10_000 and len(refusals(told)) == 1
    assert len(refusals(told)[0]) < 400


def test_the_published_environment_is_the_sender_of_its_observations():
    events, _ = follower()
    assert events.observes("gym-env")
    assert not events.observes("faker")  # its observations count for nothing
    assert not events.admits(RunFinished(None, 9.0, 5), "faker")
    assert events.admits(RunFinished(None, 22.0, 5), "gym-env")  # the published ENV_DONE has no RUN_ID
    assert events.admits(RunFinished(None, 22.0, 5), "gym-env")  # and says so for every run


def test_a_lost_network_learns_its_environment_afresh():
    events, _ = follower()
    events.admits(protocol.RUN_STATE, "environment")
    events.lost()
    assert events.admits(RunStarted(protocol.new_id(), 5, False), "environment-2")


def test_with_the_environment_here_only_it_tells_even_before_its_first_run():
    told: list[object] = []
    events = RunEvents(told.append, environment_here=True)
    events.expect_environment("environment")
    assert not events.admits(RunFinished(protocol.new_id(), 9.0, 5), "faker")
    assert not events.admits(RunFinished(None, 9.0, 5), "environment")
    events.lost()  # the environment here is still the one
    assert not events.admits(RunStarted(protocol.new_id(), 5, False), "faker")
