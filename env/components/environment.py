"""The environment component: the seed's CartPole environment on gymnasium.

Components layer (a client on env/wire): the runtime's session runs it as
:mod:`.vector_env`'s subclass; the history records its runs through an
:class:`~cartpole_tui.env.events.EnvironmentObserver`.

Same rooms, messages and run accounting as the published component (PROTOCOL.md),
plus the additions listed in the README: EPISODE_DONE per episode, STOP, SEED,
RUN_ID/ROOT_ID per run (actions from an earlier run are dropped and counted), and
bad actions reported on ``control`` instead of crashing. :class:`EnvironmentLogic`
holds the rules without sockets; :class:`EnvironmentComponent` puts it on the wire.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from swergio import MESSAGE_TYPE, Trigger

from cartpole_tui.env import defaults
from cartpole_tui.env.components.frames import picture
from cartpole_tui.env.components.spaces import CARTPOLE, make_env, spaces
from cartpole_tui.env.events import EnvironmentObserver, EnvSpaces, EpisodeFinished, RunFinished, RunStarted
from cartpole_tui.env.wire import protocol
from cartpole_tui.env.wire.transport import Component

log = logging.getLogger(__name__)


@dataclass
class ActiveRun:
    run_id: str
    episodes: int
    deterministic: bool
    started: float
    finished_episodes: int = 0
    total_score: float = 0.0
    score: float = 0.0
    episode_steps: int = 0
    steps: int = 0
    observations: int = 0
    seed: int | None = None
    instances: int = 1
    started_at: float = 0.0  # wall clock, time.time()
    # the latest episodes to end, (number, score, steps, ended at): RUN_STATE tells them to a room joining
    recent: deque[tuple[int, float, int, float]] = field(
        default_factory=lambda: deque(maxlen=protocol.MAX_STATE_SCORES)
    )
    best: float | None = None  # of its finished episodes
    finished_steps: int = 0  # ... their steps (``steps`` also counts the episodes playing)

    def ended(self, event: EpisodeFinished) -> None:
        """One of its episodes finished: counted, and kept for RUN_STATE."""
        self.finished_episodes += 1
        self.total_score += event.score
        self.best = event.score if self.best is None else max(self.best, event.score)
        self.finished_steps += event.steps
        self.recent.append((event.episode, event.score, event.steps, event.wall_time))

    def facts(self, spaces: EnvSpaces) -> dict:
        """What RUN_STARTED and RUN_STATE say about this run (and the environment it plays)."""
        return protocol.run_facts(
            self.run_id,
            self.episodes,
            self.deterministic,
            self.seed,
            self.instances,
            spaces.env_id,
            self.started_at,
            spaces,
        )

    def finish(self, stopped: bool) -> RunFinished:
        n = self.finished_episodes
        avg = self.total_score / n if n else 0.0
        return RunFinished(
            self.run_id,
            avg,
            n,
            stopped,
            steps=self.steps,
            seconds=time.monotonic() - self.started,
            ended_at=time.time(),
        )


class EnvironmentLogic:
    """Run accounting and stepping, free of sockets; every method returns what to send."""

    def __init__(self, env_id: str = defaults.ENV_ID, seed: int | None = None):
        if seed is not None and not 0 <= seed <= defaults.SEED_MAX:
            raise ValueError(f"seed must be a whole number 0..{defaults.SEED_MAX}, got {seed}")
        self.env_id = env_id
        # Instance 0 renders the environment pane's pictures; CartPole's pane draws its observation.
        self.env = make_env(env_id, render_mode=None if env_id == CARTPOLE.env_id else "rgb_array")
        self.spaces = spaces(self.env, env_id)
        self.n_actions = self.spaces.actions
        self.seed = seed
        self.run: ActiveRun | None = None
        self.stale_actions = 0
        self.awaiting: str | None = None  # ROOT_ID of the observation waiting for its ACTION
        self.awaiting_since = 0.0
        self.wait_before_first = 0.0  # set by start(): s its first observation should wait
        self.observers: list[EnvironmentObserver] = []
        self.history: tuple[str, str] | None = None  # (host, path) of the file its runs are recorded in
        # RUN_IDs of the runs it began (the latest RUN_IDS_KEPT), and whether the history it writes
        # holds one: a start reusing either is refused, so an earlier run's rows are never touched
        self.played: OrderedDict[str, None] = OrderedDict()
        self.recorded: Callable[[str], bool] = lambda run_id: False

    def announce(self, run: ActiveRun) -> list[dict]:
        """Tell the observers, then the control room (RUN_STARTED), that ``run`` began.

        The observers first: a recorder has the run's row committed before a follower hears of it."""
        self.played[run.run_id] = None
        while len(self.played) > defaults.RUN_IDS_KEPT:
            self.played.popitem(last=False)
        self.notify(
            "on_run_started",
            RunStarted(
                run.run_id,
                run.episodes,
                run.deterministic,
                run.seed,
                run.started_at,
                run.instances,
                self.env_id,
                self.history,
                self.spaces,
            ),
        )
        return [protocol.run_started(run.facts(self.spaces), self.history)]

    def state(self) -> dict:
        """RUN_STATE: the answer to a state query."""
        run = self.run
        if run is None:
            return protocol.run_state(None, 0, 0, [], self.history)
        return protocol.run_state(
            run.facts(self.spaces),
            run.finished_episodes,
            run.steps,
            list(run.recent),
            self.history,
            (run.best, run.finished_steps),
        )

    def notify(self, method: str, event: object) -> None:
        for observer in tuple(self.observers):
            getattr(observer, method)(event)

    def notify_episodes(self, events: list[EpisodeFinished]) -> None:
        """Several episodes that ended in one step (a vectorised run's), to each observer at once."""
        for observer in tuple(self.observers):
            observer.on_episodes(events)

    def checked_start(self, message: dict) -> tuple[int, bool, int | None, str | None]:
        """(episodes, deterministic, seed, RUN_ID or None) of a start, checked for every path that
        begins a run (one instance or vectorised); ProtocolError when invalid or when RUN_ID names
        the run playing (its in-flight actions would step the new one) or an earlier run (its
        rows would take the new run's episodes)."""
        episodes, deterministic, seed = protocol.parse_start(message)
        run_id = protocol.parse_run_id(message)
        if self.run is not None and run_id == self.run.run_id:
            raise protocol.ProtocolError(f"RUN_ID {protocol.clean_text(run_id, 80)} is the run already playing")
        if run_id is not None and (run_id in self.played or self.recorded(run_id)):
            raise protocol.ProtocolError(
                f"RUN_ID {protocol.clean_text(run_id, 80)} is an earlier run's: a new run needs a new RUN_ID"
            )
        return episodes, deterministic, seed, run_id

    def start(self, message: dict) -> tuple[list[dict], dict | None]:
        """Begin a run: (control messages, first observation payload). ProtocolError if invalid
        (nothing changed); any later failure ends the replaced run and is an ENV_ERROR (payload None)."""
        episodes, deterministic, seed, run_id = self.checked_start(message)
        outgoing = []
        if self.run is not None:  # a start during a run replaces it, as the published one does
            outgoing += self._end_run(stopped=True)
        self.wait_before_first = self._unanswered_for()
        try:
            run_id = run_id or protocol.new_id()
            seed = seed if seed is not None else self.seed
            obs, _ = self.env.reset(seed=seed)
            self.run = ActiveRun(run_id, episodes, deterministic, time.monotonic(), seed=seed, started_at=time.time())
            outgoing += self.announce(self.run)
        except Exception as error:  # e.g. a store refusing the run: the run is refused, we go on
            log.exception("start failed")
            self.run = None
            return outgoing + self.refuse(f"start failed: {error}"), None
        payload = protocol.observation(obs, deterministic) | protocol.announcement(self.spaces, run_id)
        return outgoing, self._awaiting(payload, self.run)

    def _awaiting(self, payload: dict, run: ActiveRun) -> dict:
        """Mark ``payload`` as the one observation waiting for its ACTION; ROOT_ID names it."""
        run.observations += 1
        payload["ROOT_ID"] = self.awaiting = f"{run.run_id}:{run.observations}"
        self.awaiting_since = time.monotonic()
        return payload

    def _unanswered_for(self) -> float:
        """Seconds a new first observation should still wait for the last one's ACTION."""
        if self.awaiting is None:
            return 0.0
        return max(0.0, defaults.FIRST_OBSERVATION_WAIT - (time.monotonic() - self.awaiting_since))

    def stop(self) -> list[dict]:
        """End the current run early; ENV_DONE over the finished episodes with STOPPED."""
        return self._end_run(stopped=True)

    def step(self, message: dict) -> tuple[list[dict], dict | None]:
        """Apply an ACTION: (control messages, observation payload or None when dropped)."""
        run = self.run
        root = message.get("ROOT_ID")
        # One ACTION per observation: it names the observation (ROOT_ID), or names none
        # (or only the run) and is taken when an observation waits. Others are dropped.
        loose = root is None or (run is not None and root == run.run_id)
        if self.awaiting is None or not (loose or root == self.awaiting):
            self.stale_actions += 1
            return [], None
        if run is None:  # the answer to the observation sent with the run's ENV_DONE
            self.awaiting = None
            self.stale_actions += 1
            return [], None
        try:
            action = protocol.parse_action(message, self.n_actions)
        except protocol.ProtocolError as error:
            return self.refuse(f"bad action from {message.get('SENT_BY', '?')}: {error}", run.run_id), None
        self.awaiting = None
        obs, step_reward, terminated, truncated, _ = self.env.step(action)
        reward, done = float(step_reward), bool(terminated or truncated)
        run.score += reward
        run.episode_steps += 1
        run.steps += 1
        outgoing: list[dict] = []
        if done:
            outgoing += self._end_episode(run)
            obs, _ = self.env.reset()
        for observer in self.observers:
            observer.on_step(obs, reward, done)
        payload = protocol.observation(obs, run.deterministic, reward, done, [action])
        return outgoing, self._awaiting(payload, run)  # also after the run's ENV_DONE, as published

    def refuse(self, text: str, run_id: str | None = None) -> list[dict]:
        """Log a refused message; the ENV_ERROR to send on control."""
        log.warning("%s", text)
        return [protocol.env_error(text, run_id)]

    def _end_episode(self, run: ActiveRun) -> list[dict]:
        event = EpisodeFinished(run.run_id, run.finished_episodes + 1, run.score, run.episode_steps, time.time())
        run.ended(event)
        run.score, run.episode_steps = 0.0, 0
        self.notify("on_episode", event)
        outgoing = [protocol.episode_done(run.run_id, event.episode, event.score, event.steps, event.wall_time)]
        if run.finished_episodes >= run.episodes:
            outgoing += self._end_run(stopped=False)
        return outgoing

    def _end_run(self, stopped: bool) -> list[dict]:
        """End the current run (if any): its ENV_DONE."""
        run, self.run = self.run, None
        if run is None:
            return []
        result = run.finish(stopped)
        self.notify("on_run_finished", result)
        return [protocol.env_done(result.avg_score, run.run_id, result.episodes, stopped, result.ended_at)]


class CartPublisher(EnvironmentObserver):
    """Sends instance 0 to the ``cart`` room so that control rooms without the environment draw
    it (a time check a step): CartPole's observation at most ``protocol.CART_HZ`` times a second;
    any other environment's picture (:mod:`.frames`) at most ``defaults.FRAME_HZ`` times, which
    the observers here get too (``on_frame``)."""

    def __init__(self, send: Callable[[dict], None], logic: EnvironmentLogic, hz: float = protocol.CART_HZ):
        self._send = send
        self._logic = logic
        self._pictures = logic.env_id != CARTPOLE.env_id
        self._interval = 1.0 / (min(hz, defaults.FRAME_HZ) if self._pictures else hz)
        self._next = 0.0

    def on_step(self, observation, reward: float, done: bool) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self._interval
        run = self._logic.run
        run_id = run.run_id if run is not None else None
        if self._pictures:
            message = self._picture(run_id)
            if message is None:
                return
        else:
            message = protocol.cart(observation, run_id)
        try:
            self._send(message)
        except ConnectionError:
            pass  # the listener reports the lost connection

    def _picture(self, run_id: str | None) -> dict | None:
        try:
            shown = picture(self._logic.env.render())
        except Exception as error:  # a renderer that fails (no display library…) must not stop the run
            log.warning("environment: no pictures of %s: %s", self._logic.env_id, error)
            self._next = math.inf  # said once; the pane stays as it is
            return None
        if shown is None:
            return None
        self._logic.notify("on_frame", shown)
        return protocol.frame(shown, run_id)


class EnvironmentComponent:
    """The environment on the wire: listens on ``control`` and ``action``, answers on ``observation``."""

    client_class = Component  # vector_env's subclass uses one that registers as batch-capable

    def __init__(
        self,
        host: str,
        port: int,
        *,
        env_id: str = defaults.ENV_ID,
        name: str = "environment",
        seed: int | None = None,
        on_disconnect: Callable[[str], None] | None = None,
    ):
        self.logic = EnvironmentLogic(env_id, seed)
        self._lock = threading.Lock()  # control and action handlers share one run
        self._deferred: dict | None = None  # a first observation waiting for the last one's ACTION
        self._answered_at = -defaults.STATE_ANSWER_INTERVAL  # monotonic time of the last RUN_STATE answer
        self._unanswered: dict | None = None  # the latest query come since, answered when the interval is over
        self.queries_coalesced = 0  # state queries answered by a later answer (a flood of them)
        self.client = self.client_class(name, host, port, on_disconnect=on_disconnect)
        custom = MESSAGE_TYPE.DATA.CUSTOM
        self.client.add_eventHandler(
            self._on_control, custom, responseRooms=protocol.OBSERVATION, trigger=Trigger(custom, protocol.CONTROL)
        )
        self.client.add_eventHandler(
            self._on_action, custom, responseRooms=protocol.OBSERVATION, trigger=Trigger(custom, protocol.ACTION)
        )
        # A member of its own cart room: swergio.Server fails on a message to a room nobody joined.
        self.client.add_eventHandler(lambda msg: None, None, trigger=Trigger(custom, protocol.CART))
        # Set once anything reaches it through ``control``: then it is a member (its JOINROOM was
        # routed), so what this process sends there from now on reaches it. Told in-process: no
        # peer can set it (a SENT_BY or a name on the wire can be anyone's).
        self.heard_control = threading.Event()
        self.client.add_eventHandler(
            lambda msg: self.heard_control.set(), None, trigger=Trigger(custom, protocol.CONTROL)
        )
        self.add_observer(CartPublisher(self.client.send, self.logic))

    def add_observer(self, observer: EnvironmentObserver) -> None:
        self.logic.observers.append(observer)

    def start(self) -> EnvironmentComponent:
        self.client.start()
        # Said once on joining: a control room that joined first, heard no answer to its state
        # query and took the network for the published environment (watching ``observation``,
        # where it would keep runs to one instance) learns the environment is ours.
        self.client.send(self.logic.state())
        return self

    def close(self) -> None:
        """Leave the network. A run still playing ends stopped first, recorded with its finished
        episodes and told to the network while it can be: closing the app's terminal (SIGHUP)
        left it "running", and the next start called it failed."""
        with self._lock:
            if self.logic.run is not None:
                ended = self.logic.stop()
                with contextlib.suppress(ConnectionError):
                    self._send_all(ended)
        self.client.close()

    def _send_all(self, messages: list[dict]) -> None:
        if messages:  # one write: a vectorised step can end dozens of episodes
            self.client.send_many(messages)

    def _refused_by_agents(self, msg: dict) -> bool:
        """Models built for another environment said so (WRONG_ENV) for the run playing: it would
        wait for them for ever, so it ends stopped (anyone may STOP a run: this is no new power)."""
        run = self.logic.run
        return (
            protocol.control_status(msg) == protocol.WRONG_ENV and run is not None and msg.get("RUN_ID") == run.run_id
        )

    def _on_control(self, msg: dict) -> dict | None:
        with self._lock:
            if protocol.is_stop(msg) or self._refused_by_agents(msg):
                self._deferred = None  # a stopped run's first observation is never sent
                self._send_all(self.logic.stop())
                return None
            if protocol.is_state_query(msg):
                self._answer_state(msg)
                return None
            if not protocol.is_start(msg):
                return None
            return self._start_one(msg)

    def _answer_state(self, query: dict) -> None:
        """Answer a state query (lock held): at once, or, within STATE_ANSWER_INTERVAL of the last
        answer, with one answer (naming the latest query) when the interval is over."""
        now = time.monotonic()
        wait = self._answered_at + defaults.STATE_ANSWER_INTERVAL - now
        if wait <= 0 and self._unanswered is None:
            self._answered_at = now
            self.client.send(protocol.state_answer(self.logic.state(), query))
            return
        self.queries_coalesced += 1
        if self._unanswered is None:
            timer = threading.Timer(max(wait, 0.0), self._answer_later)
            timer.daemon = True
            timer.start()
        self._unanswered = query

    def _answer_later(self) -> None:
        with self._lock:
            query, self._unanswered = self._unanswered, None
            if query is None:
                return
            self._answered_at = time.monotonic()
            with contextlib.suppress(ConnectionError):  # the listener reports the lost connection
                self.client.send(protocol.state_answer(self.logic.state(), query))

    def _start_one(self, msg: dict) -> dict | None:
        """Start a one-instance run (lock held); every one-instance start comes through here.

        Returns the first observation to send now, or None: refused, or deferred until the
        last observation's ACTION comes, at most ``FIRST_OBSERVATION_WAIT`` s after that
        observation went out."""
        self._deferred = None  # the replaced run's, if it was still waiting
        try:
            outgoing, payload = self.logic.start(msg)
        except protocol.ProtocolError as error:
            self._send_all(self.logic.refuse(f"start refused: {error}"))
            return None
        self._send_all(outgoing)
        wait = self.logic.wait_before_first
        if payload is None or wait <= 0:
            return payload
        # The last observation is still being answered: a first observation now would mix
        # its LOGITS with the old ones (the published aggregation then hangs).
        self._deferred = payload
        timer = threading.Timer(wait, self._send_deferred, (payload,))
        timer.daemon = True  # never holds the process open at exit
        timer.start()
        return None

    def _send_deferred(self, payload: dict | None = None) -> None:
        """Send the deferred first observation (``payload``: only if it is still the deferred one)."""
        with self._lock:
            if self._deferred is None or (payload is not None and payload is not self._deferred):
                return
            message, self._deferred = protocol.custom(protocol.OBSERVATION, **self._deferred), None
            self.logic.awaiting_since = time.monotonic()
            try:
                self.client.send(message)
            except ConnectionError:
                pass  # the listener reports the lost connection

    def _on_action(self, msg: dict) -> dict | None:
        with self._lock:
            if self._deferred is not None:  # the late answer to the last run's observation
                self.logic.stale_actions += 1
                self.logic.awaiting = self._deferred["ROOT_ID"]
                self._lock.release()
                try:
                    self._send_deferred()
                finally:
                    self._lock.acquire()
                return None
            outgoing, payload = self.logic.step(msg)
            self._send_all(outgoing)
            return payload
