"""The broker's door: who may talk through it, and how often it may try.

A broker without a token admits everyone, as swergio's own server does. With one, a
connection from a trusted network is admitted as it arrives; any other must send a
REGISTER carrying the token as its first frame, or it is refused unheard. The token is
taken out of the REGISTER before it goes on (env/wire/framing.py): it goes no further than
the broker. (env/wire/auth.py holds the token files and the constant-time comparison.)

An address that keeps being refused is backed off: after a few free tries its new
connections are closed as they arrive, for a time that doubles with each further refusal.
Refusals are logged as one line per kind and interval plus a summary of the rest, so a
flood of wrong tokens cannot flood the log.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from cartpole_tui.env import defaults
from cartpole_tui.env.wire import auth, protocol

BACKING_OFF = "refused: too many refusals from this address; backing off"
_MAX_ADDRESSES = 10_000  # addresses remembered (back-off) or named (log); beyond, the longest quiet is forgotten


@dataclass
class _Strikes:
    """One address's refusals: how many, the last one, and until when it is backed off."""

    count: int = 0
    last: float = 0.0
    until: float = 0.0


class Admission:
    """``token`` None: everyone is admitted. ``refused`` counts the connections turned away,
    ``backed_off`` those of them closed as they arrived, unheard."""

    def __init__(
        self,
        token: str | None,
        trust: tuple[auth.Network, ...],
        *,
        free_tries: int = defaults.AUTH_FREE_TRIES,
        backoff: tuple[float, float] = defaults.AUTH_BACKOFF,
    ) -> None:
        self.token = token
        self.trust = trust  # ip networks admitted without a token
        self.free_tries = free_tries
        self.backoff = backoff  # s: the first and the longest pause of a backed-off address
        self.refused = 0
        self.backed_off = 0
        self._strikes: dict[str, _Strikes] = {}  # in the order of their last refusal

    def admits_on_arrival(self, host: str) -> bool:
        """Whether a connection from ``host`` is admitted before it has said anything."""
        return self.token is None or auth.is_trusted(host, self.trust)

    def backing_off(self, host: str, now: float) -> bool:
        """Whether a new connection from ``host`` is to be closed at once (counted as refused)."""
        strikes = self._strikes.get(host)
        if strikes is None or now >= strikes.until:
            return False
        self.refused += 1
        self.backed_off += 1
        return True

    def refusal(self, host: str, first: protocol.Message, now: float) -> str | None:
        """None when a peer's ``first`` message admits it (a REGISTER with the token); otherwise
        why it is refused, counted against ``host``. The reason never holds the token."""
        if first["TYPE"] != protocol.REGISTER:
            reason = "refused: sent a message before registering with the token"
        elif auth.TOKEN_KEY not in first:
            reason = "refused: REGISTER without a token"
        elif self.token is None or not auth.tokens_match(first[auth.TOKEN_KEY], self.token):
            reason = "refused: wrong token"
        else:
            self._strikes.pop(host, None)
            return None
        self.refused += 1
        self._strike(host, now)
        return reason

    def _strike(self, host: str, now: float) -> None:
        strikes = self._strikes.pop(host, None) or _Strikes()  # taken out and put back: last in order
        if len(self._strikes) >= _MAX_ADDRESSES:
            del self._strikes[next(iter(self._strikes))]
        strikes.count += 1
        strikes.last = now
        beyond = strikes.count - self.free_tries
        if beyond > 0:
            first, longest = self.backoff
            strikes.until = now + min(longest, first * 2 ** min(beyond - 1, 32))
        self._strikes[host] = strikes

    def forget_quiet(self, now: float, quiet: float) -> None:
        """Forget addresses without a refusal for ``quiet`` seconds: they start afresh."""
        while self._strikes:
            host, strikes = next(iter(self._strikes.items()))
            if now - strikes.last < quiet:
                return
            del self._strikes[host]


class RefusalLog:
    """Refused connections as log lines: the first of each reason in an interval as it
    happens, the rest of the interval in one line at its end."""

    def __init__(self, interval: float = defaults.REFUSAL_LOG_INTERVAL) -> None:
        self.interval = interval
        self._started: float | None = None
        self._shown: set[str] = set()
        self._held: Counter[str] = Counter()  # reason -> refusals not logged one by one
        self._hosts: Counter[str] = Counter()

    def note(self, reason: str, host: str, now: float) -> bool:
        """Count a refusal; True when it is to be logged now (the first of its reason)."""
        if self._started is None:
            self._started = now
        if reason not in self._shown:
            self._shown.add(reason)
            return True
        self._held[reason] += 1
        if host in self._hosts or len(self._hosts) < _MAX_ADDRESSES:
            self._hosts[host] += 1
        return False

    def summary(self, now: float) -> str | None:
        """The line for the interval that ended, if it held back any; None before its end."""
        if self._started is None or now - self._started < self.interval:
            return None
        held, hosts = self._held, self._hosts
        self._started, self._shown, self._held, self._hosts = None, set(), Counter(), Counter()
        if not held:
            return None
        reasons = ", ".join(f"{reason.removeprefix('refused: ')} ×{n:,}" for reason, n in held.most_common())
        sources = ", ".join(f"{host} ×{n:,}" for host, n in hosts.most_common(3))
        more = (
            f" and {len(hosts) - 3:,} more addresses" if len(hosts) > 3 else ""
        )  # (at most _MAX_ADDRESSES told apart)
        total = sum(held.values())
        return f"refused {total:,} more in {self.interval:.0f}s: {reasons}; from {sources}{more}"
