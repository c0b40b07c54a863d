"""Every Textual message of the control room, in one place.

Widgets post requests (they decide nothing); the controller posts ``EventsPending`` when
the network has news; the app's worker threads post what they read from the run history
(``OverlaysLoaded``, ``DetailsLoaded``, ``ExportDone``). Handlers are named after these
classes (``on_start_requested``…).
"""

from __future__ import annotations

from textual.message import Message

from cartpole_tui.env.history.store import Episode, RunRecord
from cartpole_tui.tui.data.overlays import Overlay
from cartpole_tui.tui.data.score_history import RunEpisodes
from cartpole_tui.tui.export import Exported


class EventsPending(Message):
    """The controller holds events to drain; a newer one supersedes one still queued."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, EventsPending)


class StartRequested(Message):
    """Start a run with these settings (already validated by the control panel)."""

    def __init__(self, episodes: int, deterministic: bool):
        super().__init__()
        self.episodes = episodes
        self.deterministic = deterministic


class StopRequested(Message):
    """Stop the run (and the schedule, when one is going)."""


class EvolveRequested(Message):
    """One evolution step."""


class MarksChanged(Message):
    """The runs marked for comparison in the runs table changed."""

    def __init__(self, marked: frozenset[int]):
        super().__init__()
        self.marked = marked


class DetailsRequested(Message):
    """Show one run's details."""

    def __init__(self, number: int):
        super().__init__()
        self.number = number


class OverlaysLoaded(Message):
    """The marked runs' rolling means, read in a worker thread for the ``asked``-th marks change."""

    def __init__(self, overlays: list[Overlay], asked: int):
        super().__init__()
        self.overlays = overlays
        self.asked = asked


class DetailsLoaded(Message):
    """One run and its episodes, read in a worker thread for the ``asked``-th request."""

    def __init__(self, run: RunRecord, episodes: list[Episode], asked: int):
        super().__init__()
        self.run = run
        self.episodes = episodes
        self.asked = asked


class RunsReread(Message):
    """Runs' episodes as the history has them (number, scores, times, ENV_DONE average), read
    in a worker thread to take the place of what the plot drew of them."""

    def __init__(self, runs: list[RunEpisodes]):
        super().__init__()
        self.runs = runs


class ExportDone(Message):
    """An export finished in a worker thread: ``exported``, or the ``error`` that stopped it."""

    def __init__(self, exported: Exported | None = None, error: str | None = None):
        super().__init__()
        self.exported = exported
        self.error = error
