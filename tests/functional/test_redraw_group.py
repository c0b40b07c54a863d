"""What the progress line says of a run, beside the plot, the runs table and the status line.

The app is fed the run events a session hands it (``app.handle``, as its controller does) and
read from its screen: a vectorised run's episodes end out of number order, and the plot takes
them in number order.
"""

from __future__ import annotations

from cartpole_tui.env.events import EpisodeFinished, RunFinished, RunStarted
from cartpole_tui.env.runtime.session import SessionOptions
from cartpole_tui.tui.app import ControlRoomApp

from conftest import screen_text, until


def progress_line(app) -> str:
    return screen_text(app).splitlines()[2]


async def test_a_new_runs_line_names_no_score_of_the_last_run(tmp_path):
    """Run 2's episode 1 still plays while its later ones end: the plot's latest is still run 1's
    last (37), and the progress line said "run 2 · 2/20 · last 37"."""
    app = ControlRoomApp(SessionOptions(offline=True), db_path=str(tmp_path / "runs.sqlite3"))
    async with app.run_test(size=(80, 24)) as pilot:
        app.handle(RunStarted("r1", 2, False))
        for episode, score in ((1, 12.0), (2, 37.0)):
            app.handle(EpisodeFinished("r1", episode, score, int(score), 0.0))
        app.handle(RunFinished("r1", 24.5, 2))
        app.handle(RunStarted("r2", 20, False))
        for episode in (2, 3):
            app.handle(EpisodeFinished("r2", episode, 60.0, 60, 0.0))
        await until(pilot, lambda: "run 2 · 2/20" in progress_line(app), what="run 2's count")
        assert progress_line(app).rstrip().endswith("run 2 · 2/20 · last —"), progress_line(app)
        app.handle(EpisodeFinished("r2", 1, 9.0, 9, 0.0))  # episode 1 ends: the plot takes 1, 2, 3
        await until(pilot, lambda: "run 2 · 3/20" in progress_line(app), what="run 2's third episode")
        assert "run 2 · 3/20 · last 60 · mean(100) 35.6" in progress_line(app), progress_line(app)
