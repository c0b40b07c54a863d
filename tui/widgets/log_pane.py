"""The log pane: timestamped lines that wrap to the pane's width now, not the width they met.

Textual's RichLog wraps a line once, when it is written; after a resize its lines keep the
old width (cut after a shrink) and the view keeps its old offset (lines from a minute
earlier). This one keeps what it was given and wraps it all again when the width changes,
then shows the latest line.
"""

from __future__ import annotations

from collections import deque

from rich.text import Text
from textual.events import Resize
from textual.widgets import RichLog
from typing_extensions import Self


class LogPane(RichLog):
    """Add lines with ``add``; a resize wraps them anew and scrolls to the latest. New lines scroll
    it to the latest only while it shows the latest: scrolled back, it stays where it was put."""

    DEFAULT_CSS = "LogPane { scrollbar-gutter: stable; }"  # the width lines wrap to does not jump with the scrollbar

    def __init__(self, max_lines: int, **kwargs):
        # min_width 1: wrap to the pane, however narrow (RichLog's default renders 78 columns at least)
        super().__init__(max_lines=max_lines, markup=False, wrap=True, min_width=1, **kwargs)
        self._given: deque[Text] = deque(maxlen=max_lines)
        self._wrapped_at = 0  # the content width the lines were wrapped to
        self._following = True  # it shows the latest line: a new one scrolls it on

    def add(self, line: Text) -> None:
        self._given.append(line)
        self.write(line)

    def write(self, content, width: int | None = None, *args, **kwargs) -> Self:
        """RichLog's write, at the pane's width: RichLog measures against the console, whose width
        is the terminal's at start where COLUMNS is set (a browser session) or none (80 under test)."""
        if width is None and self._size_known:
            width = self._wrapped_at = self.scrollable_content_region.width
        if not args and "scroll_end" not in kwargs:  # (RichLog's own deferred writes say it)
            kwargs["scroll_end"] = self._following
        return super().write(content, width, *args, **kwargs)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self._following = new_value >= self.max_scroll_y  # a person scrolled away, or back to the end

    def on_resize(self, event: Resize) -> None:
        # runs before RichLog's handler, which writes what came before the size was known
        width = self.scrollable_content_region.width
        if self._size_known and width != self._wrapped_at:
            self._wrapped_at = width
            self.clear()
            for line in self._given:
                self.write(line, scroll_end=False)
        self.scroll_end(animate=False, immediate=False, x_axis=False)
        # and once RichLog's own handler has written what came while the pane was hidden (shown by
        # its key, the log sat at its first lines when that came after this scroll)
        self.call_after_refresh(self.scroll_end, animate=False, x_axis=False)
