"""Where files live by default; every layer of ``env/`` (and ``tui/``) may import this."""

from __future__ import annotations

import platformdirs


def default_db_path() -> str:
    """``runs.sqlite3`` in the user's data directory (``$XDG_DATA_HOME/cartpole-tui`` on Linux)."""
    return str(platformdirs.user_data_path("cartpole-tui") / "runs.sqlite3")
