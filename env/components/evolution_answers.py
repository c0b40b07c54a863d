"""Which EVO_DONE answers the control client's EVOLUTION request: the rules, no sockets.

A components-layer room used by :mod:`~cartpole_tui.env.components.control` (which holds the
lock and does the waiting). Our evolution echoes the request's ROOT_ID. The published one
answers one request up to 21 times, each with a fresh random ROOT_ID; so while a request is
pending any EVO_DONE is taken except one naming an earlier request, and once such foreign
ROOT_IDs are seen the evolution room is watched: a foreign EVO_DONE then counts only after
an answer to the request's own GET (WEIGHTS/CONTRIBUTION carry its ROOT_ID) went by.

What went by in the evolution room also says why no EVO_DONE came (:meth:`EvolutionAnswers.silence`):
the published evolution keeps every model's WEIGHTS it ever saw and evolves only at exactly 20,
so after one model restarts it counts 21 and never answers again.
"""

from __future__ import annotations

from collections.abc import Callable

from cartpole_tui.env import defaults
from cartpole_tui.env.components.seen import RecentNames
from cartpole_tui.env.events import EvolutionFinished, EvolutionSeen
from cartpole_tui.env.wire import batch, protocol

KEPT_REQUESTS = 16  # ids of the latest requests an EVO_DONE may name as "earlier"


class EvolutionAnswers:
    """The pending EVOLUTION request and the EVO_DONEs heard; the caller serialises the calls.

    ``watch_room`` is called once, at the first request: from then on the caller passes the
    evolution room's messages to :meth:`seen_in_room`.
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
        self._foreign = False  # an EVO_DONE with a ROOT_ID of its own came: the published evolution
        # what went by in `evolution` for the pending request: its GET, the models' WEIGHTS, a CONTRIBUTION
        self._get = False
        self._weights: set[str] = set()
        self._contribution = False
        self.models = RecentNames(defaults.MODEL_CENSUS_MAX_IDS)  # every model that ever sent WEIGHTS
        self.generation = -1  # the highest GENERATION heard in an EVO_DONE

    def ask(self, request_id: str, now: float) -> None:
        """A new request goes out (after EVO_DONEs were quiet: see ControlClient.request_evolution)."""
        self._asked = [*self._asked[1 - KEPT_REQUESTS :], request_id]
        self._pending_seen = self._get = self._contribution = False
        self._weights = set()
        if not self._watching:
            self._watching = True
            self._watch_room()
        self.pending, self.answer, self.started = request_id, None, now

    @property
    def echoes(self) -> bool:
        """True while every EVO_DONE heard named its request (our evolution): then no trailing
        answer can be taken for the next request, and it need not wait for quiet first."""
        return not self._watching

    def give_up(self) -> None:
        """The request timed out: a late EVO_DONE answers nothing."""
        self.pending = None

    def seen_in_room(self, msg: dict) -> None:
        """A message went by in the evolution room."""
        if self.pending is None or msg.get("ROOT_ID") != self.pending:
            return
        self._pending_seen = True
        component = msg.get("COMPONENT_ID")
        if msg.get("CMD") == "GET":
            self._get = True
        elif "WEIGHTS" in msg and isinstance(component, str):
            self._answered([component])
        elif batch.BATCH_WEIGHTS in msg and "CMD" not in msg and isinstance(msg.get("COMPONENT_IDS"), list):
            # our pool's answer, every model at once (a SET carries BATCH_WEIGHTS too)
            self._answered([i for i in msg["COMPONENT_IDS"][: defaults.MODELS_MAX] if isinstance(i, str)])
        elif "CONTRIBUTION" in msg:
            self._contribution = True

    def _answered(self, components: list[str]) -> None:
        """Models whose weights answered the pending GET."""
        for component in components:
            component = protocol.clean_text(component, 80)
            self.models.add(component)
            if len(self._weights) < defaults.MODEL_CENSUS_MAX_IDS:
                self._weights.add(component)

    def silence(self, timeout: float) -> str:
        """Why the pending request has no answer after ``timeout`` s, from what went by in the room."""
        if not self._get:
            return f"no evolution component answered EVOLUTION within {timeout:g}s"
        weights = len(self._weights)
        if not weights:
            return f"the evolution sent GET but no model answered with WEIGHTS within {timeout:g}s"
        answered = f"the evolution answered GET with {weights} WEIGHTS"
        if not self._contribution:
            return f"{answered} but no CONTRIBUTION (is the aggregation running?) and no EVO_DONE in {timeout:g}s"
        counted = len(self.models)
        if counted > weights:
            return (
                f"{answered} and the CONTRIBUTION but sent no EVO_DONE in {timeout:g}s: {counted} models"
                " were seen in the evolution room"
                " (a model restarted? the published evolution keeps every model it saw and evolves at exactly 20)"
                " — restart the aggregation and evolution"
            )
        return f"{answered} and the CONTRIBUTION but sent no EVO_DONE in {timeout:g}s"

    def heard(self, msg: dict, now: float, at: float) -> EvolutionFinished | None:
        """An EVO_DONE (monotonic ``now``, wall clock ``at``): the answer it is, or None when it
        answers no pending request."""
        self.last_heard = now
        root = msg.get("ROOT_ID")
        pending = self.pending
        earlier = isinstance(root, str) and root != pending and root in self._asked
        foreign = root != pending and not earlier
        if foreign and not self._foreign:
            self._foreign = True  # the first foreign one is taken: the room may not have been heard yet
        elif foreign and not self._pending_seen:
            earlier = True  # no answer to our GET has been seen yet: it answers an earlier request
        if pending is None or earlier:
            self.stale += 1
            return None
        self.pending = None
        report = protocol.evolution_report(msg)  # our evolution's population report (additive keys)
        self.generation = max(self.generation, report.get("generation", -1))
        self.answer = EvolutionFinished(
            now - self.started, sent_by=_sender(msg), at=at, root_id=root if isinstance(root, str) else None, **report
        )
        return self.answer

    def elsewhere(self, msg: dict, at: float) -> EvolutionSeen | None:
        """An EVO_DONE that answered none of our requests (heard said None): another control
        room's evolution, when it tells a generation not heard before (ours answers a request
        once; the published one, up to 21 times, tells none)."""
        report = protocol.evolution_report(msg)
        generation = report.pop("generation", None)
        if generation is None or generation <= self.generation:
            return None
        self.generation = generation
        return EvolutionSeen(generation, sent_by=_sender(msg), at=at, **report)


def _sender(msg: dict) -> str:
    sent_by = msg.get("SENT_BY")
    return protocol.clean_text(sent_by, 80) if isinstance(sent_by, str) else "?"
