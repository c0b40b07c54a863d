"""Braille cells: 2 x 4 dots each, the densest drawing a plain terminal offers."""

from __future__ import annotations

import numpy as np

BASE = 0x2800  # the empty braille cell; a cell's dots are bits added to it
# Bit of each dot in a cell, indexed [dot row 0-3][dot column 0-1].
BITS = np.array([[0x01, 0x08], [0x02, 0x10], [0x04, 0x20], [0x40, 0x80]], dtype=np.uint32)


def cell_bits(grid: np.ndarray) -> np.ndarray:
    """Dot bits per cell of a boolean dot grid shaped (4 * rows, 2 * cols)."""
    rows, cols = grid.shape[0] // 4, grid.shape[1] // 2
    cells = grid.reshape(rows, 4, cols, 2).astype(np.uint32)
    return np.einsum("rycx,yx->rc", cells, BITS)


def text_rows(grid: np.ndarray) -> list[str]:
    """The grid as braille lines, a blank where a cell has no dot."""
    return ["".join(chr(BASE + int(c)) if c else " " for c in row) for row in cell_bits(grid)]
