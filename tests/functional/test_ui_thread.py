"""The UI thread never reads the run history file: marked runs' overlays, a run's details
and the export read it in worker threads and hand the results back (issue 16)."""

from __future__ import annotations

import asyncio
import threading

from test_app import until
from test_control_room import loaded, offline_app

from cartpole_tui.env.history.store import RunStore
from cartpole_tui.tui.screens.run_details import RunDetailsScreen

# RunStore's reads that may go to the file (past runs' episodes); the rest is served from memory
FILE_READS = ("episodes", "episode_scores", "episode_times")


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def record_reads(monkeypatch) -> list[tuple[str, int, bool]]:
    """Every file read of a RunStore from now on: (method, thread id, an event loop runs in that thread)."""
    reads: list[tuple[str, int, bool]] = []

    def recording(name: str):
        read = getattr(RunStore, name)

        def recorded(store, *args, **kwargs):
            reads.append((name, threading.get_ident(), _in_event_loop()))
            return read(store, *args, **kwargs)

        return recorded

    for name in FILE_READS:
        monkeypatch.setattr(RunStore, name, recording(name))
    return reads


async def test_marks_details_and_export_read_the_history_off_the_ui_thread(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the export's file lands here
    reads = record_reads(monkeypatch)
    app = offline_app(tmp_path)  # past runs: their episodes are read from the file
    ui_thread = threading.get_ident()  # run_test runs the app in this thread's event loop
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot)
        before = len(reads)  # loading the history at start (the controller's thread)
        table = app.main.runs_table
        table.focus()
        for row in (0, 5):
            table.move_cursor(row=row)
            await pilot.press("space")
        await until(pilot, lambda: len(app.main.plot.overlays) == 2, what="two overlays")
        await pilot.press("c")
        await until(pilot, lambda: list(tmp_path.glob("cartpole-runs-*.csv")), what="the export")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, RunDetailsScreen), what="the details")
    asked = [name for name, _, _ in reads[before:]]
    assert asked.count("episode_scores") >= 2 and asked.count("episodes") >= 3, asked  # overlays, export, details
    on_ui = [(name, in_loop) for name, thread, in_loop in reads if thread == ui_thread or in_loop]
    assert not on_ui, f"history file read on the UI thread: {on_ui}"
