"""The runs table: one row per run, past and current; space marks runs to compare."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from cartpole_tui.env import defaults
from cartpole_tui.env.history.store import RunRecord
from cartpole_tui.env.words import average, human, steps_per_second
from cartpole_tui.tui.bindings import bindings
from cartpole_tui.tui.data.run_progress import Counted
from cartpole_tui.tui.messages import DetailsRequested, MarksChanged

COLUMNS = ("", "#", "eps", "det", "avg (ENV_DONE)", "best", "time", "steps/s", "state")
WIDTHS = (1, 4, 9, 3, 14, 5, 7, 7, 7)  # fixed, and all of them fit 80 columns
_STATE_STYLE = {"running": "bold cyan", "done": "green", "stopped": "yellow", "failed": "red"}


def _cells(run: RunRecord, marked: bool, counted: Counted | None = None) -> tuple:
    """A run's row; ``counted``: the run as the progress line tells of it, while the history still
    says it is running (it may be a second behind)."""
    if counted is not None:
        run = counted.over(run)
    state = run.state
    if run.avg_score is not None:
        avg = average(run.avg_score)
    else:  # still to come, or none: a run that ended before any episode has no average
        avg = "…" if run.state == "running" else "—"
    best = "" if run.best is None else _best(run.best)
    duration = "" if run.duration is None else f"{run.duration:.1f}s"
    rate = "" if not run.steps_per_s else steps_per_second(run.steps_per_s)
    played = run.finished
    episodes = str(played)  # played, and of how many when that is not all: a stopped run 12/1000
    if state == "running" or played != run.params.episodes:
        # 0 asked: a run of the published environment started elsewhere, its size not heard ("20/0")
        episodes = _of(played, run.params.episodes) or episodes
    # Text, not markup: a history file made elsewhere may hold any state ("[/x]" raised MarkupError)
    shown = Text(state, style=_STATE_STYLE.get(state, ""))
    return (
        "◆" if marked else " ",
        str(run.number),
        episodes,
        "yes" if run.params.deterministic else "no",
        avg,
        best,
        duration,
        rate,
        shown,
    )


def _of(played: int, asked: int) -> str | None:
    """``played/asked`` whole in the eps column, shortened as needed: a stopped run of 200,000
    showed 79588 alone (read: a run of 79,588), now 79588/200000 → 79.6k/200k → 80k/200k."""
    forms = ((str(played), str(asked)), (human(played), human(asked)), (_thousands(played), _thousands(asked)))
    texts = (f"{done}/{of if asked else '?'}" for done, of in forms)
    return next((text for text in texts if len(text) <= WIDTHS[2]), None)


def _thousands(count: int) -> str:
    """A count rounded whole to its unit: 79,588 as 80k, 1,250,000 as 1M."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if count >= scale:
            return f"{count / scale:.0f}{suffix}"
    return str(count)


def _looks(cells: tuple) -> tuple:
    """Cells as they look: text and style (Rich's Text compares its text and spans, not its style)."""
    return tuple((str(cell), str(getattr(cell, "style", ""))) for cell in cells)


def _best(score: float) -> str:
    """A best score whole in its column: CartPole's 500, -99.5, LunarLander's -101.73 as -102 (it
    showed "-101.", cut), 12.3k, -12k."""
    whole = f"{score:g}" if score.is_integer() and abs(score) < 1e5 else average(score)
    rounder = (f"{score / scale:.0f}{suffix}" for scale, suffix in ((1e3, "k"), (1e6, "M"), (1e9, "G"), (1e12, "T")))
    return next((text for text in (whole, human(score), *rounder) if len(text) <= WIDTHS[5]), "…")


class RunsTable(DataTable):
    """Shows the runs it is given with ``show``; updates only the cells that changed."""

    BINDINGS = bindings("runs")

    def __init__(self, **kwargs):
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.marked: set[int] = set()
        self._shown: dict[int, tuple] = {}
        self._runs: dict[int, RunRecord] = {}
        self._counted: dict[int, Counted] = {}  # runs as the progress line tells of them, as last shown
        self.environment: str | None = None  # the plot's environment: the runs of others are dim
        # here, not on mount: the history may arrive before the table is mounted
        for label, width in zip(COLUMNS, WIDTHS):
            self.add_column(label, key=label or "mark", width=width)

    def show(self, runs: list[RunRecord], counted: dict[int, Counted] | None = None) -> None:
        """``counted``: run number -> the run as the progress line tells of it (the history of
        another process is a second behind)."""
        follow = self.row_count == 0 or self.cursor_row >= self.row_count - 1
        self._counted = dict(counted or {})
        for run in runs:
            self._runs[run.number] = run
            cells = _cells(run, run.number in self.marked, self._counted.get(run.number))
            if self.environment is not None and run.params.env_id != self.environment:
                # another game's run, kept in the file and not in the plot: dim (its details name it)
                cells = tuple(Text(str(cell), style=f"{getattr(cell, 'style', '')} dim".strip()) for cell in cells)
            previous = self._shown.get(run.number)
            if previous is None:
                self.add_row(*cells, key=str(run.number))
            elif _looks(previous) != _looks(cells):
                for column, (old, new) in zip(self.columns, zip(previous, cells)):
                    if _looks((old,)) != _looks((new,)):
                        self.update_cell(str(run.number), column, new)
            self._shown[run.number] = cells
        if follow and self.row_count:
            self.move_cursor(row=self.row_count - 1, animate=False)

    def plot_environment(self, env_id: str) -> None:
        """The plot holds ``env_id``'s runs now: the others' rows dim, their marks dropped."""
        self.environment = env_id
        others = {n for n, run in self._runs.items() if n in self.marked and run.params.env_id != env_id}
        if others:
            self.marked -= others
            self.post_message(MarksChanged(frozenset(self.marked)))

    @property
    def current(self) -> int | None:
        """The number of the run under the cursor."""
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value  # the run's number
        return int(key) if key is not None else None

    def action_details(self) -> None:
        if self.current is not None:
            self.post_message(DetailsRequested(self.current))

    def action_toggle_mark(self) -> None:
        number = self.current
        if number is None:
            return
        run = self._runs.get(number)
        if number not in self.marked and run is not None and not run.finished and run.state != "running":
            # it took one of the plot's marks and drew nothing, and the legend renumbered the rest
            self.notify(f"run {number} has no episode to draw: not marked")
            return
        if number not in self.marked and run is not None and self.environment not in (None, run.params.env_id):
            # its curve was drawn on this game's axis (Acrobot's -500 on CartPole's 0 line)
            self.notify(
                f"run {number} played {run.params.env_id}, the plot {self.environment}: not marked", markup=False
            )
            return
        if number not in self.marked and len(self.marked) >= defaults.PLOT_OVERLAYS:
            # a ninth mark was shown in the table and drawn nowhere
            self.notify(f"{defaults.PLOT_OVERLAYS} runs marked, the most the plot draws")
            return
        self.marked ^= {number}
        self.show([self._runs[number]], self._counted)
        self.post_message(MarksChanged(frozenset(self.marked)))
