"""The control client: start, stop and evolve; the network's answers as events.

Components layer (a client on env/wire): the runtime's session opens it, the schedule
drives it, and the app and command line read its events.

Works with the published components (ENV_DONE without RUN_ID, no EPISODE_DONE, an
evolution that answers EVO_DONE more than once) and with ours. Every wait has a
time-out whose message names what did not answer: the published components hang
silently when a peer dies.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from swergio import MESSAGE_TYPE, Trigger

from cartpole_tui.env import defaults
from cartpole_tui.env.components.evolution_answers import EvolutionAnswers
from cartpole_tui.env.components.health import NetworkHealth
from cartpole_tui.env.components.seen import NameFlood, SeenEpisodes
from cartpole_tui.env.events import (
    BrokerStats,
    CartSeen,
    ComponentSeen,
    Disconnected,
    EpisodeFinished,
    EvolutionFinished,
    NetworkError,
    RunFinished,
    RunJoined,
    RunStarted,
)
from cartpole_tui.env.wire import protocol
from cartpole_tui.env.wire.transport import Component


class ControlTimeout(TimeoutError):
    """Something the control client waited for did not answer in time."""


class ControlClient:
    """A named swergio client on the ``control`` room.

    ``on_event`` receives RunStarted (our environment's RUN_STARTED), RunJoined (its RUN_STATE),
    EpisodeFinished, RunFinished, EvolutionFinished, NetworkError, ComponentSeen and
    Disconnected, in the listener thread.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        name: str = "control",
        on_event: Callable[[object], None] | None = None,
        connect_timeout: float = defaults.CONNECT_TIMEOUT,
        on_run_sent: Callable[[RunStarted], None] | None = None,
        watch_cart: bool = False,
    ):
        self.on_event = on_event
        self.on_run_sent = on_run_sent  # told of every start this client sends
        # True when our environment plays: it always sends RUN_ID, so an ENV_DONE without
        # one is foreign. False for the published environment, which never sends it.
        self.expects_run_id = False
        self._cond = threading.Condition()
        self._run_id: str | None = None  # the run this client started last
        self._asked = 0  # its NR_OF_EPISODE
        self._scores: list[float] = []
        self._episodes = SeenEpisodes()  # the episodes of its run counted so far
        self._last_progress = 0.0
        self._result: RunFinished | None = None
        self._evolution = EvolutionAnswers(watch_room=self._watch_evolution)
        self._lost: str | None = None
        self.health = NetworkHealth()
        self._names = NameFlood()  # component names seen: bounded, a flood summarised
        self.stats: BrokerStats | None = None  # the broker's latest (ours sends them; others do not)
        self.client = Component(name, host, port, connect_timeout=connect_timeout, on_disconnect=self._disconnected)
        custom = MESSAGE_TYPE.DATA.CUSTOM
        self.client.add_eventHandler(self._on_control, custom, trigger=Trigger(custom, protocol.CONTROL))
        commands = [MESSAGE_TYPE.COMMAND.REGISTER, MESSAGE_TYPE.COMMAND.JOINROOM]
        self.client.add_eventHandler(self._on_command, None, trigger=Trigger(commands, protocol.COMMAND_ROOM))
        self.client.add_eventHandler(
            self._on_stats, None, trigger=Trigger(MESSAGE_TYPE.LOG.CUSTOM, protocol.STATS_ROOM)
        )
        if watch_cart:  # the environment is elsewhere: its cart room, for CartSeen events
            self.client.add_eventHandler(self._on_cart, None, trigger=Trigger(custom, protocol.CART))
        self.environment_answered = False  # a RUN_STATE came: the environment is ours, not the published one
        self.client.start()

    def watch_observations(self, on_observation: Callable[[tuple[float, ...], float | None, bool], None]) -> None:
        """Join ``observation`` (the published environment tells nothing else): ``on_observation``
        gets each one-instance observation, its reward (None: a run's first) and done."""

        def heard(msg: dict) -> None:
            try:
                on_observation(*protocol.parse_observation_step(msg))
            except protocol.ProtocolError:
                return

        custom = MESSAGE_TYPE.DATA.CUSTOM
        self.client.add_eventHandler(heard, None, trigger=Trigger(custom, protocol.OBSERVATION))

    def _on_cart(self, msg: dict) -> None:
        try:
            self._emit(CartSeen(protocol.parse_cart(msg)))
        except protocol.ProtocolError:
            return  # a malformed view of the cart: nothing to draw

    def close(self) -> None:
        self.client.close()

    def _emit(self, event: object) -> None:
        if self.on_event is not None:
            self.on_event(event)

    # --- commands -----------------------------------------------------------------

    def start_run(self, episodes: int, deterministic: bool = False, seed: int | None = None) -> str:
        """Send a start; returns the run id (the published environment ignores it)."""
        message = protocol.start_run(episodes, deterministic, seed=seed)
        with self._cond:
            self._run_id = message["RUN_ID"]
            self._asked = episodes
            self._scores = []
            self._episodes = SeenEpisodes()
            self._result = None
            self._last_progress = time.monotonic()
        self.client.send(message)
        if self.on_run_sent is not None:
            self.on_run_sent(RunStarted(message["RUN_ID"], episodes, deterministic, seed, time.time()))
        return message["RUN_ID"]

    @property
    def run_id(self) -> str | None:
        return self._run_id

    def scores(self) -> list[float]:
        """The scores of the current run's finished episodes (EPISODE_DONE) so far."""
        with self._cond:
            return list(self._scores)

    def stop_run(self) -> None:
        self.client.send(protocol.stop_run())

    def query_state(self) -> None:
        """Ask the environment for its run state (ours answers RUN_STATE; the published one nothing)."""
        self.client.send(protocol.state_query())

    def request_evolution(self) -> str:
        message = protocol.evolution_request()
        message["ROOT_ID"] = message["ID"]  # swergio copies ROOT_ID into replies
        with self._cond:
            self._drain_evo_done()
            self._evolution.ask(message["ID"], time.monotonic())
        self.client.send(message)
        return message["ID"]

    # --- waits ----------------------------------------------------------------------

    def wait_run(self, idle_timeout: float = defaults.RUN_IDLE_TIMEOUT) -> RunFinished:
        """Block until the current run ends; ControlTimeout after ``idle_timeout`` s without progress."""
        with self._cond:
            while self._result is None:
                self._raise_if_lost()
                idle = time.monotonic() - self._last_progress
                if idle >= idle_timeout:
                    what = (
                        "no episode finished"
                        if self._scores
                        else "the environment did not answer (is an environment component on the control room?)"
                    )
                    raise ControlTimeout(f"{what} for {idle_timeout:.0f}s")
                self._cond.wait(min(0.5, idle_timeout - idle))
            return self._result

    def run(
        self,
        episodes: int,
        deterministic: bool = False,
        seed: int | None = None,
        idle_timeout: float = defaults.RUN_IDLE_TIMEOUT,
    ) -> RunFinished:
        self.start_run(episodes, deterministic, seed)
        return self.wait_run(idle_timeout)

    def evolve(self, timeout: float = defaults.EVOLVE_ANSWER_TIMEOUT) -> EvolutionFinished:
        """One evolution step: EVOLUTION, then the first EVO_DONE that answers it."""
        self.request_evolution()
        with self._cond:
            while self._evolution.answer is None:
                self._raise_if_lost()
                left = timeout - (time.monotonic() - self._evolution.started)
                if left <= 0:
                    self._evolution.give_up()
                    raise ControlTimeout(f"no evolution component answered EVOLUTION within {timeout:.0f}s")
                self._cond.wait(min(0.5, left))
            return self._evolution.answer

    def _watch_evolution(self) -> None:
        """An evolution that answers with foreign ROOT_IDs (the published one): watch the
        evolution room for answers to our own GET (see :mod:`.evolution_answers`)."""
        custom = MESSAGE_TYPE.DATA.CUSTOM
        self.client.add_eventHandler(self._on_evolution_room, None, trigger=Trigger(custom, protocol.EVOLUTION))

    def _on_evolution_room(self, msg: dict) -> None:
        with self._cond:
            self._evolution.seen_in_room(msg.get("ROOT_ID"))

    def _drain_evo_done(self) -> None:
        """Wait (holding the condition) until EVO_DONEs have been quiet: whatever arrives
        before the new request is sent answers an earlier one. Not while every answer named its
        request (ours): the wait was 0.1-0.3 s of every round of a schedule."""
        if self._evolution.echoes:
            return
        deadline = time.monotonic() + defaults.EVOLVE_DRAIN_MAX
        while True:
            now = time.monotonic()
            quiet_for = now - self._evolution.last_heard
            if quiet_for >= defaults.EVOLVE_DRAIN_QUIET or now >= deadline:
                return
            self._cond.wait(min(defaults.EVOLVE_DRAIN_QUIET - quiet_for, deadline - now))

    def _raise_if_lost(self) -> None:
        if self._lost is not None:
            raise ConnectionError(f"lost the broker: {self._lost}")

    # --- incoming ---------------------------------------------------------------------

    def _disconnected(self, reason: str) -> None:
        with self._cond:
            self._lost = reason
            self._cond.notify_all()
        self._emit(Disconnected(reason))

    def _on_command(self, msg: dict) -> None:
        name = msg.get("NAME") or msg.get("SENT_BY")
        now = time.monotonic()
        if isinstance(name, str):
            name = protocol.clean_text(name, 80)
            room = msg.get("ROOM")
            room = protocol.clean_text(room, 80) if isinstance(room, str) else None
            with self._cond:
                tell = self._names.tell(name, now)
            if tell:
                self._emit(ComponentSeen(name, room))
        self._summarise_names(now)

    def _summarise_names(self, now: float) -> None:
        """A flood of new names is one line a second, not one a name."""
        with self._cond:
            untold = self._names.summary(now)
        if untold:
            self._emit(NetworkError("network", f"{untold:,} more components seen (a flood of names: not listed)"))

    def _on_stats(self, msg: dict) -> None:
        stats = msg.get("STATS")
        if not isinstance(stats, dict):
            return
        try:
            rooms = {
                protocol.clean_text(room, 80): tuple(int(v) for v in values)
                for room, values in stats.get("rooms", {}).items()
            }
            event = BrokerStats(
                tuple(protocol.clean_text(c, 80) for c in stats.get("clients", ())),
                rooms,
                int(stats.get("frames_refused", 0)),
                int(stats.get("undeliverable", 0)),
                time.monotonic(),
            )
        except (TypeError, ValueError, AttributeError):
            return  # not our broker's format: ignore, as with any unknown message
        self._summarise_names(time.monotonic())
        with self._cond:
            self.stats = event
            running = self._run_id is not None and self._result is None
            self._cond.notify_all()
        self._emit(event)
        for warning in self.health.observe(event, running):
            self._emit(warning)

    def wait_stats(self, timeout: float) -> BrokerStats | None:
        """The broker's first stats, or None when none came in ``timeout`` s (not our broker)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.stats is None and time.monotonic() < deadline:
                self._cond.wait(deadline - time.monotonic())
            return self.stats

    def _on_control(self, msg: dict) -> None:
        status = protocol.control_status(msg)
        if status == protocol.EPISODE_DONE:
            self._on_episode(msg)
        elif status == protocol.EPISODES_DONE:
            self._on_episodes(msg)
        elif status == protocol.ENV_DONE:
            self._on_env_done(msg)
        elif status == protocol.EVO_DONE:
            self._on_evo_done(msg)
        elif status in (protocol.RUN_STARTED, protocol.RUN_STATE):
            self._on_run_facts(msg, status)
        elif status == protocol.ENV_ERROR:
            self._emit(
                NetworkError(
                    protocol.clean_text(msg.get("SENT_BY", "environment"), 80),
                    protocol.clean_text(msg.get("ERROR", "")),
                    msg["RUN_ID"] if protocol.valid_run_id(msg.get("RUN_ID")) else None,
                )
            )

    def _on_run_facts(self, msg: dict, status: str) -> None:
        if status == protocol.RUN_STATE:
            self.environment_answered = True
        if status == protocol.RUN_STATE and msg.get("RUN_ID") is None:
            return  # no run going
        try:
            facts = protocol.parse_run_facts(msg)
            started = RunStarted(**facts)
            if status == protocol.RUN_STARTED:
                self._emit(started)
                return
            finished, steps, scores = protocol.parse_run_progress(msg, started.episodes)
        except protocol.ProtocolError as error:
            sender = protocol.clean_text(msg.get("SENT_BY", "?"), 80)
            self._emit(NetworkError(sender, protocol.clean_text(f"malformed {status}: {error}")))
            return
        self._emit(RunJoined(started, finished, steps, tuple(scores)))

    def _on_episode(self, msg: dict) -> None:
        try:
            run_id, episode, score, steps = protocol.parse_episode_done(msg)
        except protocol.ProtocolError as error:
            self._malformed(msg, protocol.EPISODE_DONE, error)
            return
        self._take_episodes(run_id, [(episode, score, steps)])

    def _on_episodes(self, msg: dict) -> None:
        try:
            run_id, episodes = protocol.parse_episodes_done(msg)
        except protocol.ProtocolError as error:
            self._malformed(msg, protocol.EPISODES_DONE, error)
            return
        self._take_episodes(run_id, episodes)

    def _take_episodes(self, run_id: str | None, episodes: list[tuple[int, float, int]]) -> None:
        now = time.time()
        events = [EpisodeFinished(run_id or "", episode, score, steps, now) for episode, score, steps in episodes]
        with self._cond:
            if run_id == self._run_id:
                # a second copy of a finished episode is dropped: the first counts (the run events count it)
                events = [e for e in events if self._episodes.first(e.episode)]
                self._scores.extend(e.score for e in events)
                self._last_progress = time.monotonic()
        for event in events:
            self._emit(event)

    def _malformed(self, msg: dict, status: str, error: protocol.ProtocolError) -> None:
        sender = protocol.clean_text(msg.get("SENT_BY", "?"), 80)
        self._emit(NetworkError(sender, protocol.clean_text(f"ignored a malformed {status}: {error}")))

    def _on_env_done(self, msg: dict) -> None:
        try:
            run_id, average, episodes, stopped = protocol.parse_env_done(msg)
        except protocol.ProtocolError as error:
            self._malformed(msg, protocol.ENV_DONE, error)
            return
        if run_id is None and self.expects_run_id:
            sender = protocol.clean_text(msg.get("SENT_BY", "?"), 80)
            self._emit(NetworkError(sender, "ignored an ENV_DONE without RUN_ID (ours always sends one)"))
            return
        with self._cond:
            # The published environment sends no RUN_ID: its ENV_DONE is the current run's.
            mine = self._run_id is not None and run_id in (None, self._run_id)
            result = RunFinished(
                run_id or self._run_id,
                average,
                # the published ENV_DONE has no EPISODES; it comes after exactly the episodes asked for
                episodes or len(self._scores) or (self._asked if mine and run_id is None else 0),
                stopped,
                list(self._scores) if mine else [],
            )
            if mine:
                self._result = result
                self._cond.notify_all()
        self._emit(result)

    def _on_evo_done(self, msg: dict) -> None:
        with self._cond:
            answer = self._evolution.heard(msg, time.monotonic(), time.time())
            if answer is None:
                return
            self._cond.notify_all()
        self._emit(answer)
