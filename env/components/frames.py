"""Pictures of an environment for the environment pane: an ``rgb_array`` frame as a few dots.

Components layer, numpy only: the environment's publisher renders instance 0 at most
``defaults.FRAME_HZ`` times a second and sends the dots in the ``cart`` room, where every
viewer draws them (braille) — a few hundred bytes a picture, not the frame's 720 kB.

A dot is set where the frame differs from its background (its most common brightness), so a
light (classic control) or dark (box2d) background both draw the moving parts.
"""

from __future__ import annotations

import numpy as np

from cartpole_tui.env import defaults
from cartpole_tui.env.events import FrameSeen

INK = 60  # a pixel whose brightness (R + G + B, 0-765) is this far from the background's is drawn
COVER = 0.06  # a dot is set when this share of its pixels is ink: thin lines still show


def fit(width: int, height: int, most: tuple[int, int] = defaults.FRAME_DOTS) -> tuple[int, int]:
    """(dots wide, dots high) of a ``width`` × ``height`` picture in at most ``most``, its shape kept
    (braille dots are about square)."""
    scale = min(most[0] / width, most[1] / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def frame_dots(rgb: np.ndarray, most: tuple[int, int] = defaults.FRAME_DOTS) -> np.ndarray:
    """The dots (rows, columns) of an (H, W, 3) uint8 frame: True where it is not background.

    A pixel's brightness (R + G + B) against the most common one; each dot a block of whole
    pixels (a part block at the edges is left out: less than a dot). Numpy in a few passes:
    a few ms a frame, beside gymnasium's own render."""
    height, width = rgb.shape[:2]
    cols, rows = fit(width, height, most)
    block_h, block_w = max(1, height // rows), max(1, width // cols)
    rows, cols = min(rows, height // block_h), min(cols, width // block_w)
    top, left = (height - rows * block_h) // 2, (width - cols * block_w) // 2
    part = rgb[top : top + rows * block_h, left : left + cols * block_w]
    brightness = part[..., 0].astype(np.int16) + part[..., 1] + part[..., 2]
    values, counts = np.unique(brightness[::4, ::4], return_counts=True)
    ink = np.abs(brightness - values[counts.argmax()]) > INK
    covered = ink.reshape(rows, block_h, cols, block_w).sum(axis=(1, 3), dtype=np.int32)
    return covered > COVER * block_h * block_w


def picture(rgb: object) -> FrameSeen | None:
    """The picture of what ``env.render()`` returned; None when it is no (H, W, 3) frame."""
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or min(rgb.shape[:2]) < 1:
        return None
    dots = frame_dots(rgb)
    return FrameSeen(dots.shape[1], dots.shape[0], np.packbits(dots).tobytes())
