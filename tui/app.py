"""The control room: reacts to the network's events and to the keys, and tells the main
screen what to show.

It owns no network code: the controller does the talking in its own threads and queues
what happens; the app drains that queue and dispatches each event by its type. Plots
and the cart redraw on timers, only when their data changed.
"""

from __future__ import annotations

import io
import os
import time
from functools import singledispatchmethod

from rich.text import Text
from textual.app import App, SystemCommand

from cartpole_tui.env import defaults
from cartpole_tui.env.events import (
    BrokerStats,
    ComponentSeen,
    Disconnected,
    EpisodeFinished,
    EvolutionFinished,
    NetworkError,
    RunFinished,
    RunStarted,
)
from cartpole_tui.env.history.export import default_export_path, export_runs, export_to_file
from cartpole_tui.env.history.store import RunStore
from cartpole_tui.env.paths import default_db_path
from cartpole_tui.env.runtime.schedule import RoundResult, ScheduleResult
from cartpole_tui.env.runtime.session import Session, SessionOptions
from cartpole_tui.env.wire import auth
from cartpole_tui.tui.bindings import bindings, palette_entries
from cartpole_tui.tui.controller import (
    Connected,
    ConnectFailed,
    Controller,
    EvolutionFailed,
    HistoryLoaded,
    StorageProblem,
)
from cartpole_tui.tui.data.overlays import rolling_overlays
from cartpole_tui.tui.data.population import PopulationHistory
from cartpole_tui.tui.data.score_history import ScoreHistory
from cartpole_tui.tui.data.words import plural
from cartpole_tui.tui.messages import (
    DetailsRequested,
    EventsPending,
    EvolveRequested,
    MarksChanged,
    StartRequested,
    StopRequested,
)
from cartpole_tui.tui.screens.main import MainScreen
from cartpole_tui.tui.screens.modals import HelpScreen, UnreachableScreen
from cartpole_tui.tui.screens.run_details import RunDetailsScreen

RUNS_REFRESH_SECONDS = 1.0  # the runs table repaints whole: once a second is enough while a run goes
CONNECTION_MARKS = {
    "connected": ("● connected", "green"),
    "connecting": ("○ connecting…", "yellow"),
    "disconnected": ("● disconnected", "red"),
    "unreachable": ("● unreachable", "red"),
    "offline": ("○ offline: run history only", "dim"),
}
NETWORK_ACTIONS = {"start", "stop", "evolve", "schedule", "toggle_deterministic", "focus_episodes"}


class ControlRoomApp(App):
    """`cartpole-tui`: start, stop, evolve and watch a swergio CartPole network."""

    CSS_PATH = "app.tcss"
    TITLE = "cartpole-tui"
    AUTO_FOCUS = "#runs-pane"  # not the episodes field: single-letter keys must reach the app
    BINDINGS = bindings("app")

    def __init__(
        self,
        options: SessionOptions,
        *,
        db_path: str | None = None,
        evolution_timeout: float = defaults.EVOLVE_ANSWER_TIMEOUT,
        redraw_hz: float = defaults.REDRAW_HZ,
    ):
        super().__init__()
        self.options = options
        self.db_path = db_path
        self.redraw_hz = redraw_hz
        self.controller = Controller(options, self.post_message, db_path=db_path, evolution_timeout=evolution_timeout)
        self.history = ScoreHistory()
        self.population = PopulationHistory()
        self.stall_hint_seconds = defaults.STALL_HINT_SECONDS
        self._progress_seen = (-1, time.monotonic())  # (steps + episodes, when that count last moved)
        self.main: MainScreen | None = None  # made when the app starts (widgets belong to a running app)
        self.connection = "offline" if options.offline else "connecting"
        self.current: RunStarted | None = None
        self.finished_in_run = 0
        self.run_numbers: dict[str, int] = {}
        self._progress_text: str | None = None  # the progress label waiting for the next redraw
        self._shown_observation = None
        self._shown_revision = -1
        self._runs_shown_at = 0.0
        self._steps_seen = (0, time.monotonic())
        self.steps_per_second = 0.0
        self.components = 0  # clients the broker reports
        self.theme_watchers: list = []  # called with each new theme (the config file remembers it)

    @property
    def session(self) -> Session | None:
        return self.controller.session

    @property
    def store(self) -> RunStore | None:
        return self.controller.store

    def get_default_screen(self) -> MainScreen:
        self.main = MainScreen(self.history, population=self.population, redraw_hz=self.redraw_hz)
        return self.main

    def on_mount(self) -> None:
        self.set_interval(1 / self.redraw_hz, self._refresh_views)
        if self.options.offline:
            self.main.controls.disabled = True
        elif not self.options.embed_env:
            self.main.cart.idle_text = "the cart is drawn where the environment runs, not here (--no-env)"
        self.main.network.update_stats(None)
        self._show_status()
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        self.controller.connect()

    def on_resize(self) -> None:
        self._show_status()

    # --- events from the controller, dispatched by type ------------------------------------

    def on_events_pending(self, _: EventsPending) -> None:
        for event in self.controller.drain():
            self.handle(event)

    @singledispatchmethod
    def handle(self, event) -> None:
        """An event this app has no use for (the network may grow new ones)."""

    @handle.register
    def _(self, event: HistoryLoaded) -> None:
        times = event.times or [None] * len(event.runs)
        for (number, scores, average), ended in zip(event.runs, times):
            if len(scores):
                self.history.extend(scores, number, ended if ended is not None and len(ended) == len(scores) else None)
                if average is not None:
                    self.history.end_run(average)
        self._refresh_views()

    @handle.register
    def _(self, event: Connected) -> None:
        self.connection = "connected"
        self.log_line(
            f"joined the network at {event.address}" + (" (embedded broker, built-in agents)" if event.embedded else "")
        )
        if event.network_log:
            self.log_line(f"network log: {event.network_log}", "dim")
        self._show_status()
        self._refresh_views()

    @handle.register
    def _(self, event: ConnectFailed) -> None:
        self.connection = "unreachable"
        self._show_status()
        self.log_line(f"cannot join the network: {event.reason}", "red")

        def retry(again: bool | None) -> None:
            if again:
                self.connection = "connecting"
                self._show_status()
                self.controller.connect()
            else:
                self.controller.close()
                self.exit(return_code=1)  # nothing was done: a script must see the failure

        self.push_screen(UnreachableScreen(event.reason), retry)

    @handle.register
    def _(self, event: StorageProblem) -> None:
        self.log_line(f"storage: {event.text}", "red")
        self.notify(event.text, title="Run history", severity="error", timeout=10, markup=False)

    @handle.register
    def _(self, event: RunStarted) -> None:
        self.current = event
        self.finished_in_run = 0
        record = next((r for r in reversed(self.store.runs()) if r.run_uid == event.run_id), None)
        self.run_numbers[event.run_id] = record.number if record else len(self.run_numbers) + 1
        self.main.progress.display = True
        self.main.progress.update(total=event.episodes or None, progress=0)
        self.main.controls.show_running(True)
        self._progress_seen = (-1, time.monotonic())
        self._progress_text = f"run {self.run_numbers[event.run_id]} · waiting for the first episode"
        self.log_line(
            f"run {self.run_numbers[event.run_id]} started: {plural(event.episodes, 'episode')}"
            + (", deterministic" if event.deterministic else "")
        )

    @handle.register
    def _(self, event: EpisodeFinished) -> None:
        number = self.run_numbers.get(event.run_id)
        if number is None:  # a run started by another control client, seen through the control room
            self.handle(RunStarted(event.run_id, 0, False))
            number = self.run_numbers[event.run_id]
        self.history.append(event.score, number, event.wall_time or float("nan"))
        self.finished_in_run = event.episode
        # shown by the redraw timer: one progress repaint per tick, not one per episode
        window = self.main.plot.window
        mean = self.history.rolling_mean_at(len(self.history) - 1, window)
        self._progress_text = (
            f"run {number} · {event.episode}/{self.current.episodes if self.current else '?'}"
            f" · last {event.score:g} · mean({window}) {mean:.1f}"
        )

    @handle.register
    def _(self, event: RunFinished) -> None:
        number = self.run_numbers.get(event.run_id, "?")
        if event.episodes and len(self.history):
            self.history.end_run(event.avg_score)
        self.current = None
        self.main.controls.show_running(False)
        ending = "stopped" if event.stopped else "done"
        rate = f", {event.steps_per_second:,.0f} steps/s" if event.steps_per_second else ""
        self.log_line(
            Text.assemble(
                f"run {number} {ending}: average ",
                (f"{event.avg_score:.1f}", "bold"),
                f" over {plural(event.episodes, 'episode')} (ENV_DONE){rate}",
            )
        )
        average = f"avg {event.avg_score:.1f} over {plural(event.episodes, 'episode')}" if event.episodes else ""
        self._progress_text = f"run {number} {ending} · {average or 'no episode finished'}"
        self.main.progress.display = False  # its ETA means nothing once the run is over

    @handle.register
    def _(self, event: EvolutionFinished) -> None:
        at = time.strftime("%H:%M:%S", time.localtime(event.at))
        self.main.controls.show_evolution(f"done in {event.seconds:.2f}s by {event.sent_by}")
        generation = f" (generation {event.generation})" if event.generation is not None else ""
        self.log_line(
            Text(f"evolution done in {event.seconds:.2f}s{generation}: EVO_DONE from {event.sent_by} at {at}")
        )
        self.population.add(event.generation, event.fitness, event.elite, event.diversity)
        self.main.population.show()

    @handle.register
    def _(self, event: EvolutionFailed) -> None:
        self.main.controls.show_evolution("no answer")
        self.log_line(f"evolution: {event.text}", "yellow")

    @handle.register
    def _(self, event: NetworkError) -> None:
        self.log_line(Text(f"{event.source}: {event.text}", style="yellow"))  # a peer's text: never markup

    @handle.register
    def _(self, event: ComponentSeen) -> None:
        pane = self.main.network
        if event.name not in pane.components:
            pane.components.add(event.name)
            self.log_line(Text(f"component seen: {event.name}", style="dim"))

    @handle.register
    def _(self, event: BrokerStats) -> None:
        self.main.network.update_stats(event)
        self.components = len(event.clients)
        self._show_status()

    @handle.register
    def _(self, event: Disconnected) -> None:
        if self.connection != "connected":
            return
        self.connection = "disconnected"
        self.log_line(f"lost the network: {event.reason}; reconnecting", "red")
        if self.current is not None and self.store is not None:
            try:
                self.store.end_run(self.current.run_id, avg_score=None, state="failed", ended=time.time())
            except KeyError:  # a run another client started: not in this history
                pass
            self.current = None
            self.main.controls.show_running(False)
        self._show_status()
        self.controller.reconnect()

    @handle.register
    def _(self, result: RoundResult) -> None:
        check = f", 100-episode check {result.confirm_avg:.1f}" if result.confirm_avg is not None else ""
        self.log_line(
            Text.assemble(
                f"round {result.round}: train avg {result.train_avg:.1f}, eval avg ",
                (f"{result.eval_avg:.1f}", "bold"),
                f"{check}{', evolved' if result.evolved else ''} ({result.wall_seconds:.0f}s)",
            )
        )

    @handle.register
    def _(self, result: ScheduleResult) -> None:
        if result.solved:
            text = f"schedule solved: deterministic average {result.final_eval_avg:.1f}"
        else:
            text = f"schedule ended after {len(result.rounds)} rounds, not solved"
        self.log_line(f"{text} in {result.wall_seconds:.0f}s", "bold")
        self.notify(text, title="Schedule", markup=False)

    # --- views ------------------------------------------------------------------------------

    def log_line(self, text: str | Text, style: str = "") -> None:
        self.main.log_line(text, style)

    def _show_status(self) -> None:
        if self.options.offline:
            address = f"history {os.path.basename(self.db_path or default_db_path())}"
        else:
            session = self.session
            address = session.address if session is not None and session.port else "starting network…"
        rate = f"  {self.steps_per_second:,.0f} steps/s" if self.steps_per_second else ""
        connected = self.connection == "connected"
        clients = f"{plural(self.components, 'client')} │ " if self.components and connected else ""
        status = Text()
        if self.size.width >= 100:
            status.append("cartpole-tui", "bold").append(" │ ")
        status.append(f"{address} │ {self.options.env_id} │ {clients}")
        status.append(*CONNECTION_MARKS[self.connection])
        if self._open_network():
            status.append(" │ open network", "bold red")
        status.append(rate)
        self.main.status.update(status)

    def _theme_changed(self, theme) -> None:
        for watch in self.theme_watchers:
            watch(theme)

    def _open_network(self) -> bool:
        """Joined a broker off this machine without a token: anyone reaching it can drive it."""
        session = self.session
        return (
            session is not None
            and not session.embedded
            and auth.client_token() is None
            and not auth.is_loopback(session.host or "")
        )

    def _refresh_views(self) -> None:
        if self.main is None or not self.main.is_mounted:
            return  # events can arrive before the main screen is composed; the timer catches up
        steps, since = self._steps_seen
        now = time.monotonic()
        if now - since >= 1.0:
            self.steps_per_second = (self.controller.steps - steps) / (now - since)
            self._steps_seen = (self.controller.steps, now)
            self._show_status()
        self._check_progress(now)
        if self._progress_text is not None:
            self.main.progress.update(progress=self.finished_in_run)
            self.main.progress_label.update(self._progress_text)
            self._progress_text = None
        observation = self.controller.latest_observation
        if observation is not self._shown_observation:
            self._shown_observation = observation
            self.main.cart.observation = tuple(float(v) for v in observation)
        store = self.store
        if (
            store is not None
            and store.revision != self._shown_revision
            and now - self._runs_shown_at >= RUNS_REFRESH_SECONDS
        ):
            self._shown_revision, self._runs_shown_at = store.revision, now
            self.main.runs_table.show(store.runs())

    def _check_progress(self, now: float) -> None:
        """While a run shows no step and no episode for a while, say why it may be."""
        if self.current is None:
            return
        count = self.controller.steps + self.finished_in_run
        seen, since = self._progress_seen
        if count != seen:
            self._progress_seen = (count, now)
            self.main.progress.display = True
        elif now - since >= self.stall_hint_seconds:
            self._progress_seen = (count, float("inf"))  # said once until something moves
            self.main.progress.display = False  # an ETA means nothing now; the hint needs the room
            number = self.run_numbers.get(self.current.run_id, "?")
            self._progress_text = (
                f"run {number} · {self.finished_in_run}/{self.current.episodes} · no step for "
                f"{self.stall_hint_seconds:g}s: waiting for agents — is the swarm running?"
            )

    # --- actions ------------------------------------------------------------------------------

    def check_action(self, action: str, parameters) -> bool | None:
        """Offline there is no network: its keys leave the footer and do nothing."""
        return not (self.options.offline and action in NETWORK_ACTIONS)

    # the plot's keys work wherever the focus is
    def action_cycle_window(self) -> None:
        self.main.plot.action_cycle_window()

    def action_toggle_all(self) -> None:
        self.main.plot.action_toggle_all()

    def action_toggle_mean_per_run(self) -> None:
        self.main.plot.action_toggle_mean_per_run()

    def action_cycle_x_axis(self) -> None:
        self.main.plot.action_cycle_x_axis()

    def on_details_requested(self, message: DetailsRequested) -> None:
        run = self.store.run(message.number) if self.store is not None else None
        if run is not None:
            self.push_screen(RunDetailsScreen(run, self.store.episodes(run.run_uid)))

    def _can_control(self) -> bool:
        if self.connection == "connected" and self.controller.control is not None:
            return True
        self.notify(
            "offline: no network to control" if self.options.offline else "not connected to the network",
            severity="warning",
        )
        return False

    def action_start(self) -> None:
        self.main.controls.request_start()

    def on_start_requested(self, message: StartRequested) -> None:
        self.main.runs_table.focus()  # out of the episodes field: single-letter keys are the app's
        if not self._can_control():
            return
        if self.current is not None:
            self.notify("a run is going: stop it first (x)", severity="warning")
            return
        self.controller.start_run(message.episodes, message.deterministic)

    def action_schedule(self) -> None:
        if not self._can_control():
            return
        if self.current is not None or self.controller.schedule_running:
            self.notify("a run is going: stop it first (x)", severity="warning")
            return
        self.log_line(
            f"schedule started: rounds of (train, evaluate, evolve) until a {defaults.SCHEDULE_CONFIRM}-episode "
            f"check reaches {defaults.SCHEDULE_TARGET:g}"
        )
        self.controller.start_schedule()

    def action_stop(self) -> None:
        if self.controller.stop_schedule():
            self.log_line("schedule stopping after the current run")
        self.post_message(StopRequested())

    def on_stop_requested(self, _: StopRequested) -> None:
        if not self._can_control():
            return
        if self.current is None:
            self.notify("no run is going", severity="information")
            return
        self.controller.stop_run()
        self.log_line("stop requested")

    def action_evolve(self) -> None:
        self.post_message(EvolveRequested())

    def on_evolve_requested(self, _: EvolveRequested) -> None:
        if not self._can_control():
            return
        self.main.controls.show_evolution("running…")
        self.controller.evolve()

    def action_toggle_deterministic(self) -> None:
        self.main.controls.toggle_deterministic()

    def action_focus_episodes(self) -> None:
        self.main.controls.focus_episodes()

    def action_toggle_pane(self, pane_id: str) -> None:
        self.main.toggle_pane(pane_id)

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_export(self) -> None:
        if self.store is None:
            return
        marked = sorted(self.main.runs_table.marked) or None
        if self.is_web:  # in a browser: the CSV goes to the browser, not the server's directory
            self._deliver_export(marked)
            return
        try:
            path = export_to_file(self.store, marked, "csv")
        except Exception as error:
            self.notify(f"export failed: {error}", severity="error", markup=False)
            return
        self.log_line(f"exported {'runs ' + ', '.join(map(str, marked)) if marked else 'all runs'} to {path}")
        self.notify(path, title="Exported", markup=False)

    def _deliver_export(self, marked: list[int] | None) -> None:
        out = io.StringIO()
        try:
            export_runs(self.store, marked, "csv", out)
        except Exception as error:
            self.notify(f"export failed: {error}", severity="error", markup=False)
            return
        out.seek(0)
        name = os.path.basename(default_export_path("csv"))
        self.deliver_text(out, save_filename=name, mime_type="text/csv")
        self.log_line(
            f"exported {'runs ' + ', '.join(map(str, marked)) if marked else 'all runs'} as {name} to the browser"
        )

    def on_marks_changed(self, message: MarksChanged) -> None:
        self.main.plot.overlays = rolling_overlays(self.store, sorted(message.marked), self.main.plot.window)

    def get_system_commands(self, screen):
        yield from super().get_system_commands(screen)
        for key in palette_entries():
            if self.check_action(key.action, ()) is False:
                continue
            # a widget's key acts on that widget, wherever the focus is when the palette opens
            target = self.main.runs_table if key.scope == "runs" else self
            yield SystemCommand(
                key.palette,
                f"{key.help} (key {key.display})",
                lambda action=key.action, target=target: target.run_action(action),
            )

    async def action_quit(self) -> None:
        self.controller.close()  # stops a reconnect loop at once; the exit follows
        self.exit()

    def on_unmount(self) -> None:
        self.controller.close()
