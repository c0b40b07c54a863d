"""The main screen: composes the panes and shows what it is handed; decides nothing."""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Label, ProgressBar, RichLog, Static

from cartpole_tui.env import defaults
from cartpole_tui.tui.bindings import PANES
from cartpole_tui.tui.data.score_history import ScoreHistory
from cartpole_tui.tui.widgets.cart_view import CartView
from cartpole_tui.tui.widgets.control_panel import ControlPanel
from cartpole_tui.tui.widgets.network_pane import NetworkPane
from cartpole_tui.tui.widgets.runs_table import RunsTable
from cartpole_tui.tui.widgets.score_plot import ScorePlot

SMALL_HEIGHT = 32  # below this the network and log panes start hidden
LOG_LINES = 1000


class MainScreen(Screen):
    """Status line, controls, progress, plot, cart, runs, network and log.

    The widgets are attributes: ``query_one`` searches the active screen, which is the help
    screen while it is open, and events keep arriving then.
    """

    def __init__(self, history: ScoreHistory, *, redraw_hz: float = defaults.REDRAW_HZ):
        super().__init__()
        self.status = Static(id="status")
        self.controls = ControlPanel()
        self.progress = ProgressBar(total=1, show_eta=True, id="progress")
        self.progress.display = False  # until a run starts
        self.progress_label = Label("no run yet", id="progress-label")
        # The plot is the biggest repaint: half the rate of the cart and the progress.
        self.plot = ScorePlot(history, redraw_hz=redraw_hz / 2, id="plot-pane")
        self.cart = CartView(id="cart-pane")
        self.runs_table = RunsTable(id="runs-pane")
        self.network = NetworkPane(id="network")
        self.network_box = Vertical(self.network, id="network-pane")
        self.log_pane = RichLog(id="log-pane", max_lines=LOG_LINES, markup=False, wrap=True)
        self.panes = {
            "plot-pane": self.plot,
            "cart-pane": self.cart,
            "runs-pane": self.runs_table,
            "network-pane": self.network_box,
            "log-pane": self.log_pane,
        }
        for pane_id, title in PANES.values():
            self.panes[pane_id].border_title = {"score plot": "Score"}.get(title, title.capitalize())

    def compose(self) -> ComposeResult:
        yield self.status
        yield self.controls
        with Horizontal(id="progress-row"):
            yield self.progress
            yield self.progress_label
        with Horizontal(id="main"):
            yield self.plot
            yield self.cart
        with Horizontal(id="bottom"):
            yield self.runs_table
            yield self.network_box
        yield self.log_pane
        yield Footer(show_command_palette=False)  # ctrl+p is in the help; the keys must fit 80 columns

    def on_mount(self) -> None:
        small = self.app.size.height < SMALL_HEIGHT
        self.network_box.display = self.log_pane.display = not small
        self.set_class(small, "-small")

    def on_resize(self) -> None:
        self.set_class(self.app.size.height < SMALL_HEIGHT, "-small")

    def toggle_pane(self, pane_id: str) -> None:
        pane = self.panes[pane_id]
        pane.display = not pane.display

    def log_line(self, text: str | Text, style: str = "") -> None:
        """A timestamped line in the log; strings are shown as they are, never as markup."""
        line = Text(time.strftime("%H:%M:%S "), style="dim")
        line.append_text(text if isinstance(text, Text) else Text(text, style=style))
        self.log_pane.write(line)
