"""A run is who announced it and what its RUN_ID names (issue 17, from the last attacker pass).

On a broker without a token anyone may join the control room. The broker sets every SENT_BY,
so a control room without the environment counts a run's EPISODE_DONE and ENV_DONE only from
the component that announced the run; news without a RUN_ID is refused once an environment
that names its runs was heard; and a flood of fakes is told once, not once a message.
A start reusing an earlier run's RUN_ID is refused: the earlier run's rows stay as they were.
"""

from __future__ import annotations

import sqlite3
import threading

from swergio import MESSAGE_TYPE, Client, Trigger
from test_app import log_text
from test_followers import agent, follower, follows_to_the_end, starter  # noqa: F401  (fixtures)

from cartpole_tui.env.components.random_agent import RandomAgent
from cartpole_tui.env.components.vector_env import VectorEnvironmentComponent
from cartpole_tui.env.events import NetworkError, RunFinished
from cartpole_tui.env.history.store import RunStore
from cartpole_tui.env.runtime.session import Session, SessionOptions
from cartpole_tui.env.wire import protocol

from conftest import cli, only_json, start_swergio_client, until, wait_for

HOST = "127.0.0.1"
EPISODES = 400  # long enough for every fake ENV_DONE to come while it plays


class Faker:
    """An unmodified swergio 0.0.2 client in the control room: at the start of a run (the
    start sent, and again at RUN_STARTED) it says the run is over after five episodes, with
    and without the run's RUN_ID, and claims its episode 1 scored 499."""

    def __init__(self, port: int, name: str = "faker"):
        self.client = Client(name, HOST, port, "utf-8", 10)
        self.sent = 0
        self.lock = threading.Lock()
        custom = MESSAGE_TYPE.DATA.CUSTOM
        self.client.add_eventHandler(self._heard, None, trigger=Trigger(custom, protocol.CONTROL))
        start_swergio_client(self.client)

    def _heard(self, msg: dict) -> None:
        run_id = msg.get("RUN_ID")
        if not isinstance(run_id, str) or not ("NR_OF_EPISODE" in msg or msg.get("STATUS") == protocol.RUN_STARTED):
            return
        fakes = [
            {"STATUS": protocol.ENV_DONE, "AVG_SCORE": 9.0, "EPISODES": 5, "RUN_ID": run_id},
            {"STATUS": protocol.ENV_DONE, "AVG_SCORE": 9.0, "EPISODES": 5},
            {"STATUS": protocol.EPISODE_DONE, "RUN_ID": run_id, "EPISODE": 1, "SCORE": 499.0, "STEPS": 499},
        ]
        for fake in fakes:
            self.client.send(protocol.custom(protocol.CONTROL, **fake))
        with self.lock:
            self.sent += len(fakes)

    def close(self) -> None:
        self.client.close()


def test_a_fake_env_done_does_not_end_a_followed_run(broker, closing):
    """`run --no-env` on a token-less broker with a faker in the control room: the run plays to
    its true end (before the fix the fake ENV_DONE ended a 2,000-episode run as done after 1)."""
    env = VectorEnvironmentComponent(HOST, broker.port, seed=1).start()
    closing(env)
    closing(RandomAgent(HOST, broker.port, seed=2).start())
    faker = Faker(broker.port)
    closing(faker)
    wait_for(lambda: "faker" in broker.stats()["clients"], 5, "the faker registered")

    result = cli("run", "--connect", f"{HOST}:{broker.port}", "--no-env", "--episodes", str(EPISODES), "--json")

    assert result.returncode == 0, result.stderr
    report = only_json(result.stdout)
    assert report["episodes"] == EPISODES and not report["stopped"]
    assert len(report["scores"]) == EPISODES and 499.0 not in report["scores"]
    assert faker.sent >= 6  # at the start and at RUN_STARTED
    refusals = [line for line in result.stderr.splitlines() if "ignored " in line]
    assert len(refusals) == 1, result.stderr  # told once, the rest counted
    assert "from faker" in refusals[0]


def rows_of(path: str, run_id: str) -> tuple[list, list]:
    """The run's row and its episodes' rows, as SQLite holds them."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        run = conn.execute("SELECT * FROM runs WHERE run_uid = ?", (run_id,)).fetchall()
        episodes = conn.execute("SELECT * FROM episodes WHERE run_uid = ? ORDER BY idx", (run_id,)).fetchall()
    return run, episodes


def test_a_start_reusing_a_finished_runs_id_is_refused(broker, tmp_path, closing):
    """Before, the environment played it and its episodes and end went under the old run."""
    closing(RandomAgent(HOST, broker.port, seed=5).start())
    path = str(tmp_path / "history.sqlite3")
    store = RunStore.open(path)
    closing(store)
    events: list[object] = []
    options = SessionOptions(connect=f"{HOST}:{broker.port}", seed=3, agent="random", parallel=1)
    session = Session(options, store=store, on_event=events.append).open()
    closing(session)
    assert session.control is not None
    run_id = protocol.new_id()

    session.control.client.send(protocol.start_run(5, False, run_id=run_id, seed=1))
    wait_for(lambda: any(isinstance(e, RunFinished) and e.run_id == run_id for e in events), 30, "the first run's end")
    assert store.flush()
    before = rows_of(path, run_id)
    assert len(before[0]) == 1 and len(before[1]) == 5

    session.control.client.send(protocol.start_run(7, False, run_id=run_id, seed=2))
    wait_for(
        lambda: any(isinstance(e, NetworkError) and "is an earlier run's" in e.text for e in events), 10, "the refusal"
    )
    later = session.control.run(3, seed=4, idle_timeout=30)  # the environment plays on
    assert later.episodes == 3 and later.run_id != run_id
    assert store.flush()
    assert rows_of(path, run_id) == before
    assert sum(isinstance(e, RunFinished) and e.run_id == run_id for e in events) == 1


async def test_the_app_following_a_run_shows_its_true_end_despite_a_faker(broker, starter, tmp_path):  # noqa: F811
    """A `--no-env` control room (the app) with its own file, a faker in the control room: the
    run it follows ends done with its true count, in its screen and its SQLite file."""
    faker = Faker(broker.port)
    try:
        wait_for(lambda: "faker" in broker.stats()["clients"], 5, "the faker registered")
        app = follower(broker, tmp_path / "own.sqlite3")
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.connection == "connected", what="the follower to connect")
            starter.control.start_run(400, False, 3)
            await follows_to_the_end(pilot, app, 400, starter.recorder.store)
            followed = app.store.runs()[-1]
            assert followed.state == "done" and followed.finished == 400
            assert 499.0 not in [e.score for e in app.store.episodes(followed.run_uid)]
            assert log_text(app).count("ignored ") == 1 and "from faker" in log_text(app)
            assert faker.sent >= 6
    finally:
        faker.close()
