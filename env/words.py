"""Numbers and counts as a person reads them: "1 episode", "2.3M"."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal


def plural(count: int, noun: str) -> str:
    """``1 episode``, ``2 episodes``, ``1,000 episodes``."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def human(value: float) -> str:
    """A count in at most 5 characters: 999, 12.3k, 2.3M, 4.1G."""
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            scaled = value / limit
            return f"{scaled:.1f}{suffix}" if abs(scaled) < 100 else f"{scaled:.0f}{suffix}"
    return f"{value:.0f}"


def steps_per_second(rate: float) -> str:
    """A run's steps a second as every view shows it (status line, log, runs table, details):
    one rounding, so one run shows one figure."""
    return f"{rate:,.0f}"


def average(value: float | None, places: int = 1) -> str:
    """An average (of scores, of a round) as every view shows it: rounded half up at ``places``
    decimals from the number as it prints (9.25 -> "9.3", as the export's 9.25 reads), where
    format() rounds the float half-even ("9.2") and the table and the export disagreed; "—" for none."""
    if value is None:
        return "—"
    value = float(value)  # numpy's repr is "np.float64(…)"
    if not abs(value) < 1e15:  # non-finite, or past a decimal's 28 digits at these places
        return f"{value:.{places}f}"
    return f"{Decimal(repr(value)).quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP):f}"


def score(value: float) -> str:
    """An episode's score as the views show it: a whole one as it is (500, -200), another to one
    decimal as averages are (LunarLander's -328.971 as -329.0: the plot's legend was cut there)."""
    value = float(value)
    return f"{value:g}" if value.is_integer() and abs(value) < 1e15 else average(value)
