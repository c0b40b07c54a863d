"""The aggregation's rules, free of sockets: from K models' logits to one action.

Deterministic steps are a vote: the models' action probabilities are summed and
the largest wins. Stochastic (training) steps are played, by default, one episode
at a time by one model alone, greedily — each model in turn, fewest episodes first
— and the episode's return is that model's fitness; this is how the built-in swarm
learns (a genetic algorithm whose fitness is measured one model at a time). With
``solo=False`` stochastic steps sample from the summed probabilities, as the
published aggregation does.

``contribution()`` is what the evolution GETs: each model's mean solo return since
the last GET when solo episodes were played, else each model's share of the chosen
actions (p_i(a) / Σ_j p_j(a) summed over steps).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from cartpole_tui.env.swarm.policy import softmax


class AggregationLogic:
    """Chooses actions from a step's logits and keeps each model's contribution."""

    def __init__(self, seed: int | None = None, solo: bool = True):
        self.rng = np.random.default_rng(seed)
        self.solo = solo
        self.player: str | None = None  # the model playing the current solo episode
        self.episode_return = 0.0
        self.solo_totals: dict[str, float] = defaultdict(float)
        self.solo_episodes: dict[str, int] = defaultdict(int)
        self.shares: dict[str, float] = defaultdict(float)
        self.order: dict[str, int] = {}  # model id → first-seen rank, for stable tie-breaks

    # --- episodes (from the observation room) ---------------------------------------------

    def observe(self, reward: float | None, done: bool) -> None:
        """Account one observation: a run's first (reward None) or a step's result."""
        if reward is None:  # a new run: an unfinished episode (a stopped run) is not scored
            self.player, self.episode_return = None, 0.0
            return
        self.episode_return += reward
        if done:
            if self.player is not None:
                self.solo_totals[self.player] += self.episode_return
                self.solo_episodes[self.player] += 1
            self.player, self.episode_return = None, 0.0

    # --- actions ----------------------------------------------------------------------------

    def choose(self, logits: dict[str, list[float]], deterministic: bool) -> int:
        """The action for one step, given each answering model's logits."""
        ids = list(logits)
        for model_id in ids:
            self.order.setdefault(model_id, len(self.order))
        probs = softmax(np.asarray([logits[i] for i in ids], dtype=np.float64))
        if not deterministic and self.solo:
            if self.player not in logits:
                self.player = min(ids, key=lambda i: (self.solo_episodes.get(i, 0), self.order[i]))
            return int(np.argmax(probs[ids.index(self.player)]))
        total = probs.sum(axis=0)
        if deterministic:
            action = int(np.argmax(total))
        else:
            action = int(self.rng.choice(len(total), p=total / total.sum()))
        column = probs[:, action]
        for model_id, share in zip(ids, column / column.sum()):
            self.shares[model_id] += float(share)
        return action

    # --- evolution ------------------------------------------------------------------------------

    def contribution(self) -> dict[str, float]:
        """Each known model's contribution since the last call (see the module docstring); resets."""
        if self.solo_episodes:
            result = {i: self.solo_totals[i] / self.solo_episodes[i] if i in self.solo_episodes else 0.0
                      for i in self.order}
        else:
            result = {i: self.shares[i] for i in self.order}
        self.solo_totals.clear()
        self.solo_episodes.clear()
        self.shares.clear()
        return result
