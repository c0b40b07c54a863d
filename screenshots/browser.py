"""``serve.png``: `cartpole-tui serve` in headless Chromium, playing the learned swarm.

The server is started (as `python -m bench.web` does: Debian's /usr/bin/chromium, no browser
download) on the history the terminal session left, whose ``<db>.population.npz`` holds the
solved population; the page starts a deterministic run with the keys a visitor presses and
is saved once a wave of its episodes has played and its cart is off the centre (mid-episode,
not a reset state).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

from bench.web import CHROMIUM_ARGS, SCREEN_JS, TOKEN, expose_xterm, start_server

SHOWCASE_EPISODES = 2000
WIDTH, HEIGHT = 1280, 800  # the page, in pixels
# the cart pane's readout says x: 0.15 off the centre is a state no reset gives (within ±0.05)
# the label's count ("run 21 · 100/2000 · last 500") is in the runs table's row too
ONE_COUNT_JS = (
    rf"(m => m !== null && s.split(` ${{m[1]}}/{SHOWCASE_EPISODES}`).length >= 3)"
    rf"(s.match(/ (\d+)\/{SHOWCASE_EPISODES} · /))"
)
CART_MOVED_JS = r"(m => m !== null && Math.abs(parseFloat(m[1])) >= 0.15)(s.match(/x ([+-]\d+\.\d+)\s+θ/))"


async def _shoot(base: str, path: Path, chromium: str) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        context = await browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
        await expose_xterm(context)
        page = await context.new_page()

        async def until_screen(test: str, what: str, timeout: float = 60_000) -> None:
            """Until the page's terminal text passes ``test`` (a JS expression on ``s``)."""
            try:
                await page.wait_for_function(f"() => {{ const s = ({SCREEN_JS})(); return {test}; }}", timeout=timeout)
            except Exception:
                print(await page.evaluate(SCREEN_JS))
                raise SystemExit(f"screenshots: the page showed no {what}") from None

        await page.goto(f"{base}/?token={TOKEN}")
        await until_screen("s.includes('● connected')", "connection")
        await until_screen("/ done\\s/.test(s)", "history of the schedule")
        await page.locator(".xterm-helper-textarea").focus()
        await page.keyboard.press("d")
        await until_screen("/X\\S?\\s*Det/.test(s)", "Det checked")
        await page.keyboard.press("n")
        await until_screen("s.includes('Done')", "episodes field focused")  # its footer: esc Done
        for _ in range(3):  # keys typed fast can garble the field (issue 20 item 13): type until it says so
            await page.keyboard.press("End")
            await page.keyboard.press("Control+u")
            await page.keyboard.type(str(SHOWCASE_EPISODES))
            try:
                await page.wait_for_function(f"() => ({SCREEN_JS})().includes('Episodes {SHOWCASE_EPISODES} ')")
                break
            except Exception:
                continue
        await page.keyboard.press("Enter")
        await until_screen(f"s.includes('/{SHOWCASE_EPISODES}')", "run started")
        # a wave of episodes played (the plot and the network show the run), then the cart mid-episode
        await until_screen(f"/ [1-9]\\d{{2,}}\\/{SHOWCASE_EPISODES}/.test(s)", "100 episodes played", 120_000)
        # one count in the progress label and the runs table (it repaints once a second), the cart mid-episode
        await until_screen(f"{ONE_COUNT_JS} && {CART_MOVED_JS}", "one count in label and table, cart mid-episode")
        await page.wait_for_function("getComputedStyle(document.querySelector('.textual-terminal')).opacity === '1'")
        await page.screenshot(path=str(path))
        print(path, flush=True)
        await browser.close()


def shoot_serve(directory: str, db_path: str) -> str:
    """serve.png in ``directory``, from a server on ``db_path`` (its population beside it)."""
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    path = Path(directory) / "serve.png"
    with tempfile.TemporaryDirectory(prefix="screenshots-serve-") as folder:
        process, base = start_server("swarm", Path(folder), Path(db_path))
        try:
            asyncio.run(_shoot(base, path, chromium))
        finally:
            process.terminate()
            process.wait(20)
    return str(path)
