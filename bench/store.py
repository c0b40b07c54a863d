"""Benchmark the run store's write path, side by side.

1. Episodes per second through ``RunStore.add_episode`` until durable (flush), against
   a bare ``executemany`` of the same rows in one transaction on the same kind of file.
2. What recording costs a run: a gymnasium CartPole loop with a random agent, steps/s
   with ``add_episode`` after every episode against without, in alternating rounds.
   Random episodes are short (~22 steps), so this is the worst case per step.

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

from env.schema import migrate
from env.store import RunStore

RUN_ARGS = dict(deterministic=False, seed=None, env_id="CartPole-v1", address="127.0.0.1:0")


def store_rate(path: str, n: int) -> tuple[float, float]:
    """(episodes/s until durable, caller µs per add_episode) through the store."""
    with RunStore.open(path) as store:
        store.begin_run("bench", episodes=n, started=time.time(), **RUN_ARGS)
        start = time.perf_counter()
        for index in range(n):
            store.add_episode("bench", index, 22.0, 22, 1.0e9 + index)
        queued = time.perf_counter()
        store.flush(timeout=600)
        done = time.perf_counter()
    return n / (done - start), (queued - start) / n * 1e6


def raw_rate(path: str, n: int) -> float:
    """Episodes/s of one executemany transaction on a migrated WAL file: the floor SQLite sets."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        migrate(conn)
        conn.execute("INSERT INTO runs (run_uid, number, episodes, deterministic, env_id, address, "
                     "started, state) VALUES ('bench', 1, ?, 0, 'CartPole-v1', '', 0, 'running')", (n,))
        start = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO episodes VALUES ('bench', ?, 22.0, 22, ?)",
                         ((i, 1.0e9 + i) for i in range(n)))
        conn.execute("COMMIT")
        return n / (time.perf_counter() - start)


def run_loop(env, episodes: int, store: RunStore | None, uid: str) -> float:
    """Steps/s of ``episodes`` random-agent episodes, recording each one if ``store`` is given."""
    if store is not None:
        store.begin_run(uid, episodes=episodes, started=time.time(), **RUN_ARGS)
    steps_total = 0
    start = time.perf_counter()
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
    return steps_total / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=200_000, help="episodes for the write rate")
    parser.add_argument("--rounds", type=int, default=7, help="alternating with/without rounds")
    parser.add_argument("--run-episodes", type=int, default=2_000, help="episodes per round")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        rate, per_call = store_rate(os.path.join(folder, "store.sqlite3"), args.episodes)
        floor = raw_rate(os.path.join(folder, "raw.sqlite3"), args.episodes)
        print(f"write path: {rate:,.0f} episodes/s durable through RunStore "
              f"({per_call:.1f} µs per add_episode in the caller)")
        print(f"            {floor:,.0f} episodes/s bare executemany, one transaction "
              f"-> store/bare = {rate / floor:.2f}")

        env = gym.make("CartPole-v1")
        env.action_space.seed(0)
        env.reset(seed=0)
        ratios, plain, recorded = [], [], []
        with RunStore.open(os.path.join(folder, "runs.sqlite3")) as store:
            run_loop(env, args.run_episodes // 4, None, "warm-up")
            for r in range(args.rounds):
                without = run_loop(env, args.run_episodes, None, "")
                with_store = run_loop(env, args.run_episodes, store, f"round-{r}")
                plain.append(without)
                recorded.append(with_store)
                ratios.append(with_store / without)
        env.close()
    ratio = statistics.median(ratios)
    print(f"run cost:   {statistics.median(plain):,.0f} steps/s without recording, "
          f"{statistics.median(recorded):,.0f} with (medians of {args.rounds} alternating rounds of "
          f"{args.run_episodes} random-agent episodes)")
    print(f"            with/without = {ratio:.3f} (median of per-round ratios, "
          f"min {min(ratios):.3f}, max {max(ratios):.3f}) -> cost {100 * (1 - ratio):.1f} % "
          f"(target <= 5 %)")


if __name__ == "__main__":
    main()
