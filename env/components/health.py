"""What the broker's stats say about the network's health: who left, and which room stalls.

Components layer, no sockets: the control client feeds it the stats it hears.

Our broker sends its counters to the stats room each second (clients by name, messages per
room). Comparing two snapshots names a component that left within ~2 s (a `kill -9` is
seen by the broker at once), and while a run goes, the room that stopped answering.
Other brokers send no stats: then only the control client's idle time-out applies.
"""

from __future__ import annotations

from collections import Counter

from cartpole_tui.env import defaults
from cartpole_tui.env.components.model_census import ModelCensus
from cartpole_tui.env.events import BrokerStats, NetworkError
from cartpole_tui.env.wire import protocol

_STEP_ROOMS = (protocol.OBSERVATION, protocol.LOGITS, protocol.ACTION)
_QUIET = ("control", protocol.UNREGISTERED)  # control clients (`evolve`, `run`) come and go by design
_NAMES_TOLD = 5  # components named as having left a stalled run


class NetworkHealth:
    """Fed every BrokerStats (and whether a run is going); returns the warnings to show."""

    def __init__(self, stall_seconds: float = defaults.STALL_SECONDS):
        self.stall_seconds = stall_seconds
        self.clients: tuple[str, ...] | None = None
        self._counts: dict[str, int] | None = None  # step rooms' messages at the last observation
        self._run_start: dict[str, int] | None = None  # ... when the run was first seen going
        self._since = 0.0  # when the observation count last moved
        self._reported = False
        self._k: int | None = None  # LOGITS per observation in the last window observations moved
        self._k_before: int | None = None  # ... in the window before (the last may hold an unanswered one)
        self.listeners = 0  # our own clients in the observation room (a control room watching it)
        self._left_in_run: list[str] = []  # components that left while the run went (the latest few)
        # Set when a run stalls with nobody left in the observation room: no answer can come, so
        # the control client gives up at once rather than after its idle time-out.
        self.gone: NetworkError | None = None
        self.models: ModelCensus | None = None  # who answered the last observation, when the control listens

    def observe(self, stats: BrokerStats, running: bool) -> list[NetworkError]:
        left = self._left(stats.clients)
        warnings = [NetworkError(name, f"{name} left the network") for name in left]
        counts = {room: stats.rooms.get(room, (0, 0, 0))[1] for room in _STEP_ROOMS}
        if running:
            self._left_in_run = (self._left_in_run + left)[-_NAMES_TOLD:]
        if not running:
            self._run_start, self._left_in_run, self.gone = None, [], None
        elif self._run_start is None:
            self._run_start = self._counts or counts
        if not running or self._counts is None or counts[protocol.OBSERVATION] != self._counts[protocol.OBSERVATION]:
            if running and self._counts is not None:  # LOGITS per observation, as last seen flowing
                moved = counts[protocol.OBSERVATION] - self._counts[protocol.OBSERVATION]
                self._k_before, self._k = (
                    self._k,
                    round((counts[protocol.LOGITS] - self._counts[protocol.LOGITS]) / moved),
                )
            self._counts, self._since, self._reported = counts, stats.at, False
        elif not self._reported and stats.at - self._since >= self.stall_seconds:
            self._reported = True
            # its members: the environment (it answers there, so swergio joins it), our own
            # listeners, and the agents; with none of them left, no answer can come
            agents = stats.rooms.get(protocol.OBSERVATION, (0, 0, 0))[0] - 1 - self.listeners
            if agents <= 0:
                start = self._run_start or counts
                answered = bool(self._left_in_run) or counts[protocol.ACTION] > start[protocol.ACTION]
                self.gone = self._agents_left(stats.at - self._since, answered)
                warnings.append(self.gone)
            else:
                warnings.append(self._stalled(counts, stats.at - self._since))
        return warnings

    def _agents_left(self, seconds: float, answered: bool) -> NetworkError:
        """The stall of a run nobody is left to play: the agents left (those seen leaving named),
        or, when none answered in this run, none was there ("the agents left" misled then)."""
        waited = f"(no observation answered for {seconds:.0f}s)"
        if not answered:
            return NetworkError(
                protocol.OBSERVATION,
                f"run stalled: no agent is in room {protocol.OBSERVATION} to answer {waited}: is a swarm running?",
                ends_run=True,
            )
        who = f" ({', '.join(self._left_in_run)})" if self._left_in_run else ""
        return NetworkError(
            protocol.OBSERVATION,
            f"run stalled: the agents left{who}; no agent is left in room {protocol.OBSERVATION} to answer {waited}",
            ends_run=True,
        )

    def _left(self, clients: tuple[str, ...]) -> list[str]:
        before, self.clients = self.clients, clients
        if before is None:
            return []
        gone = Counter(before) - Counter(clients)
        return sorted(name for name in gone.elements() if name not in _QUIET)

    def _stalled(self, counts: dict[str, int], seconds: float) -> NetworkError:
        # Counts since the run began: one ACTION per observation but the last, and K LOGITS per
        # observation (K estimated from them), tell which room the chain stopped at.
        start = self._run_start or {}
        if counts[protocol.OBSERVATION] == start.get(protocol.OBSERVATION):
            start = {}  # first seen mid-run: the counts since the broker began are the best guess
        obs, logits, actions = (counts[room] - start.get(room, 0) for room in _STEP_ROOMS)
        per_observation = next((k for k in (self._k_before, self._k) if k), round(logits / obs) if obs else 0)
        census = self.models.text() if self.models is not None and self.models.silent() else None
        if actions >= obs:
            room, what = protocol.OBSERVATION, "the environment sent no observation after the last ACTION"
        elif census is not None:  # the control client heard the LOGITS: it knows who did not answer
            room, what = protocol.LOGITS, census
        elif not logits or logits < per_observation * obs:
            room, what = protocol.LOGITS, "no model answered the last observation"
        else:
            room, what = protocol.ACTION, "the aggregation sent no ACTION for the last observation"
        return NetworkError(room, f"run stalled: {what} for {seconds:.0f}s (room {room})")
