"""The built-in swarm's evolution, on ``{"EVOLUTION": true}`` in ``control``.

Swarm layer: one of the three parts :mod:`.swarm` runs (a :mod:`.client` on env/wire).

GET on ``evolution`` (every model's ``WEIGHTS`` — all of a pool's in one ``BATCH_WEIGHTS``
when the pool is ours, and SET sends them back so —, the aggregation's ``CONTRIBUTION``,
averaged for a model it SET unchanged with its earlier generations':
:class:`~.genetic.Remembered`), one generation (:mod:`cartpole_tui.env.swarm.genetic`), SET, and ``EVO_DONE`` on
``control``. What has not answered within ``timeout`` s is left out of the generation.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np
from swergio import Trigger

from cartpole_tui.env import defaults
from cartpole_tui.env.components.spaces import CARTPOLE
from cartpole_tui.env.events import EnvSpaces
from cartpole_tui.env.swarm import genetic
from cartpole_tui.env.swarm.batching import batch_weights
from cartpole_tui.env.swarm.client import CUSTOM, SwarmComponent, finite_vector
from cartpole_tui.env.swarm.policy import biases, n_weights
from cartpole_tui.env.wire import batch, protocol

log = logging.getLogger(__name__)


class Evolution(SwarmComponent):
    """On EVOLUTION in control: GET, one generation, SET, EVO_DONE."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        models: int = defaults.MODELS,
        seed: int | None = None,
        settings: genetic.GeneticSettings = genetic.SWARM,
        timeout: float = defaults.EVOLUTION_GATHER_TIMEOUT,
        name: str = "evolution",
        on_disconnect: Callable[[str], None] | None = None,
        spaces: EnvSpaces = CARTPOLE,
    ):
        self.models = models
        self.n_weights = n_weights(spaces.observations, spaces.actions)  # a model's, for the environment
        self._biases = biases(spaces.observations, spaces.actions)  # left at 0 in our models
        self.settings = settings
        self.timeout = timeout
        self.generations = 0
        # called with (next population, generation number) after each SET
        self.on_generation: Callable[[np.ndarray, int], None] | None = None
        self._rng = np.random.default_rng(seed)
        self._remembered = genetic.Remembered()  # the fitness of models it SET unchanged, over generations
        self._lock = threading.Lock()
        self._requests: list[dict] = []  # the EVOLUTION messages to answer with this generation
        self._started = 0.0
        self._weights: dict[str, np.ndarray] = {}
        self._batched: set[str] = set()  # the models whose weights came as BATCH_WEIGHTS, and go back so
        self._contribution: dict | None = None
        super().__init__(name, host, port, on_disconnect, check_every=0.1)
        self.client.add_eventHandler(self._on_control, None, trigger=Trigger(CUSTOM, protocol.CONTROL))
        self.client.add_eventHandler(self._on_evolution, None, trigger=Trigger(CUSTOM, protocol.EVOLUTION))

    def _on_control(self, msg: dict) -> None:
        if not protocol.is_evolution_request(msg):
            return
        with self._lock:
            self._requests.append(msg)
            if len(self._requests) > 1:
                return  # answered by the generation under way
            self._started = time.monotonic()
            self._weights, self._batched, self._contribution = {}, set(), None
            # BATCH_WEIGHTS: our pool answers in one message; published models ignore it and send WEIGHTS
            self.client.send(self.client.message(protocol.EVOLUTION, msg, {"CMD": "GET", batch.BATCH_WEIGHTS: True}))

    def _on_evolution(self, msg: dict) -> None:
        with self._lock:
            if not self._requests:
                return
            if "WEIGHTS" in msg and isinstance(msg.get("COMPONENT_ID"), str):
                weights = finite_vector(msg["WEIGHTS"], self.n_weights)
                if weights is None:
                    log.warning(
                        "evolution: ignored WEIGHTS of %s: not %d finite numbers", msg["COMPONENT_ID"], self.n_weights
                    )
                    return
                self._weights[msg["COMPONENT_ID"]] = np.asarray(weights, dtype=np.float64)
            elif batch.BATCH_WEIGHTS in msg and "CMD" not in msg:  # a pool's answer, not a SET
                parsed = batch_weights(msg, self.n_weights)
                if parsed is None:
                    log.warning("evolution: ignored a malformed BATCH_WEIGHTS from %s", msg.get("SENT_BY", "?"))
                    return
                self._weights.update(zip(*parsed))
                self._batched.update(parsed[0])
            elif isinstance(msg.get("CONTRIBUTION"), dict):
                self._contribution = msg["CONTRIBUTION"]
            else:
                return
            if len(self._weights) >= self.models and self._contribution is not None:
                self._finish()

    def _check_timeout(self) -> None:
        with self._lock:
            if not self._requests or time.monotonic() - self._started < self.timeout:
                return
            log.warning(
                "evolution: after %.1fs %d of %d models sent WEIGHTS%s; evolving what answered",
                self.timeout,
                len(self._weights),
                self.models,
                "" if self._contribution is not None else " and no aggregation sent CONTRIBUTION",
            )
            self._finish()

    def _finish(self) -> None:
        """SET the next generation and answer EVO_DONE (lock held)."""
        requests, self._requests = self._requests, []
        request = requests[0]
        ids = list(self._weights)  # in the order WEIGHTS came: a pool answers in its own fixed order
        done: dict = {"STATUS": protocol.EVO_DONE}
        if len(ids) >= 2:
            contribution = self._contribution or {}
            population = np.asarray([self._weights[i] for i in ids])
            fitness = self._remembered.average(population, [self._fitness(contribution.get(i)) for i in ids]).tolist()
            # our models' biases are 0 and stay so; published models' (torch's random ones) or a file's
            # from before are evolved as the other weights: kept, the elite's went to every child
            kept = None if population[:, self._biases].any() else self._biases
            offspring = genetic.next_generation(population, fitness, self.settings, self._rng, kept)
            self._remembered.keep(offspring)
            # additive: what the control room's population pane shows
            done["FITNESS"] = fitness
            done["ELITE"] = int(np.argmax(fitness))
            done["DIVERSITY"] = genetic.diversity(population)
            self.client.send_many(
                [self.client.message(protocol.EVOLUTION, request, s) for s in self._set(ids, offspring)]
            )
            self.generations += 1
            done["GENERATION"] = self.generations
            if self.on_generation is not None:
                self.on_generation(offspring, self.generations)
        else:
            done["ERROR"] = f"{len(ids)} models answered GET; nothing to evolve"
            log.warning("evolution: %s", done["ERROR"])
        self.client.send_many([self.client.message(protocol.CONTROL, r, dict(done)) for r in requests])

    def _set(self, ids: list[str], offspring: np.ndarray) -> list[dict]:
        """SET: WEIGHTS lists for the models that sent WEIGHTS, BATCH_WEIGHTS for those that sent that,
        in messages of at most BATCH_WEIGHTS_MAX_BYTES of it (a frame has a cap); each carries the
        lists whole (a published model dies of a SET without its id: KeyError)."""
        batched = [k for k, model_id in enumerate(ids) if model_id in self._batched]
        listed = [k for k, model_id in enumerate(ids) if model_id not in self._batched]
        lists = {ids[k]: offspring[k].tolist() for k in listed}
        if not batched:
            return [{"CMD": "SET", "WEIGHTS": lists}]
        return [
            {
                "CMD": "SET",
                "WEIGHTS": lists,
                "COMPONENT_IDS": [ids[k] for k in batched[part]],
                batch.BATCH_WEIGHTS: batch.encode_array(offspring[batched[part]], batch.WEIGHT),
            }
            for part in batch.weight_parts(len(batched), offspring.shape[1])
        ]

    @staticmethod
    def _fitness(value: object) -> float:
        number = protocol.finite(value)
        return 0.0 if number is None else number
