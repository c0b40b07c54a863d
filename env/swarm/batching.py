"""The swarm's side of vectorised runs (:mod:`cartpole_tui.env.wire.batch`).

Swarm layer, no sockets: :mod:`.models` and :mod:`.aggregation` use it.

:func:`logits_payload` is the models' answer on the network: every model's logits for every
instance in one message. :class:`BatchChooser` is the aggregation's: one action per instance, by
the same rules as one step — in training each instance's episode is played by one model alone
(fewest episodes first, counting the episodes being played), its return that model's fitness;
deterministic steps are a vote per instance (of the fittest, as in one step); otherwise a sample
from the summed probabilities per instance. Fitness and shares go into the one
:class:`~cartpole_tui.env.swarm.aggregation.AggregationLogic`, so CONTRIBUTION covers batch and
single steps alike.

The logits travel as base64 of little-endian float32 (``BATCH_LOGITS``, K × M × (actions − 1)
in that order): each less the model's logit of action 0, which is left out (softmax and argmax
are the same), so at 20 models and 1,000 instances a CartPole step's LOGITS is 107 KB, not
213 KB. The per-instance bookkeeping is numpy arrays, not a Python step per instance.

The whole swarm in one process (the embedded network) sends no LOGITS at all: the pool hands
each batch step to the aggregation beside it (:meth:`BatchChooser.play`), which picks each
instance's player first, so that a training step computes the players' logits alone — a
twentieth of the forward pass — and the step costs one message less through the broker.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from cartpole_tui.env import defaults
from cartpole_tui.env.swarm.policy import N_ACTIONS, softmax
from cartpole_tui.env.wire import batch, protocol

if TYPE_CHECKING:  # aggregation imports this module
    from cartpole_tui.env.swarm.aggregation import AggregationLogic


def fewest_first(counts: list[int], ranks: list[int], picks: int) -> np.ndarray:
    """``picks`` rows, one after another, each the row of the fewest ``counts`` (ties: the lowest
    ``ranks``), its count growing by one with each pick: the players of new episodes."""
    queue = [(count, rank, row) for row, (count, rank) in enumerate(zip(counts, ranks))]
    heapq.heapify(queue)
    rows = np.empty(picks, dtype=np.intp)
    for k in range(picks):
        count, rank, row = queue[0]
        rows[k] = row
        heapq.heapreplace(queue, (count + 1, rank, row))
    return rows


def playable(logits: np.ndarray) -> np.ndarray:
    """``logits`` with any number that is not finite (weights out of range) as 0."""
    return logits if np.isfinite(logits).all() else np.where(np.isfinite(logits), logits, 0.0)


def logits_payload(msg: dict, ids: list[str], logits: np.ndarray) -> dict:
    """The LOGITS payload answering batch observation ``msg``: every model's (K, M, actions) ``logits``."""
    return {
        batch.BATCH: msg[batch.BATCH],
        "INSTANCES": msg["INSTANCES"],  # as it came: the aggregation's ACTION names the same text
        "COMPONENT_IDS": ids,
        "DETERMINISTIC": bool(msg.get("DETERMINISTIC", False)),
        "BATCH_LOGITS": batch.encode_array(logits[..., 1:] - logits[..., :1], batch.LOGIT),
    }


Answer = tuple[list[str], np.ndarray, np.ndarray]  # a batch LOGITS parsed: parse_logits
Results = tuple[np.ndarray, np.ndarray, np.ndarray]  # a batch step's (stepped, rewards, dones): batch.step_results


def parse_logits(msg: dict, actions: int = N_ACTIONS) -> Answer | None:
    """(model ids, instances, every model's (K, M, actions) logits) of a batch LOGITS, action 0's
    logits being 0. None when malformed: 1..MODELS_MAX distinct model ids (each a short string), at
    least one instance."""
    ids = model_ids(msg)
    if ids is None:
        return None
    try:
        instances = batch.instances_of(msg)
        if not len(instances):
            return None  # a run's last observation is not answered
        shape = (len(ids), len(instances), actions - 1)
        relative = batch.decode_array(msg.get("BATCH_LOGITS"), batch.LOGIT, shape)
    except protocol.ProtocolError:
        return None
    return ids, instances, np.concatenate((np.zeros((*shape[:-1], 1)), relative), axis=-1)


def model_ids(msg: dict) -> list[str] | None:
    """A batch message's COMPONENT_IDS: 1..MODELS_MAX distinct model ids, each a short string; else
    None (with no instances, no bytes would bound how many ids one message names)."""
    ids = msg.get("COMPONENT_IDS")
    if type(ids) is not list or not 0 < len(ids) <= defaults.MODELS_MAX:
        return None
    if not all(protocol.valid_run_id(i) for i in ids) or len(set(ids)) != len(ids):
        return None
    return ids


def batch_weights(msg: dict, width: int) -> tuple[list[str], np.ndarray] | None:
    """(model ids, (K, width) weights) of a BATCH_WEIGHTS answer or SET; None when malformed:
    :func:`model_ids`, each row ``width`` finite numbers whose sum is finite too (as
    :func:`~cartpole_tui.env.swarm.client.finite_vector` asks of a WEIGHTS list)."""
    ids = model_ids(msg)
    if ids is None:
        return None
    try:
        rows = batch.decode_array(msg.get(batch.BATCH_WEIGHTS), batch.WEIGHT, (len(ids), width))
    except protocol.ProtocolError:
        return None
    with np.errstate(over="ignore"):
        return (ids, rows) if np.isfinite(rows.sum(axis=1)).all() else None


class BatchChooser:
    """Per-instance players and returns for batch steps of an AggregationLogic."""

    def __init__(self, logic: AggregationLogic):
        self.logic = logic
        self.models: list[str] = []  # every model id seen, in first-seen order (logic.order's)
        self._player = np.full(batch.MAX_INSTANCES, -1, dtype=np.intp)  # instance → index in models, -1: none
        self._returns = np.zeros(batch.MAX_INSTANCES)  # instance → its episode's return so far

    @property
    def players(self) -> dict[int, str]:
        """instance → the model playing its episode."""
        return {int(i): self.models[self._player[i]] for i in np.flatnonzero(self._player >= 0)}

    def keep(self, models: list[str]) -> None:
        """The models the logic kept (:meth:`AggregationLogic.keep_only`), in its order: an
        instance played by one let go has no player (its next step gets one)."""
        where = {model_id: k for k, model_id in enumerate(models)}
        renumbered = np.array([where.get(model_id, -1) for model_id in self.models] + [-1], dtype=np.intp)
        self._player = renumbered[self._player]  # (-1, no player, picks the last entry: -1)
        self.models = list(models)

    def observe(self, msg: dict) -> None:
        """Account a batch observation: a run's first (no STEPPED) or a step's results (malformed: none)."""
        try:
            results = batch.step_results(msg)
        except protocol.ProtocolError:
            return
        self.account(results)

    def account(self, results: Results | None) -> None:
        """Account a step's (stepped, rewards, dones), or a run's first observation (None)."""
        if results is None:  # a new run: unfinished episodes (a stopped run) are not scored
            self._player.fill(-1)
            self._returns.fill(0.0)
            return
        stepped, rewards, dones = results
        self._returns[stepped] += rewards
        ended = stepped[dones]
        if not len(ended):
            return
        players, totals = self._player[ended], self._returns[ended]
        for player, total in zip(players[players >= 0].tolist(), totals[players >= 0].tolist()):
            model_id = self.models[player]
            self.logic.solo_totals[model_id] += total
            self.logic.solo_episodes[model_id] += 1
        self._player[ended] = -1
        self._returns[ended] = 0.0

    def play(self, ids: list[str], instances: np.ndarray, logits_of: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """A training step played solo: each instance's player (a row of ``ids``, :meth:`_rows`) acts
        greedily on its own logits, ``logits_of(rows)`` (M, actions): the models beside this
        aggregation compute the players' alone."""
        return logits_of(self._rows(ids, self._known(ids), instances)).argmax(axis=1)

    def _known(self, ids: list[str]) -> np.ndarray:
        """The index in ``models`` of each of ``ids``, new ones added (in the logic's order too)."""
        order = self.logic.order
        for model_id in ids:
            order.setdefault(model_id, len(order))
        if len(self.models) < len(order):
            self.models = list(order)
        index = {model_id: k for k, model_id in enumerate(self.models)}
        return np.array([index[i] for i in ids], dtype=np.intp)

    def choose(self, ids: list[str], logits: np.ndarray, instances: np.ndarray, deterministic: bool) -> np.ndarray:
        """One action per instance from every model's (M, actions) logits stacked (K, M, actions)."""
        logic = self.logic
        columns = np.arange(len(instances))
        if not deterministic and logic.solo:
            return self.play(ids, instances, lambda rows: logits[rows, columns])
        self._known(ids)  # each model answering is in the logic's order: CONTRIBUTION names it
        probs = softmax(logits)
        if deterministic:
            actions = probs[logic.voting(ids)].sum(axis=0).argmax(axis=1)
        else:  # a sample per instance from the summed probabilities
            total = probs.sum(axis=0)
            cumulative = np.cumsum(total / total.sum(axis=1, keepdims=True), axis=1)
            draws = logic.rng.random(len(instances))[:, None]
            actions = np.minimum((draws >= cumulative).sum(axis=1), total.shape[1] - 1)
        column = probs[:, columns, actions]
        for model_id, share in zip(ids, (column / column.sum(axis=0)).sum(axis=1).tolist()):
            logic.shares[model_id] += share
        return actions

    def _rows(self, ids: list[str], known: np.ndarray, instances: np.ndarray) -> np.ndarray:
        """The row in ``ids`` (``known``: their indices in ``models``) of each instance's player; a
        new episode (or one whose player is gone) gets the model with the fewest episodes, counting
        those being played, ties by first seen (:func:`fewest_first`)."""
        row_of = np.full(len(self.models), -1, dtype=np.intp)
        row_of[known] = np.arange(len(ids))
        players = self._player[instances]
        rows = np.where(players >= 0, row_of[np.maximum(players, 0)], -1)
        unplayed = np.flatnonzero(rows < 0)
        if len(unplayed):
            playing = np.bincount(self._player[self._player >= 0], minlength=len(self.models))[known].tolist()
            episodes, order = self.logic.solo_episodes, self.logic.order
            counts = [episodes.get(i, 0) + playing[row] for row, i in enumerate(ids)]
            rows[unplayed] = fewest_first(counts, [order[i] for i in ids], len(unplayed))
            self._player[instances[unplayed]] = known[rows[unplayed]]
        return rows
