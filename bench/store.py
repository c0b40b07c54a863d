"""Benchmark the run store's write path, side by side.

1. Episodes per second through ``RunStore.add_episode`` until durable (flush), against
   a bare ``executemany`` of the same rows in one transaction on the same kind of file.
2. What recording costs a run, steps/s with against without, in alternating rounds:
   a bare gymnasium CartPole loop with a random agent calling ``add_episode`` after
   every episode; and the environment's own logic (``EnvironmentLogic``, no sockets)
   with the app's :class:`~cartpole_tui.env.history.recorder.StoreRecorder` attached. Random episodes are
   short (~22 steps), so this is the worst case per step. Then what users run: whole
   runs through the embedded network, with and without the store.

Run: ``python -m bench.store [--episodes N] [--rounds R] [--run-episodes E]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import statistics
import tempfile
import time

import gymnasium as gym
import numpy as np

from cartpole_tui.env.components.environment import EnvironmentLogic
from cartpole_tui.env.history.recorder import StoreRecorder
from cartpole_tui.env.history.schema import migrate
from cartpole_tui.env.history.store import RunStore
from cartpole_tui.env.wire import protocol

RUN_ARGS = dict(deterministic=False, seed=None, env_id="CartPole-v1", address="127.0.0.1:0")


def store_rate(path: str, n: int) -> tuple[float, float, float]:
    """(episodes/s until durable, caller µs per add_episode, episodes/s read back from the file)."""
    with RunStore.open(path) as store:
        store.begin_run("bench", episodes=n, started=time.time(), **RUN_ARGS)
        start = time.perf_counter()
        for index in range(n):
            store.add_episode("bench", index, 22.0, 22, 1.0e9 + index)
        queued = time.perf_counter()
        store.flush(timeout=600)
        done = time.perf_counter()
    with RunStore.open(path) as store:  # a past run now: its scores come from the file
        read_start = time.perf_counter()
        assert len(store.episode_scores("bench")) == n
        read = n / (time.perf_counter() - read_start)
    return n / (done - start), (queued - start) / n * 1e6, read


def raw_rate(path: str, n: int) -> float:
    """Episodes/s of one executemany transaction on a migrated WAL file: the floor SQLite sets."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        migrate(conn)
        conn.execute(
            "INSERT INTO runs (run_uid, number, episodes, deterministic, env_id, address, "
            "started, state) VALUES ('bench', 1, ?, 0, 'CartPole-v1', '', 0, 'running')",
            (n,),
        )
        start = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO episodes VALUES ('bench', ?, 22.0, 22, ?)", ((i, 1.0e9 + i) for i in range(n)))
        conn.execute("COMMIT")
        return n / (time.perf_counter() - start)


class Clock:
    """Wall time, this thread's CPU time and the other threads' (the store's writer) since creation."""

    def __init__(self) -> None:
        self.wall, self.cpu, self.main = time.perf_counter(), time.process_time(), time.thread_time()

    def read(self, steps: int) -> tuple[int, float, float, float]:
        main = time.thread_time() - self.main
        return steps, time.perf_counter() - self.wall, main, time.process_time() - self.cpu - main


def run_loop(env, episodes: int, store: RunStore | None, uid: str) -> tuple[int, float, float, float]:
    """:meth:`Clock.read` of ``episodes`` random-agent episodes, recording each one if ``store``."""
    if store is not None:
        store.begin_run(uid, episodes=episodes, started=time.time(), **RUN_ARGS)
    steps_total = 0
    clock = Clock()
    env.reset()
    for index in range(episodes):
        score, steps, done = 0.0, 0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            score, steps, done = score + reward, steps + 1, terminated or truncated
        env.reset()
        steps_total += steps
        if store is not None:
            store.add_episode(uid, index, score, steps, time.time())
    if store is not None:
        store.end_run(uid, avg_score=None, state="done", ended=time.time())
        store.flush(timeout=60)  # count the writer's work too
    return clock.read(steps_total)


def logic_loop(
    logic: EnvironmentLogic, episodes: int, store: RunStore | None, uid: str
) -> tuple[int, float, float, float]:
    """:meth:`Clock.read` of the environment's logic driven by random actions, recorded if ``store``."""
    logic.observers[:] = [StoreRecorder(store, "CartPole-v1", "127.0.0.1:0")] if store else []
    actions = np.random.default_rng(0).integers(2, size=600).tolist()
    clock = Clock()
    logic.start(protocol.start_run(episodes, False, run_id=uid or None))
    steps = 0
    while logic.run is not None:
        logic.step({"ACTION": [actions[steps % 600]], "ROOT_ID": logic.run.run_id})
        steps += 1
    if store is not None:
        store.flush(timeout=60)
    return clock.read(steps)


def side_by_side(rounds: int, loop, *args) -> dict[str, list]:
    """Rounds alternating without / with recording: each round's :meth:`Clock.read` per side."""
    sides: dict[str, list] = {"without": [], "with": []}
    with tempfile.TemporaryDirectory() as folder, RunStore.open(os.path.join(folder, "runs.sqlite3")) as store:
        loop(*args, None, "")  # warm-up
        for r in range(rounds):
            sides["without"].append(loop(*args, None, ""))
            sides["with"].append(loop(*args, store, f"round-{r}"))
    return sides


def report(name: str, rounds: int, episodes: int, sides: dict[str, list]) -> None:
    """Wall-clock ratio (noisy on a shared machine) and the CPU each side spent per step (steady)."""
    wall_ratios = [(w[0] / w[1]) / (p[0] / p[1]) for p, w in zip(sides["without"], sides["with"])]
    plain, recorded = ([steps / wall for steps, wall, *_ in sides[k]] for k in ("without", "with"))
    ratio = statistics.median(wall_ratios)
    print(
        f"{name}: {statistics.median(plain):,.0f} steps/s without recording, "
        f"{statistics.median(recorded):,.0f} with ({rounds} alternating rounds of {episodes} episodes)"
    )
    print(
        f"    wall: with/without = {ratio:.3f} (median of per-round ratios, min {min(wall_ratios):.3f}, "
        f"max {max(wall_ratios):.3f}) -> cost {100 * (1 - ratio):.1f} % (target <= 5 %)"
    )
    per_step = {k: [1e6 * sum(r[i] for r in v) / sum(r[0] for r in v) for i in (2, 3)] for k, v in sides.items()}
    (main_without, _), (main_with, writer) = per_step["without"], per_step["with"]
    added = main_with - main_without + writer
    print(
        f"    CPU per step: {main_without:.2f} µs without; with: {main_with:.2f} µs in the loop's thread "
        f"+ {writer:.2f} µs in the writer -> cost {100 * added / main_without:.1f} % of the loop's CPU"
    )


def network_side_by_side(rounds: int, episodes: int) -> tuple[list[float], list[float]]:
    """steps/s of runs through the embedded network (broker + random agent in a child process,
    environment here), alternating without and with the run store recording every episode."""
    from cartpole_tui.env.runtime.session import Session, SessionOptions

    options = SessionOptions(agent="random", seed=0)
    rates: tuple[list[float], list[float]] = ([], [])
    with tempfile.TemporaryDirectory() as folder, RunStore.open(os.path.join(folder, "runs.sqlite3")) as store:
        sessions = (Session(options).open(), Session(options, store=store).open())
        try:
            for session in sessions:  # warm-up
                session.control.run(episodes // 10)
            for _ in range(rounds):
                for rate, session in zip(rates, sessions):
                    started = time.perf_counter()
                    result = session.control.run(episodes)
                    rate.append(sum(result.scores) / (time.perf_counter() - started))
        finally:
            for session in sessions:
                session.close()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=200_000, help="episodes for the write rate")
    parser.add_argument("--rounds", type=int, default=15, help="alternating with/without rounds")
    parser.add_argument("--run-episodes", type=int, default=1_000, help="episodes per round")
    parser.add_argument("--network-rounds", type=int, default=7, help="alternating rounds through the network")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other work here makes wall ratios noisy)")

    with tempfile.TemporaryDirectory() as folder:
        rate, per_call, read = store_rate(os.path.join(folder, "store.sqlite3"), args.episodes)
        floor = raw_rate(os.path.join(folder, "raw.sqlite3"), args.episodes)
    print(
        f"write path: {rate:,.0f} episodes/s durable through RunStore ({per_call:.1f} µs per add_episode in the caller)"
    )
    print(f"    bare executemany in one transaction: {floor:,.0f} episodes/s -> store/bare = {rate / floor:.2f}")
    print(f"read back: {read:,.0f} episodes/s (episode_scores of a past run of {args.episodes:,} episodes)")

    env = gym.make("CartPole-v1")
    env.action_space.seed(0)
    env.reset(seed=0)
    report(
        "gymnasium loop", args.rounds, args.run_episodes, side_by_side(args.rounds, run_loop, env, args.run_episodes)
    )
    env.close()
    report(
        "EnvironmentLogic + StoreRecorder",
        args.rounds,
        args.run_episodes,
        side_by_side(args.rounds, logic_loop, EnvironmentLogic("CartPole-v1", seed=0), args.run_episodes),
    )
    without, recorded = network_side_by_side(args.network_rounds, args.run_episodes // 5)
    ratio = statistics.median(w / p for p, w in zip(without, recorded))
    print(
        f"a run through the embedded network (broker + random agent): {statistics.median(without):,.0f} steps/s "
        f"without recording, {statistics.median(recorded):,.0f} with ({args.network_rounds} alternating rounds "
        f"of {args.run_episodes // 5} episodes)"
    )
    print(
        f"    with/without = {ratio:.3f} (median of per-round ratios) -> cost {100 * (1 - ratio):.1f} % (target <= 5 %)"
    )


if __name__ == "__main__":
    main()
