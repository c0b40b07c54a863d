"""The control client: start, stop and evolve; the network's answers as events.

Components layer (a client on env/wire): the runtime's session opens it, the schedule
drives it, and the app and command line read its events.

Works with the published components (ENV_DONE without RUN_ID, no EPISODE_DONE, an
evolution that answers EVO_DONE more than once) and with ours. Every wait has a
time-out whose message names what did not answer: the published components hang
silently when a peer dies.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

from swergio import MESSAGE_TYPE, Trigger

from cartpole_tui.env import defaults
from cartpole_tui.env.components.evolution_answers import EvolutionAnswers
from cartpole_tui.env.components.health import NetworkHealth
from cartpole_tui.env.components.model_census import ModelCensus
from cartpole_tui.env.components.schedules import Schedules
from cartpole_tui.env.components.seen import NameFlood, SeenEpisodes
from cartpole_tui.env.events import (
    BrokerStats,
    CartSeen,
    ComponentSeen,
    Disconnected,
    EpisodeFinished,
    EvolutionFinished,
    EvolutionSeen,
    NetworkError,
    RunFinished,
    RunJoined,
    RunStarted,
    ScheduleEnded,
    StartHeard,
)
from cartpole_tui.env.wire import protocol
from cartpole_tui.env.wire.transport import Component


class ControlTimeout(TimeoutError):
    """Something the control client waited for did not answer in time."""


class _ControlComponent(Component):
    """The control client's connection. It says BATCH: when it listens to the per-step rooms
    (slow runs only) the broker's census must not count it as a published component."""

    batch = True


class WrongEnvironment(ControlTimeout):
    """A component on the network was built for another environment than the run's: no answer will come."""


class ControlClient:
    """A named swergio client on the ``control`` room.

    ``on_event`` receives RunStarted (our environment's RUN_STARTED), RunJoined (its RUN_STATE),
    EpisodeFinished, RunFinished, EvolutionFinished, EvolutionSeen, NetworkError, ComponentSeen and
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
        # Whether a run's news (RunStarted, RunJoined, EpisodeFinished, RunFinished) from a
        # sender (its SENT_BY) counts: the session's RunEvents decides; alone, everyone's does.
        self.admits: Callable[[object, object], bool] = _anyone
        self._cond = threading.Condition()
        self._run_id: str | None = None  # the run this client started last
        self._wrong_env: str | None = None  # a component said the run is of another environment than its own
        self._asked = 0  # its NR_OF_EPISODE
        self._scores: list[float] = []
        self._steps = 0  # the steps of its episodes counted so far (as told by EPISODE_DONE's STEPS)
        self._episodes = SeenEpisodes()  # the episodes of its run counted so far
        self._last_progress = 0.0
        self._result: RunFinished | None = None
        self._evolution = EvolutionAnswers(watch_room=self._watch_evolution)
        self._schedules = Schedules()  # ours, and another room's (guarded by _cond)
        self._lost: str | None = None
        self.health = NetworkHealth()
        self._names = NameFlood()  # component names seen: bounded, a flood summarised
        self.stats: BrokerStats | None = None  # the broker's latest (ours sends them; others do not)
        self.models = ModelCensus()  # which models answered the last observation (while listening to logits)
        self.health.models = self.models
        self.observations = 0  # observations heard in `observation` (once watched)
        self._joined_rooms: set[str] = set()
        self._on_observation: Callable[[tuple[float, ...], float | None, bool, object], None] | None = None
        self._instances = 0  # the current run's instances, from its RUN_STARTED (0: none heard)
        self.client = _ControlComponent(
            name, host, port, connect_timeout=connect_timeout, on_disconnect=self._disconnected
        )
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

    def watch_observations(
        self, on_observation: Callable[[tuple[float, ...], float | None, bool, object], None]
    ) -> None:
        """Join ``observation`` (the published environment tells nothing else): ``on_observation``
        gets each one-instance observation, its reward (None: a run's first), done and SENT_BY.
        From then on a run waits as long as observations come."""
        self._on_observation = on_observation
        self._join(protocol.OBSERVATION, self._heard_observation)

    def watch_models(self) -> None:
        """Join ``observation`` and ``logits``: a stall then says which models did not answer
        (:mod:`.model_census`). Only for slow one-instance runs (every LOGITS of every model comes
        here, and a member of ``observation`` that takes no batches keeps runs to one instance)."""
        self._join(protocol.OBSERVATION, self._heard_observation)
        self._join(protocol.LOGITS, self._heard_logits)

    @property
    def watching_models(self) -> bool:
        return protocol.LOGITS in self._joined_rooms

    def _join(self, room: str, handler: Callable[[dict], None]) -> None:
        with self._cond:
            if room in self._joined_rooms:
                return
            self._joined_rooms.add(room)
            if room == protocol.OBSERVATION:
                self.health.listeners += 1  # this client is one of the observation room's members now
        custom = MESSAGE_TYPE.DATA.CUSTOM
        self.client.add_eventHandler(handler, None, trigger=Trigger(custom, room))

    def _heard_observation(self, msg: dict) -> None:
        try:
            step = protocol.parse_observation_step(msg)
        except protocol.ProtocolError:
            return  # a batch (our vectorised environment) or a malformed one
        with self._cond:
            self.observations += 1
            self.models.observation()
            if self._run_id is not None and self._result is None:
                self._last_progress = time.monotonic()  # a run with observations going is alive
            self._schedules.heard_progress(None, time.monotonic())  # another room's schedule's run too
        self._seen_sender(msg)
        if self._on_observation is not None and not self.environment_answered:
            self._on_observation(*step, msg.get("SENT_BY"))

    def _heard_logits(self, msg: dict) -> None:
        with self._cond:
            self.models.logits(msg)
        self._seen_sender(msg)

    def _seen_sender(self, msg: dict) -> None:
        """A message's SENT_BY names a component: a broker that tells no REGISTER of clients that
        joined before us (swergio.Server) shows them only so."""
        name = msg.get("SENT_BY")
        if not isinstance(name, str) or name == protocol.BROKER:
            return
        name = protocol.clean_text(name, 80)
        with self._cond:
            tell = self._names.tell(name, time.monotonic())
        if tell:
            self._emit(ComponentSeen(name, None))

    def silence(self) -> str | None:
        """What the model census says of the last observation (None: nothing known)."""
        with self._cond:
            return self.models.text()

    def wait_environment(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for our environment's answer to the state query (the published
        one sends none): a start sent after it counts only that environment's news, not a peer's
        that spoke first."""
        with self._cond:
            return self._cond.wait_for(lambda: self.environment_answered, timeout)

    def _environment_is_ours(self) -> None:
        """Our environment spoke (RUN_STATE, RUN_STARTED): were this control room watching
        ``observation`` (it joined before any environment, so nothing answered its state query),
        it leaves: as a member that does not take batches it would keep every run to one instance."""
        with self._cond:
            self.environment_answered = True
            self._cond.notify_all()
        if protocol.OBSERVATION in self.client.rooms and not self.watching_models:
            self.client.rooms.discard(protocol.OBSERVATION)
            with self._cond:  # (its handler stays: what was still on its way is ignored)
                self.health.listeners -= 1
            leave = {"TYPE": protocol.LEAVEROOM, "ROOM": protocol.OBSERVATION, "TO_ROOM": protocol.COMMAND_ROOM}
            self.client.send({"ID": protocol.new_id(), **leave})

    def _on_cart(self, msg: dict) -> None:
        try:
            self._emit(protocol.parse_frame(msg) if protocol.is_frame(msg) else CartSeen(protocol.parse_cart(msg)))
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
        with self._cond:
            message = protocol.start_run(episodes, deterministic, seed=seed, schedule=self._schedules.ours)
            self._run_id = message["RUN_ID"]
            self._asked = episodes
            self._scores, self._steps = [], 0
            self._episodes = SeenEpisodes()
            self._result = None
            self._wrong_env = None
            self._last_progress = time.monotonic()
            self.health.gone = None
        if self.on_run_sent is not None:
            # told before it goes: the environment's RUN_STARTED (even the run's end) may be heard
            # before send() returns, and a start noted after its run was announced began that run
            # again a second later (a loaded machine's schedule re-plotted its runs out of order)
            self.on_run_sent(RunStarted(message["RUN_ID"], episodes, deterministic, seed, time.time()))
        self.client.send(message)
        return message["RUN_ID"]

    @property
    def run_id(self) -> str | None:
        return self._run_id

    @property
    def playing(self) -> bool:
        """Whether the run this client started last is still going (no ENV_DONE yet)."""
        with self._cond:
            return self._run_id is not None and self._result is None

    @property
    def asked(self) -> int:
        """The episodes the run this client started last asked for."""
        return self._asked

    def scores(self) -> list[float]:
        """The scores of the current run's finished episodes (EPISODE_DONE) so far."""
        with self._cond:
            return list(self._scores)

    def stop_run(self) -> None:
        """STOP the run going; another room's schedule is forgotten (it ends on hearing the STOP)."""
        with self._cond:
            self._schedules.forget_other()
        self.client.send(protocol.stop_run())

    # --- schedules ----------------------------------------------------------------------

    def begin_schedule(self, stop: threading.Event) -> None:
        """A schedule of ours begins: its STARTs say so to the other rooms; a STOP from one sets ``stop``."""
        with self._cond:
            self._schedules.begin(stop)

    def end_schedule(self, ending: str) -> None:
        """Our schedule ended (``ending``: one of ``protocol.SCHEDULE_ENDINGS``): the other rooms
        are told (SCHEDULE_ENDED), once, whoever calls first."""
        with self._cond:
            ended = self._schedules.end()
        if ended is not None:
            with contextlib.suppress(ConnectionError):  # the network is gone: nobody to tell
                self.client.send(protocol.schedule_ended(ended, ending))

    @property
    def schedule_elsewhere(self) -> bool:
        """Whether another control room's schedule is going (a run of it, or between its runs)."""
        with self._cond:
            return self._schedules.other(time.monotonic()) is not None

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
            while self._result is None and self._wrong_env is None:
                self._raise_if_lost()
                if self.health.gone is not None:  # nobody is left to play it: no need to wait out the time-out
                    raise ControlTimeout(self.health.gone.text)
                idle = time.monotonic() - self._last_progress
                if idle >= idle_timeout:
                    raise ControlTimeout(self._quiet(idle_timeout))
                self._cond.wait(min(0.5, idle_timeout - idle))
            if self._wrong_env is not None:  # the environment's ENV_DONE (stopped) may be heard before this wakes
                raise WrongEnvironment(self._wrong_env)
            assert self._result is not None  # the loop ended on it
            return self._result

    def _quiet(self, idle_timeout: float) -> str:
        """Which room went quiet, as the time-out says it (lock held)."""
        models = self.models.text() if self.watching_models else None
        if self.observations and protocol.OBSERVATION in self._joined_rooms:
            what = f"no observation for {idle_timeout:.0f}s (room observation went quiet after {self.observations:,})"
        elif self._scores:
            what = f"no episode finished for {idle_timeout:.0f}s (room control went quiet)"
        else:
            what = (
                f"the environment did not answer for {idle_timeout:.0f}s"
                " (is an environment component on the control room?)"
            )
        return f"{what}: {models}" if models else what

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
                    raise ControlTimeout(self._evolution.silence(timeout))
                self._cond.wait(min(0.5, left))
            return self._evolution.answer

    def _watch_evolution(self) -> None:
        """Watch the evolution room for answers to our own GET: the published evolution answers
        with foreign ROOT_IDs, and what went by says why an EVO_DONE did not come
        (see :mod:`.evolution_answers`)."""
        custom = MESSAGE_TYPE.DATA.CUSTOM
        self.client.add_eventHandler(self._on_evolution_room, None, trigger=Trigger(custom, protocol.EVOLUTION))

    def _on_evolution_room(self, msg: dict) -> None:
        with self._cond:
            self._evolution.seen_in_room(msg)
        self._seen_sender(msg)

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

    def _seen_in_stats(self, clients: tuple[str, ...]) -> None:
        """Our broker's stats name every client: those that joined before us (the environment the
        app started, a swarm) are told at the first stats, not at their first message (the log
        said "component seen: environment" after "run 1 started")."""
        now = time.monotonic()
        with self._cond:
            told = [n for n in dict.fromkeys(clients) if n != protocol.UNREGISTERED and self._names.tell(n, now)]
        for name in told:
            self._emit(ComponentSeen(name, None))

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
                protocol.clean_text(room, 80): tuple(_counter(v) for v in values)
                for room, values in stats.get("rooms", {}).items()
            }
            event = BrokerStats(
                tuple(protocol.clean_text(c, 80) for c in stats.get("clients", ())),
                rooms,
                _counter(stats.get("frames_refused", 0)),
                _counter(stats.get("undeliverable", 0)),
                time.monotonic(),
            )
        except (TypeError, ValueError, AttributeError, OverflowError):
            return  # not our broker's format: ignore, as with any unknown message
        self._seen_in_stats(event.clients)
        self._summarise_names(time.monotonic())
        with self._cond:
            previous, self.stats = self.stats, event
            running = self._run_id is not None and self._result is None
            self._cond.notify_all()
        self._emit(event)
        one_instance = not self.environment_answered or self._instances == 1
        if running and one_instance and not self.watching_models and _slow(previous, event):
            self.watch_models()  # before the health's stall report, which then names the silent models
        with self._cond:
            warnings = self.health.observe(event, running)
            if self.health.gone is not None:
                self._cond.notify_all()
        for warning in warnings:
            self._emit(warning)

    def wait_stats(self, timeout: float) -> BrokerStats | None:
        """The broker's first stats, or None when none came in ``timeout`` s (not our broker)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.stats is None and time.monotonic() < deadline:
                self._cond.wait(deadline - time.monotonic())
            return self.stats

    def _on_control(self, msg: dict) -> None:
        self._seen_sender(msg)
        status = protocol.control_status(msg)
        if status is None:
            self._heard_command(msg)  # another room's START or STOP (the broker sends none of ours back)
        elif status == protocol.SCHEDULE_ENDED:
            with self._cond:
                known = self._schedules.heard_ended(msg)
            if known:
                self._emit(ScheduleEnded(protocol.parse_schedule_ending(msg)))
        elif status == protocol.EPISODE_DONE:
            self._on_episode(msg)
        elif status == protocol.EPISODES_DONE:
            self._on_episodes(msg)
        elif status == protocol.ENV_DONE:
            self._on_env_done(msg)
        elif status == protocol.EVO_DONE:
            self._on_evo_done(msg)
        elif status in (protocol.RUN_STARTED, protocol.RUN_STATE):
            self._on_run_facts(msg, status)
        elif status == protocol.WRONG_ENV:
            self._on_wrong_env(msg)
        elif status == protocol.ENV_ERROR:
            self._emit(
                NetworkError(
                    protocol.clean_text(msg.get("SENT_BY", "environment"), 80),
                    protocol.clean_text(msg.get("ERROR", "")),
                    msg["RUN_ID"] if protocol.valid_run_id(msg.get("RUN_ID")) else None,
                )
            )

    def _heard_command(self, msg: dict) -> None:
        with self._cond:
            if protocol.is_start(msg):
                self._schedules.heard_start(msg, time.monotonic())
            stopped = protocol.is_stop(msg) and self._schedules.heard_stop()
        if protocol.is_start(msg):
            self._heard_start(msg)
        if stopped:
            self._emit(
                NetworkError(
                    "schedule",
                    "another control room sent STOP (its x): its run going is stopped, and this schedule ends",
                )
            )

    def _heard_start(self, msg: dict) -> None:
        """Another room's START: its run's size and id, for a room following an environment that
        announces nothing (a malformed one starts no run there either: ignored)."""
        try:
            episodes, deterministic, seed = protocol.parse_start(msg)
        except protocol.ProtocolError:
            return
        named = msg.get("RUN_ID")  # the published notebook's START names none
        run_id = named if isinstance(named, str) and protocol.valid_run_id(named) else protocol.new_id()
        self._emit(StartHeard(RunStarted(run_id, episodes, deterministic, seed, instances=0)))

    def _on_wrong_env(self, msg: dict) -> None:
        """A component built for another environment than the run's: said, and the run's wait
        ends with it (its models are not fed: the run would wait for them in vain)."""
        sender = protocol.clean_text(msg.get("SENT_BY", "?"), 80)
        text = protocol.clean_text(msg.get("ERROR", ""))
        run_id = msg["RUN_ID"] if protocol.valid_run_id(msg.get("RUN_ID")) else None
        with self._cond:
            ours = self._run_id is not None and run_id == self._run_id and self._result is None
            if ours:
                self._wrong_env = NetworkError(sender, text, run_id).line
                self._cond.notify_all()
        self._emit(NetworkError(sender, text, run_id, ends_run=ours))

    def _on_run_facts(self, msg: dict, status: str) -> None:
        self._environment_is_ours()  # the published environment sends neither
        if status == protocol.RUN_STATE and msg.get("RUN_ID") is None:
            self.admits(protocol.RUN_STATE, msg.get("SENT_BY"))  # no run going; but who answers is told
            return
        try:
            facts = protocol.parse_run_facts(msg)
            started = RunStarted(**facts)
            if status == protocol.RUN_STARTED:
                if self.admits(started, msg.get("SENT_BY")):
                    self._instances = started.instances
                    self._emit(started)
                return
            finished, steps, scores = protocol.parse_run_progress(msg, started.episodes)
            numbered = protocol.parse_score_episodes(msg, len(scores), started.episodes, finished)
            figures = protocol.parse_finished_figures(msg, finished)
        except protocol.ProtocolError as error:
            sender = protocol.clean_text(msg.get("SENT_BY", "?"), 80)
            self._emit(NetworkError(sender, protocol.clean_text(f"malformed {status}: {error}")))
            return
        numbers, lengths, ended = numbered if numbered is not None else (None, None, None)
        joined = RunJoined(started, finished, steps, tuple(scores), numbers, lengths, ended, figures)
        if self.admits(joined, msg.get("SENT_BY")):
            self._instances = started.instances
            self._emit(joined)

    def _on_episode(self, msg: dict) -> None:
        try:
            run_id, episode, score, steps, ended_at = protocol.parse_episode_done(msg)
        except protocol.ProtocolError as error:
            self._malformed(msg, protocol.EPISODE_DONE, error)
            return
        self._take_episodes(run_id, [(episode, score, steps)], ended_at, msg.get("SENT_BY"))

    def _on_episodes(self, msg: dict) -> None:
        try:
            run_id, episodes, ended_at = protocol.parse_episodes_done(msg)
        except protocol.ProtocolError as error:
            self._malformed(msg, protocol.EPISODES_DONE, error)
            return
        self._take_episodes(run_id, episodes, ended_at, msg.get("SENT_BY"))

    def _take_episodes(
        self, run_id: str | None, episodes: list[tuple[int, float, int]], ended_at: float | None, sender: object
    ) -> None:
        # when they ended by the environment's clock, as the run's start: a follower's history then
        # has the environment's times (heard here, they came late under load: steps/s 5,780 for 7,854)
        when = time.time() if ended_at is None else ended_at
        events = [EpisodeFinished(run_id or "", episode, score, steps, when) for episode, score, steps in episodes]
        if not self.admits(events[0], sender):
            return  # (one sender's news: admitted or refused as one)
        with self._cond:
            self._schedules.heard_progress(run_id, time.monotonic())
            if run_id == self._run_id:
                # a second copy of a finished episode is dropped: the first counts (the run events count it)
                events = [e for e in events if self._episodes.first(e.episode)]
                self._scores.extend(e.score for e in events)
                self._steps += sum(e.steps for e in events)
                self._last_progress = time.monotonic()
        for event in events:
            self._emit(event)

    def _malformed(self, msg: dict, status: str, error: protocol.ProtocolError) -> None:
        sender = protocol.clean_text(msg.get("SENT_BY", "?"), 80)
        self._emit(NetworkError(sender, protocol.clean_text(f"ignored a malformed {status}: {error}")))

    def _on_env_done(self, msg: dict) -> None:
        try:
            run_id, average, episodes, stopped, ended_at = protocol.parse_env_done(msg)
        except protocol.ProtocolError as error:
            self._malformed(msg, protocol.ENV_DONE, error)
            return
        if not self.admits(RunFinished(run_id, average, episodes or 0, stopped), msg.get("SENT_BY")):
            return
        with self._cond:
            self._schedules.heard_run_end(run_id, time.monotonic())
            # The published environment sends no RUN_ID: its ENV_DONE is the current run's.
            mine = self._run_id is not None and run_id in (None, self._run_id)
            result = RunFinished(
                run_id or self._run_id,
                average,
                # the published ENV_DONE has no EPISODES; it comes after exactly the episodes asked for.
                # Another room's run is counted by its own ENV_DONE only: this room's scores are of its run
                # (a follower said "avg 0.0 over 100 episodes" for a run stopped before any episode)
                episodes or ((len(self._scores) or (self._asked if run_id is None else 0)) if mine else 0),
                stopped,
                list(self._scores) if mine else [],
                steps=self._steps if mine else 0,
                ended_at=ended_at,
            )
            waiting = self._run_id
        # handed on before the waiter wakes: a schedule's next line ("round 8: …", "schedule solved")
        # came before "run 17 done" in a control room whose environment is elsewhere
        self._emit(result)
        if mine:
            with self._cond:
                if self._run_id == waiting:  # no other start since
                    self._result = result
                    self._cond.notify_all()

    def _on_evo_done(self, msg: dict) -> None:
        told: EvolutionFinished | EvolutionSeen | None
        with self._cond:
            told = answer = self._evolution.heard(msg, time.monotonic(), time.time())
            if answer is None:  # another control room's evolution, perhaps: told when it says its generation
                told = self._evolution.elsewhere(msg, time.time())
            else:
                self._cond.notify_all()
        if told is not None:
            self._emit(told)


def _counter(value: object) -> int:
    """One of the broker's counters: a whole number 0..2**63-1 (any client may send to ``_stats``:
    an infinity raised OverflowError here, and a 400-digit count overflowed the health's rates)."""
    count = int(value)  # type: ignore[call-overload]  # TypeError, ValueError, OverflowError: not ours
    if not 0 <= count < 2**63:
        raise ValueError(f"a counter out of range: {count}")
    return count


def _anyone(event: object, sender: object) -> bool:
    return True


def _slow(previous: BrokerStats | None, current: BrokerStats) -> bool:
    """Observations flow, at most ``MODEL_CENSUS_MAX_RATE`` a second, between two stats."""
    if previous is None or current.at <= previous.at:
        return False
    sent = (
        current.rooms.get(protocol.OBSERVATION, (0, 0, 0))[1] - previous.rooms.get(protocol.OBSERVATION, (0, 0, 0))[1]
    )
    return 0 < sent / (current.at - previous.at) <= defaults.MODEL_CENSUS_MAX_RATE
