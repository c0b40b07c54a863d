"""One generation of a genetic algorithm over (K, n) flat weight vectors, vectorised.

Swarm layer, pure numpy: :mod:`.evolution` calls it.

The published (deap) evolution's operators — tournament selection on fitness,
two-point crossover of neighbouring pairs, Gaussian mutation — plus truncation
selection (parents drawn from the fittest fraction) and elitism (the fittest row
kept unchanged). ``TOURNAMENT`` is those operators with elitism (the probabilities
are ours; the published ones make mutation rare). ``SWARM`` is what the built-in
swarm uses: every child is the fittest model + N(0, 0.1²) on its weights (its biases stay
0: :func:`.policy.biases`), the fittest kept, and :class:`Remembered` averages the fitness
of a model kept unchanged over its generations.

Measured with ``python -m bench.learn --seeds 1 … 10`` (the schedule replayed in-process:
each model plays one greedy episode a round; rounds to a confirmed deterministic
100-episode mean ≥ 475), before → after: rounds 9, 9, 10, 15, 22, 20, 11, 11, 23, 15 →
17, 19, 5, 5, 4, 14, 25, 7, 6, 5; batch steps median 7.5k → 4.0k (worst 15.3k → 14.5k),
environment steps median 82k → 63k. "Before" is the top 20 % as parents, one-episode
fitness, all 20 models voting; the vote of the 3 fittest (aggregation) and the averaged
fitness took the median to 5.3k, one parent to 4.0k (seeds 1–20: 6.5k → 4.1k). Tried on
the way and not better (with the settings of the time): 2 to 5 training episodes per model,
sigma 0.03–0.15, sigma shrinking with the elite's score or spread over the children, the mean
of the top 5 as the parent (CEM), the top 2–4 kept unchanged, discounting one-episode scores.
Tried again on 2026-12-03 (seeds 1–10, batch steps): the vote of the elite only — a row known
without the last training, kept in the population file for nothing — median 5.4k and seed 7
unsolved in 40 rounds (the 1–3 elites kept unchanged and voting, 2–3 parents: 5.5k–6.6k; a
solver found in a training votes only a round later), so the 3 fittest of the last training
vote and the swarm keeps that vote in the file (:mod:`.saved`); the 2 fittest voting 3.9k but
worst 26k; the children's sigma mixed (0.05/0.1/0.2 or 0.03/0.1/0.3) 7.7k–9.9k, one unsolved;
antithetic children (parent ± the same noise) 6.6k; two parents 4.2k, worst 8.9k, but on seeds
11–20 4.8k, worst 14.7k, where one parent took 4.1k, worst 6.7k.
Whole ``run --schedule`` processes (``bench.solve``'s, alternating with the tree before, load
3–6; an evolution's weights in base64, not JSON, too): median 11.4 s → 5.4 s, worst 20.1 s →
17.6 s; seeds 1, 2, 6, 7 still take 14–25 rounds
(one parent on a plateau: children far worse than it for rounds, then a 500 that does not
hold in the vote), which is what misses ≤ 6 s a seed.
``TOURNAMENT`` needed 23k–124k CartPole steps on seeds 1–4 (older measurement).

2026-12-03, learn4 (``python -m bench.learn --seeds 1 … 40``, batch steps; seeds 1–10 | 11–20 |
1–40 as median/worst): before 4.0k/14.5k | 4.1k/6.7k | 5.2k/19.4k. Models without biases (0 at the
start, never mutated: odd policies, CartPole's mirror symmetry; a random one no longer pushes one
way whatever the pole does, and an untrained vote sometimes solves) 3.0k/18.5k | 2.7k/6.0k | 2.6k/18.5k;
with the evaluation stopped at its first episode below the target (:mod:`cartpole_tui.env.runtime.schedule`)
2.5k/12.3k | 2.3k/4.6k | 2.4k/12.3k, the tail now near-solvers on a plateau (one-episode fitness
ties at 500); with 100 training episodes a round (5 a model, at once: ``SCHEDULE_TRAIN``)
**2.2k/4.4k | 2.7k/3.5k | 2.3k/5.7k** (rounds 2, 2, 2, 3, 2, 2, 1, 6, 3, 2 on seeds 1–10), which
is what the schedule of the embedded swarm does. Tried on the way (seeds 1–10 unless said): the
evaluation stop alone 3.3k/10.5k (1–40: 4.3k/13.4k); 100 training episodes alone 4.4k/17.1k;
biases 0 at the start but mutated 4.3k/7.6k (with the stop 4.8k/9.3k); 50 or 100 models of one
training episode each (with the stop) 3.4k/10.2k, 3.2k and one unsolved; a (1+λ)-ES with a
1/5th-success σ (×e^0.8 when a child became the parent, else ×e^−0.2) 9.4k, 3 unsolved. Without
biases, with the stop, seeds 1–40: σ 0.05 2.8k, 3 unsolved; σ 0.2 2.8k/10.1k; 40 or 60 training
episodes 2.3k/9.4k, 2.4k/5.9k; with 100, the 1, 2 or 5 fittest voting (``VOTERS``, 3 kept)
2.2k/5.1k, 2.2k/4.7k, 2.8k/6.0k. Not tried: an OpenAI-style ES (a fitness-weighted mean of
antithetic perturbations): what is left is the endgame, where the fitness is 500 and ties.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class GeneticSettings:
    """Operator probabilities and sizes of one generation."""

    selection: str = "tournament"  # or "truncation"
    tournament_size: int = 3
    parents_fraction: float = 0.2  # truncation: parents are this fraction of the fittest
    crossover_prob: float = 0.5  # per pair of offspring
    mutation_prob: float = 1.0  # per offspring
    gene_mutation_prob: float = 1.0  # per weight of a mutated offspring
    sigma: float = 0.1  # standard deviation of the Gaussian noise
    elitism: bool = True


def tournament(fitness: np.ndarray, n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``n`` winners, each the fittest of ``size`` drawn with replacement."""
    entrants = rng.integers(0, len(fitness), size=(n, size))
    return entrants[np.arange(n), np.argmax(fitness[entrants], axis=1)]


def truncation(fitness: np.ndarray, n: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``n`` parents drawn uniformly from the fittest ``fraction`` (at least one)."""
    parents = np.argsort(-fitness, kind="stable")[: max(1, round(fraction * len(fitness)))]
    return rng.choice(parents, size=n)


def two_point_crossover(pop: np.ndarray, prob: float, rng: np.random.Generator) -> np.ndarray:
    """Swap a random slice between rows 0↔1, 2↔3, … (each pair with probability ``prob``)."""
    out = pop.copy()
    pairs, n = len(pop) // 2, pop.shape[1]
    if pairs == 0 or n < 2:
        return out
    # deap's cxTwoPoint: points in 1..n-1, the second moved up when they collide.
    a = rng.integers(1, n, size=pairs)
    b = rng.integers(1, n - 1, size=pairs)
    b = np.where(b >= a, b + 1, b)
    low, high = np.minimum(a, b), np.maximum(a, b)
    index = np.arange(n)
    swap = (index >= low[:, None]) & (index < high[:, None]) & (rng.random(pairs) < prob)[:, None]
    first, second = pop[0 : 2 * pairs : 2], pop[1 : 2 * pairs : 2]
    out[0 : 2 * pairs : 2] = np.where(swap, second, first)
    out[1 : 2 * pairs : 2] = np.where(swap, first, second)
    return out


def gaussian_mutation(
    pop: np.ndarray, settings: GeneticSettings, rng: np.random.Generator, kept: np.ndarray | None = None
) -> np.ndarray:
    """Add N(0, sigma²) to each weight with ``gene_mutation_prob`` in rows picked with ``mutation_prob``,
    except the weights ``kept`` (a bool mask over a row) marks."""
    rows = rng.random(len(pop)) < settings.mutation_prob
    genes = rng.random(pop.shape) < settings.gene_mutation_prob
    if kept is not None:
        genes &= ~kept
    return pop + (rows[:, None] & genes) * rng.normal(0.0, settings.sigma, size=pop.shape)


def next_generation(
    pop: np.ndarray,
    fitness: npt.ArrayLike,
    settings: GeneticSettings,
    rng: np.random.Generator,
    kept: np.ndarray | None = None,
) -> np.ndarray:
    """The next (K, n) population; same shape, row 0 the elite when ``settings.elitism``. No mutation
    changes the weights ``kept`` marks (our swarm's: its biases, :func:`.policy.biases`)."""
    fitness = np.asarray(fitness, dtype=np.float64)
    if pop.ndim != 2 or len(fitness) != len(pop):
        raise ValueError(f"need one fitness per row: {len(fitness)} for a population of shape {pop.shape}")
    if settings.selection == "truncation":
        chosen = pop[truncation(fitness, len(pop), settings.parents_fraction, rng)]
    elif settings.selection == "tournament":
        chosen = pop[tournament(fitness, len(pop), settings.tournament_size, rng)]
    else:
        raise ValueError(f"unknown selection {settings.selection!r}")
    offspring = gaussian_mutation(two_point_crossover(chosen, settings.crossover_prob, rng), settings, rng, kept)
    if settings.elitism:
        offspring[0] = pop[int(np.argmax(fitness))]
    return offspring


class Remembered:
    """Fitness averaged over every generation a row came back unchanged in (the elite, kept as it
    was, is measured again each generation): one lucky episode of a new row no longer outranks a
    row's record, nor does one unlucky episode throw a solver away."""

    def __init__(self) -> None:
        self._records: dict[bytes, tuple[float, int]] = {}  # a row's key → (fitness summed, times)

    @staticmethod
    def _key(row: np.ndarray) -> bytes:
        # float32: a published (torch) model gives back what it was SET rounded to float32
        return row.astype(np.float32).tobytes()

    def average(self, pop: np.ndarray, fitness: npt.ArrayLike) -> np.ndarray:
        """Each row's fitness averaged with its record, which it joins."""
        averaged = []
        for row, value in zip(pop, np.asarray(fitness, dtype=np.float64).tolist()):
            key = self._key(row)
            total, times = self._records.get(key, (0.0, 0))
            self._records[key] = (total + value, times + 1)
            averaged.append((total + value) / (times + 1))
        return np.asarray(averaged)

    def keep(self, pop: np.ndarray) -> None:
        """Forget the records of rows not in ``pop`` (the next generation)."""
        rows = {self._key(row) for row in pop}
        self._records = {row: record for row, record in self._records.items() if row in rows}


def diversity(pop: np.ndarray) -> float:
    """Mean Euclidean distance over every pair of rows (0 for fewer than two)."""
    k = len(pop)
    if k < 2:
        return 0.0
    squares = np.einsum("ij,ij->i", pop, pop)
    distances = np.sqrt(np.maximum(squares[:, None] + squares[None, :] - 2 * pop @ pop.T, 0.0))
    return float(distances[np.triu_indices(k, 1)].mean())


TOURNAMENT = GeneticSettings()
# one parent of 20 (the fittest, its fitness averaged over generations by Remembered): the
# fresh-mutant noise of more parents cost rounds (module docstring)
SWARM = GeneticSettings(selection="truncation", parents_fraction=0.05, crossover_prob=0.0)
