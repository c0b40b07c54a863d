"""One attachment to a network, as the user asked for it on the command line.

Runtime layer (top of env/): it puts together runtime's network, the components'
environment and control client, and the history's recorder and store; ``tui/`` opens one.

Without an address it starts the embedded network (broker and built-in agents in a
child process); with one it joins that broker. The environment runs in this process
unless told otherwise; the control client always does.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cartpole_tui.env import defaults
from cartpole_tui.env.components.control import ControlClient
from cartpole_tui.env.components.vector_env import VectorEnvironmentComponent
from cartpole_tui.env.events import EnvironmentObserver, NetworkError, RunFinished, StopAnswered
from cartpole_tui.env.history.recorder import StoreRecorder
from cartpole_tui.env.history.store import RunStore
from cartpole_tui.env.history.tensorboard import TensorBoardMirror
from cartpole_tui.env.runtime.network import LocalNetwork
from cartpole_tui.env.runtime.observed_run import ObservedRun
from cartpole_tui.env.runtime.run_events import RunEvents
from cartpole_tui.env.wire import auth
from cartpole_tui.env.wire.transport import ConnectionLost, parse_address
from cartpole_tui.env.words import average

log = logging.getLogger(__name__)


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
    tensorboard: str | None = None  # a folder: each run's episodes mirrored there as they end


class Session:
    """Network (maybe embedded) + environment (maybe) + control client, recording into a store.

    ``on_event`` gets one stream of events (:class:`~.run_events.RunEvents` decides which copy
    of a run's events counts). With the environment here, it records its runs into the store
    as they happen; with a remote one, the store records what this control room follows,
    unless it is the file that environment writes. ``observers`` see the environment's steps.
    With ``tensorboard`` set, the same stream is mirrored there: whichever process plays or
    follows a run writes what it sees, as it records its history.
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
        here = options.embed_env
        self.recorder = StoreRecorder(store, options.env_id, "") if store is not None and here else None
        self.events = RunEvents(self._hand_on, environment_here=here, store=store, env_id=options.env_id)
        self.observers = ([self.recorder] if self.recorder else []) + [self.events.observer(), *(observers or ())]
        self.on_disconnect = on_disconnect
        self.mirror: TensorBoardMirror | None = None
        self.store = store
        self.observed_run = ObservedRun()  # the published environment's run, from its observations
        self.published_environment = False  # the environment elsewhere answered no state query: it knows no STOP
        self._no_stop_told: str | None = None  # the run whose first `x` was answered "no STOP"
        self._abandoned: set[str] = set()  # runs stopped here that their environment plays on
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
            if self.options.tensorboard is not None and self.mirror is None:
                self.mirror = TensorBoardMirror(self.options.tensorboard, on_error=self._mirror_failed)
            if self.embedded and self.network is None:
                self._start_network()
            host, port = self.host, self.port
            assert host is not None and port is not None  # given, or the embedded network's since it started
            if not self.embedded and not self._probed:
                self._probe(host, port)  # once: on reconnect ours may still be listed
                self._probed = True
            if self.options.embed_env:
                self._start_environment(host, port)
            for recorder in (self.recorder, self.events.recorder):
                if recorder is not None:
                    recorder.address = self.address
            if not self.options.embed_env:
                # before the client joins `control`: an episode heard before the query went out began
                # the run as one of unknown size, and the answer (its size, its episodes) was then ignored
                self.events.asked_state()
            self.control = ControlClient(
                host,
                port,
                on_event=self._from_network,
                on_run_sent=self.events.sent,
                watch_cart=not self.options.embed_env,  # with the environment here, its steps draw the cart
            )
            self.control.admits = self.events.admits
            if not self.options.embed_env:
                self.control.query_state()  # a run going elsewhere: catch up with it
            elif self.environment is not None:
                self._await_environment_listening(self.environment, self.control)
            if not self.embedded:
                self._watch_if_published(self.control)
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
            env_id=self.options.env_id,
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
        self.events.expect_environment(self.environment.client.name)
        for observer in self.observers:
            self.environment.add_observer(observer)
        if self.recorder is not None:
            self.environment.logic.history = self.recorder.history  # announced with each run
            self.environment.logic.recorded = self.recorder.store.has_run  # a RUN_ID of the file's is refused
        self.environment.start()

    @staticmethod
    def _await_environment_listening(environment: VectorEnvironmentComponent, control: ControlClient) -> None:
        """Ask the environment started here for its state until it hears the ``control`` room
        (told in-process: an answer on the wire names a SENT_BY any peer can take). swergio.Server
        reads each client in a thread of its own, and a START sent as soon as this control client
        joined could pass the environment's JOINROOM there and be lost (the real published
        network through swergio.Server, under load: `run --connect` said the environment did not
        answer for 60 s). Past the limit, go on: a start then says that itself. ConnectionLost
        when the environment's connection ends meanwhile (the app then joins again)."""
        deadline, retry = time.monotonic() + defaults.ENV_LISTEN_TIMEOUT, defaults.ENV_LISTEN_RETRY
        while time.monotonic() < deadline:
            if not environment.client.listening:
                raise ConnectionLost("the environment lost its connection before it answered")
            control.query_state()  # traffic in `control`: the environment hears it once it is a member
            if environment.heard_control.wait(retry):
                return
            retry = min(2 * retry, defaults.ENV_LISTEN_RETRY_MAX)
        log.warning("the environment started here did not answer a state query in %.0fs", defaults.ENV_LISTEN_TIMEOUT)

    def _probe(self, host: str, port: int) -> None:
        """Before anything of ours joins an address we did not start, look at what answers there:
        NotABroker (a ConnectionError) when it is no swergio broker (an HTTP server, say).

        With our environment to start, also look for another one: two environments answer every
        start twice and flood the network. Our broker lists its clients in its stats; another
        broker is not asked (no stats)."""
        probe = ControlClient(host, port, name="control")
        try:
            probe.client.check_broker()
            stats = probe.wait_stats(defaults.ENV_PROBE_TIMEOUT) if self.options.embed_env else None
        finally:
            probe.close()
        if stats is not None and "environment" in stats.clients:
            raise AnotherEnvironment(
                f"an environment is already on {self.address}: add --no-env to use it instead of starting ours"
            )

    def _watch_if_published(self, control: ControlClient) -> None:
        """No answer to the state query: the published environment, which tells nothing but its
        observations. Then (only then: it is every step's traffic) watch them for the cart, the
        steps and the episodes. A broker that sends no stats (swergio.Server) carries tens of
        steps a second: then the control client also listens to the models' LOGITS, so that a
        stall names the model that did not answer."""

        def decide() -> None:
            if self.control is not control:
                return
            if not self.options.embed_env and not control.environment_answered:
                self.published_environment = True
                control.watch_observations(self._observed)
            if control.wait_stats(defaults.ENV_PROBE_TIMEOUT) is None:
                # closed meanwhile (the app quit, the network was lost: said where it happens)
                with contextlib.suppress(ConnectionError):
                    control.watch_models()

        timer = threading.Timer(self.events.announce_wait, decide)
        timer.daemon = True
        timer.start()

    def _observed(self, observation: tuple[float, ...], reward: float | None, done: bool, sender: object) -> None:
        if not self.events.observes(sender):
            return  # not the environment's: neither the cart nor the episodes count it
        self.observed_run.observed(reward is None, reward or 0.0, done)
        if reward is not None:
            for observer in self.observers:
                observer.on_step(np.array(observation), reward, done)
        self.events.observed(reward is None, reward or 0.0, done)

    def _mirror_failed(self, text: str) -> None:
        self._hand_on(NetworkError("tensorboard", text))

    def _hand_on(self, event: object) -> None:
        if self.mirror is not None:
            self.mirror.take(event)
        if self.on_event is not None:
            self.on_event(event)

    def stop_run(self) -> StopAnswered:
        """``x``: STOP the run. The published environment knows no STOP: the first ``x`` says so and
        how long it plays on; a second one stops waiting (the run ends stopped here, and its late
        ENV_DONE is recorded when it comes)."""
        control = self.control
        if control is None:
            raise ConnectionError("not connected to the network")
        elsewhere = control.schedule_elsewhere
        control.stop_run()  # the published environment ignores it; ours answers ENV_DONE (STOPPED)
        if elsewhere:  # its room hears the STOP too
            return StopAnswered("stop requested: the schedule of another control room ends on it")
        run_id = control.run_id
        if not self.published_environment or run_id is None or run_id in self._abandoned:
            return StopAnswered("stop requested")
        if self._no_stop_told != run_id:
            self._no_stop_told = run_id
            return StopAnswered(self.observed_run.no_stop_text(control.asked))
        self._abandoned.add(run_id)
        run = self.observed_run
        average = sum(run.scores) / len(run.scores) if run.scores else 0.0
        self.stopped_unanswered(RunFinished(run_id, average, len(run.scores), stopped=True, scores=list(run.scores)))
        return StopAnswered(
            "stopped waiting: the run is recorded as stopped; their environment plays on and its ENV_DONE"
            " will be recorded when it comes"
        )

    def _from_network(self, event: object) -> None:
        """The control client's events; the late ENV_DONE of a run stopped here is recorded, then told."""
        if isinstance(event, RunFinished) and event.run_id in self._abandoned:
            self._abandoned.discard(event.run_id)
            if self.store is not None:
                try:
                    self.store.end_run(
                        event.run_id, avg_score=event.avg_score, state="done", ended=event.ended_at or time.time()
                    )
                except KeyError:  # not a run of this history (another control room records it)
                    pass
            self._hand_on(
                NetworkError(
                    "environment",
                    f"the run stopped here finished after all: average {average(event.avg_score)} over"
                    f" {event.episodes} episodes (ENV_DONE, recorded)",
                    event.run_id,
                )
            )
            return
        self.events.from_network(event)

    def stopped_unanswered(self, result: RunFinished) -> None:
        """A run stopped here whose environment did not answer the STOP: it ends stopped."""
        if self.recorder is not None and result.run_id is not None:  # ours, interrupted while stopping
            self.recorder.on_run_finished(result)
        self.events.unanswered_stop(result)

    def reconnect(self) -> None:
        """Drop the clients and join the broker again; restart the embedded network if it died."""
        self._close_clients()
        self.events.lost()
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
        if self.mirror is not None:  # what it was told is written first
            self.mirror.close()
            self.mirror = None
