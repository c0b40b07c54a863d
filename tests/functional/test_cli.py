"""The installed `cartpole-tui` command: real processes, real brokers on loopback."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import sqlite3
import struct
import subprocess
import termios
import threading
import time

import pytest

from cartpole_tui.env.components.environment import EnvironmentComponent
from cartpole_tui.env.components.random_agent import RandomAgent
from cartpole_tui.env.history.store import RunStore
from cartpole_tui.env.words import steps_per_second

from conftest import CLI, cli, free_port, one_clear_line, only_json, wait_for


@pytest.mark.parametrize(
    "args, words",
    [
        (["run", "--episodes", "0"], "whole number 1–1,000,000, got 0"),
        (["run", "--episodes", "ten"], "whole number 1–1,000,000, got 'ten'"),
        (["run", "--parallel", "0"], "instances 1–1,024"),
        (["env", "--connect", "127.0.0.1:8080", "--parallel", "5000"], "instances 1–1,024"),
        (["run", "--connect", "localhost"], "HOST:PORT"),
        (["run", "--connect", "127.0.0.1:99999"], "HOST:PORT"),
        (["evolve"], "cartpole-tui evolve: --connect HOST:PORT is required"),  # as its other errors are named
        (["broker", "--port", "http"], "port"),
        (["export", "--format", "xml"], "invalid choice"),
        (["rnu"], "invalid choice"),
        (["--redraw-hz", "0"], "between 0.1 and 30"),
        (["run", "--timeout", "0"], "seconds above 0"),
        (["evolve", "--connect", "127.0.0.1:8080", "--timeout", "-1"], "seconds above 0"),
        # a subcommand's line names it, also for an argument it does not know
        (
            ["evolve", "--connect", "127.0.0.1:8080", "--jsn"],
            "cartpole-tui evolve: error: unrecognized arguments: --jsn",
        ),
        (["run", "--bogus"], "cartpole-tui run: error: unrecognized arguments: --bogus"),
        # an option of run's other mode did nothing; now it is said
        (["run", "--schedule", "--rounds", "2", "--episodes", "7"], "--episodes does nothing with --schedule"),
        (["run", "--schedule", "--deterministic"], "--deterministic does nothing with --schedule"),
        (
            ["run", "--episodes", "5", "--rounds", "3"],
            "cartpole-tui run: --rounds is for --schedule (one run plays --episodes)",
        ),
        (["run", "--train", "3"], "--train is for --schedule"),
        (["run", "--eval", "3"], "--eval is for --schedule"),
        (["run", "--target", "100"], "--target is for --schedule"),
        (["run", "--target", "0"], "--target is for --schedule"),
        (["run", "--confirm", "0"], "--confirm is for --schedule"),
        # --offline browses the history: an option that plays runs did nothing, without a word
        (["--offline", "--fresh"], "cartpole-tui: --fresh does nothing with --offline"),
        (["--offline", "--connect", "127.0.0.1:8080"], "--connect does nothing with --offline"),
        (["--offline", "--seed", "3"], "--seed does nothing with --offline"),
        # not first "no folder /nonexistent", then, once made, this
        (["--offline", "--tensorboard", "/nonexistent/tb"], "--tensorboard does nothing with --offline"),
        # what cannot play on the embedded network (it waited forever, or 30 s at an evolution)
        (["run", "--no-env", "--episodes", "5"], "cartpole-tui run: --no-env needs --connect HOST:PORT"),
        (["--no-env"], "cartpole-tui: --no-env needs --connect HOST:PORT"),
        (["serve", "--no-env"], "cartpole-tui serve: --no-env needs --connect HOST:PORT"),
        (["run", "--schedule", "--agent", "random"], "--agent random has no evolution"),
        # an option before the command was the control room's, and the command's default won
        (
            ["--db", ":memory:", "run", "--episodes", "3"],
            "cartpole-tui run: --db before the command applies to nothing",
        ),
        (["--connect", "127.0.0.1:8080", "evolve"], "cartpole-tui evolve: --connect before the command"),
    ],
)
def test_bad_arguments_get_one_line_and_exit_2(args, words):
    one_clear_line(cli(*args), 2, words)


SEEDS = "0–4,294,967,295"


@pytest.mark.parametrize(
    "args, words",
    [
        (["run", "--episodes", "1000001"], "--episodes: expected a whole number 1–1,000,000, got 1000001 ("),
        (["run", "--schedule", "--seed", "99999999999999999999"], f"--seed: expected a whole number {SEEDS}"),
        (["run", "--seed", "-1"], f"--seed: expected a whole number {SEEDS}, got -1"),
        (["env", "--connect", "127.0.0.1:8080", "--seed", "-1"], f"--seed: expected a whole number {SEEDS}"),
        (["swarm", "--connect", "127.0.0.1:8080", "--seed", "4294967296"], f"--seed: expected a whole number {SEEDS}"),
        (["--seed", "-5"], f"--seed: expected a whole number {SEEDS}"),
        (["run", "--schedule", "--rounds", "0"], "--rounds: expected a whole number 1–10,000"),
        (["run", "--schedule", "--rounds", "10001"], "--rounds: expected a whole number 1–10,000"),
        (["run", "--schedule", "--train", "1000001"], "--train: expected a whole number 1–1,000,000"),
        (["run", "--schedule", "--eval", "0"], "--eval: expected a whole number 1–1,000,000"),
        (["run", "--schedule", "--confirm", "-1"], "--confirm: expected a whole number 0–1,000,000"),
        (["run", "--parallel", "1025"], "--parallel: expected a number of instances 1–1,024"),
        (["run", "--models", "1001"], "--models: expected a number of models 1–1,000"),
        (["export", "--run", "0"], "--run: expected a run number 1–9,223,372,036,854,775,807"),
        (["broker", "--max-frame", "10"], "--max-frame: expected a frame size in bytes 1,024–1,073,741,824"),
        (["run", "--episodes", "9" * 5000], "--episodes: expected a whole number 1–1,000,000"),
    ],
)
def test_edge_values_are_usage_errors_at_once_naming_the_range(args, words):
    started = time.monotonic()
    result = cli(*args, timeout=60)
    one_clear_line(result, 2, words)
    assert time.monotonic() - started < 20  # at once: nothing started (it used to wait 60 s or hang)


def test_a_file_in_a_missing_folder_is_a_usage_error_naming_the_folder(tmp_path):
    missing = tmp_path / "no" / "such"
    for args, option in (
        (["run", "--episodes", "2", "--agent", "random", "--db", str(missing / "x.db")], "--db"),
        (["export", "--db", ":memory:", "-o", str(missing / "out.csv")], "--out"),
        (["--offline", "--db", str(missing / "x.db")], "--db"),
        (["swarm", "--connect", "127.0.0.1:9", "--save", str(missing / "p.npz")], "--save"),
    ):
        one_clear_line(cli(*args, timeout=60), 2, f"{option} {missing}/")
        assert f"no folder {missing}" in cli(*args, timeout=60).stderr
    assert not (tmp_path / "no").exists()  # nothing made it


def test_the_default_data_folder_is_still_made(tmp_path):
    environment = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}
    ran = cli("run", "--episodes", "2", "--agent", "random", "--seed", "1", env=environment)
    assert ran.returncode == 0, ran.stderr
    assert (tmp_path / "data" / "cartpole-tui" / "runs.sqlite3").is_file()


def test_unreachable_broker_is_one_line_and_exit_1():
    port = free_port()
    for args in (
        ["run", "--connect", f"127.0.0.1:{port}", "--db", ":memory:"],
        ["evolve", "--connect", f"127.0.0.1:{port}"],
        ["env", "--connect", f"127.0.0.1:{port}", "--db", ":memory:"],  # not the user's history
        ["swarm", "--connect", f"127.0.0.1:{port}"],
    ):
        one_clear_line(cli(*args), 1, f"cannot reach broker at 127.0.0.1:{port}")


def test_run_json_on_the_embedded_network_is_recorded(tmp_path):
    db = tmp_path / "runs.sqlite3"
    result = cli("run", "--episodes", "5", "--json", "--agent", "random", "--seed", "3", "--db", str(db))
    assert result.returncode == 0, result.stderr
    report = only_json(result.stdout)
    assert report["episodes"] == 5 and len(report["scores"]) == 5
    assert report["avg_score"] == pytest.approx(sum(report["scores"]) / 5)
    with sqlite3.connect(db) as connection:
        scores = [row[0] for row in connection.execute("SELECT score FROM episodes ORDER BY idx")]
    assert scores == report["scores"]


def on_a_terminal(*args: str) -> tuple[subprocess.CompletedProcess, bytes]:
    """The command with standard error on an 80x24 pseudo-terminal (read as fast as it is written):
    the result, stdout captured, and every byte the terminal got."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    got = bytearray()

    def read() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the last writer closed it
                return
            if not chunk:
                return
            got.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        environment = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES")}
        result = subprocess.run(
            [CLI, *args], stdout=subprocess.PIPE, stderr=slave, text=True, timeout=120, env=environment
        )
    finally:
        os.close(slave)
        reader.join(10)
        os.close(master)
    return result, bytes(got)


def test_a_run_on_a_terminal_writes_its_episode_lines_in_screenfuls_at_the_redraw_rate():
    """1,000 episode lines scrolling by, each redrawing the bar, were ~250 KiB on the terminal and
    made the run 2.4–5× slower than with stderr redirected; now a batch at the redraw rate shows
    the latest screenful after a line counting the rest (stderr redirected keeps every line)."""
    result, shown = on_a_terminal("run", "--episodes", "1000", "--agent", "random", "--seed", "1", "--db", ":memory:")
    assert result.returncode == 0 and "over 1,000 episodes (ENV_DONE)" in result.stdout, shown[-2000:]
    text = shown.decode()
    assert len(shown) < 100 * 1024, f"{len(shown):,} bytes on the terminal"
    assert text.count("ETA") < 200  # the bar drawn at the redraw rate (2 a second), not once a line
    assert "episode  1000  score" in text  # the last screenful is always written
    assert "more (every line when standard error is no terminal)" in text


def test_run_joins_an_existing_network(broker, tmp_path):
    environment = EnvironmentComponent("127.0.0.1", broker.port, seed=1).start()
    agent = RandomAgent("127.0.0.1", broker.port).start()
    try:
        result = cli(
            "run",
            "--connect",
            f"127.0.0.1:{broker.port}",
            "--no-env",
            "--episodes",
            "4",
            "--db",
            str(tmp_path / "h.sqlite3"),
        )
    finally:
        agent.close()
        environment.close()
    assert result.returncode == 0, result.stderr
    assert "average score" in result.stdout and "over 4 episodes (ENV_DONE)" in result.stdout
    exported = cli("export", "--db", str(tmp_path / "h.sqlite3"), "--format", "json")
    runs = json.loads(exported.stdout)["runs"]
    assert len(runs) == 1 and len(runs[0]["episode_rows"]) == 4 and runs[0]["state"] == "done"


SHORT_SCHEDULE = ("run", "--schedule", "--rounds", "2", "--train", "4", "--eval", "2", "--seed", "1", "--models", "4")


def test_short_schedule_prints_the_curve_and_one_json_line_last():
    result = cli(*SHORT_SCHEDULE, "--json", "--db", ":memory:")
    assert result.returncode == 0, result.stderr
    report = only_json(result.stdout)  # the curve went to stderr: `| jq` reads the whole output
    assert [r["round"] for r in report["rounds"]] == [1, 2] and "final_eval_avg" in report
    assert all("train_avg" in r and "eval_avg" in r and "train_seconds" in r for r in report["rounds"])
    curve = [line for line in result.stderr.splitlines() if "episode" in line and "mean100" in line]
    assert len(curve) >= 2 * (4 + 2)
    assert "round 2:" in result.stderr


def test_a_schedules_curve_is_in_the_episodes_numbers_order(tmp_path):
    """A vectorised run's episodes end shortest first: the curve numbered them as they ended, so
    round 1's training lines read 8 8 8 9 … 500 (new-user pass 5). They follow the history's order."""
    db = str(tmp_path / "runs.sqlite3")
    ran = cli("run", "--schedule", "--rounds", "1", "--train", "40", "--eval", "2", "--seed", "1", "--db", db)
    assert ran.returncode == 0, ran.stderr
    lines = [line for line in ran.stderr.splitlines() if line.startswith("train ")]
    trained = [float(line.split("score")[1].split()[0]) for line in lines]
    with RunStore.open(db, read_only=True) as store:
        first = store.runs()[0]
        assert trained == [episode.score for episode in store.episodes(first.run_uid)]
    assert trained != sorted(trained)  # (a learning swarm's first 40 episodes are not in score order)


def test_a_schedule_of_one_round_says_round():
    """A bias-free swarm often solves in round 1: it said "after 1 rounds"."""
    result = cli("run", "--schedule", "--rounds", "1", "--train", "4", "--eval", "2", "--seed", "1", "--db", ":memory:")
    assert result.returncode == 0, result.stderr
    assert " after 1 round, " in result.stdout, result.stdout


def test_a_schedule_says_its_result_on_stdout_and_its_curve_on_stderr_as_one_run_does(tmp_path):
    """Both modes of `run`: the result alone on stdout, every episode on stderr (the schedule's
    curve was on stdout); the time in the last line is the episode lines' clock."""
    one = cli("run", "--episodes", "3", "--agent", "random", "--seed", "1", "--db", ":memory:")
    scheduled = cli(*SHORT_SCHEDULE, "--db", ":memory:")
    assert one.returncode == 0 and scheduled.returncode == 0, one.stderr + scheduled.stderr
    assert one.stdout.startswith("average score") and one.stdout.count("\n") == 1
    assert scheduled.stdout.startswith("final deterministic average") and scheduled.stdout.count("\n") == 1, (
        scheduled.stdout
    )
    assert sum(line.startswith("episode") for line in one.stderr.splitlines()) == 3
    curve = [line for line in scheduled.stderr.splitlines() if "mean100" in line]
    assert len(curve) >= 2 * (4 + 2) and curve[0].startswith("train   round  1  episode     1")
    # train_seconds is cumulative: the line says so
    rounds = [line for line in scheduled.stderr.splitlines() if line.startswith("round ")]
    assert len(rounds) == 2 and all(line.split("training ")[1].split()[1] == "so" for line in rounds), rounds
    # the last line's time is on the episode lines' clock (it used to start later: "0.7s" after "wall 1.0s")
    last_wall = float(curve[-1].split("wall")[1].strip().rstrip("s"))
    total = float(scheduled.stdout.rstrip().rsplit(", ", 1)[1].rstrip("s"))
    assert last_wall <= total


def test_a_history_that_is_no_regular_file_keeps_the_population_in_memory_too(tmp_path):
    """`--db /dev/null` or a folder: the runs are kept in memory, and so is the population (it
    was promised to /dev/null.population.npz)."""
    folder = tmp_path / "folder"
    folder.mkdir()
    for db in ("/dev/null", str(folder)):
        ran = cli("run", "--episodes", "2", "--seed", "1", "--models", "3", "--db", db)
        assert ran.returncode == 0, ran.stderr
        assert "3 models from random weights (not saved)" in ran.stderr
        assert "population.npz" not in ran.stderr
    assert list(tmp_path.iterdir()) == [folder] and not list(folder.iterdir())


def test_evolve_json_is_one_strict_object_of_what_the_evolution_reported():
    port = free_port()
    broker = subprocess.Popen([CLI, "broker", "--port", str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert "listening on 127.0.0.1" in broker.stdout.readline()
        swarm = subprocess.Popen(
            [CLI, "swarm", "--models", "3", "--connect", f"127.0.0.1:{port}"], stdout=subprocess.PIPE, text=True
        )
        try:
            assert "Ctrl-C to stop" in swarm.stdout.readline()
            evolved = cli("evolve", "--connect", f"127.0.0.1:{port}", "--json")
        finally:
            swarm.send_signal(signal.SIGINT)
            assert swarm.wait(10) == 0
    finally:
        broker.send_signal(signal.SIGINT)
        assert broker.wait(10) == 0
    assert evolved.returncode == 0, evolved.stderr
    report = only_json(evolved.stdout)
    assert report["seconds"] > 0 and report["address"] == f"127.0.0.1:{port}"
    assert report["generation"] == 1 and len(report["fitness"]) == 3 and 0 <= report["elite"] < 3
    assert abs(report["at"] - time.time()) < 60 and report["sent_by"] != "?" and report["error"] is None


def test_evolve_json_that_fails_is_still_one_object_with_its_error(broker):
    """No evolution on the network: `evolve --json | jq` read nothing (new-user pass 4); now the
    object, its figures null, and the line stderr has as its "error"."""
    evolved = cli("evolve", "--connect", f"127.0.0.1:{broker.port}", "--json", "--timeout", "0.5")
    one_clear_line(evolved, 1, "no evolution component answered EVOLUTION within 0.5s")
    report = only_json(evolved.stdout)
    assert report["error"] == evolved.stderr.strip().removeprefix("cartpole-tui: ")
    assert report["seconds"] is None and report["fitness"] == [] and report["address"] == f"127.0.0.1:{broker.port}"


def test_broker_env_and_swarm_commands_make_a_network_that_learns_nothing_but_runs(tmp_path):
    port = free_port()
    broker = subprocess.Popen([CLI, "broker", "--port", str(port)], stdout=subprocess.PIPE, text=True)
    children = [broker]
    try:
        assert "listening on 127.0.0.1" in broker.stdout.readline()
        for args in (["env", "--db", str(tmp_path / "env.sqlite3")], ["swarm", "--models", "3"]):
            child = subprocess.Popen([CLI, *args, "--connect", f"127.0.0.1:{port}"], stdout=subprocess.PIPE, text=True)
            children.append(child)
            assert "Ctrl-C to stop" in child.stdout.readline()
        evolved = cli("evolve", "--connect", f"127.0.0.1:{port}")
        assert evolved.returncode == 0 and "EVO_DONE" in evolved.stdout, evolved.stderr
        ran = cli("run", "--connect", f"127.0.0.1:{port}", "--no-env", "--episodes", "3", "--db", ":memory:", "--json")
        assert ran.returncode == 0 and json.loads(ran.stdout)["episodes"] == 3, ran.stderr
    finally:
        for child in reversed(children):  # the components first: the broker going away is an error for them
            child.send_signal(signal.SIGINT)
            assert child.wait(10) == 0
    with sqlite3.connect(tmp_path / "env.sqlite3") as connection:  # the env command recorded the run
        assert connection.execute("SELECT COUNT(*) FROM episodes").fetchone()[0] == 3


def test_run_on_the_environments_own_history_file_gives_its_steps_per_s(broker, tmp_path):
    """`run --no-env --db` naming the file the `env` process writes: the run's steps/s is the
    history's figure, as every other view shows it (it used to be missing, and null in --json)."""
    db = tmp_path / "runs.sqlite3"
    env = subprocess.Popen(
        [CLI, "env", "--connect", f"127.0.0.1:{broker.port}", "--db", str(db)], stdout=subprocess.PIPE, text=True
    )
    agent = RandomAgent("127.0.0.1", broker.port).start()
    try:
        assert "Ctrl-C to stop" in env.stdout.readline()
        address = f"127.0.0.1:{broker.port}"
        common = ("run", "--connect", address, "--no-env", "--episodes", "30", "--db", str(db))
        text = cli(*common)
        report = cli(*common, "--json")
    finally:
        agent.close()
        env.send_signal(signal.SIGINT)
        assert env.wait(10) == 0
    assert text.returncode == 0 and report.returncode == 0, text.stderr + report.stderr
    exported = json.loads(cli("export", "--db", str(db), "--format", "json").stdout)["runs"]
    assert [run["state"] for run in exported] == ["done", "done"]
    assert text.stdout.strip().endswith(f", {steps_per_second(exported[0]['steps_per_s'])} steps/s")
    assert only_json(report.stdout)["steps_per_s"] == pytest.approx(exported[1]["steps_per_s"])


@pytest.mark.parametrize(
    ("sig", "code", "said"), [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")]
)
def test_evolve_json_interrupted_is_still_one_object(broker, sig, code, said):
    """Ctrl-C, or a script's `timeout` (SIGTERM), while `evolve --json` waits: `| jq` read nothing."""
    child = subprocess.Popen(
        [CLI, "evolve", "--connect", f"127.0.0.1:{broker.port}", "--json", "--timeout", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for(lambda: len(broker.stats()["clients"]) >= 1, 30, "evolve to join")
    child.send_signal(sig)
    out, err = child.communicate(timeout=30)
    assert child.returncode == code, err
    report = only_json(out)
    assert report["error"] == said and report["seconds"] is None
