"""The built-in 20-model swarm through our broker: start, memory, steps/s, time to solve.

    python -m bench.swarm [--models K] [--seeds 1 ...] [--repeats R] [--parallel N ...] [--quiet] [--no-learning]

Everything runs as ``cartpole-tui run`` runs it: the embedded network (broker + agents)
in a child process, environment and control client in this one. Side by side, in
alternation: the 20-model swarm and the random agent (one message a step instead of
twenty-one) as the floor of this transport, and the swarm with vectorised runs of each
``--parallel N`` (three messages a batch step of N instances; N = 1 is the unvectorised
swarm); the largest N also with every episode recorded (an SQLite file, each step's
episodes committed before the next observation, as ``cartpole-tui run`` records), and
gymnasium's own ``CartPoleVectorEnv`` at each N with random actions as the physics' ceiling.
The published RLGym network (20 torch processes, deap) measured 25–32 steps/s,
27 s to start and 6.4 GB on this machine;
it cannot run here (no torch), so it is quoted as a reference, not re-measured.
Learning: the default schedule (env.runtime.schedule.ScheduleSettings()) from a fresh network per seed,
with the learning curve (phase, round, episode, score, rolling mean, wall time).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections import deque

import numpy as np
from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv

from cartpole_tui.env import defaults
from cartpole_tui.env.events import EpisodeFinished
from cartpole_tui.env.history.store import RunStore
from cartpole_tui.env.runtime.schedule import ScheduleSettings, run_schedule
from cartpole_tui.env.runtime.session import Session, SessionOptions

PUBLISHED_STEPS_PER_S = (25, 32)  # measured on this machine with the published network (reference)
THROUGHPUT_EPISODES = 1000  # a vectorised run of 300 took ~0.2 s: too short to time on a shared machine
EPISODES_PER_INSTANCE = 20  # a vectorised run of N plays 20 N episodes (at least THROUGHPUT_EPISODES)
PHYSICS_SECONDS = 1.0  # gymnasium's CartPoleVectorEnv is timed this long at each N


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def open_session(
    agent: str,
    models: int,
    seed: int | None,
    on_event=None,
    parallel: int = defaults.PARALLEL,
    store: RunStore | None = None,
) -> tuple[Session, float]:
    started = time.perf_counter()
    options = SessionOptions(agent=agent, models=models, seed=seed, parallel=parallel)
    session = Session(options, on_event=on_event, store=store).open()
    return session, time.perf_counter() - started


def throughput(agent: str, models: int, seed: int, parallel: int, recorded: bool = False) -> dict:
    """Start, RSS and steps/s of stochastic runs (CartPole: one reward a step, so steps = total score);
    ``recorded``: every episode written to an SQLite file, durably, as ``cartpole-tui run`` does."""
    episodes = THROUGHPUT_EPISODES if parallel == 1 else max(THROUGHPUT_EPISODES, EPISODES_PER_INSTANCE * parallel)
    with tempfile.TemporaryDirectory() as folder:
        store = RunStore.open(os.path.join(folder, "runs.sqlite3")) if recorded else None
        session, start_s = open_session(agent, models, seed, parallel=parallel, store=store)
        try:
            t0 = time.perf_counter()
            result = session.control.run(episodes, False, seed=seed)
            seconds = time.perf_counter() - t0
            steps = int(sum(result.scores))
            return {
                "start_s": start_s,
                "steps": steps,
                "steps_per_s": steps / seconds,
                "network_rss_mb": rss_mb(session.network.pid),
                "own_rss_mb": rss_mb(os.getpid()),
            }
        finally:
            session.close()
            if store is not None:
                store.close()


def physics(n: int, seed: int) -> float:
    """Steps/s of gymnasium's CartPoleVectorEnv alone at ``n`` instances, random actions (autoreset)."""
    env = CartPoleVectorEnv(num_envs=n)
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    actions = rng.integers(0, 2, size=(64, n))
    steps, started = 0, time.perf_counter()
    while time.perf_counter() - started < PHYSICS_SECONDS:
        for row in actions:
            env.step(row)
        steps += 64 * n
    seconds = time.perf_counter() - started
    env.close()
    return steps / seconds


def learn(models: int, seed: int, quiet: bool, parallel: int) -> dict:
    phase = {"name": "", "round": 0}
    recent = {"train": deque(maxlen=100), "eval": deque(maxlen=100)}
    steps = {"train": 0, "eval": 0}
    started = time.perf_counter()

    def on_phase(name: str, number: int) -> None:
        phase.update(name=name, round=number)
        if name in ("confirm", "final"):
            recent["eval"].clear()  # the confirmation's rolling mean is its own 100-episode mean

    def on_episode(event: EpisodeFinished) -> None:
        kind = "train" if phase["name"] == "train" else "eval"
        recent[kind].append(event.score)
        steps[kind] += event.steps
        if not quiet:
            print(
                f"  {phase['name']:<7} round {phase['round']:>2} episode {event.episode:>3} "
                f"score {event.score:5.0f} rolling {statistics.fmean(recent[kind]):6.1f} "
                f"t {time.perf_counter() - started:6.2f}s",
                flush=True,
            )

    session, _ = open_session("swarm", models, seed, parallel=parallel)
    try:
        result = run_schedule(session.control, seed=seed, on_phase=on_phase, on_episode=on_episode)
    finally:
        session.close()
    for r in result.rounds:
        confirm = f"  confirm {r.confirm_avg:.1f}" if r.confirm_avg is not None else ""
        print(
            f"  round {r.round:>2}: train avg {r.train_avg:6.1f}  eval avg {r.eval_avg:6.1f}  "
            f"training {r.train_seconds:5.1f}s  wall {r.wall_seconds:5.1f}s{confirm}"
        )
    eval_steps_per_s = steps["eval"] / max(1e-9, result.wall_seconds - result.rounds[-1].train_seconds)
    return {
        "seed": seed,
        "solved": result.solved,
        "final_eval_avg": result.final_eval_avg,
        "rounds": len(result.rounds),
        "train_seconds": result.rounds[-1].train_seconds,
        "wall_seconds": result.wall_seconds,
        "train_steps": steps["train"],
        "eval_steps": steps["eval"],
        "eval_steps_per_s": eval_steps_per_s,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.swarm", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", type=int, default=defaults.MODELS)
    parser.add_argument("--seeds", type=int, nargs="*", default=[1])
    parser.add_argument("--repeats", type=int, default=3, help="alternations of swarm and random agent")
    parser.add_argument("--quiet", action="store_true", help="no per-episode learning curve")
    parser.add_argument("--no-learning", action="store_true", help="throughput only: no schedules")
    parser.add_argument(
        "--parallel",
        type=int,
        nargs="*",
        default=[defaults.PARALLEL],
        help=f"instances of the vectorised runs compared with N = 1 (default {defaults.PARALLEL}); "
        "the schedule runs with the first",
    )
    args = parser.parse_args(argv)
    if any(n < 1 for n in args.parallel) or not args.parallel:
        parser.error("--parallel takes one or more whole numbers >= 1")

    kinds = [("random", 1), ("swarm", 1)] + [("swarm", n) for n in args.parallel if n > 1]
    if max(args.parallel) > 1:
        kinds.append(("recorded", max(args.parallel)))
    print(
        f"throughput: stochastic runs of {THROUGHPUT_EPISODES} episodes (N=1) or {EPISODES_PER_INSTANCE} an "
        f"instance, alternating {args.repeats}x: " + ", ".join(f"{agent} N={n}" for agent, n in kinds)
    )
    runs: dict[tuple[str, int], list[dict]] = {kind: [] for kind in kinds}
    anchors: dict[int, list[float]] = {n: [] for n in args.parallel if n > 1}
    for repeat in range(args.repeats):
        for agent, n in kinds:
            figures = throughput(
                "swarm" if agent == "recorded" else agent,
                args.models,
                seed=repeat + 1,
                parallel=n,
                recorded=agent == "recorded",
            )
            runs[agent, n].append(figures)
            print(
                f"  {agent:<8} N={n:<4} start {figures['start_s']:.2f}s  {figures['steps']:>7} steps  "
                f"{figures['steps_per_s']:7.0f} steps/s  network RSS {figures['network_rss_mb']:.0f} MB  "
                f"this process {figures['own_rss_mb']:.0f} MB",
                flush=True,
            )
        for n in anchors:
            anchors[n].append(physics(n, seed=repeat + 1))
            print(f"  gymnasium CartPoleVectorEnv N={n:<4} {anchors[n][-1]:10.0f} steps/s (random actions)", flush=True)
    rate = {kind: statistics.median(f["steps_per_s"] for f in figures) for kind, figures in runs.items()}
    swarm_rate, random_rate = rate["swarm", 1], rate["random", 1]
    low, high = PUBLISHED_STEPS_PER_S
    print(
        f"median: swarm N=1 {swarm_rate:.0f} steps/s, random agent {random_rate:.0f} steps/s "
        f"(swarm/random {swarm_rate / random_rate:.2f}); published network {low}-{high} steps/s (reference, "
        f"not run here): {swarm_rate / high:.0f}-{swarm_rate / low:.0f}x"
    )
    for agent, n in kinds[2:]:
        ratio = rate[agent, n] / swarm_rate
        physics_rate = statistics.median(anchors[n])
        print(
            f"vectorised: {agent} N={n} {rate[agent, n]:.0f} steps/s = {ratio:.1f}x the swarm N=1, "
            f"{100 * rate[agent, n] / physics_rate:.2f} % of gymnasium's CartPoleVectorEnv ({physics_rate:.0f} steps/s)"
        )
    print(
        f"start (network up, environment and control joined): swarm max "
        f"{max(f['start_s'] for f in runs['swarm', 1]):.2f}s; network RSS max "
        f"{max(f['network_rss_mb'] for kind, fs in runs.items() if kind[0] == 'swarm' for f in fs):.0f} MB"
    )

    if args.no_learning:
        return
    print(f"learning: default schedule {ScheduleSettings()}")
    results = []
    for seed in args.seeds:
        print(f"seed {seed}:")
        results.append(learn(args.models, seed, args.quiet, args.parallel[0]))
        r = results[-1]
        print(
            f"  -> solved {r['solved']}  final eval avg {r['final_eval_avg']:.1f}  rounds {r['rounds']}  "
            f"training {r['train_seconds']:.1f}s ({r['train_steps']} steps)  wall {r['wall_seconds']:.1f}s  "
            f"evaluation {r['eval_steps']} steps at {r['eval_steps_per_s']:.0f} steps/s",
            flush=True,
        )
    if len(results) > 1:
        walls = sorted(r["wall_seconds"] for r in results)
        print(
            f"over {len(results)} seeds: solved {sum(r['solved'] for r in results)}, "
            f"wall median {statistics.median(walls):.1f}s max {walls[-1]:.1f}s"
        )


if __name__ == "__main__":
    main()
