"""Score plot redraw cost: ScoreHistory -> ScorePlot strips at 10^3..10^6 episodes, side by side
with textual-plot drawing every point, and the memory of a million recorded episodes.

Run: python -m bench.plot
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time

import numpy as np
from textual.app import App, ComposeResult

from cartpole_tui.tui.data.score_history import ScoreHistory
from cartpole_tui.tui.widgets.score_plot import ScorePlot

SIZES = ((80, 20), (200, 50))
COUNTS = (10**3, 10**4, 10**5, 10**6)
REFERENCE_COUNTS = (10**3, 10**4)
RUN_LENGTH = 20
APPENDS_PER_REDRAW = 10  # a 4 Hz redraw during a fast run finds a handful of new episodes
REDRAWS = 30
REFERENCE_REDRAWS = 3
WINDOW = 100


def learning_curve(n: int, seed: int = 0) -> np.ndarray:
    """CartPole-like scores: a noisy climb from ~20 towards 500."""
    rng = np.random.default_rng(seed)
    progress = np.sqrt(np.arange(n) / max(n, 1))
    return np.clip(rng.normal(20 + 480 * progress, 80), 8, 500).round().astype(np.float32)


def record(history: ScoreHistory, scores: np.ndarray, first_run: int = 1) -> None:
    """Add ``scores`` in runs of RUN_LENGTH episodes, each ended with its average."""
    for number, at in enumerate(range(0, len(scores), RUN_LENGTH), start=first_run):
        chunk = scores[at : at + RUN_LENGTH]
        history.extend(chunk, number)
        history.end_run(float(chunk.mean()))


class Host(App):
    """A headless app holding one plot widget, so component styles resolve as in the real app."""

    def __init__(self, widget):
        super().__init__()
        self.widget = widget

    def compose(self) -> ComposeResult:
        yield self.widget


def time_ours(plot: ScorePlot, n: int, width: int, height: int) -> float:
    """Median seconds per redraw: append a few episodes, then history -> strips."""
    fresh = learning_curve(APPENDS_PER_REDRAW * REDRAWS, seed=1)
    history = ScoreHistory()
    record(history, learning_curve(n - len(fresh)))
    plot.history = history
    plot.build_strips(width, height)  # prefix sums and tables caught up once, as after a long run
    times = []
    for redraw in range(REDRAWS):
        started = time.perf_counter()
        for score in fresh[redraw * APPENDS_PER_REDRAW : (redraw + 1) * APPENDS_PER_REDRAW]:
            history.append(float(score), 10**6)
        plot.build_strips(width, height)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def time_reference(plot, n: int) -> float:
    """Median seconds for textual-plot to draw the raw scores and their rolling mean, point by point."""
    from textual_hires_canvas import Canvas
    from textual_plot import HiResMode

    history = ScoreHistory()
    record(history, learning_curve(n))
    x = np.arange(n, dtype=np.float64)
    raw, rolling = history.scores.astype(np.float64), history.rolling_mean(WINDOW)
    canvas = plot.query_one("#plot", Canvas)
    times = []
    for _ in range(REFERENCE_REDRAWS):
        started = time.perf_counter()
        plot.clear()
        plot.plot(x, raw, line_style="blue", hires_mode=HiResMode.BRAILLE)
        plot.plot(x, rolling, line_style="bold cyan", hires_mode=HiResMode.BRAILLE)
        plot._render_plot()  # its data path: datasets -> canvas (what render() does when dirty)
        for y in range(canvas.size.height):
            canvas.render_line(y)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def measure_ours() -> dict[tuple[int, int], float]:
    plot = ScorePlot()
    results = {}
    async with Host(plot).run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        for n in COUNTS:
            for width, height in SIZES:
                results[n, width] = time_ours(plot, n, width, height)
    return results


async def measure_reference() -> dict[tuple[int, int], float] | None:
    try:
        from textual_plot import PlotWidget
    except ImportError:
        return None
    results = {}
    for width, height in SIZES:
        plot = PlotWidget()
        async with Host(plot).run_test(size=(width, height)) as pilot:
            await pilot.pause()
            for n in REFERENCE_COUNTS:
                results[n, width] = time_reference(plot, n)
    return results


def rss_child() -> None:
    """In a fresh process: append 10^6 episodes one by one and report memory and time."""

    def status(key: str) -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(key))

    scores = learning_curve(10**6).tolist()
    before = status("VmRSS:")
    history = ScoreHistory()
    started = time.perf_counter()
    for i, score in enumerate(scores):
        history.append(score, i // RUN_LENGTH)
        if i % RUN_LENGTH == RUN_LENGTH - 1:
            history.end_run(score)
    elapsed = time.perf_counter() - started
    history.columns(400, window=WINDOW)  # prefix sums and min/max tables built too
    print(
        json.dumps(
            {
                "before_kb": before,
                "after_kb": status("VmRSS:"),
                "peak_kb": status("VmHWM:"),
                "append_us": elapsed / len(scores) * 1e6,
            }
        )
    )


def measure_rss() -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "bench.plot", "--rss-child"], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out)


def main() -> None:
    if sys.argv[1:] == ["--rss-child"]:
        rss_child()
        return
    ours = asyncio.run(measure_ours())
    reference = asyncio.run(measure_reference())
    widths = [w for w, _ in SIZES]

    print("ScorePlot redraw (append 10 episodes + history -> strips), median ms")
    print(f"{'episodes':>10}" + "".join(f"{f'{w}x{h}':>12}" for w, h in SIZES))
    for n in COUNTS:
        print(f"{n:>10,}" + "".join(f"{ours[n, w] * 1e3:>12.3f}" for w in widths))
    ratio = "".join(f"{ours[COUNTS[-1], w] / ours[COUNTS[0], w]:>11.2f}x" for w in widths)
    print(f"{'1e6/1e3':>10}" + ratio)

    if reference is None:
        print("\ntextual-plot not installed: pip install textual-plot for the reference")
    else:
        print("\ntextual-plot, every point (raw + rolling mean, braille), median ms; ours alongside")
        print(f"{'episodes':>10}" + "".join(f"{f'ref {w}':>12}{f'ours {w}':>10}{'ref/ours':>10}" for w in widths))
        for n in REFERENCE_COUNTS:
            print(
                f"{n:>10,}"
                + "".join(
                    f"{reference[n, w] * 1e3:>12.1f}{ours[n, w] * 1e3:>10.3f}{reference[n, w] / ours[n, w]:>9.0f}x"
                    for w in widths
                )
            )
        top = REFERENCE_COUNTS[-1]
        for w in widths:
            per_point = reference[top, w] / (2 * top)
            at_million = per_point * 2 * COUNTS[-1]
            print(
                f"  {w} cols: {per_point * 1e6:.1f} us per plotted point -> ~{at_million:.0f} s "
                f"per redraw at 10^6 episodes (ours {ours[COUNTS[-1], w] * 1e3:.2f} ms)"
            )

    rss = measure_rss()
    print(
        f"\nRSS after 10^6 appends: {rss['after_kb'] / 1024:.0f} MB "
        f"(peak {rss['peak_kb'] / 1024:.0f} MB, of which {(rss['after_kb'] - rss['before_kb']) / 1024:.0f} MB "
        f"for the history); append {rss['append_us']:.2f} us/episode"
    )


if __name__ == "__main__":
    main()
