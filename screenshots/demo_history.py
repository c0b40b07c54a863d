"""A demo run history of real CartPole episodes with fixed clocks: screenshots and snapshot tests
show the same picture every time."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from cartpole_tui.env.history.store import RunStore

START = 1_764_000_000.0  # a fixed wall clock, so durations and rates are the same every time


def _episodes(env, rng, count: int, skill: float) -> list[int]:
    """Scores of ``count`` episodes of a noisy balancing policy: ``skill`` 0 is random, 1 balances."""
    scores = []
    for _ in range(count):
        obs, _ = env.reset(seed=int(rng.integers(1 << 30)))
        steps, done = 0, False
        while not done:
            balance = int(obs[2] + 0.5 * obs[3] > 0)
            action = balance if rng.random() < skill else int(rng.integers(2))
            obs, _, terminated, truncated, _ = env.step(action)
            steps += 1
            done = terminated or truncated
        scores.append(steps)
    return scores


def write_history(path: str, seed: int = 1) -> None:
    """Six runs whose policy gets better run by run, the last one deterministic."""
    env = gym.make("CartPole-v1")
    rng = np.random.default_rng(seed)
    clock = START
    with RunStore.open(path) as store:
        for number, (count, skill, deterministic) in enumerate(
            [
                (40, 0.0, False),
                (40, 0.5, False),
                (40, 0.8, False),
                (40, 0.9, False),
                (40, 0.97, False),
                (20, 1.0, True),
            ],
            start=1,
        ):
            uid = f"run-{number}"
            store.begin_run(
                uid,
                episodes=count,
                deterministic=deterministic,
                seed=seed,
                env_id="CartPole-v1",
                address="127.0.0.1:8080",
                started=clock,
            )
            scores = _episodes(env, rng, count, skill)
            for index, score in enumerate(scores, start=1):
                clock += score / 4000
                store.add_episode(uid, index, float(score), score, clock)
            store.end_run(uid, avg_score=float(np.mean(scores)), state="done", ended=clock)
            clock += 1.0
        store.flush()


async def history_shown(pilot) -> None:
    """Until all of the demo history's runs are in the table and the plot has drawn every episode."""
    app = pilot.app
    for _ in range(1000):
        main = app.main  # the auto-pilot may start before the main screen is composed
        ready = main is not None and main.is_mounted and main.plot.is_mounted
        if ready and len(app.history) == 220 and main.runs_table.row_count == 6 and main.plot.shows_latest_data:
            return
        await pilot.pause(0.01)
    raise AssertionError("the history did not load and draw within 10 s")


def fill_population(population, seed: int = 1, generations: int = 12, models: int = 20) -> None:
    """Demo generations for the population pane's picture: fitness climbing as a solo-episode
    genetic algorithm's does, the elite kept, diversity shrinking (made up, seeded)."""
    rng = np.random.default_rng(seed)
    for number in range(1, generations + 1):
        skill = number / generations
        fitness = np.clip(rng.gamma(2.0, 10 + 240 * skill**2, size=models), 8, 500).round()
        elite = int(np.argmax(fitness))
        population.add(number, fitness.tolist(), elite, float(6.0 * (1.1 - skill)))
