"""The population under evolution, generation by generation: what the population pane shows.

Filled from EVO_DONE reports (our evolution's additive GENERATION, FITNESS, ELITE and
DIVERSITY); testable without Textual.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from cartpole_tui.env import defaults


@dataclass(frozen=True)
class Generation:
    """One evaluated generation: each model's fitness (model order), the elite's row, the spread."""

    number: int
    fitness: np.ndarray
    elite: int | None
    diversity: float | None

    @property
    def best(self) -> float:
        return float(self.fitness.max())

    @property
    def mean(self) -> float:
        return float(self.fitness.mean())

    @property
    def worst(self) -> float:
        return float(self.fitness.min())


class PopulationHistory:
    """The latest ``keep`` generations; ``evolutions`` counts every EVO_DONE, with data or not."""

    def __init__(self, keep: int = defaults.POPULATION_GENERATIONS, *, joined: bool = False):
        self.joined = joined  # the network was there before this control room: its earlier evolutions are unseen
        self.generations: deque[Generation] = deque(maxlen=keep)
        self.evolutions = 0
        self.version = 0
        self.restored: tuple[int, int] | None = None  # (generation, models) the swarm started from a file

    def restore(self, generation: int, models: int) -> None:
        """The swarm started from a saved population (no fitness known until it evolves)."""
        self.restored = (generation, models)
        self.version += 1

    def add(self, number: int | None, fitness, elite: int | None, diversity: float | None) -> None:
        self.evolutions += 1
        self.version += 1
        if number is None or not len(fitness):
            return  # an evolution that reports no fitness (the published one): counted, not shown
        values = np.asarray(fitness, dtype=np.float64)
        self.generations.append(Generation(number, values, elite, diversity))

    @property
    def latest(self) -> Generation | None:
        return self.generations[-1] if self.generations else None

    def grid(self) -> np.ndarray:
        """(models, generations) fitness, NaN where a generation had fewer models."""
        if not self.generations:
            return np.zeros((0, 0))
        models = max(len(g.fitness) for g in self.generations)
        out = np.full((models, len(self.generations)), np.nan)
        for column, generation in enumerate(self.generations):
            out[: len(generation.fitness), column] = generation.fitness
        return out
