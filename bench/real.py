"""The published RLGym network, for real: schedules and runs back to back, timed.

    python -m bench.real [--port P] [--environment ours|theirs|both] [--schedules K] [--rounds R]
                         [--runs N] [--episodes E] [--broker ours|swergio] [--nodelay]
    python -m bench.published --real ...   (the same)

Starts the real published components (20 torch models, their aggregation and evolution;
with ``--environment theirs`` also their 04_gym_env.py) with the shared
``published/network.sh``, through our broker (or swergio.Server), and runs what a user of
the RLGym example runs, as ``cartpole-tui run`` subprocesses: K schedules of R rounds
(``run --schedule``) and N runs of E episodes back to back. With our environment
(``ours``) the runs play here at the default ``--parallel``; with theirs, ``--no-env``.
A command that fails or says "stalled" / "did not answer" is a stall. The network is
stopped on every way out (also Ctrl-C and SIGTERM). Needs the set-up of
``published/setup.sh`` and ``extract.sh`` (RLGYM_VENV, RLGYM_DIR); without it, says so
and exits 2. The network takes both cores of a small machine: run it by hand, not in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from cartpole_tui.env import defaults

ROOT = Path(__file__).resolve().parent.parent
UPSTREAM_FILES = ("01_server.py", "02_model.py", "03_aggregation.py", "04_gym_env.py", "05_evolutionary.py")
STALL_WORDS = ("stalled", "did not answer", "no episode finished")
START_TIMEOUT = 400.0  # s for network.sh start (its own is 240 s for the joins, plus the broker)
STOP_TIMEOUT = 60.0


def find_network_script(given: str | None) -> Path | None:
    """published/network.sh: ``--network``, $RLGYM_NETWORK_SH, or a ``shared`` folder above the checkout."""
    candidates = [given, os.environ.get("RLGYM_NETWORK_SH")]
    candidates += [str(parent / "shared" / "published" / "network.sh") for parent in ROOT.parents]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def missing_setup(script: Path | None, venv: Path, upstream: Path) -> list[str]:
    """What is missing to start the real network (empty: ready)."""
    missing = []
    if script is None:
        missing.append("published/network.sh (give --network PATH or set RLGYM_NETWORK_SH)")
    if not (venv / "bin" / "python").exists():
        missing.append(f"the venv {venv} (run published/setup.sh, or set RLGYM_VENV)")
    absent = [name for name in UPSTREAM_FILES if not (upstream / name).is_file()]
    if absent:
        missing.append(f"{', '.join(absent)} in {upstream} (run published/extract.sh, or set RLGYM_DIR)")
    return missing


class RealNetwork:
    """network.sh start / stop for one port and environment choice."""

    def __init__(self, script: Path, port: int, *, with_env: bool, broker: str, nodelay: bool):
        self.script = script
        self.env = dict(os.environ, SWERGIO_PORT=str(port), RLGYM_WITH_ENV="1" if with_env else "0")
        self.env.setdefault("RLGYM_DIR", "/tmp/rlgym-upstream")
        if nodelay:
            self.env["SWERGIO_NODELAY"] = "1"
        if broker == "ours":
            ours = Path(sys.executable).parent / "cartpole-tui"
            self.env["BROKER_CMD"] = f"{ours} broker --host {defaults.LOOPBACK} --port $SWERGIO_PORT"
        else:
            self.env.pop("BROKER_CMD", None)
        self.started = False
        self.startup_seconds = float("nan")

    def start(self) -> None:
        self.started = True  # from here on, stop: a start cut short leaves processes in the pidfile
        t0 = time.monotonic()
        start = subprocess.Popen([str(self.script), "start"], env=self.env, stdout=subprocess.PIPE, text=True)
        try:
            out, _ = start.communicate(timeout=START_TIMEOUT)
        except BaseException:
            start.terminate()
            start.wait(10)
            raise
        if start.returncode != 0:
            raise RuntimeError(f"network.sh start failed (exit {start.returncode}): {out.strip()[-300:]}")
        self.startup_seconds = time.monotonic() - t0
        print(out.strip(), flush=True)

    def stop(self) -> None:
        """network.sh stop, once, shielded from Ctrl-C and SIGTERM while it runs."""
        if not self.started:
            return
        self.started = False
        previous = {number: signal.signal(number, signal.SIG_IGN) for number in (signal.SIGINT, signal.SIGTERM)}
        try:
            stopped = subprocess.run(
                [str(self.script), "stop"], env=self.env, capture_output=True, text=True, timeout=STOP_TIMEOUT
            )
            print(stopped.stdout.strip() or stopped.stderr.strip(), flush=True)
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)


@dataclass
class Outcome:
    """One ``cartpole-tui run`` command: how it ended and what it played."""

    label: str
    code: int
    seconds: float
    episodes: int = 0
    steps: int = 0
    rounds: int = 0
    note: str = ""
    stderr: list[str] = field(default_factory=list)

    @property
    def stalled(self) -> bool:
        return self.code != 0 or any(word in line for line in self.stderr for word in STALL_WORDS)

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else float("nan")

    def line(self) -> str:
        verdict = "STALL" if self.stalled else "ok"
        played = f"{self.rounds} rounds, " if self.rounds else ""
        rate = f"{self.steps_per_s:5.1f} steps/s" if self.steps else "  ? steps/s"
        text = (
            f"  {self.label:<14} {verdict:<5} exit {self.code:<3} {self.seconds:7.1f} s  {played}"
            f"{self.episodes} episodes, {self.steps} steps, {rate}"
        )
        return text + (f"  ({self.note})" if self.note else "")


def cartpole_tui(label: str, args: list[str], limit: float) -> Outcome:
    """Run ``cartpole-tui ARGS``; SIGINT (then kill) to it when this process is interrupted."""
    command = [str(Path(sys.executable).parent / "cartpole-tui"), *args]
    t0 = time.monotonic()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = child.communicate(timeout=limit)
        code = child.returncode
    except subprocess.TimeoutExpired:
        child.kill()
        out, err = child.communicate()
        code, err = -9, err + f"\nbench: killed after {limit:.0f} s (stalled)"
    except BaseException:
        child.send_signal(signal.SIGINT)
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        raise
    outcome = Outcome(label, code, time.monotonic() - t0, stderr=[line for line in err.splitlines() if line.strip()])
    read_figures(outcome, out)
    if outcome.stalled and outcome.stderr:
        outcome.note = outcome.stderr[-1][:200]
    return outcome


def read_figures(outcome: Outcome, stdout: str) -> None:
    """Episodes, steps and rounds from a ``--json`` run or schedule (CartPole: one reward a step)."""
    lines = stdout.strip().splitlines()
    try:
        report = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        return
    if "rounds" in report:  # a schedule: its episode lines carry the scores
        scores = [float(line.split("score")[1].split()[0]) for line in lines[:-1] if " score " in line]
        outcome.rounds, outcome.episodes, outcome.steps = len(report["rounds"]), len(scores), int(sum(scores))
        if not scores:  # their environment: no episode lines, only averages
            outcome.episodes, outcome.steps = schedule_played(report)
        final = report.get("final_eval_avg")
        outcome.note = f"final deterministic average {final:.1f}" if isinstance(final, (int, float)) else ""
    else:
        outcome.episodes = int(report.get("episodes", 0))
        scores = report.get("scores") or []
        # their environment reports no episodes: the average times the episodes asked is the steps
        average = report.get("avg_score")
        if not isinstance(average, (int, float)):  # it ended without an average: stalled or stopped
            outcome.steps = int(sum(scores))
            return
        outcome.steps = int(sum(scores)) if scores else round(average * outcome.episodes)
        outcome.note = f"average {average:.1f}"


def schedule_played(report: dict) -> tuple[int, int]:
    """(episodes, steps) of a schedule from its rounds' averages and settings."""
    settings, episodes, steps = report["settings"], 0, 0.0
    for result in report["rounds"]:
        evaluated = result.get("eval_episodes", settings["evaluate"])  # fewer: stopped below the target
        episodes += settings["train"] + evaluated + result.get("confirm_episodes", 0)
        steps += result["train_avg"] * settings["train"] + result["eval_avg"] * evaluated
        steps += (result.get("confirm_avg") or 0.0) * result.get("confirm_episodes", 0)
    if report.get("final_eval_avg") is not None and not report.get("solved") and settings["final_eval"]:
        episodes += settings["final_eval"]
        steps += report["final_eval_avg"] * settings["final_eval"]
    return episodes, round(steps)


def play(args: argparse.Namespace, environment: str) -> list[Outcome]:
    """The checks of one environment against the running network; a line per command as it ends."""
    address = f"{defaults.LOOPBACK}:{args.port}"
    common = ["--connect", address, "--db", ":memory:", "--json", "--timeout", str(args.timeout)]
    if environment == "theirs":
        common.append("--no-env")
    rounds = args.rounds if environment == "ours" else args.their_rounds
    schedule = ["run", "--schedule", "--rounds", str(rounds), *common]
    if args.train is not None:
        schedule += ["--train", str(args.train)]
    if args.eval is not None:
        schedule += ["--eval", str(args.eval)]
    outcomes = []
    for number in range(1, args.schedules + 1):
        outcomes.append(cartpole_tui(f"schedule {number}", schedule, args.limit))
        print(outcomes[-1].line(), flush=True)
    for number in range(1, args.runs + 1):
        run = ["run", "--episodes", str(args.episodes), *common]
        outcomes.append(cartpole_tui(f"run {number}", run, args.limit))
        print(outcomes[-1].line(), flush=True)
    return outcomes


def summary(environment: str, outcomes: list[Outcome], startup: float) -> str:
    schedules = [o for o in outcomes if o.label.startswith("schedule")]
    runs = [o for o in outcomes if o.label.startswith("run")]
    parts = [f"{environment} environment: network up in {startup:.0f} s"]
    if schedules:
        done = sum(not o.stalled for o in schedules)
        rounds = "/".join(str(o.rounds) for o in schedules)
        parts.append(f"schedules {done} of {len(schedules)} without a stall (rounds {rounds})")
    if runs:
        done = sum(not o.stalled for o in runs)
        rates = [o.steps_per_s for o in runs if o.steps and not o.stalled]
        rate = f", {statistics.median(rates):.1f} steps/s median ({min(rates):.1f}-{max(rates):.1f})" if rates else ""
        parts.append(f"runs back to back {done} of {len(runs)} without a stall{rate}")
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.real", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=18080, help="loopback port of the broker (default 18080)")
    parser.add_argument("--network", help="published/network.sh (default: found above this checkout)")
    parser.add_argument("--environment", choices=("ours", "theirs", "both"), default="both")
    parser.add_argument("--broker", choices=("ours", "swergio"), default="ours", help="ours, or their 01_server.py")
    parser.add_argument("--nodelay", action="store_true", help="SWERGIO_NODELAY=1 (their sockets without Nagle)")
    parser.add_argument("--schedules", type=int, default=3, help="schedules in a row (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of a schedule with our environment (3)")
    parser.add_argument("--their-rounds", type=int, default=2, help="rounds of a schedule with theirs (2)")
    parser.add_argument("--train", type=int, help="schedule: training episodes a round (default: the schedule's)")
    parser.add_argument("--eval", type=int, help="schedule: evaluation episodes a round (default: the schedule's)")
    parser.add_argument("--runs", type=int, default=10, help="runs back to back (default 10)")
    parser.add_argument("--episodes", type=int, default=20, help="episodes a run (default 20)")
    parser.add_argument("--timeout", type=float, default=defaults.RUN_IDLE_TIMEOUT, help="run --timeout")
    parser.add_argument("--limit", type=float, default=3600.0, help="s before a command is killed (3600)")
    args = parser.parse_args(argv)
    if min(args.schedules, args.runs) < 0 or min(args.rounds, args.their_rounds, args.episodes) < 1:
        parser.error("--schedules/--runs must be >= 0, --rounds/--their-rounds/--episodes >= 1")
    if not 0 < args.port < 65536:
        parser.error("--port must be in 1..65535")

    script = find_network_script(args.network)
    venv = Path(os.environ.get("RLGYM_VENV", "/tmp/rlgym-venv"))
    upstream = Path(os.environ.get("RLGYM_DIR", "/tmp/rlgym-upstream"))
    missing = missing_setup(script, venv, upstream)
    if missing:
        print("bench.real: the published network is not set up here; missing:", file=sys.stderr)
        for what in missing:
            print(f"  - {what}", file=sys.stderr)
        print("see published/README.md (setup.sh, extract.sh)", file=sys.stderr)
        return 2
    os.environ["RLGYM_DIR"] = str(upstream)

    def terminated(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminated)  # so that `finally` stops the network
    environments = ("ours", "theirs") if args.environment == "both" else (args.environment,)
    lines, stalls = [], 0
    print(
        f"the published network on {defaults.LOOPBACK}:{args.port} through "
        f"{'our broker' if args.broker == 'ours' else 'swergio.Server'}"
        f"{', SWERGIO_NODELAY=1' if args.nodelay else ''}; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    try:
        for environment in environments:
            print(f"{environment} environment:", flush=True)
            network = RealNetwork(
                script, args.port, with_env=environment == "theirs", broker=args.broker, nodelay=args.nodelay
            )
            try:
                network.start()
                outcomes = play(args, environment)
            finally:
                network.stop()
            stalls += sum(o.stalled for o in outcomes)
            lines.append(summary(environment, outcomes, network.startup_seconds))
    except KeyboardInterrupt:
        print("bench.real: interrupted; the network is stopped", file=sys.stderr)
        return 130
    except (RuntimeError, OSError, subprocess.SubprocessError) as error:
        print(f"bench.real: {error}", file=sys.stderr)
        return 1
    print()
    for line in lines:
        print(line)
    return 1 if stalls else 0


if __name__ == "__main__":
    sys.exit(main())
