"""Modal screens: help, and the broker that could not be reached."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from cartpole_tui.tui.bindings import help_sections


def help_text() -> Group:
    """The help screen's content, made from the bindings table (so it cannot miss a key)."""
    parts: list = [Text.assemble(("cartpole-tui", "bold"), " · the control room of a swergio CartPole network")]
    for section, keys in help_sections().items():
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold cyan", no_wrap=True, min_width=7)
        table.add_column()  # wraps under itself, not under the keys
        for key, what in keys:
            table.add_row(key, what)
        parts += [Text(f"\n{section}", style="bold"), table]
    parts.append(Text("\nescape, ? or q closes this help", style="dim"))
    return Group(*parts)


class HelpScreen(ModalScreen):
    """Every key, in one place."""

    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close")]
    AUTO_FOCUS = "#help-box"  # arrows and page keys scroll it where the terminal is short
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 92; max-width: 100%; height: auto; max-height: 100%;
                                  border: round $accent; padding: 0 1; background: $surface; }
    HelpScreen Static { width: 100%; height: auto; }
    """

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box") as box:
            box.border_title = "Help"
            yield Static(help_text(), id="help-text")


class UnreachableScreen(ModalScreen[bool]):
    """The network could not be joined: say why; retry or quit."""

    BINDINGS = [Binding("r", "retry", "Retry"), Binding("q,escape", "quit_app", "Quit")]
    DEFAULT_CSS = """
    UnreachableScreen { align: center middle; }
    UnreachableScreen > Vertical { width: 70; max-width: 95%; height: auto;
                                   border: heavy $error; padding: 1 2; background: $surface; }
    """

    def __init__(self, reason: str, heading: str = "Cannot join the network"):
        super().__init__()
        self.reason = reason
        self.heading = heading

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(
                Text.assemble(
                    (self.heading, "bold"),
                    f"\n\n{self.reason}\n\n",
                    ("r", "bold"),
                    " retry    ",
                    ("q", "bold"),
                    " quit",
                ),
                id="unreachable-reason",
            )
        # its own keys at the bottom: the main screen's footer under it offered s, x, e and r, where
        # r means retry and the others do nothing
        yield Footer(show_command_palette=False)

    def action_retry(self) -> None:
        self.dismiss(True)

    def action_quit_app(self) -> None:
        self.dismiss(False)
