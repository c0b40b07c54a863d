"""The control room's pictures, taken from one live, seeded session under ``App.run_test``.

The app starts its embedded network (broker on 127.0.0.1, the built-in swarm, gymnasium's
CartPole) with seed 1 and a fresh population in a scratch history, runs the learning schedule
(`r`) until it solves, then plays a deterministic run of the learned swarm and shoots the main
and population screens once a wave of its episodes has played, with the cart mid-episode; once
that run is done, its details, three rounds' training runs compared, and the help. Every wait
is for an event or a state, with a timeout.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

from textual.pilot import Pilot
from textual.widgets import Input

from cartpole_tui.env.events import BrokerStats, EnvironmentObserver, EpisodeFinished, RunFinished
from cartpole_tui.env.history.records import RunRecord
from cartpole_tui.env.runtime.schedule import ScheduleResult
from cartpole_tui.env.runtime.session import SessionOptions
from cartpole_tui.env.swarm.saved import beside_history
from cartpole_tui.tui.app import ControlRoomApp
from cartpole_tui.tui.screens.main import MainScreen
from cartpole_tui.tui.widgets.runs_table import RunsTable

SEED = 1  # `run --schedule --seed 1` solves in about ten seconds
SHOWCASE_EPISODES = 4000  # the learned swarm's deterministic run: 40 waves of 100 instances, ~60 s (four shots in it)
WAVE = 100  # the run's instances at once (defaults.PARALLEL): a wave of episodes ends together
MID_EPISODE = 150  # steps into the cart's episode (of 500) before it is shot
SCHEDULE_TIMEOUT = 600.0
OTHER_ENV = "Acrobot-v1"  # drawn from its own pictures (issue 21); `run --schedule --seed 1` solves it


class Timeout(RuntimeError):
    """Something awaited did not happen in time."""


def screen_text(app: ControlRoomApp) -> str:
    """What the app's active screen shows, as plain text lines (what the SVG will hold)."""
    # The compositor is what Textual paints the terminal from; there is no public reader of it.
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


async def until(pilot: Pilot, ready: Callable[[], bool], timeout: float, what: str) -> None:
    """Let the app run until ``ready()``; Timeout naming ``what`` after ``timeout`` seconds."""
    for _ in range(int(timeout / 0.05)):
        if ready():
            return
        await pilot.pause(0.05)
    raise Timeout(f"screenshots: no {what} within {timeout:g} s")


class Shooter:
    """Saves the app's screen as SVG at a size, once the plot shows every episode."""

    def __init__(self, app: ControlRoomApp, pilot: Pilot, directory: str):
        self.app, self.pilot, self.directory = app, pilot, directory
        self.saved: list[str] = []

    async def resize(self, size: tuple[int, int]) -> None:
        await self.pilot.resize_terminal(*size)
        await until(self.pilot, lambda: tuple(self.app.size) == size, 10, f"resize to {size}")
        await self.pilot.pause()

    async def shoot(
        self,
        name: str,
        size: tuple[int, int],
        *keys: str,
        running: bool = False,
        shows: tuple[str, Callable[[str], bool]] | None = None,
    ) -> None:
        """Press ``keys`` at ``size``, then save ``name``.svg; ``running``: only while a run plays;
        ``shows``: (what, test of the screen's text) the picture is named for. Without it on the
        screen within 10 s, no picture: a wrong one saved under that name is worse (the keys of
        compare and details once went to no table, and two shots showed the main screen)."""
        await self.resize(size)
        for key in keys:
            await self.pilot.press(key)
        await self.pilot.pause()
        plot = self.app.main.plot
        what, test = shows if shows is not None else ("", lambda _: True)
        ready = lambda: plot.shows_latest_data and test(screen_text(self.app))  # noqa: E731
        await until(self.pilot, ready, 10, f"plot drawn and {what or 'the screen'} for {name}")
        if running and self.app.current is None:
            raise Timeout(f"screenshots: the run ended before {name} was taken (raise SHOWCASE_EPISODES)")
        self.saved.append(self.app.save_screenshot(f"{name}.svg", path=self.directory))
        print(self.saved[-1], flush=True)


class EpisodeClock(EnvironmentObserver):
    """How many steps the cart's episode (the one the cart pane draws) has made."""

    def __init__(self) -> None:
        self.steps = 0

    def on_run_started(self, event) -> None:
        self.steps = 0

    def on_step(self, observation, reward: float, done: bool) -> None:
        self.steps = 0 if done else self.steps + 1


def _watch(app: ControlRoomApp) -> list[object]:
    """Every event the session hands the app, in a list (set before the session opens)."""
    seen: list[object] = []
    push = app.controller.push

    def recorded(event: object) -> None:
        seen.append(event)
        push(event)

    app.controller.push = recorded  # type: ignore[method-assign]
    return seen


async def _learn(app: ControlRoomApp, pilot: Pilot, seen: list[object]) -> ScheduleResult:
    await until(pilot, lambda: app.connection == "connected", 60, "embedded network")
    await pilot.press("r")
    await until(pilot, lambda: any(isinstance(e, ScheduleResult) for e in seen), SCHEDULE_TIMEOUT, "schedule end")
    result = next(e for e in seen if isinstance(e, ScheduleResult))
    if not result.solved:
        raise Timeout(f"screenshots: the schedule with seed {SEED} did not solve ({result.final_eval_avg})")
    await until(pilot, lambda: app.current is None and not app.controller.schedule_running, 30, "schedule's last run")
    return result


async def _start_showcase(app: ControlRoomApp, pilot: Pilot, seen: list[object]) -> EpisodeClock:
    """A deterministic run of the learned swarm, started with the keys a user presses."""
    clock = EpisodeClock()
    session = app.session
    assert session is not None and session.environment is not None  # connected, with ours
    session.environment.add_observer(clock)
    stats_before = sum(isinstance(e, BrokerStats) for e in seen)
    await _play_deterministic(app, pilot, seen)

    def mid_episode() -> bool:
        stats = sum(isinstance(e, BrokerStats) for e in seen) - stats_before  # two give a msg/s rate
        return clock.steps >= MID_EPISODE and stats >= 2 and app.main.cart.observation is not None

    await until(pilot, mid_episode, 60, "cart mid-episode")
    return clock


async def _play_deterministic(app: ControlRoomApp, pilot: Pilot, seen: list[object]) -> None:
    """Start a deterministic run of SHOWCASE_EPISODES with the keys a user presses; return once
    a wave of its episodes is on the plot."""
    await pilot.press("n")
    field = app.main.query_one("#episodes", Input)
    field.value = str(SHOWCASE_EPISODES)
    await pilot.press("escape", "d", "s")
    await until(pilot, lambda: app.current is not None, 30, "run start")
    run = app.current
    assert run is not None

    def played() -> int:
        return sum(isinstance(e, EpisodeFinished) and e.run_id == run.run_id for e in seen)

    await until(pilot, lambda: played() >= WAVE, 120, f"{WAVE} episodes of the run")  # on the plot


def agreeing(app: ControlRoomApp, clock: EpisodeClock) -> tuple[str, Callable[[str], bool]]:
    """The showcase run's count, one figure in the progress label and its runs table row (the table
    repaints once a second: a wave of 100 episodes ends at once, and a shot taken in that second
    showed 200/2000 above 107/2000), with the cart mid-episode."""
    table = app.main.runs_table

    def agree(text: str) -> bool:
        # the label's count as drawn (episodes now end all through a wave, not at its end)
        label = re.search(rf" (\d+/{SHOWCASE_EPISODES}) · ", text)
        row = table.get_row_at(table.row_count - 1) if table.row_count else ("",) * 3
        return label is not None and str(row[2]) == label.group(1) and clock.steps >= MID_EPISODE

    return "one count in the label and the table, the cart mid-episode", agree


async def shoot_session(directory: str, db_path: str) -> list[str]:
    """Every terminal picture, into ``directory``; the session's history and population in ``db_path``."""
    options = SessionOptions(seed=SEED, population_file=beside_history(db_path), fresh=True)
    app = ControlRoomApp(options, db_path=db_path)
    seen = _watch(app)
    async with app.run_test(size=(120, 40)) as pilot:
        shooter = Shooter(app, pilot, directory)
        await _learn(app, pilot, seen)
        finished = sum(isinstance(e, RunFinished) for e in seen)
        clock = await _start_showcase(app, pilot, seen)
        agree = agreeing(app, clock)
        await shooter.shoot("main-120x40", (120, 40), running=True, shows=agree)
        await shooter.shoot("main-80x24", (80, 24), running=True, shows=agree)
        await shooter.shoot("population-80x24", (80, 24), "6", running=True, shows=agree)
        await shooter.shoot("population-120x40", (120, 40), running=True, shows=agree)  # `6` asked for it: it stays
        await pilot.press("6")
        await until(pilot, lambda: sum(isinstance(e, RunFinished) for e in seen) > finished, 300, "showcase run end")
        await until(pilot, lambda: app.current is None, 30, "showcase run end on screen")
        table = app.main.runs_table
        showcase = runs_of(app)[-1]
        details = (f"run {showcase.number}'s details", lambda text: f"played of {showcase.params.episodes:,}" in text)
        for size in ((80, 24), (120, 40)):
            table.focus()  # the keys go to the focused widget: the episodes field had them before
            keys = keys_to(table, table.cursor_row, showcase.number)
            await shooter.shoot(f"run-details-{size[0]}x{size[1]}", size, *keys, "enter", shows=details)
            await pilot.press("escape")
            await until(pilot, lambda: isinstance(app.screen, MainScreen), 10, "main screen")
        # the schedule's training runs (a round is train, evaluate, maybe a check): the last, a middle,
        # the first; a schedule of two rounds has two (it solves in 1-6 now: [3, 3, 1] was asked)
        training = [run.number for run in runs_of(app) if not run.params.deterministic]
        chosen = list(dict.fromkeys([training[-1], training[len(training) // 2], training[0]]))
        compared, row = [], table.cursor_row
        for number in chosen:
            compared += [*keys_to(table, row, number), "space"]
            row = table.get_row_index(str(number))
        table.focus()

        def legend(text: str) -> bool:
            return len(app.main.plot.overlays) == len(chosen) and all(f"run {n} mean" in text for n in chosen)

        await shooter.shoot("compare-120x40", (120, 40), *compared, shows=(f"runs {chosen} compared", legend))
        await shooter.shoot("help", (100, 30), "question_mark", shows=("the help", lambda text: "Help" in text))
        await pilot.press("escape")
    return shooter.saved


async def shoot_other_environment(directory: str, db_path: str) -> list[str]:
    """The control room of another game (OTHER_ENV): learned by the schedule from a fresh
    population, then a deterministic run of it shot at 120x40 with the pane drawing the
    environment's own picture."""
    population = beside_history(db_path, OTHER_ENV)
    options = SessionOptions(seed=SEED, env_id=OTHER_ENV, population_file=population, fresh=True)
    app = ControlRoomApp(options, db_path=db_path)
    seen = _watch(app)
    async with app.run_test(size=(120, 40)) as pilot:
        shooter = Shooter(app, pilot, directory)
        await _learn(app, pilot, seen)
        await _play_deterministic(app, pilot, seen)
        drawn = ("the environment's picture", lambda _: app.main.cart.frame is not None)
        name = f"{OTHER_ENV.split('-')[0].lower()}-120x40"
        await shooter.shoot(name, (120, 40), running=True, shows=drawn)
    return shooter.saved


def runs_of(app: ControlRoomApp) -> list[RunRecord]:
    store = app.store
    assert store is not None  # the session is open
    return store.runs()


def keys_to(table: RunsTable, row: int, number: int) -> list[str]:
    """The up or down presses that take the runs table's cursor from ``row`` to run ``number``'s row."""
    there = table.get_row_index(str(number))
    return ["up" if there < row else "down"] * abs(there - row)


def scratch_db(folder: str) -> str:
    return os.path.join(folder, "runs.sqlite3")
