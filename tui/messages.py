"""Every Textual message of the control room, in one place.

Widgets post requests (they decide nothing); the controller posts ``EventsPending`` when
the network has news. Handlers are named after these classes (``on_start_requested``…).
"""

from __future__ import annotations

from textual.message import Message


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
