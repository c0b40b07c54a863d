"""The built-in swarm's K policy models behind one client.

Swarm layer: one of the three parts :mod:`.swarm` runs (a :mod:`.client` on env/wire).

On ``observation`` the pool answers one ``LOGITS`` message per model on ``logits`` (all
K in one write; a batch step one message, :mod:`.batching`) — or, beside our aggregation in
this process (the whole swarm), hands it each observation and answers batch steps through it
(:meth:`~cartpole_tui.env.swarm.aggregation.Aggregation.act`); on ``evolution`` it answers GET
with one ``WEIGHTS`` message per model and loads SET — or, when the GET asks for
``BATCH_WEIGHTS`` (our evolution does), with one message of every model's weights as base64
float64 (several past ``BATCH_WEIGHTS_MAX_BYTES``), which SET then sends back the same way
(the JSON of 20 models' weights, written and read by four parts, was most of an evolution).

The pool is built for one environment's spaces. When a run's first observation announces
another environment (ENV_ID, OBSERVATION_SIZE and ACTION_COUNT, which ours adds), the pool says so on
``control`` (WRONG_ENV, which ends the control room's wait at once) and its models are not
fed until a run of its own environment begins.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from swergio import Trigger

from cartpole_tui.env import defaults
from cartpole_tui.env.components.spaces import CARTPOLE
from cartpole_tui.env.events import EnvSpaces
from cartpole_tui.env.swarm.batching import batch_weights, logits_payload, playable
from cartpole_tui.env.swarm.client import CUSTOM, SwarmComponent, finite_vector
from cartpole_tui.env.swarm.policy import Population
from cartpole_tui.env.wire import batch, protocol

if TYPE_CHECKING:  # the aggregation beside the pool, handed to it by the swarm
    from cartpole_tui.env.swarm.aggregation import Aggregation

log = logging.getLogger(__name__)


class ModelPool(SwarmComponent):
    """K policy models (:class:`~cartpole_tui.env.swarm.policy.Population`) behind one swergio client."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        models: int = defaults.MODELS,
        seed: int | None = None,
        name: str = "models",
        on_disconnect: Callable[[str], None] | None = None,
        spaces: EnvSpaces = CARTPOLE,
        aggregation: Aggregation | None = None,
    ):
        self.spaces = spaces
        self.population = Population(models, seed, spaces.observations, spaces.actions)
        # Ours in this process (made ``fed``): handed each observation, it answers batch steps
        # with the logits it asks for (a training step's players' alone), no LOGITS sent.
        self.aggregation = aggregation
        self._told_size: int | None = None  # the wrong observation size last logged (once, not every step)
        self._other_env = False  # the run going is of another environment: not fed
        # Random, not seeded: two pools on one broker must not share ids, and nothing
        # depends on their values (ties go by arrival order), so runs stay reproducible.
        self.ids = [protocol.new_id() for _ in range(models)]
        if aggregation is not None:
            aggregation.beside = frozenset(self.ids)
        self._index = {model_id: i for i, model_id in enumerate(self.ids)}
        self._frame_tails = [f',"COMPONENT_ID":"{model_id}","LOGITS":[' for model_id in self.ids]
        self._lock = threading.Lock()  # weights change on SET while observations are answered
        super().__init__(name, host, port, on_disconnect)
        self.client.on_room(protocol.OBSERVATION, self._on_observation)
        self.client.add_eventHandler(self._on_evolution, None, trigger=Trigger(CUSTOM, protocol.EVOLUTION))

    def weights(self) -> dict[str, list[float]]:
        with self._lock:
            return {model_id: self.population.weights[i].tolist() for i, model_id in enumerate(self.ids)}

    def rows(self) -> np.ndarray:
        """A copy of every model's weights, a row each in the order of ``ids``."""
        with self._lock:
            return self.population.weights.copy()

    def _on_observation(self, msg: dict) -> None:
        if self.aggregation is not None and not batch.is_batch(msg):
            self.aggregation.observe(msg)  # first: it credits the episode this step ended
        if "ENV_ID" in msg:  # a run's first observation, announcing its environment
            self._other_env = self._announced_other(msg)
        if self._other_env:
            return
        if batch.is_batch(msg):
            self._on_batch(msg)
            return
        size = self.spaces.observations
        obs = finite_vector(msg.get("OBSERVATION"), size)
        if obs is None:
            value = msg.get("OBSERVATION")
            seen = len(value) if isinstance(value, list) else None
            if seen != self._told_size:  # once per size: a network of another environment sends it every step
                self._told_size = seen
                log.warning("models: built for %s, ignored observations of %s numbers", self.spaces.shape, seen)
            return
        with self._lock:
            logits = self.population.logits(obs)
        if not np.isfinite(logits).all():
            log.warning("models: non-finite logits (weights out of range?) sent as 0")
            logits = np.where(np.isfinite(logits), logits, 0.0)
        self.client.send_frames(self._logits_frames(msg, logits.tolist()))

    def _on_batch(self, msg: dict) -> None:
        try:
            instances, observations = batch.parse_observation(msg, self.population.observations)
            results = batch.step_results(msg)
        except protocol.ProtocolError as error:  # told to the aggregation, it reset or credited episodes
            log.warning("models: ignored a batch observation: %s", error)
            return
        if self.aggregation is not None:
            self.aggregation.observe_batch(results)  # first: it credits the episodes this step ended
        if not len(instances):
            return  # a run's last observation: its results only
        logits_of = functools.partial(self._batch_logits, observations)
        if self.aggregation is not None:
            self.aggregation.act(msg, self.ids, instances, logits_of)
        else:
            self.client.send(self.client.message(protocol.LOGITS, msg, logits_payload(msg, self.ids, logits_of())))

    def _batch_logits(self, observations: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Each observation's player's (M, actions) logits (``rows``: its model's row), or every
        model's (K, M, actions); any that is not finite as 0."""
        with self._lock:
            if rows is None:
                return playable(self.population.batch_logits(observations))
            return playable(self.population.player_logits(observations, rows))

    def _logits_frames(self, msg: dict, logits: list[list[float]]) -> bytes:
        """K LOGITS frames, formatted from a template: json.dumps per frame would cost
        as much as everything else a model does in a step."""
        common = {
            "TYPE": CUSTOM.id,
            "TO_ROOM": protocol.LOGITS,
            "SENT_BY": self.client.name,
            "DETERMINISTIC": bool(msg.get("DETERMINISTIC", False)),
        }
        for key in ("ROOT_ID", "MODEL_STATUS"):
            if key in msg:
                common[key] = msg[key]
        head = json.dumps(common, separators=(",", ":"))[:-1]
        next_id = self.client.next_id
        return b"".join(
            protocol.frame_bytes(f'{head},"ID":"{next_id()}"{tail}{",".join(map(repr, row))}]}}'.encode())
            for tail, row in zip(self._frame_tails, logits)
        )

    def _announced_other(self, msg: dict) -> bool:
        """Whether a run's first observation announces another environment than the models'
        (then said on ``control``, once for the run)."""
        try:
            announced = protocol.parse_announcement(msg)
        except protocol.ProtocolError as error:
            log.warning("models: ignored a malformed announcement: %s", error)
            return False
        if (announced.observations, announced.actions) == (self.spaces.observations, self.spaces.actions):
            return False
        text = (  # the control room names the sender: "models: models built for …"
            f"models built for {self.spaces.shape}, not {announced.shape}: "
            f"not fed; start the swarm with --env-id {announced.env_id}"
        )
        log.warning("%s: %s", self.client.name, text)
        self.client.send(protocol.wrong_env(text, msg.get("RUN_ID")))
        return True

    def _on_evolution(self, msg: dict) -> None:
        command = msg.get("CMD")
        if command == "GET" and msg.get(batch.BATCH_WEIGHTS) is True:
            rows = self.rows()  # in messages of at most BATCH_WEIGHTS_MAX_BYTES: a frame has a cap
            answers = [
                {"COMPONENT_IDS": self.ids[part], batch.BATCH_WEIGHTS: batch.encode_array(rows[part], batch.WEIGHT)}
                for part in batch.weight_parts(len(rows), rows.shape[1])
            ]
            self.client.send_many([self.client.message(protocol.EVOLUTION, msg, answer) for answer in answers])
        elif command == "GET":
            self.client.send_many(
                [
                    self.client.message(protocol.EVOLUTION, msg, {"WEIGHTS": weights, "COMPONENT_ID": model_id})
                    for model_id, weights in self.weights().items()
                ]
            )
        elif command == "SET":
            if isinstance(msg.get("WEIGHTS"), dict):
                self._load(msg["WEIGHTS"])
            if batch.BATCH_WEIGHTS in msg:
                self._load_batch(msg)

    def _load_batch(self, msg: dict) -> None:
        """SET's BATCH_WEIGHTS: the rows of this pool's ids among its COMPONENT_IDS."""
        parsed = batch_weights(msg, self.population.weights.shape[1])
        if parsed is None:
            log.warning("models: ignored a malformed BATCH_WEIGHTS in SET")
            return
        ids, rows = parsed
        with self._lock:
            for model_id, row in zip(ids, rows):
                index = self._index.get(model_id)
                if index is not None:
                    self.population.weights[index] = row

    def _load(self, weights: dict) -> None:
        with self._lock:
            for model_id, vector in weights.items():
                index = self._index.get(model_id)
                if index is None:
                    continue  # another component's model
                try:
                    self.population.set_model(index, vector)
                except (ValueError, TypeError, OverflowError) as error:  # (an integer past float's range)
                    log.warning("models: SET for %s refused: %s", model_id, error)
