"""The score plot's drawing, apart from the widget: a history and a view in, cells out.

`PlotCanvas` draws one redraw of a `PlotView` (the size and settings a redraw depends on):
the threshold, every episode's score, the rolling mean, the runs' averages and boundaries,
or marked runs' overlays alone. It fills a grid of braille cells, each tagged with the
layer that drew it, plus the y labels, the run ticks under the axis, the x labels and the
legend. Plain numpy: the widget turns the cells into styled strips.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cartpole_tui.env import defaults
from cartpole_tui.env.components.spaces import CARTPOLE
from cartpole_tui.env.events import EnvSpaces
from cartpole_tui.env.words import average, score
from cartpole_tui.tui.data import braille
from cartpole_tui.tui.data.overlays import Overlay
from cartpole_tui.tui.data.score_history import ScoreHistory

MARKER = ord("◆")
OVERLAY_CLASSES = tuple(f"score-plot--overlay-{i}" for i in range(1, defaults.PLOT_OVERLAYS + 1))
# Each overlay also carries its own mark along its line, so runs stay apart without colour (NO_COLOR).
OVERLAY_MARKS = "12345678"
MARK_EVERY = 10  # cells between two marks of one overlay
X_AXES = ("episode", "run", "time")  # what the x labels count: episodes, runs, or the clock
# Layers from back to front; a cell shows the front-most layer that has a dot in it. The
# names are the widget's component classes: each layer is drawn in its class's style.
LAYERS = ("score-plot--threshold", "score-plot--raw", *OVERLAY_CLASSES, "score-plot--average", "score-plot--mean")
AXIS = "score-plot--axis"


LegendItem = tuple[str, str, str | None]  # (key, value, component it is drawn in)


@dataclass(frozen=True)
class PlotView:
    """What one redraw depends on besides the data: the cell area and the plot's settings."""

    width: int
    height: int
    window: int = defaults.PLOT_WINDOW  # episodes in the rolling mean
    last_n: int | None = None  # only the latest this many episodes; None: all
    per_run: bool = False  # the mean restarts with each run
    x_axis: str = "episode"  # one of X_AXES
    y_min: float = 0.0
    y_max: float = 500.0
    threshold: float | None = defaults.SOLVED_SCORE  # the solved line; None hides it


class PlotCanvas:
    """One redraw: a braille grid of plot cells with layer indices, plus axis rows and labels.

    ``chars[row, col]`` is a cell's code point and ``layer[row, col]`` the 1-based index in
    LAYERS of what drew it (0: plain text or nothing); ``y_labels`` maps a plot row to its
    label and that label's component; ``ticks`` marks the columns where a run begins.
    """

    def __init__(self, view: PlotView):
        self.view = view
        self.width, self.height = view.width, view.height
        self.footer = 2 if self.height >= 5 else (1 if self.height >= 3 else 0)
        self.rows = max(0, self.height - self.footer)
        self.y_labels = self._y_labels()
        self.label_width = max((len(text) for text, _ in self.y_labels.values()), default=0)
        self.cols = max(0, self.width - self.label_width - 1)
        self.chars = np.full((self.rows, self.cols), ord(" "), dtype=np.uint32)
        self.layer = np.zeros((self.rows, self.cols), dtype=np.int8)
        self.ticks = np.zeros(self.cols, dtype=bool)
        self.x_labels = " " * self.cols
        # (key, value, component drawn in that colour): the keys go to the border, which stays
        # the same from one redraw to the next; the values to the widget's `summary`
        self.legend: list[LegendItem] = []
        # the forms the border may show, the fullest first, each with the text between its items:
        # the widget shows the first that fits whole
        self.legends: list[tuple[list[LegendItem], str]] = []

    # --- y scale -----------------------------------------------------------------

    def pixel_rows(self, values) -> np.ndarray:
        """Dot row of each value (0 at the top), -1 for NaN; values outside the axis are clipped."""
        low, high = self.view.y_min, self.view.y_max
        values = np.asarray(values, dtype=np.float64)
        fraction = np.clip((values - low) / ((high - low) or 1.0), 0.0, 1.0)
        rows = np.rint((1.0 - fraction) * (4 * self.rows - 1))
        return np.where(np.isnan(values), -1, rows).astype(np.intp)

    def _y_labels(self) -> dict[int, tuple[str, str]]:
        """Cell row -> (label, component name): top, bottom, threshold, middle, first come first placed."""
        if self.rows < 1:
            return {}
        view = self.view
        wanted = []
        if view.threshold is not None:  # first: the solved line is labelled at every size
            wanted.append((view.threshold, "score-plot--threshold"))
        wanted += [(view.y_max, AXIS), (view.y_min, AXIS)]
        if self.rows >= 5:
            wanted.append(((view.y_max + view.y_min) / 2, AXIS))
        labels: dict[int, tuple[str, str]] = {}
        for value, name in wanted:
            row = int(self.pixel_rows([value])[0]) // 4
            labels.setdefault(row, (short_number(value), name))
        return labels

    # --- data ----------------------------------------------------------------------

    def draw(self, history: ScoreHistory | None, overlays: Sequence[Overlay] = ()) -> None:
        """Paint the threshold and either the marked runs' ``overlays`` alone or, when there
        are episodes, the history's layers and run marks."""
        if self.rows < 1 or self.cols < 1:
            return
        layers: dict[str, np.ndarray] = {}
        threshold = self.view.threshold
        if threshold is not None:
            grid = np.zeros((4 * self.rows, 2 * self.cols), dtype=bool)
            grid[self.pixel_rows([threshold])[0], ::2] = True
            layers["score-plot--threshold"] = grid
        if overlays:
            self._draw_overlays(overlays, layers)
        elif history is not None and len(history):
            self._draw_data(history, layers)
        else:
            self._paint(layers)
            self._label_threshold()
            self._write(self.rows // 2, "waiting for episodes")
            self.legend = self._threshold_legend()  # the dotted line is said before any episode too
            self.legends = [(self.legend, " · ")]

    def _write(self, row: int, text: str, at: int | None = None, layer: int = 0) -> None:
        """Put plain text in a plot row (in the middle unless ``at``)."""
        text = text[: self.cols]
        at = (self.cols - len(text)) // 2 if at is None else at
        self.chars[row, at : at + len(text)] = [ord(c) for c in text]
        self.layer[row, at : at + len(text)] = layer

    def _label_threshold(self) -> None:
        """'solved' on the threshold's row, just right of the axis (early episodes sit low)."""
        threshold = self.view.threshold
        if threshold is not None and self.cols >= 24:
            self._write(int(self.pixel_rows([threshold])[0]) // 4, "solved", at=1, layer=1)

    def _mark_short(self, dot_rows: np.ndarray, mark: str, layer: int, marked: set[tuple[int, int]]) -> None:
        """A short run's number in the last cell of its line that no other mark holds (five runs
        of 5 to 100 episodes beside ones of 2,000 drew only the long ones' numbers)."""
        for cell in range(min(self.cols, len(dot_rows) // 2) - 1, -1, -1):
            row = dot_rows[2 * cell]
            if row >= 0 and (int(row) // 4, cell) not in marked:
                self._write(int(row) // 4, mark, at=cell, layer=layer)
                marked.add((int(row) // 4, cell))
                return

    def _draw_overlays(self, overlays: Sequence[Overlay], layers: dict[str, np.ndarray]) -> None:
        """Marked runs alone, aligned at their first episode, on the x range of the longest."""
        overlays = overlays[: len(OVERLAY_CLASSES)]
        end = max(len(o.values) for o in overlays)
        dots_w, dots_h = 2 * self.cols, 4 * self.rows
        edges = np.linspace(0, end, dots_w + 1)
        lo, hi = np.floor(edges[:-1]).astype(np.int64), np.maximum(np.ceil(edges[1:]), 1).astype(np.int64)
        hi = np.maximum(hi, lo + 1)
        rows = []
        for overlay, name in zip(overlays, OVERLAY_CLASSES):
            dot_rows = self.pixel_rows(_window_means(overlay.sums, lo, hi))
            layers[name] = _line(dot_rows, dots_h)
            rows.append(dot_rows)
        self._paint(layers)
        marked: set[tuple[int, int]] = set()  # (row, cell) holding a mark
        short = []  # runs too short for their staggered cells
        for index, (dot_rows, mark) in enumerate(zip(rows, OVERLAY_MARKS)):
            layer = LAYERS.index(OVERLAY_CLASSES[index]) + 1
            # marks staggered so that close lines still show each of theirs
            cells = [c for c in range(1 + index * 2 % MARK_EVERY, self.cols, MARK_EVERY) if dot_rows[2 * c] >= 0]
            for cell in cells:
                self._write(int(dot_rows[2 * cell]) // 4, mark, at=cell, layer=layer)
                marked.add((int(dot_rows[2 * cell]) // 4, cell))
            if not cells:
                short.append((dot_rows, mark, layer))
        for dot_rows, mark, layer in short:  # after the others', so that none is written over
            self._mark_short(dot_rows, mark, layer, marked)
        self._label_threshold()
        self.x_labels = self._x_labels(lo, 0, end, title="episode of run")
        # each run's rolling mean at its last episode, with its window: at w=1 that is the last
        # episode's score, which a legend without the window passed off as the run's average
        self.legend = [
            (
                f"{mark}━ {overlay.label} mean({overlay.window or self.view.window})",
                average(overlay.values[-1]) if len(overlay.values) else "",
                name,
            )
            for overlay, name, mark in zip(overlays, OVERLAY_CLASSES, OVERLAY_MARKS)
        ]
        self.legends = [(self.legend, " · "), *self._short_overlay_legends(overlays)]

    def _short_overlay_legends(self, overlays: Sequence[Overlay]) -> list[tuple[list[LegendItem], str]]:
        """Shorter forms of the marked runs' legend, so that every run is named where the border is
        short (at 80 columns two of them were cut, at 200 columns two of eight): the window said
        once; then the runs' numbers alone, "1━38 2━39"."""
        window = f"mean({overlays[0].window or self.view.window})"
        drawn = list(zip(overlays, OVERLAY_CLASSES, OVERLAY_MARKS))
        values: list[LegendItem] = [
            (f"{mark}━ {o.label}", average(o.values[-1]) if len(o.values) else "", name) for o, name, mark in drawn
        ]
        numbers: list[LegendItem] = [
            (f"{mark}━{o.label if o.number is None else o.number}", "", name) for o, name, mark in drawn
        ]
        return [
            ([(window, "", None), *values], " · "),
            ([(f"{window} of runs", "", None), *numbers], " "),
            (numbers, " "),
        ]

    def _draw_data(self, history: ScoreHistory, layers: dict[str, np.ndarray]) -> None:
        view = self.view
        end = len(history)
        start = max(0, end - view.last_n) if view.last_n else 0
        dots_w, dots_h = 2 * self.cols, 4 * self.rows
        lo, hi = history.column_edges(dots_w, start, end)
        low, high, means = history.columns(dots_w, start, end, view.window)
        if view.per_run:
            values, sums = history.per_run_means(view.window)
            with np.errstate(invalid="ignore", divide="ignore"):
                means = np.where(hi > lo, (sums[hi] - sums[lo]) / (hi - lo), np.nan)
        layers["score-plot--raw"] = _spans(self.pixel_rows(high), self.pixel_rows(low), dots_h)
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
        if view.x_axis == "run":
            self.x_labels = self._run_labels(lo, start, end, history)
        else:
            self.x_labels = self._x_labels(lo, start, end, history=history if view.x_axis == "time" else None)
        if view.per_run:
            mean, name = values[end - 1], f"━ mean({view.window})/run"
        else:
            mean, name = history.rolling_mean_at(end - 1, view.window), f"━ mean({view.window})"
        self.legend = [("last", score(history.scores[-1]), "score-plot--raw")]
        self.legend.append((name, average(mean), "score-plot--mean"))
        if len(averages):
            self.legend.append(("◆ run avg", average(averages[-1]), "score-plot--average"))
        self.legend.append(("", f"{end:,} episodes", None))
        self.legend += self._threshold_legend()  # last: a narrow border keeps the figures, the axis labels the line
        self.legends = [(self.legend, " · ")]

    def _threshold_legend(self) -> list[LegendItem]:
        """What the dotted line is: ``┈ solved ≥ -100`` (the environment's reward_threshold)."""
        threshold = self.view.threshold
        return [] if threshold is None else [("┈ solved ≥", f"{threshold:g}", "score-plot--threshold")]

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
        latest = False
        if history is None:
            marks = [(episode - 1, short_number(episode)) for episode in ticks]
        else:
            marks = self._time_marks(history, start, end, ticks)
            latest = bool(marks)
            title = "time ended" if marks else "time: not recorded"
        title = f" {title}" if self.cols >= 6 * len(title) else ""
        return self._place(lo, marks, title, latest)

    def _time_marks(self, history: ScoreHistory, start: int, end: int, ticks: list[int]) -> list[tuple[int, str]]:
        """When the ticks' episodes ended, each time once (a run of 2,000 episodes in a second
        labelled three ticks alike), and last the latest episode's: the right end says how recent."""
        times = history.times
        span = times[end - 1] - times[start] if end > start else np.nan
        form = "%H:%M:%S" if not np.isfinite(span) or span < 600 else "%H:%M"
        ended = [i for i in [episode - 1 for episode in ticks] + [end - 1] if np.isfinite(times[i])]
        marks: list[tuple[int, str]] = []
        for index in ended:
            text = time.strftime(form, time.localtime(times[index]))
            if index == ended[-1]:
                marks = [mark for mark in marks if mark[1] != text]  # the latest keeps its text
            elif marks and marks[-1][1] == text:
                continue
            marks.append((index, text))
        return marks

    def _place(self, lo: np.ndarray, marks: list[tuple[int, str]], title: str, latest: bool = False) -> str:
        """Labels under the first column of their episode, left to right without overlap, then the
        title; with ``latest`` the last label is placed first and the others give way to it."""
        line = [" "] * (self.cols - len(title))
        if not marks:
            return ("".join(line) + title)[: self.cols]
        cells = (_first_columns(lo, np.array([episode for episode, _ in marks])) // 2).tolist()
        placed = list(zip(marks, cells))
        free_from, room = 0, len(line)
        if latest:
            (_, text), cell = placed.pop()
            cell = max(0, min(cell, len(line) - len(text)))
            line[cell : cell + len(text)] = text
            room = cell - 2
        for (_, text), cell in placed:
            cell = min(cell, len(line) - len(text))
            if cell >= free_from and cell >= 0 and cell + len(text) <= room:
                line[cell : cell + len(text)] = text
                free_from = cell + len(text) + 2
        return ("".join(line[: self.cols - len(title)]) + title)[: self.cols]


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


def _window_means(sums: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Mean of an overlay's values over each column's episodes; NaN where it has none."""
    count = len(sums) - 1
    a = np.clip(lo, 0, count)
    b = np.clip(hi, 0, count)
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


def environment_axis(spaces: EnvSpaces) -> tuple[float, float, float | None]:
    """(y_min, y_max, solved line) for an environment: CartPole-v1's 0..500 and 475; another's
    from 0 to its reward_threshold (−100 for Acrobot-v1: the axis runs −100..0), which the
    scores widen; no solved line when it has no threshold."""
    if spaces.env_id == CARTPOLE.env_id:
        return 0.0, defaults.EPISODE_MAX_SCORE, defaults.SOLVED_SCORE
    threshold = spaces.reward_threshold
    if threshold is None:
        return 0.0, 1.0, None
    low, high = min(0.0, threshold), max(0.0, threshold)
    return low, high if high > low else low + 1.0, threshold


def score_range(low: float, high: float, data_low: float, data_high: float) -> tuple[float, float]:
    """The y axis: the environment's range (``low``..``high``), widened to the scores seen when
    they fall outside it, the widened end rounded out to a round number (negative scores too)."""
    lo, hi = min(low, data_low), max(high, data_high)
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return low, high
    step = _nice_step((hi - lo) / 10) or 1
    if lo < low:
        lo = math.floor(lo / step) * step
    if hi > high:
        hi = math.ceil(hi / step) * step
    return float(lo), float(hi)


def short_number(value: float) -> str:
    """Compact axis number: 475, 12.5k, 1.2M."""
    for limit, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            text = f"{value / limit:.1f}".rstrip("0").rstrip(".")
            return text + suffix
    return f"{value:g}" if value != int(value) else str(int(value))
