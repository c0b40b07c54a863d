"""Every key of the control room, in one table: the footer, the help screen, the command
palette and the widgets' BINDINGS are all made from it.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding, BindingType

from cartpole_tui.env import defaults

PANES = {
    "1": ("plot-pane", "score plot"),
    "2": ("cart-pane", "cart"),
    "3": ("runs-pane", "runs"),
    "4": ("network-pane", "network"),
    "5": ("log-pane", "log"),
    "6": ("population-pane", "population"),
}


@dataclass(frozen=True)
class Key:
    """One key: what it does, where it is listed, and in which widget it works."""

    key: str  # Textual's key name(s), comma separated
    action: str
    help: str  # the help screen's line (and the palette's explanation)
    section: str  # the help screen's section
    shown: str = ""  # how the help shows the key (default: the key)
    footer: str = ""  # the footer's label; empty: not in the footer
    footer_key: str = ""  # how the footer shows the key (default: as the help does)
    palette: str = ""  # the command palette's title; empty: not in the palette
    scope: str = "app"  # "app", or the widget whose BINDINGS hold it: "plot", "runs"

    @property
    def display(self) -> str:
        return self.shown or self.key


_SCHEDULE = (
    f"schedule: rounds of (train {defaults.SCHEDULE_TRAIN}, {defaults.SCHEDULE_TRAIN_JOINED} on a network joined, "
    f"evaluate {defaults.SCHEDULE_EVALUATE} "
    f"deterministic, evolve) until a {defaults.SCHEDULE_CONFIRM}-episode deterministic check averages "
    f"the environment's reward_threshold ({defaults.SCHEDULE_TARGET:g} for CartPole-v1); x stops it"
)

KEYS: tuple[Key, ...] = (
    Key("s", "start", "start a run (episodes and Det of the top bar)", "Runs", footer="Start", palette="Start a run"),
    Key(
        "x",
        "stop",
        "stop the run or the schedule (ENV_DONE over the finished episodes)",
        "Runs",
        footer="Stop",
        palette="Stop the run",
    ),
    Key("e", "evolve", "one evolution step (EVOLUTION → EVO_DONE)", "Runs", footer="Evolve", palette="Evolve"),
    Key("r", "schedule", _SCHEDULE, "Runs", footer="Rounds", palette="Start a learning schedule"),
    Key("d", "toggle_deterministic", "deterministic on/off", "Runs", footer="Det", palette="Toggle deterministic"),
    Key(
        "n",
        "focus_episodes",
        "type the number of episodes (Enter starts)",
        "Runs",
        palette="Set the number of episodes",
    ),
    *(
        Key(
            key,
            f"toggle_pane('{pane}')",
            f"show/hide the {title} pane",
            "Panes",
            footer="Panes" if key == "1" else "",
            footer_key=f"1-{len(PANES)}" if key == "1" else "",
            palette=f"Show/hide the {title} pane",
        )
        for key, (pane, title) in PANES.items()
    ),
    Key(
        "w",
        "cycle_window",
        "smoothing window of the plot's mean: " + " · ".join(map(str, defaults.PLOT_WINDOWS)),
        "Plot",
        palette="Plot: next smoothing window",
    ),
    Key(
        "m",
        "toggle_mean_per_run",
        "the plot's mean across runs, or restarting with each run",
        "Plot",
        palette="Plot: mean across runs / per run",
    ),
    Key(
        "t",
        "cycle_x_axis",
        "the plot's x labels: episode numbers · run numbers · time the episodes ended",
        "Plot",
        palette="Plot: next x axis labels",
    ),
    Key(
        "a",
        "toggle_all",
        f"plot all episodes / the last {defaults.PLOT_LAST_N}",
        "Plot",
        palette="Plot: all episodes / the latest",
    ),
    Key(
        "space",
        "toggle_mark",
        f"mark a run: the plot draws the marked runs' rolling means alone (up to {defaults.PLOT_OVERLAYS})",
        "Runs table (focused)",
        palette="Mark/unmark the run under the cursor",
        scope="runs",
    ),
    Key("enter", "details", "the run's details: settings, timing, episodes", "Runs table (focused)", scope="runs"),
    Key(
        "c",
        "export",
        "export the marked runs (all when none is marked) to CSV",
        "Anywhere",
        palette="Export runs to CSV (marked, or all)",
    ),
    Key("question_mark", "help", "this help", "Anywhere", shown="?", footer="Help", palette="Help: every key"),
    Key("q", "quit", "quit", "Anywhere", footer="Quit"),
    # the episodes field: printable keys are typed there, so the footer shows these instead
    Key("escape", "leave", "leave the field (keys act again)", "Episodes field", footer="Done", scope="episodes"),
    Key("enter", "submit", "start a run with these episodes", "Episodes field", footer="Start", scope="episodes"),
)


def bindings(scope: str = "app") -> list[BindingType]:
    """The Textual bindings of one scope, in the table's order."""
    return [
        Binding(k.key, k.action, k.footer or k.help, show=bool(k.footer), key_display=k.footer_key or k.shown or None)
        for k in KEYS
        if k.scope == scope
    ]


def help_sections() -> dict[str, list[tuple[str, str]]]:
    """(key as shown, what it does) per help section, in the table's order."""
    sections: dict[str, list[tuple[str, str]]] = {}
    for k in KEYS:
        sections.setdefault(k.section, []).append((k.display, k.help))
    sections["Anywhere"] += [
        ("tab", "next pane: runs, log, episodes field, plot (the focused one has a heavy border)"),
        ("ctrl+p", "command palette"),
    ]
    # the log's own keys (RichLog's scrolling): the help had none (new-user pass 4)
    sections["Log (focused)"] = [
        ("↑ ↓ pgup pgdn", "scroll back; scrolled back, it stays there while lines come"),
        ("home end", "the first line; the latest, following new lines again"),
    ]
    return sections


def palette_entries() -> list[Key]:
    """The keys that have a command palette entry."""
    return [k for k in KEYS if k.palette]
