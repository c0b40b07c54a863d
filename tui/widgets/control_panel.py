"""Episodes, deterministic, Start / Stop / Evolve; validates before anything is sent."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Button, Checkbox, Input, Label

from cartpole_tui.tui.messages import EvolveRequested, StartRequested, StopRequested


def parse_episodes(text: str) -> int:
    """A whole number >= 1, or ValueError with the reason to show."""
    text = text.strip()
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"episodes must be a whole number ≥ 1 (got {text!r})" if text else "episodes is empty")
    return int(text)


class ControlPanel(Horizontal):
    """Posts StartRequested / StopRequested / EvolveRequested; the app decides what to do."""

    DEFAULT_CSS = """
    ControlPanel { height: 1; }
    ControlPanel Label { padding: 0 1 0 0; }
    ControlPanel #episodes { width: 9; }
    ControlPanel Checkbox { border: none; height: 1; padding: 0; margin: 0 1; background: transparent; }
    ControlPanel Button { margin: 0 1 0 0; min-width: 8; }
    ControlPanel #episodes-error { color: $error; padding: 0 0 0 1; }
    ControlPanel #evo-state { padding: 0 0 0 1; color: $text-muted; }
    """

    def compose(self) -> ComposeResult:
        yield Label("Episodes")
        yield Input("20", id="episodes", compact=True, max_length=9)
        yield Checkbox("Det", id="deterministic")
        yield Button("Start", id="start", variant="success", compact=True)
        yield Button("Stop", id="stop", variant="error", compact=True)
        yield Button("Evolve", id="evolve", variant="primary", compact=True)
        yield Label("", id="episodes-error")
        yield Label("evo: idle", id="evo-state")

    def on_mount(self) -> None:
        self.show_running(False)

    def request_start(self) -> None:
        error = self.query_one("#episodes-error", Label)
        try:
            episodes = parse_episodes(self.query_one("#episodes", Input).value)
        except ValueError as problem:
            error.update(str(problem))
            return
        error.update("")
        self.post_message(StartRequested(episodes, self.query_one("#deterministic", Checkbox).value))

    def toggle_deterministic(self) -> None:
        self.query_one("#deterministic", Checkbox).toggle()

    def show_evolution(self, text: str) -> None:
        self.query_one("#evo-state", Label).update(Text(f"evo: {text}"))  # may hold a peer's name

    def show_running(self, running: bool) -> None:
        self.query_one("#start", Button).disabled = running
        self.query_one("#stop", Button).disabled = not running

    def on_input_changed(self, event: Input.Changed) -> None:
        self.query_one("#episodes-error", Label).update("")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.request_start()

    def focus_episodes(self) -> None:
        self.query_one("#episodes", Input).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "start":
            self.request_start()
        elif event.button.id == "stop":
            self.post_message(StopRequested())
        elif event.button.id == "evolve":
            self.post_message(EvolveRequested())
