"""The one path from the network's threads to the screen.

Everything that happens away from the UI thread — the environment's and control
client's listener threads, connecting, commands, evolution, schedules — ends as an
event in this controller's queue. However fast events come, at most one
``EventsPending`` waits in the app's message queue and steps (and the cart a follower
sees from the network) only overwrite ``latest_observation``, drawn at the redraw rate: the
UI never slows the loop and its queue cannot grow without bound. The app drains the queue
in its own thread and dispatches each event by type.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cartpole_tui.env import defaults
from cartpole_tui.env.components.control import ControlClient, ControlTimeout
from cartpole_tui.env.components.spaces import spaces_of
from cartpole_tui.env.events import (
    CartSeen,
    Disconnected,
    EnvironmentObserver,
    EnvSpaces,
    FrameSeen,
    NetworkError,
)
from cartpole_tui.env.history.store import RunStore
from cartpole_tui.env.runtime.network import NetworkStartError
from cartpole_tui.env.runtime.schedule import (
    ScheduleResult,
    ScheduleStopped,
    best_episode,
    run_schedule,
    target_for,
)
from cartpole_tui.env.runtime.session import AnotherEnvironment, Session, SessionOptions
from cartpole_tui.env.swarm.saved import Restored
from cartpole_tui.tui.messages import EventsPending

RECONNECT_DELAYS = (0.5, 1, 2, 4, 8)
SHARED_HISTORY_SECONDS = 1.0  # how often a control room re-reads runs another process writes
PAST_RUNS_PLOTTED = 100  # the latest past runs whose episodes are loaded into the plot at start
_CONNECTION_FAILURES = (ConnectionError, NetworkStartError, ValueError, OSError)


# --- events of the control room's own (the network's are in env.runtime.events) ----------


@dataclass(frozen=True)
class Connected:
    """The session joined the network."""

    address: str
    embedded: bool
    failed_network_log: str | None = None  # rejoined after the embedded network died: its log, kept
    population: str | None = None  # what the embedded swarm started from (saved.start_note)
    restored: Restored | None = None  # ... when that was the population file


@dataclass(frozen=True)
class ConnectFailed:
    reason: str
    connection: str = "unreachable"  # what the status line says: a key of run_progress.CONNECTION_MARKS


@dataclass(frozen=True)
class HistoryLoaded:
    """Past runs' episodes: (number, scores, ENV_DONE average) each; ``times``: when they ended;
    ``env_id``: the environment they played (the plot holds one environment's runs)."""

    runs: list[tuple[int, np.ndarray, float | None]]
    times: list[np.ndarray] | None = None
    env_id: str | None = None


@dataclass(frozen=True)
class ScheduleRound:
    """This room's schedule begins a phase of round ``number`` (reaching for ``target``)."""

    number: int
    target: float | None


@dataclass(frozen=True)
class ScheduleRetargeted:
    """This room's schedule aims at the reward_threshold of ``env_id``, the game the network plays."""

    env_id: str
    target: float


@dataclass(frozen=True)
class ScheduleFailed:
    """This room's schedule ended on an error (``text``: why)."""

    text: str


@dataclass(frozen=True)
class ScheduleStoppedBy:
    """This room's schedule was stopped: by its own x (``here``) or by another room's."""

    result: ScheduleResult
    here: bool


@dataclass(frozen=True)
class StorageProblem:
    text: str


@dataclass(frozen=True)
class EvolutionFailed:
    text: str


# --- the controller ---------------------------------------------------------------------


class Controller(EnvironmentObserver):
    """Owns the session and the store; runs every blocking call in a thread; queues what happens."""

    def __init__(
        self,
        options: SessionOptions,
        post: Callable[[EventsPending], object],
        *,
        db_path: str | None = None,
        evolution_timeout: float = defaults.EVOLVE_ANSWER_TIMEOUT,
    ):
        self.options = options
        self.db_path = db_path
        self.evolution_timeout = evolution_timeout
        self._post = post
        self._events: deque = deque()
        self._posted = threading.Event()
        self._quitting = threading.Event()
        self._schedule_stop: threading.Event | None = None
        self._stopped_here = False  # this room's x stopped its schedule (else a STOP from another room)
        self.store: RunStore | None = None
        self.session: Session | None = None
        self.latest_observation: np.ndarray | tuple[float, ...] | None = None
        self.latest_frame: FrameSeen | None = None
        self.steps = 0
        self._reading_history = False
        self._network_said: object = None  # the embedded network whose start was last told to the app
        self._run_ended_by: str | None = None  # the text of the last network error that ended a run

    # --- the queue --------------------------------------------------------------------

    def push(self, event) -> None:
        """Queue an event (any thread); the app hears of it with at most one message pending."""
        self._events.append(event)
        if not self._posted.is_set():
            self._posted.set()
            self._post(EventsPending())

    def drain(self) -> list:
        """Every queued event, oldest first (the app's thread)."""
        self._posted.clear()
        events = []
        while self._events:
            events.append(self._events.popleft())
        return events

    def _from_session(self, event) -> None:
        """The session's events to the queue, but the cart seen from the network (up to 10 a
        second) only replaces the latest observation, as the environment's own steps do: it
        repainted the cart pane at that rate, twice the bytes of a control room's budget."""
        if isinstance(event, CartSeen):
            if len(event.observation) == 4:  # CartPole's: position, velocity, angle, angular velocity
                self.latest_observation = event.observation
            return
        if isinstance(event, FrameSeen):
            self.on_frame(event)  # another environment's picture: drawn at the redraw rate too
            return
        if isinstance(event, NetworkError) and event.ends_run:
            self._run_ended_by = event.text
        self.push(event)

    # --- the embedded environment (its listener thread) --------------------------------

    def on_step(self, observation, reward: float, done: bool) -> None:
        self.latest_observation = observation
        self.steps += 1

    def on_frame(self, frame: FrameSeen) -> None:
        self.latest_frame = frame  # another environment than CartPole: its picture (≤ FRAME_HZ)

    # --- connecting ---------------------------------------------------------------------

    def _in_thread(self, target, *args, name: str) -> None:
        threading.Thread(target=target, args=args, name=f"control-room-{name}", daemon=True).start()

    def connect(self) -> None:
        """Open the history, then start or join the network (in a thread)."""
        self._in_thread(self._connect, name="connect")

    def _open_history(self) -> None:
        if self.store is not None:
            return
        self.store = RunStore.open(self.db_path, on_error=lambda text: self.push(StorageProblem(text)))
        self._load_history(self.options.env_id)

    def load_history(self, env_id: str) -> None:
        """The past runs of ``env_id`` for the plot (a HistoryLoaded), read in a thread."""
        self._in_thread(self._load_history, env_id, name="history")

    def _load_history(self, env_id: str) -> None:
        if self.store is None:
            return
        # a history file holds every environment's runs: Acrobot's -500s under CartPole's 475 made
        # one mean of two games (new-user pass 4)
        latest = [run for run in self.store.runs() if run.params.env_id == env_id][-PAST_RUNS_PLOTTED:]
        past = [(run.number, self.store.episode_scores(run.run_uid), run.avg_score) for run in latest]
        self.push(HistoryLoaded(past, [self.store.episode_times(run.run_uid) for run in latest], env_id))

    def _connect(self) -> None:
        self._open_history()
        if self.options.offline:
            return
        try:
            if self.session is None:
                self.session = Session(
                    self.options,
                    on_event=self._from_session,  # one stream of events, whatever their source
                    observers=[self],
                    on_disconnect=lambda reason: self.push(Disconnected(reason)),
                    store=self.store,
                )
            self.session.open()
        except _CONNECTION_FAILURES as error:
            # a broker that answered, already with an environment, is not unreachable; nor is a network
            # that did not start here (a population file of another game: "unreachable" misled)
            found = "unreachable"
            if isinstance(error, AnotherEnvironment):
                found = "another environment"
            elif isinstance(error, NetworkStartError):
                found = "not started"
            self.push(ConnectFailed(str(error), found))
            return
        self._joined(self.session)
        if not self.options.embed_env and not self._reading_history:
            self._reading_history = True
            self._in_thread(self._read_shared_history, name="history")

    def _read_shared_history(self) -> None:
        """The environment elsewhere may write this history file: read its runs anew each second."""
        while not self._quitting.wait(SHARED_HISTORY_SECONDS):
            if self.store is not None:
                self.store.refresh()

    def _joined(self, session: Session) -> None:
        failed, session.failed_network_log = session.failed_network_log, None
        network = session.network
        if network is None:
            self.push(Connected(session.address, session.embedded, failed))
            return
        started, self._network_said = network is not self._network_said, network  # a rejoin restored nothing
        population = (network.population_note, network.restored) if started else (None, None)
        self.push(Connected(session.address, session.embedded, failed, *population))

    def reconnect(self) -> None:
        """Join again with back-off until it works or the app quits (in a thread)."""
        self._in_thread(self._reconnect, name="reconnect")

    def _reconnect(self) -> None:
        session = self.session
        if session is None:  # never joined: connect() is the way in
            return
        attempt = 0
        while not self._quitting.is_set():
            delay = RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)]
            attempt += 1
            if self._quitting.wait(delay):
                return
            try:
                session.reconnect()
            except _CONNECTION_FAILURES as error:
                self.push(NetworkError("app", f"reconnect attempt {attempt} failed: {error}"))
                continue
            self._joined(session)
            return

    @property
    def control(self) -> ControlClient | None:
        return self.session.control if self.session is not None else None

    def _joined_control(self) -> ControlClient:
        """The control client to send a command with (the app sends only while connected)."""
        control = self.control
        if control is None:
            raise ConnectionError("not connected to the network")
        return control

    # --- commands (each in a thread; a lost broker is reported, not raised) -----------------

    def _send(self, command, *args) -> None:
        try:
            command(*args)
        except ConnectionError as error:
            self.push(NetworkError("app", f"not sent: {error}"))

    def start_run(self, episodes: int, deterministic: bool) -> None:
        control = self._joined_control()
        self._in_thread(self._send, control.start_run, episodes, deterministic, self.options.seed, name="start")

    def stop_run(self) -> None:
        session = self.session
        if session is None:
            raise ConnectionError("not connected to the network")
        self._in_thread(self._send, lambda: self.push(session.stop_run()), name="stop")

    def stall_hint(self) -> str | None:
        """What the network showed of the last observation (which models answered), if known."""
        control = self.control
        return control.silence() if control is not None and control.watching_models else None

    def evolve(self) -> None:
        self._in_thread(self._evolve, self._joined_control(), name="evolve")

    def _evolve(self, control: ControlClient) -> None:
        try:
            control.evolve(timeout=self.evolution_timeout)  # EvolutionFinished comes as a control event
        except (ControlTimeout, ConnectionError) as error:
            self.push(EvolutionFailed(str(error)))

    # --- the learning schedule ----------------------------------------------------------------

    @property
    def schedule_running(self) -> bool:
        return self._schedule_stop is not None

    @property
    def schedule_elsewhere(self) -> bool:
        """Whether another control room's schedule is going on the network (between its runs too)."""
        control = self.control
        return control is not None and control.schedule_elsewhere

    def start_schedule(self) -> None:
        control = self._joined_control()
        self._schedule_stop, self._stopped_here = threading.Event(), False
        self._in_thread(self._run_schedule, control, self._schedule_stop, name="schedule")

    def stop_schedule(self) -> bool:
        """Ask a running schedule to stop after its current run; False when none runs."""
        if self._schedule_stop is None:
            return False
        self._stopped_here = True
        self._schedule_stop.set()
        return True

    def _run_schedule(self, control: ControlClient, stop: threading.Event) -> None:
        try:
            spaces = spaces_of(self.options.env_id)
            aim = [target_for(spaces)]  # the game's played: another one's announced replaces it

            def on_target(played: EnvSpaces, target: float) -> None:
                aim[0] = target
                self.push(ScheduleRetargeted(played.env_id, target))

            self.push(
                run_schedule(
                    control,
                    on_round=self.push,
                    on_phase=lambda _, number: self.push(ScheduleRound(number, aim[0])),
                    train=defaults.SCHEDULE_TRAIN if self.options.connect is None else defaults.SCHEDULE_TRAIN_JOINED,
                    seed=self.options.seed,
                    stop=stop,
                    target=aim[0],
                    best=best_episode(spaces),
                    game=spaces.env_id,
                    on_target=on_target,
                )
            )
        except ScheduleStopped as stopped:
            self.push(ScheduleStoppedBy(stopped.result, here=self._stopped_here))
        except (ControlTimeout, ConnectionError, ValueError) as error:
            said = self._run_ended_by is not None and self._run_ended_by in str(error)
            # the error that ended its run is in the log already: not said twice
            self.push(ScheduleFailed("ended: its run could not go on (above)" if said else str(error)))
        finally:
            self._schedule_stop = None

    # --- the end ----------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop everything this controller started; later calls do nothing."""
        if self._quitting.is_set():
            return
        self._quitting.set()
        if self._schedule_stop is not None:
            self._schedule_stop.set()
            control = self.control
            if control is not None:  # said before the network goes: the other rooms may start at once
                control.end_schedule("left")  # (its run going plays on: closing a room ends nothing)
        if self.session is not None:
            self.session.close()
        if self.store is not None:
            self.store.close()
