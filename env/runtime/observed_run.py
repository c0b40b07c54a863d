"""The published environment's run as its observations show it, and what a stop means for it.

Runtime layer: the session feeds it every one-instance observation it hears in ``observation``
(the published environment tells nothing else: no RUN_STARTED, no EPISODE_DONE, no STOP).

:class:`ObservedRun` counts the run's episodes and steps and its steps a second, so that ``x``
can say what will happen: their environment knows no STOP and plays its episodes to the end.
The session's stop is two steps for it: the first ``x`` says so with an ETA, the second lets the
control room go on (the run is recorded as stopped here; its late ENV_DONE is recorded too).
"""

from __future__ import annotations

import time


class ObservedRun:
    """One run of an environment seen only through its observations."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.started = 0.0  # monotonic time of the run's first observation (0: none yet)
        self.last = 0.0  # ... of its latest one
        self.steps = 0
        self.episodes = 0
        self.scores: list[float] = []  # the finished episodes' scores (1 a step in CartPole: their steps)
        self._score = 0.0

    def observed(self, first: bool, reward: float, done: bool, now: float | None = None) -> None:
        """An observation: a run's ``first`` (no reward) begins a new count."""
        now = time.monotonic() if now is None else now
        if first:
            self._reset()
            self.started = self.last = now
            return
        if not self.started:
            self.started = now  # joined mid-run: counted from here
        self.last = now
        self.steps += 1
        self._score += reward
        if done:
            self.episodes += 1
            self.scores.append(self._score)
            self._score = 0.0

    def steps_per_s(self) -> float | None:
        elapsed = self.last - self.started
        return self.steps / elapsed if self.steps and elapsed > 0 else None

    def seconds_left(self, asked: int) -> float | None:
        """The time the run's remaining episodes take at the rate seen (None: nothing to go by)."""
        rate = self.steps_per_s()
        if rate is None or not asked:
            return None
        per_episode = self.steps / self.episodes if self.episodes else self.steps  # a lower bound before the first
        return max(0, asked - self.episodes) * per_episode / rate

    def no_stop_text(self, asked: int) -> str:
        """What the first ``x`` says: their environment has no STOP, how long it plays on."""
        left = self.seconds_left(asked)
        rate = self.steps_per_s()
        eta = f", about {_duration(left)} at {rate:.0f} steps/s" if left is not None and rate is not None else ""
        episodes = f"its {asked} episodes" if asked else "its episodes"
        return f"their environment has no STOP: it finishes {episodes}{eta}; x again stops waiting"


def _duration(seconds: float) -> str:
    """``40 s``, ``3 min``, ``1 h 5 min``: an ETA, rounded as a person reads it."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"
