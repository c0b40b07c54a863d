"""The network: components seen, rooms with members, messages per second and traffic."""

from __future__ import annotations

from rich.console import Group, JustifyMethod
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from cartpole_tui.env.components.seen import RecentNames
from cartpole_tui.env.events import BrokerStats
from cartpole_tui.env.wire import protocol
from cartpole_tui.env.words import human, plural

COLUMNS: tuple[tuple[str, JustifyMethod], ...] = (  # (header, alignment)
    ("room", "left"),
    ("in", "right"),
    ("msg/s", "right"),
    ("msgs", "right"),
    ("bytes", "right"),
)


class NetworkPane(Static):
    """Given ``update_stats(stats)`` and ``components``, shows rates between the last two stats."""

    DEFAULT_CSS = "NetworkPane { height: auto; }"

    def __init__(self, **kwargs):
        super().__init__("", **kwargs)
        self._previous: BrokerStats | None = None
        self._current: BrokerStats | None = None
        self.components = RecentNames()  # the most recent names seen (bounded: a flood of names)

    def update_stats(self, stats: BrokerStats | None) -> None:
        if stats is not None:
            self._previous, self._current = self._current, stats
        self.update(self._table())

    def names_changed(self) -> None:
        """A component seen: shown at once where a broker sends no stats (swergio.Server), as the
        names are all the pane has then; with stats, their client list shows it."""
        if self._current is None:
            self.update(self._table())

    def _rate(self, room: str) -> float:
        previous, current = self._previous, self._current
        if previous is None or current is None or room not in previous.rooms:
            return 0.0
        elapsed = current.at - previous.at
        sent = current.rooms[room][1] - previous.rooms[room][1]
        return sent / elapsed if elapsed > 0 else 0.0

    def _table(self) -> Group | Text:
        stats = self._current
        names = sorted(stats.clients) if stats else sorted(self.components)
        if stats is None:
            return Text.assemble(
                ("components seen: ", "dim"),
                ", ".join(names) or "none yet",
                f" and {self.components.dropped:,} more" if self.components.dropped else "",
                "\n",
                ("room traffic shows when the broker is cartpole-tui's", "dim"),
            )
        table = Table(box=None, padding=(0, 1), pad_edge=False, expand=True, header_style="bold")
        for column, justify in COLUMNS:
            # counts are humanised (2.3M) so no column is ever cut; the room name may shorten
            table.add_column(column, justify=justify, no_wrap=True, overflow="ellipsis" if column == "room" else "fold")
        # busiest first: the rooms that matter stay in view when the pane is short
        busiest = sorted(stats.rooms.items(), key=lambda item: (-item[1][1], item[0]))
        for room, (members, messages, size) in busiest:
            if room == protocol.STATS_ROOM:
                continue
            table.add_row(Text(room), str(members), human(self._rate(room)), human(messages), human(size))
        distinct = sorted(set(names))
        shown = ", ".join(f"{n}×{names.count(n)}" if names.count(n) > 1 else n for n in distinct)
        # above the rooms, left-aligned: a short pane cuts the quietest rooms, not the clients
        summary = Text(f"{plural(len(names), 'client')}, {plural(stats.frames_refused, 'frame')} refused", style="dim")
        return Group(summary, Text(shown, style="dim"), table)
