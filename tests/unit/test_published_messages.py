"""The sentences that say what the published network did (issue 19), from plain state."""

from __future__ import annotations

from cartpole_tui.env.components.evolution_answers import EvolutionAnswers
from cartpole_tui.env.components.model_census import ModelCensus
from cartpole_tui.env.events import RunFinished, RunStarted
from cartpole_tui.env.runtime.observed_run import ObservedRun
from cartpole_tui.tui.data.run_progress import RunProgress

IDS = [f"{n:02d}" + "ab" * 15 for n in range(20)]


def test_the_census_names_the_model_that_did_not_answer():
    census = ModelCensus()
    assert census.text() is None  # nothing heard: nothing said
    census.observation()
    for model in IDS:
        census.logits({"COMPONENT_ID": model})
    census.observation()
    for model in IDS[:7] + IDS[8:]:
        census.logits({"COMPONENT_ID": model})
    assert census.text() == f"19 of 20 models answered the last observation; model {IDS[7][:8]} did not"
    census.observation()
    assert census.text() == (
        f"0 of 20 models answered the last observation; models {IDS[0][:8]}, {IDS[1][:8]}, {IDS[2][:8]}"
        " and 17 more did not"
    )
    census.logits({"COMPONENT_ID": 5})  # not an id: not counted
    assert len(census.known) == 20


def test_the_eta_of_a_run_that_knows_no_stop():
    run = ObservedRun()
    run.observed(True, 0.0, False, now=100.0)
    for step in range(1, 41):  # two episodes of 20 steps at 19 steps/s
        run.observed(False, 1.0, step % 20 == 0, now=100.0 + step / 19)
    assert run.episodes == 2 and run.scores == [20.0, 20.0]
    assert run.no_stop_text(20) == (
        "their environment has no STOP: it finishes its 20 episodes, about 19 s at 19 steps/s; x again stops waiting"
    )
    long = ObservedRun()  # two episodes of 150 steps: 18 more take 2,700 steps, 142 s at 19 steps/s
    long.observed(True, 0.0, False, now=0.0)
    for step in range(1, 301):
        long.observed(False, 1.0, step % 150 == 0, now=step / 19)
    assert "its 20 episodes, about 2 min at 19 steps/s;" in long.no_stop_text(20)
    run.observed(True, 0.0, False, now=500.0)  # a new run: a fresh count
    assert run.steps == 0 and run.no_stop_text(20) == (
        "their environment has no STOP: it finishes its 20 episodes; x again stops waiting"
    )


def test_an_evolution_silence_says_what_went_by():
    answers = EvolutionAnswers(watch_room=lambda: None)
    answers.ask("req", 0.0)
    assert answers.silence(30) == "no evolution component answered EVOLUTION within 30s"
    answers.seen_in_room({"ROOT_ID": "req", "CMD": "GET"})
    assert answers.silence(30) == "the evolution sent GET but no model answered with WEIGHTS within 30s"
    for model in IDS:
        answers.seen_in_room({"ROOT_ID": "req", "WEIGHTS": [0.0], "COMPONENT_ID": model})
    assert "but no CONTRIBUTION (is the aggregation running?)" in answers.silence(30)
    answers.seen_in_room({"ROOT_ID": "req", "CONTRIBUTION": {}})
    assert (
        answers.silence(30)
        == "the evolution answered GET with 20 WEIGHTS and the CONTRIBUTION but sent no EVO_DONE in 30s"
    )
    answers.ask("req-2", 40.0)  # a model restarted: a new id among 19 old ones
    answers.seen_in_room({"ROOT_ID": "req-2", "CMD": "GET"})
    for model in [*IDS[1:], "new" + IDS[0][3:]]:
        answers.seen_in_room({"ROOT_ID": "req-2", "WEIGHTS": [0.0], "COMPONENT_ID": model})
    answers.seen_in_room({"ROOT_ID": "req-2", "CONTRIBUTION": {}})
    answers.seen_in_room({"ROOT_ID": "other", "WEIGHTS": [0.0], "COMPONENT_ID": "x"})  # not this request's
    text = answers.silence(30)
    assert text.startswith("the evolution answered GET with 20 WEIGHTS and the CONTRIBUTION but sent no EVO_DONE")
    assert "21 models were seen in the evolution room (a model restarted?" in text
    assert text.endswith("restart the aggregation and evolution")


def test_a_run_without_episodes_says_so_and_a_stall_says_what_was_seen():
    progress = RunProgress(0.0)
    progress.started(RunStarted("r1", 20, False), 1, 0.0)
    assert progress.check(0, 1.0) is True
    assert progress.check(0, 7.0, "19 of 20 models answered the last observation; model 0aabab did not") is False
    assert progress.take_label() == (
        "run 1 · 0/20 · no step for 6s: 19 of 20 models answered the last observation; model 0aabab did not"
    )
    line = progress.ended(RunFinished("r1", 0.0, 0, stopped=True))
    assert line.plain == "run 1 stopped: no episode finished"
    assert progress.take_label() == "run 1 stopped · no episode finished"


def test_the_published_env_done_without_a_count_reads_as_an_average():
    progress = RunProgress(0.0)
    progress.started(RunStarted("r1", 0, False), 1, 0.0)  # started elsewhere: its size unknown here
    assert progress.ended(RunFinished("r1", 22.0, 0)).plain == "run 1 done: average 22.0 (ENV_DONE)"
    assert progress.take_label() == "run 1 done · avg 22.0"
