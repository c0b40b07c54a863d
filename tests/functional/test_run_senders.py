"""Whose news of a run counts (issue 17, from the last attacker pass).

On a broker without a token anyone may join the control room. The broker sets every SENT_BY,
so a control room without the environment counts a run's EPISODE_DONE and ENV_DONE only from
the component that announced the run; news without a RUN_ID is refused once an environment
that names its runs was heard; and a flood of fakes is told once, not once a message.
"""

from __future__ import annotations

import threading

from swergio import MESSAGE_TYPE, Client, Trigger

from cartpole_tui.env.components.random_agent import RandomAgent
from cartpole_tui.env.components.vector_env import VectorEnvironmentComponent
from cartpole_tui.env.wire import protocol

from conftest import cli, only_json, start_swergio_client, wait_for

HOST = "127.0.0.1"
EPISODES = 2000


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
