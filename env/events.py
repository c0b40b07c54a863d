"""What happens in the network, as plain values handed to whoever watches.

Beside env/'s stack (wire < components < history < swarm < runtime), below every layer:
each may import this module, as may ``tui/``; it imports nothing of ours. The environment
and control clients produce these in their listener threads; the history records them,
the command line prints them and the app wraps them in Textual messages.
:class:`EnvironmentObserver` receives the environment's events in-process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class EnvSpaces:
    """What the network must agree on: the id, the observation size and the number of actions;
    and what a viewer draws: the solved score (None: the environment has none) and the
    longest episode (None: unbounded)."""

    env_id: str
    observations: int
    actions: int
    reward_threshold: float | None = None
    max_episode_steps: int | None = None

    @property
    def shape(self) -> str:
        """``CartPole-v1 (4 observations, 2 actions)``: how a mismatch names an environment."""
        return f"{self.env_id} ({self.observations} observations, {self.actions} actions)"


@dataclass(frozen=True)
class RunStarted:
    run_id: str
    episodes: int
    deterministic: bool
    seed: int | None = None
    started: float = 0.0  # wall clock, time.time()
    instances: int = 1  # environments played at once (0: not told, e.g. a start we sent)
    env_id: str = ""
    history: tuple[str, str] | None = None  # (host, path) of the file the environment records it in
    spaces: EnvSpaces | None = None  # what the environment announced of itself (None: not told)


@dataclass(frozen=True)
class StartHeard:
    """Another control room's START, as it asked for the run: the published environment
    announces nothing, so a room that follows it takes the run's size (and id) from here."""

    run: RunStarted


@dataclass(frozen=True)
class RunJoined:
    """The run going when a control room joined (the environment's RUN_STATE): how far it is.

    ``scores``: the latest finished episodes' scores (at most a thousand), in the order they
    ended; ``numbers``, ``lengths`` and ``ended``: their episodes' numbers, steps and when they
    ended (None: not told, an environment before they were added); ``figures``: the best score and the steps of the
    ``finished`` episodes (None: not told). ``missed``: of the ``finished`` episodes, those this
    control room records nothing of (set where it records the run: None elsewhere)."""

    run: RunStarted
    finished: int
    steps: int
    scores: tuple[float, ...] = ()
    numbers: tuple[int, ...] | None = None
    lengths: tuple[int, ...] | None = None
    ended: tuple[float, ...] | None = None
    figures: tuple[float | None, int] | None = None
    missed: int | None = None

    def told(self) -> list[EpisodeFinished]:
        """The episodes whose scores came with their numbers. Without numbers a one-instance run's
        are its latest (they end in number order); a vectorised run's end out of number order, so
        none can be placed (taken as the latest, they were recorded under others' numbers)."""
        numbers = self.numbers
        if numbers is None and self.run.instances == 1:
            numbers = tuple(range(self.finished - len(self.scores) + 1, self.finished + 1))
        if numbers is None:
            return []
        lengths = self.lengths or (0,) * len(self.scores)  # steps not told: 0, as the store takes them
        ended = self.ended or (0.0,) * len(self.scores)  # not told: 0.0, as EpisodeFinished's default
        return [
            EpisodeFinished(self.run.run_id, number, score, steps, when)
            for number, score, steps, when in zip(numbers, self.scores, lengths, ended)
            if number >= 1  # more scores than FINISHED: the first are no episode
        ]


@dataclass(frozen=True)
class EpisodeFinished:
    run_id: str
    episode: int  # 1-based index within the run
    score: float
    steps: int
    wall_time: float = 0.0  # time.time() when it ended


@dataclass(frozen=True)
class RunFinished:
    run_id: str | None
    avg_score: float
    episodes: int
    stopped: bool = False
    scores: list[float] = field(default_factory=list)
    steps: int = 0  # steps the environment played in the run (a run's steps a second are the
    seconds: float = 0.0  # history's, RunRecord.steps_per_s: one definition for every view)
    ended_at: float | None = None  # when it ended (Unix seconds) by the environment's clock, if told


@dataclass(frozen=True)
class EvolutionFinished:
    """EVO_DONE; the population's figures when the evolution reports them (ours does)."""

    seconds: float
    generation: int | None = None
    fitness: tuple[float, ...] = ()  # each model's fitness, in the evolution's model order
    elite: int | None = None  # the index in ``fitness`` of the model kept unchanged
    diversity: float | None = None  # mean pairwise distance between the models' weight vectors
    sent_by: str = "?"  # the evolution component that answered (its SENT_BY)
    at: float = 0.0  # wall clock, time.time(), when its EVO_DONE arrived
    root_id: str | None = None  # the ROOT_ID of the EVO_DONE taken as the answer


@dataclass(frozen=True)
class EvolutionSeen:
    """EVO_DONE of an evolution another control room asked for (ours reports its generation)."""

    generation: int
    fitness: tuple[float, ...] = ()
    elite: int | None = None
    diversity: float | None = None
    sent_by: str = "?"
    at: float = 0.0  # wall clock, time.time(), when its EVO_DONE arrived


@dataclass(frozen=True)
class CartSeen:
    """The environment's instance 0, as it publishes it for viewers (room ``cart``)."""

    observation: tuple[float, ...]


@dataclass(frozen=True)
class FrameSeen:
    """A picture of the environment's instance 0 (room ``cart``, environments other than CartPole):
    ``width`` × ``height`` dots, row by row, eight to a byte (numpy's ``packbits``)."""

    width: int
    height: int
    bits: bytes


@dataclass(frozen=True)
class NetworkError:
    """A component reported a problem (e.g. a bad ACTION); nothing stopped."""

    source: str
    text: str
    run_id: str | None = None
    # The wait for this client's own run ends on it (ControlTimeout, WrongEnvironment): a
    # command waiting (`run`) says it once, as its error, not also as a warning before.
    ends_run: bool = False

    @property
    def line(self) -> str:
        """How it reads: ``source: text``, the source once (``aggregation left the network``)."""
        return self.text if self.text.startswith(f"{self.source} ") else f"{self.source}: {self.text}"


@dataclass(frozen=True)
class ScheduleEnded:
    """Another control room's schedule, known to be going here, ended (its SCHEDULE_ENDED);
    ``ending``: how, one of ``protocol.SCHEDULE_ENDINGS`` (None: not said)."""

    ending: str | None = None


@dataclass(frozen=True)
class StopAnswered:
    """What ``x`` did: the STOP went out, or why the run plays on (the published environment
    knows no STOP) and what happens next."""

    text: str


@dataclass(frozen=True)
class ComponentSeen:
    """A component registered with the broker or joined a room (seen on ``_command``)."""

    name: str
    room: str | None = None


@dataclass(frozen=True)
class Disconnected:
    reason: str


@dataclass(frozen=True)
class BrokerStats:
    """Our broker's counters (sent to the stats room each second; other brokers send none)."""

    clients: tuple[str, ...]
    rooms: dict[str, tuple[int, ...]]  # room -> (members, messages, bytes), counted since the broker started
    frames_refused: int
    undeliverable: int
    at: float  # time.monotonic() when received


class EnvironmentObserver:
    """Receives the environment's events in-process (no socket round trip).

    Methods run in the environment's listener thread: keep them quick.
    """

    def on_run_started(self, event: RunStarted) -> None: ...

    def on_step(self, observation: np.ndarray, reward: float, done: bool) -> None: ...

    def on_frame(self, frame: FrameSeen) -> None:
        """A picture of instance 0 (environments other than CartPole), at most ``FRAME_HZ`` a second."""

    def on_episode(self, event: EpisodeFinished) -> None: ...

    def on_episodes(self, events: list[EpisodeFinished]) -> None:
        """The episodes that ended in one step of a vectorised run, in the order they are numbered
        out; by default each to :meth:`on_episode`."""
        for event in events:
            self.on_episode(event)

    def on_run_finished(self, event: RunFinished) -> None: ...
