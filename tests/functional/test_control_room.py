"""What a new user sees: panes that follow the terminal, keys that say what they do, a
progress line that tells the truth, the population and a run's details (issue 10)."""

from __future__ import annotations

import pytest
from test_app import connected, log_text, make_app, plain_evolution, runs, start_run, until

from cartpole_tui.env import defaults
from cartpole_tui.env.components.random_agent import RandomAgent
from cartpole_tui.env.events import BrokerStats
from cartpole_tui.env.history.store import RunStore
from cartpole_tui.env.runtime.session import SessionOptions
from cartpole_tui.tui.app import ControlRoomApp
from cartpole_tui.tui.screens.modals import UnreachableScreen
from cartpole_tui.tui.screens.run_details import RunDetailsScreen
from cartpole_tui.tui.widgets.runs_table import _of
from screenshots.demo_history import write_history

from conftest import free_port, screen_text


def offline_app(tmp_path, history: bool = True) -> ControlRoomApp:
    path = str(tmp_path / "runs.sqlite3")
    if history:
        write_history(path)
    return ControlRoomApp(SessionOptions(offline=True), db_path=path)


async def loaded(pilot):
    app = pilot.app
    await until(pilot, lambda: len(app.history) == 220 and app.main.runs_table.row_count == 6, what="the history")
    await until(pilot, lambda: app.main.plot.shows_latest_data, what="the plot")


def footer(app) -> str:
    lines = screen_text(app).splitlines()  # none while a screen is being pushed
    return lines[-1] if lines else ""


def shown(app, pane_id: str) -> bool:
    return app.main.panes[pane_id].display


def assert_fits(app):
    """Every pane shown is whole on the screen, borders included; the plot is not the smallest."""
    width, height = app.size
    lines = screen_text(app).splitlines()
    for pane_id, pane in app.main.panes.items():
        if pane.display:
            region = pane.region
            assert region.height > 0 and region.bottom <= height - 1 and region.right <= width, (pane_id, region)
    plot, table = app.main.plot.region, app.main.runs_table.region
    assert plot.height >= table.height, (plot, table)
    text = "\n".join(lines)
    assert "state" in text  # the runs table keeps its last column
    if shown(app, "log-pane"):
        log = app.main.log_pane.region
        assert lines[log.bottom - 1].lstrip().startswith("╰")  # the log's bottom border is drawn


async def test_panes_are_decided_again_on_every_resize(tmp_path):
    app = offline_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot)
        assert shown(app, "log-pane") and shown(app, "network-pane")
        assert_fits(app)
        for size, tall in (((80, 24), False), ((200, 60), True), ((80, 24), False)):
            await pilot.resize_terminal(*size)
            await pilot.pause()
            assert shown(app, "log-pane") is tall and shown(app, "network-pane") is tall, size
            assert_fits(app)
        assert app.main.network_box.region.width == 0  # hidden at 80x24
        await pilot.resize_terminal(200, 60)
        await pilot.pause()
        assert app.main.network_box.region.width >= 60  # it grows with the terminal
        await pilot.press("5")  # hide the log: the user's choice holds over resizes
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        await pilot.resize_terminal(200, 60)
        await pilot.pause()
        assert not shown(app, "log-pane") and shown(app, "network-pane")
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        await pilot.press("5")  # and shown at 80x24 when asked for, the plot still the taller
        await pilot.pause()
        assert shown(app, "log-pane")
        assert_fits(app)


async def test_escape_leaves_the_episodes_field_and_the_footer_says_how(tmp_path, broker):
    app = make_app(tmp_path, broker.port)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot)
        await pilot.press("n")
        field = app.query_one("#episodes")
        assert field.has_focus
        text = footer(app)
        assert "Done" in text and "esc" in text and "Start" in text
        await pilot.press("ctrl+a", "ctrl+k", "7", "escape", "d", "e", "s")
        await pilot.pause()
        assert field.value == "7" and not field.has_focus
        assert app.query_one("#deterministic").value is True  # d reached the app
        assert "Help" in footer(app)


async def test_too_many_episodes_are_refused_with_the_range(tmp_path, broker):
    app = make_app(tmp_path, broker.port)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot)
        await pilot.press("n", "ctrl+a", "ctrl+k", *"99999999999", "enter")
        await pilot.pause()
        assert "not in 1–1,000,000" in screen_text(app).splitlines()[1]
        assert app.query_one("#episodes").value == "99999999999"  # nothing silently changed


async def test_plot_keys_work_without_focus_and_the_legend_follows_at_once(tmp_path):
    app = offline_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot)
        await pilot.pause()  # the first legend comes with the paint after the first drawing
        assert not app.main.plot.has_focus
        assert "mean(100)" in screen_text(app)
        await pilot.press("w")
        await pilot.pause()
        assert "mean(500)" in screen_text(app)  # drawn with the key, not one key late
        await pilot.press("w")
        await pilot.pause()
        assert "mean(1)" in screen_text(app)
        await pilot.press("a")
        assert app.main.plot.last_n is not None


async def test_plot_explains_itself(tmp_path):
    app = offline_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot)
        await pilot.pause()
        text = screen_text(app)
        assert "475┤" in text and "solved" in text and "episode" in text
        last = app.history.scores[-1]
        assert f"last {last:g}" in text  # the legend shows current values
        assert "run avg 500.0" in text


async def test_marked_runs_are_compared_on_their_own_range_with_marks(tmp_path):
    app = offline_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot)
        table = app.main.runs_table
        table.focus()
        for row in (0, 5):
            table.move_cursor(row=row)
            await pilot.press("space")
        await until(pilot, lambda: len(app.main.plot.overlays) == 2, what="two overlays")
        await until(pilot, lambda: app.main.plot.shows_latest_data, what="the plot")
        await pilot.pause()
        text = screen_text(app)
        assert "1━ run 1" in text and "2━ run 6" in text and "episode of run" in text
        labels = [int(word) for word in app.main.plot._strips[-1].text.split() if word.isdigit()]
        assert 30 <= max(labels) <= 40  # the longest marked run has 40 episodes, not the 220 of the history


async def test_a_mark_past_what_the_plot_draws_is_refused_and_said(tmp_path, monkeypatch):
    """A ninth mark got its ◆ in the table and was drawn nowhere, silently."""
    monkeypatch.setattr(defaults, "PLOT_OVERLAYS", 2)  # six runs in this history: two marks are the most
    app = offline_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot)
        table = app.main.runs_table
        table.focus()
        for row in (0, 1, 2):
            table.move_cursor(row=row)
            await pilot.press("space")
        # the toast (not in the compositor's strips that screen_text reads)
        await until(
            pilot, lambda: [n.message for n in app._notifications] == ["2 runs marked, the most the plot draws"]
        )
        assert table.marked == {1, 2}
        marks = [line for line in screen_text(app).splitlines() if "◆" in line and "┃" in line]
        assert len(marks) == 2, marks


async def test_a_run_with_no_episode_is_not_marked_and_that_is_said(tmp_path):
    """A stopped run with no episode took one of the eight marks, drew nothing, and the legend
    renumbered the others without a word (new-user finding 11)."""
    path = str(tmp_path / "runs.sqlite3")
    write_history(path)
    with RunStore.open(path) as store:
        store.begin_run(
            "empty", episodes=5, deterministic=True, seed=None, env_id="CartPole-v1", address="", started=1.0
        )
        store.end_run("empty", avg_score=None, state="stopped", ended=2.0)
    app = ControlRoomApp(SessionOptions(offline=True), db_path=path)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.main.runs_table.row_count == 7, what="the history")
        table = app.main.runs_table
        table.focus()
        table.move_cursor(row=6)
        assert table.current == 7
        await pilot.press("space")
        await until(
            pilot, lambda: "run 7 has no episode to draw: not marked" in [n.message for n in app._notifications]
        )
        assert table.marked == set()
        assert not [line for line in screen_text(app).splitlines() if "◆" in line and "┃" in line]


async def test_focused_pane_has_a_heavy_border_and_tab_is_short(tmp_path):
    app = offline_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot)
        assert app.main.runs_table.has_focus
        runs_top = screen_text(app).splitlines()[app.main.runs_table.region.y]
        assert "┏" in runs_top
        await pilot.press("tab")
        assert app.focused is app.main.log_pane
        await pilot.press("tab")  # offline the episodes field is hidden; with a network it comes here
        assert app.main.plot.has_focus
        assert "┏" in screen_text(app).splitlines()[app.main.plot.region.y]


async def test_offline_footer_has_no_network_keys(tmp_path):
    app = offline_app(tmp_path, history=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        text = footer(app)
        assert "Help" in text and "Quit" in text
        for label in ("Start", "Stop", "Evolve", "Rounds"):
            assert label not in text


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_offline_the_run_controls_give_way_to_why_and_a_run_key_says_it(tmp_path, size):
    """--offline showed Start/Stop/Evolve, Det and the episodes field, and s did nothing (finding 22)."""
    app = offline_app(tmp_path)
    async with app.run_test(size=size) as pilot:
        await loaded(pilot)
        controls = screen_text(app).splitlines()[1]
        assert "offline: the run history only, no network to run on" in controls, controls
        for word in ("Episodes", "Det", "Start", "Stop", "Evolve", "evo:"):
            assert word not in controls, controls
        for key in ("s", "r"):
            app.clear_notifications()
            await pilot.press(key)
            await until(pilot, lambda: "(start without --offline)" in screen_text(app), 5, f"what {key} says")
        assert app.main.runs_table.row_count == 6  # nothing else happened


async def test_enter_shows_a_runs_details(tmp_path):
    app = offline_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, RunDetailsScreen), what="the details")
        await pilot.pause()
        text = screen_text(app)
        for words in ("run 6", "20 played of 20 asked", "deterministic", "yes", "steps/s", "done:", "episode"):
            assert words in text, words
        await pilot.press("escape")
        assert not isinstance(app.screen, RunDetailsScreen)


async def test_network_pane_humanises_counts_and_grows(tmp_path):
    app = offline_app(tmp_path, history=False)
    async with app.run_test(size=(200, 60)) as pilot:
        rooms = {"observation": (21, 2_317_702, 412_000_000), "logits": (2, 46_354_040, 5_100_000_000)}
        app.main.network.update_stats(BrokerStats(("model",) * 20, rooms, 0, 0, 1.0))
        app.main.network.update_stats(BrokerStats(("model",) * 20, rooms, 0, 0, 2.0))
        await pilot.pause()
        box = app.main.network_box.region
        text = "\n".join(line[box.x : box.right] for line in screen_text(app).splitlines()[box.y : box.bottom])
        assert "2.3M" in text and "46.4M" in text and "5.1G" in text and "…" not in text
        assert box.width >= 60  # 40 before, whatever the terminal's width
        await pilot.resize_terminal(120, 40)  # the narrowest the pane shows at by itself
        await pilot.pause()
        box = app.main.network_box.region
        text = "\n".join(line[box.x : box.right] for line in screen_text(app).splitlines()[box.y : box.bottom])
        assert all(word in text for word in ("observation", "msg/s", "msgs", "bytes", "2.3M", "5.1G")), text


async def test_progress_line_waits_hints_and_clears(tmp_path, broker):
    app = make_app(tmp_path, broker.port)  # no agents on this network
    app.run_progress.stall_hint_seconds = 0.3
    async with app.run_test(size=(100, 30)) as pilot:
        await connected(pilot)
        await start_run(pilot, "20")
        progress = lambda: screen_text(app).splitlines()[2]  # noqa: E731
        await until(pilot, lambda: "waiting for the first episode" in progress(), what="waiting")
        await until(pilot, lambda: "is the swarm running?" in progress(), what="the no-agents hint")
        await pilot.press("x")
        await until(pilot, lambda: "stopped" in progress(), what="stopped")
        assert "%" not in progress() and "ETA" not in progress() and "h" not in progress().split("stopped")[0]
        await until(pilot, lambda: "clients" in screen_text(app).splitlines()[0], what="the broker's client count")
        broker.stop()
        await until(pilot, lambda: "disconnected" in screen_text(app).splitlines()[0], what="disconnected")
        assert "clients" not in screen_text(app).splitlines()[0]


async def test_one_episode_and_played_episodes(tmp_path, broker):
    agent = RandomAgent("127.0.0.1", broker.port, seed=5).start()
    app = make_app(tmp_path, broker.port)
    try:
        async with app.run_test(size=(120, 40)) as pilot:  # the log shows (a hidden log defers its lines)
            await connected(pilot)
            await start_run(pilot, "1")
            flat = lambda: "".join(log_text(app).split())  # noqa: E731 (the log wraps)
            await until(pilot, lambda: "over1episode(ENV_DONE)" in flat(), what="one episode, singular")
            await start_run(pilot, "1000000")
            await until(pilot, lambda: len(app.history) >= 4, what="episodes")
            await pilot.press("x")
            stopped = await until(pilot, lambda: [r for r in runs(app) if r.state == "stopped"], what="stopped")
            table = app.main.runs_table
            await until(  # the table repaints once a second: the second run's row may not be there yet
                pilot,
                # played of how many, shortened to fit its column: "1.2k/1M"
                lambda: table.row_count > 1 and str(table.get_row_at(1)[2]) == _of(stopped[0].finished, 1_000_000),
                what="episodes played shown",
            )
    finally:
        agent.close()


async def test_quitting_the_unreachable_screen_exits_non_zero(tmp_path):
    app = make_app(tmp_path, free_port())
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, UnreachableScreen), what="the unreachable screen")
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 1


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_the_unreachable_screen_offers_only_its_own_keys_at_the_bottom(tmp_path, size):
    """The main screen's footer under it said "s Start  x Stop  e Evolve  r Rounds…" (finding 23)."""
    app = make_app(tmp_path, free_port())
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: isinstance(app.screen, UnreachableScreen), what="the unreachable screen")
        await until(pilot, lambda: "Retry" in footer(app), what="the screen's own footer")
        assert footer(app).split() == ["r", "Retry", "q", "Quit"], footer(app)
        assert "Cannot join the network" in screen_text(app)
        await pilot.press("q")


def test_the_control_room_command_returns_the_apps_exit_code(monkeypatch, tmp_path):
    from cartpole_tui.tui.cli.parser import main

    def crash(self, *args, **kwargs):
        self._return_code = 1  # what Textual sets when the app ends on an exception

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))  # no user's config file
    monkeypatch.setattr(ControlRoomApp, "run", crash)
    assert main(["--offline", "--db", str(tmp_path / "runs.sqlite3")]) == 1


async def test_population_pane_shows_our_evolution(tmp_path, broker):
    from cartpole_tui.env.swarm.swarm import Swarm

    swarm = Swarm("127.0.0.1", broker.port, models=4, seed=2).start()
    app = make_app(tmp_path, broker.port)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await connected(pilot)
            if not app.main.population.display:
                await pilot.press("6")
            assert "no evolution seen since this" in screen_text(app)  # a network it joined
            await start_run(pilot, "4")
            await until(pilot, lambda: [r for r in runs(app) if r.state == "done"], what="a run")
            for generation in (1, 2):
                await pilot.press("e")
                await until(pilot, lambda g=generation: f"gen {g}" in screen_text(app), what=f"generation {generation}")
            text = screen_text(app)
            assert "best" in text and "mean" in text and "worst" in text and "div" in text and "◆" in text
            pane = app.main.population.region
            rows = screen_text(app).splitlines()[pane.y + 3 : pane.y + 7]  # below the border and the header
            assert all(row[pane.x : pane.right].strip() for row in rows)  # one row per model
    finally:
        swarm.close()


async def test_population_pane_says_when_the_evolution_reports_nothing(tmp_path, broker):
    evolution = plain_evolution(broker.port)
    app = make_app(tmp_path, broker.port)
    try:
        async with app.run_test(size=(200, 60)) as pilot:
            await connected(pilot)
            assert app.main.population.display
            await pilot.press("e")
            await until(pilot, lambda: "no population data" in screen_text(app), what="no data")
    finally:
        evolution.close()


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_palette_has_every_listed_command(tmp_path, size):
    from cartpole_tui.tui.bindings import palette_entries

    app = offline_app(tmp_path, history=False)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        titles = {command.title for command in app.get_system_commands(app.screen)}
        for wanted in ("Help: every key", "Plot: next smoothing window", "Export runs to CSV (marked, or all)"):
            assert wanted in titles
        assert "Start a run" not in titles  # offline: nothing to start
        assert {k.palette for k in palette_entries()} - titles <= {
            "Start a run",
            "Stop the run",
            "Evolve",
            "Start a learning schedule",
            "Toggle deterministic",
            "Set the number of episodes",
        }


async def test_plot_mean_per_run_and_x_axis_cycle(tmp_path):
    app = offline_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot)
        await pilot.press("m")
        await pilot.pause()
        per_run = app.history.per_run_means(100)[0][-1]  # the last run (20 episodes) alone
        assert f"mean(100)/run {per_run:.1f}" in screen_text(app)
        labels = lambda: app.main.plot._strips[-1].text  # noqa: E731
        await pilot.press("t")
        await pilot.pause()
        assert "#1" in labels() and "#6" in labels() and labels().rstrip().endswith("run")
        await pilot.press("t")
        await pilot.pause()
        assert "time ended" in labels() and ":" in labels()
        await pilot.press("t")
        await pilot.pause()
        assert labels().rstrip().endswith("episode")
