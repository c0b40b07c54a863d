"""Modal screens: help, and the broker that could not be reached."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

HELP_TEXT = """\
[b]cartpole-tui[/b] — the control room of a swergio CartPole network

[b]Runs[/b]
  s        start a run (episodes and Det from the top bar)
  x        stop the running run (ENV_DONE over the finished episodes)
  e        one evolution step (EVOLUTION → EVO_DONE)
  r        schedule: rounds of (train 20, evaluate 5 deterministic, evolve)
           until a 100-episode deterministic check averages 475; x stops it
  d        deterministic on/off
[b]Panes[/b]
  1 score plot   2 cart   3 runs   4 network   5 log
[b]Plot[/b] (when focused)
  w        smoothing window: 1 · 10 · 50 · 100 · 500
  a        all episodes / the last 1000
[b]Runs table[/b] (when focused)
  space    mark a run: its rolling mean is overlaid on the plot
  c        export the marked runs (all when none is marked) to CSV
[b]Anywhere[/b]
  tab      next control    ctrl+p  command palette
  ?        this help       q       quit
"""


class HelpScreen(ModalScreen):
    """Every key, in one place."""

    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Vertical { width: auto; max-width: 90%; height: auto; max-height: 90%;
                            border: round $accent; padding: 0 2; background: $surface; }
    """

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(HELP_TEXT)


class UnreachableScreen(ModalScreen[bool]):
    """The network could not be joined: say why; retry or quit."""

    BINDINGS = [Binding("r", "retry", "Retry"), Binding("q,escape", "quit_app", "Quit")]
    DEFAULT_CSS = """
    UnreachableScreen { align: center middle; }
    UnreachableScreen > Vertical { width: 70; max-width: 95%; height: auto;
                                   border: heavy $error; padding: 1 2; background: $surface; }
    """

    def __init__(self, reason: str):
        super().__init__()
        self.reason = reason

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"[b]Cannot join the network[/b]\n\n{self.reason}\n\n"
                         "[b]r[/b] retry    [b]q[/b] quit", id="unreachable-reason")

    def action_retry(self) -> None:
        self.dismiss(True)

    def action_quit_app(self) -> None:
        self.dismiss(False)
