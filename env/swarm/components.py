"""The built-in learning swarm: K numpy models, an aggregation and an evolution.

Three swergio components that speak the published RLGym network's messages
(PROTOCOL.md), so each can stand in for its published counterpart:

- :class:`ModelPool` hosts K policy models behind one client: on ``observation`` it
  answers one ``LOGITS`` message per model on ``logits`` (all K in one write); on
  ``evolution`` it answers GET with one ``WEIGHTS`` message per model and loads SET.
- :class:`Aggregation` waits for one ``LOGITS`` from each of ``models`` models (a
  model silent for ``timeout`` s is logged and left out until it answers again),
  answers ``ACTION`` on ``action`` and GET with ``CONTRIBUTION`` (rules in
  :mod:`env.aggregation`).
- :class:`Evolution`, on ``{"EVOLUTION": true}`` in ``control``: GET, one generation
  (:mod:`env.genetic`), SET, ``EVO_DONE`` on ``control``.

:class:`Swarm` runs all three in one process; :func:`serve_swarm` is
``cartpole-tui swarm``.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import threading
import time
from typing import Callable

import numpy as np
from swergio import MESSAGE_TYPE, Trigger

from cartpole_tui.env.swarm import genetic
from cartpole_tui.env.wire import protocol
from cartpole_tui.env.swarm.aggregation_logic import AggregationLogic
from cartpole_tui.env.swarm.policy import N_ACTIONS, N_WEIGHTS, OBS_SIZE, Population
from cartpole_tui.env.wire.transport import Component, ConnectionLost

log = logging.getLogger(__name__)

CUSTOM = MESSAGE_TYPE.DATA.CUSTOM
DEFAULT_MODELS = 20
DEFAULT_MODEL_TIMEOUT = 2.0  # s an aggregation waits for a step's missing LOGITS
DEFAULT_EVOLUTION_TIMEOUT = 5.0  # s an evolution waits for WEIGHTS and CONTRIBUTION


class _Client(Component):
    """A Component with a direct path for its per-step rooms and writes of several frames.

    ``on_room(room, fn)`` joins ``room`` and hands its DATA/CUSTOM messages straight
    to ``fn`` (which sends its own replies), skipping the generic handler scan: at 20
    LOGITS a step that scan is a sizeable share of the aggregation's time.
    """

    def __init__(self, name: str, host: str, port: int, **kwargs):
        super().__init__(name, host, port, **kwargs)
        self._ids = itertools.count()
        self._id_prefix = protocol.new_id()[:16]
        self._direct: dict[str, Callable[[dict], None]] = {}

    def on_room(self, room: str, function: Callable[[dict], None]) -> None:
        self.join_room(room)
        self._direct[room] = function

    def dispatch(self, message: dict) -> None:
        function = self._direct.get(message.get("TO_ROOM"))
        if function is None or message.get("TYPE") != CUSTOM.id:
            super().dispatch(message)
            return
        try:
            function(message)
        except ConnectionLost:
            raise
        except Exception:  # a handler's bug must not end the component
            log.exception("%s: handler %s failed", self.name, function.__name__)

    def next_id(self) -> str:
        """A message ID unique to this client (cheaper than a uuid4 per message)."""
        return f"{self._id_prefix}{next(self._ids):x}"

    def message(self, room: str, trigger: dict | None, payload: dict) -> dict:
        """A DATA/CUSTOM message to ``room``, carrying the trigger's ROOT_ID and MODEL_STATUS.

        SENT_BY is set here so that the broker need not re-encode the frame.
        """
        payload.update(ID=self.next_id(), TYPE=CUSTOM.id, TO_ROOM=room)
        return self.add_propagated_fields(trigger or {}, payload)

    def send_many(self, messages: list[dict]) -> None:
        self.send_frames(b"".join(protocol.encode_frame(m) for m in messages))

    def send_frames(self, data: bytes) -> None:
        """Ready-made frames in one write."""
        with self._send_lock:
            try:
                self.client.sendall(data)
            except OSError as error:
                raise ConnectionLost(f"send to broker failed: {error.strerror or error}") from None


def _finite_vector(value, length: int) -> list[float] | None:
    """``value`` if it is a list of ``length`` finite numbers (not bools), else None."""
    if type(value) is not list or len(value) != length:
        return None
    if not all(type(x) is float or type(x) is int for x in value):
        return None
    return value if math.isfinite(sum(value)) else None  # a sum that overflows is refused too


class _Watchdog:
    """Calls ``check`` every ``interval`` s in a daemon thread until stopped."""

    def __init__(self, name: str, interval: float, check: Callable[[], None]):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(interval, check), name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self, interval: float, check: Callable[[], None]) -> None:
        while not self._stop.wait(interval):
            try:
                check()
            except Exception:  # a failed check must not end the watchdog
                log.exception("watchdog %s failed", self._thread.name)

    def stop(self) -> None:
        self._stop.set()


# --- models ---------------------------------------------------------------------------------


class _Watched:
    """A component whose client is watched for time-outs by ``_watchdog``; started and closed together."""

    client: _Client
    _watchdog: _Watchdog

    def start(self):
        self.client.start()
        self._watchdog.start()
        return self

    def close(self) -> None:
        self._watchdog.stop()
        self.client.close()


class ModelPool:
    """K policy models (:class:`env.policy.Population`) behind one swergio client."""

    def __init__(self, host: str, port: int, *, models: int = DEFAULT_MODELS, seed: int | None = None,
                 name: str = "models", on_disconnect=None):
        self.population = Population(models, seed)
        # Random, not seeded: two pools on one broker must not share ids, and nothing
        # depends on their values (ties go by arrival order), so runs stay reproducible.
        self.ids = [protocol.new_id() for _ in range(models)]
        self._index = {model_id: i for i, model_id in enumerate(self.ids)}
        self._frame_tails = [f',"COMPONENT_ID":"{model_id}","LOGITS":[' for model_id in self.ids]
        self._lock = threading.Lock()  # weights change on SET while observations are answered
        self.client = _Client(name, host, port, on_disconnect=on_disconnect)
        self.client.on_room(protocol.OBSERVATION, self._on_observation)
        self.client.add_eventHandler(self._on_evolution, None, trigger=Trigger(CUSTOM, protocol.EVOLUTION))

    def start(self) -> "ModelPool":
        self.client.start()
        return self

    def close(self) -> None:
        self.client.close()

    def weights(self) -> dict[str, list[float]]:
        with self._lock:
            return {model_id: self.population.weights[i].tolist() for i, model_id in enumerate(self.ids)}

    def _on_observation(self, msg: dict) -> None:
        obs = _finite_vector(msg.get("OBSERVATION"), OBS_SIZE)
        if obs is None:
            log.warning("models: ignored an observation without %d finite numbers", OBS_SIZE)
            return
        with self._lock:
            logits = self.population.logits(obs)
        if not np.isfinite(logits).all():
            log.warning("models: non-finite logits (weights out of range?) sent as 0")
            logits = np.where(np.isfinite(logits), logits, 0.0)
        self.client.send_frames(self._logits_frames(msg, logits.tolist()))

    def _logits_frames(self, msg: dict, logits: list[list[float]]) -> bytes:
        """K LOGITS frames, formatted from a template: json.dumps per frame would cost
        as much as everything else a model does in a step."""
        common = {"TYPE": CUSTOM.id, "TO_ROOM": protocol.LOGITS, "SENT_BY": self.client.name,
                  "DETERMINISTIC": bool(msg.get("DETERMINISTIC", False))}
        for key in ("ROOT_ID", "MODEL_STATUS"):
            if key in msg:
                common[key] = msg[key]
        head = json.dumps(common, separators=(",", ":"))[:-1]
        next_id = self.client.next_id
        return b"".join(protocol.frame_bytes(f'{head},"ID":"{next_id()}"{tail}{left!r},{right!r}]}}'.encode())
                        for tail, (left, right) in zip(self._frame_tails, logits))

    def _on_evolution(self, msg: dict) -> None:
        command = msg.get("CMD")
        if command == "GET":
            self.client.send_many([
                self.client.message(protocol.EVOLUTION, msg, {"WEIGHTS": weights, "COMPONENT_ID": model_id})
                for model_id, weights in self.weights().items()])
        elif command == "SET" and isinstance(msg.get("WEIGHTS"), dict):
            self._load(msg["WEIGHTS"])

    def _load(self, weights: dict) -> None:
        with self._lock:
            for model_id, vector in weights.items():
                index = self._index.get(model_id)
                if index is None:
                    continue  # another component's model
                try:
                    self.population.set_model(index, vector)
                except (ValueError, TypeError) as error:
                    log.warning("models: SET for %s refused: %s", model_id, error)


# --- aggregation ---------------------------------------------------------------------------------


class Aggregation(_Watched):
    """Turns one LOGITS per model into one ACTION; answers GET with CONTRIBUTION."""

    def __init__(self, host: str, port: int, *, models: int = DEFAULT_MODELS, seed: int | None = None,
                 timeout: float = DEFAULT_MODEL_TIMEOUT, solo: bool = True, name: str = "aggregation",
                 on_disconnect=None):
        if models < 1:
            raise ValueError(f"models must be >= 1, got {models}")
        self.models = models
        self.timeout = timeout
        self.logic = AggregationLogic(seed, solo)
        self.expected = models  # LOGITS that complete a step; lowered when models time out
        self.silent: set[str] = set()  # models that timed out and have not answered since
        self._pending: dict[str, list[float]] = {}
        self._pending_since = 0.0
        self._trigger: dict | None = None  # the step's last LOGITS message (its ROOT_ID is propagated)
        self._acted = False  # an ACTION went out since the last observation
        self._lock = threading.Lock()
        self.client = _Client(name, host, port, on_disconnect=on_disconnect)
        self.client.on_room(protocol.OBSERVATION, self._on_observation)
        self.client.on_room(protocol.LOGITS, self._on_logits)
        self.client.add_eventHandler(self._on_evolution, CUSTOM, responseRooms=protocol.EVOLUTION,
                                     trigger=Trigger(CUSTOM, protocol.EVOLUTION))
        self._watchdog = _Watchdog(f"{name}-timeouts", min(0.1, timeout / 4), self._check_timeout)

    def _on_observation(self, msg: dict) -> None:
        reward = msg.get("REWARD")
        reward = float(reward) if isinstance(reward, (int, float)) and not isinstance(reward, bool) else None
        with self._lock:
            self._acted = False
            self.logic.observe(reward, bool(msg.get("DONE", False)))

    def _on_logits(self, msg: dict) -> None:
        logits = _finite_vector(msg.get("LOGITS"), N_ACTIONS)
        model_id = msg.get("COMPONENT_ID")
        if logits is None or not isinstance(model_id, str):
            log.warning("aggregation: ignored LOGITS from %s without %d finite numbers and a COMPONENT_ID",
                        msg.get("SENT_BY", "?"), N_ACTIONS)
            return
        with self._lock:
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

    def _act(self) -> None:
        """Answer the pending step (lock held)."""
        pending, trigger = self._pending, self._trigger
        self._pending, self._trigger, self._acted = {}, None, True
        action = self.logic.choose(pending, bool(trigger.get("DETERMINISTIC", False)))
        self.client.send(self.client.message(protocol.ACTION, trigger, {"ACTION": [action]}))

    def _check_timeout(self) -> None:
        with self._lock:
            if not self._pending or time.monotonic() - self._pending_since < self.timeout:
                return
            missing = set(self.logic.order) - set(self._pending)
            self.silent |= missing
            log.warning("aggregation: %d of %d models did not answer within %.1fs (%s); carrying on with %d",
                        self.expected - len(self._pending), self.expected, self.timeout,
                        ", ".join(sorted(missing)) or "never heard from", len(self._pending))
            self.expected = len(self._pending)
            self._act()

    def _on_evolution(self, msg: dict) -> dict | None:
        if msg.get("CMD") != "GET":
            return None
        with self._lock:
            return {"CONTRIBUTION": self.logic.contribution()}


# --- evolution -------------------------------------------------------------------------------


class Evolution(_Watched):
    """On EVOLUTION in control: GET, one generation, SET, EVO_DONE."""

    def __init__(self, host: str, port: int, *, models: int = DEFAULT_MODELS, seed: int | None = None,
                 settings: genetic.GeneticSettings = genetic.SWARM, timeout: float = DEFAULT_EVOLUTION_TIMEOUT,
                 name: str = "evolution", on_disconnect=None):
        self.models = models
        self.settings = settings
        self.timeout = timeout
        self.generations = 0
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self._requests: list[dict] = []  # the EVOLUTION messages to answer with this generation
        self._started = 0.0
        self._weights: dict[str, list[float]] = {}
        self._contribution: dict | None = None
        self.client = _Client(name, host, port, on_disconnect=on_disconnect)
        self.client.add_eventHandler(self._on_control, None, trigger=Trigger(CUSTOM, protocol.CONTROL))
        self.client.add_eventHandler(self._on_evolution, None, trigger=Trigger(CUSTOM, protocol.EVOLUTION))
        self._watchdog = _Watchdog(f"{name}-timeouts", 0.1, self._check_timeout)

    def _on_control(self, msg: dict) -> None:
        if not protocol.is_evolution_request(msg):
            return
        with self._lock:
            self._requests.append(msg)
            if len(self._requests) > 1:
                return  # answered by the generation under way
            self._started = time.monotonic()
            self._weights, self._contribution = {}, None
            self.client.send(self.client.message(protocol.EVOLUTION, msg, {"CMD": "GET"}))

    def _on_evolution(self, msg: dict) -> None:
        with self._lock:
            if not self._requests:
                return
            if "WEIGHTS" in msg and isinstance(msg.get("COMPONENT_ID"), str):
                weights = _finite_vector(msg["WEIGHTS"], N_WEIGHTS)
                if weights is None:
                    log.warning("evolution: ignored WEIGHTS of %s: not %d finite numbers",
                                msg["COMPONENT_ID"], N_WEIGHTS)
                    return
                self._weights[msg["COMPONENT_ID"]] = weights
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
            log.warning("evolution: after %.1fs %d of %d models sent WEIGHTS%s; evolving what answered",
                        self.timeout, len(self._weights), self.models,
                        "" if self._contribution is not None else " and no aggregation sent CONTRIBUTION")
            self._finish()

    def _finish(self) -> None:
        """SET the next generation and answer EVO_DONE (lock held)."""
        requests, self._requests = self._requests, []
        request = requests[0]
        ids = list(self._weights)
        done: dict = {"STATUS": protocol.EVO_DONE}
        if len(ids) >= 2:
            contribution = self._contribution or {}
            fitness = [self._fitness(contribution.get(i)) for i in ids]
            population = np.asarray([self._weights[i] for i in ids])
            offspring = genetic.next_generation(population, fitness, self.settings, self._rng)
            self.client.send(self.client.message(protocol.EVOLUTION, request, {
                "CMD": "SET", "WEIGHTS": dict(zip(ids, offspring.tolist()))}))
            self.generations += 1
            done["GENERATION"] = self.generations
        else:
            done["ERROR"] = f"{len(ids)} models answered GET; nothing to evolve"
            log.warning("evolution: %s", done["ERROR"])
        self.client.send_many([self.client.message(protocol.CONTROL, r, dict(done)) for r in requests])

    @staticmethod
    def _fitness(value) -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return float(value) if ok else 0.0


# --- the whole swarm ---------------------------------------------------------------------------------


class Swarm:
    """Models, aggregation and evolution in this process (one client and thread each)."""

    def __init__(self, host: str, port: int, models: int = DEFAULT_MODELS, seed: int | None = None, *,
                 on_disconnect: Callable[[str], None] | None = None):
        if models < 1:
            raise ValueError(f"models must be >= 1, got {models}")
        seeds = np.random.SeedSequence(seed).generate_state(3) if seed is not None else (None,) * 3
        seeds = [None if s is None else int(s) for s in seeds]
        self.components = []
        try:
            self.evolution = self._add(Evolution(host, port, models=models, seed=seeds[2], on_disconnect=on_disconnect))
            self.aggregation = self._add(Aggregation(host, port, models=models, seed=seeds[1],
                                                     on_disconnect=on_disconnect))
            self.models = self._add(ModelPool(host, port, models=models, seed=seeds[0], on_disconnect=on_disconnect))
        except Exception:
            self.close()
            raise

    def _add(self, component):
        self.components.append(component)
        return component

    def start(self) -> "Swarm":
        for component in self.components:
            component.start()
        return self

    def close(self) -> None:
        for component in reversed(self.components):
            component.close()


def serve_swarm(host: str, port: int, models: int = DEFAULT_MODELS, seed: int | None = None) -> None:
    """Run the swarm until Ctrl-C or until the broker goes away (then ConnectionLost)."""
    from cartpole_tui.env.wire.transport import ConnectionLost
    lost: list[str] = []
    gone = threading.Event()

    def on_disconnect(reason: str) -> None:
        lost.append(reason)
        gone.set()

    swarm = Swarm(host, port, models, seed, on_disconnect=on_disconnect).start()
    try:
        while not gone.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        swarm.close()
    if lost:
        raise ConnectionLost(lost[0])
