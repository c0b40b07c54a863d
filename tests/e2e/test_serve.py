"""`cartpole-tui serve` in a real browser: Debian's headless Chromium driven by Playwright.

One server for the module (the embedded network with the random agent, so runs take a
second); what the tests read is the terminal as the page shows it (xterm.js's buffer).
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.web import CHROMIUM_ARGS, SCREEN_JS, expose_xterm

from conftest import free_port, wait_for

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


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`cartpole-tui serve` on a free port; yields its address."""
    folder = tmp_path_factory.mktemp("serve")
    token_file = folder / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    port = free_port()
    log = open(folder / "serve.log", "w")  # noqa: SIM115 - open for the server's whole life
    command = [str(APP), "serve", "--port", str(port), "--agent", "random", "--seed", "3"]
    command += ["--db", str(folder / "runs.sqlite3"), "--token-file", str(token_file)]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: process.poll() is not None or status_of(base + "/") == 401, 60, "serve to answer")
        assert process.poll() is None, (folder / "serve.log").read_text()
        yield Served(base, folder)
    finally:
        process.terminate()
        process.wait(20)
        log.close()


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
    await page.goto(f"{server.url}/?token={TOKEN}")
    await wait_screen(page, "● connected")
    lines = (
        await wait_screen(page, "q Quit", timeout=10_000)
    ).splitlines()  # the footer may come a frame later, never a click
    assert re.search(r"\bs Start\b.*\? Help\s+q Quit\b", lines[-1]), lines[-1]
    assert any(line.startswith("┏━ Runs ━") for line in lines), lines  # the focused pane: a heavy border
    await page.keyboard.press("s")  # no click first: the terminal has the keys
    await wait_screen(page, "done · avg")


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


def test_the_token_is_printed_once_and_never_logged(server):
    # Last in the module: the visits above have been made and logged by then.
    assert status_of(f"{server.url}/?token={TOKEN}") == 302
    log = (server.folder / "serve.log").read_text()
    assert log.count(TOKEN) == 1, log  # the address to open, and nothing else (no access log line)
    assert f"?token={TOKEN}" in log
