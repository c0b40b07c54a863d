"""Runs as TensorBoard event files: one folder per run, written after the fact or mirrored live.

History layer. Each run's folder holds ``episode/score`` and ``episode/steps`` by episode
number, and at its end (ENV_DONE) ``run/avg_score``, ``run/steps`` and ``run/steps_per_s`` at
the step of its last episode, the run's steps a second being the history's one definition.
The writer is tensorboardX's event writer (the optional extra ``[tensorboard]``); nothing
else here needs it, so without it only TensorBoard output is refused, with one line.

:func:`export_runs` writes runs from the history (``export --format tensorboard``);
:class:`TensorBoardMirror` writes a run's episodes as they end (``--tensorboard DIR``), in
episode-number order, from a thread of its own, flushed after each batch it writes, so a
kill -9 leaves every episode it had written readable.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import queue
import re
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from typing import Any

from cartpole_tui.env import defaults
from cartpole_tui.env.components.in_order import InOrder
from cartpole_tui.env.events import EnvironmentObserver, EpisodeFinished, RunFinished, RunJoined, RunStarted
from cartpole_tui.env.history.records import RunRecord, played_rate
from cartpole_tui.env.history.store import RunStore

EXTRA = "pip install 'cartpole-tui[tensorboard]'"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_PLAIN = re.compile(r"[a-z0-9_-][a-z0-9_.-]*")
_files = itertools.count()  # event files this process opened: each file's name is its own


class TensorBoardUnavailable(Exception):
    """tensorboardX is not installed."""


class TensorBoardFolderError(ValueError):
    """The folder to write in cannot be one: a file, or a folder whose parent is missing (a
    ValueError: where a session opens, it is said in one line like any bad option)."""


def require_writer() -> None:
    """Raise :class:`TensorBoardUnavailable` (one line saying how to get it) without the extra."""
    try:
        import tensorboardX  # noqa: F401
    except ImportError:
        raise TensorBoardUnavailable(f"TensorBoard output needs tensorboardX: {EXTRA}") from None


def folder_problem(path: str) -> str | None:
    """Why ``path`` cannot be a TensorBoard log folder (None when it can): it is a file, or it is
    missing and so is its parent. A missing folder is made, its parents never (as for files)."""
    if os.path.isdir(path):
        return None
    if os.path.lexists(path):
        return "not a folder"
    parent = os.path.dirname(os.path.abspath(path))
    return None if os.path.isdir(parent) else f"no folder {parent} (make it first, or name another)"


def safe_name(text: str) -> str:
    """``text`` (a run id, maybe a peer's) as one path component: letters, digits, ``_ . -`` only,
    no leading dot; never empty, ``.`` or ``..``. An id that is not such a name already (in lower
    case, at most TENSORBOARD_NAME_MAX characters) has a hash of it added: ``a/b`` and ``a_b``, or
    ``Run`` and ``run`` on a file system that ignores case, would share a folder, and TensorBoard
    would draw both runs' episodes as one run."""
    if len(text) <= defaults.TENSORBOARD_NAME_MAX and _PLAIN.fullmatch(text):
        return text  # our own run ids (hex) are named as they are
    name = _UNSAFE.sub("_", text[: defaults.TENSORBOARD_NAME_MAX]).lstrip(".") or "run"
    return f"{name}-{hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()[:16]}"


def export_folder_name(run: RunRecord) -> str:
    """``run-0038-<run id>``: sorted by run number in TensorBoard's list."""
    return f"run-{run.number:04d}-{safe_name(run.run_uid)}"


def live_folder_name(run_id: str, started: float) -> str:
    """``20261202-183005.250-<run id>`` (local time of its start, to the millisecond: a schedule
    starts several runs a second, and within one second they sorted by their random ids)."""
    millis = int(started * 1000) % 1000
    return f"{time.strftime('%Y%m%d-%H%M%S', time.localtime(started))}.{millis:03d}-{safe_name(run_id)}"


class RunEventFile:
    """One run's event file in ``folder`` (made if missing, its parent must exist)."""

    def __init__(self, folder: str) -> None:
        from tensorboardX.event_file_writer import EventsWriter
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.proto.summary_pb2 import Summary

        self._event: Any = Event
        self._summary: Any = Summary
        os.makedirs(folder, exist_ok=True)
        # the pid and a count in the name: two writers of one folder within a second never share a file
        suffix = f".{os.getpid()}.{next(_files)}"
        self._writer: Any = EventsWriter(os.path.join(folder, "events"), filename_suffix=suffix)
        self.last_step = 0

    def _write(self, step: int, wall_time: float, **values: float) -> None:
        summary = self._summary(value=[self._summary.Value(tag=tag, simple_value=v) for tag, v in values.items()])
        self._writer.write_event(self._event(wall_time=wall_time or time.time(), step=step, summary=summary))
        self.last_step = max(self.last_step, step)

    def episode(self, number: int, score: float, steps: int, wall_time: float) -> None:
        self._write(number, wall_time, **{"episode/score": score, "episode/steps": float(steps)})

    def ended(self, avg_score: float, steps: int, steps_per_s: float | None, wall_time: float) -> None:
        """The run's ENV_DONE figures, at its last episode's step."""
        values = {"run/avg_score": avg_score, "run/steps": float(steps)}
        if steps_per_s is not None:
            values["run/steps_per_s"] = steps_per_s
        self._write(self.last_step, wall_time, **values)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


# --- after the fact: export ------------------------------------------------------------------


def export_runs(store: RunStore, runs: list[RunRecord], out_dir: str) -> int:
    """One folder per run in ``out_dir`` (made if missing); a run's folder written before is
    replaced whole, so exporting again does not double its points. Returns how many runs."""
    require_writer()
    problem = folder_problem(out_dir)
    if problem is not None:
        raise TensorBoardFolderError(f"{out_dir}: {problem}")
    os.makedirs(out_dir, exist_ok=True)
    for run in runs:
        target = os.path.join(out_dir, export_folder_name(run))
        building = tempfile.mkdtemp(dir=out_dir, prefix=".export-")
        try:
            _write_run(store, run, building)
            if os.path.isdir(target):
                shutil.rmtree(target)
            os.replace(building, target)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
    return len(runs)


def _write_run(store: RunStore, run: RunRecord, folder: str) -> None:
    events = RunEventFile(folder)
    try:
        for episode in store.episodes(run.run_uid):  # in number order
            events.episode(episode.index, episode.score, episode.steps, episode.wall_time)
        if run.avg_score is not None:
            events.ended(run.avg_score, run.total_steps, run.steps_per_s, run.ended or run.started)
    finally:
        events.close()


# --- live: the mirror --------------------------------------------------------------------------


class TensorBoardMirror(EnvironmentObserver):
    """Writes the runs it is told of into ``out_dir``, one folder each, as their episodes end.

    Takes the environment's events (as its observer) or a session's event stream (:meth:`take`)
    in any thread and only enqueues; its own thread orders each run's episodes by number, writes
    them and flushes after every batch. A failing disk is said once through ``on_error``; the
    run goes on (a mirror never fails a run)."""

    def __init__(self, out_dir: str, on_error: Any = None) -> None:
        require_writer()
        problem = folder_problem(out_dir)
        if problem is not None:
            raise TensorBoardFolderError(f"{out_dir}: {problem}")
        os.makedirs(out_dir, exist_ok=True)
        self.out_dir = out_dir
        self.on_error = on_error
        self.failed: str | None = None  # the first write error: nothing more is written after it
        self.written = 0  # episodes written (a test's and a benchmark's count)
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._order = InOrder()
        self._files: OrderedDict[str, RunEventFile] = OrderedDict()
        self._started: dict[str, float] = {}  # run id -> its start, for its folder's name
        self._played: dict[str, tuple[int, float]] = {}  # run id -> steps written, its last episode's end
        self._thread = threading.Thread(target=self._work, name="tensorboard-mirror", daemon=True)
        self._thread.start()

    # --- any thread -----------------------------------------------------------------------

    def take(self, event: object) -> None:
        """A run event of a session's stream (others are ignored)."""
        if isinstance(event, (RunStarted, RunJoined, EpisodeFinished, RunFinished)):
            self._queue.put(event)

    def on_run_started(self, event: RunStarted) -> None:
        self.take(event)

    def on_episode(self, event: EpisodeFinished) -> None:
        self.take(event)

    def on_run_finished(self, event: RunFinished) -> None:
        self.take(event)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, close the files and end the thread."""
        self._queue.put(None)
        self._thread.join(timeout)

    # --- its thread -------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            batch = [self._queue.get()]
            while True:  # what else is queued is written before the one flush
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                if self.failed is None:
                    for event in batch:
                        if event is not None:
                            self._handle(event)
                    for events in self._files.values():
                        events.flush()
            except (OSError, ValueError) as error:  # a full or vanished disk; never the run's end
                reason = getattr(error, "strerror", None) or error
                self.failed = f"TensorBoard mirror stopped: cannot write in {self.out_dir}: {reason}"
                if self.on_error is not None:
                    self.on_error(self.failed)
            if None in batch:
                self._close_all()
                return

    def _handle(self, event: object) -> None:
        if isinstance(event, RunStarted):
            self._start(event.run_id, event.started)
        elif isinstance(event, RunJoined):
            self._start(event.run.run_id, event.run.started)
            self._order.joined(event.run.run_id)  # its earlier numbers never come here
        elif isinstance(event, EpisodeFinished):
            self._write(self._order.add(event))
        elif isinstance(event, RunFinished):
            self._write(self._order.flush())
            if event.run_id is not None:
                self._end(event)

    def _start(self, run_id: str, started: float) -> None:
        self._write(self._order.flush())  # an earlier run's rest, its end never seen
        if len(self._started) > 1000:  # a peer announcing run after run: names of old runs go
            self._started.clear()
            self._played.clear()
        self._started.setdefault(run_id, started or time.time())

    def _file(self, run_id: str) -> RunEventFile:
        events = self._files.get(run_id)
        if events is None:
            started = self._started.setdefault(run_id, time.time())
            events = self._files[run_id] = RunEventFile(os.path.join(self.out_dir, live_folder_name(run_id, started)))
            while len(self._files) > defaults.TENSORBOARD_OPEN_RUNS:
                self._files.popitem(last=False)[1].close()
        return events

    def _write(self, episodes: list[EpisodeFinished]) -> None:
        for episode in episodes:
            self._file(episode.run_id).episode(episode.episode, episode.score, episode.steps, episode.wall_time)
            steps, last = self._played.get(episode.run_id, (0, episode.wall_time))
            self._played[episode.run_id] = (steps + episode.steps, max(last, episode.wall_time))
            self.written += 1

    def _end(self, event: RunFinished) -> None:
        assert event.run_id is not None
        events = self._file(event.run_id)
        # the history's figure (what `run`, the table and the export say), from the episodes written
        steps, last = self._played.pop(event.run_id, (0, None))
        steps_per_s = played_rate(steps, self._started.get(event.run_id, time.time()), last)
        # the history's figure: its episodes' steps (a room that does not run the environment is told
        # none at the end; a stopped run's ENV_DONE counts its unfinished episodes' too)
        events.ended(event.avg_score, steps, steps_per_s, time.time())
        events.close()
        del self._files[event.run_id]

    def _close_all(self) -> None:
        for events in self._files.values():
            try:
                events.close()
            except OSError:
                pass
        self._files.clear()
