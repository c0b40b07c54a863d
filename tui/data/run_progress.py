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

from dataclasses import dataclass

from rich.text import Text

from cartpole_tui.env import defaults
from cartpole_tui.env.events import EpisodeFinished, RunFinished, RunJoined, RunStarted
from cartpole_tui.env.runtime.schedule import RoundResult, ScheduleResult
from cartpole_tui.tui.data.words import plural, steps_per_second

CONNECTION_MARKS = {
    "connected": ("● connected", "green"),
    "connecting": ("○ connecting…", "yellow"),
    "disconnected": ("● disconnected", "red"),
    "unreachable": ("● unreachable", "red"),
    "another environment": ("● another environment", "red"),  # the broker has one: join it with --no-env
    "offline": ("○ offline: run history only", "dim"),
}
WIDE_STATUS = 100  # columns from which the status line starts with the app's name


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
    """``cartpole-tui │ 127.0.0.1:7007 │ CartPole-v1 │ 5 clients │ ● connected  1,234 steps/s``."""
    connected = facts.connection == "connected"
    clients = f"{plural(facts.clients, 'client')} │ " if facts.clients and connected else ""
    status = Text()
    if facts.width >= WIDE_STATUS:
        status.append("cartpole-tui", "bold").append(" │ ")
    status.append(f"{facts.address} │ {facts.env_id} │ {clients}")
    status.append(*CONNECTION_MARKS[facts.connection])
    if facts.open_network:
        status.append(" │ open network", "bold red")
    if facts.steps_per_second:
        status.append(f"  {steps_per_second(facts.steps_per_second)} steps/s")
    return status


class RunProgress:
    """The run going, as the progress label and the log tell it; says once when it seems stuck."""

    def __init__(self, now: float, stall_hint_seconds: float = defaults.STALL_HINT_SECONDS):
        self.stall_hint_seconds = stall_hint_seconds
        self.current: RunStarted | None = None
        self.finished = 0  # episodes the current run finished
        self.numbers: dict[str, int] = {}  # run id -> its number in the run history
        self.label: str | None = None  # the progress label waiting for the next redraw
        self._seen = (-1, now)  # (steps + episodes, when that count last moved)

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
        self.label = f"run {shown} · waiting for the first episode"
        if not event.episodes:  # its start was not seen here (an environment that does not announce runs)
            return f"run {shown} seen: started elsewhere"
        return f"run {shown} started: {plural(event.episodes, 'episode')}" + (
            ", deterministic" if event.deterministic else ""
        )

    def joined(self, event: RunJoined) -> None:
        """The run going when this control room joined: ``event.finished`` of its episodes are done."""
        self.finished = event.finished
        self.label = f"run {self.numbers.get(event.run.run_id, '?')} · {event.finished}/{event.run.episodes}"

    def episode(self, event: EpisodeFinished, window: int, mean: float | None) -> None:
        """An episode of a run already started (they may end out of number order: counted, not
        taken by number); ``mean``: the plot's rolling mean over ``window`` episodes, if any."""
        self.finished += 1
        asked = self.current.episodes if self.current and self.current.episodes else "?"
        self.label = f"run {self.numbers.get(event.run_id, '?')} · {self.finished}/{asked} · last {event.score:g}"
        if mean is not None:
            self.label += f" · mean({window}) {mean:.1f}"

    def ended(self, event: RunFinished, rate: float | None = None) -> Text:
        """The run finished (done or stopped); ``rate``: its steps a second as the history has
        them (None: not in it). Returns the log line."""
        number = self.numbers.get(event.run_id, "?") if event.run_id is not None else "?"
        self.current = None
        ending = "stopped" if event.stopped else "done"
        average = f"avg {event.avg_score:.1f} over {plural(event.episodes, 'episode')}" if event.episodes else ""
        self.label = f"run {number} {ending} · {average or 'no episode finished'}"
        speed = f", {steps_per_second(rate)} steps/s" if rate else ""
        return Text.assemble(
            f"run {number} {ending}: average ",
            (f"{event.avg_score:.1f}", "bold"),
            f" over {plural(event.episodes, 'episode')} (ENV_DONE){speed}",
        )

    def lost(self) -> RunStarted | None:
        """The network went away: the run going (if any) is over; returns it."""
        current, self.current = self.current, None
        return current

    def check(self, steps: int, now: float) -> bool | None:
        """Whether the progress bar shows at ``now``, given the steps played so far: True while the
        run moves, False once it has shown no step and no episode for ``stall_hint_seconds`` (the
        label then says why that may be, once until something moves), None to leave it as it is."""
        if self.current is None:
            return None
        count = steps + self.finished
        seen, since = self._seen
        if count != seen:
            self._seen = (count, now)
            return True
        if now - since < self.stall_hint_seconds:
            return None
        self._seen = (count, float("inf"))  # said once until something moves
        self.label = (
            f"run {self.numbers.get(self.current.run_id, '?')} · {self.finished}/{self.current.episodes} · "
            f"no step for {self.stall_hint_seconds:g}s: waiting for agents — is the swarm running?"
        )
        return False  # an ETA means nothing now; the hint needs the room


def schedule_started_line(target: float | None = defaults.SCHEDULE_TARGET) -> str:
    """The log's line for a schedule reaching for ``target`` (the environment's reward_threshold)."""
    return (
        f"schedule started: rounds of (train, evaluate, evolve) until a {defaults.SCHEDULE_CONFIRM}-episode "
        f"check reaches {target:g}"
        if target is not None
        else "schedule: this environment has no reward_threshold to reach"
    )


def round_line(result: RoundResult) -> Text:
    """One schedule round in the log: its averages, and whether it evolved."""
    check = f", 100-episode check {result.confirm_avg:.1f}" if result.confirm_avg is not None else ""
    return Text.assemble(
        f"round {result.round}: train avg {result.train_avg:.1f}, eval avg ",
        (f"{result.eval_avg:.1f}", "bold"),
        f"{check}{', evolved' if result.evolved else ''} ({result.wall_seconds:.0f}s)",
    )


def schedule_ended_text(result: ScheduleResult) -> str:
    """How a schedule ended (the notification; the log adds its duration)."""
    if result.solved:
        return f"schedule solved: deterministic average {result.final_eval_avg:.1f}"
    return f"schedule ended after {len(result.rounds)} rounds, not solved"
