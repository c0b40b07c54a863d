"""`cartpole-tui serve`: the control room in a browser, one network for every visitor.

textual-serve runs one control room process per browser visit. All of them join the same
network (the embedded one started here, or ``--connect``'s) with ``--no-env`` and the same
``--db``: the environment runs once, in its own process, so a run started in one tab is
the run every tab shows. A visit needs the token (``?token=`` once, then a cookie): the
page, its websocket, its downloads and its static files answer 401 without it.
"""

from __future__ import annotations

import argparse
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

from cartpole_tui.env.runtime.network import LocalNetwork, NetworkStartError, listen_problem
from cartpole_tui.env.swarm.saved import beside_history
from cartpole_tui.env.wire import auth
from cartpole_tui.tui.cli.errors import CommandError

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


def make_server(command: str, host: str, port: int, public_url: str, title: str, token: str):
    """A textual-serve Server that checks the token on every route and serves our page and favicon."""
    from aiohttp import web
    from textual_serve.server import Server

    async def favicon(_: web.Request) -> web.FileResponse:
        return web.FileResponse(WEB / "favicon.svg")

    class TokenServer(Server):
        def initialize_logging(self) -> None:
            super().initialize_logging()
            # aiohttp's access log would print every request line, the token in ?token=… with it.
            logging.getLogger("aiohttp.access").setLevel(logging.WARNING)

        async def on_startup(self, app: web.Application) -> None:
            pass  # serve() prints the address to open, with its token; textual-serve's banner has none

        async def _make_app(self) -> web.Application:  # textual-serve has no public hook for auth
            app = await super()._make_app()
            app.middlewares.append(token_middleware(token))
            app.router.add_get("/favicon.svg", favicon)
            return app

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
                    # what the swarm learned is kept with the run history, as in the terminal
                    population_file=beside_history(args.db) if args.agent == "swarm" else None,
                ).start()
            except NetworkStartError as error:
                raise CommandError(str(error)) from None
            address, token_file = network.address, network.token_file
        if not args.no_env:
            token = ["--token-file", token_file] if token_file else []
            seed = ["--seed", str(args.seed)] if args.seed is not None else []
            environment = subprocess.Popen(
                cli_command("env", "--connect", address, "--db", ":memory:", *token, *seed),
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
        visit = ["--connect", address, "--no-env", "--redraw-hz", f"{args.redraw_hz:g}"]
        visit += ["--db", args.db if args.db == ":memory:" else os.path.abspath(args.db)] if args.db else []
        visit += ["--token-file", token_file] if token_file else []
        server = make_server(
            shlex.join(cli_command(*visit)),
            args.host,
            args.port,
            url,
            f"cartpole-tui — connected to {address}",
            web_token,
        )
        print(f"cartpole-tui serve: the control room of {address} at {url}/?token={web_token}", flush=True)
        try:
            server.serve()
        except OSError as error:
            raise CommandError(f"cannot listen on {args.host}:{args.port}: {error.strerror or error}") from None
    return 0
