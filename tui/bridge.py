"""From network threads to the app: events queued, one coalesced message posted.

The environment's and control client's threads call in here; the app drains the
queue in its own thread. However fast episodes come, at most one ``EventsPending``
waits in the app's queue, and steps only overwrite ``latest_observation``: the UI
never slows the loop and its queue cannot grow without bound.
"""

from __future__ import annotations

import threading
from collections import deque

from textual.message import Message

from cartpole_tui.env.components.environment import EnvironmentObserver
from cartpole_tui.env.runtime.events import EpisodeFinished, NetworkError, RunFinished, RunStarted


class EventsPending(Message):
    """There are network events to drain; newer ones supersede older ones."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, EventsPending)


class NetworkBridge(EnvironmentObserver):
    """Collects events from the environment (in-process) and the control client."""

    def __init__(self, post, *, env_embedded: bool):
        self._post = post
        self._events: deque = deque()
        self._posted = threading.Event()
        self.env_embedded = env_embedded
        self.latest_observation = None
        self.steps = 0

    def push(self, event) -> None:
        self._events.append(event)
        if not self._posted.is_set():
            self._posted.set()
            self._post(EventsPending())

    def drain(self) -> list:
        self._posted.clear()
        events = []
        while self._events:
            events.append(self._events.popleft())
        return events

    # --- the embedded environment (its thread) -----------------------------------

    def on_run_started(self, event: RunStarted) -> None:
        self.push(event)

    def on_step(self, observation, reward: float, done: bool) -> None:
        self.latest_observation = observation
        self.steps += 1

    def on_episode(self, event: EpisodeFinished) -> None:
        self.push(event)

    def on_run_finished(self, event: RunFinished) -> None:
        self.push(event)

    # --- the control client (its thread) ------------------------------------------

    def on_control_event(self, event) -> None:
        # With the environment in this process its events came above, without a round trip;
        # the control room's copies of them would count twice.
        if self.env_embedded and isinstance(event, (EpisodeFinished, RunFinished)):
            return
        if self.env_embedded and isinstance(event, NetworkError) and event.source == "environment":
            self.push(event)  # the environment's own report, once (its observer hook is not used)
            return
        self.push(event)
