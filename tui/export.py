"""The export key: the marked runs (or all) as CSV, to a file here or to the browser.

In a terminal the CSV goes to a new file in the working directory; under ``serve`` it goes
to the visitor's browser as a download, not to the server's directory. `export_csv` reads
the run history (the file, for past runs): the app calls it in a worker thread.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

from cartpole_tui.env.history.export import default_export_path, export_runs, export_to_file
from cartpole_tui.env.history.store import RunStore


@dataclass(frozen=True)
class Exported:
    """An export done: to ``path`` in a terminal, or ``text`` to deliver to the browser as ``name``."""

    marked: list[int] | None  # the run numbers exported; None: all
    path: str | None = None
    text: io.StringIO | None = None
    name: str = ""

    @property
    def what(self) -> str:
        """``run 38``, ``runs 3, 5``, ``all runs``."""
        if not self.marked:
            return "all runs"
        return f"run{'s' if len(self.marked) > 1 else ''} {', '.join(map(str, self.marked))}"

    @property
    def log_line(self) -> str:
        if self.path is not None:
            return f"exported {self.what} to {self.path}"
        return f"exported {self.what} as {self.name} to the browser"


def export_csv(store: RunStore, marked: list[int] | None, to_browser: bool) -> Exported:
    """Export ``marked`` runs (None: all); raises whatever the export raised."""
    if not to_browser:
        return Exported(marked, path=export_to_file(store, marked, "csv"))
    out = io.StringIO()
    export_runs(store, marked, "csv", out)
    out.seek(0)
    return Exported(marked, text=out, name=os.path.basename(default_export_path("csv")))
