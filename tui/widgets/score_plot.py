"""Score plot: every episode's score (faint), its rolling mean (bold), the threshold and the runs, in braille.

The widget is handed a `ScoreHistory` and never fetches anything. The drawing itself is
`PlotCanvas` (tui/data/plot_canvas.py); the widget keeps the settings and keys, styles the
canvas's cells into strips, caches them and puts the legend in its border. It plots at most
two points per terminal column (`ScoreHistory.columns`), so a redraw costs the same at a
million episodes as at a thousand, and it redraws at a tick (its own timer, or its owner's) only when the history's
version moved and the widget is on screen; between redraws it serves cached strips.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

import numpy as np
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.content import Content
from textual.geometry import Region
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

from cartpole_tui.env import defaults
from cartpole_tui.tui.bindings import bindings
from cartpole_tui.tui.data.overlays import Overlay
from cartpole_tui.tui.data.plot_canvas import (
    AXIS,
    LAYERS,
    OVERLAY_CLASSES,
    X_AXES,
    LegendItem,
    PlotCanvas,
    PlotView,
    score_range,
)
from cartpole_tui.tui.data.score_history import ScoreHistory


class ScorePlot(Widget, can_focus=True):
    """Episode scores of a `ScoreHistory`, drawn with braille dots; set `history` and it follows."""

    COMPONENT_CLASSES = {AXIS, "score-plot--boundary", *LAYERS}
    DEFAULT_CSS = """
    ScorePlot { width: 1fr; height: 1fr; min-height: 4; }
    ScorePlot > .score-plot--axis { color: $foreground-muted; }
    ScorePlot > .score-plot--raw { color: ansi_blue; text-style: dim; }
    ScorePlot > .score-plot--mean { color: ansi_bright_cyan; text-style: bold; }
    ScorePlot > .score-plot--threshold { color: ansi_green; }
    ScorePlot > .score-plot--boundary { color: ansi_yellow; }
    ScorePlot > .score-plot--average { color: ansi_magenta; text-style: bold; }
    ScorePlot > .score-plot--overlay-1 { color: ansi_yellow; }
    ScorePlot > .score-plot--overlay-2 { color: ansi_red; }
    ScorePlot > .score-plot--overlay-3 { color: ansi_cyan; }  /* not the solved line's green */
    ScorePlot > .score-plot--overlay-4 { color: ansi_bright_magenta; }
    ScorePlot > .score-plot--overlay-5 { color: ansi_white; }
    ScorePlot > .score-plot--overlay-6 { color: ansi_bright_blue; }
    ScorePlot > .score-plot--overlay-7 { color: ansi_bright_yellow; }
    ScorePlot > .score-plot--overlay-8 { color: ansi_bright_red; }
    """
    BINDINGS = bindings("plot")
    WINDOWS = defaults.PLOT_WINDOWS

    window: reactive[int] = reactive(defaults.PLOT_WINDOW)
    """Episodes in the rolling mean."""
    last_n: reactive[int | None] = reactive(None)
    """Show only the latest this many episodes; None shows all."""
    y_min: reactive[float] = reactive(0.0)
    y_max: reactive[float] = reactive(500.0)
    """Top of the y axis: the environment's best score (500 for CartPole-v1); with ``y_min`` the
    environment's range, widened to the scores when they fall outside it."""
    per_run: reactive[bool] = reactive(False)
    """The mean restarts with each run (True) or runs across runs (False)."""
    x_axis: reactive[str] = reactive("episode")
    """The x labels: episode numbers, run numbers at each run's start, or the time episodes ended."""
    threshold: reactive[float | None] = reactive(defaults.SOLVED_SCORE)
    """Score that counts as solved, drawn as a dotted line; None hides it."""

    def __init__(
        self,
        history: ScoreHistory | None = None,
        *,
        redraw_hz: float | None = 4.0,
        last_n_size: int = defaults.PLOT_LAST_N,
        summary_in_subtitle: bool = True,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._history = history
        self._overlays: tuple[Overlay, ...] = ()
        self._data_nudges = 0
        self._redraw_hz = redraw_hz  # None: no timer of its own, its owner calls `tick`
        self.last_n_size = last_n_size
        self.summary_in_subtitle = summary_in_subtitle
        self.summary = ""  # the legend with its figures: "━ mean(100) 431.0 · ◆ run avg 453.6 · 400 episodes"
        self.legend_key = ""  # the legend without figures, shown in the border
        """Legend and latest figures as plain text; styled, it is the border subtitle unless turned off."""
        self._view_key: PlotView | None = None
        self._strips: list[Strip] = []
        self._drawn_data_key: tuple | None = None
        self._data_due = False  # set by the timer: the next paint draws the new data
        self.rebuilds = 0
        """How many times the strips were rebuilt from data (for tests and benchmarks)."""
        self.lines_rendered = 0
        """How many lines Textual asked for (a repaint from the cache counts here, not in `rebuilds`)."""
        self.ticks = 0
        """How many times the redraw timer looked for new data."""

    @property
    def history(self) -> ScoreHistory | None:
        return self._history

    @history.setter
    def history(self, history: ScoreHistory | None) -> None:
        self._history = history
        self._data_due = True
        self.refresh()

    @property
    def overlays(self) -> tuple[Overlay, ...]:
        return self._overlays

    @overlays.setter
    def overlays(self, overlays: Iterable[Overlay]) -> None:
        """Runs to compare: drawn alone, aligned at their first episode, each in its colour and mark."""
        self._overlays = tuple(overlays)[: len(OVERLAY_CLASSES)]
        self.refresh_data()

    def refresh_data(self) -> None:
        """Say the data changed in a way `history.version` does not show; the next tick redraws."""
        self._data_nudges += 1

    def validate_window(self, window: int) -> int:
        return max(1, int(window))

    def action_cycle_window(self) -> None:
        """Step the smoothing window through `WINDOWS`."""
        later = [w for w in self.WINDOWS if w > self.window]
        self.window = later[0] if later else self.WINDOWS[0]

    def action_toggle_all(self) -> None:
        """Switch between every episode and the latest `last_n_size`."""
        self.last_n = None if self.last_n else self.last_n_size

    def on_mount(self) -> None:
        if self._redraw_hz is not None:
            self.set_interval(1.0 / self._redraw_hz, self.tick)

    def _redraw_now(self) -> None:
        # A key changed the view: draw at once, so the legend in the border is the new one now
        # (built while painting, it would only show on the next repaint).
        if self.is_mounted and self.size.area:
            self._rebuild()
            self.refresh()

    def watch_window(self) -> None:
        self._redraw_now()

    def watch_last_n(self) -> None:
        self._redraw_now()

    def watch_per_run(self) -> None:
        self._redraw_now()

    def watch_x_axis(self) -> None:
        self._redraw_now()

    def action_toggle_mean_per_run(self) -> None:
        self.per_run = not self.per_run

    def action_cycle_x_axis(self) -> None:
        self.x_axis = X_AXES[(X_AXES.index(self.x_axis) + 1) % len(X_AXES)]

    def tick(self) -> None:
        """Draw the data if it changed since the last drawing (and the plot is on screen)."""
        self.ticks += 1
        if self._data_key() != self._drawn_data_key and self._shown():
            # Built here, not in render_line: a new legend key goes to the border, and setting it
            # while painting would paint the whole plot a second time. Otherwise only the rows
            # that changed are repainted: over SSH every repainted row costs bytes.
            before, key = self._strips, self.legend_key
            self._rebuild()
            if _keys_only(key) != _keys_only(self.legend_key) or len(before) != len(self._strips):
                self.refresh()
            else:
                width = self.size.width
                changed = [
                    Region(0, y, width, 1) for y, (old, new) in enumerate(zip(before, self._strips)) if old != new
                ]
                if changed:
                    self.refresh(*changed)

    @property
    def shows_latest_data(self) -> bool:
        """The drawn plot includes every change to the data (tests and screenshots wait for it)."""
        return self._drawn_data_key == self._data_key()

    def _shown(self) -> bool:
        return self.display and self.visible and self.screen.is_current and self.is_on_screen

    def _data_key(self) -> tuple:
        history = self._history
        version = (id(history), history.version) if history is not None else None
        return version, self._data_nudges

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._view_key = None

    def render_line(self, y: int) -> Strip:
        """A line of the cached plot, rebuilt first if the view changed or the timer found new data.

        Paints caused by anything else (layout, focus) reuse the cache, so new data is drawn
        at most once per timer tick however often the app appends or repaints.
        """
        self.lines_rendered += 1
        if self._view() != self._view_key or self._data_due:
            self._rebuild()
        width = self.size.width
        return self._strips[y] if y < len(self._strips) else Strip.blank(width, self.rich_style)

    def _view(self, width: int | None = None, height: int | None = None) -> PlotView:
        """The settings a redraw depends on, for this widget's size unless given; the y axis is
        ``y_min``..``y_max`` widened to the scores (an environment of negative rewards, say)."""
        history = self._history
        y_min, y_max = self.y_min, self.y_max
        if history is not None and len(history):
            y_min, y_max = score_range(y_min, y_max, history.low, history.high)
        return PlotView(
            self.size.width if width is None else width,
            self.size.height if height is None else height,
            window=self.window,
            last_n=self.last_n,
            per_run=self.per_run,
            x_axis=self.x_axis,
            y_min=y_min,
            y_max=y_max,
            threshold=self.threshold,
        )

    def _rebuild(self) -> None:
        self._view_key, self._data_due = self._view(), False
        self._drawn_data_key = self._data_key()
        self._strips = self.build_strips(*self.size)
        self.rebuilds += 1

    def build_strips(self, width: int, height: int) -> list[Strip]:
        """Draw the whole plot for a ``width`` x ``height`` cell area (the data path, no caching)."""
        styles = _Styles(self)
        if width < 1 or height < 1:
            return []
        canvas = PlotCanvas(self._view(width, height))
        canvas.draw(self._history, self._overlays)
        # The row's corners and their dashes take 4 cells of the border's width + 2.
        key = _fitted(canvas.legends, styles, width - 2)
        if self.summary_in_subtitle and key.plain != self.legend_key:
            self._set_legend(key)
        self.legend_key = key.plain
        self.summary = " · ".join(" ".join(filter(None, (part, value))) for part, value, _ in canvas.legend)
        return _strips(canvas, styles)

    def _set_legend(self, key: Text) -> None:
        """The legend (with its current values) in the bottom border; only that row is repainted."""
        if not (self.is_mounted and self.size.area):
            self.border_subtitle = key
            return
        # The values change with every episode: setting border_subtitle repaints every row, and
        # over SSH every row costs bytes. The same text, stored as the descriptor stores it, and a
        # repaint of the border row alone (content coordinates: the row below the last).
        self._border_subtitle = self.render_str(Content.from_rich_text(key)).split()[0]
        row = Region(-1, self.size.height, self.size.width + 2, 1)
        self.call_after_refresh(self.refresh, row)  # after a paint under way, which may have drawn the border


def _fitted(forms: list[tuple[list[LegendItem], str]], styles: _Styles, room: int) -> Text:
    """The legend: the first form whose items fit ``room`` whole; else as many items of the last
    form as fit, from its start (whole items only: the border cut the last one to "┈ sol…")."""
    items: list[Text] = []
    separator = Text(" · ")
    for form, between in forms:
        separator = Text(between)
        items = [
            Text.assemble((part, _foreground(styles.by_name[name]) if name else Style()), f" {value}" if value else "")
            for part, value, name in form
            if part
        ]
        if separator.join(items).cell_len <= room:
            return separator.join(items)
    while len(items) > 1 and separator.join(items).cell_len > room:
        items.pop()  # the items at the end matter least
    return separator.join(items)


def _keys_only(legend: str) -> str:
    """A legend without its figures: what decides whether its layout changed."""
    return " ".join(word for word in legend.split() if not any(c.isdigit() for c in word.strip("()")))


class _Styles:
    """The widget's Rich styles by component name, read once per redraw."""

    def __init__(self, plot: ScorePlot):
        base = plot.rich_style
        self.base = base
        names = (AXIS, "score-plot--boundary", *LAYERS)
        self.by_name = {name: base + plot.get_component_rich_style(name) for name in names}
        self.layers = [base] + [self.by_name[name] for name in LAYERS]


def _foreground(style: Style) -> Style:
    """A style's colour and weight without its background, for text on the border."""
    return Style(color=style.color, bold=style.bold, dim=style.dim)


def _strips(canvas: PlotCanvas, styles: _Styles) -> list[Strip]:
    """The canvas's cells, y labels, axis row and x labels as styled lines of the widget's width."""
    axis = styles.by_name[AXIS]
    pad, width = canvas.label_width, canvas.width
    out = []
    for row in range(canvas.rows):
        text, name = canvas.y_labels.get(row, ("", AXIS))
        segments = [Segment(text.rjust(pad), styles.by_name[name]), Segment("┤" if text else "│", axis)]
        segments += _row_segments(canvas.chars[row], canvas.layer[row], styles.layers)
        out.append(Strip(segments).adjust_cell_length(width, styles.base))
    if canvas.footer >= 1:
        segments = [Segment(" " * pad + "└", axis)]
        boundary = styles.by_name["score-plot--boundary"]
        for tick, run in _runs(canvas.ticks):
            segments.append(Segment(("┴" if tick else "─") * run, boundary if tick else axis))
        out.append(Strip(segments).adjust_cell_length(width, styles.base))
    if canvas.footer >= 2:
        out.append(Strip([Segment(" " * (pad + 1) + canvas.x_labels, axis)]).adjust_cell_length(width, styles.base))
    return out


def _runs(values: np.ndarray) -> Iterator[tuple]:
    """(value, length) of each run of equal neighbours."""
    if not len(values):
        return
    cuts = np.flatnonzero(values[1:] != values[:-1]) + 1
    bounds = np.concatenate(([0], cuts, [len(values)]))
    for a, b in itertools.pairwise(bounds):
        yield values[a], int(b - a)


def _row_segments(chars: np.ndarray, layer: np.ndarray, styles: list[Style]) -> list[Segment]:
    text = chars.astype("<u4").tobytes().decode("utf-32-le")
    segments, at = [], 0
    for index, run in _runs(layer):
        segments.append(Segment(text[at : at + run], styles[index]))
        at += run
    return segments
