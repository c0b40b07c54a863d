"""What the control room says about the network and the run going, from plain state.

`status_line` is the top line (address, environment, clients, connection, steps a second).
Steps a second have one definition, the run history's (``RunRecord.steps_per_s``: a run's
recorded steps over its wall time), so the status line, the log and the runs table show
one figure for one run. `RunProgress` follows the run going: its number,
the episodes it finished, the progress label with its stall hint, and the run's and the
schedule's lines in the log. No widgets: the app feeds events and clock ticks in and puts
the text where it goes, so every sentence here can be checked by a unit test.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from rich.cells import cell_len
from rich.text import Text

from cartpole_tui.env import defaults
from cartpole_tui.env.events import EpisodeFinished, RunFinished, RunJoined, RunStarted
from cartpole_tui.env.history.records import RunRecord
from cartpole_tui.env.runtime.schedule import RoundResult, ScheduleResult
from cartpole_tui.env.wire import protocol
from cartpole_tui.env.words import average, plural, score, steps_per_second

CONNECTION_MARKS = {
    "connected": ("● connected", "green"),
    "connecting": ("○ connecting…", "yellow"),
    "disconnected": ("● disconnected", "red"),
    "unreachable": ("● unreachable", "red"),
    "another environment": ("● another environment", "red"),  # the broker has one: join it with --no-env
    "not started": ("● network not started", "red"),  # the embedded network (its reason on the screen)
    "offline": ("○ offline: run history only", "dim"),
}
SHORT_MARKS = {
    "not started": "● not started",
    "offline": "○ offline",
    "another environment": "● another env",
    "connecting": "○ connecting…",
}
WIDE_STATUS = 100  # columns from which the status line starts with the app's name
STATUS_PADDING = 2  # the status line's padding, a column each side (app.tcss #status)


@dataclass(frozen=True)
class StatusFacts:
    """What the status line shows."""

    address: str  # the network's address, or the history file offline
    env_id: str
    connection: str  # a key of CONNECTION_MARKS
    width: int  # the terminal's columns
    clients: int = 0  # clients the broker reports
    steps_per_second: float | None = None  # the current (or last) run's, as the runs table has it
    open_network: bool = False  # joined a broker off this machine without a token


def status_line(facts: StatusFacts) -> Text:
    """``cartpole-tui │ 127.0.0.1:7007 │ CartPole-v1 │ 5 clients │ ● connected  1,234 steps/s``.

    It fits its one row (``width`` less the padding): a line too long wrapped, and its second
    row, the steps a second, was hidden. Then the connection says it in short, then the
    environment's id goes; what is still too long is cut at the end with an ellipsis."""
    room = facts.width - STATUS_PADDING
    for short, env_id in ((False, True), (True, True), (True, False)):
        status = _status_text(facts, short, env_id)
        if status.cell_len <= room:
            return status
    status.truncate(max(room, 1), overflow="ellipsis")
    return status


def _status_text(facts: StatusFacts, short: bool, env_id: bool) -> Text:
    connected = facts.connection == "connected"
    clients = f"{plural(facts.clients, 'client')} │ " if facts.clients and connected else ""
    status = Text()
    if facts.width >= WIDE_STATUS:
        status.append("cartpole-tui", "bold").append(" │ ")
    status.append(f"{facts.address} │ " + (f"{facts.env_id} │ " if env_id else "") + clients)
    mark, style = CONNECTION_MARKS[facts.connection]
    status.append(SHORT_MARKS.get(facts.connection, mark) if short else mark, style)
    if facts.open_network:
        status.append(" │ open network", "bold red")
    if facts.steps_per_second and facts.connection != "offline":  # nothing plays: no live-looking rate
        status.append(f"  {steps_per_second(facts.steps_per_second)} steps/s")
    return status


@dataclass(frozen=True)
class Counted:
    """A run as this control room heard it: its episodes and state, and, when every finished episode
    was heard (or told with its steps on joining), its best score, its steps and when its latest
    episode ended (ENDED_AT: the environment's clock). Heard by every room alike, these are the
    environment's figures of one moment in each; the history (a file another process writes, read
    once a second) told each room its own moment (at 286/2000: best 83, 0.4s in one, 47, 0.2s in
    another)."""

    finished: int
    state: str = "running"
    best: float | None = None
    steps: int | None = None  # None: some episodes were not heard (joined mid-run): the history's figures
    last_at: float | None = None
    average: float | None = None  # its ENV_DONE's, once heard

    def heard(self, episode: EpisodeFinished) -> Counted:
        """With one more episode."""
        best = episode.score if self.best is None else max(self.best, episode.score)
        steps = None if self.steps is None else self.steps + episode.steps
        last_at = episode.wall_time if self.last_at is None else max(self.last_at, episode.wall_time)
        return replace(self, finished=self.finished + 1, best=best, steps=steps, last_at=last_at)

    def over(self, run: RunRecord) -> RunRecord:
        """``run`` as the runs table and the status line show it: while the history says it is
        running, with what was heard (its count always; its figures when every episode was heard)."""
        if run.state != "running":
            return run
        # ended here and not yet in the history: "done" with the ENV_DONE's average (it said
        # "done" and "—" beside "run 7 done · avg 92.2", new-user pass 4)
        average = run.avg_score if self.average is None else self.average
        if self.steps is None:
            return replace(run, finished=self.finished, state=self.state, avg_score=average)
        return replace(
            run,
            finished=self.finished,
            state=self.state,
            best=self.best,
            total_steps=self.steps,
            last_episode_at=self.last_at,
            avg_score=average,
        )


class RunProgress:
    """The run going, as the progress label and the log tell it; says once when it seems stuck."""

    def __init__(self, now: float, stall_hint_seconds: float = defaults.STALL_SECONDS):
        self.stall_hint_seconds = stall_hint_seconds
        self.current: RunStarted | None = None
        self.finished = 0  # episodes the current run finished
        self.numbers: dict[str, int] = {}  # run id -> its number in the run history
        # run number -> the run as heard here, for the runs table while the history has not caught up
        # (another process's file is read once a second)
        self.counted: dict[int, Counted] = {}
        self.label: str | None = None  # the progress label waiting for the next redraw
        self._seen = (-1, now)  # (steps + episodes, when that count last moved)
        self._stall_label: str | None = None  # the stall label last said
        self._missed: str | None = None  # the run joined mid-run with episodes this room was not told

    def number(self, run_id: str) -> int | None:
        return self.numbers.get(run_id)

    def take_label(self) -> str | None:
        """The progress label to show, once (None: it did not change)."""
        label, self.label = self.label, None
        return label

    def started(self, event: RunStarted, number: int | None, now: float) -> str:
        """A run began; ``number`` is its number in the history (None: not in it). Returns the log line."""
        self.current, self.finished = event, 0
        shown = self.numbers[event.run_id] = number if number is not None else len(self.numbers) + 1
        self._seen = (-1, now)
        self.counted[shown] = Counted(0, steps=0)
        self.label = f"run {shown} · waiting for the first episode"
        if not event.episodes:  # its start was not seen here (an environment that does not announce runs)
            return f"run {shown} seen: started elsewhere"
        return f"run {shown} started: {plural(event.episodes, 'episode')}" + (
            ", deterministic" if event.deterministic else ""
        )

    def remembered(self, run: RunRecord) -> None:
        """The history's last run, named until a run of this session is seen (after a restart the
        label said "no run yet" beside a history of runs)."""
        if self.numbers or self.current is not None:
            return
        if run.state == "running":
            told = f"{run.finished}/{run.params.episodes or '?'} episodes, running"
        elif run.state == "failed" or run.avg_score is None:
            told = f"{plural(run.finished, 'episode')} recorded"
        else:
            told = f"avg {average(run.avg_score)} over {plural(run.finished, 'episode')}" if run.finished else ""
        state = "" if run.state == "running" else f" {run.state}"
        self.label = f"last run {run.number}{state} · {told or 'no episode finished'}"

    def joined(self, event: RunJoined) -> str | None:
        """The run going when this control room joined: ``event.finished`` of its episodes are done.
        Returns the log's line on those its history has nothing of (None: none, or not its to record)."""
        self.finished = event.finished
        best, steps = event.figures if event.figures is not None else (None, None)
        number = self.numbers.get(event.run.run_id, "?")
        if isinstance(number, int):
            self.counted[number] = Counted(event.finished, best=best, steps=steps)
        self.label = f"run {number} · {event.finished}/{event.run.episodes}"
        if not event.missed:
            return None
        self._missed = event.run.run_id
        return (
            f"run {number} joined mid-run: {plural(event.missed, 'episode')} ended before this room could be told"
            f" them (a joining room is told the latest {protocol.MAX_STATE_SCORES:,} to end): not in its history"
        )

    def episode(self, event: EpisodeFinished, window: int, mean: float | None, last: float | None) -> None:
        """An episode of a run already started (they may end out of number order: counted, not
        taken by number); ``last`` and ``mean``: the plot's latest score and its rolling mean over
        ``window`` episodes, None while the plot has no episode of this run (it takes them in
        number order: its latest was the last run's, told under this run's number)."""
        self.finished += 1
        number = self.numbers.get(event.run_id)
        if number is not None:
            self.counted[number] = self.counted.get(number, Counted(0)).heard(event)
        asked = self.current.episodes if self.current and self.current.episodes else "?"
        # the plot's latest, or, while it has none of this run (it takes them in number order: a
        # vectorised run's first may end last), the latest of this run to end ("last —" at 19/20)
        score = f"{event.score if last is None else last:g}"
        self.label = f"run {self.numbers.get(event.run_id, '?')} · {self.finished}/{asked} · last {score}"
        if mean is not None and last is not None:
            self.label += f" · mean({window}) {average(mean)}"

    def ended(self, event: RunFinished, rate: float | None = None, recorded: int | None = None) -> Text:
        """The run finished (done or stopped); ``rate``: its steps a second as the history has
        them (None: not in it); ``recorded``: the episodes this room's history has of it, when
        fewer than the run's (joined mid-run). Returns the log line."""
        number = self.numbers.get(event.run_id, "?") if event.run_id is not None else "?"
        ending = "stopped" if event.stopped else "done"
        (finished, current), self.current = (self.finished, self.current), None
        run = self.numbers.get(event.run_id) if event.run_id is not None else None
        if run is not None:
            played = event.episodes or finished
            self.counted[run] = replace(
                self.counted.get(run, Counted(0)),
                finished=played,
                state=ending,
                average=event.avg_score if played or event.avg_score else None,  # 0.0 over none: none
            )
        speed = f", {steps_per_second(rate)} steps/s" if rate else ""
        if not event.episodes and not finished and not event.avg_score:
            self.label = f"run {number} {ending} · no episode finished"
            return Text(f"run {number} {ending}: no episode finished{speed}")
        # the published ENV_DONE tells no count (and comes before the last observation): its
        # average is over the episodes its START asked for, when this room heard them
        asked = current.episodes if current is not None and current.run_id == event.run_id else 0
        over = f" over {plural(event.episodes or asked, 'episode')}" if event.episodes or asked else ""
        # only of a run joined with episodes missed: the published environment's last DONE comes
        # after its ENV_DONE, so its starter's file had one episode fewer at this moment
        missed = event.run_id is not None and event.run_id == self._missed
        here = f"{recorded:,} recorded here" if missed and recorded is not None and recorded < event.episodes else ""
        self.label = f"run {number} {ending} · avg {average(event.avg_score)}{over}" + (f" · {here}" if here else "")
        return Text.assemble(
            f"run {number} {ending}: average ",
            (average(event.avg_score), "bold"),
            f"{over} (ENV_DONE){speed}" + (f"; {here.replace(' recorded', ' of them recorded')}" if here else ""),
        )

    def shown(self, run: RunRecord) -> RunRecord:
        """``run`` as the runs table shows it (see :meth:`Counted.over`)."""
        counted = self.counted.get(run.number)
        return run if counted is None else counted.over(run)

    def settled(self, numbers: list[int]) -> None:
        """These runs are no longer running in the history: it tells of them from now on."""
        for number in numbers:
            self.counted.pop(number, None)

    def bar(self) -> tuple[str, int, int] | None:
        """The progress bar's (run id, episodes asked (0: not known), episodes finished), None
        between runs."""
        return None if self.current is None else (self.current.run_id, self.current.episodes, self.finished)

    def lost(self) -> RunStarted | None:
        """The network went away: the run going (if any) is over; returns it."""
        current, self.current = self.current, None
        return current

    def check(self, steps: int, now: float, why: str | None = None) -> bool | None:
        """Whether the progress bar shows at ``now``, given the steps played so far: True while the
        run moves, False once it has shown no step and no episode for ``stall_hint_seconds`` (the
        label then says for how long, counting up by the second, and why that may be — ``why``,
        what the network showed, when known), None to leave it as it is."""
        if self.current is None:
            return None
        count = steps + self.finished
        seen, since = self._seen
        if count != seen:
            self._seen = (count, now)
            self._stall_label = None
            return True
        if now - since < self.stall_hint_seconds:
            return None
        label = (
            f"run {self.numbers.get(self.current.run_id, '?')} · {self.finished}/{self.current.episodes} · "
            f"no step for {int(now - since)}s: {why or 'waiting for agents — is the swarm running?'}"
        )
        if label != self._stall_label:  # a new label once a second, not at every redraw
            self.label = self._stall_label = label
        return False

    def quiet(self, now: float) -> float:
        """Seconds the run going has shown no step and no episode (0 between runs)."""
        return 0.0 if self.current is None or self._seen[0] < 0 else now - self._seen[1]


def schedule_started_line(target: float | None = defaults.SCHEDULE_TARGET) -> str:
    """The log's line for a schedule reaching for ``target`` (the environment's reward_threshold)."""
    return (
        f"schedule started: rounds of (train, evaluate, evolve) until a {defaults.SCHEDULE_CONFIRM}-episode "
        f"check reaches {target:g}"
        if target is not None
        else "schedule: this environment has no reward_threshold to reach"
    )


def round_line(
    result: RoundResult, evaluate: int = defaults.SCHEDULE_EVALUATE, confirm: int = defaults.SCHEDULE_CONFIRM
) -> Text:
    """One schedule round in the log: its averages (the evaluation's over the episodes it played,
    when it stopped at one below the target; the check's likewise, stopped once out of reach), and
    whether it evolved."""
    check = ""
    if result.confirm_avg is not None:
        played = result.confirm_episodes
        # "100-episode check 212.0" was said of a check stopped after 12 episodes (and "0.0" of one
        # stopped before any)
        check = f", {confirm}-episode check {average(result.confirm_avg)}"
        if not played:
            check = f", the {confirm}-episode check stopped before an episode ended"
        elif played < confirm:
            check = f", check {average(result.confirm_avg)} over {played} of {confirm} (out of reach: stopped)"
    # "eval avg 217.0" read as five episodes' beside "1/5 stopped" in the table; `run` says "over 1"
    short = f" over {result.eval_episodes}" if result.eval_episodes < evaluate else ""
    return Text.assemble(
        f"round {result.round}: train avg {average(result.train_avg)}, eval avg ",
        (average(result.eval_avg), "bold"),
        f"{short}{below(result)}{check}{', evolved' if result.evolved else ''} (at {result.wall_seconds:.0f}s)",
    )


def below(result: RoundResult) -> str:
    """Why a round's evaluation led to no check: its episode below the target (an average of
    -89.8 over 4 passed Acrobot's -100, and nothing said that one scored -120)."""
    return "" if result.eval_below is None else f" (one scored {score(result.eval_below)}, below the target)"


def schedule_ended_text(result: ScheduleResult, stopped_here: bool = False) -> str:
    """How a schedule ended (the notification; the log adds its duration); a stopped one, where
    the stop found it and whose x it was (``stopped_here``: this room's)."""
    if result.solved:
        return f"schedule solved: deterministic average {average(result.final_eval_avg)}"
    if not result.stopped:
        return f"schedule ended after {plural(len(result.rounds), 'round')}, not solved"
    phase, number = result.stopped_at or ("train", len(result.rounds) + 1)
    if phase != "train":
        where = f"in round {number}"
    else:  # between rounds: the next one's training did not begin
        where = f"after round {number - 1}" if number > 1 else "before its first run"
    whose = "your" if stopped_here else "another control room's"
    return f"schedule stopped {where} ({whose} x)"


# how another room's schedule ended, as its SCHEDULE_ENDED says (protocol.SCHEDULE_ENDINGS)
_ENDINGS_ELSEWHERE = {"left": "its control room left"}


def schedule_ended_elsewhere_line(ending: str | None) -> str:
    """The log's line for the end of another room's schedule (``s`` starts a run again)."""
    said = "another control room's schedule ended"
    return said if ending is None else f"{said}: {_ENDINGS_ELSEWHERE.get(ending, ending)}"


@dataclass(frozen=True)
class ScheduleLabel:
    """What the progress line says of this room's schedule: its round and target while it goes
    (at 80x24 no log pane shows it), how it ended once it did; or that another room's goes."""

    round: int = 0
    target: float | None = None
    ended: str | None = None  # schedule_ended_text, or why it failed
    elsewhere: bool = False  # another room's schedule goes (its round is not told): s and r are refused


def progress_text(label: str, schedule: ScheduleLabel | None, room: int) -> str:
    """The progress line's text: the run's ``label``, after what the schedule is at, in the
    fullest form that fits ``room`` columns (the run's last score and mean go first: the plot's
    legend shows them too)."""
    if schedule is None:
        return label
    # the run's last score and mean go first, and its wait is said short: "schedule" and the target
    # went at the start of each run ("round 4 · run 14 · waiting for the first episode")
    head = label.split(" · last ", 1)[0].replace(" · waiting for the first episode", " · waiting")
    if schedule.ended is not None:
        said = schedule.ended.split(":", 1)[0]  # "schedule solved": the run's label has the check's average
        forms = [f"{schedule.ended} · {label}", f"{said} · {label}", f"{said} · {head}", schedule.ended]
    elif schedule.elsewhere:
        going = "another control room's schedule"
        forms = [f"{going} · {label}", f"{going} · {head}", f"schedule elsewhere · {head}"]
    else:
        going = f"round {schedule.round}" + (f" · target {schedule.target:g}" if schedule.target is not None else "")
        forms = [f"schedule {going} · {label}", f"schedule {going} · {head}", f"{going} · {head}"]
        forms.append(f"round {schedule.round} · {head}")
    return next((form for form in forms if cell_len(form) <= room), forms[-1])


def retargeted(env_id: str, target: float) -> str:
    """A schedule aiming at the game the network plays (run_schedule's on_target), as the log and
    `run --schedule` say it."""
    return f"the network plays {env_id}: target {target:g} (its reward_threshold)"
