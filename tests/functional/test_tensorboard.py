"""TensorBoard output, read back with TensorBoard's own reader (its EventAccumulator).

`export --format tensorboard --out DIR` writes one folder per run of the history; `--tensorboard
DIR` on the app, `run` and `env` mirrors each run's episodes as they end. Every episode must be
there, in episode-number order, with the run's ENV_DONE figures at its end.
"""

from __future__ import annotations

import os
import signal

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_app import connected, runs, start_run
from test_followers import agent, cli_process  # noqa: F401  (agent: a fixture)

from cartpole_tui.env.history.store import RunStore
from cartpole_tui.env.runtime.session import SessionOptions
from cartpole_tui.env.words import steps_per_second
from cartpole_tui.tui.app import ControlRoomApp

from conftest import cli, one_clear_line, until, wait_for

Scalars = dict[str, list[tuple[int, float]]]


def read_folder(folder: str) -> Scalars:
    """Every scalar of one run's folder, tag -> [(step, value)] in the order written."""
    accumulator = EventAccumulator(folder, size_guidance={"scalars": 0})  # 0: keep every point
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def read_runs(directory: str) -> dict[str, Scalars]:
    """Each run folder in ``directory`` (hidden ones, half-written, aside) read back."""
    return {
        name: read_folder(os.path.join(directory, name))
        for name in sorted(os.listdir(directory))
        if not name.startswith(".") and os.path.isdir(os.path.join(directory, name))
    }


def steps_of(scalars: Scalars, tag: str = "episode/score") -> list[int]:
    return [step for step, _ in scalars.get(tag, [])]


def history(db: str) -> tuple[list, dict]:
    with RunStore.open(db, read_only=True) as store:
        played = store.runs()
        return played, {run.run_uid: store.episodes(run.run_uid) for run in played}


def played_runs(tmp_path, count: int, episodes: int) -> str:
    db = str(tmp_path / "runs.sqlite3")
    for seed in range(count):
        ran = cli("run", "--agent", "random", "--seed", str(seed), "--episodes", str(episodes), "--db", db)
        assert ran.returncode == 0, ran.stderr
    return db


def test_export_writes_every_episode_of_every_run_by_number_and_the_env_done_figures(tmp_path):
    db = played_runs(tmp_path, 2, 60)
    out = tmp_path / "tb"
    exported = cli("export", "--db", db, "--format", "tensorboard", "--out", str(out))
    assert exported.returncode == 0 and exported.stdout == "", exported.stderr
    assert f"exported 2 runs to {out}" in exported.stderr
    played, episodes = history(db)
    read = read_runs(str(out))
    assert list(read) == [f"run-{run.number:04d}-{run.run_uid}" for run in played]
    for run, scalars in zip(played, read.values()):
        rows = episodes[run.run_uid]
        assert steps_of(scalars) == list(range(1, 61))
        assert [value for _, value in scalars["episode/score"]] == [row.score for row in rows]
        assert [value for _, value in scalars["episode/steps"]] == [row.steps for row in rows]
        ((step, average),) = scalars["run/avg_score"]
        assert step == 60 and average == pytest.approx(run.avg_score, rel=1e-6)  # float32 in the file
        assert scalars["run/steps"] == [(60, run.total_steps)]
        assert scalars["run/steps_per_s"][0][1] == pytest.approx(run.steps_per_s, rel=1e-6)

    again = cli("export", "--db", db, "--format", "tensorboard", "--out", str(out), "--run", "2")
    assert again.returncode == 0 and "exported 1 run " in again.stderr
    assert steps_of(read_runs(str(out))[f"run-0002-{played[1].run_uid}"]) == list(range(1, 61))  # replaced, not doubled


def test_a_hostile_run_id_stays_one_folder_inside_the_directory(tmp_path):
    (tmp_path / "db").mkdir()
    db = str(tmp_path / "db" / "runs.sqlite3")
    with RunStore.open(db) as store:
        for uid in ("../../escaped", "..", "/etc/x\x1b[31m"):
            store.begin_run(uid, episodes=1, deterministic=False, seed=None, env_id="", address="", started=1)
            store.add_episode(uid, 1, 9.0, 9, 2.0)
    out = tmp_path / "deep" / "tb"
    out.parent.mkdir()
    exported = cli("export", "--db", db, "--format", "tensorboard", "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    assert sorted(os.listdir(tmp_path / "deep")) == ["tb"]  # nothing beside or above it
    assert sorted(os.listdir(tmp_path)) == ["db", "deep"]
    names = sorted(read_runs(str(out)))
    for name, safe in zip(names, ("run-0001-_.._escaped-", "run-0002-run-", "run-0003-_etc_x__31m-"), strict=True):
        assert name.startswith(safe) and len(name) == len(safe) + 16  # and a hash of the id


TO_A_FOLDER = (["export", "--db", ":memory:", "--format", "tensorboard", "--out"], ["run", "--tensorboard"])


@pytest.mark.parametrize("command", TO_A_FOLDER)
def test_a_file_or_a_missing_parent_is_a_usage_error_and_nothing_is_written(tmp_path, command):
    a_file = tmp_path / "taken"
    a_file.write_text("mine")
    one_clear_line(cli(*command, str(a_file), timeout=60), 2, f"{command[-1]} {a_file}: not a folder")
    assert a_file.read_text() == "mine"
    missing = tmp_path / "no" / "tb"
    one_clear_line(cli(*command, str(missing), timeout=60), 2, f"no folder {tmp_path / 'no'}")
    assert not (tmp_path / "no").exists()


def test_tensorboard_export_needs_a_folder():
    one_clear_line(cli("export", "--db", ":memory:", "--format", "tensorboard"), 2, "name it with --out DIR")


def test_without_the_extra_it_is_one_line_and_exit_2(tmp_path):
    hidden = tmp_path / "site"
    (hidden / "tensorboardX").mkdir(parents=True)
    (hidden / "tensorboardX" / "__init__.py").write_text("raise ImportError('not installed')\n")
    environment = {**os.environ, "PYTHONPATH": str(hidden)}
    for command in TO_A_FOLDER:
        result = cli(*command, str(tmp_path / "tb"), env=environment, timeout=60)
        one_clear_line(result, 2, "pip install 'cartpole-tui[tensorboard]'")
    assert not (tmp_path / "tb").exists()
    assert cli("export", "--db", ":memory:", "--format", "json", env=environment).returncode == 0  # the rest works


def test_run_mirrors_every_episode_as_it_ends_in_number_order(tmp_path):
    out = str(tmp_path / "tb")
    db = str(tmp_path / "r.db")  # the built-in swarm plays batches: episodes end out of number order
    ran = cli("run", "--seed", "4", "--episodes", "200", "--db", db, "--tensorboard", out)
    assert ran.returncode == 0, ran.stderr
    ((name, scalars),) = read_runs(out).items()
    played, episodes = history(db)
    wall_times = [row.wall_time for row in episodes[played[0].run_uid]]
    assert wall_times != sorted(wall_times)  # they did
    assert name.endswith(f"-{played[0].run_uid}")
    assert steps_of(scalars) == list(range(1, 201))  # in number order all the same
    assert [value for _, value in scalars["episode/score"]] == [row.score for row in episodes[played[0].run_uid]]
    assert scalars["run/avg_score"][0][1] == pytest.approx(played[0].avg_score, rel=1e-6)
    # the one steps/s figure: the history's (what `run` prints), not the environment's to its end
    assert scalars["run/steps_per_s"][0][1] == pytest.approx(played[0].steps_per_s, rel=1e-6)
    assert f"{steps_per_second(played[0].steps_per_s)} steps/s" in ran.stdout


def test_a_kill_9_mid_run_leaves_the_mirrored_episodes_readable(tmp_path):
    out = str(tmp_path / "tb")
    run = cli_process(
        "run",
        "--agent",
        "random",
        "--seed",
        "2",
        "--episodes",
        "1000000",
        "--parallel",
        "1",
        "--db",
        str(tmp_path / "r.db"),
        "--tensorboard",
        out,
    )
    try:

        def mirrored() -> int:
            found = read_runs(out) if os.path.isdir(out) else {}
            return len(steps_of(next(iter(found.values())))) if found else 0

        wait_for(lambda: mirrored() >= 50, 60, "50 episodes mirrored")
        run.send_signal(signal.SIGKILL)
        run.wait(10)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(10)
    ((_, scalars),) = read_runs(out).items()
    kept = steps_of(scalars)
    assert len(kept) >= 50 and kept == list(range(1, len(kept) + 1))
    played, episodes = history(str(tmp_path / "r.db"))
    assert len(episodes[played[0].run_uid]) >= len(kept)  # no more than the history kept


def test_env_and_a_following_run_each_mirror_the_run(broker, agent, tmp_path):  # noqa: F811
    address = f"127.0.0.1:{broker.port}"
    env = cli_process(
        "env", "--connect", address, "--db", str(tmp_path / "env.db"), "--tensorboard", str(tmp_path / "env-tb")
    )
    try:
        assert "connected" in env.stdout.readline()
        ran = cli(
            "run",
            "--connect",
            address,
            "--no-env",
            "--db",
            str(tmp_path / "run.db"),
            "--episodes",
            "80",
            "--tensorboard",
            str(tmp_path / "run-tb"),
        )
        assert ran.returncode == 0, ran.stderr

        def both() -> list[dict[str, Scalars]]:
            read = [read_runs(str(tmp_path / name)) for name in ("env-tb", "run-tb")]
            return read if all(r and "run/avg_score" in next(iter(r.values())) for r in read) else []

        env_runs, run_runs = wait_for(both, 30, "both mirrors to end the run")
    finally:
        env.send_signal(signal.SIGTERM)
        env.wait(10)
    assert list(env_runs) == list(run_runs)  # one name: the run's start and id
    for read in (env_runs, run_runs):
        assert steps_of(next(iter(read.values()))) == list(range(1, 81))
    assert next(iter(env_runs.values()))["episode/score"] == next(iter(run_runs.values()))["episode/score"]
    # the steps played: a room that does not run the environment hears no figure of them at the end
    # (a follower's mirror wrote 0): its episodes' steps, as its history counts them
    played = [next(iter(read.values()))["run/steps"] for read in (env_runs, run_runs)]
    assert played[0] == played[1] and played[0][0][1] == sum(
        v for _, v in next(iter(env_runs.values()))["episode/steps"]
    )


async def test_the_app_mirrors_its_runs(tmp_path):
    out = str(tmp_path / "tb")
    options = SessionOptions(seed=11, agent="random", tensorboard=out)
    app = ControlRoomApp(options, db_path=str(tmp_path / "runs.sqlite3"))
    async with app.run_test(size=(100, 30)) as pilot:
        await connected(pilot)
        await start_run(pilot, "12")
        done = await until(pilot, lambda: [r for r in runs(app) if r.state == "done"], what="the run to end")

        def mirrored() -> dict[str, Scalars]:
            read = read_runs(out) if os.path.isdir(out) else {}
            return read if read and "run/avg_score" in next(iter(read.values())) else {}

        ((name, scalars),) = (await until(pilot, mirrored, what="the run mirrored")).items()
    assert name.endswith(done[0].run_uid) and steps_of(scalars) == list(range(1, 13))


def test_help_names_the_options():
    assert "--tensorboard DIR" in cli("run", "--help").stdout
    assert "tensorboard" in cli("export", "--help").stdout
