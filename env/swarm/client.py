"""What the built-in swarm's components share.

Swarm layer, on env/wire: :class:`SwarmComponent` (a client with a direct path for the
per-step rooms, and a watchdog for time-outs) is the base of :mod:`.models`,
:mod:`.aggregation` and :mod:`.evolution`; :func:`finite_vector` checks the numbers in
their messages.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
from collections.abc import Callable
from typing import Any, Self

from swergio import MESSAGE_TYPE

from cartpole_tui.env.wire import protocol
from cartpole_tui.env.wire.transport import Component, ConnectionLost

log = logging.getLogger(__name__)

CUSTOM = MESSAGE_TYPE.DATA.CUSTOM


class SwarmClient(Component):
    """A Component with a direct path for its per-step rooms.

    ``on_room(room, fn)`` joins ``room`` and hands its DATA/CUSTOM messages straight
    to ``fn`` (which sends its own replies), skipping the generic handler scan: at 20
    LOGITS a step that scan is a sizeable share of the aggregation's time.
    """

    batch = True  # the swarm's models and aggregation answer batch steps

    def __init__(self, name: str, host: str, port: int, **kwargs: Any):
        super().__init__(name, host, port, **kwargs)
        self._ids = itertools.count()
        self._id_prefix = protocol.new_id()[:16]
        self._direct: dict[str, Callable[[dict], None]] = {}

    def on_room(self, room: str, function: Callable[[dict], None]) -> None:
        self.join_room(room)
        self._direct[room] = function

    def dispatch(self, message: dict) -> None:
        room = message.get("TO_ROOM")
        function = self._direct.get(room) if isinstance(room, str) else None
        if function is None or message.get("TYPE") != CUSTOM.id:
            super().dispatch(message)
            return
        try:
            function(message)
        except ConnectionLost:
            raise
        except Exception:  # a handler's bug must not end the component
            log.exception("%s: handler %s failed", self.name, function.__name__)

    def next_id(self) -> str:
        """A message ID unique to this client (cheaper than a uuid4 per message)."""
        return f"{self._id_prefix}{next(self._ids):x}"

    def message(self, room: str, trigger: dict | None, payload: dict) -> dict:
        """A DATA/CUSTOM message to ``room``, carrying the trigger's ROOT_ID and MODEL_STATUS.

        SENT_BY is set here so that the broker need not re-encode the frame.
        """
        payload.update(ID=self.next_id(), TYPE=CUSTOM.id, TO_ROOM=room)
        return self.add_propagated_fields(trigger or {}, payload)


def finite_vector(value: object, length: int) -> list[float] | None:
    """``value`` if it is a list of ``length`` finite numbers (not bools), else None."""
    if type(value) is not list or len(value) != length:
        return None
    if not all(type(x) is float or type(x) is int for x in value):
        return None
    try:  # as floats: huge integers (JSON allows 4,300 digits) of opposite signs summed to 0 as ints
        return value if math.isfinite(sum(map(float, value))) else None  # a sum that overflows is refused too
    except OverflowError:  # an integer past float's range
        return None


class Watchdog:
    """Calls ``check`` every ``interval`` s in a daemon thread until stopped."""

    def __init__(self, name: str, interval: float, check: Callable[[], None]):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(interval, check), name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self, interval: float, check: Callable[[], None]) -> None:
        while not self._stop.wait(interval):
            try:
                check()
            except Exception:  # a failed check must not end the watchdog
                log.exception("watchdog %s failed", self._thread.name)

    def stop(self) -> None:
        self._stop.set()


class SwarmComponent:
    """One of the swarm's components: its client named ``name`` and, for one with
    time-outs, a watchdog calling ``_check_timeout`` every ``check_every`` s; started
    and closed together."""

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        on_disconnect: Callable[[str], None] | None = None,
        check_every: float | None = None,
    ):
        self.client = SwarmClient(name, host, port, on_disconnect=on_disconnect)
        self._watchdog = None
        if check_every is not None:
            self._watchdog = Watchdog(f"{name}-timeouts", check_every, self._check_timeout)

    def _check_timeout(self) -> None:
        """What the watchdog checks (a component with ``check_every`` has this)."""

    def start(self) -> Self:
        self.client.start()
        if self._watchdog is not None:
            self._watchdog.start()
        return self

    def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.stop()
        self.client.close()
