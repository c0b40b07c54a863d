"""The learning schedule replayed in-process: rounds and batch steps to solve, seed by seed.

    python -m bench.learn [--seeds 1 ... 12] [--verbose]

No sockets and no clock: the schedule's runs (train, evaluate, the 100-episode check) are
played by the real parts — the environment's :class:`VectorLogic`, the swarm's
:class:`Population`, :class:`BatchChooser` and the evolution's genetic step, seeded as
``run --schedule --seed S`` seeds them — so a seed gives the same rounds and scores as the
real schedule, in a few seconds of CPU. A schedule's wall time is mostly its batch steps
one after another (each waits for the last: a round costs its longest training episode plus
its longest evaluation), so "batch steps" is the figure to lower when changing the
algorithm. An evaluation is stopped at its first episode below the target and the check once
hopeless, as the schedule stops them (at the step whose results make it so; the real one sees
that a message later).
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np

from cartpole_tui.env import defaults
from cartpole_tui.env.components.environment import EnvironmentLogic
from cartpole_tui.env.components.vector_env import VectorLogic
from cartpole_tui.env.events import EnvironmentObserver, EpisodeFinished
from cartpole_tui.env.swarm import genetic
from cartpole_tui.env.swarm.aggregation import AggregationLogic
from cartpole_tui.env.swarm.batching import BatchChooser
from cartpole_tui.env.swarm.policy import OBS_SIZE, Population, biases
from cartpole_tui.env.wire import batch, protocol


class Scores(EnvironmentObserver):
    def __init__(self) -> None:
        self.by_number: dict[int, float] = {}

    def on_episode(self, event: EpisodeFinished) -> None:
        self.by_number[event.episode] = event.score


class Replay:
    """A swarm of ``models`` and an environment, seeded as the embedded network seeds them."""

    def __init__(self, seed: int, models: int = defaults.MODELS):
        population_seed, aggregation_seed, evolution_seed = (
            int(s) for s in np.random.SeedSequence(seed).generate_state(3)
        )
        self.population = Population(models, population_seed)
        self.ids = [f"model-{k}" for k in range(models)]
        self.logic = AggregationLogic(aggregation_seed)
        self.chooser = BatchChooser(self.logic)
        self.rng = np.random.default_rng(evolution_seed)
        self.environment = VectorLogic(EnvironmentLogic())
        self.remembered = genetic.Remembered()
        self.batch_steps = 0
        self.steps = 0  # environment steps, every instance's

    def run(
        self, episodes: int, deterministic: bool, seed: int, target: float | None = None, every: bool = False
    ) -> list[float]:
        """The run's scores in episode order; with ``target``, stopped (and its unfinished episodes
        left out) once its mean cannot reach it, as the schedule's check is, or (``every``) once an
        episode scored below it, as an evaluation is."""
        n = min(episodes, defaults.PARALLEL)
        scores = Scores()
        self.environment.base.observers = [scores]
        _, payload = self.environment.start(protocol.start_run(episodes, deterministic, seed=seed), n)
        while payload is not None and self.environment.base.run is not None:
            self.chooser.observe(payload)
            if target is not None and _hopeless(list(scores.by_number.values()), episodes, target, every):
                break
            instances, observations = batch.parse_observation(payload, OBS_SIZE)
            chosen = self.chooser.choose(self.ids, self.population.batch_logits(observations), instances, deterministic)
            answer = {"ROOT_ID": payload["ROOT_ID"], **batch.actions(n, payload["INSTANCES"], chosen)}
            _, payload = self.environment.step(answer)
            self.batch_steps += 1
            self.steps += len(instances)
        else:  # not after a stop: those results were seen
            if payload is not None:
                self.chooser.observe(payload)  # the run's last results
        return [scores.by_number[k] for k in sorted(scores.by_number)]

    def evolve(self) -> None:
        contribution = self.logic.contribution()
        fitness = self.remembered.average(self.population.weights, [contribution.get(i, 0.0) for i in self.ids])
        offspring = genetic.next_generation(self.population.weights.copy(), fitness, genetic.SWARM, self.rng, biases())
        self.remembered.keep(offspring)
        self.population.weights[...] = offspring


def _hopeless(scores: list[float], episodes: int, target: float, every: bool) -> bool:
    """The schedule's rules (:class:`~cartpole_tui.env.runtime.schedule._HopelessConfirmation`)."""
    if not scores or len(scores) >= episodes:
        return False
    if every:
        return min(scores) < target
    bound = max(max(scores), defaults.EPISODE_MAX_SCORE)
    return sum(scores) + (episodes - len(scores)) * bound < target * episodes


def schedule(seed: int, verbose: bool = False) -> tuple[int | None, Replay]:
    """(rounds to solve or None, the replay: its batch and environment steps) of the default
    schedule for ``seed``."""
    replay, seeds = Replay(seed), iter(range(seed, seed + 100_000))
    target = defaults.SCHEDULE_TARGET
    for number in range(1, defaults.SCHEDULE_ROUNDS + 1):
        trained = replay.run(defaults.SCHEDULE_TRAIN, False, next(seeds))
        evaluated = replay.run(defaults.SCHEDULE_EVALUATE, True, next(seeds), target, every=True)
        line = f"  round {number:>2}: train avg {np.mean(trained):6.1f} (best {max(trained):3.0f})"
        line += f"  eval avg {np.mean(evaluated):6.1f} over {len(evaluated)}"
        if len(evaluated) == defaults.SCHEDULE_EVALUATE and min(evaluated) >= target:
            played = replay.run(defaults.SCHEDULE_CONFIRM, True, next(seeds), target)
            checked = float(np.mean(played)) if played else 0.0
            line += f"  check {checked:.1f} over {len(played)}"
            if len(played) == defaults.SCHEDULE_CONFIRM and checked >= target:
                if verbose:
                    print(line)
                return number, replay
        replay.evolve()
        if verbose:
            print(line)
    return None, replay


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.learn", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(1, 13)))
    parser.add_argument("--verbose", action="store_true", help="each round's averages")
    args = parser.parse_args(argv)
    batch_steps, steps = [], []
    for seed in args.seeds:
        rounds, replay = schedule(seed, args.verbose)
        batch_steps.append(replay.batch_steps)
        steps.append(replay.steps)
        print(
            f"seed {seed:>2}: {'solved in ' + str(rounds) + ' rounds' if rounds else 'NOT solved'}, "
            f"{replay.batch_steps} batch steps, {replay.steps} environment steps",
            flush=True,
        )
    print(
        f"batch steps: median {statistics.median(batch_steps):.0f}, max {max(batch_steps)}; "
        f"environment steps: median {statistics.median(steps):.0f}, max {max(steps)}"
    )


if __name__ == "__main__":
    main()
