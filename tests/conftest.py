"""Shared fixtures: a real broker on a free loopback port, and waiting without sleeps."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import pytest
from swergio import MESSAGE_TYPE, Trigger

from cartpole_tui.env.wire.broker import Broker


def polls(predicate: Callable[[], object], timeout: float, what: str, seen: Callable[[], object] | None = None):
    """Yield None while ``predicate()`` is falsy (the caller waits between), then its value;
    fail naming ``what`` after ``timeout``, and what ``seen()`` shows then (a failure in CI that
    said only "timed out" could not be told from a slow machine). The one polling loop of
    wait_for and the app tests."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            yield value
            return
        if time.monotonic() > deadline:
            last = "" if seen is None else f"; seen: {seen()!r}"
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{last}")
        yield None


async def until(
    pilot,
    predicate: Callable[[], object],
    timeout: float = 60.0,
    what: str = "condition",
    seen: Callable[[], object] | None = None,
):
    """``wait_for`` for an app under ``run_test``: the app runs between polls."""
    for value in polls(predicate, timeout, what, seen):
        if value:
            return value
        await pilot.pause(0.02)


def wait_for(
    predicate: Callable[[], object],
    timeout: float = 10.0,
    what: str = "condition",
    seen: Callable[[], object] | None = None,
):
    """Poll ``predicate`` until it is truthy; fail naming ``what`` (and ``seen()``) after ``timeout``."""
    pause = threading.Event()
    for value in polls(predicate, timeout, what, seen):
        if value:
            return value
        pause.wait(0.005)


def knock_until(heard: Callable[[], object], knock: Callable[[], object], what: str, timeout: float = 10.0):
    """``knock()`` every 0.2 s until ``heard()``: swergio.Server cannot say who is in a room, and
    a message sent before a client's JOINROOM is read is lost (the knock, not the run)."""
    pause = threading.Event()
    next_knock = 0.0
    for value in polls(heard, timeout, f"{what} to hear a knock"):
        if value:
            return value
        if time.monotonic() >= next_knock:
            knock()
            next_knock = time.monotonic() + 0.2
        pause.wait(0.005)


KINDS = ("unit", "functional", "e2e")


@pytest.fixture(autouse=True, scope="session")
def own_data_folder(tmp_path_factory):
    """The default history and config live in a folder of the test run's own, never the user's
    (subprocesses inherit it): a test that forgets --db cannot read or spoil ~/.local/share."""
    saved = {key: os.environ.get(key) for key in ("XDG_DATA_HOME", "XDG_CONFIG_HOME")}
    os.environ["XDG_DATA_HOME"] = str(tmp_path_factory.mktemp("xdg-data"))
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("xdg-config"))
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def pytest_collection_modifyitems(items):
    """Mark each test by its folder (tests/unit, tests/functional, tests/e2e)."""
    for item in items:
        kind = item.path.parent.name
        if kind in KINDS:
            item.add_marker(getattr(pytest.mark, kind))


@pytest.fixture
def broker():
    """Our broker on 127.0.0.1 with a free port, stopped after the test."""
    instance = Broker("127.0.0.1", 0).start()
    yield instance
    instance.stop()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def swergio_server():
    """swergio.Server 0.0.2 as shipped, on 127.0.0.1 with a free port, in a daemon thread."""
    import swergio

    port = free_port()
    server = swergio.Server("127.0.0.1", port, "utf-8", 10)
    server.server.listen()  # start() listens again in its thread; this one makes connecting race-free
    threading.Thread(target=server.start, daemon=True).start()
    yield port
    server.server.close()


def start_swergio_client(client) -> threading.Thread:
    """Run an unmodified swergio.Client's listen() in a daemon thread (its close-on-EOF may raise)."""

    def listen():
        try:
            client.listen()
        except OSError:
            pass

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    return thread


def answer(client, function, heard_in: str, answer_in: str) -> None:
    """``function`` answers each DATA/CUSTOM message in room ``heard_in`` in room ``answer_in``
    (on our Component or an unmodified swergio client)."""
    custom = MESSAGE_TYPE.DATA.CUSTOM
    client.add_eventHandler(function, custom, responseRooms=answer_in, trigger=Trigger(custom, heard_in))


def swergio_random_agent(port: int, name: str = "agent", knocked: threading.Event | None = None):
    """An unmodified swergio 0.0.2 client answering each observation with an ACTION; a message
    with KNOCK in the observation room sets ``knocked`` and is not answered (swergio.Server says
    nobody who is in a room: a knock heard is the agent in it)."""
    import random

    from swergio import Client

    client = Client(name, "127.0.0.1", port, "utf-8", 10)
    rng = random.Random(0)

    def act(message: dict) -> dict | None:
        if "KNOCK" in message:
            if knocked is not None:
                knocked.set()
            return None
        return {"ACTION": [rng.randint(0, 1)]}

    answer(client, act, "observation", "action")
    start_swergio_client(client)
    return client


def screen_text(app) -> str:
    """What a person sees on the app's active screen, as plain text lines."""
    # The compositor is what Textual paints the terminal from; there is no public reader of it.
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


@pytest.fixture
def closing():
    """Collects components and closes them after the test."""
    items = []
    yield items.append
    for item in reversed(items):
        item.close()


# --- the installed command -----------------------------------------------------------------

CLI = os.path.join(os.path.dirname(sys.executable), "cartpole-tui")


def cli(*args: str, timeout: float = 120, **settings) -> subprocess.CompletedProcess:
    """Run the installed command (``settings``: more of subprocess.run's, e.g. ``env``)."""
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=timeout, **settings)


def only_json(stdout: str) -> dict:
    """The one strict JSON object that is the whole of ``stdout`` (as `| jq` would read it)."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    report = json.loads(stdout, parse_constant=refuse)  # the whole text, not its last line
    assert isinstance(report, dict) and stdout.endswith("}\n") and stdout.count("\n") == 1, stdout
    if shutil.which("jq"):
        piped = subprocess.run(["jq", "-e", 'type == "object"'], input=stdout, capture_output=True, text=True)
        assert piped.returncode == 0, piped.stderr
    return report


def one_clear_line(result: subprocess.CompletedProcess, code: int, words: str) -> None:
    assert result.returncode == code, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], result.stderr
    assert "Traceback" not in result.stderr
