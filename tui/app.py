"""The control room: composes the panes and reacts to the network's events.

It owns no network code: the session (env layer) does the talking in its own
threads, the bridge hands its events over, and the app hands each widget the
state it shows. Plots and the cart redraw on timers, only when their data changed.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Footer, Label, ProgressBar, RichLog, Static

from cartpole_tui.env.components.control import ControlTimeout
from cartpole_tui.env.runtime.schedule import RoundResult, ScheduleResult, ScheduleStopped, run_schedule
from cartpole_tui.env.runtime.events import (BrokerStats, ComponentSeen, Disconnected, EpisodeFinished, EvolutionFinished,
                        NetworkError, RunFinished, RunStarted)
from cartpole_tui.env.history.export import export_to_file
from cartpole_tui.env.runtime.network import NetworkStartError
from cartpole_tui.env.runtime.session import Session, SessionOptions
from cartpole_tui.env.history.store import RunStore, default_db_path

from cartpole_tui.tui.bridge import EventsPending, NetworkBridge
from cartpole_tui.tui.data.score_history import ScoreHistory
from cartpole_tui.tui.data.overlays import rolling_overlays
from cartpole_tui.tui.screens.modals import HelpScreen, UnreachableScreen
from cartpole_tui.tui.widgets.cart_view import CartView
from cartpole_tui.tui.widgets.control_panel import ControlPanel
from cartpole_tui.tui.widgets.network_pane import NetworkPane
from cartpole_tui.tui.widgets.runs_table import RunsTable
from cartpole_tui.tui.widgets.score_plot import ScorePlot

PANES = {"1": "plot-pane", "2": "cart-pane", "3": "runs-pane", "4": "network-pane", "5": "log-pane"}
SMALL_HEIGHT = 32  # below this the network and log panes start hidden
RECONNECT_DELAYS = (0.5, 1, 2, 4, 8)
# Measured over a pty (python -m bench.app): each repaint of the plot costs ~2 KiB at 80x24,
# so 2 Hz here and 1 Hz for the plot keep a live run near 8 KiB/s for slow SSH links.
DEFAULT_REDRAW_HZ = 2.0
RUNS_REFRESH_SECONDS = 1.0  # the runs table repaints whole: once a second is enough while a run goes
PAST_RUNS_PLOTTED = 100  # the latest past runs whose episodes are loaded into the plot at start
_CONNECTION_FAILURES = (ConnectionError, NetworkStartError, ValueError, OSError)


class Connected(Message):
    """The session joined the network."""


class ConnectFailed(Message):
    def __init__(self, reason: str):
        super().__init__()
        self.reason = reason


class HistoryLoaded(Message):
    """Past runs' episodes, read from the store in a worker: (number, scores, ENV_DONE average)."""

    def __init__(self, runs: list[tuple[int, np.ndarray, float | None]]):
        super().__init__()
        self.runs = runs


class StorageProblem(Message):
    def __init__(self, text: str):
        super().__init__()
        self.text = text


class ControlRoomApp(App):
    """`cartpole-tui`: start, stop, evolve and watch a swergio CartPole network."""

    CSS_PATH = "app.tcss"
    TITLE = "cartpole-tui"
    AUTO_FOCUS = "#runs-pane"  # not the episodes field: single-letter keys must reach the app
    BINDINGS = [
        Binding("s", "start", "Start"),
        Binding("x", "stop", "Stop"),
        Binding("e", "evolve", "Evolve"),
        Binding("r", "schedule", "Rounds"),
        Binding("d", "toggle_deterministic", "Det"),
        Binding("n", "focus_episodes", "Episodes", show=False),
        Binding("c", "export", "Export", show=False),
        *(Binding(key, f"toggle_pane('{pane}')", "Panes" if key == "1" else "", show=key == "1",
                  key_display="1-5") for key, pane in PANES.items()),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, options: SessionOptions, *, db_path: str | None = None,
                 evolution_timeout: float = 30.0, redraw_hz: float = DEFAULT_REDRAW_HZ):
        super().__init__()
        self.options = options
        self.db_path = db_path
        self.evolution_timeout = evolution_timeout
        self.redraw_hz = redraw_hz
        self.bridge = NetworkBridge(self.post_message, env_embedded=options.embed_env)
        self.store: RunStore | None = None
        self.session: Session | None = None
        self.history = ScoreHistory()
        self.connection = "connecting"
        self.current: RunStarted | None = None
        self.finished_in_run = 0
        self.run_numbers: dict[str, int] = {}
        self._quitting = threading.Event()
        self._schedule_stop: threading.Event | None = None  # set while a schedule runs
        self._shown_revision = -1
        self._shown_observation = None
        self._progress_text: str | None = None  # the progress label waiting for the next redraw
        self._runs_shown_at = 0.0
        self._steps_seen = (0, time.monotonic())
        self.steps_per_second = 0.0
        self.components = 0  # clients the broker reports

    # --- layout ------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        # The widgets are kept as attributes: query_one searches the active screen, which is
        # the help screen while it is open, and events keep arriving then.
        self.status = Static(id="status")
        self.controls = ControlPanel()
        self.progress = ProgressBar(total=1, show_eta=True, id="progress")
        self.progress_label = Label("no run yet", id="progress-label")
        # The plot is the biggest repaint: half the rate of the cart and the progress.
        self.plot = ScorePlot(self.history, redraw_hz=self.redraw_hz / 2, id="plot-pane")
        self.cart = CartView(id="cart-pane")
        self.runs_table = RunsTable(id="runs-pane")
        self.network = NetworkPane(id="network")
        self.log_pane = RichLog(id="log-pane", max_lines=1000, markup=True, wrap=True)
        yield self.status
        yield self.controls
        with Horizontal(id="progress-row"):
            yield self.progress
            yield self.progress_label
        with Horizontal(id="main"):
            yield self.plot
            yield self.cart
        with Horizontal(id="bottom"):
            yield self.runs_table
            with Vertical(id="network-pane") as network_box:
                yield self.network
        yield self.log_pane
        yield Footer(show_command_palette=False)  # ctrl+p is in the help; the keys must fit 80 columns
        self.panes = {"plot-pane": self.plot, "cart-pane": self.cart, "runs-pane": self.runs_table,
                      "network-pane": network_box, "log-pane": self.log_pane}
        for title, pane in zip(("Score", "Cart", "Runs", "Network", "Log"), self.panes.values()):
            pane.border_title = title

    def on_mount(self) -> None:
        self.controls.show_running(False)
        self.progress.display = False
        if self.size.height < SMALL_HEIGHT:
            self.panes["network-pane"].display = False
            self.log_pane.display = False
        self.screen_stack[0].set_class(self.size.height < SMALL_HEIGHT, "-small")
        self.set_interval(1 / self.redraw_hz, self._refresh_views)
        if self.options.offline:
            self.connection = "offline"
            self.controls.disabled = True
        self.network.update_stats(None)
        self._show_status()
        self.connect_network()

    def on_resize(self) -> None:
        self.screen_stack[0].set_class(self.size.height < SMALL_HEIGHT, "-small")
        self._show_status()

    # --- connecting ------------------------------------------------------------------

    def _open_history(self) -> None:
        """Open the store and hand the latest past runs to the plot (in a worker thread)."""
        self.store = RunStore.open(self.db_path, on_error=lambda text: self.post_message(StorageProblem(text)))
        past = [(run.number, self.store.episode_scores(run.run_uid), run.avg_score)
                for run in self.store.runs()[-PAST_RUNS_PLOTTED:]]
        self.post_message(HistoryLoaded(past))

    def on_history_loaded(self, message: HistoryLoaded) -> None:
        for number, scores, average in message.runs:
            if len(scores):
                self.history.extend(scores, number)
                if average is not None:
                    self.history.end_run(average)
        self._refresh_views()

    @work(thread=True, exclusive=True, group="network")
    def connect_network(self) -> None:
        if self.options.offline:
            self._open_history()
            return
        try:
            if self.session is None:
                self._open_history()
                self.session = Session(self.options, on_event=self.bridge.on_control_event, observers=[self.bridge],
                                       on_disconnect=lambda reason: self.bridge.push(Disconnected(reason)),
                                       store=self.store)
            self.session.open()
        except _CONNECTION_FAILURES as error:
            self.post_message(ConnectFailed(str(error)))
            return
        self.post_message(Connected())

    def on_connected(self, _: Connected) -> None:
        self.connection = "connected"
        self.log_line(f"joined the network at {self.session.address}"
                      + (" (embedded broker, built-in agents)" if self.session.embedded else ""))
        if self.session.network is not None and self.session.network.log_path:
            self.log_line(f"[dim]network log: {self.session.network.log_path}[/]")
        self._show_status()
        self._refresh_views()

    def on_connect_failed(self, message: ConnectFailed) -> None:
        self.connection = "unreachable"
        self._show_status()
        self.log_line(f"[red]cannot join the network: {message.reason}[/]")

        def retry(again: bool | None) -> None:
            if again:
                self.connection = "connecting"
                self._show_status()
                self.connect_network()
            else:
                self.exit()

        self.push_screen(UnreachableScreen(message.reason), retry)

    @work(thread=True, exclusive=True, group="network")
    def reconnect(self) -> None:
        attempt = 0
        while not self._quitting.is_set():
            delay = RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)]
            attempt += 1
            if self._quitting.wait(delay):
                return
            try:
                self.session.reconnect()
            except _CONNECTION_FAILURES as error:
                self.bridge.push(NetworkError("app", f"reconnect attempt {attempt} failed: {error}"))
                continue
            self.post_message(Connected())
            return

    def on_storage_problem(self, message: StorageProblem) -> None:
        self.log_line(f"[red]storage: {message.text}[/]")
        self.notify(message.text, title="Run history", severity="error", timeout=10)

    # --- network events ----------------------------------------------------------------

    def on_events_pending(self, _: EventsPending) -> None:
        for event in self.bridge.drain():
            handler = getattr(self, f"_on_{type(event).__name__}", None)
            if handler is not None:
                handler(event)

    def _on_RunStarted(self, event: RunStarted) -> None:
        self.current = event
        self.finished_in_run = 0
        record = next((r for r in reversed(self.store.runs()) if r.run_uid == event.run_id), None)
        self.run_numbers[event.run_id] = record.number if record else len(self.run_numbers) + 1
        self.progress.display = True
        self.progress.update(total=event.episodes or None, progress=0)
        self.controls.show_running(True)
        self.log_line(f"run {self.run_numbers[event.run_id]} started: {event.episodes} episodes"
                      + (", deterministic" if event.deterministic else ""))

    def _on_EpisodeFinished(self, event: EpisodeFinished) -> None:
        number = self.run_numbers.get(event.run_id)
        if number is None:  # a run started by another control client, seen through the control room
            self._on_RunStarted(RunStarted(event.run_id, 0, False))
            number = self.run_numbers[event.run_id]
        self.history.append(event.score, number)
        self.finished_in_run = event.episode
        # shown by the redraw timer: one progress repaint per tick, not one per episode
        window = self.plot.window
        mean = self.history.rolling_mean_at(len(self.history) - 1, window)
        self._progress_text = (f"run {number} · {event.episode}/{self.current.episodes if self.current else '?'}"
                               f" · last {event.score:g} · mean({window}) {mean:.1f}")

    def _on_RunFinished(self, event: RunFinished) -> None:
        number = self.run_numbers.get(event.run_id, "?")
        if event.episodes and len(self.history):
            self.history.end_run(event.avg_score)
        self.current = None
        self.controls.show_running(False)
        ending = "stopped" if event.stopped else "done"
        rate = f", {event.steps_per_second:,.0f} steps/s" if event.steps_per_second else ""
        self.log_line(f"run {number} {ending}: average [b]{event.avg_score:.1f}[/] over {event.episodes} "
                      f"episodes (ENV_DONE){rate}")
        average = f"avg {event.avg_score:.1f}" if event.episodes else "no episode finished"
        self._progress_text = f"run {number} {ending} · {average}"


    def _on_EvolutionFinished(self, event: EvolutionFinished) -> None:
        self.controls.show_evolution(f"done in {event.seconds:.2f}s")
        self.log_line(f"evolution done in {event.seconds:.2f}s (EVO_DONE)")

    def _on_NetworkError(self, event: NetworkError) -> None:
        self.log_line(f"[yellow]{event.source}: {event.text}[/]")

    def _on_ComponentSeen(self, event: ComponentSeen) -> None:
        pane = self.network
        if event.name not in pane.components:
            pane.components.add(event.name)
            self.log_line(f"[dim]component seen: {event.name}[/]")

    def _on_BrokerStats(self, event: BrokerStats) -> None:
        self.network.update_stats(event)
        self.components = len(event.clients)
        self._show_status()

    def _on_Disconnected(self, event: Disconnected) -> None:
        if self.connection != "connected":
            return
        self.connection = "disconnected"
        self.log_line(f"[red]lost the network: {event.reason}; reconnecting[/]")
        if self.current is not None and self.store is not None:
            self.store.end_run(self.current.run_id, avg_score=None, state="failed", ended=time.time())
            self.current = None
            self.controls.show_running(False)
        self._show_status()
        self.reconnect()

    # --- views ------------------------------------------------------------------------

    def _show_status(self) -> None:
        marks = {"connected": "[green]● connected[/]", "connecting": "[yellow]○ connecting…[/]",
                 "disconnected": "[red]● disconnected[/]", "unreachable": "[red]● unreachable[/]",
                 "offline": "[dim]○ offline: run history only[/]"}
        if self.options.offline:
            address = f"history {os.path.basename(self.db_path or default_db_path())}"
        else:
            address = self.session.address if self.session and self.session.port else "starting network…"
        rate = f"  {self.steps_per_second:,.0f} steps/s" if self.steps_per_second else ""
        clients = f"{self.components} clients │ " if self.components else ""
        brand = "[b]cartpole-tui[/] │ " if self.size.width >= 100 else ""
        self.status.update(f"{brand}{address} │ {self.options.env_id} │ {clients}{marks[self.connection]}{rate}")

    def _refresh_views(self) -> None:
        steps, since = self._steps_seen
        now = time.monotonic()
        if now - since >= 1.0:
            self.steps_per_second = (self.bridge.steps - steps) / (now - since)
            self._steps_seen = (self.bridge.steps, now)
            self._show_status()
        if self._progress_text is not None:
            self.progress.update(progress=self.finished_in_run)
            self.progress_label.update(self._progress_text)
            self._progress_text = None
        observation = self.bridge.latest_observation
        if observation is not self._shown_observation:
            self._shown_observation = observation
            self.cart.observation = tuple(float(v) for v in observation)
        if (self.store is not None and self.store.revision != self._shown_revision
                and now - self._runs_shown_at >= RUNS_REFRESH_SECONDS):
            self._shown_revision, self._runs_shown_at = self.store.revision, now
            self.runs_table.show(self.store.runs())

    def log_line(self, text: str) -> None:
        self.log_pane.write(f"[dim]{time.strftime('%H:%M:%S')}[/] {text}")

    # --- actions ------------------------------------------------------------------------

    def _usable_control(self):
        if self.connection != "connected" or self.session is None or self.session.control is None:
            self.notify("offline: no network to control" if self.options.offline else
                        "not connected to the network", severity="warning")
            return None
        return self.session.control

    def action_start(self) -> None:
        self.controls.request_start()

    def on_control_panel_start_requested(self, message: ControlPanel.StartRequested) -> None:
        self.runs_table.focus()  # out of the episodes field: single-letter keys are the app's
        control = self._usable_control()
        if control is None:
            return
        if self.current is not None:
            self.notify("a run is going: stop it first (x)", severity="warning")
            return
        self._start_run(message.episodes, message.deterministic)

    @work(thread=True, group="commands")
    def _start_run(self, episodes: int, deterministic: bool) -> None:
        self._send(self.session.control.start_run, episodes, deterministic, self.options.seed)

    def _send(self, command, *args) -> None:
        """A command to the network (in a worker thread); a lost broker is reported, not raised."""
        try:
            command(*args)
        except ConnectionError as error:
            self.bridge.push(NetworkError("app", f"not sent: {error}"))

    def action_schedule(self) -> None:
        control = self._usable_control()
        if control is None:
            return
        if self.current is not None or self._schedule_stop is not None:
            self.notify("a run is going: stop it first (x)", severity="warning")
            return
        self._schedule_stop = threading.Event()
        self.log_line("schedule started: rounds of (train, evaluate, evolve) until a 100-episode check reaches 475")
        self._run_schedule(control, self._schedule_stop)

    @work(thread=True, exclusive=True, group="schedule")
    def _run_schedule(self, control, stop: threading.Event) -> None:
        try:
            self.bridge.push(run_schedule(control, on_round=self.bridge.push, seed=self.options.seed, stop=stop))
        except ScheduleStopped as stopped:
            self.bridge.push(stopped.result)
        except (ControlTimeout, ConnectionError) as error:
            self.bridge.push(NetworkError("schedule", str(error)))
        finally:
            self._schedule_stop = None

    def _on_RoundResult(self, result: RoundResult) -> None:
        check = f", 100-episode check {result.confirm_avg:.1f}" if result.confirm_avg is not None else ""
        self.log_line(f"round {result.round}: train avg {result.train_avg:.1f}, eval avg [b]{result.eval_avg:.1f}[/]"
                      f"{check}{', evolved' if result.evolved else ''} ({result.wall_seconds:.0f}s)")

    def _on_ScheduleResult(self, result: ScheduleResult) -> None:
        if result.solved:
            text = f"schedule solved: deterministic average {result.final_eval_avg:.1f}"
        else:
            text = f"schedule ended after {len(result.rounds)} rounds, not solved"
        self.log_line(f"[b]{text}[/] in {result.wall_seconds:.0f}s")
        self.notify(text, title="Schedule")

    def action_stop(self) -> None:
        if self._schedule_stop is not None:
            self._schedule_stop.set()
            self.log_line("schedule stopping after the current run")
        self.post_message(ControlPanel.StopRequested())

    def on_control_panel_stop_requested(self, _: ControlPanel.StopRequested) -> None:
        control = self._usable_control()
        if control is None:
            return
        if self.current is None:
            self.notify("no run is going", severity="information")
            return
        self.run_worker(lambda: self._send(control.stop_run), thread=True, group="commands")
        self.log_line("stop requested")

    def action_evolve(self) -> None:
        self.post_message(ControlPanel.EvolveRequested())

    def on_control_panel_evolve_requested(self, _: ControlPanel.EvolveRequested) -> None:
        control = self._usable_control()
        if control is None:
            return
        self.controls.show_evolution("running…")
        self._evolve(control)

    @work(thread=True, exclusive=True, group="evolution")
    def _evolve(self, control) -> None:
        try:
            control.evolve(timeout=self.evolution_timeout)
        except (ControlTimeout, ConnectionError) as error:
            self.call_from_thread(self.controls.show_evolution, "no answer")
            self.bridge.push(NetworkError("evolution", str(error)))

    def action_toggle_deterministic(self) -> None:
        self.controls.toggle_deterministic()

    def action_focus_episodes(self) -> None:
        self.controls.focus_episodes()

    def action_toggle_pane(self, pane_id: str) -> None:
        pane = self.panes[pane_id]
        pane.display = not pane.display

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_export(self) -> None:
        if self.store is None:
            return
        marked = sorted(self.runs_table.marked) or None
        try:
            path = export_to_file(self.store, marked, "csv")
        except Exception as error:  # noqa: BLE001 - any failure to write is the user's to see
            self.notify(f"export failed: {error}", severity="error")
            return
        self.log_line(f"exported {'runs ' + ', '.join(map(str, marked)) if marked else 'all runs'} to {path}")
        self.notify(path, title="Exported")

    def on_runs_table_marks_changed(self, message: RunsTable.MarksChanged) -> None:
        self.plot.overlays = rolling_overlays(self.store, sorted(message.marked),
                                                              self.plot.window)

    def get_system_commands(self, screen):
        yield from super().get_system_commands(screen)
        yield SystemCommand("Start a run", "Start with the episodes and Det of the top bar", self.action_start)
        yield SystemCommand("Stop the run", "ENV_DONE over the finished episodes", self.action_stop)
        yield SystemCommand("Evolve", "One evolution step (EVOLUTION → EVO_DONE)", self.action_evolve)
        yield SystemCommand("Toggle deterministic", "The models act deterministically or not",
                            self.action_toggle_deterministic)
        yield SystemCommand("Export runs to CSV", "The marked runs, or all", self.action_export)
        for key, pane in PANES.items():
            yield SystemCommand(f"Show/hide {pane.removesuffix('-pane')} pane", f"Key {key}",
                                lambda pane=pane: self.action_toggle_pane(pane))

    async def action_quit(self) -> None:
        self._quitting.set()
        self.exit()

    def on_unmount(self) -> None:
        self._quitting.set()
        if self.session is not None:
            self.session.close()
        if self.store is not None:
            self.store.close()
