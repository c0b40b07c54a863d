"""Where files live by default: the run history's SQLite file.

Beside env/'s stack (wire < components < history < swarm < runtime), below every layer:
each may import it, as may ``tui/``. The swarm's population file is kept beside this one
(:func:`~cartpole_tui.env.swarm.saved.beside_history`).
"""

from __future__ import annotations

import platformdirs


def default_db_path() -> str:
    """``runs.sqlite3`` in the user's data directory (``$XDG_DATA_HOME/cartpole-tui`` on Linux)."""
    return str(platformdirs.user_data_path("cartpole-tui") / "runs.sqlite3")
