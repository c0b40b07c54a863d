"""Marked runs as plot overlays: each run's rolling mean, aligned at episode 0."""

from __future__ import annotations

import numpy as np

from cartpole_tui.env.history.store import RunStore

from cartpole_tui.tui.widgets.score_plot import Overlay

MAX_OVERLAYS = 4


def rolling_mean(scores: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` scores at each episode (fewer at the start)."""
    sums = np.cumsum(np.concatenate(([0.0], scores)))
    index = np.arange(1, len(scores) + 1)
    start = np.maximum(index - window, 0)
    return (sums[index] - sums[start]) / (index - start)


def rolling_overlays(store: RunStore, numbers: list[int], window: int) -> list[Overlay]:
    """Overlays for up to MAX_OVERLAYS marked runs (the latest marked first)."""
    overlays = []
    for number in numbers[-MAX_OVERLAYS:]:
        run = store.run(number)
        if run is None:
            continue
        scores = store.episode_scores(run.run_uid)
        if len(scores):
            overlays.append(Overlay(rolling_mean(scores, window), label=f"run {number}"))
    return overlays
