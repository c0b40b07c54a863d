"""The control room: reacts to the network's events and to the keys, and tells the main
screen what to show.

It owns no network code: the controller does the talking in its own threads and queues
what happens; the app drains that queue and dispatches each event by its type to a named
handler (``_on_episode_finished``…). What the status and progress lines say comes from
`tui.data.run_progress`. Reads of the run history file (marked runs' overlays, a run's
details, the export) run in worker threads and come back as messages. One timer redraws, only
what changed: the cart at each tick, the progress line, the plot and the runs table together
at every other one.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from functools import singledispatchmethod

import numpy as np
from rich.text import Text
from textual import events, work
from textual.app import App, SystemCommand

from cartpole_tui.env import defaults
from cartpole_tui.env.components.in_order import InOrder
from cartpole_tui.env.components.spaces import CARTPOLE, spaces_of
from cartpole_tui.env.events import (
    BrokerStats,
    ComponentSeen,
    Disconnected,
    EnvSpaces,
    EpisodeFinished,
    EvolutionFinished,
    EvolutionSeen,
    NetworkError,
    RunFinished,
    RunJoined,
    RunStarted,
    ScheduleEnded,
    StopAnswered,
)
from cartpole_tui.env.history.store import RunRecord, RunStore
from cartpole_tui.env.paths import default_db_path
from cartpole_tui.env.runtime.schedule import RoundResult, ScheduleResult
from cartpole_tui.env.runtime.session import Session, SessionOptions
from cartpole_tui.env.wire import auth
from cartpole_tui.tui.bindings import KEYS, bindings, palette_entries
from cartpole_tui.tui.controller import (
    PAST_RUNS_PLOTTED,
    Connected,
    ConnectFailed,
    Controller,
    EvolutionFailed,
    HistoryLoaded,
    ScheduleFailed,
    ScheduleRetargeted,
    ScheduleRound,
    ScheduleStoppedBy,
    StorageProblem,
)
from cartpole_tui.tui.data.overlays import rolling_overlays
from cartpole_tui.tui.data.plot_canvas import environment_axis
from cartpole_tui.tui.data.population import PopulationHistory
from cartpole_tui.tui.data.run_progress import (
    Counted,
    RunProgress,
    ScheduleLabel,
    StatusFacts,
    progress_text,
    retargeted,
    round_line,
    schedule_ended_elsewhere_line,
    schedule_ended_text,
    schedule_started_line,
    status_line,
)
from cartpole_tui.tui.data.score_history import ScoreHistory
from cartpole_tui.tui.export import export_csv
from cartpole_tui.tui.messages import (
    DetailsLoaded,
    DetailsRequested,
    EventsPending,
    EvolveRequested,
    ExportDone,
    MarksChanged,
    OverlaysLoaded,
    RunsReread,
    StartRequested,
    StopRequested,
)
from cartpole_tui.tui.screens.main import MainScreen
from cartpole_tui.tui.screens.modals import HelpScreen, UnreachableScreen
from cartpole_tui.tui.screens.run_details import RunDetailsScreen
from cartpole_tui.tui.widgets.control_panel import OFFLINE

# Redraw ticks per repaint of what counts the run (progress line, plot and legend, runs table): the
# three repaint together, at half the cart's rate, so that one screen tells of one moment (the
# table repainted on a clock of its own, the plot on another: a fast run's table said 78/2000
# beside a progress line at 1989/2000).
COUNTS_EVERY = 2
# control clients (this app's, `evolve`'s, `run`'s) come and go by design: not components of the network
CONTROL_CLIENTS = ("control",)
NETWORK_ACTIONS = {"start", "stop", "evolve", "schedule", "toggle_deterministic", "focus_episodes"}
NETWORK_KEYS = {k.key for k in KEYS if k.action in NETWORK_ACTIONS and k.scope == "app"}  # s, x, e, r, d, n


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
        # on a network of its own this control room sees every evolution; on another, not those before it joined
        self.population = PopulationHistory(joined=options.connect is not None)
        self._main: MainScreen | None = None
        self.connection = "offline" if options.offline else "connecting"
        self.run_progress = RunProgress(time.monotonic())
        self.in_order = InOrder()  # episodes go to the plot in their numbers' order
        self.run_rate: float | None = None  # the current (or last) run's steps a second, from the history
        # ... as the status line shows it: set with the progress line and the runs table, at a redraw
        self._shown_rate: float | None = None
        self._rated_run: str | None = None  # ... that run's id
        self._bar_run: str | None = None  # the run the progress bar shows
        self._env_id = options.env_id  # the environment shown: the one the network's runs announce
        self._plotted_env = options.env_id  # the environment whose runs the plot holds
        self._idle_stopped: str | None = None  # the run stopped for going without a step
        self._run_label = "no run yet"  # the progress line's words of the run
        self._schedule_label: ScheduleLabel | None = None  # ... after those of this room's schedule
        self._label_stale = False  # the progress line is to be written again (its words or its room changed)
        self._elsewhere_shown = False  # the progress line says that another room's schedule goes
        self.components = 0  # clients the broker reports
        self._shown_observation: object = None  # the observation last drawn (compared by identity)
        self._pictures = False  # the environment is drawn from its pictures (not CartPole)
        self._shown_revision = -1
        self._shown_counted: dict[int, Counted] = {}  # run_progress.counted as the table shows it
        self._redraws = 0  # redraw ticks so far
        self._asked: dict[str, int] = {}  # reads asked so far, by kind: only the latest one's answer is used
        self._web_blur_heard = False  # the web driver's blur at start (see on_app_blur)
        self.theme_watchers: list = []  # called with each new theme (the config file remembers it)

    @property
    def session(self) -> Session | None:
        return self.controller.session

    @property
    def store(self) -> RunStore | None:
        return self.controller.store

    @property
    def main(self) -> MainScreen:
        """The main screen, made at its first use once the app runs (widgets belong to a running app)."""
        if self._main is None:
            self._main = MainScreen(self.history, population=self.population)
        return self._main

    @property
    def current(self) -> RunStarted | None:
        """The run going, if any."""
        return self.run_progress.current

    def get_default_screen(self) -> MainScreen:
        return self.main

    def on_mount(self) -> None:
        self.set_interval(1 / self.redraw_hz, self._redraw)
        self.main.runs_table.plot_environment(self._plotted_env)
        try:
            self._show_environment(spaces_of(self.options.env_id))
        except ValueError as error:  # the command line checked it; a config or test may not have
            self.log_line(str(error), "yellow")
        if self.options.offline:
            self.main.controls.show_offline()
            self.main.cart.idle_text = "offline: no run plays here"
        self.main.network.update_stats(None)
        self._show_status()
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        if hasattr(signal, "SIGHUP"):  # not on Windows
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._terminal_closed)
        self.controller.connect()

    def _terminal_closed(self) -> None:
        """SIGHUP (the window or the SSH connection closed): end as ``q`` does, so that a run going
        is recorded stopped with its episodes, not left "running" by a process killed mid-write."""
        self.controller.close()
        self.exit()

    def on_resize(self, event: events.Resize) -> None:
        self._show_status(event.size.width)  # the app's own size may still be the old one here
        self._label_stale = True

    def on_app_blur(self, event: events.AppBlur) -> None:
        # In a browser, Textual's driver says "blurred" as it starts, before the page has said
        # anything: the first paint had no footer and no focused pane until a click. The page
        # focuses the terminal as it loads (tui/web/app_index.html) and says focus and blur from
        # then on, so only that first one is left unheard.
        if self.is_web and not self._web_blur_heard:
            self._web_blur_heard = True
            event.prevent_default()  # App's own handler would blur the app

    # --- events from the controller, dispatched by type ------------------------------------

    def on_events_pending(self, _: EventsPending) -> None:
        events = self.controller.drain()
        if self.return_code is not None:  # exit() was called: the widgets go (a run's end heard then raised)
            return
        for event in events:
            self.handle(event)

    @singledispatchmethod
    def handle(self, event: object) -> None:
        """An event this app has no use for (the network may grow new ones). Each event it uses
        has a handler registered below by its type, named after it (``_on_run_started``…)."""

    @handle.register
    def _on_history_loaded(self, event: HistoryLoaded) -> None:
        if event.env_id is not None and event.env_id != self._plotted_env:
            return  # read for an environment the network has left since
        times: list[np.ndarray | None] = list(event.times) if event.times else [None] * len(event.runs)
        past = [
            (
                number,
                scores,
                ended if ended is not None and len(ended) == len(scores) else np.full(len(scores), np.nan),
                average,
            )
            for (number, scores, average), ended in zip(event.runs, times)
            # not a run drawn as it plays since the plot started over (the one whose game it is): the
            # file's copy, read a moment ago, lacked the episodes drawn since (its end rereads it)
            if len(scores) and not self.history.has_run(number)
        ]
        if past:  # before any run played since (by number), where the history has them
            self.history.replace_runs(past[0][0], past[-1][0], past)
        runs = self._plotted(self.store.runs()) if self.store else []
        if runs and self.run_progress.current is None and self._rated_run is None:
            self.run_progress.remembered(runs[-1])  # the progress label names it, the status line its steps/s
            self._rated_run, self.run_rate = runs[-1].run_uid, runs[-1].steps_per_s
        self._refresh_views()

    @handle.register
    def _on_connected(self, event: Connected) -> None:
        self.connection = "connected"
        self.log_line(
            f"joined the network at {event.address}" + (" (embedded broker, built-in agents)" if event.embedded else "")
        )
        if event.failed_network_log:  # the log of a network that ran well is removed at its end
            self.log_line(
                f"the embedded network had stopped and was started again; its log: {event.failed_network_log}", "yellow"
            )
        if event.population:
            self.log_line(f"population: {event.population}")
        if event.restored is not None:
            self.population.restore(event.restored.generation, self.options.models)
            self.main.population.show()
        self._show_status()
        self._refresh_views()

    @handle.register
    def _on_connect_failed(self, event: ConnectFailed) -> None:
        self.connection = event.connection
        self._show_status()
        started_here = event.connection == "not started"  # its reason says so: not "cannot join"
        self.log_line(event.reason if started_here else f"cannot join the network: {event.reason}", "red")

        def retry(again: bool | None) -> None:
            if again:
                self.connection = "connecting"
                self._show_status()
                self.controller.connect()
            else:
                self.controller.close()
                self.exit(return_code=1)  # nothing was done: a script must see the failure

        title = "The network did not start" if started_here else "Cannot join the network"
        self.push_screen(UnreachableScreen(event.reason, title), retry)

    @handle.register
    def _on_storage_problem(self, event: StorageProblem) -> None:
        self.log_line(f"storage: {event.text}", "red")
        self.notify(event.text, title="Run history", severity="error", timeout=10, markup=False)

    def _show_environment(self, spaces: EnvSpaces) -> None:
        """The plot's axis and solved line, its past runs, and the pane's drawing, for the
        environment played."""
        self._env_id = spaces.env_id  # the network's, when a run announced it: the status line says it
        if spaces.env_id != self._plotted_env:  # another game's scores: the plot starts over with this one's
            self._plotted_env = spaces.env_id
            self.main.runs_table.plot_environment(spaces.env_id)
            self.history.replace_runs(0, np.iinfo(np.int32).max, [])
            self.controller.load_history(spaces.env_id)
            self._shown_revision = -1  # the table again: the other games' rows dim
        self._show_status()
        plot = self.main.plot
        plot.y_min, plot.y_max, plot.threshold = environment_axis(spaces)
        self.main.title_environment(spaces.env_id)
        if spaces.env_id == CARTPOLE.env_id:
            self.main.cart.frame = None
        self._pictures = spaces.env_id != CARTPOLE.env_id

    @handle.register
    def _on_run_started(self, event: RunStarted) -> None:
        if event.spaces is not None:
            self._show_environment(event.spaces)
        # the store's runs are in memory (no file read): the run's number in the history
        runs = self.store.runs() if self.store is not None else []
        record = next((r for r in reversed(runs) if r.run_uid == event.run_id), None)
        self._plot(self.in_order.flush())  # what an earlier run left waiting (its end never came)
        self._rated_run, self.run_rate = event.run_id, None
        line = self.run_progress.started(event, record.number if record else None, time.monotonic())
        if self._schedule_label is not None and self._schedule_label.ended is not None:
            self._say_schedule(None)  # how the last schedule ended is told until a run comes after it
        self.main.controls.show_running(True)
        self.log_line(line)

    @handle.register
    def _on_run_joined(self, event: RunJoined) -> None:
        """The run going when this control room joined, with how far it is."""
        self._on_run_started(event.run)
        self.in_order.joined(event.run.run_id)
        number = self.run_progress.numbers[event.run.run_id]
        if event.scores and not self.history.has_run(number):  # not already read from a shared history
            self.history.extend(np.array(event.scores, dtype=np.float64), number)
        missed = self.run_progress.joined(event)
        if missed is not None:
            self.log_line(missed, "yellow")

    @handle.register
    def _on_episode_finished(self, event: EpisodeFinished) -> None:
        if self.run_progress.number(event.run_id) is None:  # not a run seen (the session hands a RunStarted first)
            return
        self._plot(self.in_order.add(event))
        # shown by the redraw timer: one progress repaint per tick, not one per episode
        current = self.current
        if current is None or current.run_id != event.run_id:
            return  # a late one (the published environment's last DONE follows its ENV_DONE)
        window, history = self.main.plot.window, self.history
        # the plot's latest figures, once it has an episode of this run: its legend and the progress
        # line say the same (before, its latest was the last run's: "run 58 · 258/2000 · last 37")
        end = len(history) - 1
        plotted = end >= 0 and history.runs[end] == self.run_progress.number(event.run_id)
        mean, last = (history.rolling_mean_at(end, window), float(history.scores[end])) if plotted else (None, None)
        self.run_progress.episode(event, window, mean, last)

    def _plot(self, episodes: list[EpisodeFinished]) -> None:
        """Episodes due for the plot (in number order within their run)."""
        for episode in episodes:
            number = self.run_progress.numbers.get(episode.run_id, 0)
            self.history.append(episode.score, number, episode.wall_time or float("nan"))

    @handle.register
    def _on_run_finished(self, event: RunFinished) -> None:
        self._plot(self.in_order.flush())
        if event.episodes and len(self.history):
            self.history.end_run(event.avg_score)
        record = self._record(event.run_id)
        if record is not None:
            self._check_plotted(record, event.avg_score if event.episodes else None)
        if record is not None:  # the history has ended it already (its recorder hears of it first)
            self._rated_run, self.run_rate = event.run_id, record.steps_per_s
        line = self.run_progress.ended(
            event,
            record.steps_per_s if record is not None else None,
            record.finished if record is not None and record.followed else None,
        )
        self.main.controls.show_running(False)
        self.log_line(line)

    def _check_plotted(self, record: RunRecord, average: float | None) -> None:
        """The plot draws a run's episodes as they come; where that may not be the history's copy
        (a run joined midway: its episodes as they came, or some missed while joining; runs that
        ended between the history's first read and the join), the history's are read again and
        take their place, so that every viewer draws the history's episodes in number order."""
        store = self.store
        if store is None:
            return
        starts, numbers = self.history.run_starts()
        plotted = len(numbers) and numbers[-1] == record.number
        count = len(self.history) - int(starts[-1]) if plotted else 0
        before = numbers[:-1] if plotted else numbers
        earlier = int(before[-1]) if len(before) else 0
        # the plotted game's only: the plot starts over with a game (CartPole's runs came back after Acrobot's first)
        missed = [r for r in self._plotted(store.runs()) if earlier < r.number < record.number and r.finished]
        joined = record.run_uid in self.in_order.as_they_come
        if missed or joined or count != record.finished:
            # the ended run's average is its ENV_DONE's: the record may not have heard of its end yet
            self._reread_runs(store, [(r, r.avg_score) for r in missed[-PAST_RUNS_PLOTTED:]] + [(record, average)])

    @work(thread=True, group="plot")
    def _reread_runs(self, store: RunStore, runs: list[tuple[RunRecord, float | None]]) -> None:
        self.post_message(
            RunsReread(
                [(r.number, store.episode_scores(r.run_uid), store.episode_times(r.run_uid), avg) for r, avg in runs]
            )
        )

    def on_runs_reread(self, message: RunsReread) -> None:
        self.history.replace_runs(message.runs[0][0], message.runs[-1][0], message.runs)

    @handle.register
    def _on_evolution_finished(self, event: EvolutionFinished) -> None:
        at = time.strftime("%H:%M:%S", time.localtime(event.at))
        took = f"done in {event.seconds:.2f}s"
        self.main.controls.show_evolution(f"{took} by {event.sent_by}", took)
        generation = f" (generation {event.generation})" if event.generation is not None else ""
        self.log_line(
            Text(f"evolution done in {event.seconds:.2f}s{generation}: EVO_DONE from {event.sent_by} at {at}")
        )
        self.population.add(event.generation, event.fitness, event.elite, event.diversity)
        self.main.population.show()

    @handle.register
    def _on_evolution_seen(self, event: EvolutionSeen) -> None:
        at = time.strftime("%H:%M:%S", time.localtime(event.at))
        generation = f"gen {event.generation}"
        self.main.controls.show_evolution(
            f"{generation} at {at} (asked elsewhere)",
            f"{generation} at {at}",
            f"{generation} {at}",
            f"{generation} {at[:5]}",
        )
        self.log_line(
            Text(
                f"evolution asked by another control room: generation {event.generation}, from {event.sent_by} at {at}"
            )
        )
        self.population.add(event.generation, event.fitness, event.elite, event.diversity)
        self.main.population.show()

    @handle.register
    def _on_evolution_failed(self, event: EvolutionFailed) -> None:
        self.main.controls.show_evolution("no answer")
        self.log_line(f"evolution: {event.text}", "yellow")

    @handle.register
    def _on_network_error(self, event: NetworkError) -> None:
        self.log_line(Text(event.line, style="yellow"))  # a peer's text: never markup
        if event.ends_run:  # why this room's run ended (a swarm of another game): where the eye is
            self.notify(event.line, title="Run", severity="warning", timeout=15, markup=False)

    @handle.register
    def _on_stop_answered(self, event: StopAnswered) -> None:
        self.log_line(event.text)
        if event.text != "stop requested":  # the run plays on: say so where the eye is
            self.notify(event.text, title="Stop", markup=False)

    @handle.register
    def _on_component_seen(self, event: ComponentSeen) -> None:
        if event.name in CONTROL_CLIENTS:
            return
        if self.main.network.components.add(event.name):
            self.log_line(Text(f"component seen: {event.name}", style="dim"))
            self.main.network.names_changed()

    @handle.register
    def _on_broker_stats(self, event: BrokerStats) -> None:
        self.main.network.update_stats(event)
        self.components = len(event.clients)
        self._show_status()

    @handle.register
    def _on_disconnected(self, event: Disconnected) -> None:
        if self.connection != "connected":
            return
        self.connection = "disconnected"
        self.log_line(f"lost the network: {event.reason}; reconnecting", "red")
        lost = self.run_progress.lost()
        self._plot(self.in_order.flush())
        if lost is not None:
            # the run fails only where its environment went with the network; one elsewhere plays on
            if self.store is not None and self.options.embed_env:
                try:
                    self.store.end_run(lost.run_id, avg_score=None, state="failed", ended=time.time())
                except KeyError:  # a run another client started: not in this history
                    pass
            self.main.controls.show_running(False)
        self._show_status()
        self.controller.reconnect()

    @handle.register
    def _on_round_result(self, result: RoundResult) -> None:
        self.log_line(round_line(result))

    @handle.register
    def _on_schedule_result(self, result: ScheduleResult) -> None:
        self._schedule_ended(result)

    @handle.register
    def _on_schedule_stopped(self, event: ScheduleStoppedBy) -> None:
        self._schedule_ended(event.result, event.here)

    @handle.register
    def _on_schedule_round(self, event: ScheduleRound) -> None:
        self._say_schedule(ScheduleLabel(event.number, event.target))

    @handle.register
    def _on_schedule_retargeted(self, event: ScheduleRetargeted) -> None:
        self.log_line(Text(f"schedule: {retargeted(event.env_id, event.target)}"))

    @handle.register
    def _on_schedule_failed(self, event: ScheduleFailed) -> None:
        self.log_line(Text(f"schedule: {event.text}", style="yellow"))
        self._say_schedule(ScheduleLabel(ended=f"schedule failed: {event.text}"))

    def _say_schedule(self, label: ScheduleLabel | None) -> None:
        self._schedule_label, self._label_stale = label, True

    def _schedule_ended(self, result: ScheduleResult, stopped_here: bool = False) -> None:
        text = schedule_ended_text(result, stopped_here)
        self._say_schedule(ScheduleLabel(ended=text))
        self.log_line(f"{text} {'after' if result.stopped else 'in'} {result.wall_seconds:.0f}s", "bold")
        self.notify(text, title="Schedule", markup=False)

    @handle.register
    def _on_schedule_ended_elsewhere(self, event: ScheduleEnded) -> None:
        self.log_line(schedule_ended_elsewhere_line(event.ending))

    # --- views ------------------------------------------------------------------------------

    def log_line(self, text: str | Text, style: str = "") -> None:
        self.main.log_line(text, style)

    def _show_status(self, width: int | None = None) -> None:
        if self.options.offline:
            address = f"history {os.path.basename(self.db_path or default_db_path())}"
        else:
            session = self.session
            address = session.address if session is not None and session.port else "starting network…"
        facts = StatusFacts(
            address,
            self._env_id,
            self.connection,
            self.size.width if width is None else width,
            clients=self.components,
            steps_per_second=self._shown_rate,
            open_network=self._open_network(),
        )
        self.main.status.update(status_line(facts))

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

    def _stop_if_idle(self, now: float) -> None:
        """A run this control room started that went ``RUN_IDLE_TIMEOUT`` without a step is stopped,
        as ``run`` gives up on one (its agents gone for good, it waited for ever); a schedule has
        its own time-out, and another room's run is left to it."""
        current, control = self.current, self.controller.control
        if (
            current is None
            or control is None
            or control.run_id != current.run_id
            or self._idle_stopped == current.run_id
            or self.controller.schedule_running
            or self.run_progress.quiet(now) < defaults.RUN_IDLE_TIMEOUT
        ):
            return
        self._idle_stopped = current.run_id
        number = self.run_progress.number(current.run_id)
        self.log_line(f"run {number}: no step for {defaults.RUN_IDLE_TIMEOUT:g}s: stopping it", "yellow")
        self.action_stop()

    def _show_bar(self, bar: tuple[str, int, int] | None) -> None:
        """The progress bar of (run id, episodes asked, episodes finished); hidden between runs
        (its ETA means nothing once the run is over)."""
        progress = self.main.progress
        progress.display = bar is not None
        if bar is None:
            return
        run_id, total, finished = bar
        if run_id != self._bar_run:  # a new run: its ETA starts over, even when its total is the last one's
            self._bar_run = run_id
            progress.update(total=None)
        progress.update(total=total or None, progress=finished)

    def _redraw(self) -> None:
        """A redraw tick: the cart at each; what counts the run at every ``COUNTS_EVERY``-th."""
        self._redraws += 1
        self._refresh_views(counts=self._redraws % COUNTS_EVERY == 0)

    def _refresh_views(self, counts: bool = True) -> None:
        """Show what changed: the cart, and with ``counts`` the progress line, the plot, the
        runs table and the status line's steps/s, all from this one moment."""
        if self._main is None or not self._main.is_mounted:
            return  # events can arrive before the main screen is composed; the timer catches up
        observation = self.controller.latest_observation
        if observation is not None and observation is not self._shown_observation:
            self._shown_observation = observation
            if not self._pictures:
                self.main.cart.observation = tuple(float(v) for v in observation)
        frame = self.controller.latest_frame
        if frame is not None and frame is not self.main.cart.frame:
            self.main.cart.frame = frame
        if counts:
            self._show_runs()  # first: a run it shows before this room heard of it names the progress line
            self._show_progress()
            self.main.title_plot(len(self.in_order.waiting))
            self.main.plot.tick()
            if self._shown_rate != self.run_rate:  # the status line's steps/s, with the table's
                self._shown_rate = self.run_rate
                self._show_status()

    def _show_progress(self) -> None:
        now = time.monotonic()
        bar_shown = self.run_progress.check(self.controller.steps, now, self.controller.stall_hint())
        label = self.run_progress.take_label()
        if label is not None:  # the bar changes with its label, at a redraw: both tell of one run
            self._show_bar(self.run_progress.bar())
            self._run_label, self._label_stale = label, True
        if bar_shown is not None and bar_shown != self.main.progress.display:
            self.main.progress.display, self._label_stale = bar_shown, True
        elsewhere = self.controller.schedule_elsewhere  # (it ends without an event: a room gone is forgotten)
        if elsewhere != self._elsewhere_shown:
            self._elsewhere_shown, self._label_stale = elsewhere, True
        if self._label_stale:
            room = self.main.progress_label_room(self.main.progress.display)
            schedule = self._schedule_label or (ScheduleLabel(elsewhere=True) if elsewhere else None)
            self.main.progress_label.update(progress_text(self._run_label, schedule, room))
            self._label_stale = False
        if bar_shown is False:
            self._stop_if_idle(now)

    def _show_runs(self) -> None:
        """The runs table, when the history changed; runs this room heard of as the progress line
        tells of them, until the history says so too (a file another process writes is read once
        a second: a schedule's run said "0/20 running" beside "run 22 done")."""
        store = self.store
        counted = self.run_progress.counted
        if store is None or (store.revision == self._shown_revision and counted == self._shown_counted):
            return
        self._shown_revision, self._shown_counted = store.revision, dict(counted)
        runs = store.runs()
        played = self._plotted(runs)  # not another game's "avg -90.0" above CartPole's plot
        if played:  # the history may be ahead of the run's news (recorded as it came, told at the next events)
            self.run_progress.remembered(played[-1])  # ("no run yet" beside "1  1005/2000 … running")
        self.main.runs_table.show(runs, counted)
        self.run_progress.settled([r.number for r in runs if r.state != "running" and r.number in counted])
        # as its row shows it: the status line says the table's figure
        rated = next((r for r in reversed(runs) if r.run_uid == self._rated_run), None)
        rate = None if rated is None else self.run_progress.shown(rated).steps_per_s
        if self._rated_run is not None:
            self.run_rate = rate

    def _plotted(self, runs: list[RunRecord]) -> list[RunRecord]:
        """The runs of the environment whose runs the plot holds."""
        return [run for run in runs if run.params.env_id == self._plotted_env]

    def _record(self, run_id: str | None) -> RunRecord | None:
        """The history's record of a run (in memory: no file read)."""
        if self.store is None or run_id is None:
            return None
        return next((r for r in reversed(self.store.runs()) if r.run_uid == run_id), None)

    # --- reads of the run history file: in worker threads, the results come back as messages ---

    def _ask(self, kind: str) -> int:
        """Number a new read of this kind; a slower answer to an earlier one is then dropped."""
        self._asked[kind] = self._asked.get(kind, 0) + 1
        return self._asked[kind]

    def _latest(self, kind: str, asked: int) -> bool:
        return self._asked.get(kind) == asked

    def on_marks_changed(self, message: MarksChanged) -> None:
        asked = self._ask("overlays")
        if self.store is not None:
            self._read_overlays(self.store, sorted(message.marked), self.main.plot.window, asked)

    @work(thread=True, group="overlays")
    def _read_overlays(self, store: RunStore, marked: list[int], window: int, asked: int) -> None:
        self.post_message(OverlaysLoaded(rolling_overlays(store, marked, window), asked))

    def on_overlays_loaded(self, message: OverlaysLoaded) -> None:
        if self._latest("overlays", message.asked):
            self.main.plot.overlays = message.overlays

    def on_details_requested(self, message: DetailsRequested) -> None:
        asked = self._ask("details")
        if self.store is not None:
            self._read_details(self.store, message.number, asked)

    @work(thread=True, group="details")
    def _read_details(self, store: RunStore, number: int, asked: int) -> None:
        run = store.run(number)
        if run is not None:
            self.post_message(DetailsLoaded(run, store.episodes(run.run_uid), asked))

    def on_details_loaded(self, message: DetailsLoaded) -> None:
        if self._latest("details", message.asked):
            self.push_screen(RunDetailsScreen(message.run, message.episodes))

    def action_export(self) -> None:
        if self.store is None:
            return
        # in a browser the CSV goes to the browser, not the server's directory
        self._export(self.store, sorted(self.main.runs_table.marked) or None, self.is_web)

    @work(thread=True, group="export")
    def _export(self, store: RunStore, marked: list[int] | None, to_browser: bool) -> None:
        try:
            self.post_message(ExportDone(export_csv(store, marked, to_browser)))
        except Exception as error:
            self.post_message(ExportDone(error=str(error)))

    def on_export_done(self, message: ExportDone) -> None:
        exported = message.exported
        if exported is None:
            self.notify(f"export failed: {message.error}", severity="error", markup=False)
            return
        if exported.text is not None:
            self.deliver_text(exported.text, save_filename=exported.name, mime_type="text/csv")
        self.log_line(exported.log_line)
        if exported.path is not None:
            self.notify(exported.path, title="Exported", markup=False)

    # --- actions ------------------------------------------------------------------------------

    def check_action(self, action: str, parameters) -> bool | None:
        """Offline there is no network: its keys leave the footer (and say why in `on_key`)."""
        return not (self.options.offline and action in NETWORK_ACTIONS)

    def on_key(self, event: events.Key) -> None:
        # offline a run key has no binding (check_action): pressed, it said nothing at all
        if self.options.offline and event.key in NETWORK_KEYS:
            self.notify(OFFLINE, severity="warning", markup=False)

    # the plot's keys work wherever the focus is
    def action_cycle_window(self) -> None:
        self.main.plot.action_cycle_window()
        if self.main.runs_table.marked:  # the marked runs' means over the new window
            self.on_marks_changed(MarksChanged(frozenset(self.main.runs_table.marked)))

    def action_toggle_all(self) -> None:
        self.main.plot.action_toggle_all()

    def action_toggle_mean_per_run(self) -> None:
        self.main.plot.action_toggle_mean_per_run()

    def action_cycle_x_axis(self) -> None:
        self.main.plot.action_cycle_x_axis()

    def _can_control(self) -> bool:
        if self.connection == "connected" and self.controller.control is not None:
            return True
        self.notify(
            OFFLINE if self.options.offline else "not connected to the network",
            severity="warning",
        )
        return False

    def action_start(self) -> None:
        self.main.controls.request_start()

    def on_start_requested(self, message: StartRequested) -> None:
        self.main.runs_table.focus()  # out of the episodes field: single-letter keys are the app's
        if not self._can_control() or self._schedule_elsewhere():
            return
        if self.current is not None:
            self.notify("a run is going: stop it first (x)", severity="warning")
            return
        self.controller.start_run(message.episodes, message.deterministic)

    def _schedule_elsewhere(self, done: str = "started") -> bool:
        """A start (or an evolution: ``done``) would land in another room's schedule (between its
        runs too): refused, said so."""
        if not self.controller.schedule_elsewhere:
            return False
        refused = "a schedule is running in another control room (x stops it)"
        self.log_line(f"not {done}: {refused}", "yellow")  # the toast goes in seconds, the log stays
        self.notify(refused, severity="warning")
        return True

    def action_schedule(self) -> None:
        if not self._can_control() or self._schedule_elsewhere():
            return
        if self.current is not None or self.controller.schedule_running:
            self.notify("a run is going: stop it first (x)", severity="warning")
            return
        if self.options.connect is None and self.options.agent == "random":
            # nothing here answers its evolution: round 1 waited 30 s for it and the schedule failed
            # (`run --schedule --agent random` is a usage error)
            self.notify("the schedule evolves the swarm: --agent random has no evolution", severity="warning")
            return
        self.log_line(schedule_started_line(self.main.plot.threshold))
        self.controller.start_schedule()

    def action_stop(self) -> None:
        if self.controller.stop_schedule():  # x stops its run too (below): said as it happens
            ending = "its run going is stopped" if self.current is not None else "no run of it starts"
            self.log_line(f"schedule stopping: {ending}, and it ends")
        self.post_message(StopRequested())

    def on_stop_requested(self, _: StopRequested) -> None:
        if not self._can_control():
            return
        if self.current is None and not self.controller.schedule_elsewhere:
            self.notify("no run is going", severity="information")
            return
        self.controller.stop_run()  # says what it did (StopAnswered)

    def action_evolve(self) -> None:
        self.post_message(EvolveRequested())

    def on_evolve_requested(self, _: EvolveRequested) -> None:
        # another room's schedule between its runs: its round N would be two generations on
        if not self._can_control() or self._schedule_elsewhere("evolved"):
            return
        if self.current is not None or self.controller.schedule_running:
            # the models changed while their episodes were measured (a schedule's round N was no
            # longer generation N); `s` was refused there, `e` was not (new-user pass 4). Between a
            # schedule's runs "evolve between runs" was no way: it evolves there itself
            why = "a run is going: evolve between runs"
            if self.controller.schedule_running:
                why = "the schedule is going: it evolves between its runs"
            self.notify(f"{why} (x stops it)", severity="warning")
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
