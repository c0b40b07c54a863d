"""Where files live by default (the run history's SQLite file), and opening a user's file
without being stopped by a FIFO or a device in its place.

Beside env/'s stack (wire < components < history < swarm < runtime), below every layer:
each may import it, as may ``tui/``. The swarm's population file is kept beside this one
(:func:`~cartpole_tui.env.swarm.saved.beside_history`).
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

import platformdirs


def default_db_path() -> str:
    """``runs.sqlite3`` in the user's data directory (``$XDG_DATA_HOME/cartpole-tui`` on Linux)."""
    return str(platformdirs.user_data_path("cartpole-tui") / "runs.sqlite3")


class NotRegularFile(OSError):
    """A path that is a FIFO, device, folder or socket where a file was expected."""


def open_regular(path: str) -> BinaryIO:
    """``path`` opened for reading, refused unless it is a regular file.

    Opened without blocking and checked on the open descriptor (no race with a swap), so a
    FIFO never blocks the reader and a device is never read; NotRegularFile then."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise NotRegularFile(f"{path}: not a regular file")
        os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def refuse_special(path: str) -> None:
    """NotRegularFile when ``path`` exists and is not a regular file (nothing is opened)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        raise NotRegularFile(f"{path}: not a regular file")
