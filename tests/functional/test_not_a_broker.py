"""An address that answers but is no swergio broker (an HTTP server) is said to be one within
5 s: `run` exits 1 with one line, the app shows its cannot-join screen. A peer that says
nothing cannot be told from swergio.Server, which greets no one; our broker says so at once."""

from __future__ import annotations

import http.server
import socket
import threading
import time

import pytest
from test_app import until

from cartpole_tui.env.runtime.session import SessionOptions
from cartpole_tui.env.wire.transport import Component, NotABroker
from cartpole_tui.tui.app import ControlRoomApp
from cartpole_tui.tui.screens.modals import UnreachableScreen

from conftest import cli, one_clear_line, screen_text

NOT_A_BROKER = "answered but is not a swergio broker"


@pytest.fixture
def http_port():
    """Python's own HTTP server on loopback (what a wrong port often reaches)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent_port():
    """A peer that accepts and never says a word (as swergio.Server to a new client)."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True).start()
    yield listener.getsockname()[1]
    for sock in accepted:
        sock.close()
    listener.close()


@pytest.mark.parametrize(
    "command",
    [
        ["run", "--episodes", "5", "--db", ":memory:"],
        ["run", "--schedule", "--db", ":memory:"],
        ["run", "--no-env", "--db", ":memory:"],
        ["evolve"],
        ["env", "--db", ":memory:"],
        ["swarm"],
    ],
)
def test_a_command_joining_an_http_server_says_so_in_one_line_and_exits_1(http_port, command):
    started = time.monotonic()
    result = cli(*command, "--connect", f"127.0.0.1:{http_port}", timeout=60)
    one_clear_line(result, 1, f"127.0.0.1:{http_port} {NOT_A_BROKER}")
    assert time.monotonic() - started < 10  # it printed nothing until interrupted before


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_the_app_joining_an_http_server_shows_it_cannot_join(tmp_path, http_port, size):
    options = SessionOptions(connect=f"127.0.0.1:{http_port}", agent="random")
    app = ControlRoomApp(options, db_path=str(tmp_path / "runs.sqlite3"))
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: isinstance(app.screen, UnreachableScreen), timeout=5, what="the cannot-join screen")
        said = lambda: "Cannot join the network" in screen_text(app)  # noqa: E731
        await until(pilot, said, what="the screen drawn")
        text = screen_text(app)
        assert NOT_A_BROKER in " ".join(text.split())
        assert "● connected" not in text
        await pilot.press("q")
    assert app.return_code == 1


def test_what_a_peer_shows_of_itself(broker, http_port, silent_port):
    ours = Component("probe", "127.0.0.1", broker.port).start()
    try:
        assert ours.check_broker(timeout=5) is True  # our broker answered the census at once
    finally:
        ours.close()
    silent = Component("probe", "127.0.0.1", silent_port).start()
    try:
        started = time.monotonic()
        assert silent.check_broker(timeout=0.3) is False  # no sign either way: taken for swergio.Server
        assert time.monotonic() - started < 2
    finally:
        silent.close()
    http = Component("probe", "127.0.0.1", http_port).start()
    try:
        with pytest.raises(NotABroker, match=NOT_A_BROKER):
            http.check_broker(timeout=5)
    finally:
        http.close()
