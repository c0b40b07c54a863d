"""Our environment and control client in real networks: our broker and swergio.Server 0.0.2."""

import os
import signal
import threading

import pytest
from swergio import MESSAGE_TYPE, Client, Trigger

from cartpole_tui.env.components.control import ControlClient, ControlTimeout
from cartpole_tui.env.components.environment import EnvironmentComponent
from cartpole_tui.env.components.random_agent import RandomAgent
from cartpole_tui.env.events import EpisodeFinished, NetworkError
from cartpole_tui.env.runtime.network import LocalNetwork
from cartpole_tui.env.wire import protocol
from cartpole_tui.env.wire.transport import Component

from conftest import knock_until, start_swergio_client, swergio_random_agent, wait_for


@pytest.fixture(params=["ours", "swergio"])
def port(request, broker, swergio_server):
    return broker.port if request.param == "ours" else swergio_server


@pytest.fixture
def episodes(request, port, broker):
    """swergio.Server writes header and body apart without TCP_NODELAY (~12 steps/s): keep runs short there."""
    return 6 if port == broker.port else 2


@pytest.fixture
def network(port):
    """Our environment, agent and control client, on ``port``."""
    events = []
    environment = EnvironmentComponent("127.0.0.1", port, seed=1).start()
    agent = RandomAgent("127.0.0.1", port, seed=1).start()
    control = ControlClient("127.0.0.1", port, on_event=events.append)
    yield control, events, environment
    control.close()
    environment.close()
    agent.close()


def test_a_run_reports_every_episode_and_the_average(network, episodes):
    control, events, _ = network
    result = control.run(episodes, idle_timeout=10)
    finished = [e for e in events if isinstance(e, EpisodeFinished)]
    assert result.episodes == episodes and not result.stopped
    assert [e.episode for e in finished] == list(range(1, episodes + 1))
    assert result.scores == [e.score for e in finished]
    assert result.avg_score == pytest.approx(sum(result.scores) / episodes)


def test_runs_back_to_back_do_not_mix(network, episodes):
    control, _, _ = network
    first = control.run(episodes, idle_timeout=10)
    second = control.run(episodes + 1, idle_timeout=10)
    assert (first.episodes, second.episodes) == (episodes, episodes + 1)
    assert len(second.scores) == episodes + 1 and first.run_id != second.run_id


def test_stop_ends_a_run_early(network):
    control, events, _ = network
    control.start_run(100_000)
    wait_for(lambda: any(isinstance(e, EpisodeFinished) for e in events), 10, "an episode")
    control.stop_run()
    result = control.wait_run(idle_timeout=10)
    assert result.stopped and 1 <= result.episodes < 100_000


def test_bad_action_is_reported_and_the_environment_keeps_going(network, port):
    control, events, environment = network
    rogue = Component("rogue", "127.0.0.1", port)
    rogue.join_room("action")
    control.start_run(1_000_000)
    wait_for(lambda: environment.logic.run is not None, 10, "the run to start")
    rogue.send({"TYPE": "DATA/CUSTOM", "TO_ROOM": "action", "ACTION": [7], "ID": "x"})
    error = wait_for(lambda: next((e for e in events if isinstance(e, NetworkError)), None), 10, "ENV_ERROR")
    assert "out of range" in error.text
    count = len([e for e in events if isinstance(e, EpisodeFinished)])
    wait_for(lambda: len([e for e in events if isinstance(e, EpisodeFinished)]) > count + 2, 10, "more episodes")
    control.stop_run()
    control.wait_run(10)
    rogue.close()


def test_evolve_without_an_evolution_component_times_out_clearly(network):
    control, _, _ = network
    with pytest.raises(ControlTimeout, match="no evolution component answered"):
        control.evolve(timeout=0.3)


def test_evolve_takes_the_first_evo_done_and_ignores_the_extra_ones(port):
    """The published evolution answers EVO_DONE once per incoming message (21 for 20 models)."""
    evolution = Client("evolution", "127.0.0.1", port, "utf-8", 10)

    in_room = threading.Event()

    def on_control(msg):
        in_room.set()
        if msg.get("EVOLUTION"):
            for _ in range(21):
                evolution.send({"TYPE": "DATA/CUSTOM", "TO_ROOM": "control", "STATUS": "EVO_DONE", "ID": "e"})
            # ordered after the 21 answers on the same connection: once it arrives, they all have
            evolution.send(protocol.env_error("marker"))

    evolution.add_eventHandler(
        on_control, MESSAGE_TYPE.DATA.CUSTOM, trigger=Trigger(MESSAGE_TYPE.DATA.CUSTOM, "control")
    )
    start_swergio_client(evolution)
    events = []
    control = ControlClient("127.0.0.1", port, on_event=events.append)
    try:
        knock_until(
            in_room.is_set, lambda: control.client.send(protocol.custom("control", KNOCK=True)), "the evolution"
        )
        control.evolve(timeout=10)
        wait_for(lambda: any(isinstance(e, NetworkError) for e in events), 10, "the marker after 21 EVO_DONEs")
        assert sum(type(e).__name__ == "EvolutionFinished" for e in events) == 1
    finally:
        control.close()
        evolution.close()


def test_environment_speaks_to_a_published_style_control(port, broker):
    """A control script and an agent written against swergio 0.0.2 work with our environment.

    The unmodified swergio client writes header and body separately without TCP_NODELAY, so each of
    its frames waits ~40 ms for a delayed ACK: two episodes keep this test short."""
    environment = EnvironmentComponent("127.0.0.1", port, seed=2).start()
    knocked = threading.Event()
    agent = swergio_random_agent(port, knocked=knocked)
    notebook = Client("control", "127.0.0.1", port, "utf-8", 10)
    statuses = []
    notebook.add_eventHandler(
        lambda msg: statuses.append(msg), MESSAGE_TYPE.DATA.CUSTOM, trigger=Trigger(MESSAGE_TYPE.DATA.CUSTOM, "control")
    )
    start_swergio_client(notebook)
    # swergio.Server reads each client in a thread of its own: the START could pass the agent's
    # JOINROOM of observation, and the run's first observation went to nobody (CI, under load).
    # Knock until the agent hears, and ask the environment's state until it answers.
    knock_until(knocked.is_set, lambda: notebook.send(protocol.custom("observation", KNOCK=True)), "the agent")
    answered = lambda: any(m.get("STATUS") == protocol.RUN_STATE for m in statuses)  # noqa: E731
    knock_until(answered, lambda: notebook.send(protocol.state_query()), "the environment's RUN_STATE")
    notebook.send({"TYPE": "DATA/CUSTOM", "TO_ROOM": "control", "ID": "s", "NR_OF_EPISODE": 2, "DETERMINISTIC": False})
    done = wait_for(lambda: next((m for m in statuses if m.get("STATUS") == "ENV_DONE"), None), 60, "ENV_DONE")
    episodes = [m for m in statuses if m.get("STATUS") == "EPISODE_DONE"]
    assert len(episodes) == 2 and done["AVG_SCORE"] == pytest.approx(sum(m["SCORE"] for m in episodes) / 2)
    assert done["SENT_BY"] == "environment"
    notebook.close()
    agent.close()
    environment.close()


def test_the_embedded_network_is_a_child_process_named_by_its_pid():
    network = LocalNetwork(agent="random", seed=1).start()
    try:
        assert network.alive and network.pid != os.getpid()
        os.kill(network.pid, signal.SIGKILL)  # as a crash would end it
        wait_for(lambda: not network.alive, 10, "the killed network to be seen dead")
    finally:
        network.stop()
    assert network.pid is None
