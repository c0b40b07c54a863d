"""Render the app's main screens to SVG: ``python -m screenshots [DIR]`` (default: screenshots/).

Uses the demo history (real CartPole episodes with fixed clocks) in offline mode, so
the pictures change only when the screens do.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile

from cartpole_tui.env.runtime.session import SessionOptions
from cartpole_tui.tui.app import ControlRoomApp
from screenshots.demo_history import fill_population, history_shown, write_history

SHOTS = [  # (file name, terminal size, keys pressed before the picture)
    ("main-80x24", (80, 24), ()),
    ("main-120x40", (120, 40), ()),
    ("help", (100, 30), ("question_mark",)),
    ("population-80x24", (80, 24), ("6",)),
    ("population-120x40", (120, 40), ("6",)),
    ("run-details-80x24", (80, 24), ("enter",)),
    ("run-details-120x40", (120, 40), ("enter",)),
    ("compare-120x40", (120, 40), ("space", "up", "up", "up", "space")),
]


async def _shoot(db_path: str, directory: str, name: str, size: tuple[int, int], keys: tuple[str, ...]) -> str:
    app = ControlRoomApp(SessionOptions(offline=True), db_path=db_path)
    async with app.run_test(size=size) as pilot:
        await history_shown(pilot)
        fill_population(app.population)
        app.main.population.show()
        for key in keys:
            await pilot.press(key)
        await pilot.pause()
        while not app.main.plot.shows_latest_data:
            await pilot.pause(0.01)
        await pilot.pause()
        return app.save_screenshot(f"{name}.svg", path=directory)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    directory = os.path.abspath(args[0] if args else "screenshots")
    os.makedirs(directory, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        db_path = os.path.join(scratch, "runs.sqlite3")
        write_history(db_path)
        for name, size, keys in SHOTS:
            print(asyncio.run(_shoot(db_path, directory, name, size, keys)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
