"""The published components' doubles (tests/published.py): their quirks, and our parts driving them."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys

import pytest

from cartpole_tui.env import defaults
from cartpole_tui.env.components.control import ControlClient
from cartpole_tui.env.components.environment import EnvironmentComponent
from cartpole_tui.env.components.vector_env import VectorEnvironmentComponent
from cartpole_tui.env.runtime.run_events import RunEvents
from cartpole_tui.env.swarm.swarm import Swarm
from cartpole_tui.env.wire import protocol
from tests.conftest import wait_for
from tests.functional.test_swarm import Probe as SwarmProbe
from tests.functional.test_swarm import members
from tests.published import NR_OF_MODELS, PublishedNetwork

HOST = "127.0.0.1"
OBS = [0.01, -0.02, 0.03, 0.04]


class Probe(SwarmProbe):
    """A client queueing every DATA/CUSTOM message of ``rooms``; it can also tell a quiet room."""

    def quiet(self, timeout: float = 0.3) -> bool:
        try:
            self.inbox.get(timeout=timeout)
        except queue.Empty:
            return True
        return False


@pytest.fixture
def published(broker):
    """The published models, aggregation and evolution on our broker."""
    net = PublishedNetwork(broker.port)
    wait_for(lambda: members(broker, protocol.LOGITS) == NR_OF_MODELS + 1, 10, "the published parts to join")
    yield net
    net.close()


def ready_network(broker, published):
    """Our environment and control client beside the published doubles."""
    env = EnvironmentComponent(HOST, broker.port, seed=1).start()
    control = ControlClient(HOST, broker.port)
    wait_for(lambda: members(broker, protocol.ACTION) == 2, 5, "environment and aggregation on action")
    return env, control


# --- the doubles' quirks ----------------------------------------------------------------------------------


def test_published_models_share_a_name_and_echo_deterministic(broker, published):
    probe = Probe(broker.port, protocol.LOGITS)
    wait_for(lambda: members(broker, protocol.LOGITS) == NR_OF_MODELS + 2, 5, "the probe")
    assert broker.stats()["clients"].count("model") == NR_OF_MODELS
    probe.send(protocol.OBSERVATION, OBSERVATION=OBS, DETERMINISTIC=True, ROOT_ID="r1")
    answers = probe.get(NR_OF_MODELS)
    assert {a["SENT_BY"] for a in answers} == {"model"}
    assert len({a["COMPONENT_ID"] for a in answers}) == NR_OF_MODELS
    assert all(a["DETERMINISTIC"] is True and a["ROOT_ID"] == "r1" for a in answers)
    probe.client.close()


def test_published_aggregation_needs_20_ids_and_mixes_steps(broker, published):
    probe = Probe(broker.port, protocol.ACTION)
    wait_for(lambda: members(broker, protocol.ACTION) == 2, 5, "the probe")
    ids = [m.component_id for m in published.models]
    for i in ids[:19]:
        probe.send(protocol.LOGITS, LOGITS=[0.0, 1.0], COMPONENT_ID=i, DETERMINISTIC=False, ROOT_ID="old")
    assert probe.quiet()  # 19 distinct ids: no answer
    probe.send(protocol.LOGITS, LOGITS=[0.0, 9.0], COMPONENT_ID=ids[19], DETERMINISTIC=True, ROOT_ID="new")
    (action,) = probe.get()
    assert action["ACTION"] == [1] and action["ROOT_ID"] == "new"  # argmax: the last LOGITS said deterministic
    probe.client.close()


def test_published_evolution_answers_with_a_random_root_and_never_forgets(broker, published):
    probe = Probe(broker.port, protocol.CONTROL)
    wait_for(lambda: members(broker, protocol.CONTROL) == 2, 5, "the probe")
    # one step's contribution, so the evolution has 20 of each
    agg = Probe(broker.port, protocol.ACTION)
    wait_for(lambda: members(broker, protocol.ACTION) == 2, 5, "the action probe")
    agg.send(protocol.OBSERVATION, OBSERVATION=OBS, DETERMINISTIC=False)
    agg.get()
    request = probe.send(protocol.CONTROL, EVOLUTION=True, ROOT_ID="req-1")
    (done,) = probe.get()
    assert done["STATUS"] == "EVO_DONE" and done["ROOT_ID"] not in ("req-1", request["ID"])
    wait_for(lambda: all(m.sets == 1 for m in published.models), 5, "every model to be SET")
    probe.send(protocol.CONTROL, EVOLUTION=True, ROOT_ID="req-2")
    later = probe.get(NR_OF_MODELS + 1)  # 20 WEIGHTS and one CONTRIBUTION: one evolution each
    assert {m["STATUS"] for m in later} == {"EVO_DONE"}
    assert len({m["ROOT_ID"] for m in later}) == NR_OF_MODELS + 1
    wait_for(lambda: published.evolution.evolutions == NR_OF_MODELS + 2, 5, "22 evolutions")
    probe.client.close()
    agg.client.close()


def test_published_model_set_without_its_id_ends_its_listener(broker, published):
    probe = Probe(broker.port)
    model = published.models[0]
    probe.send(protocol.EVOLUTION, CMD="SET", WEIGHTS={"someone-else": [0.0] * 755})
    wait_for(lambda: not model.thread.is_alive(), 5, "the KeyError to end the model's listener")
    assert isinstance(model.client.died, KeyError)
    probe.client.close()


# --- our environment and control client against the doubles ------------------------------------------


def test_our_environment_runs_the_published_models_and_aggregation(broker, published):
    env, control = ready_network(broker, published)
    try:
        result = control.run(2, seed=3, idle_timeout=10)
        assert result.episodes == 2 and len(result.scores) == 2
        det = control.run(1, deterministic=True, idle_timeout=10)
        assert det.episodes == 1 and det.avg_score == det.scores[0]
    finally:
        control.close()
        env.close()


def test_evolve_takes_the_published_answer_and_never_a_trailing_one(broker, published):
    env, control = ready_network(broker, published)
    try:
        control.run(1, seed=2, idle_timeout=10)  # CONTRIBUTION for every model
        answers = []
        for number in range(3):
            done = control.evolve(timeout=10)
            # the first in < 1 s; later ones wait for the evolution's 21 trailing evolutions to pass
            assert done.seconds < (1.0 if number == 0 else 8.0) and done.sent_by == "evolution"
            answers.append(done.root_id)
        history = published.evolution.history
        for request_number, root in enumerate(answers, start=1):
            # the EVO_DONE taken came after the request it answers reached the evolution
            position = history.index(("done", root))
            requests_before = sum(1 for kind, _ in history[:position] if kind == "request")
            assert requests_before == request_number, history
    finally:
        control.close()
        env.close()


def test_a_run_right_after_a_run_waits_for_the_late_action_at_any_parallel(broker):
    """Issue 19: at the default --parallel a start asks the broker's census first; the
    published models are not batch-capable, so the run plays one instance, and its first
    observation must wait for the last run's late ACTION as every one-instance start does.
    Sent at once, the staggered models mix its LOGITS with the old ones and the run stalls."""
    net = PublishedNetwork(broker.port, evolution=False, stagger=0.004)
    env = VectorEnvironmentComponent(HOST, broker.port, seed=1).start()  # parallel: the default
    control = ControlClient(HOST, broker.port)
    run_events = RunEvents(lambda event: None, environment_here=True)
    run_events.expect_environment("environment")
    control.admits = run_events.admits
    try:
        all_joined(broker, [*net.clients, env.client, control.client])
        for seed in (1, 2):
            result = control.run(2, seed=seed, idle_timeout=5)
            assert result.episodes == 2 and not result.stopped
            assert env.instances == 1  # the census said: not vectorisable
        assert env.logic.stale_actions >= 1  # the late ACTION came, and was not taken for the new run
    finally:
        control.close()
        env.close()
        net.close()


# --- headless, the installed command against the doubles ------------------------------------------------


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    command = os.path.join(os.path.dirname(sys.executable), "cartpole-tui")
    return subprocess.run([command, *args], capture_output=True, text=True, timeout=timeout)


# its schedule ends unsolved with the 100-episode final evaluation, one instance at a time through
# the published parts: 40-45 s alone, past the 120 s default with the suite's two workers
@pytest.mark.timeout(300)
def test_run_evolve_deterministic_and_a_schedule_headless(broker, published):
    address = f"{HOST}:{broker.port}"
    ran = cli("run", "--connect", address, "--episodes", "2", "--db", ":memory:", "--json", "--timeout", "20")
    assert ran.returncode == 0 and json.loads(ran.stdout)["episodes"] == 2, ran.stderr
    evolved = cli("evolve", "--connect", address, "--timeout", "5")
    assert evolved.returncode == 0, evolved.stderr
    seconds = float(re.search(r"done in ([0-9.]+)s \(EVO_DONE from evolution at", evolved.stdout).group(1))
    assert seconds < 1.0
    det = cli("run", "--connect", address, "--episodes", "1", "--deterministic", "--db", ":memory:", "--json")
    assert det.returncode == 0 and json.loads(det.stdout)["deterministic"] is True, det.stderr
    # --confirm 0: the doubles learn, and a population that plays 500s at their ~30 steps/s made the
    # default 100-episode check take over 270 s in CI
    rounds = cli(
        "run", "--schedule", "--connect", address, "--rounds", "3", "--train", "2", "--eval", "1",
        "--confirm", "0", "--db", ":memory:", "--json", "--timeout", "20", timeout=270,
    )  # fmt: skip
    assert rounds.returncode == 0, rounds.stderr
    report = json.loads(rounds.stdout.strip().splitlines()[-1])
    assert report["settings"]["final_eval"] == 0 and "final " not in rounds.stderr
    assert len(report["rounds"]) == 3 or report["solved"]
    assert report["final_eval_avg"] == report["rounds"][-1]["eval_avg"]


# --- mixed networks: one part of ours beside the published others -----------------------------------------


def all_joined(broker, clients) -> None:
    """Wait until the broker has routed every REGISTER and JOINROOM of ``clients`` (all on _command)."""
    expected = sum(len(client.rooms) + 1 for client in clients)
    wait_for(lambda: broker.stats()["rooms"][protocol.COMMAND_ROOM].messages >= expected, 10, "every join")


@pytest.mark.parametrize("ours", ["aggregation", "evolution", "models"])
def test_mixed_network_runs_and_evolves(broker, ours):
    published = PublishedNetwork(
        broker.port, models=0 if ours == "models" else NR_OF_MODELS,
        aggregation=ours != "aggregation", evolution=ours != "evolution",
    )  # fmt: skip
    swarm = Swarm(HOST, broker.port, NR_OF_MODELS, seed=4, only=ours).start()
    env = EnvironmentComponent(HOST, broker.port, seed=1).start()
    control = ControlClient(HOST, broker.port)
    try:
        all_joined(broker, [*published.clients, *(c.client for c in swarm.components), env.client, control.client])
        assert control.run(2, seed=5, idle_timeout=10).episodes == 2
        assert control.evolve(timeout=8).seconds < 5
        assert control.run(1, deterministic=True, idle_timeout=10).episodes == 1
    finally:
        control.close()
        env.close()
        swarm.close()
        published.close()


def test_swarm_only_refuses_an_unknown_part():
    result = cli("swarm", "--connect", "127.0.0.1:1", "--only", "brokers")
    assert result.returncode == 2 and "invalid choice" in result.stderr


# --- the app (Pilot) against the doubles -------------------------------------------------------------------


async def test_the_app_runs_evolves_and_schedules_with_the_published_parts(tmp_path, broker, published, monkeypatch):
    from textual.widgets import Checkbox, Input, Label, RichLog

    from cartpole_tui.env.runtime.session import SessionOptions
    from cartpole_tui.tui.app import ControlRoomApp
    from tests.conftest import polls

    app = ControlRoomApp(SessionOptions(connect=f"{HOST}:{broker.port}", seed=3), db_path=str(tmp_path / "r.db"))

    def log() -> str:
        return "\n".join(line.text for line in app.query_one("#log-pane", RichLog).lines)

    async def until(predicate, timeout=60.0, what="condition"):
        for value in polls(predicate, timeout, what):
            if value:
                return value
            await pilot.pause(0.02)

    def finished(state="done"):
        return [r for r in app.store.runs() if r.state == state]

    async with app.run_test(size=(120, 40)) as pilot:
        await until(lambda: app.connection == "connected", what="connected")
        app.query_one("#episodes", Input).value = "2"
        await pilot.press("s")
        await until(lambda: len(finished()) == 1, what="a first run")
        await pilot.press("e")
        state = app.query_one("#evo-state", Label)
        await until(lambda: "by evolution" in str(state.render()), what="evo: done by evolution")
        assert re.search(r"EVO_DONE from evolution at \d\d:\d\d:\d\d", log())
        seconds = float(re.search(r"evolution done in ([0-9.]+)s", log()).group(1))
        assert seconds < 1.0
        app.query_one("#episodes", Input).value = "1"
        if not app.query_one("#deterministic", Checkbox).value:
            await pilot.press("d")
        await pilot.press("s")
        await until(lambda: len(finished()) == 2, what="a deterministic run")
        assert [r.params.deterministic for r in app.store.runs()] == [False, True]
        # two training episodes a round, not 20: at their steps/s a population playing 200s made round 1
        # alone a minute (80 s of the 120 s limit on a quiet machine)
        monkeypatch.setattr(defaults, "SCHEDULE_TRAIN_JOINED", 2)
        await pilot.press("r")

        def past_round_one() -> bool:
            # round 2 after an evolution; or, where round 1's population played 500s (the doubles learn,
            # and their ~30 steps/s would make the check's 100 episodes half an hour), the check begun
            checking = any(
                r.params.deterministic and r.params.episodes == defaults.SCHEDULE_CONFIRM for r in app.store.runs()
            )
            return "round 2:" in log() or checking

        await until(past_round_one, timeout=180, what="a round of the schedule and its evolution, or its check")
        await pilot.press("x")
        await until(lambda: "schedule stopped " in log().replace("\n", ""), what="the schedule to end")
        assert "stalled" not in log()


def test_control_with_the_published_environment_takes_its_env_done(broker):
    """--no-env: ENV_DONE without RUN_ID is the run's; the late ACTION after it changes nothing."""
    net = PublishedNetwork(broker.port, environment=True, evolution=False)
    control = ControlClient(HOST, broker.port)
    try:
        all_joined(broker, [*net.clients, control.client])
        first = control.run(1, idle_timeout=10)
        assert first.episodes == 1 and first.avg_score > 0 and first.run_id is not None
        observations = net.environment.observations
        wait_for(lambda: net.aggregation.actions == observations, 5, "the late ACTION to the extra observation")
        assert net.environment.observations == observations  # ignored until the next start
    finally:
        control.close()
        net.close()


def test_swarm_only_aggregation_joins_the_published_models(broker):
    net = PublishedNetwork(broker.port, aggregation=False)
    command = os.path.join(os.path.dirname(sys.executable), "cartpole-tui")
    ours = subprocess.Popen(
        [command, "swarm", "--only", "aggregation", "--connect", f"{HOST}:{broker.port}"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert "swarm aggregation of 20 models" in ours.stdout.readline()
        wait_for(lambda: "aggregation" in broker.stats()["clients"], 10, "our aggregation")
        ran = cli("run", "--connect", f"{HOST}:{broker.port}", "--episodes", "2", "--db", ":memory:", "--json")
        assert ran.returncode == 0 and json.loads(ran.stdout)["episodes"] == 2, ran.stderr
        evolved = cli("evolve", "--connect", f"{HOST}:{broker.port}", "--timeout", "5")
        assert evolved.returncode == 0 and "EVO_DONE from evolution" in evolved.stdout, evolved.stderr
    finally:
        ours.send_signal(signal.SIGINT)
        assert ours.wait(10) == 0
        net.close()
