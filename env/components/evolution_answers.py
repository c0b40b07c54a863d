"""Which EVO_DONE answers the control client's EVOLUTION request: the rules, no sockets.

A components-layer room used by :mod:`~cartpole_tui.env.components.control` (which holds the
lock and does the waiting). Our evolution echoes the request's ROOT_ID. The published one
answers one request up to 21 times, each with a fresh random ROOT_ID; so while a request is
pending any EVO_DONE is taken except one naming an earlier request, and once such foreign
ROOT_IDs are seen the evolution room is watched: a foreign EVO_DONE then counts only after
an answer to the request's own GET (WEIGHTS/CONTRIBUTION carry its ROOT_ID) went by.
"""

from __future__ import annotations

from collections.abc import Callable

from cartpole_tui.env.events import EvolutionFinished
from cartpole_tui.env.wire import protocol

KEPT_REQUESTS = 16  # ids of the latest requests an EVO_DONE may name as "earlier"


class EvolutionAnswers:
    """The pending EVOLUTION request and the EVO_DONEs heard; the caller serialises the calls.

    ``watch_room`` is called once, when the first foreign ROOT_ID shows an evolution that
    does not echo ours: from then on the caller passes the evolution room's ROOT_IDs to
    :meth:`seen_in_room`.
    """

    def __init__(self, watch_room: Callable[[], None]):
        self._watch_room = watch_room
        self.pending: str | None = None  # the id of the request waiting for its answer
        self.answer: EvolutionFinished | None = None  # the latest request's, once it came
        self.started = 0.0  # monotonic time the latest request was sent
        self.last_heard = 0.0  # monotonic time of the last EVO_DONE heard, answer or not
        self.stale = 0  # EVO_DONEs that answered no pending request
        self._asked: list[str] = []  # ids of the latest requests
        self._watching = False
        self._pending_seen = False  # a message answering the pending request went by in `evolution`

    def ask(self, request_id: str, now: float) -> None:
        """A new request goes out (after EVO_DONEs were quiet: see ControlClient.request_evolution)."""
        self._asked = [*self._asked[1 - KEPT_REQUESTS :], request_id]
        self._pending_seen = False
        self.pending, self.answer, self.started = request_id, None, now

    @property
    def echoes(self) -> bool:
        """True while every EVO_DONE heard named its request (our evolution): then no trailing
        answer can be taken for the next request, and it need not wait for quiet first."""
        return not self._watching

    def give_up(self) -> None:
        """The request timed out: a late EVO_DONE answers nothing."""
        self.pending = None

    def seen_in_room(self, root: object) -> None:
        """A message with ROOT_ID ``root`` went by in the evolution room."""
        if self.pending is not None and root == self.pending:
            self._pending_seen = True

    def heard(self, msg: dict, now: float, at: float) -> EvolutionFinished | None:
        """An EVO_DONE (monotonic ``now``, wall clock ``at``): the answer it is, or None when it
        answers no pending request."""
        self.last_heard = now
        root = msg.get("ROOT_ID")
        pending = self.pending
        earlier = isinstance(root, str) and root != pending and root in self._asked
        foreign = root != pending and not earlier
        if foreign and not self._watching:
            self._watching = True
            self._watch_room()
        elif foreign and not self._pending_seen:
            earlier = True  # no answer to our GET has been seen yet: it answers an earlier request
        if pending is None or earlier:
            self.stale += 1
            return None
        self.pending = None
        sent_by = msg.get("SENT_BY")
        self.answer = EvolutionFinished(
            now - self.started,
            sent_by=protocol.clean_text(sent_by, 80) if isinstance(sent_by, str) else "?",
            at=at,
            root_id=root if isinstance(root, str) else None,
            **protocol.evolution_report(msg),  # our evolution's population report (additive keys)
        )
        return self.answer
