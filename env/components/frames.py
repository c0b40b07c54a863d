"""Pictures of an environment for the environment pane: an ``rgb_array`` frame as a few dots.

Components layer, numpy only: the environment's publisher renders instance 0 at most
``defaults.FRAME_HZ`` times a second and sends the dots in the ``cart`` room, where every
viewer draws them (braille) — a few hundred bytes a picture, not the frame's 720 kB.

A dot is set where the frame differs from its background (its most common colour), so a
light (classic control) or dark (box2d) background both draw the moving parts.
"""

from __future__ import annotations

import numpy as np

from cartpole_tui.env import defaults
from cartpole_tui.env.events import FrameSeen

INK = 40  # a pixel whose colour is this far (any channel, 0-255) from the background is drawn
COVER = 0.06  # a dot is set when this share of its pixels is ink: thin lines still show


def fit(width: int, height: int, most: tuple[int, int] = defaults.FRAME_DOTS) -> tuple[int, int]:
    """(dots wide, dots high) of a ``width`` × ``height`` picture in at most ``most``, its shape kept
    (braille dots are about square)."""
    scale = min(most[0] / width, most[1] / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def background(rgb: np.ndarray) -> np.ndarray:
    """The most common colour of a frame (to 4 bits a channel), as (3,) int."""
    coarse = (rgb[::4, ::4].astype(np.int32) >> 4).reshape(-1, 3)
    codes = (coarse[:, 0] << 8) | (coarse[:, 1] << 4) | coarse[:, 2]
    mode = int(np.bincount(codes, minlength=4096).argmax())
    return np.array([(mode >> 8) & 15, (mode >> 4) & 15, mode & 15]) * 16 + 8


def frame_dots(rgb: np.ndarray, most: tuple[int, int] = defaults.FRAME_DOTS) -> np.ndarray:
    """The dots (rows, columns) of an (H, W, 3) uint8 frame: True where it is not background."""
    height, width = rgb.shape[:2]
    ink = (np.abs(rgb.astype(np.int16) - background(rgb)) > INK).any(axis=2).astype(np.float32)
    cols, rows = fit(width, height, most)
    row_starts = (np.arange(rows) * height) // rows
    col_starts = (np.arange(cols) * width) // cols
    counts = np.add.reduceat(np.add.reduceat(ink, row_starts, axis=0), col_starts, axis=1)
    sizes = np.outer(np.diff(np.append(row_starts, height)), np.diff(np.append(col_starts, width)))
    return counts / sizes > COVER


def picture(rgb: object) -> FrameSeen | None:
    """The picture of what ``env.render()`` returned; None when it is no (H, W, 3) frame."""
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or min(rgb.shape[:2]) < 1:
        return None
    dots = frame_dots(rgb)
    return FrameSeen(dots.shape[1], dots.shape[0], np.packbits(dots).tobytes())
