"""The TensorBoard mirror: run folders named safely, episodes written in number order."""

from __future__ import annotations

import os
import re

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cartpole_tui.env.events import EpisodeFinished, RunFinished, RunJoined, RunStarted
from cartpole_tui.env.history.tensorboard import TensorBoardMirror, folder_problem, safe_name


@pytest.mark.parametrize(
    "run_id, name",
    [
        ("3f2a9c", "3f2a9c"),
        ("run-7_a.b", "run-7_a.b"),
        ("../../etc", "_.._etc-#"),
        ("..", "run-#"),
        ("", "run-#"),
        (".hidden", "hidden-#"),
        ("a/b\\c\x1b[0m\n", "a_b_c__0m_-#"),
        ("x" * 500, "x" * 64 + "-#"),
        ("Run", "Run-#"),
    ],
)
def test_a_run_id_becomes_one_harmless_path_component(run_id, name):
    """``#``: a hash of the id, added to a name that is not the id itself."""
    assert re.fullmatch(re.escape(name).replace("\\#", "[0-9a-f]{16}"), safe_name(run_id))


def test_a_file_or_a_missing_parent_cannot_be_the_folder(tmp_path):
    (tmp_path / "file").write_text("")
    assert folder_problem(str(tmp_path / "file")) == "not a folder"
    assert folder_problem(str(tmp_path / "a" / "b")) == f"no folder {tmp_path / 'a'} (make it first, or name another)"
    assert folder_problem(str(tmp_path / "new")) is None and folder_problem(str(tmp_path)) is None


def scores(folder: str) -> list[tuple[int, float]]:
    accumulator = EventAccumulator(folder, size_guidance={"scalars": 0})
    accumulator.Reload()
    return [(e.step, e.value) for e in accumulator.Scalars("episode/score")]


def test_episodes_ending_out_of_order_are_written_by_number_and_a_joined_run_as_they_come(tmp_path):
    mirror = TensorBoardMirror(str(tmp_path))
    mirror.on_run_started(RunStarted("first", 5, False, started=1_000_000))
    for number in (3, 1, 5, 2, 4):
        mirror.on_episode(EpisodeFinished("first", number, float(number * 10), number))
    mirror.on_run_finished(RunFinished("first", 30.0, 5, steps=15, seconds=1.5))
    mirror.take(RunJoined(RunStarted("second", 100, False, started=2_000_000), finished=40, steps=900))
    for number in (42, 41):  # its lower numbers ended before the join: nothing to wait for
        mirror.take(EpisodeFinished("second", number, 1.0, 1))
    mirror.take("not a run event")
    mirror.close()
    first, second = sorted(os.listdir(tmp_path))
    assert first.endswith("-first") and second.endswith("-second")
    assert scores(str(tmp_path / first)) == [(n, n * 10.0) for n in range(1, 6)]
    assert [step for step, _ in scores(str(tmp_path / second))] == [42, 41]
    assert mirror.written == 7 and mirror.failed is None


def test_run_ids_that_differ_keep_folders_that_differ(tmp_path):
    """Ids that one name would merge, started in one second: before, one folder held both runs'
    episodes (and on a file system that ignores case, ``Run`` and ``run`` shared one too)."""
    ids = ("a/b", "a_b", "a?b", "Run", "run", "x" * 64 + "1", "x" * 64 + "2")
    mirror = TensorBoardMirror(str(tmp_path))
    for number, run_id in enumerate(ids, 1):
        mirror.on_run_started(RunStarted(run_id, 1, False, started=1_000_000))
        mirror.on_episode(EpisodeFinished(run_id, 1, float(number), 1))
        mirror.on_run_finished(RunFinished(run_id, float(number), 1, steps=1, seconds=1.0))
    mirror.close()
    folders = sorted(os.listdir(tmp_path), key=lambda name: scores(str(tmp_path / name)))
    assert len({name.lower() for name in folders}) == len(ids)
    assert [scores(str(tmp_path / name)) for name in folders] == [[(1, float(n))] for n in range(1, len(ids) + 1)]


def test_a_runs_steps_are_its_recorded_episodes_steps(tmp_path):
    """run/steps is the history's total_steps: the steps of the episodes written. A stopped run's
    ENV_DONE counts its unfinished episodes' too (32,500 beside the history's 22,830), and a room
    that does not run the environment is told none (it wrote 0)."""
    mirror = TensorBoardMirror(str(tmp_path))
    for run_id, told in (("stopped", 999), ("followed", 0)):
        mirror.on_run_started(RunStarted(run_id, 10, False, started=1_000_000))
        for number in (1, 2, 3):
            mirror.on_episode(EpisodeFinished(run_id, number, 10.0, number * 10, wall_time=1_000_001.0))
        mirror.on_run_finished(RunFinished(run_id, 10.0, 3, stopped=True, steps=told, seconds=1.0))
    mirror.close()
    for folder in sorted(os.listdir(tmp_path)):
        accumulator = EventAccumulator(str(tmp_path / folder), size_guidance={"scalars": 0})
        accumulator.Reload()
        assert [(e.step, e.value) for e in accumulator.Scalars("run/steps")] == [(3, 60.0)], folder


def test_runs_started_within_one_second_are_listed_in_start_order(tmp_path):
    """A schedule starts several runs a second: their folders sorted by random id within it, and
    TensorBoard listed round 1's training after its evaluation (new-user pass 5)."""
    mirror = TensorBoardMirror(str(tmp_path))
    for run_id, started in (("zz-first", 1_000_000.125), ("aa-second", 1_000_000.5)):
        mirror.on_run_started(RunStarted(run_id, 1, False, started=started))
        mirror.on_episode(EpisodeFinished(run_id, 1, 1.0, 1))
        mirror.on_run_finished(RunFinished(run_id, 1.0, 1, steps=1, seconds=0.1))
    mirror.close()
    assert [name.split("-", 2)[2] for name in sorted(os.listdir(tmp_path))] == ["zz-first", "aa-second"]
