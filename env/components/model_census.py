"""Which models answered the last observation: the stall message names the ones that did not.

Components layer, no sockets: the control client feeds it what it hears in ``observation`` and
``logits`` (it listens there only while runs are slow: see ``defaults.MODEL_CENSUS_MAX_RATE``).

The published models all register as ``model``; what tells them apart is the COMPONENT_ID of
their LOGITS. One observation is in flight at a time, and the broker relays in order, so the
LOGITS heard since the last observation answer it. A model known from earlier observations
that is missing from them did not answer.
"""

from __future__ import annotations

from cartpole_tui.env import defaults
from cartpole_tui.env.components.seen import RecentNames
from cartpole_tui.env.wire import protocol

MAX_MODELS = defaults.MODEL_CENSUS_MAX_IDS
SHOWN_IDS = 8  # characters of a COMPONENT_ID in a message (uuid4 hex: enough to tell 20 apart)
NAMED_AT_MOST = 3  # silent models named one by one; beyond, counted


class ModelCensus:
    """The models heard (by COMPONENT_ID) and which of them answered the last observation."""

    def __init__(self) -> None:
        self.known = RecentNames(MAX_MODELS)
        self.answered: set[str] = set()
        self.observations = 0  # observations heard since the census began

    def observation(self) -> None:
        """An observation went out: the answers heard so far were to the one before."""
        self.observations += 1
        self.answered = set()

    def logits(self, message: dict) -> None:
        """A LOGITS message (a batch one has no COMPONENT_ID: not counted)."""
        component = message.get("COMPONENT_ID")
        if not isinstance(component, str) or not component:
            return
        component = protocol.clean_text(component, 80)
        self.known.add(component)
        if len(self.answered) < MAX_MODELS:
            self.answered.add(component)

    def silent(self) -> list[str]:
        """The known models that have not answered the last observation."""
        return sorted(model for model in self.known if model not in self.answered)

    def text(self) -> str | None:
        """ "19 of 20 models answered the last observation; model 3f2a9c1e did not", or None
        when nothing is known (no observation, or no model ever heard)."""
        if not self.observations or not len(self.known):
            return None
        silent = self.silent()
        answered, known = len(self.known) - len(silent), len(self.known)
        if not silent:
            return f"all {known} models answered the last observation (the aggregation sent no ACTION?)"
        shown = ", ".join(model[:SHOWN_IDS] for model in silent[:NAMED_AT_MOST])
        more = f" and {len(silent) - NAMED_AT_MOST} more" if len(silent) > NAMED_AT_MOST else ""
        who = "model" if len(silent) == 1 else "models"
        return f"{answered} of {known} models answered the last observation; {who} {shown}{more} did not"
