"""One attachment to a network, as the user asked for it on the command line.

Runtime layer (top of env/): it puts together runtime's network, the components'
environment and control client, and the history's recorder and store; ``tui/`` opens one.

Without an address it starts the embedded network (broker and built-in agents in a
child process); with one it joins that broker. The environment runs in this process
unless told otherwise; the control client always does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cartpole_tui.env import defaults
from cartpole_tui.env.components.control import ControlClient
from cartpole_tui.env.components.vector_env import VectorEnvironmentComponent
from cartpole_tui.env.events import EnvironmentObserver, EpisodeFinished, RunFinished, RunStarted
from cartpole_tui.env.history.recorder import StoreRecorder
from cartpole_tui.env.history.store import RunStore
from cartpole_tui.env.runtime.network import LocalNetwork
from cartpole_tui.env.wire import auth
from cartpole_tui.env.wire.transport import parse_address


class AnotherEnvironment(ValueError):
    """The network already has an environment component."""


@dataclass
class SessionOptions:
    connect: str | None = None  # HOST:PORT, or None for the embedded network
    embed_env: bool = True
    env_id: str = defaults.ENV_ID
    seed: int | None = None
    models: int = defaults.MODELS
    agent: str = defaults.AGENT
    offline: bool = False  # no network at all: browse the run history
    population_file: str | None = None  # the embedded swarm's population: restored at start, saved each evolution
    fresh: bool = False  # the embedded swarm starts from random weights (the file is written over)
    parallel: int = defaults.PARALLEL  # instances at once when every agent understands batches


class Session:
    """Network (maybe embedded) + environment (maybe) + control client, recording into a store.

    With the environment here, runs are recorded from its in-process events; with a
    remote one, from what the control room reports (EPISODE_DONE where the
    environment sends it, ENV_DONE always).
    """

    def __init__(
        self,
        options: SessionOptions,
        *,
        on_event: Callable[[object], None] | None = None,
        observers: list[EnvironmentObserver] | None = None,
        on_disconnect: Callable[[str], None] | None = None,
        store: RunStore | None = None,
    ):
        self.options = options
        self.on_event = on_event
        self.recorder = StoreRecorder(store, options.env_id, "") if store is not None else None
        self.observers = ([self.recorder] if self.recorder else []) + list(observers or ())
        self.on_disconnect = on_disconnect
        self.network: LocalNetwork | None = None
        self.environment: VectorEnvironmentComponent | None = None
        self.control: ControlClient | None = None
        self._probed = False  # looked for another environment on the network
        self.failed_network_log: str | None = None  # the kept log of an embedded network that died
        # the broker's address: given (ValueError on a typo, before anything starts) or the embedded one's
        self.host: str | None = None
        self.port: int | None = None
        if options.connect is not None:
            self.host, self.port = parse_address(options.connect)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def embedded(self) -> bool:
        return self.options.connect is None

    def open(self) -> Session:
        """Start or join the network; ConnectionFailed / NetworkStartError on failure (nothing left running)."""
        try:
            if self.embedded and self.network is None:
                self._start_network()
            host, port = self.host, self.port
            assert host is not None and port is not None  # given, or the embedded network's since it started
            if self.options.embed_env and not self.embedded and not self._probed:
                self._refuse_a_second_environment(host, port)  # once: on reconnect ours may still be listed
                self._probed = True
            if self.options.embed_env:
                self._start_environment(host, port)
            if self.recorder is not None:
                self.recorder.address = self.address
            remote_runs = None if self.options.embed_env else self._remote_run_sent
            self.control = ControlClient(host, port, on_event=self._control_event, on_run_sent=remote_runs)
            self.control.expects_run_id = self.options.embed_env
        except Exception:
            self.close()
            raise
        return self

    def _start_network(self) -> None:
        self.network = LocalNetwork(
            models=self.options.models,
            seed=self.options.seed,
            agent=self.options.agent,
            population_file=self.options.population_file,
            fresh=self.options.fresh,
        ).start()
        self.host, self.port = self.network.host, self.network.port
        auth.use_token(self.network.token)  # this process's components join with it

    def _start_environment(self, host: str, port: int) -> None:
        self.environment = VectorEnvironmentComponent(
            host,
            port,
            parallel=self.options.parallel,
            env_id=self.options.env_id,
            seed=self.options.seed,
            on_disconnect=self.on_disconnect,
        )
        for observer in self.observers:
            self.environment.add_observer(observer)
        self.environment.start()

    def _refuse_a_second_environment(self, host: str, port: int) -> None:
        """Two environments answer every start twice and flood the network: look first.

        Our broker lists its clients in its stats; another broker is not asked (no stats)."""
        probe = ControlClient(host, port, name="control")
        try:
            stats = probe.wait_stats(defaults.ENV_PROBE_TIMEOUT)
        finally:
            probe.close()
        if stats is not None and "environment" in stats.clients:
            raise AnotherEnvironment(
                f"an environment is already on {self.address}: add --no-env to use it instead of starting ours"
            )

    def _control_event(self, event: object) -> None:
        if self.recorder is not None and not self.options.embed_env:
            if isinstance(event, EpisodeFinished):
                self.recorder.on_episode(event)
            elif isinstance(event, RunFinished):
                self.recorder.on_run_finished(event)
        if self.on_event is not None:
            self.on_event(event)

    def _remote_run_sent(self, started: RunStarted) -> None:
        # A remote environment's runs are known here from the starts we send.
        for observer in self.observers:
            observer.on_run_started(started)

    def reconnect(self) -> None:
        """Drop the clients and join the broker again; restart the embedded network if it died."""
        self._close_clients()
        if self.network is not None and not self.network.alive:
            self.network.stop()
            self.failed_network_log = self.network.log_path  # None when it ended cleanly (then removed)
            self.network = None
        self.open()

    def _close_clients(self) -> None:
        for part in (self.control, self.environment):
            if part is not None:
                part.close()
        self.control = self.environment = None

    def close(self) -> None:
        self._close_clients()
        if self.network is not None:
            self.network.stop()
            self.network = None
