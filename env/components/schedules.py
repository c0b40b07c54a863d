"""Schedules on a shared network: this control room's, and one another room runs.

Components layer, no sockets: the control client feeds it what it hears on ``control``.

A schedule's STARTs carry SCHEDULE (an addition: the published environment reads
NR_OF_EPISODE and ignores the rest), and its room says SCHEDULE_ENDED when it ends, and how
(ENDING; "left" from a room that quits mid-schedule, on its way out). The
other rooms hear both: while a schedule runs elsewhere, between its runs too (its
evolution), their ``s`` is refused; a start there replaced the schedule's next run, or its
next run replaced that start, and nobody was told. A STOP from another room stops this
room's schedule (its ``x``, meant for the schedule). A room gone without a word is forgotten
``SCHEDULE_GAP_TIMEOUT`` s after its schedule's last run ended, and a run of it of which nothing
is heard (no observation, no episode of it) for ``RUN_IDLE_TIMEOUT`` s — as long as its own room
waits for it (``run --timeout`` longer there is not known here) — is no run going: one START
whose run never played (refused by the environment, forged, or replayed with a RUN_ID already
played) refused every room's ``s`` until someone pressed ``x``. A START naming a schedule that
ended (its SCHEDULE_ENDED heard) or this room's own is no schedule elsewhere (a replay).
"""

from __future__ import annotations

import threading

from cartpole_tui.env import defaults
from cartpole_tui.env.components.seen import RecentNames
from cartpole_tui.env.wire import protocol

ENDED_KEPT = 1_000  # ids of ended schedules remembered (a replay of their START is ignored)


class Schedules:
    """What the control client knows of schedules; the caller holds its lock."""

    def __init__(self, gap: float = defaults.SCHEDULE_GAP_TIMEOUT, idle: float = defaults.RUN_IDLE_TIMEOUT):
        self.gap = gap
        self.idle = idle
        self.ours: str | None = None  # the id this room's schedule puts in its STARTs
        self._stop: threading.Event | None = None  # set to stop it
        self._other: str | None = None  # another room's schedule
        self._other_run: str | None = None  # its run going (None: between runs)
        self._other_ended = 0.0  # when its last run ended (time.monotonic)
        self._other_heard = 0.0  # the last word of its run going: its START, an observation, an episode
        self._ended = RecentNames(ENDED_KEPT)  # schedules that ended: a START naming one is a replay

    def begin(self, stop: threading.Event) -> str:
        """Our schedule begins: the id for its STARTs; ``stop`` is set by a STOP from another room."""
        self.ours, self._stop = protocol.new_id(), stop
        return self.ours

    def end(self) -> str | None:
        """Our schedule ended: its id (for SCHEDULE_ENDED), None when none was going."""
        ours, self.ours, self._stop = self.ours, None, None
        if ours is not None:
            self._ended.add(ours)
        return ours

    def heard_stop(self) -> bool:
        """A STOP from another room: True when it stopped our schedule."""
        if self._stop is None or self._stop.is_set():
            return False
        self._stop.set()
        return True

    def heard_start(self, message: dict, now: float) -> None:
        schedule = protocol.parse_schedule(message)
        if schedule is not None and schedule != self.ours and schedule not in self._ended:
            run_id = message.get("RUN_ID")
            self._other, self._other_run = schedule, run_id if protocol.valid_run_id(run_id) else None
            self._other_ended = self._other_heard = now

    def heard_progress(self, run_id: str | None, now: float) -> None:
        """Word of a run going: an episode of ``run_id``, or an observation (None: of whichever run)."""
        if self._other_run is not None and run_id in (None, self._other_run):
            self._other_heard = now

    def heard_run_end(self, run_id: object, now: float) -> None:
        if self._other_run is not None and run_id == self._other_run:
            self._other_run, self._other_ended = None, now

    def heard_ended(self, message: dict) -> bool:
        """A SCHEDULE_ENDED: True when it ended the schedule known to be going elsewhere."""
        schedule = protocol.parse_schedule(message)
        if schedule is None:
            return False
        self._ended.add(schedule)
        if schedule != self._other:
            return False
        self.forget_other()
        return True

    def other(self, now: float) -> str | None:
        """Another room's schedule going (its run, or between its runs), if one is known."""
        if self._other is None:
            return None
        if self._other_run is None and now - self._other_ended >= self.gap:
            self.forget_other()
        elif self._other_run is not None and now - self._other_heard >= self.idle:
            self.forget_other()  # its run is not playing: its room gave up on it too (or never was)
        return self._other

    def forget_other(self) -> None:
        self._other, self._other_run = None, None
