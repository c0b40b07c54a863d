"""The built-in swarm's aggregation: from K models' logits to one action.

Swarm layer: one of the three parts :mod:`.swarm` runs (a :mod:`.client` on env/wire).

The :class:`Aggregation` component waits for one ``LOGITS`` from each of ``models``
models (a model silent for ``timeout`` s is logged and left out until it answers
again), answers ``ACTION`` on ``action`` and GET on ``evolution`` with
``CONTRIBUTION``. In the whole swarm (one process) the models beside it hand it each observation
and batch step (:meth:`Aggregation.act`): a batch step's LOGITS never go through the broker, and
another pool's batch LOGITS are ignored (the step was answered already: a second ACTION).
:class:`AggregationLogic` holds the rules, free of sockets:

Deterministic steps are a vote: the models' action probabilities are summed and
the largest wins. Once solo episodes were played since the last GET only the ``fittest``
of them (ties in) vote: the rest, fresh mutants mostly, outvoted a solver for rounds
(measured with ``python -m bench.learn``: :mod:`cartpole_tui.env.swarm.genetic`). That
vote (:attr:`AggregationLogic.voters`) holds until the GET, and ``on_voters`` hears each
change of it: the swarm keeps it in the population file, so that a swarm started from
the file votes as this one did (:mod:`cartpole_tui.env.swarm.swarm`). ``fittest=None``
(an aggregation apart from the models it votes with): every model votes, always.
Stochastic (training) steps are played, by default, one episode at a time by one model
alone, greedily — each model in turn, fewest episodes first — and the mean return of its
episodes is that model's fitness; this is how the built-in swarm learns (a genetic algorithm
whose fitness is measured one model at a time). With ``solo=False`` stochastic steps
sample from the summed probabilities, as the published aggregation does.

``contribution()`` is what the evolution GETs: each model's mean solo return since
the last GET when solo episodes were played, else each model's share of the chosen
actions (p_i(a) / Σ_j p_j(a) summed over steps).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping

import numpy as np
from swergio import Trigger

from cartpole_tui.env import defaults
from cartpole_tui.env.components.spaces import CARTPOLE
from cartpole_tui.env.events import EnvSpaces
from cartpole_tui.env.swarm.batching import BatchChooser, Results, parse_logits
from cartpole_tui.env.swarm.client import CUSTOM, SwarmComponent, finite_vector
from cartpole_tui.env.swarm.policy import softmax
from cartpole_tui.env.wire import batch, protocol

log = logging.getLogger(__name__)

Logits = list[float] | np.ndarray  # one model's logits: a single step's list, a batch's (M, 2) rows
LogitsOf = Callable[[np.ndarray | None], np.ndarray]  # Aggregation.act: the models' logits, players' or all


class AggregationLogic:
    """Chooses actions from a step's logits and keeps each model's contribution."""

    def __init__(self, seed: int | None = None, solo: bool = True, fittest: int | None = defaults.VOTERS):
        self.rng = np.random.default_rng(seed)
        self.solo = solo
        self.fittest = fittest
        self.voters: frozenset[str] | None = None  # the models a deterministic step counts; None: all
        self.on_voters: Callable[[frozenset[str] | None], None] | None = None  # told each change of voters
        self.player: str | None = None  # the model playing the current solo episode
        self.episode_return = 0.0
        self.solo_totals: dict[str, float] = defaultdict(float)
        self.solo_episodes: dict[str, int] = defaultdict(int)
        self.shares: dict[str, float] = defaultdict(float)
        self.order: dict[str, int] = {}  # model id → first-seen rank, for stable tie-breaks

    def takes(self, ids: list[str]) -> bool:
        """Whether LOGITS of ``ids`` are taken: known models, or new ones while no more than
        MODELS_MAX are known in all. Made-up ids each grew every step's work and CONTRIBUTION,
        without end; at a GET, when more are known than are waited for, those not heard since the
        last GET are let go (:meth:`keep_only`)."""
        new = sum(model_id not in self.order for model_id in ids)
        return not new or len(self.order) + new <= defaults.MODELS_MAX

    def keep_only(self, heard: set[str]) -> None:
        """Forget the models not in ``heard`` (a restarted pool's old ids, made-up ones), keeping
        the others' order."""
        self.order = {model_id: rank for rank, model_id in enumerate(i for i in self.order if i in heard)}
        if self.player not in self.order:
            self.player = None

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

    def choose(self, logits: Mapping[str, Logits], deterministic: bool) -> int:
        """The action for one step, given each answering model's logits."""
        ids = list(logits)
        for model_id in ids:
            self.order.setdefault(model_id, len(self.order))
        probs = softmax(np.asarray([logits[i] for i in ids], dtype=np.float64))
        if not deterministic and self.solo:
            if self.player is None or self.player not in logits:
                self.player = min(ids, key=lambda i: (self.solo_episodes.get(i, 0), self.order[i]))
            return int(np.argmax(probs[ids.index(self.player)]))
        total = probs.sum(axis=0)
        if deterministic:
            action = int(np.argmax(probs[self.voting(ids)].sum(axis=0)))
        else:
            action = int(self.rng.choice(len(total), p=total / total.sum()))
        column = probs[:, action]
        for model_id, share in zip(ids, column / column.sum()):
            self.shares[model_id] += float(share)
        return action

    def voting(self, ids: list[str]) -> np.ndarray:
        """Indices into ``ids`` of the models a deterministic step counts: :attr:`voters` (all when
        None or none of them answers), chosen first when solo episodes were played since the last
        GET: the ``fittest`` best mean solo returns and any tied with them, among every model that
        played, whether or not it answered this step (chosen among those that answered, a step
        without one of them — a model late, a foreign peer's LOGITS counted first — chose another
        vote, and each change wrote the population file); all vote while fewer played."""
        if self.fittest is not None and self.solo_episodes:
            fitness = {i: self.solo_totals.get(i, 0.0) / n for i, n in self.solo_episodes.items() if n}
            if len(fitness) < self.fittest:
                self._vote(None)
            else:
                least = sorted(fitness.values())[-self.fittest] if self.fittest > 0 else -np.inf
                self._vote(frozenset(i for i, value in fitness.items() if value >= least))
        voters = self.voters
        rows = np.flatnonzero([i in voters for i in ids]) if voters is not None else np.arange(0)
        return rows if len(rows) else np.arange(len(ids))

    def _vote(self, voters: frozenset[str] | None) -> None:
        if voters != self.voters:
            self.voters = voters
            if self.on_voters is not None:
                self.on_voters(voters)

    # --- evolution ------------------------------------------------------------------------------

    def contribution(self) -> dict[str, float]:
        """Each known model's contribution since the last call (see the module docstring); resets."""
        if self.solo_episodes:
            result = {
                i: self.solo_totals[i] / self.solo_episodes[i] if i in self.solo_episodes else 0.0 for i in self.order
            }
        else:
            result = {i: self.shares[i] for i in self.order}
        self.solo_totals.clear()
        self.solo_episodes.clear()
        self.shares.clear()
        self._vote(None)  # the evolution replaces the models measured: all vote until the next training
        return result


class Aggregation(SwarmComponent):
    """Turns one LOGITS per model into one ACTION; answers GET with CONTRIBUTION."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        models: int = defaults.MODELS,
        seed: int | None = None,
        timeout: float = defaults.MODEL_ANSWER_TIMEOUT,
        solo: bool = True,
        fittest: int | None = defaults.VOTERS,
        name: str = "aggregation",
        on_disconnect: Callable[[str], None] | None = None,
        spaces: EnvSpaces = CARTPOLE,
        fed: bool = False,
    ):
        if models < 1:
            raise ValueError(f"models must be >= 1, got {models}")
        self.models = models
        self.actions = spaces.actions  # logits a model sends: one per action of the environment
        self.timeout = timeout
        self.logic = AggregationLogic(seed, solo, fittest)
        self.batches = BatchChooser(self.logic)  # vectorised runs (env/swarm/batching.py)
        self.expected = models  # LOGITS that complete a step; lowered when models time out
        self.silent: set[str] = set()  # models that timed out and have not answered since
        self._heard: set[str] = set()  # models whose LOGITS were taken since the last GET
        self._pending: dict[str, Logits] = {}
        self._pending_since = 0.0
        self._trigger: dict | None = None  # the step's last LOGITS message (its ROOT_ID is propagated)
        self._instances = np.zeros(0, dtype=np.intp)  # a batch trigger's INSTANCES, decoded
        self._acted = False  # an ACTION went out since the last observation
        self.fed = fed
        self.beside: frozenset[str] = frozenset()  # the ids of the models beside a fed one (ModelPool sets them)
        self._told: set[str] = set()  # senders of batch LOGITS a fed aggregation ignored (said once a GET)
        self._lock = threading.Lock()
        super().__init__(name, host, port, on_disconnect, check_every=min(0.1, timeout / 4))
        if not fed:  # ``fed``: the models beside it hand it each observation (ModelPool), in order
            self.client.on_room(protocol.OBSERVATION, self.observe)
        self.client.on_room(protocol.LOGITS, self._on_logits)
        self.client.add_eventHandler(
            self._on_evolution, CUSTOM, responseRooms=protocol.EVOLUTION, trigger=Trigger(CUSTOM, protocol.EVOLUTION)
        )

    def observe(self, msg: dict) -> None:
        """Account an observation (a run's first, or a step's results) before its step is answered."""
        if batch.is_batch(msg):
            try:
                results = batch.step_results(msg)
            except protocol.ProtocolError:
                return
            self.observe_batch(results)
            return
        reward = protocol.finite(msg.get("REWARD"))  # none (a run's first), or no finite number: no step's
        with self._lock:
            self._acted = False
            if "REWARD" not in msg:
                self._forget_pending()
            self.logic.observe(reward, bool(msg.get("DONE", False)))

    def observe_batch(self, results: Results | None) -> None:
        """Account a batch observation's step (stepped, rewards, dones), or a run's first (None)."""
        with self._lock:
            self._acted = False
            if results is None:
                self._forget_pending()
            self.batches.account(results)

    def _forget_pending(self) -> None:
        """A run's first observation: what an earlier (stopped) run's step left pending is dropped, so
        that the new run's LOGITS, which cannot join it (:meth:`_joins`), start its first step."""
        self._pending, self._trigger = {}, None

    def _joins(self, msg: dict) -> bool:
        """Whether LOGITS ``msg`` answers the step pending (or none is): a single step's or a batch
        step's of the same INSTANCES. Others are refused: stacked with it they failed the step."""
        trigger = self._trigger
        if trigger is None:
            return True
        if batch.is_batch(trigger) != batch.is_batch(msg) or trigger.get("INSTANCES") != msg.get("INSTANCES"):
            log.warning(
                "aggregation: ignored LOGITS from %s: not for the step pending",
                protocol.clean_text(msg.get("SENT_BY", "?"), 80),
            )
            return False
        return True

    def _takes(self, ids: list[str], sender: object) -> bool:
        """Whether the LOGITS of ``ids`` are taken (:meth:`AggregationLogic.takes`); they are heard. The
        models beside it always are: a peer's made-up ids crowded them out, and no run played."""
        if not self.logic.takes([i for i in ids if i not in self.beside]):
            log.warning(
                "aggregation: ignored LOGITS from %s: %d models known, at most %d until the next GET",
                protocol.clean_text(str(sender), 80),
                len(self.logic.order),
                defaults.MODELS_MAX,
            )
            return False
        self._heard.update(ids)
        return True

    def _on_logits(self, msg: dict) -> None:
        if batch.is_batch(msg):
            self._on_batch_logits(msg)
            return
        logits = finite_vector(msg.get("LOGITS"), self.actions)
        model_id = msg.get("COMPONENT_ID")
        if logits is None or not isinstance(model_id, str):
            log.warning(
                "aggregation: ignored LOGITS from %s without %d finite numbers and a COMPONENT_ID",
                msg.get("SENT_BY", "?"),
                self.actions,
            )
            return
        with self._lock:
            if not self._joins(msg) or not self._takes([model_id], msg.get("SENT_BY", "?")):
                return
            if (model_id in self.silent or model_id not in self.logic.order) and self.expected < self.models:
                self.silent.discard(model_id)
                self.expected += 1
                log.info("aggregation: model %s answers; waiting for %d models", model_id, self.expected)
                if self._acted:
                    return  # a late answer to the step already acted on; it counts from the next one
            if not self._pending:
                self._pending_since = time.monotonic()
            self._pending[model_id] = logits
            self._trigger = msg
            if len(self._pending) >= self.expected:
                self._act()

    def _on_batch_logits(self, msg: dict) -> None:
        if self.fed:  # the models beside it answered the step at once (act): taken, these made a second ACTION
            self._refuse_batch_logits(msg)
            return
        parsed = parse_logits(msg, self.actions)
        if parsed is None:
            log.warning("aggregation: ignored a malformed batch LOGITS from %s", msg.get("SENT_BY", "?"))
            return
        ids, instances, logits = parsed
        with self._lock:
            if not self._joins(msg) or not self._takes(ids, msg.get("SENT_BY", "?")):
                return
            self._heard_again(ids)
            if not self._pending:
                self._pending_since = time.monotonic()
            self._pending.update(zip(ids, logits))
            self._trigger, self._instances = msg, instances
            if len(self._pending) >= self.expected:
                self._act()

    def _refuse_batch_logits(self, msg: dict) -> None:
        """Say, once a GET for each sender, that a fed aggregation ignores batch LOGITS."""
        sender = protocol.clean_text(str(msg.get("SENT_BY", "?")), 80)
        with self._lock:
            if sender in self._told:
                return
            self._told.add(sender)
        log.warning("aggregation: ignored batch LOGITS from %s: the models beside it answer every batch step", sender)

    def act(self, msg: dict, ids: list[str], instances: np.ndarray, logits_of: LogitsOf) -> None:
        """Answer batch observation ``msg`` for the models ``ids`` beside it (ModelPool), whose
        ``logits_of(rows)`` gives each instance's player's (M, actions) logits (``rows``: one of ``ids`` per
        instance) or, given None, every model's (K, M, actions): a training step computes the players' alone."""
        deterministic = bool(msg.get("DETERMINISTIC", False))
        with self._lock:
            self._heard.update(ids)  # always taken (:meth:`_takes`)
            self._heard_again(ids)
            self._pending, self._trigger, self._acted = {}, None, True
            if self.logic.solo and not deterministic:
                chosen = self.batches.play(ids, instances, logits_of)
            else:
                chosen = self.batches.choose(ids, logits_of(None), instances, deterministic)
            self._send_actions(msg, chosen)

    def _heard_again(self, ids: list[str]) -> None:
        """Models that timed out and answer again are waited for again (lock held)."""
        for model_id in ids:
            if model_id in self.silent and self.expected < self.models:
                self.silent.discard(model_id)
                self.expected += 1

    def _act(self) -> None:
        """Answer the pending step (lock held)."""
        pending, trigger = self._pending, self._trigger
        if trigger is None:  # nothing pending: a step's first LOGITS sets the trigger
            return
        self._pending, self._trigger, self._acted = {}, None, True
        if batch.is_batch(trigger):
            ids = list(pending)
            chosen = self.batches.choose(
                ids, np.stack([pending[i] for i in ids]), self._instances, bool(trigger.get("DETERMINISTIC"))
            )
            self._send_actions(trigger, chosen)
            return
        action = self.logic.choose(pending, bool(trigger.get("DETERMINISTIC", False)))
        self.client.send(self.client.message(protocol.ACTION, trigger, {"ACTION": [action]}))

    def _send_actions(self, trigger: dict, chosen: np.ndarray) -> None:
        """The batch ACTION answering the observation of ``trigger`` (it, or a LOGITS answering it)."""
        payload = batch.actions(trigger[batch.BATCH], trigger["INSTANCES"], chosen)
        self.client.send(self.client.message(protocol.ACTION, trigger, payload))

    def _check_timeout(self) -> None:
        with self._lock:
            if not self._pending or time.monotonic() - self._pending_since < self.timeout:
                return
            missing = set(self.logic.order) - set(self._pending)
            self.silent |= missing
            log.warning(
                "aggregation: %d of %d models did not answer within %.1fs (%s); carrying on with %d",
                self.expected - len(self._pending),
                self.expected,
                self.timeout,
                ", ".join(sorted(missing)) or "never heard from",
                len(self._pending),
            )
            self.expected = len(self._pending)
            self._act()

    def _on_evolution(self, msg: dict) -> dict | None:
        if msg.get("CMD") != "GET":
            return None
        with self._lock:
            contribution = self.logic.contribution()
            if len(self.logic.order) > self.models:  # more than it waits for: old or made-up ids among them
                self.logic.keep_only(self._heard)  # (CONTRIBUTION still names them: it is the last time)
                self.batches.keep(list(self.logic.order))
                self.silent &= self._heard
            self._heard, self._told = set(), set()
            return {"CONTRIBUTION": contribution}
