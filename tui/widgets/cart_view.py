"""The environment pane: CartPole's cart and pole drawn from the latest observation, any other
environment from the pictures its environment publishes (dots, :mod:`cartpole_tui.env.components.frames`),
in braille."""

from __future__ import annotations

import math

import numpy as np
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from cartpole_tui.env.events import FrameSeen
from cartpole_tui.tui.data import braille

TRACK_LIMIT = 2.4  # CartPole ends an episode when |x| > 2.4
ANGLE_LIMIT = 12 * math.pi / 180  # ... or when |theta| > 12 degrees


class CartView(Widget):
    """Set ``observation`` ([x, x_dot, theta, theta_dot]) and it draws the cart; set ``frame`` (a
    picture of another environment) and it draws that instead, scaled to the pane."""

    DEFAULT_CSS = """
    CartView { width: 28; height: 1fr; min-height: 5; }
    CartView > .cart-view--pole { color: ansi_yellow; }
    """
    COMPONENT_CLASSES = {"cart-view--pole"}

    observation: reactive[tuple | None] = reactive(None, layout=False)
    frame: reactive[FrameSeen | None] = reactive(None, layout=False)
    idle_text = "waiting for a run…"  # what shows before the first observation

    def render(self) -> Text:
        width, height = self.size.width, self.size.height
        if width < 6 or height < 4:
            return Text("")
        if self.frame is not None:
            return self._picture(self.frame, width, height)
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

    def _picture(self, frame: FrameSeen, width: int, height: int) -> Text:
        # the whole pane: the environment's id is its title (a caption said it a second time)
        dots = fit_dots(frame_dots(frame), height * 4, width * 2)
        return Text("\n".join(braille.text_rows(dots)), self.get_component_rich_style("cart-view--pole"))

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


def frame_dots(frame: FrameSeen) -> np.ndarray:
    """A picture's dots as a (height, width) boolean grid."""
    bits = np.unpackbits(np.frombuffer(frame.bits, dtype=np.uint8))[: frame.width * frame.height]
    return bits.reshape(frame.height, frame.width).astype(bool)


def fit_dots(dots: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """``dots`` scaled into a (rows, cols) grid, shape kept and centred; a dot shrunk into a
    smaller grid shows when any dot it covers was set (thin lines stay)."""
    height, width = dots.shape
    scale = min(rows / height, cols / width)
    h, w = max(1, min(rows, round(height * scale))), max(1, min(cols, round(width * scale)))
    if h <= height and w <= width:  # shrink: any dot of the block
        scaled = np.logical_or.reduceat(
            np.logical_or.reduceat(dots, (np.arange(h) * height) // h, axis=0), (np.arange(w) * width) // w, axis=1
        )
    else:  # grow: the nearest dot
        scaled = dots[(np.arange(h) * height) // h][:, (np.arange(w) * width) // w]
    out = np.zeros((rows, cols), dtype=bool)
    top, left = rows - h, (cols - w) // 2  # at the bottom: the ground stays on the ground
    out[top : top + h, left : left + w] = scaled
    return out
