"""The one stream of run events a session hands on, whatever their source.

Runtime layer (top of env/): the session feeds it; the app and the command line get its output.

Three sources tell of runs: the environment in this process (its observer), the network
(the control client: our environment's RUN_STARTED, RUN_STATE, EPISODE_DONE, ENV_DONE), and
the starts this control room sends. :class:`RunEvents` is the one place that decides which
copy counts: with the environment here, its own events (the network's copies are dropped);
otherwise the network's, one RunStarted per run, whoever started it, so a control room that
follows shows the run's true size and end.

It also decides what the history records where the environment is not ours. The environment
writes its own file: a control room sharing that file (RUN_STARTED names it) writes nothing and
reads the runs from the file; one with a file of its own records what it follows, marked
``followed``. A start we sent is held until the environment announces it; the published
environment announces nothing, so after a short wait (or at the run's first news) the run
is taken as sent.

And it decides whose news of a run counts (:meth:`RunEvents.admits`, which the control client
asks before it counts anything). On a broker without a token anyone may join the control room,
but the broker sets every message's SENT_BY: runs' news counts only from the network's
environment, the first sender heard telling of a run (our environment announces each run with
RUN_STARTED, and answers the state query sent on joining; the published one announces nothing,
so the sender of its observations or first ENV_DONE), until the network is lost. News without
a RUN_ID is refused once an environment that names its runs was heard. A refusal is told at
most once per ``defaults.REFUSAL_LOG_INTERVAL``, never once per message.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from cartpole_tui.env import defaults
from cartpole_tui.env.components.seen import RecentNames, SeenEpisodes
from cartpole_tui.env.events import (
    EnvironmentObserver,
    EpisodeFinished,
    NetworkError,
    RunFinished,
    RunJoined,
    RunStarted,
    StartHeard,
)
from cartpole_tui.env.history.recorder import StoreRecorder
from cartpole_tui.env.history.store import RunStore
from cartpole_tui.env.wire import protocol

ANNOUNCE_WAIT = 1.0  # s a start we sent waits for the environment's RUN_STARTED (the published one sends none)
# s the state query's answer is waited for once episodes named by RUN_ID were heard: only an
# environment of ours names them, and it answers, however late (a loaded network)
ANSWER_WAIT = 10.0
RUN_EVENTS = (RunStarted, RunJoined, EpisodeFinished, RunFinished)
_NAME_KEPT = 200  # characters of a sender compared as they are; a longer one by its digest


class RunEvents:
    """Merges the sources into one stream handed to ``emit`` (in whichever thread they arrive)."""

    def __init__(
        self,
        emit: Callable[[object], None],
        *,
        environment_here: bool,
        store: RunStore | None = None,
        env_id: str = defaults.ENV_ID,
        address: str = "",
        announce_wait: float = ANNOUNCE_WAIT,
    ):
        self._emit = emit
        self.environment_here = environment_here
        self.store = store
        self.recorder = (
            StoreRecorder(store, env_id, address, durable=False, followed=True) if store is not None else None
        )
        self.announce_wait = announce_wait
        self._lock = threading.RLock()
        self._current: RunStarted | None = None
        # runs begun (the latest RUN_IDS_KEPT): a second announcement of one (RUN_STARTED, RUN_STATE)
        # does not begin it again
        self._begun = RecentNames(defaults.RUN_IDS_KEPT)
        self._recording = False  # this store records the current run
        self._sent: dict[str, RunStarted] = {}  # our starts not yet announced by the environment
        self._heard: RunStarted | None = None  # another room's latest START (its run's size)
        self._asking = False  # a state query is out: episodes of an unknown run wait for its answer
        self._asked_at = 0.0  # when (time.monotonic())
        self._held: list[object] = []
        # the published environment's run, counted from its observations: (run, episodes, score, steps)
        self._watched: RunStarted | None = None
        self._watched_recorded = False
        self._episode = (0, 0.0, 0)
        self._partial = False  # the episode going was joined midway: not counted
        self._episodes = SeenEpisodes()  # the current run's episodes counted (a copy of one is dropped)
        self.duplicate_episodes = 0  # copies of counted episodes dropped, all runs
        # whose news of a run counts (see admits): the network's environment (the first sender
        # heard telling of a run), and whether it announces its runs (then it names each by RUN_ID)
        self._environment: str | None = None
        self._announces = environment_here
        self.refused = 0  # news refused for its sender, all runs
        self._refusal_told: float | None = None
        self._untold = 0  # refusals since the last one told

    @property
    def current(self) -> RunStarted | None:
        return self._current

    # --- the sources ------------------------------------------------------------------

    def from_environment(self, event: object) -> None:
        """An event of the environment in this process."""
        self._emit(event)

    def from_network(self, event: object) -> None:
        """An event of the control client."""
        if isinstance(event, StartHeard):
            with self._lock:
                self._heard = event.run  # the published environment's next run is that one
        elif not isinstance(event, RUN_EVENTS):
            self._emit(event)
        elif not self.environment_here:  # with the environment here its own events came first
            with self._lock:
                self._follow(event)

    def sent(self, started: RunStarted) -> None:
        """A start this control room sent (to an environment elsewhere)."""
        if self.environment_here:
            return
        with self._lock:
            self._sent[started.run_id] = started
        self._after(self.announce_wait, self._unannounced, started.run_id)

    def asked_state(self) -> None:
        """A state query was sent: until it is answered (or ``announce_wait`` passed), the
        episodes of a run not known yet are held, so the answer says which run they belong to."""
        with self._lock:
            self._asking, self._asked_at = True, time.monotonic()
        self._after(self.announce_wait, self._waited)

    def _waited(self) -> None:
        """``announce_wait`` passed without an answer: the published environment sends none, so the
        held events are handed on; but episodes named by RUN_ID are ours, whose answer will come
        (handed on without it, they began the run as one of unknown size, and the answer, the run's
        size and episodes, was ignored), so it is waited for up to ``ANSWER_WAIT``."""
        with self._lock:
            if not self._asking:
                return  # answered
            ours = any(getattr(event, "run_id", None) for event in self._held)
            if ours and time.monotonic() - self._asked_at < ANSWER_WAIT:
                self._after(self.announce_wait, self._waited)
                return
            self._answered()

    @staticmethod
    def _after(seconds: float, then: Callable[..., None], *args: object) -> None:
        timer = threading.Timer(seconds, then, args)
        timer.daemon = True
        timer.start()

    def _answered(self, joined: RunJoined | None = None) -> None:
        """The state query is over: hand on the held events, but for the episodes of the run ``joined``
        tells of: they ended before the answer was sent, so its FINISHED counts them already (handed
        on, the progress line counted them twice); those it did not tell are recorded."""
        with self._lock:
            held, self._held, self._asking = self._held, [], False
            told = _told(joined)
            for event in held:
                if joined is None or not (isinstance(event, EpisodeFinished) and event.run_id == joined.run.run_id):
                    self._follow(event)
                elif (
                    self._recording
                    and self.recorder is not None
                    and (event.run_id, event.episode) not in told
                    and self._episodes.first(event.episode)
                ):
                    self.recorder.on_episode(event)

    def observed(self, first: bool, reward: float, done: bool) -> None:
        """An observation of the published environment (which announces nothing and reports no
        episode): a run's first begins one, each DONE ends an episode of it."""
        with self._lock:
            if first:
                if self._current is None:
                    self._begin(self._next_start())
                self._partial = False
                self._watched, self._watched_recorded, self._episode = self._current, self._recording, (0, 0.0, 0)
                return
            if self._watched is None:
                if self._current is None:
                    if done:
                        return  # a run's last observation (it comes after its ENV_DONE): no run to join
                    # joined mid-run: the run is followed from here, its size unknown unless a START
                    # was heard; the episode going is partly seen, so it is not counted
                    self._begin(self._next_start())
                    self._partial = True
                self._watched, self._watched_recorded = self._current, self._recording
            episodes, score, steps = self._episode
            score, steps = score + reward, steps + 1
            if not done:
                self._episode = (episodes, score, steps)
                return
            self._episode = (episodes + 1, 0.0, 0)
            if self._partial:
                self._partial, self._episode = False, (episodes, 0.0, 0)
                return
            watched = self._watched
            if watched is None:
                return
            event = EpisodeFinished(watched.run_id, episodes + 1, score, steps, time.time())
            if self._watched_recorded and self.recorder is not None:
                self.recorder.on_episode(event)  # also the last, whose DONE comes after the run's ENV_DONE
            self._emit(event)

    def _next_start(self) -> RunStarted:
        """The run the published environment's observations begin: our start, else the START last
        heard from another room, else one of unknown size."""
        if self._sent:
            return self._sent.popitem()[1]
        heard, self._heard = self._heard, None
        if heard is None:
            return RunStarted(protocol.new_id(), 0, False, instances=0)
        if heard.run_id in self._begun or (self.store is not None and self.store.has_run(heard.run_id)):
            # any peer's START names what it likes: a run recorded already is not begun again
            # (the new run's episodes and end went into that run's row)
            heard = dataclasses.replace(heard, run_id=protocol.new_id())
        return heard

    def unanswered_stop(self, result: RunFinished) -> None:
        """A run we stopped whose environment did not answer (the published one knows no STOP)."""
        self.from_network(result)

    def observer(self) -> EnvironmentObserver:
        """The environment-in-this-process source, as its observer."""
        return _Forward(self.from_environment)

    # --- whose news counts -------------------------------------------------------------------

    def expect_environment(self, sender: str) -> None:
        """The environment in this process registers as ``sender``: only it tells of runs here."""
        with self._lock:
            self._environment, self._announces = _who(sender), True

    def admits(self, event: object, sender: object) -> bool:
        """Whether ``event`` (a run's news from the network, sent by ``sender``: its SENT_BY)
        counts; ``protocol.RUN_STATE`` for the answer that no run is going. A refusal is told
        as a NetworkError, at most once an interval."""
        who = _who(sender)
        with self._lock:
            refusal = self._refusal(event, who)
            if refusal is None:
                return True
            self._tell_refusal(protocol.clean_text(sender, 80), refusal, getattr(event, "run_id", None))
            return False

    def observes(self, sender: object) -> bool:
        """Whether an observation sent by ``sender`` (its SENT_BY) is the published environment's
        (the first sender heard telling of a run is the environment)."""
        with self._lock:
            return self._is_environment(_who(sender), announces=False)

    def _refusal(self, event: object, who: str) -> str | None:
        """Why ``event`` from ``who`` does not count (None: it counts)."""
        if event == protocol.RUN_STATE:  # an environment's answer that no run is going
            what, run_id, announces = protocol.RUN_STATE, None, True
        elif isinstance(event, RunJoined):
            what, run_id, announces = protocol.RUN_STATE, event.run.run_id, True
        elif isinstance(event, RunStarted):
            what, run_id, announces = protocol.RUN_STARTED, event.run_id, True
        elif isinstance(event, EpisodeFinished):
            what, run_id, announces = protocol.EPISODE_DONE, event.run_id or None, False
        elif isinstance(event, RunFinished):
            what, run_id, announces = protocol.ENV_DONE, event.run_id or None, False
        else:
            return None
        of_run = f" of run {protocol.clean_text(run_id, 80)}" if run_id else ""
        if self._environment not in (None, who):
            environment = protocol.clean_text(self._environment, 80)
            return f"ignored {what}{of_run}: not from this network's environment ({environment}, the first heard)"
        if run_id is None and not announces and self._announces:
            return f"ignored {what} without RUN_ID: this network's environment names its runs"
        self._is_environment(who, announces)
        return None

    def _is_environment(self, who: str, announces: bool) -> bool:
        """Whether ``who`` is the network's environment; the first sender heard (and counted) is."""
        if self._environment is None:
            self._environment = who
        if who != self._environment:
            return False
        self._announces = self._announces or announces
        return True

    def _tell_refusal(self, sender: str, text: str, run_id: object) -> None:
        self.refused += 1
        now = time.monotonic()
        if self._refusal_told is not None and now - self._refusal_told < defaults.REFUSAL_LOG_INTERVAL:
            self._untold += 1
            return
        more = f"; {self._untold:,} more refused since the last such line" if self._untold else ""
        self._refusal_told, self._untold = now, 0
        self._emit(
            NetworkError(
                sender,
                f"{text} (from {sender}{more}; refusals are told at most every {defaults.REFUSAL_LOG_INTERVAL:g}s)",
                run_id if isinstance(run_id, str) and protocol.valid_run_id(run_id) else None,
            )
        )

    # --- following the network -----------------------------------------------------------

    def _unannounced(self, run_id: str) -> None:
        with self._lock:
            if self._announces:
                # an environment that announces its runs is waited for, however late: taken as begun
                # here, the run was begun again by its RUN_STARTED ("run 121 started" twice, a second
                # apart, on a loaded machine), and recorded here though the environment's file has it
                return
            started = self._sent.pop(run_id, None)
            if started is not None and run_id not in self._begun:
                self._begin(started)

    def _follow(self, event: object) -> None:
        if isinstance(event, RunStarted):
            self._sent.pop(event.run_id, None)
            if event.run_id not in self._begun:
                self._begin(event)
        elif isinstance(event, RunJoined):
            self._sent.pop(event.run.run_id, None)
            new = event.run.run_id not in self._begun
            if new:
                self._begin(event.run, announce=False)
                self._emit(self._record_joined(event))
            if self._asking:
                self._answered(event if new else None)
        elif self._asking and not self._is_current(event):
            self._held.append(event)
        elif isinstance(event, (EpisodeFinished, RunFinished)) and not (
            event.run_id is None or protocol.valid_run_id(event.run_id)
        ):
            return  # no run can have that id (e.g. ""): nothing of it reaches the history
        elif isinstance(event, EpisodeFinished):
            self._news_of(event.run_id)
            if self._watched is not None and self._watched.run_id == event.run_id:
                return  # counted from the observations
            if not self._episodes.first(event.episode):
                self._duplicate(event)
                return
            if self._recording and self.recorder is not None:
                self.recorder.on_episode(event)
            self._emit(event)
        elif isinstance(event, RunFinished):
            if event.run_id is not None:
                self._news_of(event.run_id)
            current = self._current
            if current is not None and event.run_id in (None, current.run_id):
                # the published environment's ENV_DONE names no run: it is the current one's (the
                # control room said "run ? done")
                event = dataclasses.replace(event, run_id=current.run_id)
                if self._recording and self.recorder is not None:
                    self.recorder.on_run_finished(event)
                elif self.store is not None and current.history is not None and self.store.holds(current.history):
                    # the environment's file: its last episode is committed before its ENV_DONE is sent,
                    # so the run's figures read now are the ones its table will show (not a second old)
                    self.store.refresh()
                self._current, self._recording = None, False
            self._emit(event)

    def _is_current(self, event: object) -> bool:
        run_id = getattr(event, "run_id", None)
        return self._current is not None and run_id in (None, self._current.run_id)

    def _record_joined(self, joined: RunJoined) -> RunJoined:
        """The episodes a RUN_STATE tells with their numbers, recorded as the run's; ``joined`` with
        how many of its finished episodes this room then has nothing of (``missed``)."""
        if not self._recording or self.recorder is None:
            return joined
        now = time.time()
        # when they ended there, as every episode heard (not told: when told here)
        told = [replace(e, wall_time=e.wall_time or now) for e in joined.told() if self._episodes.first(e.episode)]
        self.recorder.on_episodes(told)
        # the episodes heard while the query was out ended before the answer: FINISHED counts them,
        # and those it does not tell are recorded as they are handed on
        held = {(e.run_id, e.episode): e.steps for e in self._held if isinstance(e, EpisodeFinished)}
        known = _told(joined) | {(run_id, episode) for run_id, episode in held if run_id == joined.run.run_id}
        missed = max(0, joined.finished - len(known))
        if missed and joined.figures is not None and joined.lengths is not None:
            # their steps and best are told (FINISHED_STEPS, BEST): the history's steps/s is the
            # run's, not the recorded part's steps over the whole run's time
            # (those it has rows of, recorded before a reconnect, and those handed on next are not)
            coming = {episode: n for (run_id, episode), n in held.items() if run_id == joined.run.run_id}
            best, finished_steps = joined.figures
            self.recorder.on_unrecorded(joined.run.run_id, finished_steps, best, coming)
        return replace(joined, missed=missed)

    def _duplicate(self, event: EpisodeFinished) -> None:
        """A second copy of an episode already counted: the first wins; the first copy of a run is told."""
        self.duplicate_episodes += 1
        if self._episodes.duplicates == 1:
            run = protocol.clean_text(event.run_id, 80)
            self._emit(
                NetworkError(
                    "network",
                    f"ignored a second EPISODE_DONE for episode {event.episode} of run {run} (the first counts;"
                    " later copies are counted, not told)",
                    event.run_id,
                )
            )

    def _news_of(self, run_id: str) -> None:
        """News of a run: begin it if it is not the current one (sent but unannounced, or started elsewhere
        by an environment that does not announce)."""
        if self._current is not None and self._current.run_id == run_id:
            return
        started = self._sent.pop(run_id, None)
        self._begin(started if started is not None else RunStarted(run_id, 0, False, instances=0))

    def _begin(self, started: RunStarted, *, announce: bool = True) -> None:
        self._begun.add(started.run_id)
        self._current = started
        self._episodes = SeenEpisodes()
        store = self.store
        shared = store is not None and started.history is not None and store.holds(started.history)
        self._recording = store is not None and not shared
        if shared and store is not None:
            store.refresh()  # the environment committed the run's row before announcing it
        elif self._recording and self.recorder is not None:
            self.recorder.on_run_started(started if started.started else _now(started))
        if announce:
            self._emit(started)

    def lost(self) -> None:
        """The network went away: the run followed is over here (the environment may play on).
        Whose news counts is learnt afresh (an environment here is announced again)."""
        with self._lock:
            self._current, self._recording = None, False
            self._begun = RecentNames(defaults.RUN_IDS_KEPT)  # the run going is joined again, told again
            self._sent.clear()  # starts not announced before the loss: none will be now
            if not self.environment_here:  # the network's environment is learnt afresh
                self._environment, self._announces = None, self.environment_here


def _who(sender: object) -> str:
    """A sender (a SENT_BY) as compared: itself, or a digest of a long one (pins stay small)."""
    name = sender if isinstance(sender, str) else "?"
    if len(name) <= _NAME_KEPT:
        return name
    return "#" + hashlib.blake2b(name.encode(protocol.FORMAT, "replace")).hexdigest()


def _told(joined: RunJoined | None) -> set[tuple[str, int]]:
    """(run id, episode) of the episodes ``joined``'s state tells (a copy heard while asking is dropped)."""
    return set() if joined is None else {(e.run_id, e.episode) for e in joined.told()}


def _now(started: RunStarted) -> RunStarted:
    return RunStarted(started.run_id, started.episodes, started.deterministic, started.seed, time.time())


class _Forward(EnvironmentObserver):
    """The environment's run events, handed on (steps are not run events)."""

    def __init__(self, forward: Callable[[object], None]):
        self._forward = forward

    def on_run_started(self, event: RunStarted) -> None:
        self._forward(event)

    def on_episode(self, event: EpisodeFinished) -> None:
        self._forward(event)

    def on_run_finished(self, event: RunFinished) -> None:
        self._forward(event)
