"""Records the environment's runs in a :class:`~cartpole_tui.env.history.store.RunStore`, as they happen.

An :class:`~cartpole_tui.env.components.environment.EnvironmentObserver`: it runs in the environment's
thread and only enqueues (the store's writer thread does the disk work), so every
episode is saved as it ends without slowing the environment down.
"""

from __future__ import annotations

import logging
import os
import time

from cartpole_tui.env.events import EnvironmentObserver, EpisodeFinished, RunFinished, RunStarted
from cartpole_tui.env.history.store import HOST, MEMORY, RunStore

log = logging.getLogger(__name__)
DURABLE_WAIT = 1.0  # s an episode may wait for its commit (a locked file: the backlog keeps it)


class StoreRecorder(EnvironmentObserver):
    """Writes every run and episode the environment reports into ``store``.

    Events of a run it did not see start (attached mid-run) are skipped: it must
    never raise into the environment.
    """

    def __init__(
        self, store: RunStore, env_id: str, address: str, *, durable: bool = True, followed: bool = False
    ) -> None:
        self.store = store
        self.followed = followed  # records what a control room follows from the network
        self.env_id = env_id
        self.address = address
        # Each finished episode is committed before the environment replies to the next step,
        # so a kill -9 loses none: ~0.2 ms an episode (python -m bench.store --durable), <1 % of a run.
        self.durable = durable

    @property
    def history(self) -> tuple[str, str] | None:
        """(host, path) of the file it records in, as the environment announces it; None in memory."""
        if self.store.path == MEMORY or not self.store.on_disk:
            return None
        return HOST, os.path.abspath(self.store.path)

    def on_run_started(self, event: RunStarted) -> None:
        try:
            self.store.begin_run(
                event.run_id,
                episodes=event.episodes,
                deterministic=event.deterministic,
                seed=event.seed,
                env_id=event.env_id or self.env_id,
                address=self.address,
                started=event.started or time.time(),
                followed=self.followed,
            )
        except ValueError:  # already recorded (a control room that joined again)
            log.debug("run %s already recorded", event.run_id)
            return
        if self.durable:  # committed before the run is announced: a follower sharing the file finds it
            self.store.flush(DURABLE_WAIT)

    def on_episode(self, event: EpisodeFinished) -> None:
        self.on_episodes([event])

    def on_episodes(self, events: list[EpisodeFinished]) -> None:
        """Episodes that ended in one step: queued, then committed together (one wait for the
        writer a step, not one an episode: at 1,000 instances ~50 episodes end each step)."""
        added = False
        for event in events:
            try:
                self.store.add_episode(
                    event.run_id, event.episode, event.score, event.steps, event.wall_time or time.time()
                )
            except KeyError:
                log.debug("episode of an unrecorded run %s skipped", event.run_id)
                continue
            except ValueError as error:  # out of range: the store's columns stay aligned, the run goes on
                log.warning("%s", error)
                continue
            added = True
        if added and self.durable:
            self.store.flush(DURABLE_WAIT)

    def on_unrecorded(
        self, run_id: str, finished_steps: int, best: float | None, coming: dict[int, int] | None = None
    ) -> None:
        """The steps and best score of a run's episodes that ended before this room joined it and
        that it has no rows of (see RunStore.add_unrecorded)."""
        try:
            self.store.add_unrecorded(run_id, finished_steps, best, coming)
        except KeyError:
            log.debug("figures of an unrecorded run %s skipped", run_id)
        except ValueError as error:
            log.warning("%s", error)

    def on_run_finished(self, event: RunFinished) -> None:
        if event.run_id is None:  # a run without an id was never begun here
            log.debug("end of an unrecorded run %s skipped", event.run_id)
            return
        # the environment's clock when it says (a follower heard it later), as the run's start and episodes
        ended = time.time() if event.ended_at is None else event.ended_at
        try:
            self.store.end_run(
                event.run_id, avg_score=event.avg_score, state="stopped" if event.stopped else "done", ended=ended
            )
        except KeyError:
            log.debug("end of an unrecorded run %s skipped", event.run_id)
