"""`cartpole-tui serve` in a real browser: Debian's headless Chromium driven by Playwright.

One server for the module (the embedded network with the random agent, so runs take a
second); what the tests read is the terminal as the page shows it (xterm.js's buffer).
"""

from __future__ import annotations

import asyncio
import csv
import functools
import http.server
import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.web import CHROMIUM_ARGS, SCREEN_JS, expose_xterm
from cartpole_tui.env import defaults

from conftest import free_port, polls, wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (.ci/run installs it)")
APP = Path(sys.executable).parent / "cartpole-tui"
TOKEN = "browser-test-token"


def status_of(url: str, cookie: str | None = None) -> int:
    request = urllib.request.Request(url, headers={"Cookie": cookie} if cookie else {})
    opener = urllib.request.build_opener(NoRedirect)
    try:
        return opener.open(request, timeout=5).status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:  # not listening yet
        return 0


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args):
        return None


@dataclass
class Served:
    url: str
    folder: Path  # the server's working directory
    process: subprocess.Popen


@contextmanager
def serving(folder: Path, *options: str):
    """`cartpole-tui serve OPTIONS…` on a free port in ``folder``; yields its address and process."""
    token_file = folder / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    port = free_port()
    log = open(folder / "serve.log", "w")  # noqa: SIM115 - open for the server's whole life
    command = [str(APP), "serve", "--port", str(port), "--agent", "random", "--seed", "3", *options]
    command += ["--db", str(folder / "runs.sqlite3"), "--token-file", str(token_file)]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: process.poll() is not None or status_of(base + "/") == 401, 60, "serve to answer")
        assert process.poll() is None, (folder / "serve.log").read_text()
        yield Served(base, folder, process)
    finally:
        process.terminate()
        process.wait(20)
        log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`cartpole-tui serve` on a free port; yields its address."""
    with serving(tmp_path_factory.mktemp("serve")) as served:
        yield served


@pytest.fixture
async def browser():
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        instance = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = await instance.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)

        await expose_xterm(context)  # the test reads the terminal as the page shows it
        yield context
        await instance.close()


async def screen(page) -> str:
    return await page.evaluate(SCREEN_JS)


async def wait_screen(page, text: str, timeout: float = 30_000) -> str:
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    try:
        await page.wait_for_function(f"() => ({SCREEN_JS})().includes({text!r})", timeout=timeout, polling=50)
    except PlaywrightTimeout:
        raise AssertionError(f"the page never showed {text!r}; it shows:\n{await screen(page)}") from None
    return await screen(page)


async def open_control_room(context, served: Served):
    base = served.url
    page = await context.new_page()
    response = await page.goto(f"{base}/?token={TOKEN}")
    assert response.status == 200 and page.url == base + "/"  # the token left the address bar
    await wait_screen(page, "● connected")
    await page.locator(".xterm-helper-textarea").focus()
    return page


def test_without_the_token_every_route_answers_401(server):
    base = server.url
    for path in ("/", "/ws", "/download/x", "/static/js/textual.js", "/favicon.svg", "/?token=wrong"):
        assert status_of(base + path) == 401, path
    assert status_of(base + "/", cookie="cartpole_tui_token=wrong") == 401
    assert status_of(f"{base}/?token={TOKEN}") == 302
    assert status_of(base + "/", cookie=f"cartpole_tui_token={TOKEN}") == 200


async def test_a_visit_without_the_token_gets_no_app(server, browser):
    page = await browser.new_page()
    assert (await page.goto(server.url + "/")).status == 401
    assert "control room needs its token" in await page.content()


async def test_the_page_shows_the_control_room_and_a_run_started_in_one_tab_shows_in_the_other(server, browser):
    first = await open_control_room(browser, server)
    second = await open_control_room(browser, server)
    assert (await first.title()).startswith("cartpole-tui — connected to 127.0.0.1:")
    assert await first.evaluate("document.querySelector('link[rel=icon]').href") == server.url + "/favicon.svg"
    text = await screen(first)
    assert "CartPole-v1" in text and "Episodes" in text and "Start" in text
    await first.keyboard.press("s")  # the app's key: start a run of the episodes field's 20
    done = await wait_screen(first, "done · avg")
    average = next(line for line in done.splitlines() if "done · avg" in line).split("done · avg")[1].split()[0]
    seen = await wait_screen(second, f"done · avg {average}")
    assert "20/20" in seen or "average" in seen


async def test_the_first_paint_has_the_footer_and_a_focused_pane_and_keys_work_without_a_click(server, browser):
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))  # the page focused a connecting socket
    await page.goto(f"{server.url}/?token={TOKEN}")
    await wait_screen(page, "● connected")
    lines = (
        await wait_screen(page, "q Quit", timeout=10_000)
    ).splitlines()  # the footer may come a frame later, never a click
    assert re.search(r"\bs Start\b.*\? Help\s+q Quit\b", lines[-1]), lines[-1]
    assert any(line.startswith("┏━ Runs ━") for line in lines), lines  # the focused pane: a heavy border
    await page.keyboard.press("s")  # no click first: the terminal has the keys
    await wait_screen(page, "done · avg")
    assert errors == []


async def test_export_arrives_in_the_browser_as_a_csv_download(server, browser):
    page = await open_control_room(browser, server)
    await page.keyboard.press("s")
    await wait_screen(page, "done · avg")
    async with page.expect_download(timeout=15_000) as info:
        await page.keyboard.press("c")
    download = await info.value
    assert download.suggested_filename.startswith("cartpole-runs-") and download.suggested_filename.endswith(".csv")
    rows = list(csv.DictReader(io.StringIO(Path(await download.path()).read_text())))
    assert rows and {row["state"] for row in rows} >= {"done"} and rows[0]["score"]
    assert not list(server.folder.glob("cartpole-runs-*.csv"))  # nothing left in the server's directory


COOKIE = f"cartpole_tui_token={TOKEN}"


@contextmanager
def another_site_page():
    """A page on another port of 127.0.0.1: same-site for the browser, so it carries serve's cookie."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=os.devnull)
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as other:
        thread = threading.Thread(target=other.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{other.server_address[1]}/"
        finally:
            other.shutdown()


OPEN_SOCKET_JS = """url => new Promise(done => {
    const socket = new WebSocket(url);
    socket.onopen = () => { socket.close(); done("open"); };
    socket.onerror = () => done("refused");
})"""


async def test_a_page_on_another_port_cannot_open_the_control_room(server, browser):
    await open_control_room(browser, server)  # the browser holds the cookie now
    socket_url = server.url.replace("http:", "ws:") + "/ws"
    page = await browser.new_page()
    with another_site_page() as elsewhere:
        await page.goto(elsewhere)  # a 404 page, but its origin is http://127.0.0.1:OTHER
        assert await page.evaluate(OPEN_SOCKET_JS, socket_url) == "refused"
    mine = await browser.new_page()
    await mine.goto(server.url + "/")
    assert await mine.evaluate(OPEN_SOCKET_JS, socket_url) == "open"  # the same call from its own page


async def socket_status(url: str, origin: str | None, query: str = "") -> int:
    """The HTTP status a websocket handshake to serve gets (101 when it opens; closed at once)."""
    import aiohttp

    headers = {"Cookie": COOKIE, **({"Origin": origin} if origin else {})}
    async with aiohttp.ClientSession() as session:
        try:
            async with session.ws_connect(f"{url}/ws{query}", headers=headers):
                return 101
        except aiohttp.WSServerHandshakeError as error:
            return error.status


async def test_the_websocket_opens_only_from_the_public_origin(server):
    assert await socket_status(server.url, "http://127.0.0.1:1") == 403
    assert await socket_status(server.url, "http://localhost:" + server.url.rsplit(":", 1)[1]) == 403
    assert await socket_status(server.url, None) == 403
    assert await socket_status(server.url, "null") == 403
    assert await socket_status(server.url, server.url) == 101


def test_every_response_forbids_framing_referrers_and_inline_script(server):
    for path, cookie in (("/", COOKIE), ("/page.js", COOKIE), ("/static/js/textual.js", COOKIE), ("/", None)):
        request = urllib.request.Request(server.url + path, headers={"Cookie": cookie} if cookie else {})
        try:
            response = urllib.request.urlopen(request, timeout=5)
        except urllib.error.HTTPError as error:  # the 401 without a cookie
            response = error
        headers = response.headers
        assert headers["X-Frame-Options"] == "DENY", path
        assert headers["Referrer-Policy"] == "no-referrer", path
        policy = headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy, path
        assert "unsafe-inline" not in policy.split("script-src")[1].split(";")[0], path


def control_rooms(serve: subprocess.Popen) -> list[int]:
    """Process ids of the control rooms (``--no-env`` visits) serve has started."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [serve.pid]
    while todo:
        for child in children.get(todo.pop(), []):
            todo.append(child)
            try:
                command = (Path("/proc") / str(child) / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"--no-env" in command and Path(command[0].decode()).name.startswith("python"):
                found.append(child)
    return found


def terminal_of(pid: int) -> tuple[int, int]:
    environment = dict(
        line.split(b"=", 1) for line in (Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0") if b"=" in line
    )
    return int(environment[b"COLUMNS"]), int(environment[b"ROWS"])


async def test_a_session_asking_for_a_huge_terminal_gets_a_bounded_one(server):
    import aiohttp

    before = set(control_rooms(server.process))
    headers = {"Cookie": COOKIE, "Origin": server.url}
    async with aiohttp.ClientSession() as session:
        url = f"{server.url}/ws?width=100000&height=100000"
        async with session.ws_connect(url, headers=headers):
            new = wait_for(lambda: set(control_rooms(server.process)) - before, 30, "the session's control room")
            assert terminal_of(new.pop()) == (defaults.SERVE_MAX_COLUMNS, defaults.SERVE_MAX_ROWS)


async def test_a_resize_to_a_huge_terminal_is_clamped(server):
    import aiohttp

    headers = {"Cookie": COOKIE, "Origin": server.url}
    url = f"{server.url}/ws?width=80&height=24"
    async with aiohttp.ClientSession() as session, session.ws_connect(url, headers=headers) as socket:
        await socket.send_json(["resize", {"width": 10**6, "height": 10**6}])
        rows: set[int] = set()

        async def drawn_rows() -> None:  # until a frame reaches past the first screen's 24 rows
            async for message in socket:
                if message.type == aiohttp.WSMsgType.BINARY:
                    rows.update(int(row) for row in re.findall(rb"\x1b\[(\d+);\d+H", message.data))
                if max(rows, default=0) >= defaults.SERVE_MAX_ROWS:
                    return

        await asyncio.wait_for(drawn_rows(), 30)
        assert max(rows) == defaults.SERVE_MAX_ROWS


async def test_the_full_page_counts_one_session_in_the_singular(tmp_path):
    """It said "1 sessions are open"."""
    import aiohttp

    with serving(tmp_path, "--max-sessions", "1") as served:
        async with aiohttp.ClientSession() as session:
            only = await session.ws_connect(f"{served.url}/ws", headers={"Cookie": COOKIE, "Origin": served.url})
            async with session.get(served.url + "/", headers={"Cookie": COOKIE}) as page:
                assert page.status == 503 and "is full: 1 session open (--max-sessions)." in await page.text()
            await only.close()


async def test_sessions_past_the_limit_get_a_page_that_says_it_is_full(tmp_path):
    import aiohttp

    with serving(tmp_path, "--max-sessions", "2") as served:
        headers = {"Cookie": COOKIE, "Origin": served.url}
        async with aiohttp.ClientSession() as session:
            first = await session.ws_connect(f"{served.url}/ws", headers=headers)
            second = await session.ws_connect(f"{served.url}/ws", headers=headers)
            assert await socket_status(served.url, served.url) == 503
            async with session.get(served.url + "/", headers={"Cookie": COOKIE}) as page:
                assert page.status == 503 and "is full: 2 sessions open (--max-sessions)" in await page.text()
            wait_for(lambda: len(control_rooms(served.process)) == 2, 30, "two control rooms")
            await first.close()
            for _ in polls(lambda: status_of(served.url + "/", cookie=COOKIE) == 200, 30, "a session to free up"):
                await asyncio.sleep(0.05)
            assert await socket_status(served.url, served.url) == 101
            await second.close()


def test_the_token_is_printed_once_and_never_logged(server):
    # Last in the module: the visits above have been made and logged by then.
    assert status_of(f"{server.url}/?token={TOKEN}") == 302
    log = (server.folder / "serve.log").read_text()
    assert log.count(TOKEN) == 1, log  # the address to open, and nothing else (no access log line)
    assert f"?token={TOKEN}" in log


async def test_a_run_outlives_the_tab_that_started_it(server, browser):
    """Every tab follows the environment's run: closing the starter changes nothing; the environment
    writes every episode into serve's --db; the other tab lists the run done; both drew the cart."""
    from cartpole_tui.env.history.store import RunStore

    first = await open_control_room(browser, server)
    second = await open_control_room(browser, server)
    await first.keyboard.press("n")
    for _ in range(4):
        await first.keyboard.press("Backspace")
    await first.keyboard.type("1000")
    await first.keyboard.press("Enter")
    for page in (first, second):
        await wait_screen(page, "/1000")
        idle = "waiting for a run"  # the cart pane's text until the cart is drawn (its first line)
        await page.wait_for_function(f"() => !({SCREEN_JS})().includes({idle!r})", timeout=10_000, polling=50)
    await first.close()
    await wait_screen(second, "done · avg", timeout=120_000)
    with RunStore.open(str(server.folder / "runs.sqlite3"), read_only=True) as store:
        run = store.runs()[-1]
        assert run.state == "done" and run.finished == 1000 and not run.followed
        assert len(store.episodes(run.run_uid)) == 1000


async def test_a_resized_browser_window_refits_the_terminal_and_the_app_redraws_whole(server, browser):
    """The new-user pass at 200x60 and back in Chromium: the page's terminal takes the window's
    size and the control room lays itself out again: the status line, the footer, no blank row."""
    page = await open_control_room(browser, server)
    await page.keyboard.press("s")
    await wait_screen(page, "done · avg")
    sizes = [tuple(await page.evaluate("[window.__xterm.cols, window.__xterm.rows]"))]
    for width, height in ((760, 480), (1900, 1150), (1280, 800)):
        await page.set_viewport_size({"width": width, "height": height})
        before = ",".join(map(str, sizes[-1]))
        await page.wait_for_function(f"() => [window.__xterm.cols, window.__xterm.rows].join() !== '{before}'")
        columns, rows = await page.evaluate("[window.__xterm.cols, window.__xterm.rows]")
        sizes.append((columns, rows))
        wide = "cartpole-tui │" if columns >= 100 else "● connected"  # the app's name from 100 columns
        whole = (
            "() => { const lines = (" + SCREEN_JS + ")().split('\\n');"
            f" return lines.length === {rows} && lines[0].includes({json.dumps(wide)})"
            " && lines[lines.length - 1].includes('q Quit') && lines.every(l => l.trim().length > 0)"
            " && lines.some(l => /avg \\(ENV_DONE\\)\\s+best\\s+time\\s+steps\\/s\\s+state/.test(l)); }"
        )
        try:
            await page.wait_for_function(whole, timeout=30_000, polling=100)
        except Exception as error:
            raise AssertionError(f"{error}; at {columns}x{rows} the page shows:\n{await screen(page)}") from None
    assert sizes[1][0] < 100 <= sizes[3][0] < sizes[2][0] and sizes[1][1] < sizes[3][1] < sizes[2][1], sizes


async def test_closing_the_tab_that_runs_a_schedule_ends_it_and_the_other_tab_says_so_and_starts(server, browser):
    """The tab that ran a schedule was closed: the schedule ended without a word and the other tab
    refused s for 35 s ("a schedule is running in another control room"). The closing tab says
    SCHEDULE_ENDED on its way out; the other logs it and starts at once."""
    from cartpole_tui.env.history.store import RunStore

    def runs() -> list:
        with RunStore.open(str(server.folder / "runs.sqlite3"), read_only=True) as store:
            return store.runs()

    first = await open_control_room(browser, server)
    second = await open_control_room(browser, server)
    await first.keyboard.press("r")
    await wait_screen(first, "schedule started")
    await second.keyboard.press("s")  # refused, and the log says why (the toast goes)
    await wait_screen(second, "not started: a schedule is running in another control room (x stops it)")
    await first.close()
    await wait_screen(second, "another control room's schedule ended: its control room left", timeout=10_000)
    wait_for(lambda: runs()[-1].state != "running", 60, "the schedule's last run to end")
    before = len(runs())
    await second.keyboard.press("s")
    wait_for(lambda: len(runs()) > before, 15, "the second tab's run")
    assert "not started" not in (await screen(second)).split("its control room left", 1)[1]
