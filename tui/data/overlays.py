"""Marked runs as plot overlays: each run's rolling mean, aligned at episode 0."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cartpole_tui.env import defaults
from cartpole_tui.env.history.store import RunStore
from cartpole_tui.tui.data.score_history import rolling_mean

MAX_OVERLAYS = defaults.PLOT_OVERLAYS


@dataclass(frozen=True)
class Overlay:
    """Another run's rolling mean drawn for comparison: ``values[i]`` sits at episode ``offset + i``."""

    values: np.ndarray
    label: str = ""
    offset: int = 0


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
