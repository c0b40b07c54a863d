"""Marked runs as plot overlays: each run's rolling mean, aligned at episode 0."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from cartpole_tui.env import defaults
from cartpole_tui.env.history.store import RunStore
from cartpole_tui.tui.data.score_history import rolling_mean

MAX_OVERLAYS = defaults.PLOT_OVERLAYS


@dataclass(frozen=True)
class Overlay:
    """Another run's rolling mean drawn for comparison: ``values[i]`` sits at the run's episode ``i``;
    ``window``: the episodes that mean is over (the legend says it)."""

    values: np.ndarray
    label: str = ""
    window: int | None = None
    number: int | None = None  # the run's number: the legend's shortest form names it by that alone

    @cached_property
    def sums(self) -> np.ndarray:
        """Prefix sums of ``values`` (a leading 0): any span's mean in O(1), worked out once."""
        return np.concatenate(([0.0], np.cumsum(np.asarray(self.values, dtype=np.float64))))


def rolling_overlays(store: RunStore, numbers: list[int], window: int) -> list[Overlay]:
    """Overlays for up to MAX_OVERLAYS marked runs (the latest marked first). Reads the file:
    call it off the UI thread."""
    overlays = []
    for number in numbers[-MAX_OVERLAYS:]:
        run = store.run(number)
        if run is None:
            continue
        scores = store.episode_scores(run.run_uid)
        if len(scores):
            overlays.append(Overlay(rolling_mean(scores, window), f"run {number}", window, number))
    return overlays
