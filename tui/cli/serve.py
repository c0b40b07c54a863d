"""`cartpole-tui serve`: the control room in a browser, one network for every visitor.

textual-serve runs one control room process per browser visit. All of them join the same
network (the embedded one started here, or ``--connect``'s) with ``--no-env`` and the same
``--db``: the environment runs once, in its own process, and writes that history; every tab
follows its runs (RUN_STARTED, RUN_STATE) and reads the file, so a run started in one tab is
the run every tab shows, and a tab that closes ends nothing. A visit needs the token
(``?token=`` once, then a cookie): the page, its websocket, its downloads and its static files
answer 401 without it.

The browser's own defences are asked for too: the websocket opens only from the page's own
Origin (a page on another port of this host is same-site and would carry the cookie), every
response forbids framing and inline script, and the sessions (``--max-sessions``) and their
terminal size (``defaults.SERVE_MAX_COLUMNS`` x ``SERVE_MAX_ROWS``) are bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import logging
import os
import platform
import shlex
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from cartpole_tui.env import defaults
from cartpole_tui.env.history.store import MEMORY
from cartpole_tui.env.paths import default_db_path
from cartpole_tui.env.runtime.network import LocalNetwork, NetworkStartError, listen_problem
from cartpole_tui.env.swarm.saved import beside_history
from cartpole_tui.env.wire import auth
from cartpole_tui.env.words import plural
from cartpole_tui.tui.cli.errors import CommandError

log = logging.getLogger(__name__)
WEB = Path(__file__).resolve().parent.parent / "web"
COOKIE = "cartpole_tui_token"
ENV_START_TIMEOUT = 30.0
# `python -m` would put the working directory first on sys.path (see env/runtime/network.py).
CLI_ENTRY = "import sys; del sys.path[0]; from cartpole_tui.tui.cli.parser import main; sys.exit(main())"


def cli_command(*arguments: str) -> list[str]:
    """`cartpole-tui ARGS…` run by this interpreter."""
    return [sys.executable, "-c", CLI_ENTRY, *arguments]


def token_middleware(token: str):
    """aiohttp middleware: the token as ``?token=`` (answered with a cookie and a redirect to the
    bare address, so it leaves the address bar) or as that cookie; otherwise 401."""
    from aiohttp import web

    def valid(presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented.encode(), token.encode())

    @web.middleware
    async def check(request: web.Request, handler):
        if valid(request.query.get("token")):
            if request.path == "/":
                found = web.HTTPFound("/")
                found.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/")
                raise found
            return await handler(request)
        if valid(request.cookies.get(COOKIE)):
            return await handler(request)
        raise web.HTTPUnauthorized(text="401: this control room needs its token: open the address `serve` printed\n")

    return check


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of an address, as a browser sends it in ``Origin``."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def security_headers(origin: str) -> dict[str, str]:
    """What every page and file carries: no framing, no referrer, scripts only from this server."""
    socket_origin = "ws" + origin.removeprefix("http")  # http→ws, https→wss
    policy = "; ".join(
        (
            f"default-src 'self' {origin}",
            f"script-src 'self' {origin}",
            # xterm.js positions its cells with inline styles
            f"style-src 'self' {origin} 'unsafe-inline'",
            f"img-src 'self' {origin} data:",
            f"font-src 'self' {origin} data:",
            f"connect-src 'self' {origin} {socket_origin}",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )
    return {"Content-Security-Policy": policy, "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"}


def terminal_size(width: object, height: object) -> tuple[int, int] | None:
    """A page's terminal size clamped to what a session may use; None when it is not two numbers."""
    try:
        columns, rows = int(width), int(height)  # type: ignore[call-overload]  # checked by the except
    except (TypeError, ValueError, OverflowError):
        return None
    return max(1, min(columns, defaults.SERVE_MAX_COLUMNS)), max(1, min(rows, defaults.SERVE_MAX_ROWS))


def full_page(sessions: int) -> str:
    """The page past ``--max-sessions`` (503)."""
    return (
        "<!DOCTYPE html><html><head><title>cartpole-tui: full</title></head><body>"
        f"<p>This control room is full: {plural(sessions, 'session')} open (--max-sessions). "
        "Close a tab that shows it, or try again later.</p></body></html>"
    )


def make_server(
    command: str,
    host: str,
    port: int,
    public_url: str,
    title: str,
    token: str,
    max_sessions: int = defaults.SERVE_MAX_SESSIONS,
):
    """A textual-serve Server that checks the token on every route, the Origin of its websocket,
    caps its sessions and their size, and serves our page, its script and favicon."""
    from aiohttp import web
    from textual_serve.app_service import AppService
    from textual_serve.server import Server

    origin = origin_of(public_url)
    headers = security_headers(origin)

    async def favicon(_: web.Request) -> web.FileResponse:
        return web.FileResponse(WEB / "favicon.svg")

    async def page_script(_: web.Request) -> web.FileResponse:
        return web.FileResponse(WEB / "page.js", headers={"Content-Type": "text/javascript"})

    async def add_headers(_: web.Request, response: web.StreamResponse) -> None:
        response.headers.update(headers)

    class SizedAppService(AppService):
        """A session whose terminal is never larger than SERVE_MAX_COLUMNS x SERVE_MAX_ROWS."""

        async def set_terminal_size(self, width: int, height: int) -> None:
            size = terminal_size(width, height)
            if size is not None:
                await super().set_terminal_size(*size)

    class TokenServer(Server):
        sessions = 0  # websockets open, each with its control room process

        def initialize_logging(self) -> None:
            super().initialize_logging()
            # aiohttp's access log would print every request line, the token in ?token=… with it.
            logging.getLogger("aiohttp.access").setLevel(logging.WARNING)

        async def on_startup(self, app: web.Application) -> None:
            pass  # serve() prints the address to open, with its token; textual-serve's banner has none

        async def _make_app(self) -> web.Application:  # textual-serve has no public hook for auth
            app = await super()._make_app()
            app.middlewares.append(token_middleware(token))
            app.on_response_prepare.append(add_headers)
            app.router.add_get("/favicon.svg", favicon)
            app.router.add_get("/page.js", page_script)
            return app

        def full(self) -> web.Response:
            return web.Response(status=503, text=full_page(self.sessions), content_type="text/html")

        async def handle_index(self, request: web.Request):
            if self.sessions >= max_sessions:
                return self.full()
            return await super().handle_index(request)

        async def handle_websocket(self, request: web.Request) -> web.StreamResponse:  # type: ignore[override]
            # A page on another port of this host is same-site: the browser sends it our cookie.
            if request.headers.get("Origin", "").lower() != origin:
                raise web.HTTPForbidden(text="403: this control room is opened from its own page only\n")
            if self.sessions >= max_sessions:
                return self.full()
            size = terminal_size(request.query.get("width", 80), request.query.get("height", 24)) or (80, 24)
            self.sessions += 1
            websocket = web.WebSocketResponse(heartbeat=15)
            service: AppService | None = None

            async def close() -> None:
                await websocket.close()

            try:  # textual-serve's handler, with the size clamped and the session counted
                await websocket.prepare(request)
                service = SizedAppService(
                    self.command,
                    write_bytes=websocket.send_bytes,
                    write_str=websocket.send_str,
                    close=close,
                    download_manager=self.download_manager,
                    debug=self.debug,
                )
                await service.start(*size)
                await self._process_messages(websocket, service)
            except asyncio.CancelledError:
                await websocket.close()
            except Exception as error:
                log.warning("a session ended on an error: %s", error)
            finally:
                if service is not None:
                    await service.stop()
                self.sessions -= 1
            return websocket

    return TokenServer(command, host=host, port=port, title=title, public_url=public_url, templates_path=WEB)


def _first_line(process: subprocess.Popen, timeout: float) -> str:
    stdout = process.stdout
    if stdout is None:  # started without stdout=PIPE: nothing to read
        return ""
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return lines[0] if lines else ""


@contextmanager
def served_network(args: argparse.Namespace):
    """Yields (address, token file or None) of the network every visit joins; stops what it started."""
    network = None
    environment = None
    try:
        if args.connect:
            address, token_file = args.connect, args.token_file and os.path.abspath(args.token_file)
        else:
            try:
                network = LocalNetwork(
                    models=args.models,
                    seed=args.seed,
                    agent=args.agent,
                    env_id=args.env_id,
                    # what the swarm learned is kept with the run history, as in the terminal
                    population_file=beside_history(args.db, args.env_id) if args.agent == "swarm" else None,
                    share_token=True,  # every visit and the environment join with it
                    fresh=args.fresh,
                ).start()
            except NetworkStartError as error:
                raise CommandError(str(error)) from None
            if network.population_note:
                print(network.population_note, flush=True)
            address, token_file = network.address, network.token_file
        if not args.no_env:
            token = ["--token-file", token_file] if token_file else []
            seed = ["--seed", str(args.seed)] if args.seed is not None else []
            environment = subprocess.Popen(
                cli_command(
                    "env", "--connect", address, "--db", history_path(args), "--env-id", args.env_id, *token, *seed
                ),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                text=True,
            )
            if "connected" not in _first_line(environment, ENV_START_TIMEOUT):
                raise CommandError(f"the environment did not join {address} (see the lines above)")
        yield address, token_file
    finally:
        if environment is not None:
            environment.terminate()
            try:
                environment.wait(10)
            except subprocess.TimeoutExpired:
                environment.kill()
        if network is not None:
            network.stop()


def history_path(args: argparse.Namespace) -> str:
    """The history the environment writes and every visit reads (absolute: visits start elsewhere)."""
    path = args.db or default_db_path()
    return path if path == MEMORY else os.path.abspath(path)


def public_url(args: argparse.Namespace) -> str:
    if args.public_url:
        return args.public_url.rstrip("/")
    host = platform.node() if args.host in ("0.0.0.0", "::", "") else args.host
    return f"http://{host}:{args.port}"


def serve(args: argparse.Namespace) -> int:
    problem = listen_problem(args.host, args.port)  # before the network starts and the address is printed
    if problem is not None:
        raise CommandError(f"cannot listen on {args.host}:{args.port}: {problem}")
    web_token = auth.client_token() or auth.new_token()
    url = public_url(args)
    if not auth.is_loopback(args.host):
        print(
            f"warning: serving on {args.host} over plain HTTP: the token crosses the network in clear; "
            "prefer 127.0.0.1 and an SSH tunnel (ssh -L PORT:127.0.0.1:PORT host)",
            file=sys.stderr,
            flush=True,
        )
    with served_network(args) as (address, token_file):
        visit = ["--connect", address, "--no-env", "--env-id", args.env_id, "--redraw-hz", f"{args.redraw_hz:g}"]
        visit += ["--db", history_path(args)]
        visit += ["--token-file", token_file] if token_file else []
        server = make_server(
            shlex.join(cli_command(*visit)),
            args.host,
            args.port,
            url,
            f"cartpole-tui — connected to {address}",
            web_token,
            args.max_sessions,
        )
        print(f"cartpole-tui serve: the control room of {address} at {url}/?token={web_token}", flush=True)
        try:
            server.serve()
        except OSError as error:
            raise CommandError(f"cannot listen on {args.host}:{args.port}: {error.strerror or error}") from None
    return 0
