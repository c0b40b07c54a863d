"""Episodes, deterministic, Start / Stop / Evolve; validates before anything is sent."""

from __future__ import annotations

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Button, Checkbox, Input, Label

from cartpole_tui.env import defaults
from cartpole_tui.tui.bindings import bindings
from cartpole_tui.tui.messages import EvolveRequested, StartRequested, StopRequested

ALLOWED = f"1–{defaults.EPISODES_MAX:,}"
OFFLINE = "offline: the run history only, no network to run on (start without --offline)"


def parse_episodes(text: str) -> int:
    """A whole number from 1 to EPISODES_MAX, or ValueError with the allowed range (short: it
    shows beside the field at 80 columns)."""
    text = text.strip()
    if not text:
        raise ValueError(f"type {ALLOWED}")  # "empty: type 1–1,000,00" was cut at 80 columns
    if not text.isdigit():
        raise ValueError(f"a number {ALLOWED}")
    if not 1 <= int(text) <= defaults.EPISODES_MAX:
        raise ValueError(f"not in {ALLOWED}")
    return int(text)


class EpisodesInput(Input):
    """The episodes field: Escape leaves it, and the footer says so (printable keys are typed here).

    Its keys act in the order they came, however many come in one read (a laggy SSH link):
    Textual types printable keys at once but runs a focused widget's key bindings (backspace,
    the arrows…) only once the key has bubbled up to the app, after the keys that followed it:
    "backspace 5 0" turned a selected "20" into "5". Here the field's own bindings (Input's
    and ours) run as their key arrives, before Input's handler and instead of the bubbling.
    """

    BINDINGS = bindings("episodes")

    async def on_key(self, event: events.Key) -> None:
        # _bindings: the bindings of this widget's classes, merged (Textual has no public reader)
        for binding in self._bindings.key_to_bindings.get(event.key, ()):
            if not binding.priority and await self.app.run_action(binding.action, self):
                event.stop()
                event.prevent_default()  # Input's handler is not run: the key did what it is bound to
                return

    def action_leave(self) -> None:
        # back to the runs table, where the single-letter keys are the app's again
        runs = self.screen.query("#runs-pane")
        self.screen.set_focus(runs.first() if runs else None)


class MarkedCheckbox(Checkbox):
    """A checkbox whose mark is there only when it is on: Textual's shows an X either way and
    tells them apart by colour alone, which a plain or NO_COLOR terminal does not show."""

    BUTTON_INNER = " "  # off, as a new checkbox is

    def watch_value(self) -> None:
        self.BUTTON_INNER = "X" if self.value else " "
        self.refresh()


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
    ControlPanel #offline { color: $text-muted; }
    """

    _evolution: tuple[str, ...] = ("idle",)  # what show_evolution was given last
    _offline = False  # shows why there are no run controls

    def compose(self) -> ComposeResult:
        yield Label("Episodes")
        yield EpisodesInput(str(defaults.EPISODES), id="episodes", compact=True)
        yield MarkedCheckbox("Det", id="deterministic")
        yield Button("Start", id="start", variant="success", compact=True)
        yield Button("Stop", id="stop", variant="error", compact=True)
        yield Button("Evolve", id="evolve", variant="primary", compact=True)
        yield Label("", id="episodes-error")
        yield Label("evo: idle", id="evo-state")
        offline = Label(OFFLINE, id="offline")
        offline.display = False
        yield offline

    def on_mount(self) -> None:
        self.show_running(False)
        if self._offline:
            self.show_offline()
        # s, x, e and d reach these: Tab goes from pane to pane, not through every button
        for widget in self.query("Checkbox, Button"):
            widget.can_focus = False

    def request_start(self) -> None:
        try:
            episodes = parse_episodes(self.query_one("#episodes", Input).value)
        except ValueError as problem:
            self._say(str(problem))
            return
        self._say("")
        self.post_message(StartRequested(episodes, self.query_one("#deterministic", Checkbox).value))

    def toggle_deterministic(self) -> None:
        self.query_one("#deterministic", Checkbox).toggle()

    def show_evolution(self, *forms: str) -> None:
        """``evo: `` and the first of ``forms`` (the fullest first) that the line holds whole; the
        last one where none does (at 80 columns "evo: gen 4 at 10:40:41" was cut mid-time)."""
        self._evolution = forms
        self._show_evolution()

    def on_resize(self) -> None:
        self._show_evolution()

    def _show_evolution(self) -> None:
        label = self.query_one("#evo-state", Label)
        room = self.content_region.right - label.region.x - 1  # its left padding
        fits = (f"evo: {form}" for form in self._evolution if label.region.width and len(f"evo: {form}") <= room)
        label.update(Text(next(fits, f"evo: {self._evolution[-1]}")))  # may hold a peer's name: never markup

    def show_offline(self) -> None:
        """No network: the run controls give way to a line that says why there are none."""
        self._offline = True
        for widget in self.children:  # none yet before the panel is composed: on_mount does it then
            widget.display = widget.id == "offline"

    def show_running(self, running: bool) -> None:
        self.query_one("#start", Button).disabled = running
        self.query_one("#stop", Button).disabled = not running

    def _say(self, error: str) -> None:
        """The field's error in place of the evolution state (80 columns hold one of them)."""
        self.query_one("#episodes-error", Label).update(error)
        self.query_one("#evo-state", Label).display = not error and not self._offline

    def on_input_changed(self, event: Input.Changed) -> None:
        self._say("")

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
