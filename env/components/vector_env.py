"""Vectorised runs: N instances of the environment behind one component.

Components layer: extends :mod:`.environment` (and steps :mod:`.instances`); the runtime's
session runs it.

With N > 1 one message on ``observation`` carries every instance's observation (and the
rewards, dones and actions of the step just taken), one ``ACTION`` carries N actions
(:mod:`cartpole_tui.env.wire.batch`). A run is vectorised only when the broker's census
says every other member of the per-step rooms registered as batch-capable; otherwise,
and always for one instance, :class:`EnvironmentComponent` plays it exactly as before.

Accounting stays unbiased: a run's ``NR_OF_EPISODE`` episodes are split into a fixed
quota per instance up front (never "stop at the total", which favours short episodes),
every episode is reported, numbered in start order (:func:`episode_number`, so episodes
end out of number order), the average is over exactly the run's episodes, and each
instance's seed is derived from the run's seed, so a seeded run repeats for a given N.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from swergio import MESSAGE_TYPE, Trigger

from cartpole_tui.env import defaults
from cartpole_tui.env.components.environment import ActiveRun, EnvironmentComponent, EnvironmentLogic
from cartpole_tui.env.components.instances import Instances, make_instances
from cartpole_tui.env.events import EpisodeFinished
from cartpole_tui.env.wire import batch, protocol
from cartpole_tui.env.wire.transport import Component

log = logging.getLogger(__name__)


def quotas(episodes: int, n: int) -> list[int]:
    """``episodes`` split over ``n`` instances, fixed up front (the first ones get the rest)."""
    return [episodes // n + (i < episodes % n) for i in range(n)]


def episode_number(instance: int, played: int, n: int) -> int:
    """The number (1-based) of the ``played``-th episode (0-based) of ``instance`` of ``n``: in
    start order, a fixed interleave — every instance's first episode, then every second one, …

    Numbered as they end, a run's short episodes would come first and its curve would rise as
    if it learned. With :func:`quotas` the numbers of a run are exactly 1..episodes: only the
    first ``episodes % n`` instances play a last round, and they are its first numbers.
    """
    return played * n + instance + 1


def instance_seeds(seed: int | None, n: int) -> list[int | None]:
    """One seed per instance, derived from the run's seed (None: unseeded)."""
    if seed is None:
        return [None] * n
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(n)]


@dataclass
class VectorRun(ActiveRun):
    quotas: list[int] = field(default_factory=list)
    played: list[int] = field(default_factory=list)  # episodes finished per instance
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))  # the running episodes' scores
    lengths: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # ... and steps
    active: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.intp))  # actions awaited from these
    awaited: str = ""  # the INSTANCES text of the observation out: its ACTION must say exactly that


class VectorLogic:
    """N instances of ``base``'s environment; the run lives in ``base.run`` so that a
    start, a stop or the N = 1 path ends it as any run."""

    def __init__(self, base: EnvironmentLogic):
        self.base = base
        self.instances: Instances | None = None  # made for the first vectorised run, grown when needed
        self.size = 0

    def start(self, message: dict, n: int) -> tuple[list[dict], dict]:
        """Begin a run on ``n`` instances: (control messages, first batch observation)."""
        episodes, deterministic, seed, run_id = self.base.checked_start(message)
        outgoing = self.base.stop()
        run_id = run_id or protocol.new_id()
        seed = seed if seed is not None else self.base.seed
        instances = self.instances
        if instances is None or n > self.size:
            instances = self.instances = make_instances(self.base.env_id, n, self.base.env)
            self.size = n
        observations = [instances.reset(i, s) for i, s in enumerate(instance_seeds(seed, n))]
        run = VectorRun(
            run_id, episodes, deterministic, time.monotonic(), seed=seed, instances=n, started_at=time.time()
        )
        run.quotas, run.played, run.active = quotas(episodes, n), [0] * n, np.arange(n)
        run.scores, run.lengths = np.zeros(n), np.zeros(n, dtype=np.int64)
        self.base.run = run
        outgoing += self.base.announce(run)
        payload = batch.observation(n, run.active, observations, deterministic)
        payload.update(protocol.announcement(self.base.spaces, run_id))
        payload["ROOT_ID"], run.awaited = run_id, payload["INSTANCES"]
        return outgoing, payload

    def step(self, message: dict) -> tuple[list[dict], dict | None]:
        """Apply a batch ACTION: (control messages, next batch observation or None when dropped)."""
        run, instances = self.base.run, self.instances
        if not isinstance(run, VectorRun) or instances is None or message.get("ROOT_ID", run.run_id) != run.run_id:
            self.base.stale_actions += 1
            return [], None
        try:
            chosen = batch.parse_actions(message, run.awaited, len(run.active), self.base.n_actions)
        except protocol.ProtocolError as error:
            return self.base.refuse(f"bad actions from {message.get('SENT_BY', '?')}: {error}", run.run_id), None
        stepped = run.active
        observations, rewards, dones = instances.step(stepped, chosen)
        run.scores[stepped] += rewards
        run.lengths[stepped] += 1
        run.steps += len(stepped)
        going = np.ones(len(stepped), dtype=bool)
        ended: list[EpisodeFinished] = []
        now = time.time()
        for k in np.flatnonzero(dones).tolist():
            i = int(stepped[k])
            ended.append(self._end_episode(run, i, now))
            if run.played[i] < run.quotas[i]:
                observations[k] = instances.reset(i)
            else:
                going[k] = False
        outgoing: list[dict] = []
        if ended:
            # Every observer hears of the step's episodes at once: the recorder commits them in one
            # transaction, still before the next observation goes out (a kill -9 loses none).
            self.base.notify_episodes(ended)
            columns = ([e.episode for e in ended], [e.score for e in ended], [e.steps for e in ended])
            outgoing = [protocol.episodes_done(run.run_id, *columns, ended_at=now)]
        if stepped[0] == 0:  # the cart view shows instance 0
            for observer in self.base.observers:
                observer.on_step(observations[0], float(rewards[0]), bool(dones[0]))
        run.active = stepped[going]
        payload = batch.observation(len(run.quotas), run.active, observations[going], run.deterministic)
        payload.update(batch.results(stepped, rewards, dones, chosen), ROOT_ID=run.run_id)
        run.awaited = payload["INSTANCES"]
        if not len(run.active):
            outgoing += self.base._end_run(stopped=False)
        return outgoing, payload

    def _end_episode(self, run: VectorRun, i: int, now: float) -> EpisodeFinished:
        event = EpisodeFinished(
            run.run_id,
            episode_number(i, run.played[i], len(run.quotas)),
            float(run.scores[i]),
            int(run.lengths[i]),
            now,
        )
        run.played[i] += 1
        run.ended(event)
        run.scores[i], run.lengths[i] = 0.0, 0
        return event


class BatchClient(Component):
    batch = True


class VectorEnvironmentComponent(EnvironmentComponent):
    """The environment component that vectorises a run when the network allows it.

    A start of more than one instance first asks the broker for a census; the run begins
    when it answers (or after ``census_timeout`` s with one instance, and from then on
    without asking: a broker that does not answer, such as swergio.Server, never will).
    """

    client_class = BatchClient

    def __init__(
        self,
        host: str,
        port: int,
        *,
        parallel: int = defaults.PARALLEL,
        census_timeout: float = defaults.CENSUS_TIMEOUT,
        **kwargs: Any,
    ):
        if not 1 <= parallel <= batch.MAX_INSTANCES:
            raise ValueError(f"parallel must be in 1..{batch.MAX_INSTANCES}, got {parallel}")
        self.parallel = parallel
        self.census_timeout = census_timeout
        self._pending: tuple[dict, int, str] | None = None  # a start (its RUN_ID checked) waiting for its census
        self._census_answered: bool | None = None  # False: this broker does not answer
        super().__init__(host, port, **kwargs)
        self.vector = VectorLogic(self.logic)
        self.instances = 1  # of the current or last run
        self.client.add_eventHandler(
            self._on_census, None, trigger=Trigger(MESSAGE_TYPE.COMMAND.CUSTOM, protocol.COMMAND_ROOM)
        )

    def _wanted(self, msg: dict) -> int:
        """Instances a start asks for (1 unless vectorising may be allowed); ProtocolError if invalid."""
        if not protocol.is_start(msg) or self._census_answered is False:
            return 1
        episodes, _, _, _ = self.logic.checked_start(msg)  # refused now, not after the census
        return min(episodes, batch.parse_parallel(msg, self.parallel))

    def _on_control(self, msg: dict) -> dict | None:
        with self._lock:
            if self._pending is not None and (protocol.is_stop(msg) or protocol.is_start(msg)):
                self._drop_pending()
            try:
                n = self._wanted(msg)
            except protocol.ProtocolError as error:
                self._send_all(self.logic.refuse(f"start refused: {error}"))
                return None
            if n > 1:
                self._deferred = None  # the stopped run's first observation is never sent
                self._send_all(self.logic.stop())
                request = batch.census_request()
                self._pending = (msg, n, request["ID"])
                self.client.send(request)
                timer = threading.Timer(self.census_timeout, self._census_timed_out, args=(request["ID"],))
                timer.daemon = True
                timer.start()
                return None
            if protocol.is_start(msg):
                self.instances = 1
        return super()._on_control(msg)

    def _drop_pending(self) -> None:
        """A stop or another start overrides a start still waiting for its census: that run
        ends stopped before its first episode, so whoever started it is not left waiting. It is
        announced (and recorded) first, as every run it took: the room that started it said
        "run 7 started", the others heard only its end and said "run 7 stopped"."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        # the last run's observation still waiting for its ACTION holds the next first one back
        # (its LOGITS mixed with the new run's hang the published aggregation): kept as it was
        awaiting, since = self.logic.awaiting, self.logic.awaiting_since
        try:
            outgoing, payload = self.logic.start(pending[0])  # its first observation is never sent
        except protocol.ProtocolError:  # its RUN_ID recorded meanwhile (a shared history)
            outgoing, payload = [], None
        self.logic.awaiting, self.logic.awaiting_since = awaiting, since
        if payload is None:  # refused or failed: its end is told all the same
            run_id = protocol.parse_run_id(pending[0]) or protocol.new_id()
            outgoing.append(protocol.env_done(0.0, run_id, 0, stopped=True))
        self._send_all(outgoing + self.logic.stop())

    def _on_census(self, msg: dict) -> None:
        with self._lock:
            if self._pending is None or msg.get("ROOT_ID") != self._pending[2] or batch.CENSUS not in msg:
                return
            start, n, _ = self._pending
            self._pending = None
            self._census_answered = True
            allowed = batch.census_allows_batches(msg)
            if not allowed:
                log.info(
                    "one instance: a listener of the step rooms on this broker did not register BATCH,"
                    " or the broker cannot tell (a gateway counts only its own clients)"
                )
            self._begin(start, n if allowed else 1)

    def _census_timed_out(self, census_id: str) -> None:
        with self._lock:
            if self._pending is None or self._pending[2] != census_id:
                return
            log.info("the broker does not answer a census: one instance per run")
            start = self._pending[0]
            self._pending = None
            self._census_answered = False
            self._begin(start, 1)

    def _begin(self, start: dict, n: int) -> None:
        """Start the run on ``n`` instances and send its first observation (lock held); one
        instance starts as every one-instance run does: after the last observation's ACTION."""
        self.instances = n
        payload: dict[str, Any] | None
        if n > 1:
            outgoing, payload = self.vector.start(start, n)
            self._send_all(outgoing)
        else:
            payload = self._start_one(start)
        if payload is None:
            return  # refused (its ENV_ERROR was sent), or deferred
        message = {**payload, "ID": protocol.new_id(), "TYPE": protocol.CUSTOM, "TO_ROOM": protocol.OBSERVATION}
        self.client.send({**message, "SENT_BY": self.client.name})  # SENT_BY: the broker need not re-encode

    def _on_action(self, msg: dict) -> dict | None:
        vectorised = isinstance(self.logic.run, VectorRun)
        if not vectorised and not batch.is_batch(msg):
            return super()._on_action(msg)  # the published path, untouched
        with self._lock:
            if not batch.is_batch(msg):
                self.logic.stale_actions += 1
                return None
            outgoing, payload = self.vector.step(msg)
            self._send_all(outgoing)
            return payload
