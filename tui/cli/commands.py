"""What each subcommand does; failures become CommandError (one line, exit 1)."""

from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from cartpole_tui.env import defaults
from cartpole_tui.env.components.control import ControlClient, ControlTimeout
from cartpole_tui.env.components.in_order import InOrder
from cartpole_tui.env.components.spaces import spaces_of
from cartpole_tui.env.components.vector_env import VectorEnvironmentComponent
from cartpole_tui.env.events import EpisodeFinished, EvolutionFinished, NetworkError, RunFinished
from cartpole_tui.env.history.export import FOLDER_FORMATS, ExportError, export_runs, export_to_file, export_to_folder
from cartpole_tui.env.history.recorder import StoreRecorder
from cartpole_tui.env.history.store import RunStore
from cartpole_tui.env.history.tensorboard import TensorBoardMirror
from cartpole_tui.env.runtime.network import NetworkStartError
from cartpole_tui.env.runtime.schedule import (
    RoundResult,
    ScheduleResult,
    ScheduleSettings,
    ScheduleStopped,
    best_episode,
    run_schedule,
    target_for,
)
from cartpole_tui.env.runtime.session import Session, SessionOptions
from cartpole_tui.env.swarm.saved import beside_history
from cartpole_tui.env.swarm.swarm import serve_swarm
from cartpole_tui.env.wire import auth
from cartpole_tui.env.wire.broker import Broker
from cartpole_tui.env.wire.gateway import NatsRelay
from cartpole_tui.env.wire.nats_bridge import NatsUnavailable
from cartpole_tui.env.wire.transport import parse_address
from cartpole_tui.env.words import average, plural, score, steps_per_second
from cartpole_tui.tui.cli import config
from cartpole_tui.tui.cli.errors import EXIT_FAILURE, CommandError
from cartpole_tui.tui.data.run_progress import below, retargeted

_FAILURES = (ConnectionError, ControlTimeout, NetworkStartError, ValueError, ExportError)


@contextmanager
def reported_failures():
    """Turn the network's expected failures into one-line CommandErrors."""
    try:
        yield
    except _FAILURES as error:
        raise CommandError(str(error)) from None


def session_options(args: argparse.Namespace) -> SessionOptions:
    return SessionOptions(
        connect=args.connect,
        embed_env=not args.no_env,
        env_id=args.env_id,
        seed=args.seed,
        models=args.models,
        agent=args.agent,
        offline=getattr(args, "offline", False),
        parallel=args.parallel,
        tensorboard=getattr(args, "tensorboard", None),
    )


def control_room(args: argparse.Namespace) -> int:
    from cartpole_tui.tui.app import ControlRoomApp

    with reported_failures():
        options = session_options(args)
        if options.connect:
            parse_address(options.connect)
    if not options.connect and options.agent == "swarm":
        # what the swarm learned is kept with the run history and restored at the next start
        options = replace(options, population_file=beside_history(args.db, args.env_id), fresh=args.fresh)
    warn_open_network(options.connect)
    size_from_the_terminal()
    app = ControlRoomApp(options, db_path=args.db, redraw_hz=args.redraw_hz)
    remember_theme(app, args.theme, lambda name: config.save_value(args.config_path, "theme", name))
    app.run()
    return app.return_code or 0  # 1 after a crash or when the network could not be joined


def size_from_the_terminal() -> None:
    """Forget COLUMNS and LINES when a terminal can say its own size.

    Textual (through shutil) takes them as overrides of the terminal's size, and shells set
    them (readline, bash's checkwinsize), at times exported: a pair from another window drew
    the app at the wrong size. They stay where no terminal answers: textual-serve's browser
    sessions size the app through them (and ROWS).
    """
    for stream in (sys.__stdout__, sys.__stderr__):
        try:
            os.get_terminal_size(stream.fileno())  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            continue
        os.environ.pop("COLUMNS", None)
        os.environ.pop("LINES", None)
        return


def warn_open_network(connect: str | None) -> None:
    if connect and auth.client_token() is None and not auth.is_loopback(parse_address(connect)[0]):
        print(auth.open_bind_warning("the network", connect), file=sys.stderr, flush=True)


def remember_theme(app, theme: str | None, save) -> None:
    """Start in the configured theme; write the palette's choice back to the config file."""
    if theme is not None and theme in app.available_themes:
        app.theme = theme

    saved = [app.theme]

    def changed(new) -> None:
        if new.name != saved[0]:
            try:
                save(new.name)
                saved[0] = new.name
            except OSError as error:
                app.notify(f"theme not saved: {error.strerror}", severity="warning", markup=False)

    app.theme_watchers.append(changed)


def _open_store(path: str | None) -> RunStore:
    """The run history; a storage problem is said once on stderr and the run goes on in memory."""
    return RunStore.open(path, on_error=lambda text: print(f"cartpole-tui: {text}", file=sys.stderr))


def with_saved_population(args: argparse.Namespace, options: SessionOptions) -> SessionOptions:
    """The embedded swarm keeps what it learned beside the run history (``<db>.population.npz``)
    and starts from it (``--fresh``: from random weights), headless as in the app."""
    if options.connect or options.agent != "swarm":
        return options
    return replace(options, population_file=beside_history(args.db, args.env_id), fresh=args.fresh)


@contextmanager
def _open_session(args: argparse.Namespace, on_event=None):
    """The session `run` asks for, recording into ``--db``; closed with the store after. Says
    on standard error what the embedded swarm started from."""
    store = _open_store(args.db)
    try:
        with reported_failures():
            session = Session(with_saved_population(args, session_options(args)), on_event=on_event, store=store)
            try:
                session.open()
                if session.control is not None and not session.options.embed_env:
                    session.control.wait_environment(session.events.announce_wait)
                note = session.network.population_note if session.network is not None else None
                if note:
                    print(note, file=sys.stderr, flush=True)
                yield session, store
            finally:
                session.close()
    finally:
        store.close()


def _steps_per_s(store: RunStore, run_id: str | None, told: threading.Event) -> float | None:
    """A run's steps a second as its history has them (RunRecord.steps_per_s, the app's figure),
    once the session ``told`` its end: control.run returns at ENV_DONE, and the session records
    the run's last episodes, or re-reads the environment's own file, in its thread just after."""
    told.wait(defaults.RUN_END_TOLD_WAIT)
    return next((r.steps_per_s for r in reversed(store.runs()) if r.run_uid == run_id), None)


def _progress(label: str, field: str, redraw_hz: float, *more_columns) -> Progress:
    """A transient bar on stderr, when it is a terminal: ``label``, done of total, the task's ``field``."""
    stderr = Console(stderr=True)
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn(f"{{task.fields[{field}]}}"))
    return Progress(
        *columns,
        TimeElapsedColumn(),
        *more_columns,
        console=stderr,
        transient=True,
        disable=not stderr.is_terminal,
        refresh_per_second=redraw_hz,
    )


class _Lines:
    """Lines on standard error above the progress bar, written by a thread of their own at the
    redraw rate (and at the end); the session's thread only queues them. On a terminal a batch
    is at most a screenful, the latest lines, after one counting those left out: a line an
    episode over a slow link (8 KiB/s) blocked the run in its writes, 3× slower."""

    def __init__(self, progress: Progress, redraw_hz: float):
        self._console = progress.console
        self._interval = 1 / redraw_hz
        screenful = max(1, self._console.height - 2) if self._console.is_terminal else None  # the bar, the count
        self._pending: deque[Text] = deque(maxlen=screenful)
        self._left_out = 0
        self._lock = threading.Lock()  # the queue
        self._writing = threading.Lock()  # one batch at a time, in order
        self._done = threading.Event()
        self._writer = threading.Thread(target=self._write_batches, name="lines", daemon=True)

    def add(self, line: str) -> None:
        with self._lock:
            if len(self._pending) == self._pending.maxlen:
                self._left_out += 1
            self._pending.append(Text(line))

    def say(self, line: Text) -> None:
        """A line never left out (a warning), after those queued before it."""
        with self._writing:
            self._write_queued()
            self._console.print(line, soft_wrap=True, highlight=False)

    def flush(self) -> None:
        with self._writing:
            self._write_queued()

    def _write_queued(self) -> None:
        with self._lock:
            batch, left_out = list(self._pending), self._left_out
            self._pending.clear()
            self._left_out = 0
        if left_out:
            batch.insert(0, Text(f"… {left_out:,} more (every line when standard error is no terminal)", style="dim"))
        if batch:
            self._console.print(Text("\n").join(batch), soft_wrap=True, highlight=False)

    def _write_batches(self) -> None:
        while not self._done.wait(self._interval):
            self.flush()

    def __enter__(self) -> _Lines:
        self._writer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._writer.join()
        self.flush()


def strict_json(value: object) -> str:
    """``value`` as strict JSON (RFC 8259, what ``jq`` reads): a non-finite number, which only a
    peer's message can bring, is null."""

    def finite(item: object) -> object:
        if isinstance(item, float) and not math.isfinite(item):
            return None
        if isinstance(item, dict):
            return {key: finite(v) for key, v in item.items()}
        if isinstance(item, (list, tuple)):
            return [finite(v) for v in item]
        return item

    return json.dumps(finite(value), allow_nan=False)


def run(args: argparse.Namespace) -> int:
    """One run. Its result is standard output's only content (with --json, one JSON object);
    progress and every episode go to standard error."""
    if args.schedule:
        return schedule(args)
    progress = _progress("run", "last", args.redraw_hz, TextColumn("ETA"), TimeRemainingColumn())
    task = progress.add_task("run", total=args.episodes, last="")
    lines = _Lines(progress, args.redraw_hz)
    out = Console(highlight=False)
    scores: dict[tuple[str, int], float] = {}  # (run id, episode number) -> score: they end out of order
    in_order = InOrder()  # the episode lines in number order, as the plot takes them
    telling = threading.Lock()  # the session's thread tells them as they come, this one the rest
    ended = threading.Event()  # the session told the run's end: the history has its figures

    def tell(episodes: list[EpisodeFinished]) -> None:
        for episode in episodes:
            lines.add(f"episode {episode.episode:>5}  score {score(episode.score)}")

    def tell_rest() -> None:
        with telling:
            tell(in_order.flush())

    def on_event(event) -> None:
        if isinstance(event, EpisodeFinished):
            scores[event.run_id, event.episode] = event.score
            progress.update(task, advance=1, last=f"last {event.score:g}")
            with telling:
                tell(in_order.add(event))
        elif isinstance(event, RunFinished):
            ended.set()
        elif isinstance(event, NetworkError) and not event.ends_run:  # that one is the command's error
            lines.say(Text(event.line, style="yellow"))

    given_up: dict = {}  # --json: the report of the run given up on (a stall, the broker lost)
    with (
        _one_json_object(args, lambda: given_up or _nothing_played(args)),
        _open_session(args, on_event) as (session, store),
        progress,
        lines,
        _signals_as_interrupts() as caught,
    ):
        try:
            result = session.control.run(args.episodes, args.deterministic, args.seed, idle_timeout=args.timeout)
        except KeyboardInterrupt:
            result = _stop_interrupted(session)
            tell_rest()  # a stopped run's numbers that never came: the rest, gaps and all
            lines.flush()
            progress.stop()
            # the stopped run's rate as its history has it, as for a run that ended (it said null)
            rate = _steps_per_s(store, result.run_id, ended) if result.run_id else None
            speed = f", {steps_per_second(rate)} steps/s" if rate else ""
            finished = (
                f"average score {average(result.avg_score)} over {result.episodes:,} finished episodes{speed}"
                if result.episodes
                else "no episode finished"
            )
            print(f"cartpole-tui: {caught.name}: run stopped; {finished}", file=sys.stderr)
            if args.json:  # what was played, for `| jq`: the report says it stopped
                print(strict_json(_run_report(args, session, result, scores, rate)), flush=True)
            return caught.code
        except _FAILURES:  # stalled, no progress for --timeout, the broker lost: said on stderr
            tell_rest()
            # STOP, so that the run is not left "running" where it plays (a swarm joining later
            # found it there, waiting); `| jq` still reads one object, with what was played
            given_up.update(_run_report(args, session, _stop_given_up(session), scores, None))
            raise
        tell_rest()
        rate = _steps_per_s(store, result.run_id, ended)
    if args.json:
        print(strict_json(_run_report(args, session, result, scores, rate)), flush=True)
    else:
        speed = f", {steps_per_second(rate)} steps/s" if rate else ""
        out.print(
            f"average score {average(result.avg_score)} over {plural(result.episodes, 'episode')} (ENV_DONE){speed}"
        )
    return 0


@contextmanager
def _one_json_object(args: argparse.Namespace, so_far: Callable[[], dict]):
    """With --json a command that fails still prints one JSON object on standard output: ``so_far()``
    and the error standard error says (failing before its run, `| jq` read nothing and succeeded)."""
    try:
        yield
    except CommandError as error:
        if args.json:
            print(strict_json({**so_far(), "error": str(error)}), flush=True)
        raise


def _nothing_played(args: argparse.Namespace) -> dict:
    """`run --json`'s object when no run began."""
    return _run_report(args, None, RunFinished(None, 0.0, 0, stopped=True), {}, None)


def _stop_given_up(session: Session) -> RunFinished:
    """The run this command gives up on, stopped where it plays while the network still hears."""
    control = session.control
    return _stop_interrupted(session) if control is not None and control.playing else _given_up(session)


def _run_report(
    args: argparse.Namespace,
    session: Session | None,
    result: RunFinished,
    scores: dict[tuple[str, int], float],
    rate: float | None,
) -> dict:
    """`run --json`'s object: the run's result, its scores by episode number, and ``"error": null``
    (a run given up on says why: :func:`_one_json_object`)."""
    numbered = sorted((episode, score) for (run_id, episode), score in scores.items() if run_id == result.run_id)
    return {
        "avg_score": result.avg_score if result.episodes else None,  # no episode: no average (it said 0)
        "episodes": result.episodes,
        "deterministic": args.deterministic,
        "stopped": result.stopped,
        "scores": [score for _, score in numbered] if numbered else result.scores,  # by episode number
        "address": session.address if session is not None else args.connect,
        "steps_per_s": rate,
        "error": None,
    }


class _Caught:
    """Which signal ended a command: its name and the shell's exit code (128 + number)."""

    name, code = "interrupted", 130


@contextmanager
def _signals_as_interrupts():
    """SIGTERM as Ctrl-C (KeyboardInterrupt) while inside; says which one it was."""
    caught = _Caught()

    def on_term(*_):
        caught.name, caught.code = "terminated", 143
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield caught
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stop_interrupted(session: Session) -> RunFinished:
    """Ask the environment to STOP; its ENV_DONE (STOPPED) records the run. Without one in
    time (the published environment knows no STOP) the run is recorded as stopped here."""
    control = session.control
    if control is None:  # the session is open while a run goes: never so
        raise CommandError("not connected to the network")
    try:
        control.stop_run()
        return control.wait_run(idle_timeout=defaults.STOP_ANSWER_TIMEOUT)
    except (ControlTimeout, ConnectionError, KeyboardInterrupt):
        result = _given_up(session)
        session.stopped_unanswered(result)
        return result


def _given_up(session: Session) -> RunFinished:
    """The run this command gave up on, as it stands: the episodes it heard of."""
    control = session.control
    scores = control.scores() if control is not None else []
    avg = sum(scores) / len(scores) if scores else 0.0
    return RunFinished(control.run_id if control is not None else None, avg, len(scores), True, scores)


def schedule(args: argparse.Namespace) -> int:
    """`run --schedule`: rounds of train / evaluate / evolve. As for one run, its result is standard
    output's only content (with --json, one JSON object); progress, the learning curve (a line an
    episode) and each round's line go to standard error."""
    spaces = spaces_of(args.env_id)
    try:
        target = target_for(spaces, args.target)
    except ValueError as error:
        raise CommandError(str(error)) from None
    progress = _progress("round", "phase", args.redraw_hz)
    task = progress.add_task("schedule", total=args.rounds, phase="")
    lines = _Lines(progress, args.redraw_hz)
    curve: list[float] = []
    phase: dict[str, Any] = {"name": "", "round": 0}
    # the curve in each run's episode numbers' order, as `run`'s lines: a vectorised run's end order
    # is by length (round 1's 100 training lines read 8 8 8 9 9 … 500, a climb within every round)
    in_order = InOrder()
    played_in: dict[str, tuple[str, int]] = {}  # run id -> the (phase, round) it was played in
    telling = threading.Lock()  # the session's thread tells episodes, this one a phase's rest

    def tell(episodes: list[EpisodeFinished]) -> None:
        for event in episodes:
            curve.append(event.score)
            mean = sum(curve[-100:]) / len(curve[-100:])
            name, number = played_in.get(event.run_id, (phase["name"], phase["round"]))
            lines.add(
                f"{name:<7} round {number:>2}  episode {len(curve):>5}  score {score(event.score):>5}  "
                f"mean100 {average(mean):>6}  wall {time.monotonic() - started:6.1f}s"
            )

    def on_phase(name: str, number: int) -> None:
        with telling:
            tell(in_order.flush())  # the run before has ended: its rest before this phase's lines
            phase.update(name=name, round=number)
        progress.update(task, phase=name)

    def on_episode(event: EpisodeFinished) -> None:
        with telling:
            if len(played_in) > 1000:
                played_in.clear()
            played_in.setdefault(event.run_id, (phase["name"], phase["round"]))
            tell(in_order.add(event))

    played: list[RoundResult] = []

    def on_round(result) -> None:
        with telling:
            tell(in_order.flush())  # the round's runs have ended: their lines before its line
        played.append(result)
        progress.update(task, completed=result.round)
        # train_seconds is the schedule's training so far (the JSON's too), not this round's
        lines.add(
            f"round {result.round}: train avg {average(result.train_avg)}  eval avg {average(result.eval_avg)}"
            + (f" over {result.eval_episodes}" if result.eval_episodes < args.evaluate else "")
            + below(result)
            + f"  training {result.train_seconds:.1f}s so far"
            + ("  evolved" if result.evolved else "")
            + (f"  check {average(result.confirm_avg)} over {result.confirm_episodes}" if result.confirm_avg else "")
        )

    def so_far() -> dict:
        """The rounds played, as a schedule that did not end its own way reports them."""
        settings = ScheduleSettings(args.rounds, args.train, args.evaluate, args.confirm, target)
        stopped = ScheduleResult(settings, played, wall_seconds=time.monotonic() - started, stopped=True)
        return {**stopped.to_json(), "error": None}

    started = time.monotonic()  # set again once the network is up (a failure before says this)
    with (
        _one_json_object(args, so_far),
        _open_session(args) as (session, _),
        progress,
        lines,
        _signals_as_interrupts() as caught,
    ):
        started = time.monotonic()  # the episode lines' wall clock: the schedule's, as its result's wall_seconds
        try:
            result = run_schedule(
                session.control,
                args.rounds,
                args.train,
                args.evaluate,
                on_round=on_round,
                on_episode=on_episode,
                on_phase=on_phase,
                final_eval=args.confirm,
                seed=args.seed,
                idle_timeout=args.timeout,
                target=target,
                best=best_episode(spaces),
                game=None if args.target is not None else spaces.env_id,
                on_target=lambda game, aim: lines.say(Text(retargeted(game.env_id, aim), style="yellow")),
            )
        except (KeyboardInterrupt, ScheduleStopped) as error:
            interrupted = isinstance(error, KeyboardInterrupt)  # else another control room's STOP (its x)
            if interrupted and session.control is not None and session.control.playing:
                _stop_interrupted(session)  # the run going is stopped and recorded so
            with telling:
                tell(in_order.flush())
            lines.flush()
            progress.stop()
            why = caught.name if interrupted else "another control room sent STOP"
            # the round it was in (it said "after 0 rounds" with round 1's training played)
            where = f"in round {phase['round']}" if phase["round"] else "before its first run"
            print(f"cartpole-tui: {why}: schedule stopped {where}", file=sys.stderr)
            if args.json:  # the rounds played, for `| jq`
                print(strict_json(so_far()), flush=True)
            return caught.code if interrupted else EXIT_FAILURE
        except _FAILURES:  # a stall, the broker lost: said on stderr, and one object on stdout
            if session.control is not None and session.control.playing:
                _stop_interrupted(session)  # not left "running" where it plays
            raise
        with telling:
            tell(in_order.flush())  # the last run's rest
    if args.json:
        print(strict_json({**result.to_json(), "error": None}), flush=True)
    else:
        aim = result.settings.target  # the game's played (run_schedule's game)
        verdict = f"solved: ≥ {aim:g}" if result.solved else f"not solved: below {aim:g}"
        print(
            f"final deterministic average {average(result.final_eval_avg)} ({verdict}) "
            f"after {plural(len(result.rounds), 'round')}, "
            f"{result.wall_seconds:.1f}s"
        )
    return 0


def swarm(args: argparse.Namespace) -> int:
    host, port = parse_address(args.connect)
    what = f"swarm {args.only}" if args.only else "swarm"
    print(f"{what} of {args.models} models connecting to {args.connect}; Ctrl-C to stop", flush=True)
    with reported_failures():
        if args.load is not None and not os.path.exists(args.load):
            raise CommandError(f"--load {args.load}: no such file")
        say = functools.partial(print, flush=True)  # what it loaded (or not)
        serve_swarm(
            host,
            port,
            args.models,
            args.seed,
            load=args.load,
            save=args.save,
            only=args.only,
            say=say,
            env_id=args.env_id,
        )
    return 0


def evolve(args: argparse.Namespace) -> int:
    """One evolution step; what its EVO_DONE reported, as a line or (--json) one JSON object."""
    host, port = parse_address(args.connect)
    # with --json, a failure too is one object: the figures null, its "error" the line stderr has
    with _signals_as_interrupts() as caught:
        try:
            with _one_json_object(args, lambda: _evolve_report(args, None)), reported_failures():
                control = ControlClient(host, port)
                try:
                    control.client.check_broker()  # an address that is no broker is said so, not waited on
                    done = control.evolve(timeout=args.timeout)
                finally:
                    control.close()
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM (a script's timeout): `| jq` still reads one object
            print(f"cartpole-tui: {caught.name}", file=sys.stderr)
            if args.json:
                print(strict_json({**_evolve_report(args, None), "error": caught.name}), flush=True)
            return caught.code
    if args.json:
        print(strict_json(_evolve_report(args, done)), flush=True)
        return 0
    at = time.strftime("%H:%M:%S", time.localtime(done.at))
    print(f"evolution done in {done.seconds:.2f}s (EVO_DONE from {done.sent_by} at {at})")
    return 0


def _evolve_report(args: argparse.Namespace, done: EvolutionFinished | None) -> dict:
    """`evolve --json`'s object: what EVO_DONE reported (null without one) and ``"error": null``."""
    return {
        "seconds": done.seconds if done else None,
        "sent_by": done.sent_by if done else None,
        "at": done.at if done else None,  # Unix time its EVO_DONE arrived
        "generation": done.generation if done else None,  # these four when the evolution reports them (ours does)
        "fitness": list(done.fitness) if done else [],
        "elite": done.elite if done else None,
        "diversity": done.diversity if done else None,
        "address": args.connect,
        "error": None,
    }


def _serve_until_interrupted(close, lost: threading.Event) -> None:
    """Block until Ctrl-C, SIGTERM or a lost connection; then ``close()``."""
    signal.signal(signal.SIGTERM, lambda *_: lost.set())
    try:
        lost.wait()
    except KeyboardInterrupt:
        pass
    finally:
        close()


def env(args: argparse.Namespace) -> int:
    host, port = parse_address(args.connect)
    lost = threading.Event()
    lost_reason: list[str] = []

    def on_disconnect(reason: str) -> None:
        lost_reason.append(reason)
        lost.set()

    store = _open_store(args.db)
    with reported_failures():
        try:
            component = VectorEnvironmentComponent(
                host,
                port,
                env_id=args.env_id,
                seed=args.seed,
                parallel=args.parallel,
                on_disconnect=on_disconnect,
            )
        except BaseException:
            store.close()
            raise
    recorder = StoreRecorder(store, args.env_id, args.connect)
    component.add_observer(recorder)
    mirror = None
    if args.tensorboard is not None:
        mirror = TensorBoardMirror(args.tensorboard, on_error=lambda text: print(text, file=sys.stderr, flush=True))
        component.add_observer(mirror)
    component.logic.history = recorder.history  # announced with each run: control rooms sharing the file read it

    def close() -> None:
        component.close()
        store.close()
        if mirror is not None:
            mirror.close()

    with reported_failures():
        try:
            # start() sends the state: a peer that is no broker may already have answered (NotABroker)
            component.start()
            component.client.check_broker()
        except ConnectionError:
            close()
            raise
    print(f"environment {args.env_id} connected to {args.connect}; Ctrl-C to stop", flush=True)

    _serve_until_interrupted(close, lost)
    if lost_reason:  # the broker went away: a failure, as for the swarm
        raise CommandError(f"lost the broker: {lost_reason[0]}")
    return 0


def export(args: argparse.Namespace) -> int:
    """To ``--output``, or standard output for none or "-"; TensorBoard to the folder ``--out``."""
    with reported_failures():
        if args.format in FOLDER_FORMATS:
            count = export_to_folder(args.db, args.runs, args.output)
            runs = f"{count} run{'' if count == 1 else 's'}"
            # the [tensorboard] extra writes the files; TensorBoard itself is a tool of its own
            look = f"see them: pip install tensorboard; tensorboard --logdir {args.output}"
            print(f"exported {runs} to {args.output} ({look})", file=sys.stderr)
            return 0
        if args.output in (None, "-"):
            try:
                export_runs(args.db, args.runs, args.format, sys.stdout)
                sys.stdout.flush()
            except BrokenPipeError:  # e.g. `| head -1`: the reader has what it wanted
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        written = export_to_file(args.db, args.runs, args.format, args.output)
    print(f"exported to {written}", file=sys.stderr)
    return 0


def broker(args: argparse.Namespace) -> int:
    """The broker's loop in this thread: the process lives as long as it serves, and exits 1
    should the loop ever end in an error (a supervisor sees it; issue 17)."""
    token = auth.client_token()  # read from --token-file / the environment / the config by the parser
    if token is None and not auth.is_loopback(args.host):
        print(auth.open_bind_warning("the broker", args.host), file=sys.stderr, flush=True)
    relay = None
    if args.nats:  # gateway mode: connect to NATS first, so an unreachable cluster changes nothing
        try:
            if args.nats_creds and not os.access(args.nats_creds, os.R_OK):
                raise NatsUnavailable(f"cannot read the NATS credentials file {args.nats_creds}")
            relay = NatsRelay(args.nats, args.network, max_frame=args.max_frame, credentials=args.nats_creds).start()
        except (NatsUnavailable, ValueError) as error:
            raise CommandError(str(error)) from None
    try:
        instance = Broker(
            args.host,
            args.port,
            max_frame=args.max_frame,
            relay=relay,
            token=token,
            trust=tuple(args.trust),
            max_per_address=args.max_per_address,
        )
    except OSError as error:
        if relay is not None:
            relay.close()
        raise CommandError(f"cannot listen on {args.host}:{args.port}: {error.strerror or error}") from None
    mode = f" (gateway of network {args.network!r} on NATS {relay.bridge.connected_url})" if relay else ""
    print(f"broker listening on {instance.address}{mode}; Ctrl-C to stop", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: instance.stop())
    try:
        instance.serve_forever()
    except KeyboardInterrupt:
        pass
    except Exception as error:
        logging.getLogger(__name__).critical("the broker's loop failed", exc_info=True)
        raise CommandError(f"the broker stopped: {error!r}") from None
    finally:
        if relay is not None:
            relay.close()
    return 0
