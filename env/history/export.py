"""Export run history: CSV (one row per episode, with its run's columns), JSON, or TensorBoard.

CSV: a run without episodes still gets one row, with the episode columns empty; a text's control
characters are written as U+FFFD (tab and newline as a space), as the screen shows them, and a
text a spreadsheet would take for a formula (a peer's run id "=HYPERLINK(…)": first character
``= + - @``, after any spaces) is written after a ``'``, which spreadsheets show as text (numbers
are never changed).
JSON: ``{"format": "cartpole-tui/runs", "version": 3, "runs": [{...run, "episode_rows": [...]}]}``: a run
has the CSV's run columns, by the same names (``episodes``: the number the run asked for, in both
formats), and its episodes' rows under ``episode_rows``, with the CSV's episode columns by their
names. Version 1 had the rows under ``episodes``, which the CSV names the number asked for; 1 and 2
named an episode's number ``index``, the CSV ``episode``.
Times are Unix seconds; floats are written exactly (they parse back to the same numbers). JSON is
strict: a number that is not finite (a history file edited by hand or by a hostile peer; ours never
holds one) is null, not ``Infinity``, which no strict parser reads.
TensorBoard: a folder, one run's event file in each of its folders (:mod:`.tensorboard`).
"""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
import time
from typing import TextIO

from cartpole_tui.env.history import tensorboard
from cartpole_tui.env.history.records import RunRecord
from cartpole_tui.env.history.store import MEMORY, RunStore
from cartpole_tui.env.paths import default_db_path
from cartpole_tui.env.wire import protocol

TEXT_FORMATS = ("csv", "json")
FOLDER_FORMATS = ("tensorboard",)  # written to a folder, never to standard output
FORMATS = TEXT_FORMATS + FOLDER_FORMATS
RUN_FIELDS = (
    "run",
    "run_uid",
    "episodes",
    "deterministic",
    "seed",
    "env_id",
    "address",
    "started",
    "ended",
    "state",
    "avg_score",
    "finished",
    "best",
    "total_steps",
    "steps_per_s",
    "followed",
)
EPISODE_FIELDS = ("episode", "score", "steps", "wall_time")
# 2: a run's episodes under "episode_rows"; "episodes" is the number asked, as in the CSV
# 3: an episode's number is "episode" (the CSV's column), not "index"
JSON_VERSION = 3
FORMULA_STARTS = ("=", "+", "-", "@")  # a CSV cell a spreadsheet evaluates (after any spaces)


class ExportError(Exception):
    """Nothing can be exported: unreadable database, unknown run number or bad format."""


def run_fields(run: RunRecord) -> dict[str, object]:
    """A run's exported columns, in :data:`RUN_FIELDS` order."""
    p = run.params
    values = (
        run.number,
        run.run_uid,
        p.episodes,
        p.deterministic,
        p.seed,
        p.env_id,
        p.address,
        run.started,
        run.ended,
        run.state,
        run.avg_score,
        run.finished,
        run.best,
        run.total_steps,
        run.steps_per_s,  # the one figure every view shows
        run.followed,
    )
    return dict(zip(RUN_FIELDS, values))


def select_runs(store: RunStore, run_numbers: list[int] | None) -> list[RunRecord]:
    """The runs with these numbers (all runs for None), in the order asked."""
    runs = store.runs()
    if run_numbers is None:
        return runs
    by_number = {run.number: run for run in runs}
    missing = [n for n in run_numbers if n not in by_number]
    if missing:
        raise ExportError(f"no run {', '.join(map(str, missing))} in {store.path}")
    return [by_number[n] for n in dict.fromkeys(run_numbers)]


def _csv_value(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):  # a run id is a peer's: its control characters never reach a terminal
        text = protocol.clean_text(value, len(value) + 1)
        # after a space too: a tab or newline before the = is one once cleaned (" =HYPERLINK(…)"),
        # and a spreadsheet trimming the cell on import evaluates it
        return "'" + text if text.lstrip().startswith(FORMULA_STARTS) else text
    return value


def _write_csv(store: RunStore, runs: list[RunRecord], out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(RUN_FIELDS + EPISODE_FIELDS)
    for run in runs:
        columns = [_csv_value(v) for v in run_fields(run).values()]
        episodes = store.episodes(run.run_uid)
        if not episodes:
            writer.writerow(columns + [""] * len(EPISODE_FIELDS))
        writer.writerows(columns + list(episode) for episode in episodes)


def _json_value(value: object) -> object:
    """``value`` as strict JSON holds it: a number that is not finite is null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _json_row(row: dict[str, object]) -> dict[str, object]:
    return {key: _json_value(value) for key, value in row.items()}


def _write_json(store: RunStore, runs: list[RunRecord], out: TextIO) -> None:
    document = {
        "format": "cartpole-tui/runs",
        "version": JSON_VERSION,
        "runs": [
            {
                **_json_row(run_fields(run)),
                "episode_rows": [_json_row(dict(zip(EPISODE_FIELDS, e))) for e in store.episodes(run.run_uid)],
            }
            for run in runs
        ],
    }
    json.dump(document, out, indent=1, allow_nan=False)
    out.write("\n")


def export_runs(source: RunStore | str | None, run_numbers: list[int] | None, fmt: str, out: TextIO) -> int:
    """Write the chosen runs (all for None) to ``out``; returns how many.

    ``source`` is a store, or a database path (None: the default one) opened for reading.
    """
    if fmt not in TEXT_FORMATS:
        raise ExportError(f"format must be one of {', '.join(TEXT_FORMATS)}, not {fmt!r}")
    if isinstance(source, RunStore):
        runs = select_runs(source, run_numbers)
        (_write_csv if fmt == "csv" else _write_json)(source, runs, out)
        return len(runs)
    with open_for_export(source) as store:
        return export_runs(store, run_numbers, fmt, out)


def export_to_folder(source: RunStore | str | None, run_numbers: list[int] | None, out_dir: str) -> int:
    """TensorBoard: one folder per chosen run (all for None) in ``out_dir``; returns how many.
    Raises :class:`~.tensorboard.TensorBoardUnavailable` without the extra."""
    if isinstance(source, RunStore):
        try:
            return tensorboard.export_runs(source, select_runs(source, run_numbers), out_dir)
        except tensorboard.TensorBoardFolderError as error:
            raise ExportError(str(error)) from None
        except OSError as error:
            raise ExportError(f"cannot write to {out_dir}: {error.strerror or error}") from None
    with open_for_export(source) as store:
        return export_to_folder(store, run_numbers, out_dir)


def open_for_export(db_path: str | None) -> RunStore:
    """Open an existing history for reading; raises :class:`ExportError` if it can't be read."""
    path = db_path or default_db_path()
    if path != MEMORY and not os.path.exists(path):
        raise ExportError(f"no run history at {path}")
    errors: list[str] = []
    store = RunStore.open(path, on_error=errors.append, read_only=True)
    if errors:
        store.close()
        raise ExportError(errors[0])
    return store


def default_export_path(fmt: str, directory: str | None = None) -> str:
    """``cartpole-runs-YYYYmmdd-HHMMSS.<fmt>`` in ``directory`` (the working directory)."""
    name = time.strftime("cartpole-runs-%Y%m%d-%H%M%S.") + fmt
    return os.path.abspath(os.path.join(directory or os.getcwd(), name))


def export_to_file(
    source: RunStore | str | None, run_numbers: list[int] | None, fmt: str, path: str | None = None
) -> str:
    """Export to ``path`` (default: :func:`default_export_path`; a folder, or a path ending in
    ``/``: that name in it) atomically; returns the path."""
    if path is not None and (os.path.isdir(path) or path.endswith(("/", os.sep))):
        # `--out .` replaced the folder's name with a file: a traceback (IsADirectoryError)
        path = default_export_path(fmt, path)
    path = os.path.abspath(path or default_export_path(fmt))
    directory = os.path.dirname(path)
    try:
        handle, tmp = tempfile.mkstemp(dir=directory, prefix=".export-", suffix="." + fmt)
    except OSError as error:
        raise ExportError(f"cannot write to {directory}: {error.strerror}") from error
    try:
        with os.fdopen(handle, "w", newline="", encoding="utf-8") as out:
            export_runs(source, run_numbers, fmt, out)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path
