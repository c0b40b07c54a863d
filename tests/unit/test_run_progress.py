"""The status line, the steps a second and the run's progress label, stall hint and log lines."""

from __future__ import annotations

from cartpole_tui.env.events import EpisodeFinished, RunFinished, RunStarted
from cartpole_tui.env.history.records import RunParams, RunRecord
from cartpole_tui.env.runtime.schedule import RoundResult, ScheduleResult, ScheduleSettings
from cartpole_tui.env.words import average
from cartpole_tui.tui.data.run_progress import (
    Counted,
    RunProgress,
    ScheduleLabel,
    StatusFacts,
    progress_text,
    round_line,
    schedule_ended_elsewhere_line,
    schedule_ended_text,
    status_line,
)


def facts(**changes) -> StatusFacts:
    values = dict(address="127.0.0.1:7007", env_id="CartPole-v1", connection="connected", width=120)
    return StatusFacts(**(values | changes))


def test_status_line_names_the_app_when_wide_and_counts_clients_only_when_connected():
    line = status_line(facts(clients=5, steps_per_second=1234.4))
    assert line.plain == "cartpole-tui │ 127.0.0.1:7007 │ CartPole-v1 │ 5 clients │ ● connected  1,234 steps/s"
    narrow = status_line(facts(width=80, clients=1, connection="disconnected"))
    assert narrow.plain == "127.0.0.1:7007 │ CartPole-v1 │ ● disconnected"
    assert status_line(facts(clients=1)).plain.endswith("1 client │ ● connected")


def test_status_line_warns_of_an_open_network_in_bold_red():
    line = status_line(facts(open_network=True))
    assert line.plain.endswith("● connected │ open network")
    assert any(str(span.style) == "bold red" for span in line.spans)


def test_steps_a_second_are_rounded_one_way_everywhere():
    # 4,225.5 once showed as 4,225 in the log and 4,226 in the table: one rounding now
    assert status_line(facts(steps_per_second=4225.5)).plain.endswith("● connected  4,226 steps/s")
    progress = RunProgress(now=0.0)
    started(progress)
    assert progress.ended(RunFinished("r1", 9.0, 20), rate=4225.5).plain.endswith("(ENV_DONE), 4,226 steps/s")
    assert "steps/s" not in status_line(facts(steps_per_second=None)).plain


def started(progress: RunProgress, episodes: int = 20, number: int | None = 7, now: float = 0.0) -> str:
    return progress.started(RunStarted("r1", episodes, deterministic=True), number, now)


def test_a_run_from_start_to_end():
    progress = RunProgress(now=0.0)
    assert started(progress) == "run 7 started: 20 episodes, deterministic"
    assert progress.take_label() == "run 7 · waiting for the first episode"
    assert progress.take_label() is None  # said once: the next redraw has nothing new
    progress.episode(EpisodeFinished("r1", 3, 41.0, 41), window=100, mean=22.25, last=None)
    assert progress.take_label() == "run 7 · 1/20 · last 41"  # the plot has none of run 7 yet: its latest to end
    progress.episode(EpisodeFinished("r1", 1, 12.0, 12), window=100, mean=12.0, last=12.0)  # they end out of order
    assert progress.finished == 2  # counted as they end, not taken from their numbers
    assert progress.take_label() == "run 7 · 2/20 · last 12 · mean(100) 12.0"
    line = progress.ended(RunFinished("r1", 31.5, 20), rate=315.0)
    assert line.plain == "run 7 done: average 31.5 over 20 episodes (ENV_DONE), 315 steps/s"
    assert progress.take_label() == "run 7 done · avg 31.5 over 20 episodes"
    assert progress.current is None


def test_the_runs_told_of_are_counted_for_the_runs_table_until_the_history_says_so_too():
    progress = RunProgress(now=0.0)
    started(progress)
    progress.episode(EpisodeFinished("r1", 1, 12.0, 12), window=100, mean=None, last=9.0)
    assert progress.take_label() == "run 7 · 1/20 · last 9"  # the plot's latest score (number order)
    assert progress.counted == {7: Counted(1, "running", best=12.0, steps=12, last_at=0.0)}
    progress.ended(RunFinished("r1", 31.5, 20, stopped=True))
    told = Counted(20, "stopped", best=12.0, steps=12, last_at=0.0, average=31.5)  # ENV_DONE's count and average
    assert progress.counted == {7: told}
    # the history (another process's file, read once a second) still says running: the row says
    # what the progress line says, "stopped" with its average (it said "done" beside "—")
    history = RunRecord(
        7, "r1", RunParams(20, True, None, "CartPole-v1", "127.0.0.1:1"), 0.0, None, None, "running", 19
    )
    assert (progress.shown(history).state, progress.shown(history).avg_score) == ("stopped", 31.5)
    progress.settled([7])
    assert progress.counted == {}


def test_a_stopped_run_without_episodes_and_a_run_not_in_the_history():
    progress = RunProgress(now=0.0)
    started(progress, number=None)  # numbered after the runs this app saw
    assert progress.number("r1") == 1
    progress.ended(RunFinished("r1", 0.0, 0, stopped=True))
    assert progress.take_label() == "run 1 stopped · no episode finished"
    progress.ended(RunFinished(None, 0.0, 1))
    assert progress.take_label() == "run ? done · avg 0.0 over 1 episode"


def test_a_run_without_steps_is_hinted_counting_up_until_it_moves():
    progress = RunProgress(now=0.0, stall_hint_seconds=5)
    assert progress.check(steps=0, now=0.0) is None  # no run: nothing to say
    started(progress, now=10.0)
    progress.take_label()
    assert progress.check(steps=0, now=10.0) is True  # the first look: the bar shows
    assert progress.check(steps=0, now=14.9) is None
    assert progress.check(steps=0, now=15.0) is False  # the hint takes the bar's room
    assert progress.take_label() == ("run 7 · 0/20 · no step for 5s: waiting for agents — is the swarm running?")
    assert progress.check(steps=0, now=15.4) is False and progress.take_label() is None  # said once a second
    assert progress.check(steps=0, now=60.0) is False and "no step for 50s:" in (progress.take_label() or "")
    assert progress.quiet(60.0) == 50.0
    assert progress.check(steps=12, now=61.0) is True  # it moves: the bar is back
    assert progress.quiet(61.5) == 0.5


def test_a_lost_run_is_handed_back_once():
    progress = RunProgress(now=0.0)
    started(progress)
    lost = progress.lost()
    assert lost is not None and lost.run_id == "r1"
    assert progress.lost() is None and progress.check(steps=0, now=99.0) is None


def test_schedule_lines():
    result = RoundResult(3, 120.04, 480.0, 10.0, 65.2, 9000, 5, confirm_avg=475.5, confirm_episodes=100, evolved=True)
    assert round_line(result).plain == (
        "round 3: train avg 120.0, eval avg 480.0, 100-episode check 475.5, evolved (at 65s)"
    )
    # a check stopped once it could not reach the target: the episodes it played, not "100-episode"
    hopeless = RoundResult(2, 120.0, 480.0, 10.0, 30.0, 9000, 5, confirm_avg=212.0, confirm_episodes=12)
    assert round_line(hopeless).plain == (
        "round 2: train avg 120.0, eval avg 480.0, check 212.0 over 12 of 100 (out of reach: stopped) (at 30s)"
    )
    none = RoundResult(2, 120.0, 480.0, 10.0, 30.0, 9000, 5, confirm_avg=0.0, confirm_episodes=0)
    assert round_line(none).plain.endswith(", the 100-episode check stopped before an episode ended (at 30s)")
    # an evaluation stopped at its first episode below the target: the episodes it played, as `run` says
    short = RoundResult(1, 105.94, 217.0, 0.4, 0.6, 10594, 1, evolved=True)
    assert round_line(short).plain == "round 1: train avg 105.9, eval avg 217.0 over 1, evolved (at 1s)"
    # its average may pass the target (Acrobot: -89.8 over 4 against -100): the episode below it says why
    failed = RoundResult(4, -242.2, -89.75, 9.4, 12.0, 0, 4, evolved=True, eval_below=-120.0)
    assert round_line(failed).plain == (
        "round 4: train avg -242.2, eval avg -89.8 over 4 (one scored -120, below the target), evolved (at 12s)"
    )
    solved = ScheduleResult(ScheduleSettings(), [result], final_eval_avg=490.25, solved=True)
    assert schedule_ended_text(solved) == "schedule solved: deterministic average 490.3"  # half up, as 490.25 reads
    assert schedule_ended_text(ScheduleResult(ScheduleSettings(), [result] * 2)) == (
        "schedule ended after 2 rounds, not solved"
    )


def test_a_stopped_schedule_says_where_the_stop_found_it_and_whose_x_it_was():
    """It said "schedule ended after 0 rounds, not solved" with round 1's training played."""
    round_1 = RoundResult(1, 20.0, 30.0, 1.0, 2.0, 400)

    def stopped(at, rounds=(), here=False):
        return schedule_ended_text(ScheduleResult(ScheduleSettings(), list(rounds), stopped=True, stopped_at=at), here)

    assert stopped(("eval", 1)) == "schedule stopped in round 1 (another control room's x)"
    assert stopped(("evolve", 2), [round_1], here=True) == "schedule stopped in round 2 (your x)"
    assert stopped(("train", 2), [round_1]) == "schedule stopped after round 1 (another control room's x)"
    assert stopped(("train", 1), here=True) == "schedule stopped before its first run (your x)"


def test_the_end_of_another_rooms_schedule_is_told_as_its_room_said_it():
    assert schedule_ended_elsewhere_line("left") == "another control room's schedule ended: its control room left"
    assert schedule_ended_elsewhere_line("solved") == "another control room's schedule ended: solved"
    assert schedule_ended_elsewhere_line(None) == "another control room's schedule ended"


def test_averages_round_half_up_at_the_places_shown():
    # format() rounds the float half-even: 9.25 showed as 9.2 in the table beside the export's 9.25
    assert [average(v) for v in (9.25, 9.35, 0.15, 2.675, 161.24999, 500.0)] == [
        "9.3", "9.4", "0.2", "2.7", "161.2", "500.0",
    ]  # fmt: skip
    assert average(2.675, 2) == "2.68" and average(None) == "—" and average(float("nan")) == "nan"
    progress = RunProgress(now=0.0)
    started(progress)
    assert progress.ended(RunFinished("r1", 9.25, 4)).plain == "run 7 done: average 9.3 over 4 episodes (ENV_DONE)"


def record(state: str, **changes) -> RunRecord:
    values = dict(number=38, run_uid="u", params=RunParams(20, True, 1, "CartPole-v1", ""), started=100.0)
    return RunRecord(**(values | dict(state=state) | changes))


def test_the_historys_last_run_is_named_until_a_run_is_seen():
    progress = RunProgress(now=0.0)
    progress.remembered(record("done", avg_score=161.25, finished=20))
    assert progress.take_label() == "last run 38 done · avg 161.3 over 20 episodes"
    progress.remembered(record("stopped", avg_score=0.0, finished=0))
    assert progress.take_label() == "last run 38 stopped · no episode finished"
    progress.remembered(record("failed", finished=3))
    assert progress.take_label() == "last run 38 failed · 3 episodes recorded"
    progress.remembered(record("running", finished=12))
    assert progress.take_label() == "last run 38 · 12/20 episodes, running"
    started(progress)
    progress.take_label()
    progress.remembered(record("done", avg_score=1.0, finished=1))
    assert progress.take_label() is None  # a run of this session is the one named


def test_a_runs_steps_a_second_end_at_its_last_episode_whoever_recorded_its_end():
    # a follower records the end by its own clock, a moment after the environment did: one figure still
    here = record("done", total_steps=3000, last_episode_at=101.0, ended=101.0)
    follower = record("done", total_steps=3000, last_episode_at=101.0, ended=101.016)
    going = record("running", total_steps=3000, last_episode_at=101.0)  # the log's look, before the end is in
    assert here.steps_per_s == follower.steps_per_s == going.steps_per_s == 3000.0
    assert record("running").steps_per_s is None


def test_the_status_line_fits_its_one_row():
    # at 80 columns, the steps a second wrapped to a hidden second row
    long = facts(
        address="history /srv/rl/runs.sqlite3", connection="another environment", width=80, steps_per_second=2593.0
    )
    assert status_line(long).plain == "history /srv/rl/runs.sqlite3 │ CartPole-v1 │ ● another env  2,593 steps/s"
    squeezed = status_line(facts(address="x" * 60, connection="connected", width=80, steps_per_second=2593.0))
    assert squeezed.plain == ("x" * 60 + " │ ● connected  2,593 steps/s")[:77] + "…"
    # offline nothing plays: the last run's rate read as live (finding 10); the history says it
    offline = status_line(facts(connection="offline", width=120, steps_per_second=2593.0)).plain
    assert offline.endswith("○ offline: run history only")


def test_the_progress_line_says_the_schedule_in_the_fullest_form_that_fits():
    label = "run 13 · 2/5 · last 181 · mean(100) 81.3"
    going = ScheduleLabel(3, 475.0)
    assert progress_text(label, None, 10) == label
    assert progress_text(label, going, 80) == f"schedule round 3 · target 475 · {label}"
    assert progress_text(label, going, 51) == "schedule round 3 · target 475 · run 13 · 2/5"  # at 80x24
    assert progress_text(label, going, 40) == "round 3 · target 475 · run 13 · 2/5"
    assert progress_text(label, going, 10) == "round 3 · run 13 · 2/5"  # the last form, cut by the line
    assert progress_text(label, ScheduleLabel(3, None), 40) == "schedule round 3 · run 13 · 2/5"
    # each run's start kept the schedule too ("round 4 · run 14 · waiting for the first episode")
    waiting = "run 14 · waiting for the first episode"
    assert progress_text(waiting, going, 51) == "schedule round 3 · target 475 · run 14 · waiting"
    ended = ScheduleLabel(ended="schedule solved: deterministic average 499.3")
    done = "run 42 done · avg 499.3 over 100 episodes"
    assert progress_text(done, ended, 120) == f"{ended.ended} · {done}"
    assert progress_text(done, ended, 77) == f"schedule solved · {done}"  # at 80x24
    assert progress_text(done, ended, 40) == ended.ended  # the last form, cut by the line
    elsewhere = ScheduleLabel(elsewhere=True)
    assert progress_text(label, elsewhere, 80) == f"another control room's schedule · {label}"
    assert progress_text(label, elsewhere, 51) == "another control room's schedule · run 13 · 2/5"


def test_the_published_environments_end_is_over_the_episodes_its_start_asked_and_misses_nothing():
    """Their ENV_DONE tells no count and comes before the run's last DONE: a room that heard the
    START says "over 20 episodes" (it said "avg 25.5" alone), and its file, one episode short at
    that moment, is not "19 recorded here" (only a run joined with episodes missed says that)."""
    progress = RunProgress(now=0.0)
    progress.started(RunStarted("r1", 20, False, instances=0), 1, now=0.0)
    line = progress.ended(RunFinished("r1", 25.5, 0), recorded=19)
    assert line.plain == "run 1 done: average 25.5 over 20 episodes (ENV_DONE)"
    assert progress.take_label() == "run 1 done · avg 25.5 over 20 episodes"
