"""The embedded default network: a broker and the built-in agents on loopback.

Runtime layer (top of env/): the session and ``cartpole-tui serve`` start it; its child runs
env/wire's broker and env/swarm's swarm (or the components' random agent).

:class:`LocalNetwork` starts them in a child process (this module's ``main``) so
that they use the second core and never compete with the UI for the GIL; the
environment stays in the caller's process. The child prints ``RESTORED <generation>
<models>`` when its swarm started from the population file, then ``READY <port>`` once
it listens, and exits when its standard input closes, so it cannot outlive its parent.
Its broker admits only clients presenting this session's random token (handed over in a
0600 file), so other local users cannot drive it.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import threading
from typing import IO, TYPE_CHECKING

from cartpole_tui.env import defaults
from cartpole_tui.env.swarm import saved
from cartpole_tui.env.wire import auth

if TYPE_CHECKING:  # imported in the child only: the app's process needs neither
    from cartpole_tui.env.components.random_agent import RandomAgent
    from cartpole_tui.env.swarm.swarm import Swarm

log = logging.getLogger(__name__)

READY = "READY"
RESTORED = "RESTORED"
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
    ):
        self.population_file = population_file  # the swarm's saved population: loaded, saved after each evolution
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
        self.token_file: str | None = None
        self.restored: saved.Restored | None = None  # what the swarm started from, as its child said

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> LocalNetwork:
        self.token_file = self.token_file or auth.write_token_file(self.token)
        command = [sys.executable, "-c", CHILD_ENTRY, "--agent", self.agent, "--models", str(self.models)]
        command += ["--token-file", self.token_file]
        if self.seed is not None:
            command += ["--seed", str(self.seed)]
        if self.population_file is not None:
            command += ["--save", self.population_file] + ([] if self.fresh else ["--load", self.population_file])
        with tempfile.NamedTemporaryFile("w", prefix="cartpole-tui-network-", suffix=".log", delete=False) as log:
            self.log_path = log.name
            self._process = process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True
            )
        lines = self._read_start_lines(process.stdout) if process.stdout is not None else []
        ready = [line.split() for line in lines if line.startswith(READY)]
        if not ready:
            log_path = self.log_path
            self.stop()
            raise NetworkStartError(f"the embedded network did not start (see {log_path})")
        self.port = int(ready[0][1])
        for line in lines:
            words = line.split()
            if words[:1] == [RESTORED] and len(words) == 3 and all(w.isdigit() for w in words[1:]):
                self.restored = saved.Restored(int(words[1]), int(words[2]))
        return self

    @property
    def population_note(self) -> str | None:
        """What the built-in swarm started from (None for the random agent)."""
        if self.agent != "swarm":
            return None
        return saved.start_note(self.population_file, self.restored, self.models, fresh=self.fresh)

    def _read_start_lines(self, stdout: IO[str]) -> list[str]:
        """The child's lines up to its READY line, or those that came within ``startup_timeout`` s."""
        lines: list[str] = []

        def read() -> None:
            for line in iter(stdout.readline, ""):
                lines.append(line)
                if line.startswith(READY):
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(self.startup_timeout)
        return list(lines)

    def stop(self) -> None:
        process, self._process = self._process, None
        if self.token_file is not None:
            try:
                os.unlink(self.token_file)
            except OSError:
                pass
            self.token_file = None
        if process is None:
            return
        try:
            if process.stdin is not None:  # it is: a pipe (the child exits when it closes)
                process.stdin.close()
            clean = process.wait(timeout=5) == 0
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait()
            clean = False
        if clean and self.log_path:  # a log is kept only when something went wrong
            os.unlink(self.log_path)
            self.log_path = None

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs (None before start and after stop)."""
        return self._process.pid if self._process is not None else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None


def _start_agents(
    host: str, port: int, agent: str, models: int, seed: int | None, load: str | None = None, save: str | None = None
) -> list[RandomAgent | Swarm]:
    if agent == "random":
        from cartpole_tui.env.components.random_agent import RandomAgent

        return [RandomAgent(host, port, seed=seed).start()]
    from cartpole_tui.env.swarm.swarm import Swarm

    return [Swarm(host, port, models=models, seed=seed, load=load, save=save).start()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cartpole-tui network", description=__doc__)
    parser.add_argument("--agent", choices=defaults.AGENTS, default=defaults.AGENT)
    parser.add_argument("--models", type=int, default=defaults.MODELS)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--token-file")
    parser.add_argument("--load", help="population file to start from, when it exists")
    parser.add_argument("--save", help="population file written after every evolution")
    args = parser.parse_args(argv)
    token = auth.read_token_file(args.token_file) if args.token_file else None
    auth.use_token(token)  # the agents present it
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from cartpole_tui.env.wire.broker import Broker

    broker = Broker(defaults.LOOPBACK, 0, token=token).start()
    agents = _start_agents(broker.host, broker.port, args.agent, args.models, args.seed, args.load, args.save)
    restored = getattr(agents[0], "restored", None)
    if restored is not None:
        print(f"{RESTORED} {restored.generation} {restored.rows}", flush=True)
    print(f"{READY} {broker.port}", flush=True)
    try:
        sys.stdin.read()  # until the parent closes the pipe or dies
    except KeyboardInterrupt:
        pass
    for agent in agents:
        agent.close()
    broker.stop()
    os._exit(0)  # daemon listener threads need no join


if __name__ == "__main__":
    main()
