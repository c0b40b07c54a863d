"""A run's episodes in the order of their numbers, however they end.

A vectorised run numbers its episodes in start order (an interleave of its instances), and
a short episode ends before a long one started earlier: they arrive out of number order. The
app's plot and the TensorBoard mirror take them in number order, so that order carries no
length bias (and TensorBoard's lines do not double back): an episode waits here
until every lower number of its run has come, and a run's end (or the next run) lets out what
is left, gaps and all (a stopped run never plays some numbers). Components layer, no sockets.
"""

from __future__ import annotations

from cartpole_tui.env.events import EpisodeFinished

MAX_WAITING = 100_000  # episodes held back at most: past it the lowest goes out (a peer skipping numbers)


class InOrder:
    """Takes finished episodes as they arrive; gives them back in number order, per run."""

    def __init__(self, max_waiting: int = MAX_WAITING) -> None:
        self.max_waiting = max_waiting
        self.run_id: str | None = None
        self.next = 1  # the number the run's next released episode should have
        self.waiting: dict[int, EpisodeFinished] = {}
        self.as_they_come: set[str] = set()  # runs joined midway: their lower numbers may never come

    def joined(self, run_id: str) -> None:
        """A run this control room joined midway: which of its numbers already ended is unknown,
        so holding an episode back for a lower number could hold it until the run's end. Its
        episodes go out as they arrive (at most a few in flight around the join are out of order)."""
        if len(self.as_they_come) > 1000:
            self.as_they_come.clear()
        self.as_they_come.add(run_id)

    def add(self, event: EpisodeFinished) -> list[EpisodeFinished]:
        """Take one episode; returns those now due, in number order (an earlier run's rest first)."""
        released = self.flush() if event.run_id != self.run_id else []
        self.run_id = event.run_id
        if event.run_id in self.as_they_come:
            return [*released, event]
        if event.episode < self.next or event.episode in self.waiting:  # a number seen before: not held
            return [*released, event]
        self.waiting[event.episode] = event
        if len(self.waiting) > self.max_waiting:
            self.next = min(self.waiting)  # give up on the numbers below it
        while self.next in self.waiting:
            released.append(self.waiting.pop(self.next))
            self.next += 1
        return released

    def flush(self) -> list[EpisodeFinished]:
        """Everything held back, in number order; the next episode starts a run afresh."""
        released = [self.waiting[number] for number in sorted(self.waiting)]
        self.waiting.clear()
        self.run_id, self.next = None, 1
        return released
