"""One run's details (Enter in the runs table): settings, timing, how it ended, its episodes."""

from __future__ import annotations

import time

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from cartpole_tui.env.history.store import Episode, RunRecord
from cartpole_tui.env.words import average, plural, steps_per_second

ENDINGS = {
    "done": "done: every episode played, ENV_DONE received",
    "stopped": "stopped (x): ENV_DONE over the finished episodes",
    "failed": "failed: the network went away or the app ended during the run",
    "running": "still running",
}


def _clock(seconds: float | None) -> str:
    return "—" if seconds is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def details_text(run: RunRecord, episodes: list[Episode]) -> Group:
    """Plain rich text: numbers and strings from the history are shown as they are, never as markup."""
    params = run.params
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold", no_wrap=True)
    facts.add_column()
    rate = run.steps_per_s
    rows = [
        (
            "episodes",
            f"{run.finished:,} played of {params.episodes:,} asked"
            if params.episodes
            else f"{run.finished:,} played (how many were asked was not heard here)",
        ),
        ("deterministic", "yes" if params.deterministic else "no"),
        ("seed", "none" if params.seed is None else str(params.seed)),
        ("environment", params.env_id),
        ("network", params.address or "—"),
        ("started", _clock(run.started)),
        ("ended", _clock(run.ended)),
        ("duration", "—" if run.duration is None else f"{run.duration:.1f} s"),
        ("steps", f"{run.total_steps:,}" + (f" ({steps_per_second(rate)} steps/s)" if rate else "")),
        ("average", "—" if run.avg_score is None else f"{average(run.avg_score, 2)} (ENV_DONE)"),
        ("best", "—" if run.best is None else f"{run.best:g}"),
        ("ended how", ENDINGS.get(run.state, run.state)),
    ]
    for name, value in rows:
        facts.add_row(name, Text(value))
    listing = Table(box=None, padding=(0, 1), header_style="bold")
    for column in ("episode", "score", "steps", "ended at"):
        listing.add_column(column, justify="right")
    for episode in episodes:
        listing.add_row(
            str(episode.index),
            f"{episode.score:g}",
            f"{episode.steps:,}",
            time.strftime("%H:%M:%S", time.localtime(episode.wall_time)),
        )
    title = Text.assemble((f"run {run.number}", "bold"), f" · {plural(run.finished, 'episode')}")
    return Group(title, Text(""), facts, Text(""), listing if episodes else Text("no episode finished", style="dim"))


class RunDetailsScreen(ModalScreen):
    """A run's details; scrolls where the terminal is short."""

    BINDINGS = [Binding("escape,enter,q", "dismiss", "Close")]
    AUTO_FOCUS = "#details-box"
    DEFAULT_CSS = """
    RunDetailsScreen { align: center middle; }
    RunDetailsScreen > VerticalScroll { width: 76; max-width: 100%; height: auto; max-height: 100%;
                                        border: round $accent; padding: 0 1; background: $surface; }
    RunDetailsScreen Static { width: 100%; height: auto; }
    """

    def __init__(self, run: RunRecord, episodes: list[Episode]):
        super().__init__()
        self.run, self.episodes = run, episodes

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="details-box") as box:
            box.border_title = f"Run {self.run.number}"
            box.border_subtitle = "escape closes"
            yield Static(details_text(self.run, self.episodes), id="details-text")
