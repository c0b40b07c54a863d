"""What a person reads on the screen at 80x24, 120x40 and after resizes (issue 20, items 10–13):
the log after a resize, the squeezed panes, the messages, the episodes field under fast input."""

from __future__ import annotations

import math
import re

from test_control_room import loaded, offline_app

from conftest import screen_text


def inside(app, widget) -> list[str]:
    """The rows of ``widget`` on the screen, inside its border."""
    region = widget.region
    lines = screen_text(app).splitlines()
    return [line[region.x + 1 : region.right - 1] for line in lines[region.y + 1 : region.bottom - 1]]


def words(rows: list[str]) -> str:
    """The rows read as one text: the wrapping of a line is not what is checked."""
    return " ".join(" ".join(rows).split())


LONG = (
    "a line longer than any terminal here is wide, so that it wraps at every width: it says what "
    "a peer said, the file the network log went to and the run it was about, and it ends with THE-END"
)


async def test_the_log_wraps_to_the_new_width_and_shows_its_latest_line_after_a_resize(tmp_path):
    app = offline_app(tmp_path)
    async with app.run_test(size=(200, 60)) as pilot:
        await loaded(pilot)
        for number in range(40):
            app.log_line(f"line {number} of the log")
        app.log_line(LONG)
        app.log_line("the latest line")
        await pilot.pause()
        for size in ((120, 40), (80, 24), (200, 60), (120, 40)):
            await pilot.resize_terminal(*size)
            if not app.main.log_pane.display:
                await pilot.press("5")
            await pilot.pause()
            await pilot.pause()
            rows = inside(app, app.main.log_pane)
            assert rows[-1].rstrip().endswith("the latest line"), (size, rows)
            assert re.search(r"\bwith THE-END\b", words(rows)), (size, rows)  # nothing cut at the right
            first = next((i for i, row in enumerate(rows) if "a line longer" in row), None)
            if first is not None:  # the whole of it in view: it takes the rows the pane's width needs
                last = next(i for i, row in enumerate(rows) if "THE-END" in row)
                width = len(rows[0]) - 2  # the scrollbar's gutter
                # word wrapping leaves less than the longest word free at the end of a row
                assert last - first + 1 <= math.ceil(len("00:00:00 " + LONG) / (width - 15)), (size, rows)
