"""The swarm's side of vectorised runs (:mod:`cartpole_tui.env.wire.batch`).

Swarm layer, no sockets: :mod:`.models` and :mod:`.aggregation` use it.

:func:`batch_logits` is the models' answer: every model's logits for every instance in
one message. :class:`BatchChooser` is the aggregation's: one action per instance, by the
same rules as one step — in training each instance's episode is played by one model
alone (fewest episodes first, counting the episodes being played), its return that
model's fitness; deterministic steps are a vote per instance; otherwise a sample from
the summed probabilities per instance. Fitness and shares go into the one
:class:`~cartpole_tui.env.swarm.aggregation.AggregationLogic`, so CONTRIBUTION covers
batch and single steps alike.

The logits travel as base64 of little-endian float64 (``BATCH_LOGITS``, K × M × actions in
that order).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import TYPE_CHECKING

import numpy as np

from cartpole_tui.env.swarm.policy import N_ACTIONS, Population, softmax
from cartpole_tui.env.wire import batch, protocol

if TYPE_CHECKING:  # aggregation imports this module
    from cartpole_tui.env.swarm.aggregation import AggregationLogic


def batch_logits(population: Population, ids: list[str], msg: dict) -> dict | None:
    """The LOGITS payload answering a batch observation (None when nothing is to act)."""
    instances, observations = batch.parse_observation(msg, population.observations)
    if not instances:
        return None  # a run's last observation: its results only
    logits = population.batch_logits(observations)
    if not np.isfinite(logits).all():
        logits = np.where(np.isfinite(logits), logits, 0.0)
    return {
        batch.BATCH: msg[batch.BATCH],
        "INSTANCES": instances,
        "COMPONENT_IDS": ids,
        "BATCH_LOGITS": batch.encode_array(logits, "<f8"),
        "DETERMINISTIC": bool(msg.get("DETERMINISTIC", False)),
    }


def parse_logits(msg: dict, actions: int = N_ACTIONS) -> list[tuple[str, np.ndarray]] | None:
    """(model id, (M, actions) logits) per model of a batch LOGITS; None when malformed."""
    ids, instances = msg.get("COMPONENT_IDS"), msg.get("INSTANCES")
    if type(ids) is not list or not all(isinstance(i, str) for i in ids) or type(instances) is not list:
        return None
    try:
        logits = batch.decode_array(msg.get("BATCH_LOGITS"), "<f8", (len(ids), len(instances), actions))
    except protocol.ProtocolError:
        return None
    return list(zip(ids, logits))


class BatchChooser:
    """Per-instance players and returns for batch steps of an AggregationLogic."""

    def __init__(self, logic: AggregationLogic):
        self.logic = logic
        self.players: dict[int, str] = {}  # instance → the model playing its episode
        self.returns: dict[int, float] = {}

    def observe(self, msg: dict) -> None:
        """Account a batch observation: a run's first (no STEPPED) or a step's results."""
        stepped = msg.get("STEPPED")
        if stepped is None:  # a new run: unfinished episodes (a stopped run) are not scored
            self.players.clear()
            self.returns.clear()
            return
        rewards, dones = msg.get("REWARDS"), msg.get("DONES")
        try:
            batch.int_list(stepped, "STEPPED", 0, batch.MAX_INSTANCES)
        except protocol.ProtocolError:
            return
        if not (type(rewards) is list and type(dones) is list and len(stepped) == len(rewards) == len(dones)):
            return
        for i, reward, done in zip(stepped, rewards, dones):
            if type(reward) not in (int, float) or not math.isfinite(reward):
                continue
            self.returns[i] = self.returns.get(i, 0.0) + reward
            if done is True:
                player, total = self.players.pop(i, None), self.returns.pop(i)
                if player is not None:
                    self.logic.solo_totals[player] += total
                    self.logic.solo_episodes[player] += 1

    def choose(self, ids: list[str], logits: np.ndarray, instances: list[int], deterministic: bool) -> list[int]:
        """One action per instance from every model's (M, 2) logits stacked (K, M, 2)."""
        logic = self.logic
        for model_id in ids:
            logic.order.setdefault(model_id, len(logic.order))
        probs = softmax(logits)
        if not deterministic and logic.solo:
            row = {model_id: k for k, model_id in enumerate(ids)}
            rows = []
            for instance in instances:
                player = self.players.get(instance)
                if player not in row:
                    player = self.players[instance] = self._next_player(ids)
                rows.append(row[player])
            return probs[rows, np.arange(len(instances))].argmax(axis=1).tolist()
        total = probs.sum(axis=0)
        if deterministic:
            actions = total.argmax(axis=1)
        else:
            actions = np.array([logic.rng.choice(len(t), p=t / t.sum()) for t in total])
        column = probs[:, np.arange(len(instances)), actions]
        for model_id, share in zip(ids, (column / column.sum(axis=0)).sum(axis=1)):
            logic.shares[model_id] += float(share)
        return actions.tolist()

    def _next_player(self, ids: list[str]) -> str:
        playing = Counter(self.players.values())
        episodes, order = self.logic.solo_episodes, self.logic.order
        return min(ids, key=lambda i: (episodes.get(i, 0) + playing[i], order[i]))
