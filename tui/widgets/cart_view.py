"""The cart and its pole, drawn from the latest observation in braille."""

from __future__ import annotations

import math

import numpy as np
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from cartpole_tui.tui.data import braille

TRACK_LIMIT = 2.4  # CartPole ends an episode when |x| > 2.4
ANGLE_LIMIT = 12 * math.pi / 180  # ... or when |theta| > 12 degrees


class CartView(Widget):
    """Set ``observation`` ([x, x_dot, theta, theta_dot]) and it redraws."""

    DEFAULT_CSS = """
    CartView { width: 28; height: 1fr; min-height: 5; }
    CartView > .cart-view--pole { color: ansi_yellow; }
    """
    COMPONENT_CLASSES = {"cart-view--pole"}

    observation: reactive[tuple | None] = reactive(None, layout=False)
    idle_text = "waiting for a run…"  # what shows before the first observation

    def render(self) -> Text:
        width, height = self.size.width, self.size.height
        if width < 6 or height < 4:
            return Text("")
        if self.observation is None:
            return Text(self.idle_text, style="dim")
        x, _, theta, _ = self.observation
        rows = height - 3  # pole area; then the cart, the track and the readout
        pole = self._pole(width, rows, x, theta)
        cart_col = round((x + TRACK_LIMIT) / (2 * TRACK_LIMIT) * (width - 1))
        cart_col = min(max(cart_col, 2), width - 3)
        text = Text()
        pole_style = self.get_component_rich_style("cart-view--pole")
        for line in pole:
            text.append(line, pole_style)
            text.append("\n")
        text.append(" " * (cart_col - 2) + "▐███▌", "bold")
        text.append("\n")
        track = ["─"] * width
        track[0] = track[-1] = "┃"
        text.append("".join(track), "dim")
        text.append(f"\nx {x:+.2f}  θ {math.degrees(theta):+.1f}°", "dim")
        return text

    @staticmethod
    def _pole(width: int, rows: int, x: float, theta: float) -> list[str]:
        dots = np.zeros((rows * 4, width * 2), dtype=bool)
        base_x = (x + TRACK_LIMIT) / (2 * TRACK_LIMIT) * (width * 2 - 1)
        length = rows * 4 - 1
        for t in np.linspace(0.0, 1.0, length * 2):
            px = round(base_x + math.sin(theta) * length * t)
            py = round(rows * 4 - 1 - math.cos(theta) * length * t)
            if 0 <= px < width * 2 and 0 <= py < rows * 4:
                dots[py, px] = True
        return braille.text_rows(dots)
