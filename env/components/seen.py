"""What a control room has seen, kept small whatever the network sends.

Components layer, no sockets: the control client, the runtime's run events and the app use it.

:class:`SeenEpisodes` tells the first copy of a run's episode from later ones (a fake
``EPISODE: 1`` must not replace the real episode 1) in constant time, keeping only the numbers
seen above the lowest one not seen yet. :class:`RecentNames`
keeps the most recent component names and counts the rest, and :class:`NameFlood` lets
a few new names a second through and summarises the others, so that 100,000 REGISTERs
cost neither memory that stays nor a log line each.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

MAX_NAMES = 200  # component names kept (the most recent); the others are counted
NAMES_PER_SECOND = 20  # new names told one by one each second; beyond, summarised


class SeenEpisodes:
    """The episode numbers of one run counted so far; ``duplicates`` counts the copies refused.

    Every number up to ``_below`` was seen; ``_above`` holds those seen beyond it. A vectorised
    run's episodes end out of number order (short ones first), so a scan of every number seen
    (the way before: ~0.4 ms an episode at 20,000) made a long run quadratic; here a number
    costs a set look-up, and ``_above`` holds only the numbers that overtook a lower one."""

    def __init__(self) -> None:
        self._below = 0
        self._above: set[int] = set()
        self.duplicates = 0

    def first(self, index: int) -> bool:
        """True (and remembered) the first time ``index`` is seen; False for a copy."""
        if index <= self._below or index in self._above:
            self.duplicates += 1
            return False
        if index == self._below + 1:
            self._below = index
            while self._below + 1 in self._above:  # each number leaves the set once: O(1) amortised
                self._below += 1
                self._above.remove(self._below)
        else:
            self._above.add(index)
        return True


class RecentNames:
    """At most ``limit`` names, the most recently seen last; ``dropped`` counts those let go."""

    def __init__(self, limit: int = MAX_NAMES) -> None:
        self.limit = limit
        self._names: OrderedDict[str, None] = OrderedDict()
        self.dropped = 0

    def add(self, name: str) -> bool:
        """Remember ``name``; True when it was not among the names kept."""
        if name in self._names:
            self._names.move_to_end(name)
            return False
        self._names[name] = None
        if len(self._names) > self.limit:
            self._names.popitem(last=False)
            self.dropped += 1
        return True

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __len__(self) -> int:
        return len(self._names)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)


class NameFlood:
    """Which new component names to tell one by one: ``per_second`` a second; the rest are counted
    and :meth:`summary` hands their number on once the second is over."""

    def __init__(self, per_second: int = NAMES_PER_SECOND, limit: int = MAX_NAMES) -> None:
        self.per_second = per_second
        self.names = RecentNames(limit)
        self._window = 0.0  # when the current second began
        self._told = 0  # names told in it
        self._untold = 0  # new names not told since the last summary

    def tell(self, name: str, now: float) -> bool:
        """Whether to tell ``name`` (a new one within the rate); new ones beyond it are counted."""
        if not self.names.add(name):
            return False
        if now - self._window >= 1.0:
            self._window, self._told = now, 0
        if self._told < self.per_second:
            self._told += 1
            return True
        self._untold += 1
        return False

    def summary(self, now: float) -> int:
        """The new names not told, once the second they came in is over (0 otherwise); then reset."""
        if not self._untold or now - self._window < 1.0:
            return 0
        untold, self._untold = self._untold, 0
        return untold
