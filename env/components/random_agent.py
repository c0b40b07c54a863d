"""A random policy: the honest stand-in agent when no learning swarm is present.

Components layer (a client on env/wire): the embedded network runs it for ``--agent random``.
"""

from __future__ import annotations

import numpy as np
from swergio import MESSAGE_TYPE, Trigger

from cartpole_tui.env.wire import protocol
from cartpole_tui.env.wire.transport import Component


class RandomAgent:
    """Answers every observation with a uniformly random ACTION on the action room."""

    def __init__(
        self, host: str, port: int, *, n_actions: int = 2, seed: int | None = None, name: str = "random-agent"
    ):
        self._rng = np.random.default_rng(seed)
        self._n_actions = n_actions
        self.client = Component(name, host, port)
        custom = MESSAGE_TYPE.DATA.CUSTOM
        self.client.add_eventHandler(
            self._act, custom, responseRooms=protocol.ACTION, trigger=Trigger(custom, protocol.OBSERVATION)
        )

    def _act(self, msg: dict) -> dict:
        return {"ACTION": [int(self._rng.integers(self._n_actions))]}

    def start(self) -> RandomAgent:
        self.client.start()
        return self

    def close(self) -> None:
        self.client.close()
