"""Training schedules, as the published control script runs them, through a ControlClient.

Runtime layer (top of env/): it drives a components-layer ControlClient; the app and
``run --schedule`` call it.

A round is: train N episodes (stochastic), evaluate M deterministic episodes, evolve.
Added to the published script: when every episode of a round's evaluation reaches
``target`` (its average, where the environment reports no episodes) the schedule
confirms it with ``final_eval`` deterministic episodes and stops there if
the confirmation holds (no evolution after a confirmed round, so the population
that was measured is the one left running); otherwise it evolves and goes on. An
evaluation is stopped at its first episode below the target (the round goes to no check
then, and a run waits for its longest episode: python -m bench.learn; its average is then the
episodes played's); a
confirmation is stopped early once it cannot reach the target even if every
remaining episode scored the best score seen in it (a 100-episode check of a
nearly solved policy is ~50k steps, most of the schedule's time). When
no round was confirmed, a last ``final_eval``-episode evaluation gives
``final_eval_avg``. With ``final_eval`` 0 there is no check: the first round whose
evaluation reaches the target ends the schedule solved, and otherwise the last round's
evaluation is ``final_eval_avg`` (against a slow network, such as the published one at
some 30 steps/s, a 100-episode check of a solved policy is half an hour).

Defaults: ``SCHEDULE_*`` in :mod:`cartpole_tui.env.defaults` — five solo training episodes a
round for each model of the default swarm (one generation, each model's fitness a mean of
five), and CartPole-v1's reward threshold as the target.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace

from cartpole_tui.env import defaults
from cartpole_tui.env.components.control import ControlClient
from cartpole_tui.env.components.spaces import CARTPOLE
from cartpole_tui.env.events import EnvSpaces, EpisodeFinished, RunFinished, RunStarted


class ScheduleStopped(Exception):
    """The schedule was told to stop; ``result`` holds the rounds finished before."""

    def __init__(self, result: ScheduleResult):
        super().__init__("schedule stopped")
        self.result = result


@dataclass(frozen=True)
class ScheduleSettings:
    rounds: int = defaults.SCHEDULE_ROUNDS
    train: int = defaults.SCHEDULE_TRAIN
    evaluate: int = defaults.SCHEDULE_EVALUATE
    final_eval: int = defaults.SCHEDULE_CONFIRM
    target: float | None = defaults.SCHEDULE_TARGET

    def __post_init__(self) -> None:
        limits = {"rounds": defaults.ROUNDS_MAX, "train": defaults.EPISODES_MAX, "evaluate": defaults.EPISODES_MAX}
        for name, most in limits.items():
            if not 1 <= getattr(self, name) <= most:
                raise ValueError(f"{name} must be 1..{most}, got {getattr(self, name)}")
        if not 0 <= self.final_eval <= defaults.EPISODES_MAX:
            raise ValueError(f"final_eval must be 0..{defaults.EPISODES_MAX}, got {self.final_eval}")


@dataclass
class RoundResult:
    round: int
    train_avg: float
    eval_avg: float
    train_seconds: float  # training wall time of this and all earlier rounds
    wall_seconds: float  # since the schedule started, at the end of the round
    train_steps: int  # training steps of this and all earlier rounds
    eval_episodes: int = 0  # the evaluation's; fewer than evaluate when an episode fell short of the target
    confirm_avg: float | None = None  # the final_eval-episode check, when the round reached target
    confirm_episodes: int = 0  # fewer than final_eval when the check was stopped as hopeless
    evolved: bool = False
    eval_below: float | None = None  # the evaluation's lowest score, when below the target (why no check)


@dataclass
class ScheduleResult:
    settings: ScheduleSettings
    rounds: list[RoundResult] = field(default_factory=list)
    final_eval_avg: float | None = None
    solved: bool = False  # a final evaluation reached target
    wall_seconds: float = 0.0
    stopped: bool = False  # interrupted before it ended: the rounds played so far
    # where a stop found it: the phase that did not begin ("train", "eval", …) and its round
    stopped_at: tuple[str, int] | None = None

    def to_json(self) -> dict:
        """A JSON-ready dict: per round results, final_eval_avg, settings, wall time."""
        return {
            "rounds": [asdict(r) for r in self.rounds],
            "final_eval_avg": self.final_eval_avg,
            "solved": self.solved,
            "stopped": self.stopped,
            "wall_seconds": self.wall_seconds,
            "settings": asdict(self.settings),
        }


def run_schedule(
    control: ControlClient,
    rounds: int = defaults.SCHEDULE_ROUNDS,
    train: int = defaults.SCHEDULE_TRAIN,
    evaluate: int = defaults.SCHEDULE_EVALUATE,
    on_round: Callable[[RoundResult], None] | None = None,
    on_episode: Callable[[EpisodeFinished], None] | None = None,
    *,
    final_eval: int = defaults.SCHEDULE_CONFIRM,
    target: float | None = defaults.SCHEDULE_TARGET,
    seed: int | None = None,
    idle_timeout: float = defaults.RUN_IDLE_TIMEOUT,
    on_phase: Callable[[str, int], None] | None = None,
    stop: threading.Event | None = None,
    best: float | None = defaults.EPISODE_MAX_SCORE,
    game: str | None = None,
    on_target: Callable[[EnvSpaces, float], None] | None = None,
) -> ScheduleResult:
    """Run the schedule through ``control``.

    ``on_episode`` gets every finished episode (training, evaluation and final) while
    the schedule runs; ``on_phase(phase, round)`` is called before each run and evolution, phase
    one of "train", "eval", "confirm", "evolve", "final"; ``seed`` seeds each run's first reset with
    seed, seed+1, …. Once ``stop`` is set (stop the current run too), the next phase
    raises :class:`ScheduleStopped` instead of starting; a STOP from another control room sets
    it (its STARTs tell the other rooms that a schedule runs). ``target`` is the environment's
    (:func:`target_for`); ``best`` its best episode score (:func:`best_episode`), None when unknown.
    ``game``: the environment whose reward_threshold ``target`` is (None: a target given, kept
    whatever is played); a run that announces another game with a reward_threshold makes the target
    and ``best`` that game's, told to ``on_target(spaces, target)`` (a network joined with --no-env
    may play another game than this room's --env-id: CartPole's 475 was Acrobot's target, never met).
    """
    settings = ScheduleSettings(rounds, train, evaluate, final_eval, target)
    result = ScheduleResult(settings)
    if seed is not None and not 0 <= seed <= defaults.SEED_MAX:
        raise ValueError(f"seed must be 0..{defaults.SEED_MAX}, got {seed}")
    # seed, seed + 1, …, wrapping within the seed range (a seed near its top stays a seed)
    seeds: Iterator[int | None] = (
        (n % (defaults.SEED_MAX + 1) for n in itertools.count(seed)) if seed is not None else itertools.repeat(None)
    )
    started = time.monotonic()
    train_seconds, train_steps = 0.0, 0

    def begin(phase: str, number: int) -> None:
        if stop is not None and stop.is_set():
            result.wall_seconds = time.monotonic() - started
            result.stopped, result.stopped_at = True, (phase, number)
            raise ScheduleStopped(result)
        if on_phase is not None:
            on_phase(phase, number)

    def going(run_id: str) -> str:
        """A stop asked while the run was being started found no run to STOP: this one is stopped."""
        if stop is not None and stop.is_set():
            control.stop_run()
        return run_id

    def run(phase: str, number: int, episodes: int, deterministic: bool) -> RunFinished:
        begin(phase, number)
        going(control.start_run(episodes, deterministic, seed=next(seeds)))
        return control.wait_run(idle_timeout)

    def confirm(number: int) -> RunFinished:
        begin("confirm", number)
        hopeless.watch(going(control.start_run(final_eval, True, seed=next(seeds))))
        return control.wait_run(idle_timeout)

    def evaluation(number: int) -> RunFinished:
        begin("eval", number)
        hopeless.watch(going(control.start_run(evaluate, True, seed=next(seeds))), evaluate, every=True)
        return control.wait_run(idle_timeout)

    hopeless = _HopelessConfirmation(control, final_eval, target, best)

    def on_started(event: RunStarted) -> None:
        nonlocal target, game
        spaces = event.spaces
        if game is None or spaces is None or spaces.env_id == game or spaces.reward_threshold is None:
            return
        game, target = spaces.env_id, spaces.reward_threshold
        hopeless.target, hopeless.best = target, best_episode(spaces)
        result.settings = replace(result.settings, target=target)
        if on_target is not None:
            on_target(spaces, target)

    stop = stop if stop is not None else threading.Event()
    listeners = [f for f in (on_episode, hopeless) if f is not None]
    with _forwarding_episodes(control, listeners, on_started), _told(control, stop, result):
        for number in range(1, rounds + 1):
            t0 = time.monotonic()
            trained = run("train", number, train, False)
            train_seconds += time.monotonic() - t0
            # steps as told with its episodes; the published environment tells none (CartPole: a reward a
            # step). An environment that tells none with negative rewards (Acrobot's) made the count
            # negative: never below 0
            train_steps += trained.steps or max(0, int(sum(trained.scores)))
            evaluated = evaluation(number)
            current = RoundResult(
                number, trained.avg_score, evaluated.avg_score, train_seconds, 0.0, train_steps, evaluated.episodes
            )
            if target is not None and evaluated.scores and min(evaluated.scores) < target:
                current.eval_below = min(evaluated.scores)
            if target is not None and _reached(evaluated, target):
                if final_eval:
                    confirmed = confirm(number)
                    current.confirm_avg, current.confirm_episodes = confirmed.avg_score, confirmed.episodes
                    result.final_eval_avg = current.confirm_avg
                    result.solved = current.confirm_avg >= target
                else:  # no check asked for: the round's evaluation stands for it
                    result.final_eval_avg = evaluated.avg_score
                    result.solved = True
            if not result.solved:
                begin("evolve", number)
                control.evolve()
                current.evolved = True
            current.wall_seconds = time.monotonic() - started
            result.rounds.append(current)
            if on_round is not None:
                on_round(current)
            if result.solved:
                break
        if not result.solved and final_eval:
            result.final_eval_avg = run("final", len(result.rounds), final_eval, True).avg_score
            result.solved = target is not None and result.final_eval_avg >= target
        elif result.final_eval_avg is None:
            result.final_eval_avg = result.rounds[-1].eval_avg
    result.wall_seconds = time.monotonic() - started
    return result


def _reached(run: RunFinished, target: float) -> bool:
    # all episodes, not the average: a confirmation of 100 episodes is worth avoiding on luck
    return min(run.scores) >= target if run.scores else run.avg_score >= target


def target_for(spaces: EnvSpaces, given: float | None = None) -> float:
    """The schedule's target: ``given``, else the environment's ``reward_threshold``; ValueError
    (one line) for an environment that has none."""
    if given is not None:
        return given
    if spaces.reward_threshold is None:
        raise ValueError(f"{spaces.env_id} has no reward_threshold: give the schedule a target (--target)")
    return spaces.reward_threshold


def best_episode(spaces: EnvSpaces) -> float | None:
    """The best score one episode can have, when known (CartPole-v1: 1 a step for 500 steps)."""
    return defaults.EPISODE_MAX_SCORE if spaces.env_id == CARTPOLE.env_id else None


class _HopelessConfirmation:
    """Stops the confirmation run once its mean cannot reach the target any more (only when
    the best score of an episode is known: ``best``), and an evaluation (``every`` episode must
    reach the target) at its first episode below it."""

    def __init__(
        self,
        control: ControlClient,
        episodes: int,
        target: float | None,
        best: float | None = defaults.EPISODE_MAX_SCORE,
    ):
        self.control, self.episodes, self.target, self.best = control, episodes, target, best
        self.run_id: str | None = None
        self.scores: list[float] = []
        self.played, self.every = episodes, False  # the episodes of the run watched, and its rule

    def watch(self, run_id: str, episodes: int | None = None, every: bool = False) -> None:
        """Watch ``run_id``: the confirmation, or an evaluation of ``episodes`` (``every``)."""
        self.run_id, self.scores = run_id, []
        self.played, self.every = episodes or self.episodes, every

    def __call__(self, event: EpisodeFinished) -> None:
        if event.run_id != self.run_id or self.target is None:
            return
        self.scores.append(event.score)
        if len(self.scores) >= self.played:
            return
        if self.every:
            hopeless = event.score < self.target
        elif self.best is not None:
            # A remaining episode may still score the environment's best: in a vectorised run
            # episodes end shortest first, so the best seen so far is no bound.
            bound = max(max(self.scores), self.best)
            hopeless = sum(self.scores) + (self.played - len(self.scores)) * bound < self.target * self.played
        else:
            return
        if hopeless:
            self.run_id = None  # stop once
            self.control.stop_run()


@contextlib.contextmanager
def _told(control: ControlClient, stop: threading.Event, result: ScheduleResult) -> Iterator[None]:
    """The schedule's runs are said to be a schedule's to the other rooms, and its end and how
    (SCHEDULE_ENDED), which they log."""
    control.begin_schedule(stop)
    ending = "failed"
    try:
        yield
        ending = "solved" if result.solved else "not solved"
    except (ScheduleStopped, KeyboardInterrupt):  # an x here or elsewhere; Ctrl-C of `run --schedule`
        ending = "stopped"
        raise
    finally:
        control.end_schedule(ending)


@contextlib.contextmanager
def _forwarding_episodes(
    control: ControlClient,
    listeners: list[Callable[[EpisodeFinished], None]],
    on_started: Callable[[RunStarted], None] | None = None,
) -> Iterator[None]:
    """Chains episode listeners (and ``on_started``, told each run's start) onto the control
    client's ``on_event`` for the schedule's duration."""
    previous = control.on_event

    def on_event(event: object) -> None:
        if previous is not None:
            previous(event)
        if isinstance(event, EpisodeFinished):
            for listener in listeners:
                listener(event)
        elif isinstance(event, RunStarted) and on_started is not None:
            on_started(event)

    control.on_event = on_event
    try:
        yield
    finally:
        control.on_event = previous
