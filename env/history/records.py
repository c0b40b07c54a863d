"""What the run history holds: a run's parameters, the run as the runs table shows it, an episode.

Plain values, shared by the store's reads (env/history/store.py), its writer
(env/history/writer.py) and the export; the store hands out copies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

END_STATES = ("done", "stopped", "failed")


@dataclass(frozen=True)
class RunParams:
    """What a run was started with."""

    episodes: int
    deterministic: bool
    seed: int | None
    env_id: str
    address: str


@dataclass
class RunRecord:
    """One run as the runs table shows it; ``finished`` counts its recorded episodes."""

    number: int
    run_uid: str
    params: RunParams
    started: float
    ended: float | None = None
    avg_score: float | None = None
    state: str = "running"
    finished: int = 0
    best: float | None = None
    total_steps: int = 0
    last_episode_at: float | None = None
    followed: bool = False  # recorded from the network by a control room, not where it was played

    @property
    def duration(self) -> float | None:
        """Seconds from its start to its end, or to its last episode while running."""
        end = self.ended if self.ended is not None else self.last_episode_at
        return None if end is None else max(0.0, end - self.started)

    @property
    def steps_per_s(self) -> float | None:
        """A run's steps a second, the one figure every view shows (status line, log, runs table,
        details, export, `run`): its recorded episodes' steps over the time from its start to the
        last of them. Not to its end: when that was recorded depends on who heard it (a follower's
        clock, a moment later), and a stopped run's unfinished episode has steps not counted here."""
        return played_rate(self.total_steps, self.started, self.last_episode_at)


def played_rate(steps: int, started: float, last_episode_at: float | None) -> float | None:
    """Steps a second from a run's start to its last recorded episode (see ``RunRecord.steps_per_s``)."""
    if last_episode_at is None:
        return None
    played = last_episode_at - started
    return steps / played if played > 0 else None


# One finished episode; ``wall_time`` is when it finished (Unix seconds). The functional form
# because mypy refuses a class-based NamedTuple field named ``index`` (it shadows tuple.index),
# and ``index`` is the name readers and the export (its JSON key) use.
Episode = NamedTuple("Episode", [("index", int), ("score", float), ("steps", int), ("wall_time", float)])  # noqa: UP014
