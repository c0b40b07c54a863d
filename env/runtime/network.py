"""The embedded default network: a broker and the built-in agents on loopback.

Runtime layer (top of env/): the session and ``cartpole-tui serve`` start it; its child runs
env/wire's broker and env/swarm's swarm (or the components' random agent).

:class:`LocalNetwork` starts them in a child process (this module's ``main``) so
that they use the second core and never compete with the UI for the GIL; the
environment stays in the caller's process. The child prints ``RESTORED <generation>
<models>`` when its swarm started from the population file, then ``READY <port>`` once it
listens (or ``FAILED <one line>``), and exits when its standard input closes, so it cannot
outlive its parent. Its broker admits only clients presenting this session's random token,
handed over as the first line of that pipe, so other local users cannot drive it.

Only when other processes must join too (``share_token``: `serve`'s visits) is the token
written to a 0600 file, ``cartpole-tui-token-<pid>-…`` in the temp folder: the parent removes
it when it stops, the child when its parent is gone (even after a kill -9), and any start
removes the files of owners no longer running.
Its log (stderr, a temporary file) is removed when it ends cleanly, by whichever of the two
sees it end (the parent may be gone): only the log of a network that failed is kept, and its
path is said.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from typing import IO, TYPE_CHECKING

from cartpole_tui.env import defaults
from cartpole_tui.env.swarm import saved
from cartpole_tui.env.wire import auth, protocol

if TYPE_CHECKING:  # imported in the child only: the app's process needs neither
    from cartpole_tui.env.components.random_agent import RandomAgent
    from cartpole_tui.env.swarm.swarm import Swarm

log = logging.getLogger(__name__)

READY = "READY"
FAILED = "FAILED"  # the child's one line when a part could not start (a bad population file)
TOKEN_FILE_PREFIX = "cartpole-tui-token-"
RESTORED = "RESTORED"
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt): (.+)$")
# `python -m` would put the working directory first on sys.path, and a folder holding its
# own `cartpole_tui` (or anything else we import) would run instead of ours: drop it.
CHILD_ENTRY = "import sys; del sys.path[0]; from cartpole_tui.env.runtime.network import main; main()"


class NetworkStartError(RuntimeError):
    """The embedded network did not come up."""


class LocalNetwork:
    """Broker + built-in agents in a child process, on loopback and a free port."""

    def __init__(
        self,
        *,
        models: int = defaults.MODELS,
        seed: int | None = None,
        agent: str = defaults.AGENT,
        startup_timeout: float = 15.0,
        population_file: str | None = None,
        fresh: bool = False,
        share_token: bool = False,
        env_id: str = defaults.ENV_ID,
    ):
        self.env_id = env_id  # the swarm's models are built for its spaces
        self.population_file = population_file  # the swarm's population: loaded, saved at each evolution and vote
        self.fresh = fresh  # start from a random population (and save over the file)
        self.models = models
        self.seed = seed
        self.agent = agent
        self.startup_timeout = startup_timeout
        self.host = defaults.LOOPBACK
        self.port: int | None = None
        self.log_path: str | None = None
        self._process: subprocess.Popen | None = None
        self.token = auth.new_token()
        self.share_token = share_token
        self.token_file: str | None = None  # with share_token: the token for other processes
        self.restored: saved.Restored | None = None  # what the swarm started from, as its child said

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> LocalNetwork:
        remove_stale_token_files()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        command = [sys.executable, "-c", CHILD_ENTRY, "--agent", self.agent, "--models", str(self.models)]
        command += ["--env-id", self.env_id]
        if self.share_token:
            self.token_file = write_token_file(self.token)
            command += ["--remove-on-exit", self.token_file]
        if self.seed is not None:
            command += ["--seed", str(self.seed)]
        if self.population_file is not None:
            command += ["--save", self.population_file] + ([] if self.fresh else ["--load", self.population_file])
        with tempfile.NamedTemporaryFile("w", prefix="cartpole-tui-network-", suffix=".log", delete=False) as log:
            self.log_path = log.name
            command += ["--log", log.name]
            self._process = process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True
            )
        if process.stdin is not None:  # it is: a pipe, whose first line is the token
            process.stdin.write(self.token + "\n")
            process.stdin.flush()
        lines = self._read_start_lines(process.stdout) if process.stdout is not None else []
        failed = next((line for line in lines if line.startswith(FAILED)), None)
        if failed is not None:  # it said why in one line; its log is kept all the same, and said
            log_path, self.log_path = self.log_path, None
            reason = failed[len(FAILED) :].strip()
            if self.population_file is not None and not self.fresh and "population" in reason:
                # a retry reads the same file: the way out is --fresh (new-user pass 4)
                reason += " (--fresh starts from random weights and saves over it; or move it aside)"
            raise NetworkStartError(f"the embedded network did not start: {reason}; its log: {log_path}")
        ready = [line.split() for line in lines if line.startswith(READY)]
        if not ready:
            log_path = self.log_path
            self.stop()
            why = last_error(log_path) if log_path else None
            raise NetworkStartError(
                f"the embedded network did not start{': ' + why if why else ''}; its log: {log_path}"
            )
        self.port = int(ready[0][1])
        for line in lines:
            words = line.split()
            if words[:1] == [RESTORED] and len(words) == 3 and all(w.isdigit() for w in words[1:]):
                self.restored = saved.Restored(int(words[1]), int(words[2]))

    @property
    def population_note(self) -> str | None:
        """What the built-in swarm started from (None for the random agent)."""
        if self.agent != "swarm":
            return None
        return saved.start_note(self.population_file, self.restored, self.models, fresh=self.fresh)

    def _read_start_lines(self, stdout: IO[str]) -> list[str]:
        """The child's lines up to its READY (or FAILED) line, or those that came within ``startup_timeout`` s."""
        lines: list[str] = []

        def read() -> None:
            for line in iter(stdout.readline, ""):
                lines.append(line)
                if line.startswith((READY, FAILED)):
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(self.startup_timeout)
        return list(lines)

    def stop(self) -> None:
        process, self._process = self._process, None
        if self.token_file is not None:
            _remove(self.token_file)
            self.token_file = None
        if process is None:
            return
        try:
            if process.stdin is not None:  # it is: a pipe (the child exits when it closes)
                process.stdin.close()
            clean = process.wait(timeout=5) in (0, 1)  # 1: it said why in its FAILED line
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait()
            clean = False
        if clean and self.log_path:  # a log is kept only when something went wrong
            with contextlib.suppress(FileNotFoundError):  # the child removes it itself at a clean end
                os.unlink(self.log_path)
            self.log_path = None

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs (None before start and after stop)."""
        return self._process.pid if self._process is not None else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None


def write_token_file(token: str) -> str:
    """A new 0600 file holding ``token``, named after this process (see remove_stale_token_files)."""
    handle, path = tempfile.mkstemp(prefix=f"{TOKEN_FILE_PREFIX}{os.getpid()}-")  # mkstemp makes it 0600
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(token + "\n")
    return path


def remove_stale_token_files() -> None:
    """Remove this user's token files whose owning process is gone (both killed at once, -9)."""
    folder = tempfile.gettempdir()
    try:
        names = [name for name in os.listdir(folder) if name.startswith(TOKEN_FILE_PREFIX)]
    except OSError:
        return
    for name in names:
        owner = name[len(TOKEN_FILE_PREFIX) :].split("-", 1)[0]
        path = os.path.join(folder, name)
        try:
            if not owner.isdigit() or os.lstat(path).st_uid != os.getuid() or _running(int(owner)):
                continue
        except OSError:
            continue
        _remove(path)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's (never removed) or not a pid at all
    return True


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def listen_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on (an unknown name, a port in use), or None: for a
    server to say so before it starts anything (`serve`, whose web server binds last)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will
            probe.bind(address)
    except OSError as error:
        return error.strerror or str(error)
    return None


def last_error(log_path: str) -> str | None:
    """What a failed child said last: the message of its exception (a traceback's last line)."""
    try:
        with open(log_path, encoding="utf-8", errors="replace") as log:
            lines = [line.strip() for line in log.read()[-4096:].splitlines() if line.strip()]
    except OSError:
        return None
    if not lines:
        return None
    raised = EXCEPTION_LINE.match(lines[-1])  # "ValueError: …": the message, without the class
    text = raised.group(1) if raised else lines[-1]
    return "".join(c if c.isprintable() else " " for c in text)[:300]  # a line of the screen, never control codes


def _start_agents(args: argparse.Namespace, host: str, port: int) -> list[RandomAgent | Swarm]:
    from cartpole_tui.env.components.spaces import spaces_of

    actions = spaces_of(args.env_id).actions  # ValueError: said in one line, as a bad population file
    if args.agent == "random":
        from cartpole_tui.env.components.random_agent import RandomAgent

        return [RandomAgent(host, port, n_actions=actions, seed=args.seed).start()]
    from cartpole_tui.env.swarm.swarm import Swarm

    swarm = Swarm(host, port, models=args.models, seed=args.seed, load=args.load, save=args.save, env_id=args.env_id)
    return [swarm.start()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cartpole-tui network", description=__doc__)
    parser.add_argument("--agent", choices=defaults.AGENTS, default=defaults.AGENT)
    parser.add_argument("--models", type=int, default=defaults.MODELS)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--env-id", default=defaults.ENV_ID, help="the environment the models are built for")
    parser.add_argument("--remove-on-exit", metavar="FILE", help="the shared token file, removed when this exits")
    parser.add_argument("--load", help="population file to start from, when it exists")
    parser.add_argument("--save", help="population file written after every evolution")
    parser.add_argument("--log", help="this child's log (its stderr): removed when it ends cleanly")
    args = parser.parse_args(argv)
    # A closed terminal hangs up the whole process group: this child ends when its stdin
    # closes instead, cleanly, so that it removes its log (the parent may be gone already).
    if hasattr(signal, "SIGHUP"):  # not on Windows
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        _serve(args, sys.stdin.readline().strip())  # the first line of the pipe is the token
    finally:
        if args.remove_on_exit:  # the parent may be gone (kill -9): nobody else would remove it
            _remove(args.remove_on_exit)
    os._exit(0)  # daemon listener threads need no join


def _serve(args: argparse.Namespace, token: str) -> None:
    """Run the broker and agents until the parent closes the pipe or dies."""
    if not token:  # the parent went away before it said the token
        return
    auth.use_token(token)  # the agents present it
    protocol.printable_logs(logging.INFO, "%(asctime)s %(name)s %(levelname)s %(message)s")
    from cartpole_tui.env.wire.broker import Broker

    broker = Broker(defaults.LOOPBACK, 0, token=token).start()
    try:
        agents = _start_agents(args, broker.host, broker.port)
    except ValueError as error:  # a bad population file or environment: said in one line, the parent shows it
        broker.stop()
        print(f"{FAILED} {' '.join(str(error).split())}", flush=True)
        if args.remove_on_exit:
            _remove(args.remove_on_exit)
        os._exit(1)  # the log is kept: the parent says where
    restored = getattr(agents[0], "restored", None)
    if restored is not None:
        print(f"{RESTORED} {restored.generation} {restored.rows}", flush=True)
    try:
        print(f"{READY} {broker.port}", flush=True)
        sys.stdin.read()  # until the parent closes the pipe or dies
    except (KeyboardInterrupt, BrokenPipeError):  # a broken pipe: the parent died before it read READY
        pass
    for agent in agents:
        agent.close()
    broker.stop()
    if args.log:  # a clean end: nothing to keep, whether or not the parent is still there to remove it
        with contextlib.suppress(OSError):
            os.unlink(args.log)


if __name__ == "__main__":
    main()
