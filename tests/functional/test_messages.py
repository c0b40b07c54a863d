"""The messages a person reads (issue 20, item 12): each says what happened, once, in the right
place and order: on the screen at 80x24 and 120x40, or on stderr with the exit code."""

from __future__ import annotations

import os
import signal
import socket
import tempfile

import pytest
from swergio import Client
from test_app import connected, log_text, make_app, runs, start_run, until
from test_cli import cli, one_clear_line
from test_control_room import offline_app
from test_screen_text import inside, words

from cartpole_tui.env.components.control import ControlClient
from cartpole_tui.env.components.environment import EnvironmentComponent
from cartpole_tui.env.components.random_agent import RandomAgent
from cartpole_tui.env.runtime.session import SessionOptions
from cartpole_tui.env.swarm.saved import beside_history
from cartpole_tui.tui.app import ControlRoomApp
from cartpole_tui.tui.screens.modals import UnreachableScreen

from conftest import free_port, screen_text, wait_for


def cannot_join_rows(app) -> list[str]:
    """The rows of the cannot-join screen's text, as shown (stripped)."""
    reason = app.screen.query_one("#unreachable-reason").region
    return [row[reason.x : reason.right].strip() for row in screen_text(app).splitlines()[reason.y : reason.bottom]]


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_a_broker_that_has_an_environment_is_not_called_unreachable(tmp_path, broker, size):
    environment = EnvironmentComponent("127.0.0.1", broker.port, seed=1).start()
    app = make_app(tmp_path, broker.port)
    try:
        async with app.run_test(size=size) as pilot:
            await until(pilot, lambda: isinstance(app.screen, UnreachableScreen), what="the cannot-join screen")
            await pilot.pause()
            text = screen_text(app)
            assert "● another environment" in text.splitlines()[0] and "unreachable" not in text
            said = (
                f"an environment is already on 127.0.0.1:{broker.port}: add --no-env to use it instead of starting ours"
            )
            assert said in " ".join(cannot_join_rows(app))
    finally:
        environment.close()


NOT_NUMPY = b"this is a text file, not numpy\n"


@pytest.mark.parametrize(
    "content",
    [NOT_NUMPY, b"", b"PK\x03\x04 a damaged zip"],
    ids=["text", "empty", "damaged"],
)
def test_a_bad_population_file_is_named_and_numpy_advice_is_not_relayed(tmp_path, broker, content):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(content)
    result = cli("swarm", "--connect", f"127.0.0.1:{broker.port}", "--load", str(bad))
    one_clear_line(result, 1, f"{bad} is not a population file")
    assert "pickle" not in result.stderr


def test_swarm_says_its_bad_population_file_before_it_connects(tmp_path):
    """Nothing listens at the address: the file is still what is said (the line was a refused
    connection, and only once the broker was up did the file's turn come)."""
    bad = tmp_path / "bad.npz"
    bad.write_bytes(NOT_NUMPY)
    result = cli("swarm", "--connect", f"127.0.0.1:{free_port()}", "--load", str(bad))
    one_clear_line(result, 1, f"{bad} is not a population file")


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_the_app_says_why_its_network_did_not_start_and_where_the_log_is(tmp_path, monkeypatch, size):
    """Said as a network that did not start: the screen said "Cannot join the network" and the
    status line "● unreachable" of a network this room had not started (new-user pass 5)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the network's log goes here
    db = str(tmp_path / "runs.sqlite3")
    population = beside_history(db)
    with open(population, "wb") as out:
        out.write(NOT_NUMPY)
    app = ControlRoomApp(SessionOptions(seed=1, population_file=population), db_path=db)
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: isinstance(app.screen, UnreachableScreen), what="the cannot-join screen")
        await pilot.pause()
        rows = cannot_join_rows(app)  # long paths wrap anywhere: read without spaces
        status = screen_text(app).splitlines()[0]
        assert rows[0] == "The network did not start" and "● network not started" in status, (rows, status)
        assert "Cannot join" not in screen_text(app) and "unreachable" not in status
        assert f"{population}isnotapopulationfile" in "".join("".join(rows).split()), rows
        assert "--freshstartsfromrandomweights" in "".join("".join(rows).split()), rows  # the way out
        if size == (80, 24):
            return  # the log pane is hidden at 80x24
        said = "".join(log_text(app).split())  # and in the log, wrapped: long paths break anywhere
        assert f"theembeddednetworkdidnotstart:{population}isnotapopulationfile" in said, said
        logs = list(tmp_path.glob("cartpole-tui-network-*.log"))
        assert len(logs) == 1 and f"itslog:{logs[0]}" in said and "pickle" not in said


async def test_a_network_that_ran_well_leaves_no_log_and_one_that_died_says_where_its_log_is(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    logs = lambda: list(tmp_path.glob("cartpole-tui-network-*.log"))  # noqa: E731
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await connected(pilot)
        assert "its log" not in log_text(app)  # a log that goes away at a clean end is not announced
        os.kill(app.session.network.pid, signal.SIGKILL)
        await until(pilot, lambda: app.connection == "disconnected", what="disconnected")
        await connected(pilot)
        await until(pilot, lambda: "its log:" in log_text(app), what="the dead network's log said")
        flat = "".join(log_text(app).split())  # the log wraps
        dead = [log for log in logs() if f"itslog:{log}" in flat]
        assert len(dead) == 1 and dead[0].exists(), (logs(), flat)
    wait_for(lambda: logs() == dead, 10, "the running network's log removed at its clean end")


def test_export_of_a_corrupt_database_says_so_and_names_it(tmp_path):
    corrupt = tmp_path / "runs.sqlite3"
    corrupt.write_bytes(b"SQLite format 3\x00" + b"\x07" * 2000)
    for output in ([], ["-o", str(tmp_path / "out.csv")]):
        result = cli("export", "--db", str(corrupt), *output)
        one_clear_line(result, 1, f"Run history {corrupt} is corrupt or not a database")
        assert "memory" not in result.stderr and not result.stdout  # an export keeps no session
    assert not (tmp_path / "out.csv").exists()


def test_serve_says_it_cannot_listen_before_printing_an_address(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for host, why in (("nosuch.invalid", ""), ("127.0.0.1", "Address already in use")):
            result = cli("serve", "--host", host, "--port", str(port), "--agent", "random", "--db", ":memory:")
            one_clear_line(result, 1, f"cannot listen on {host}:{port}: {why}")
            assert result.stdout == ""  # no address to open was printed


async def test_a_component_that_left_is_said_once_and_a_control_client_is_no_component(tmp_path, broker):
    app = make_app(tmp_path, broker.port)
    async with app.run_test(size=(120, 40)) as pilot:
        await connected(pilot)
        evolve = ControlClient("127.0.0.1", broker.port)  # what `cartpole-tui evolve` joins as
        aggregation = Client("aggregation", "127.0.0.1", broker.port, "utf-8", 10)
        await until(pilot, lambda: "component seen: aggregation" in log_text(app), what="the aggregation seen")
        network = app.main.network_box
        # the names show before the broker's first stats: "refused" is in the stats' summary line
        shown = lambda: words(inside(app, network))  # noqa: E731
        await until(
            pilot, lambda: "aggregation" in shown() and "refused" in shown(), what="the aggregation in the stats"
        )
        evolve.close()
        aggregation.client.close()
        await until(pilot, lambda: "left the network" in log_text(app), what="the departure")
        text = words(log_text(app).splitlines())
        assert "aggregation left the network" in text and "aggregation: aggregation" not in text
        assert "control" not in text  # neither ours nor evolve's control client is a component seen


async def test_the_export_key_says_which_run_it_exported(tmp_path, broker, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the CSV goes to the working directory
    agent = RandomAgent("127.0.0.1", broker.port, seed=5).start()
    app = make_app(tmp_path, broker.port)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await connected(pilot)
            for number in (1, 2):
                await start_run(pilot, "2")
                await until(pilot, lambda n=number: len([r for r in runs(app) if r.state == "done"]) == n, what="runs")
            table = app.main.runs_table
            await until(pilot, lambda: table.row_count == 2, what="two rows")
            table.focus()
            await pilot.press("space", "c")  # the cursor follows the latest run: run 2
            await until(pilot, lambda: "exported" in log_text(app), what="the export")
            assert "exported run 2 to " in words(log_text(app).splitlines())
            assert "runs 2" not in log_text(app)
    finally:
        agent.close()


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_the_empty_plot_labels_the_solved_line(tmp_path, size):
    app = offline_app(tmp_path, history=False)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        plot = app.main.plot.region
        rows = screen_text(app).splitlines()[plot.y : plot.bottom]
        assert any("waiting for episodes" in row for row in rows)
        assert any(row[plot.x : plot.right].lstrip("│ ").startswith("475┤") and "solved" in row for row in rows), rows
        assert "┈ solved ≥ 475" in rows[-1], rows[-1]  # and the legend says what the line is
