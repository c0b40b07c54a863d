"""What the control room costs in a browser: `cartpole-tui serve` seen from headless Chromium.

    python -m bench.web [--agent swarm|random] [--episodes 2000] [--seconds 10] [--keys 20]
                        [--width 1280 --height 800] [--screenshot screenshots/serve.png]

(a) first screen: from the page request to the control room drawn in the page (its status line
says "connected"), cold (a new process per visit, as every visitor gets); (b) key-to-screen
latency: a key pressed in the page (`2`, the cart pane on/off) to the page's terminal
showing the change, timed inside the page (keydown → xterm.js parsed the answer), idle
network, median of --keys; (c) websocket bytes a second from the server while a run is live
(`s` with --episodes), over --seconds, and when idle. Needs Debian's chromium and the test
extra (playwright); loopback only; the server is ended at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

TOKEN = "bench-" + os.urandom(8).hex()
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
CHROMIUM_ARGS += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
XTERM_NEEDLE = "this.terminal=new v.Terminal("
SCREEN_JS = """() => {
  const t = window.__xterm; if (!t) return "";
  const b = t.buffer.active, out = [];
  // up to cols: a line of a shrunk terminal keeps its old cells past them
  for (let y = 0; y < t.rows; y++) out.push(b.getLine(b.viewportY + y).translateToString(true, 0, t.cols));
  return out.join("\\n");
}"""


async def expose_xterm(context) -> None:
    """Serve the pages of ``context`` a textual.js whose xterm.js Terminal is ``window.__xterm``
    (the bundle keeps it in a closure), so SCREEN_JS can read what the page shows."""

    async def patched(route):
        response = await route.fetch()
        script = await response.text()
        if XTERM_NEEDLE not in script:
            raise RuntimeError("textual.js changed: update XTERM_NEEDLE in bench/web.py")
        body = script.replace(XTERM_NEEDLE, "this.terminal=window.__xterm=new v.Terminal(", 1)
        await route.fulfill(response=response, body=body)

    await context.route("**/static/js/textual.js", patched)


# In the page: keydown time, then the first parsed write after which the cart pane is shown/hidden.
LATENCY_JS = (
    """() => {
  window.__lat = []; window.__t0 = null; window.__before = null;
  const screen = """
    + SCREEN_JS
    + """;
  const cart = () => screen().includes("Cart ─");  // the pane `2` shows and hides
  document.addEventListener('keydown', () => { window.__before = cart(); window.__t0 = performance.now(); }, true);
  window.__xterm.onWriteParsed(() => {
    if (window.__t0 !== null && cart() !== window.__before) {
      window.__lat.push(performance.now() - window.__t0); window.__t0 = null;
    }
  });
}"""
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1)
    except urllib.error.HTTPError:
        return True  # 401: up
    except OSError:
        return False
    return True


def start_server(agent: str, folder: Path, db: Path | None = None) -> tuple[subprocess.Popen, str]:
    """`cartpole-tui serve` on a free loopback port with seed 1 (its history: ``db``, default in
    ``folder``); returns the process and the address, once it answers."""
    token_file = folder / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    port = free_port()
    app = Path(sys.executable).parent / "cartpole-tui"
    command = [str(app), "serve", "--port", str(port), "--agent", agent, "--seed", "1"]
    command += ["--db", str(db or folder / "runs.sqlite3"), "--token-file", str(token_file)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=folder)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not answers(base + "/"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("bench.web: serve did not start")
        time.sleep(0.1)
    return process, base


async def measure(args: argparse.Namespace, base: str) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=args.chromium, headless=True, args=CHROMIUM_ARGS)
        context = await browser.new_context(viewport={"width": args.width, "height": args.height})

        await expose_xterm(context)
        page = await context.new_page()
        received = [0]
        page.on(
            "websocket",
            lambda ws: ws.on("framereceived", lambda data: received.__setitem__(0, received[0] + len(data))),
        )

        async def wait_screen(text: str, timeout: float = 60_000) -> None:
            await page.wait_for_function(f"() => ({SCREEN_JS})().includes({text!r})", timeout=timeout, polling="raf")

        started = time.perf_counter()
        await page.goto(f"{base}/?token={TOKEN}")
        await wait_screen("Episodes")
        drawn = time.perf_counter() - started
        await wait_screen("● connected")
        connected = time.perf_counter() - started
        print(f"first screen: {drawn:.2f} s drawn, {connected:.2f} s connected to the network")

        await page.locator(".xterm-helper-textarea").focus()
        await page.wait_for_timeout(1000)
        await page.evaluate(LATENCY_JS)
        for _ in range(args.keys):
            count = len(await page.evaluate("window.__lat"))
            await page.keyboard.press("2")
            await page.wait_for_function(f"window.__lat.length > {count}", timeout=10_000)
            await page.wait_for_timeout(100)
        latencies = await page.evaluate("window.__lat")
        print(
            f"key to screen: median {statistics.median(latencies):.1f} ms, "
            f"min {min(latencies):.1f}, max {max(latencies):.1f} (n={len(latencies)})"
        )
        if args.keys % 2:
            await page.keyboard.press("2")  # the cart pane back

        before = received[0]
        await page.wait_for_timeout(args.seconds * 1000)
        idle = (received[0] - before) / args.seconds
        await page.evaluate("() => { const t = document.querySelector('.xterm-helper-textarea'); t && t.focus(); }")
        await page.keyboard.press("n")
        await page.wait_for_timeout(500)  # the focus moves to the episodes field after the key is handled
        await page.keyboard.press("End")
        await page.keyboard.press("Control+u")
        await page.keyboard.type(str(args.episodes))
        await page.keyboard.press("Enter")
        try:
            await wait_screen(f"/{args.episodes}")
        except Exception:
            print(await page.evaluate(SCREEN_JS))
            raise SystemExit("bench.web: the run did not start") from None
        await page.wait_for_timeout(1000)
        before = received[0]
        await page.wait_for_timeout(args.seconds * 1000)
        live = (received[0] - before) / args.seconds
        text = await page.evaluate(SCREEN_JS)
        still_running = f"/{args.episodes}" in text and "done ·" not in text
        print(
            f"websocket to the browser: {live / 1024:.1f} KiB/s while a run is live"
            f"{'' if still_running else ' (the run ended inside the window: raise --episodes)'}, "
            f"{idle / 1024:.2f} KiB/s idle ({args.width}x{args.height} px)"
        )
        if args.screenshot:
            await page.wait_for_function(
                "getComputedStyle(document.querySelector('.textual-terminal')).opacity === '1'"
            )
            await page.screenshot(path=args.screenshot)
            print(f"screenshot: {args.screenshot}")
        await browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.web", description=__doc__.split("\n\n")[0])
    parser.add_argument("--agent", choices=("swarm", "random"), default="swarm")
    parser.add_argument("--episodes", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--keys", type=int, default=20)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--screenshot", help="save the page (PNG) while the run is live")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-web-") as folder:
        process, base = start_server(args.agent, Path(folder))
        try:
            asyncio.run(measure(args, base))
        finally:
            process.terminate()
            process.wait(20)


if __name__ == "__main__":
    main()
