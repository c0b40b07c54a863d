"""ScorePlot in a real App under run_test: where marks land, when it redraws, and odd sizes."""

from __future__ import annotations

import time

import numpy as np
import pytest
from textual.app import App, ComposeResult

from cartpole_tui.tui.data.overlays import Overlay
from cartpole_tui.tui.data.score_history import ScoreHistory
from cartpole_tui.tui.widgets.score_plot import ScorePlot

SIZE = (40, 8)  # 6 plot rows, then the axis row and the episode labels
PLOT_ROWS = 6
LEFT = 4  # "500" and the axis line


class PlotApp(App):
    def __init__(self, plot: ScorePlot):
        super().__init__()
        self.plot = plot

    def compose(self) -> ComposeResult:
        yield self.plot


async def until(pilot, predicate, what: str, timeout: float = 10.0) -> None:
    """Let the app run until ``predicate`` holds; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await pilot.pause(0.01)


def lines(plot: ScorePlot) -> list[str]:
    return [plot.render_line(y).text for y in range(plot.size.height)]


def lit_cells(line: str) -> list[int]:
    """Plot cells of a line holding braille dots."""
    return [i - LEFT for i, ch in enumerate(line) if 0x2801 <= ord(ch) <= 0x28FF and i >= LEFT]


def cells_styled(plot: ScorePlot, y: int, component: str) -> list[int]:
    """Plot cells of line ``y`` drawn in the colour of ``component``."""
    colour = plot.get_component_rich_style(component).color
    cells, at = [], 0
    for segment in plot.render_line(y):
        if segment.style is not None and segment.style.color == colour and segment.text.strip():
            cells += [at + i - LEFT for i, ch in enumerate(segment.text) if ch != " "]
        at += len(segment.text)
    return cells


def run_history(*runs: tuple[float, int]) -> ScoreHistory:
    """Runs of constant scores, each ended with its average."""
    history = ScoreHistory()
    for number, (score, episodes) in enumerate(runs, start=1):
        history.extend([score] * episodes, number)
        history.end_run(score)
    return history


async def test_top_score_lights_the_top_row_and_zero_the_bottom_row():
    plot = ScorePlot(run_history((500, 25), (0, 25)))
    plot.threshold = None
    plot.window = 1
    async with PlotApp(plot).run_test(size=SIZE) as pilot:
        await pilot.pause()
        text = lines(plot)
        cols = plot.size.width - LEFT
        top, bottom = lit_cells(text[0]), lit_cells(text[PLOT_ROWS - 1])
        assert top and max(top) < cols // 2 + 1
        assert bottom and min(bottom) >= cols // 2 - 1
        for middle in text[1 : PLOT_ROWS - 1]:  # the drop from 500 to 0 is one steep stroke
            assert len(lit_cells(middle)) <= 2
        assert text[0].startswith("500┤") and text[PLOT_ROWS - 1].startswith("  0┤")


async def test_threshold_line_sits_in_its_row_with_its_label():
    plot = ScorePlot(ScoreHistory())
    plot.y_max, plot.threshold = 100, 25  # 25 of 100 falls in the fifth of six rows
    async with PlotApp(plot).run_test(size=SIZE) as pilot:
        await pilot.pause()
        text = lines(plot)
        rows_with_dots = [y for y in range(PLOT_ROWS) if lit_cells(text[y])]
        assert rows_with_dots == [4]
        # dotted all along but for its label, there before any episode too (issue 20)
        assert len(lit_cells(text[4])) == plot.size.width - LEFT - len("solved")
        assert text[4].startswith(" 25┤") and text[4][LEFT + 1 : LEFT + 7] == "solved"
        assert "waiting for episodes" in "".join(text)


async def test_run_averages_and_boundaries_are_marked():
    plot = ScorePlot(run_history((100, 10), (300, 10), (500, 10)))
    async with PlotApp(plot).run_test(size=SIZE) as pilot:
        await pilot.pause()
        text = lines(plot)
        cols = plot.size.width - LEFT
        markers = [(y, line.index("◆") - LEFT) for y, line in enumerate(text) if "◆" in line]
        assert [y for y, _ in markers] == [0, 2, 4]  # averages 500, 300, 100
        assert sorted(x for _, x in markers) == [cols // 3 - 1, 2 * cols // 3 - 1, cols - 1]
        axis = text[PLOT_ROWS]
        ticks = [i - LEFT for i, ch in enumerate(axis) if ch == "┴"]
        assert ticks == [cols // 3, 2 * cols // 3]
        assert text[PLOT_ROWS + 1].split()[0] == "1" and text[PLOT_ROWS + 1].split()[-1] == "30"


async def test_redraws_only_when_data_changed_and_only_when_shown():
    history = ScoreHistory()
    plot = ScorePlot(history, redraw_hz=20)
    async with PlotApp(plot).run_test(size=SIZE) as pilot:
        await until(pilot, lambda: plot.rebuilds >= 1, "first draw")
        settled = plot.ticks
        await until(pilot, lambda: plot.ticks >= settled + 2, "two timer ticks")
        rebuilds, rendered, ticks = plot.rebuilds, plot.lines_rendered, plot.ticks
        await until(pilot, lambda: plot.ticks >= ticks + 5, "five idle ticks")
        assert (plot.rebuilds, plot.lines_rendered) == (rebuilds, rendered)

        for _ in range(300):  # many appends between ticks make one redraw
            history.append(500.0, 1)
        await until(pilot, lambda: plot.rebuilds > rebuilds, "redraw after new episodes")
        ticks = plot.ticks
        await until(pilot, lambda: plot.ticks >= ticks + 3, "three more ticks")
        assert plot.rebuilds == rebuilds + 1
        assert lit_cells(lines(plot)[0])

        plot.display = False
        await pilot.pause()
        rebuilds = plot.rebuilds
        history.append(0.0, 2)
        ticks = plot.ticks
        await until(pilot, lambda: plot.ticks >= ticks + 3, "ticks while hidden")
        assert plot.rebuilds == rebuilds
        plot.display = True
        await until(pilot, lambda: plot.rebuilds > rebuilds, "redraw once shown again")


async def test_repaints_between_ticks_reuse_the_cached_plot():
    history = ScoreHistory()
    plot = ScorePlot(history, redraw_hz=None)  # no timer: this test ticks
    async with PlotApp(plot).run_test(size=SIZE) as pilot:
        await until(pilot, lambda: plot.rebuilds == 1, "first draw")
        history.extend([500.0] * 50, 1)
        rendered = plot.lines_rendered
        for _ in range(3):  # repaints the app causes for other reasons
            plot.refresh()
            await pilot.pause()
        assert plot.lines_rendered > rendered
        assert plot.rebuilds == 1 and plot.ticks == 0
        assert "waiting for episodes" in "".join(lines(plot))
        plot.tick()  # what the timer (the app's redraw) does
        await until(pilot, lambda: plot.rebuilds == 2, "redraw after the tick")
        assert "waiting for episodes" not in "".join(lines(plot))


async def test_last_n_and_window_settings_change_the_picture():
    history = ScoreHistory()
    history.extend(np.arange(1000) % 500, 1)
    plot = ScorePlot(history, last_n_size=100)
    async with PlotApp(plot).run_test(size=(60, 10)) as pilot:
        await pilot.pause()
        assert lines(plot)[-1].split()[0] == "1"
        plot.action_toggle_all()
        await pilot.pause()
        assert plot.last_n == 100
        assert lines(plot)[-1].split()[0] == "901"
        windows = []
        for _ in range(len(ScorePlot.WINDOWS)):
            plot.action_cycle_window()
            windows.append(plot.window)
        assert sorted(windows) == sorted(ScorePlot.WINDOWS)
        await pilot.pause()
        assert f"━ mean({plot.window})" in plot.summary


async def test_overlay_is_drawn_in_its_own_colour_at_its_height():
    plot = ScorePlot(run_history((500, 50)))
    plot.overlays = [Overlay(np.full(50, 250.0), "earlier run")]
    async with PlotApp(plot).run_test(size=SIZE) as pilot:
        await pilot.pause()
        rows = [y for y in range(PLOT_ROWS) if cells_styled(plot, y, "score-plot--overlay-1")]
        assert rows == [3]
        assert len(cells_styled(plot, 3, "score-plot--overlay-1")) == plot.size.width - LEFT
        assert "━ earlier run" in plot.summary


async def test_every_compared_run_has_a_colour_of_its_own_and_none_is_the_solved_lines():
    """Compared runs are drawn beside the solved line: a run in its green read as that line (the
    third compared run's curve at 475 in screenshots/compare-120x40.svg)."""
    plot = ScorePlot(run_history((500, 50)))
    async with PlotApp(plot).run_test(size=SIZE) as pilot:
        await pilot.pause()
        colour = lambda name: plot.get_component_rich_style(name).color  # noqa: E731
        overlays = [colour(f"score-plot--overlay-{k}") for k in range(1, 9)]
        assert len(set(overlays)) == len(overlays)
        # a colour and its bright form look alike in most themes (the screenshot's green and bright green)
        hue = lambda c: c.number % 8  # noqa: E731  (ANSI colours: 8-15 are 0-7 bright)
        assert hue(colour("score-plot--threshold")) not in {hue(c) for c in overlays}


@pytest.mark.parametrize("size", [(1, 1), (3, 2), (10, 3), (40, 8), (200, 50), (80, 24)])
async def test_any_size_draws_full_width_lines(size):
    history = run_history(*[(float(s), 20) for s in range(0, 500, 25)])
    plot = ScorePlot(history)
    app = PlotApp(plot)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.resize_terminal(*size)
        await until(pilot, lambda: app.size == size, f"resize to {size}")
        await pilot.pause()
        assert plot.size.width <= size[0]
        for y in range(plot.size.height):
            assert plot.render_line(y).cell_length == plot.size.width


async def test_no_color_still_draws_marks(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    plot = ScorePlot(run_history((200, 10), (400, 10)))
    app = PlotApp(plot)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        text = "".join(lines(plot))
        assert app.no_color
        assert text.count("◆") == 2
        assert any(0x2801 <= ord(ch) <= 0x28FF for ch in text)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_every_marked_run_has_its_number_along_its_line_however_short(size):
    """Marked runs of 5, 20, 100 and 2,000 episodes: only the long runs' numbers were drawn, the
    short ones squeezed into the first columns had none (new-user finding 12)."""
    plot = ScorePlot(run_history((100, 10)))
    lengths = (5, 20, 100, 20, 2000, 2000, 2000, 100)
    heights = (400.0, 120.0, 300.0, 60.0, 150.0, 200.0, 250.0, 450.0)
    plot.overlays = [
        Overlay(np.full(n, h), f"run {k}", 1, k) for k, (n, h) in enumerate(zip(lengths, heights), start=1)
    ]
    async with PlotApp(plot).run_test(size=size) as pilot:
        await pilot.pause()
        rows = lines(plot)[: plot.size.height - 2]  # the plot's rows, right of the y labels and the axis
        drawn = "".join(row[len(row.split("┤")[0].split("│")[0]) + 1 :] for row in rows)
        assert [mark for mark in "12345678" if mark not in drawn] == []
