"""What a person reads on the screen at 80x24, 120x40 and after resizes (issue 20, items 10, 11, 13):
the log after a resize, the squeezed panes, the episodes field under fast input."""

from __future__ import annotations

import math
import re
import time

import pytest
from test_app import connected, log_text, make_app, plain_evolution, runs, start_run, until
from test_control_room import loaded, offline_app

from cartpole_tui.env import defaults
from cartpole_tui.env.components.random_agent import RandomAgent
from cartpole_tui.env.runtime.session import SessionOptions
from cartpole_tui.tui.app import ControlRoomApp
from cartpole_tui.tui.bindings import PANES
from cartpole_tui.tui.widgets.runs_table import _of

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


# --- squeezes (item 11): every pane shown is read whole ----------------------------------------


def rows_of(app, pane_id: str) -> list[str]:
    return inside(app, app.main.panes[pane_id])


def assert_nothing_cut(app) -> None:
    """What each pane shown says is whole: no row ends cut, the runs table keeps every column,
    the clients line is one line, the controls line says the evolution's state whole."""
    lines = screen_text(app).splitlines()
    assert re.search(r"\bevo: (idle|running…|no answer|done in \d+\.\d\ds( by evolution)?)\s*$", lines[1]), lines[1]
    if app.main.runs_table.display:
        header = rows_of(app, "runs-pane")[0]
        assert re.search(r"\bavg \(ENV_DONE\)\s+best\s+time\s+steps/s\s+state\b", header), header
    if app.main.network_box.display:
        assert re.fullmatch(r"\d+ clients?, \d+ frames? refused", rows_of(app, "network-pane")[0].strip())
    if app.main.population.display:  # its lines end cut with an ellipsis, where they are cut
        rows = rows_of(app, "population-pane")
        assert not any(row.rstrip().endswith("…") for row in rows), rows


def population_swarm(port: int):
    from cartpole_tui.env.swarm.swarm import Swarm

    return Swarm("127.0.0.1", port, models=20, seed=2).start()


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_panes_shown_by_key_are_never_squeezed(tmp_path, broker, size):
    swarm = population_swarm(broker.port)
    app = make_app(tmp_path, broker.port)
    try:
        async with app.run_test(size=size) as pilot:
            await connected(pilot)
            await until(pilot, lambda: app.main.network._current is not None, what="the broker's stats")
            await start_run(pilot, "4")
            await until(pilot, lambda: [r for r in runs(app) if r.state == "done"], what="a run")
            await pilot.press("e")
            await until(pilot, lambda: app.population.latest is not None, what="generation 1")
            assert_nothing_cut(app)
            for key in "6436421":
                pane = app.main.panes[PANES[key][0]]
                asked = not pane.display
                await pilot.press(key)
                await pilot.pause()
                assert pane.display is asked, key  # the key does what it says; what no longer fits gives way
                assert_nothing_cut(app)
            for other in ((80, 24), (200, 60), (120, 40), size):
                await pilot.resize_terminal(*other)
                await pilot.pause()
                assert_nothing_cut(app)
            if app.main.population.display:
                shown = " ".join(rows_of(app, "population-pane"))
                every_model = re.search(r"\b20 [·░▒▓█]", shown)  # else the legend says how many are
                assert "best" in shown and (every_model or re.search(r"\b\d+ fittest of 20 shown\b", shown)), shown
    finally:
        swarm.close()


async def test_the_rows_of_hidden_panes_go_to_the_panes_still_shown(tmp_path):
    app = offline_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot)
        await pilot.press("1", "2", "3", "5")
        await pilot.pause()
        network = app.main.network_box.region
        assert (network.y, network.bottom, network.width) == (3, 39, 120)  # below the progress row, above the footer
        await pilot.press("4")  # nothing left but the status, controls and footer: no pane to fill
        await pilot.press("5")  # the log alone takes every row
        await pilot.pause()
        log = app.main.log_pane.region
        assert (log.y, log.bottom) == (3, 39)


NO_DATA = (
    "1 evolution, no population data: this network's evolution reports no per-model fitness (the built-in one does)"
)


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (200, 60)])
async def test_the_population_pane_says_whole_that_the_evolution_reports_nothing(tmp_path, broker, size):
    evolution = plain_evolution(broker.port)
    app = make_app(tmp_path, broker.port)
    try:
        async with app.run_test(size=size) as pilot:
            await connected(pilot)
            if not app.main.population.display:
                await pilot.press("6")
            await pilot.press("e")
            await until(pilot, lambda: app.population.evolutions, what="the evolution")
            await pilot.pause()
            assert NO_DATA in words(rows_of(app, "population-pane"))
            await pilot.resize_terminal(size[0] + 10, size[1])
            await pilot.pause()
            assert NO_DATA in words(rows_of(app, "population-pane"))
    finally:
        evolution.close()


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_the_progress_label_is_whole_beside_the_bar(tmp_path, broker, size):
    agent = RandomAgent("127.0.0.1", broker.port, seed=5).start()
    app = make_app(tmp_path, broker.port)
    try:
        async with app.run_test(size=size) as pilot:
            await connected(pilot)
            await start_run(pilot, "1000000")
            label = r"run 1 · \d+/1000000 · last \d+ · mean\(100\) \d+\.\d"
            progress = lambda: screen_text(app).splitlines()[2]  # noqa: E731
            await until(pilot, lambda: re.search(rf"\d+% .*{label}\s*$", progress()), what="the bar and its label")
            await pilot.resize_terminal(80, 24)
            await until(pilot, lambda: re.search(rf"{label}\s*$", progress()), 5, "the whole label at 80x24")
            await pilot.press("x")
    finally:
        agent.close()


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_the_plot_legend_holds_whole_items_only(tmp_path, size):
    """At 80x24 the legend ended "· ┈ sol…": items that do not fit whole are left out."""
    app = offline_app(tmp_path)
    async with app.run_test(size=size) as pilot:
        await loaded(pilot)
        await pilot.pause()
        border = next(line for line in screen_text(app).splitlines() if line.startswith("╰") and "mean(" in line)
        assert "…" not in border and "mean(100)" in border, border
        assert ("┈ solved ≥ 475" in border) == (size == (120, 40)), border


async def test_the_bar_and_its_label_tell_of_one_run_through_a_schedule(tmp_path):
    """Runs of a schedule follow each other faster than the redraw: the bar showed the next run's
    0 % beside "run 1 done", or 0 % beside "16/20" on a loaded machine. Both change at a redraw:
    every repaint of the progress line is checked (looks every 0.2 s missed whole runs in CI)."""
    # the embedded network with the learning swarm: short runs, many run ends (random agents have no
    # evolution: their schedule waits at its first evolve)
    # 20 at once, not 100: a run is seen under way at several redraws
    app = ControlRoomApp(SessionOptions(seed=39, parallel=20), db_path=str(tmp_path / "runs.sqlite3"))
    painted: list[tuple[str, bool, float | None, float]] = []  # (label, bar shown, its total, its progress)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot)
        show_progress = app._show_progress

        def recorded() -> None:
            show_progress()
            bar = app.main.progress
            painted.append((str(app.main.progress_label.render()), bar.display, bar.total, bar.progress))

        app._show_progress = recorded  # the redraw's one writer of the progress line and its bar
        await pilot.press("r")
        await until(
            pilot, lambda: app._schedule_label and app._schedule_label.ended, timeout=120, what="the schedule's end"
        )
        # what is left on the screen: the last run's end without a bar (the label is repainted a frame
        # before the bar's hiding moves it left)
        ended = r"schedule solved · run \d+ done"
        await until(pilot, lambda: re.search(ended, line := screen_text(app).splitlines()[2]) and "%" not in line)
    seen = {"count": 0, "ended": 0}
    for label, shown, total, progress in dict.fromkeys(painted):  # each repaint once
        counted = re.search(r"run \d+ · (\d+)/(\d+)", label)
        if re.search(r"run \d+ (done|stopped)", label):
            seen["ended"] += 1
            assert not shown, label  # no bar beside a run that ended
        elif counted and shown:
            seen["count"] += 1
            assert (progress, total) == tuple(map(int, counted.groups())), (label, progress, total)
        elif "waiting for the first episode" in label and shown:
            assert progress == 0, (label, progress)
    assert seen["count"] and seen["ended"], seen  # both kinds of line were painted and checked


async def test_a_run_without_agents_counts_its_silence_and_is_stopped_after_the_idle_time_out(
    tmp_path, broker, monkeypatch
):
    """The agents gone (or never there): the label said "no step for 5s" for ever and the run stayed
    "running" until x. It counts up, and a run this room started is stopped at RUN_IDLE_TIMEOUT."""
    monkeypatch.setattr(defaults, "RUN_IDLE_TIMEOUT", 9.0)  # room for the label to count up first
    app = make_app(tmp_path, broker.port)  # our environment on a broker without agents
    async with app.run_test(size=(120, 40)) as pilot:
        await connected(pilot)
        await start_run(pilot, "5")
        progress = lambda: screen_text(app).splitlines()[2]  # noqa: E731

        def silence() -> int:  # the seconds the label counts (a loaded machine's repaint may skip one)
            said = re.search(r"run 1 · 0/5 · no step for (\d+)s", progress())
            return int(said.group(1)) if said else 0

        await until(pilot, lambda: silence() >= 5, 10, "the stall label")
        first = silence()
        await until(pilot, lambda: silence() > first, 5, "the label counting up")
        await until(pilot, lambda: runs(app) and runs(app)[-1].state == "stopped", 10, "the run stopped")
        assert "run 1: no step for 9s: stopping it" in log_text(app)
        await until(pilot, lambda: "run 1 stopped · no episode finished" in progress(), 5, "the label saying so")


# --- the episodes field under fast input (item 13) ---------------------------------------------


def typed_in_one_read(app, data: str) -> None:
    """What the terminal driver does with one read of ``data``: parse it and hand over every event."""
    from textual._xterm_parser import XTermParser  # the driver's own parser: there is no public one

    for event in XTermParser().feed(data):
        app._driver.process_message(event)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
@pytest.mark.parametrize(
    "before, data, after",
    [
        ((), "\x7f50", "50"),  # the selected default replaced: backspace, then the digits
        (("end",), "\x7f\x7f50", "50"),  # the cursor at the end: two backspaces, then the digits
        (("end",), "\x7f\x7f\x7f7\x7f35", "35"),  # more backspaces than characters
        (("end",), "\x1b[D\x7f9", "90"),  # left arrow, backspace, a digit
    ],
    ids=["selected", "at-end", "too-many", "arrow"],
)
async def test_the_episodes_field_takes_keys_in_the_order_they_came_in_one_read(tmp_path, size, before, data, after):
    app = offline_app(tmp_path, history=False)
    app.options = app.options.__class__(offline=False)  # the field is disabled offline; no network is needed to type
    async with app.run_test(size=size) as pilot:
        await pilot.press("n", *before)
        field = app.query_one("#episodes")
        assert field.has_focus
        typed_in_one_read(app, data)
        await until(pilot, lambda: field.value == after, 5, f"{after!r} in the field")
        await pilot.pause()
        assert re.search(rf"Episodes {after}\s", screen_text(app).splitlines()[1])


# --- one screen, one moment (findings 1 and 9) ----------------------------------------------

PROGRESS_COUNTS = re.compile(r"run (\d+) · (\d+)/(\d+) · last (\S+) · mean\(100\) (\S+)")


def counts_on_screen(app) -> dict[str, tuple] | None:
    """What the progress line, the plot's legend and the runs table say of the run going:
    (episodes, last, mean) as the table would show them and what of those the others show; None
    before the first count. The table shortens a count of a large run (1.0k/1.0M), the others not."""
    lines = screen_text(app).splitlines()
    progress = PROGRESS_COUNTS.search(lines[2])
    if progress is None:
        return None
    number, finished, asked, last, mean = progress.groups()
    legend = next(line for line in lines if line.startswith("╰") and "mean(100)" in line)
    shown = re.search(r"last (\S+) · ━ mean\(100\) (\S+)", legend)
    row = next((line for line in lines if re.match(rf"┃\s+◆?\s*{number}\s", line)), "")
    eps = re.match(rf"┃\s+◆?\s*{number}\s+(\S+)", row)
    return {
        "count": finished,
        "progress": (_of(int(finished), int(asked)), last, mean),
        "elsewhere": (eps.group(1) if eps else row, *(shown.groups() if shown else (legend, ""))),
    }


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_the_progress_line_the_legend_and_the_runs_table_tell_of_one_moment(tmp_path, size):
    """A fast run: the runs table said 78/2000 and the legend an older score beside a progress line
    at 1989/2000 (each repainted on a clock of its own). At every redraw they say the same."""
    app = make_app(tmp_path)
    async with app.run_test(size=size) as pilot:
        await connected(pilot)
        await start_run(pilot, "1000000")
        seen: list[str] = []
        while len(seen) < 8:  # eight redraws of a run going
            await until(
                pilot,
                lambda: (c := counts_on_screen(app)) is not None and c["count"] not in seen,
                what="the next redraw of the counts",
            )
            counts = counts_on_screen(app)
            assert counts is not None
            shown = counts["progress"]
            # the legend's border row is painted just after the redraw: a moment, far less than one
            agree = lambda counts=counts: counts_on_screen(app) == {**counts, "elsewhere": counts["progress"]}  # noqa: E731
            await until(pilot, agree, 0.5, f"the legend and the table to say {shown} ({counts})")
            seen.append(counts["count"])
        await pilot.press("x")


def write_fast_then_slow_runs(path: str) -> float:
    """Run 1: 2,000 episodes ending within a second; run 2: 40 more over 8 s, 17 s later.
    Returns when the last episode ended."""
    from cartpole_tui.env.history.store import RunStore

    start = 1_764_000_000.0
    with RunStore.open(path) as store:
        clock = start
        for number, count, step in ((1, 2000, 0.9 / 2000), (2, 40, 0.2)):
            uid = f"run-{number}"
            store.begin_run(
                uid, episodes=count, deterministic=False, seed=1, env_id="CartPole-v1", address="", started=clock
            )
            for index in range(1, count + 1):
                clock += step
                store.add_episode(uid, index, 20.0, 20, clock)
            store.end_run(uid, avg_score=20.0, state="done", ended=clock)
            clock += 17.0
        store.flush()
    return clock - 17.0


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_time_labels_are_each_said_once_and_the_latest_is_at_the_right(tmp_path, size):
    """`t` labelled a 2,000-episode run of one second "06:32:56  06:32:57  06:32:57  06:32:57" and
    not the later run at the right end at all (finding 5)."""
    path = str(tmp_path / "runs.sqlite3")
    latest = time.strftime("%H:%M:%S", time.localtime(write_fast_then_slow_runs(path)))
    app = ControlRoomApp(SessionOptions(offline=True), db_path=path)
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: len(app.history) == 2040 and app.main.plot.shows_latest_data, what="the history")
        await pilot.press("t", "t")  # episode numbers -> run numbers -> times
        await until(pilot, lambda: app.main.plot.x_axis == "time" and app.main.plot.shows_latest_data)
        row = rows_of(app, "plot-pane")[-1]
        labels = re.findall(r"\d\d:\d\d:\d\d", row)
        assert len(labels) >= 2 and len(set(labels)) == len(labels), row
        assert labels[-1] == latest and row.rstrip().removesuffix(" time ended").endswith(latest), row


def write_runs(path: str, count: int, numbers_from: int = 1, state: str = "done") -> None:
    """``count`` short runs (20 episodes each), numbered from ``numbers_from``, ended ``state``."""
    from cartpole_tui.env.history.store import RunStore

    with RunStore.open(path) as store:
        clock = 1_764_000_000.0
        for number in range(1, numbers_from + count):
            uid = f"run-{number}"
            store.begin_run(
                uid, episodes=20, deterministic=False, seed=1, env_id="CartPole-v1", address="", started=clock
            )
            if number >= numbers_from:  # the runs before are numbered and left without episodes
                for index in range(1, 21):
                    clock += 0.01
                    store.add_episode(uid, index, float(10 * number + index), 10, clock)
            store.end_run(uid, avg_score=float(10 * number + 10.5), state=state, ended=clock)
        store.flush()


@pytest.mark.parametrize(("size", "first"), [((80, 24), 1), ((120, 40), 1), ((80, 24), 120), ((200, 50), 30)])
async def test_the_legend_names_every_marked_run(tmp_path, size, first):
    """At 80x24 two marked runs were cut from the legend, at 200 columns two of eight (finding 26):
    where the whole form does not fit, a shorter one names every run ("1━38 2━39 …")."""
    path = str(tmp_path / "runs.sqlite3")
    write_runs(path, 10, first)
    app = ControlRoomApp(SessionOptions(offline=True), db_path=path)
    async with app.run_test(size=size) as pilot:
        table = app.main.runs_table
        await until(pilot, lambda: table.row_count == first + 9, what="the runs")
        table.focus()
        table.move_cursor(row=table.row_count - 1)
        for _ in range(defaults.PLOT_OVERLAYS):
            await pilot.press("space", "up")
        await until(pilot, lambda: len(app.main.plot.overlays) == defaults.PLOT_OVERLAYS, what="8 overlays")
        await until(pilot, lambda: app.main.plot.shows_latest_data)
        await pilot.pause()
        legend = next(line for line in screen_text(app).splitlines() if line.startswith("╰") and "━" in line)
        marked = sorted(table.marked)
        assert len(marked) == defaults.PLOT_OVERLAYS
        for mark, number in enumerate(marked, start=1):
            assert re.search(rf"{mark}━ ?(run )?{number}\b", legend), (mark, number, legend)
        assert "…" not in legend, legend


# --- the panes in a narrow or short terminal (findings 19, 27, 39a, 39b) ---------------------


async def test_below_80_columns_the_runs_table_gives_way_and_comes_by_its_key(tmp_path):
    """At 60x18 the 80-column table was shown with steps/s and state cut off (finding 27)."""
    app = offline_app(tmp_path)
    async with app.run_test(size=(60, 18)) as pilot:
        await loaded(pilot)
        await pilot.pause()
        text = screen_text(app)
        assert "Runs" not in text and "avg (ENV_DONE)" not in text, text
        assert app.main.plot.region.bottom == 18 - 1  # its rows went to the plot
        await pilot.press("3")  # asked for: shown as it is
        await pilot.pause()
        assert "━ Runs ━" in screen_text(app)
        for size in ((80, 24), (120, 40)):  # from 80 columns it is whole
            await pilot.resize_terminal(*size)
            await pilot.pause()
            header = rows_of(app, "runs-pane")[0]
            assert re.search(r"\bsteps/s\s+state\b", header), (size, header)


@pytest.mark.parametrize("size", [(80, 24), (85, 25), (120, 40)])
async def test_the_state_column_is_whole_beside_the_runs_tables_scrollbar(tmp_path, size):
    """A small browser window: "runnin", the scrollbar took the last column (finding 19)."""
    path = str(tmp_path / "runs.sqlite3")
    write_runs(path, 30, state="stopped")  # as long as "running"
    app = ControlRoomApp(SessionOptions(offline=True), db_path=path)
    async with app.run_test(size=size) as pilot:
        table = app.main.runs_table
        await until(pilot, lambda: table.row_count == 30, what="the runs")
        await pilot.pause()
        assert table.show_vertical_scrollbar  # more runs than rows
        rows = [row for row in rows_of(app, "runs-pane")[1:] if row.strip()]
        assert rows and all(re.search(r"\bstopped\s+\S*\s*$", row) for row in rows), rows


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_with_the_plot_hidden_the_cart_takes_its_width(tmp_path, size):
    """`1` at 80x24 left the cart 20 columns wide beside 60 empty ones (finding 39b)."""
    app = offline_app(tmp_path)
    async with app.run_test(size=size) as pilot:
        await loaded(pilot)
        await pilot.press("1")
        await pilot.pause()
        cart = app.main.cart.region
        assert cart.x <= 1 and cart.right >= size[0] - 1, cart
        assert screen_text(app).splitlines()[cart.y].startswith("╭─ Cart ─")
        await pilot.press("1")
        await pilot.pause()
        assert app.main.cart.region.width < size[0] // 2  # beside the plot again


@pytest.mark.parametrize(
    ("size", "log", "network"),
    [((115, 32), True, False), ((116, 32), True, True), ((116, 31), False, False), ((80, 32), True, False)],
)
async def test_the_log_shows_from_32_rows_and_the_network_pane_from_116_columns_too(tmp_path, size, log, network):
    """The README's thresholds, as the layout has them (finding 39a)."""
    app = offline_app(tmp_path)
    async with app.run_test(size=size) as pilot:
        await loaded(pilot)
        await pilot.pause()
        text = screen_text(app)
        assert ("─ Log ─" in text) is log and ("─ Network ─" in text) is network, text


# --- the environment pane (findings 39c, 39d) ---------------------------------------------------


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
@pytest.mark.parametrize(("env_id", "title"), [("Acrobot-v1", "Acrobot-v1"), ("CartPole-v1", "Cart")])
async def test_the_environment_pane_is_titled_by_what_it_draws(tmp_path, size, env_id, title):
    """It said "Cart" above an Acrobot picture."""
    app = ControlRoomApp(SessionOptions(offline=True, env_id=env_id), db_path=str(tmp_path / "runs.sqlite3"))
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        cart = app.main.cart.region
        assert screen_text(app).splitlines()[cart.y][cart.x :].startswith(f"╭─ {title} ─"), screen_text(app)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_a_followers_environment_pane_says_plainly_what_it_waits_for(tmp_path, broker, size):
    """It said "waiting for the environment's cart (ours publishes it; the published one not)",
    then "… (the published environment sends no cart)" beside our environment; both draw it (theirs
    from its observations). Offline no run can come: it says so."""
    options = SessionOptions(connect=f"127.0.0.1:{broker.port}", embed_env=False, agent="random")
    app = ControlRoomApp(options, db_path=str(tmp_path / "runs.sqlite3"))
    async with app.run_test(size=size) as pilot:
        await connected(pilot)
        await pilot.pause()
        assert words(inside(app, app.main.cart)) == "waiting for a run…"
    offline = ControlRoomApp(SessionOptions(offline=True), db_path=str(tmp_path / "runs.sqlite3"))
    async with offline.run_test(size=size) as pilot:
        await pilot.pause()
        assert words(inside(offline, offline.main.cart)) == "offline: no run plays here"
