"""Score plot: every episode's score (faint), its rolling mean (bold), the threshold and the runs, in braille.

The widget is handed a `ScoreHistory` and never fetches anything. It plots at most two
points per terminal column (`ScoreHistory.columns`), so a redraw costs the same at a
million episodes as at a thousand, and it redraws on a timer only when the history's
version moved and the widget is on screen; between redraws it serves cached strips.
"""

from __future__ import annotations

import itertools
import math
import time

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
from cartpole_tui.tui.data import braille
from cartpole_tui.tui.data.overlays import Overlay
from cartpole_tui.tui.data.score_history import ScoreHistory

MARKER = ord("◆")
OVERLAY_CLASSES = tuple(f"score-plot--overlay-{i}" for i in range(1, defaults.PLOT_OVERLAYS + 1))
# Each overlay also carries its own mark along its line, so runs stay apart without colour (NO_COLOR).
OVERLAY_MARKS = "12345678"
MARK_EVERY = 10  # cells between two marks of one overlay
X_AXES = ("episode", "run", "time")  # what the x labels count: episodes, runs, or the clock
# Layers from back to front; a cell shows the front-most layer that has a dot in it.
LAYERS = ("score-plot--threshold", "score-plot--raw", *OVERLAY_CLASSES, "score-plot--average", "score-plot--mean")


class ScorePlot(Widget, can_focus=True):
    """Episode scores of a `ScoreHistory`, drawn with braille dots; set `history` and it follows."""

    COMPONENT_CLASSES = {"score-plot--axis", "score-plot--boundary", *LAYERS}
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
    ScorePlot > .score-plot--overlay-3 { color: ansi_bright_green; }
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
    """Top of the y axis: the environment's best score (500 for CartPole-v1)."""
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
        redraw_hz: float = 4.0,
        last_n_size: int = defaults.PLOT_LAST_N,
        summary_in_subtitle: bool = True,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._history = history
        self._overlays: tuple[Overlay, ...] = ()
        self._overlay_sums: tuple[np.ndarray, ...] = ()
        self._data_nudges = 0
        self._redraw_interval = 1.0 / redraw_hz
        self.last_n_size = last_n_size
        self.summary_in_subtitle = summary_in_subtitle
        self.summary = ""  # the legend with its figures: "━ mean(100) 431.0 · ◆ run avg 453.6 · 400 episodes"
        self.legend_key = ""  # the legend without figures, shown in the border
        """Legend and latest figures as plain text; styled, it is the border subtitle unless turned off."""
        self._view_key: tuple | None = None
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
    def overlays(self, overlays) -> None:
        """Runs to compare: drawn alone, aligned at their first episode, each in its colour and mark."""
        self._overlays = tuple(overlays)[: len(OVERLAY_CLASSES)]
        self._overlay_sums = tuple(
            np.concatenate(([0.0], np.cumsum(np.asarray(o.values, dtype=np.float64)))) for o in self._overlays
        )
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
        self.set_interval(self._redraw_interval, self._tick)

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

    def _tick(self) -> None:
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

    def _view(self) -> tuple:
        width, height = self.size
        return (
            width,
            height,
            self.window,
            self.last_n,
            self.per_run,
            self.x_axis,
            self.y_min,
            self.y_max,
            self.threshold,
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
        canvas = _Canvas(self, width, height)
        canvas.draw(self._history)
        key = Text(" · ").join(
            Text.assemble(
                (part, _foreground(styles.by_name[name]) if name else Style()), (f" {value}" if value else "")
            )
            for part, value, name in canvas.legend
            if part
        )
        if self.summary_in_subtitle and key.plain != self.legend_key:
            self._set_legend(key)
        self.legend_key = key.plain
        self.summary = " · ".join(" ".join(filter(None, (part, value))) for part, value, _ in canvas.legend)
        return canvas.strips(styles)

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


def _keys_only(legend: str) -> str:
    """A legend without its figures: what decides whether its layout changed."""
    return " ".join(word for word in legend.split() if not any(c.isdigit() for c in word.strip("()")))


class _Styles:
    """The widget's Rich styles by component name, read once per redraw."""

    def __init__(self, plot: ScorePlot):
        base = plot.rich_style
        self.base = base
        names = ("score-plot--axis", "score-plot--boundary", *LAYERS)
        self.by_name = {name: base + plot.get_component_rich_style(name) for name in names}
        self.layers = [base] + [self.by_name[name] for name in LAYERS]


class _Canvas:
    """One redraw: a braille grid of plot cells with layer indices, plus axis rows and labels."""

    def __init__(self, plot: ScorePlot, width: int, height: int):
        self.plot = plot
        self.width, self.height = width, height
        self.footer = 2 if height >= 5 else (1 if height >= 3 else 0)
        self.rows = height - self.footer
        self.y_labels = self._y_labels()
        self.label_width = max((len(text) for text, _ in self.y_labels.values()), default=0)
        self.cols = max(0, width - self.label_width - 1)
        self.chars = np.full((self.rows, self.cols), ord(" "), dtype=np.uint32)
        self.layer = np.zeros((self.rows, self.cols), dtype=np.int8)
        self.ticks = np.zeros(self.cols, dtype=bool)
        self.x_labels = " " * self.cols
        # (key, value, component drawn in that colour): the keys go to the border, which stays
        # the same from one redraw to the next; the values to `summary`
        self.legend: list[tuple[str, str, str | None]] = []

    # --- y scale -----------------------------------------------------------------

    def pixel_rows(self, values) -> np.ndarray:
        """Dot row of each value (0 at the top), -1 for NaN; values outside the axis are clipped."""
        low, high = self.plot.y_min, self.plot.y_max
        values = np.asarray(values, dtype=np.float64)
        fraction = np.clip((values - low) / ((high - low) or 1.0), 0.0, 1.0)
        rows = np.rint((1.0 - fraction) * (4 * self.rows - 1))
        return np.where(np.isnan(values), -1, rows).astype(np.intp)

    def _y_labels(self) -> dict[int, tuple[str, str]]:
        """Cell row -> (label, component name): top, bottom, threshold, middle, first come first placed."""
        if self.rows < 1:
            return {}
        plot = self.plot
        wanted = []
        if plot.threshold is not None:  # first: the solved line is labelled at every size
            wanted.append((plot.threshold, "score-plot--threshold"))
        wanted += [(plot.y_max, "score-plot--axis"), (plot.y_min, "score-plot--axis")]
        if self.rows >= 5:
            wanted.append(((plot.y_max + plot.y_min) / 2, "score-plot--axis"))
        labels: dict[int, tuple[str, str]] = {}
        for value, name in wanted:
            row = int(self.pixel_rows([value])[0]) // 4
            labels.setdefault(row, (_short(value), name))
        return labels

    # --- data ----------------------------------------------------------------------

    def draw(self, history: ScoreHistory | None) -> None:
        """Paint the threshold and, when there are episodes, the data layers and run marks."""
        if self.rows < 1 or self.cols < 1:
            return
        layers: dict[str, np.ndarray] = {}
        threshold = self.plot.threshold
        if threshold is not None:
            grid = np.zeros((4 * self.rows, 2 * self.cols), dtype=bool)
            grid[self.pixel_rows([threshold])[0], ::2] = True
            layers["score-plot--threshold"] = grid
        if self.plot.overlays:
            self._draw_overlays(layers)
        elif history is not None and len(history):
            self._draw_data(history, layers)
        else:
            self._paint(layers)
            self._write(self.rows // 2, "waiting for episodes")

    def _write(self, row: int, text: str, at: int | None = None, layer: int = 0) -> None:
        """Put plain text in a plot row (in the middle unless ``at``)."""
        text = text[: self.cols]
        at = (self.cols - len(text)) // 2 if at is None else at
        self.chars[row, at : at + len(text)] = [ord(c) for c in text]
        self.layer[row, at : at + len(text)] = layer

    def _label_threshold(self) -> None:
        """'solved' on the threshold's row, just right of the axis (early episodes sit low)."""
        threshold = self.plot.threshold
        if threshold is not None and self.cols >= 24:
            self._write(int(self.pixel_rows([threshold])[0]) // 4, "solved", at=1, layer=1)

    def _draw_overlays(self, layers: dict[str, np.ndarray]) -> None:
        """Marked runs alone, aligned at their first episode, on the x range of the longest."""
        plot = self.plot
        end = max(len(o.values) for o in plot.overlays)
        dots_w, dots_h = 2 * self.cols, 4 * self.rows
        edges = np.linspace(0, end, dots_w + 1)
        lo, hi = np.floor(edges[:-1]).astype(np.int64), np.maximum(np.ceil(edges[1:]), 1).astype(np.int64)
        hi = np.maximum(hi, lo + 1)
        rows = []
        for sums, name in zip(plot._overlay_sums, OVERLAY_CLASSES):
            dot_rows = self.pixel_rows(_window_means(sums, 0, lo, hi))
            layers[name] = _line(dot_rows, dots_h)
            rows.append(dot_rows)
        self._paint(layers)
        for index, (dot_rows, mark) in enumerate(zip(rows, OVERLAY_MARKS)):
            # marks staggered so that close lines still show each of theirs
            for cell in range(1 + index * 2 % MARK_EVERY, self.cols, MARK_EVERY):
                row = dot_rows[2 * cell]
                if row >= 0:
                    self._write(int(row) // 4, mark, at=cell, layer=LAYERS.index(OVERLAY_CLASSES[index]) + 1)
        self._label_threshold()
        self.x_labels = self._x_labels(lo, 0, end, title="episode of run")
        self.legend = [
            (f"{mark}━ {overlay.label}", f"{overlay.values[-1]:.1f}" if len(overlay.values) else "", name)
            for overlay, name, mark in zip(plot.overlays, OVERLAY_CLASSES, OVERLAY_MARKS)
        ]
        self.legend.append(("", f"mean({plot.window}) of marked runs", None))

    def _draw_data(self, history: ScoreHistory, layers: dict[str, np.ndarray]) -> None:
        plot = self.plot
        end = len(history)
        start = max(0, end - plot.last_n) if plot.last_n else 0
        dots_w, dots_h = 2 * self.cols, 4 * self.rows
        lo, hi = history.column_edges(dots_w, start, end)
        low, high, means = history.columns(dots_w, start, end, plot.window)
        if plot.per_run:
            values, sums = history.per_run_means(plot.window)
            with np.errstate(invalid="ignore", divide="ignore"):
                means = np.where(hi > lo, (sums[hi] - sums[lo]) / (hi - lo), np.nan)
        layers["score-plot--raw"] = _spans(self.pixel_rows(high), self.pixel_rows(low), dots_h)
        for overlay, sums, name in zip(plot.overlays, plot._overlay_sums, OVERLAY_CLASSES):
            layers[name] = _line(self.pixel_rows(_window_means(sums, overlay.offset, lo, hi)), dots_h)
        cell_edges = np.append(lo[::2], end)
        ends, averages = history.run_averages()
        first, stop = np.searchsorted(ends, [start, end])
        glyphs = stop - first <= self.cols // 3
        if not glyphs:  # too many runs for glyphs: the last run's average in each dot column
            run = _last_in_bins(ends, np.append(lo, end))
            columns = np.flatnonzero(run >= 0)
            grid = np.zeros((dots_h, dots_w), dtype=bool)
            grid[self.pixel_rows(averages[run[columns]]), columns] = True
            layers["score-plot--average"] = grid
        layers["score-plot--mean"] = _line(self.pixel_rows(means), dots_h)
        self._paint(layers)
        if glyphs and stop > first:
            run = _last_in_bins(ends, cell_edges)
            cells = np.flatnonzero(run >= 0)
            rows = self.pixel_rows(averages[run[cells]]) // 4
            self.chars[rows, cells] = MARKER
            self.layer[rows, cells] = LAYERS.index("score-plot--average") + 1
        starts, _ = history.run_starts()
        starts = starts[starts > 0]  # the first episode starts a run but is no boundary
        first, stop = np.searchsorted(starts, [start, end])
        if stop - first <= self.cols // 2:
            self.ticks[_first_columns(lo, starts[first:stop]) // 2] = True
        self._label_threshold()
        if plot.x_axis == "run":
            self.x_labels = self._run_labels(lo, start, end, history)
        else:
            self.x_labels = self._x_labels(lo, start, end, history=history if plot.x_axis == "time" else None)
        if plot.per_run:
            mean, name = values[end - 1], f"━ mean({plot.window})/run"
        else:
            mean, name = history.rolling_mean_at(end - 1, plot.window), f"━ mean({plot.window})"
        self.legend = [("last", f"{history.scores[-1]:g}", "score-plot--raw")]
        self.legend.append((name, f"{mean:.1f}", "score-plot--mean"))
        if len(averages):
            self.legend.append(("◆ run avg", f"{averages[-1]:.1f}", "score-plot--average"))
        self.legend.append(("", f"{end:,} episodes", None))

    def _paint(self, layers: dict[str, np.ndarray]) -> None:
        """Turn dot grids into braille cells, front layers over back ones."""
        for index, name in enumerate(LAYERS, start=1):
            if name in layers:
                codes = braille.cell_bits(layers[name])
                lit = codes != 0
                self.chars[lit] = braille.BASE + codes[lit]
                self.layer[lit] = index

    def _run_labels(self, lo: np.ndarray, start: int, end: int, history: ScoreHistory) -> str:
        """Each run's number under its first column (``#3``), those that fit; titled "run"."""
        starts, numbers = history.run_starts()
        first = max(0, int(np.searchsorted(starts, start, side="right")) - 1)
        marks = [(max(int(s), start), f"#{n}") for s, n in zip(starts[first:].tolist(), numbers[first:].tolist())]
        marks = [(s, text) for s, text in marks if s < end]
        return self._place(lo, marks, " run" if self.cols >= 24 else "")

    def _x_labels(
        self, lo: np.ndarray, start: int, end: int, title: str = "episode", history: ScoreHistory | None = None
    ) -> str:
        """Episode numbers (1-based) at round values, placed under their cells without overlap;
        the axis title at the right end when it fits. With ``history``: the time those episodes ended."""
        step = _nice_step((end - start) * 10 / max(self.cols, 1))
        first_tick = (start // step + 1) * step
        ticks = [start + 1, *list(range(first_tick, end + 1, step))]
        if history is None:
            marks = [(episode - 1, _short(episode)) for episode in ticks]
        else:
            times = history.times
            span = times[end - 1] - times[start] if end > start else np.nan
            form = "%H:%M:%S" if not np.isfinite(span) or span < 600 else "%H:%M"
            marks = [
                (episode - 1, time.strftime(form, time.localtime(times[episode - 1])))
                for episode in ticks
                if np.isfinite(times[episode - 1])
            ]
            title = "time ended" if marks else "time: not recorded"
        title = f" {title}" if self.cols >= 6 * len(title) else ""
        return self._place(lo, marks, title)

    def _place(self, lo: np.ndarray, marks: list[tuple[int, str]], title: str) -> str:
        """Labels under the first column of their episode, left to right without overlap, then the title."""
        line = [" "] * (self.cols - len(title))
        free_from = 0
        if not marks:
            return ("".join(line) + title)[: self.cols]
        cells = _first_columns(lo, np.array([episode for episode, _ in marks])) // 2
        for (_, text), cell in zip(marks, cells.tolist()):
            cell = min(cell, len(line) - len(text))
            if cell >= free_from and cell >= 0:
                line[cell : cell + len(text)] = text
                free_from = cell + len(text) + 2
        return ("".join(line[: self.cols - len(title)]) + title)[: self.cols]

    # --- output --------------------------------------------------------------------

    def strips(self, styles: _Styles) -> list[Strip]:
        axis = styles.by_name["score-plot--axis"]
        pad = self.label_width
        out = []
        for row in range(self.rows):
            text, name = self.y_labels.get(row, ("", "score-plot--axis"))
            segments = [Segment(text.rjust(pad), styles.by_name[name]), Segment("┤" if text else "│", axis)]
            segments += _row_segments(self.chars[row], self.layer[row], styles.layers)
            out.append(Strip(segments).adjust_cell_length(self.width, styles.base))
        if self.footer >= 1:
            segments = [Segment(" " * pad + "└", axis)]
            boundary = styles.by_name["score-plot--boundary"]
            for tick, run in _runs(self.ticks):
                segments.append(Segment(("┴" if tick else "─") * run, boundary if tick else axis))
            out.append(Strip(segments).adjust_cell_length(self.width, styles.base))
        if self.footer >= 2:
            out.append(
                Strip([Segment(" " * (pad + 1) + self.x_labels, axis)]).adjust_cell_length(self.width, styles.base)
            )
        return out


def _foreground(style: Style) -> Style:
    """A style's colour and weight without its background, for text on the border."""
    return Style(color=style.color, bold=style.bold, dim=style.dim)


def _runs(values: np.ndarray):
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


def _spans(top: np.ndarray, bottom: np.ndarray, height: int) -> np.ndarray:
    """Dot grid lit from row ``top`` to row ``bottom`` (inclusive) in each column; -1 leaves it dark."""
    rows = np.arange(height)[:, None]
    return (rows >= top[None, :]) & (rows <= bottom[None, :]) & (top[None, :] >= 0)


def _line(rows: np.ndarray, height: int) -> np.ndarray:
    """Dot grid of a connected line through one dot row per column (-1 = no value there)."""
    if not len(rows):
        return np.zeros((height, 0), dtype=bool)
    missing = rows < 0
    before = np.concatenate((rows[:1], rows[:-1]))
    after = np.concatenate((rows[1:], rows[-1:]))
    before = np.where(before < 0, rows, before)
    after = np.where(after < 0, rows, after)
    # Each column reaches halfway to its neighbours, so steep stretches stay connected.
    mid_before, mid_after = (rows + before) // 2, (rows + after) // 2
    top = np.minimum(rows, np.minimum(mid_before, mid_after))
    bottom = np.maximum(rows, np.maximum(mid_before, mid_after))
    top = np.where(missing, -1, top)
    return _spans(top, bottom, height)


def _window_means(sums: np.ndarray, offset: int, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Mean of an overlay's values over each column's episodes; NaN where it has none."""
    count = len(sums) - 1
    a = np.clip(lo - offset, 0, count)
    b = np.clip(hi - offset, 0, count)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b > a, (sums[b] - sums[a]) / (b - a), np.nan)


def _first_columns(lo: np.ndarray, episodes: np.ndarray) -> np.ndarray:
    """First column showing each episode, given each column's first episode ``lo`` (sorted)."""
    columns = np.searchsorted(lo, episodes)
    exact = columns < len(lo)
    exact[exact] = lo[columns[exact]] == episodes[exact]
    return np.where(exact, columns, columns - 1)


def _last_in_bins(points: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Index of the last sorted point in each bin [edges[k], edges[k+1]), or -1."""
    last = np.searchsorted(points, edges[1:], side="left") - 1
    inside = last >= 0
    inside[inside] = points[last[inside]] >= edges[:-1][inside]
    return np.where(inside, last, -1)


def _nice_step(raw: float) -> int:
    """Smallest of 1, 2, 5 x 10^k at or above ``raw`` (at least 1)."""
    if raw <= 1:
        return 1
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _short(value: float) -> str:
    """Compact axis number: 475, 12.5k, 1.2M."""
    for limit, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            text = f"{value / limit:.1f}".rstrip("0").rstrip(".")
            return text + suffix
    return f"{value:g}" if value != int(value) else str(int(value))
