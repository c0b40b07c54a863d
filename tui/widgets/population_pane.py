"""The population pane: one row per model, one column per generation, shaded by fitness.

Redrawn only when an evolution reports (a few times a minute at most), so it costs no
bytes while a run goes. Shades are characters as well as colours: readable with NO_COLOR.
"""

from __future__ import annotations

import numpy as np
from rich.text import Text
from textual.widgets import Static

from cartpole_tui.tui.data.population import PopulationHistory

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
                return Text(
                    f"{population.evolutions} evolution(s), no population data: this network's evolution "
                    "reports no per-model fitness (the built-in one does)",
                    style="dim",
                )
            if population.restored is not None:
                generation, models = population.restored
                return Text.assemble(
                    (f"gen {generation}", "bold"),
                    (f" restored, {models} models: fitness after the next evolution (e, or r for a schedule)", "dim"),
                )
            return Text("no evolution yet: e evolves once, r runs a schedule", style="dim")
        grid = population.grid()
        models = grid.shape[0]
        rows = max(0, height - 2)  # below the two header lines
        order = np.arange(models)
        if rows < models:  # not every model fits: the fittest of the latest generation
            order = np.sort(np.argsort(-np.nan_to_num(grid[:, -1], nan=-np.inf), kind="stable")[:rows])
        text = Text(no_wrap=True, overflow="ellipsis")  # header lines never wrap: the rows are counted
        text.append(f"gen {latest.number}", "bold")
        text.append(f" best {_figure(latest.best)} mean {_figure(latest.mean)} worst {_figure(latest.worst)}")
        text.append("\n")
        if latest.diversity is not None:
            text.append(f"diversity {latest.diversity:.3g}")
        text.append(f"  {ELITE} elite" + (f"  best {len(order)} of {models}" if len(order) < models else ""), "dim")
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
