"""The population pane: one row per model, one column per generation, shaded by fitness.

Redrawn only when an evolution reports (a few times a minute at most), so it costs no
bytes while a run goes. Shades are characters as well as colours: readable with NO_COLOR.
"""

from __future__ import annotations

import numpy as np
from rich.console import Console
from rich.text import Text
from textual.widgets import Static

from cartpole_tui.env.words import plural
from cartpole_tui.tui.data.population import Generation, PopulationHistory

SHADES = " ░▒▓█"
COLOURS = ("grey35", "blue", "cyan", "green", "bright_green")
ELITE = "◆"


def _figure(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


class PopulationPane(Static):
    """Shows a `PopulationHistory`; call ``show()`` when it changed."""

    DEFAULT_CSS = "PopulationPane { height: 1fr; overflow: hidden; text-wrap: nowrap; text-overflow: ellipsis; }"

    def __init__(self, population: PopulationHistory, **kwargs):
        super().__init__("", **kwargs)
        self.population = population
        self._shown: tuple[int, tuple[int, ...] | None] = (-1, None)  # (version, size) last shown

    def on_mount(self) -> None:
        self.show()

    def on_resize(self) -> None:
        self.show()

    def show(self) -> None:
        key = (self.population.version, tuple(self.size))
        if key != self._shown:
            self._shown = key
            self.update(self.render_population(self.size.width, self.size.height))

    def render_population(self, width: int, height: int) -> Text:
        population = self.population
        latest = population.latest
        if latest is None:
            if population.evolutions:
                return wrapped(
                    f"{plural(population.evolutions, 'evolution')}, no population data: this network's "
                    "evolution reports no per-model fitness (the built-in one does)",
                    width,
                )
            if population.restored is not None:
                generation, models = population.restored
                return wrapped(
                    f"gen {generation} restored, {models} models: fitness after the next evolution"
                    " (e, or r for a schedule)",
                    width,
                )
            seen = "no evolution seen since this control room joined" if population.joined else "no evolution yet"
            return wrapped(f"{seen}: e evolves once, r runs a schedule", width)
        grid = population.grid()
        models = grid.shape[0]
        order = np.arange(models)
        header = self._header(latest, None, width)
        if height - len(header) < models:  # not every model fits: the fittest of the latest generation
            # the legend's "best k of n" is at its widest with k = n: the header takes no more lines
            rows = max(0, height - len(self._header(latest, (models, models), width)))
            header = self._header(latest, (rows, models), width)
            order = np.sort(np.argsort(-np.nan_to_num(grid[:, -1], nan=-np.inf), kind="stable")[:rows])
        text = Text("\n").join(header)
        label = len(str(models))
        columns = max(1, width - label - 2 - 6)
        grid = grid[:, -columns:]
        finite = grid[np.isfinite(grid)]
        low, high = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
        span = (high - low) or 1.0
        for model in order.tolist():
            text.append("\n")
            elite = model == latest.elite
            text.append(ELITE if elite else " ", "bold yellow")
            text.append(f"{model + 1:>{label}} ", "dim")
            for value in grid[model]:
                if np.isnan(value):
                    text.append(" ")
                    continue
                level = min(len(SHADES) - 1, int((value - low) / span * (len(SHADES) - 1) + 0.5))
                text.append(SHADES[level] if level else "·", COLOURS[level])
            text.append(f" {_figure(grid[model, -1])}" if np.isfinite(grid[model, -1]) else "")
        return text

    @staticmethod
    def _header(latest: Generation, shown: tuple[int, int] | None, width: int) -> list[Text]:
        """The generation's figures, then the legend (with ``shown``, (k, n): "k fittest of n shown");
        each flows onto as many lines as the width needs."""
        figures = [
            Text(f"gen {latest.number}", "bold"),
            Text(f"best {_figure(latest.best)}"),
            Text(f"mean {_figure(latest.mean)}"),
            Text(f"worst {_figure(latest.worst)}"),
        ]
        legend = [Text(f"diversity {latest.diversity:.3g}")] if latest.diversity is not None else []
        legend.append(Text(f"{ELITE} elite", "dim"))
        if shown is not None:
            # "best 3 of 20" read as a score beside "best 480" (new-user pass 3)
            legend.append(Text(f"{shown[0]} fittest of {shown[1]} shown", "dim"))
        return flowed(figures, width, " ") + flowed(legend, width, "  ")


def flowed(parts: list[Text], width: int, gap: str) -> list[Text]:
    """``parts`` on lines of at most ``width`` cells, a part never split (one too wide is cut)."""
    lines = [Text()]
    for part in parts:
        line = lines[-1]
        if line.cell_len and line.cell_len + len(gap) + part.cell_len > width:
            line = Text()
            lines.append(line)
        if line.cell_len:
            line.append(gap)
        line.append_text(part)
    return lines


def wrapped(sentence: str, width: int) -> Text:
    """A dim sentence wrapped to ``width`` at spaces (the pane does not wrap: its grid rows are counted)."""
    lines = Text(sentence, style="dim").wrap(Console(width=max(1, width)), max(1, width))
    return Text("\n").join(lines)
