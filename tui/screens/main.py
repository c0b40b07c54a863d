"""The main screen: composes the panes and shows what it is handed; decides nothing."""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.dom import DOMNode
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Label, ProgressBar, Static

from cartpole_tui.env.components.spaces import CARTPOLE
from cartpole_tui.tui.bindings import PANES
from cartpole_tui.tui.data.population import PopulationHistory
from cartpole_tui.tui.data.score_history import ScoreHistory
from cartpole_tui.tui.widgets.cart_view import CartView
from cartpole_tui.tui.widgets.control_panel import ControlPanel
from cartpole_tui.tui.widgets.log_pane import LogPane
from cartpole_tui.tui.widgets.network_pane import NetworkPane
from cartpole_tui.tui.widgets.population_pane import PopulationPane
from cartpole_tui.tui.widgets.runs_table import RunsTable
from cartpole_tui.tui.widgets.score_plot import ScorePlot

SMALL_HEIGHT = 32  # below this the network and log panes are hidden (unless asked for)
RUNS_WIDTH = 80  # every column of the runs table, with its border
SIDE_MIN = 36  # a pane beside the runs table needs this much to say anything
WIDE = RUNS_WIDTH + 2 * SIDE_MIN  # from here the population pane shows beside the network
BOTTOM_ROW = {"runs-pane": RUNS_WIDTH, "network-pane": SIDE_MIN, "population-pane": SIDE_MIN}  # least widths
FIXED_ROWS = 4  # status, controls, progress, footer
BAR_WIDTH, BAR_WIDTH_MIN = 32, 6  # Textual's progress bar, and the least of it still readable
PROGRESS_LABEL_ROOM = 68  # the columns a long progress label and the bar's percentage and ETA take
BAR_FIGURES = 14  # the bar's percentage and ETA beside it ("  40% --:--:--"), in Textual's ProgressBar
PROGRESS_PADDING = 3  # the progress row's padding (a column each side) and the label's (one on its left)
LOG_LINES = 1000


def bar_width(width: int) -> int:
    """The progress bar's columns in a terminal ``width`` columns wide."""
    return min(BAR_WIDTH, max(BAR_WIDTH_MIN, width - PROGRESS_LABEL_ROOM))


class MainScreen(Screen):
    """Status line, controls, progress, plot, cart, runs, network and log.

    The widgets are attributes: ``query_one`` searches the active screen, which is the help
    screen while it is open, and events keep arriving then.
    """

    def __init__(
        self,
        history: ScoreHistory,
        *,
        population: PopulationHistory | None = None,
    ):
        super().__init__()
        self.status = Static(id="status")
        self.controls = ControlPanel()
        self.progress = ProgressBar(total=1, show_eta=True, id="progress")
        self.progress.display = False  # until a run starts
        self._focus_lost: tuple[Widget, Widget | None] | None = None  # (hidden while focused, focused instead)
        # plain text, not markup: it tells of runs from a history file made elsewhere (any state)
        self.progress_label = Label("no run yet", id="progress-label", markup=False)
        # drawn by the app's redraw, with the progress line and the runs table (the app's COUNTS_EVERY)
        self.plot = ScorePlot(history, redraw_hz=None, id="plot-pane")
        self.cart = CartView(id="cart-pane")
        self.runs_table = RunsTable(id="runs-pane")
        self.network = NetworkPane(id="network")
        self.network_box = Vertical(self.network, id="network-pane")
        self.log_pane = LogPane(LOG_LINES, id="log-pane")
        self.population = PopulationPane(population or PopulationHistory(), id="population-pane")
        self.chosen: dict[str, bool] = {}  # panes the user showed or hid: kept over every resize
        self.panes = {
            "plot-pane": self.plot,
            "cart-pane": self.cart,
            "runs-pane": self.runs_table,
            "network-pane": self.network_box,
            "log-pane": self.log_pane,
            "population-pane": self.population,
        }
        for pane_id, title in PANES.values():
            self.panes[pane_id].border_title = {"score plot": "Score"}.get(title, title.capitalize())

    def title_plot(self, held: int) -> None:
        """The plot's title says how many ended episodes wait for a lower number (a vectorised
        run's slowest instance held nearly all back: the plot looked frozen at 140 of 1,780)."""
        # "waiting for lower numbers" was read as jargon (new-user pass 6); 46 columns at most
        title = f"Score · {held:,} held for earlier episodes" if held else "Score"
        if self.plot.border_title != title:
            self.plot.border_title = title

    def title_environment(self, env_id: str) -> None:
        """The environment pane is titled by what it draws: CartPole's cart, another's picture (it
        said "Cart" above Acrobot). The id is a peer's (an environment's RUN_STARTED): its text as
        written, never markup (a string is read as markup: "[/x]" raised and ended the app, and
        "[@click=app.quit]" made the title a button)."""
        self.cart.border_title = Content(PANES["2"][1].capitalize() if env_id == CARTPOLE.env_id else env_id)

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
            yield self.population
        yield self.log_pane
        yield Footer(show_command_palette=False)  # ctrl+p is in the help; the keys must fit 80 columns

    def on_mount(self) -> None:
        self.arrange_panes()

    def on_resize(self) -> None:
        self.arrange_panes()

    def progress_label_room(self, bar_shown: bool) -> int:
        """The columns the progress label has, beside the bar or alone on its row."""
        width = self.app.size.width
        return width - PROGRESS_PADDING - (bar_width(width) + BAR_FIGURES if bar_shown else 0)

    def toggle_pane(self, pane_id: str) -> None:
        shown = not self.panes[pane_id].display
        self.chosen.pop(pane_id, None)  # the latest choice last: it wins the room
        self.chosen[pane_id] = shown
        self.arrange_panes()

    def arrange_panes(self) -> None:
        """Decide, for the terminal's size now, which panes show and how tall the rows are.

        A pane the user toggled keeps the user's choice while it fits; the bottom row holds
        only panes that fit whole side by side (`bottom_row`); the plot never gets fewer rows
        than the runs table; the rows of hidden panes go to the panes still shown.
        """
        width, height = self.app.size
        small = height < SMALL_HEIGHT
        self.set_class(small, "-small")
        # the progress label is read whole: the bar is shorter in a narrow terminal (not with each
        # label, which would make it jitter)
        for bar in self.progress.query("Bar"):
            bar.styles.width = bar_width(width)
        wanted = {
            "plot-pane": True,
            "cart-pane": width >= 60,
            "runs-pane": True,
            "network-pane": not small and width >= RUNS_WIDTH + SIDE_MIN,
            "log-pane": not small,
            "population-pane": not small and width >= WIDE,
        }
        wanted.update(self.chosen)
        beside = self.bottom_row(wanted, width)
        for pane_id, show in wanted.items():
            self.panes[pane_id].display = show and (pane_id in beside or pane_id not in BOTTOM_ROW)
        shown = {pane_id for pane_id, pane in self.panes.items() if pane.display}
        above = bool(shown & {"plot-pane", "cart-pane"})
        self.query_one("#main").display = above
        rest = height - FIXED_ROWS
        log_rows = min(7, max(3, rest // 4)) if "log-pane" in shown else 0
        bottom = 0
        if beside and above:
            bottom = 7 if small else (13 if "population-pane" in beside and height >= 40 else 9)
            bottom = min(bottom, (rest - log_rows) // 2)  # the plot keeps at least as many rows
        elif beside:
            bottom = rest - log_rows
        elif not above and log_rows:
            log_rows = rest  # the log alone: all the rows
        self.query_one("#bottom").styles.height = max(bottom, 0)
        self.log_pane.styles.height = log_rows
        self.runs_table.styles.width = RUNS_WIDTH if len(beside) > 1 else "1fr"
        # the cart alone above: it takes the plot's width too (it drew 20 columns beside 60 empty)
        self.cart.styles.width = "1fr" if "plot-pane" not in shown else None
        share = max(SIDE_MIN, (width - RUNS_WIDTH) // 2)
        self.population.styles.width = share if {"runs-pane", "network-pane"} <= beside else "1fr"
        self._keep_focus_on_a_shown_pane()

    def _keep_focus_on_a_shown_pane(self) -> None:
        """A focused pane that goes away hands the keys to one shown (they went nowhere once a
        resize hid the focused log, new-user pass 6; not to the episodes field either, where the
        pane keys would be typed), and takes them back when it comes back, unless moved since."""
        lost = self._focus_lost
        if lost is not None and not self._hidden(lost[0]):
            self._focus_lost = None
            if self.focused is lost[1]:
                lost[0].focus()
            return
        focused = self.focused
        if focused is None or not self._hidden(focused):
            return
        given = next((pane for pane in (self.runs_table, self.plot) if not self._hidden(pane)), None)
        self._focus_lost = (focused, given)
        self.set_focus(given)

    def _hidden(self, widget: Widget) -> bool:
        """Not on the screen: it, or a pane it is in, is not displayed."""
        node: DOMNode | None = widget
        while node is not None and node is not self:
            if not node.display:
                return True
            node = node.parent
        return False

    def bottom_row(self, wanted: dict[str, bool], width: int) -> set[str]:
        """The panes of the bottom row that fit side by side, each at its least width (the runs
        table with every column): those shown by key first, the latest first, then the others.
        A pane that does not fit gives way, and comes back with the room; only the pane asked
        for last shows where it does not fit (the user chose it)."""
        asked = [pane_id for pane_id in reversed(self.chosen) if pane_id in BOTTOM_ROW and wanted[pane_id]]
        order = asked + [pane_id for pane_id in BOTTOM_ROW if pane_id not in asked and wanted[pane_id]]
        row: set[str] = set()
        used = 0
        for pane_id in order:
            # below 80 columns the runs table was shown cut: now only when asked for by its key
            if used + BOTTOM_ROW[pane_id] <= width or (not row and pane_id in asked):
                row.add(pane_id)
                used += BOTTOM_ROW[pane_id]
        return row

    def log_line(self, text: str | Text, style: str = "") -> None:
        """A timestamped line in the log; strings are shown as they are, never as markup."""
        line = Text(time.strftime("%H:%M:%S "), style="dim")
        line.append_text(text if isinstance(text, Text) else Text(text, style=style))
        self.log_pane.add(line)
