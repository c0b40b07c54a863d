"""Vectorised runs: accounting, reproducibility, the swarm's per-instance rules, negotiation.

The environment plays N instances only when every listener of the per-step rooms said
BATCH in its REGISTER (our broker's census); a published-style client on the network, an
unmodified swergio 0.0.2 Client answering LOGITS, means one instance as before.
"""

from __future__ import annotations

import threading

import gymnasium as gym
import numpy as np
import pytest
from swergio import Client

from cartpole_tui.env.components.control import ControlClient
from cartpole_tui.env.components.environment import EnvironmentLogic
from cartpole_tui.env.components.instances import CartPoleInstances
from cartpole_tui.env.components.vector_env import VectorEnvironmentComponent, VectorLogic, episode_number, quotas
from cartpole_tui.env.events import EnvironmentObserver, NetworkError, RunFinished, RunStarted
from cartpole_tui.env.swarm.aggregation import AggregationLogic
from cartpole_tui.env.swarm.batching import BatchChooser
from cartpole_tui.env.swarm.swarm import Swarm
from cartpole_tui.env.wire import batch, protocol
from cartpole_tui.env.wire.transport import Component

from conftest import answer, start_swergio_client, wait_for

HOST = "127.0.0.1"


def play(logic: VectorLogic, policy, episodes: int, n: int, seed: int | None = 1) -> list[dict]:
    """A whole vectorised run without sockets; every control message it sent."""
    sent, payload = logic.start(protocol.start_run(episodes, False, seed=seed), n)
    while logic.base.run is not None:
        instances, observations = batch.parse_observation(payload, 4)
        chosen = [policy(i, obs) for i, obs in zip(instances.tolist(), observations)]
        message = {**batch.actions(n, payload["INSTANCES"], chosen), "ROOT_ID": payload["ROOT_ID"]}
        outgoing, payload = logic.step(message)
        sent += outgoing
    return sent


def episodes_of(sent: list[dict]) -> list[dict]:
    """The episodes the environment reported, one EPISODES_DONE a step, as EPISODE_DONE-like rows."""
    rows = []
    for m in sent:
        if m["STATUS"] == protocol.EPISODES_DONE:
            _, episodes, _ = protocol.parse_episodes_done(m)
            rows += [{"EPISODE": e, "SCORE": score, "STEPS": steps} for e, score, steps in episodes]
    assert not any(m["STATUS"] == protocol.EPISODE_DONE for m in sent)  # the one-instance form
    return rows


def lean(i: int, obs) -> int:
    """Instance 0 always pushes left (short episodes); the others balance (long ones)."""
    return 0 if i == 0 else int(obs[2] + 0.5 * obs[3] > 0)


def test_a_run_is_split_into_fixed_quotas_and_every_episode_is_reported():
    assert quotas(37, 8) == [5, 5, 5, 5, 5, 4, 4, 4] and sum(quotas(100, 20)) == 100
    logic = VectorLogic(EnvironmentLogic())
    sent = play(logic, lean, episodes=37, n=8)
    episodes = episodes_of(sent)
    (done,) = [m for m in sent if m["STATUS"] == protocol.ENV_DONE]
    numbers = [m["EPISODE"] for m in episodes]
    assert sorted(numbers) == list(range(1, 38))  # every number once, in start order: an interleave of
    assert numbers != sorted(numbers)  # the instances, so short episodes end before lower numbers
    interleave = [episode_number(i, k, 8) for k in range(5) for i in range(8) if k < quotas(37, 8)[i]]
    assert interleave == list(range(1, 38))  # round k of instance i is number 8k + i + 1
    assert done["EPISODES"] == 37 and not done["STOPPED"]
    assert done["AVG_SCORE"] == pytest.approx(np.mean([m["SCORE"] for m in episodes]))


def test_short_episodes_do_not_take_more_than_their_instance_s_share():
    # "stop when 37 are done" would let instance 0's ~10-step episodes fill the run
    class Keeping(VectorLogic):
        def start(self, *args):
            started = super().start(*args)
            self.kept = self.base.run
            return started

    logic = Keeping(EnvironmentLogic())
    sent = play(logic, lean, episodes=37, n=8)
    run = logic.kept
    lengths = [m["STEPS"] for m in episodes_of(sent)]
    assert min(lengths) < 20 < max(lengths)  # instance 0's episodes are much shorter
    assert run.played == quotas(37, 8)


def test_a_bad_batch_action_is_refused_and_changes_nothing():
    logic = VectorLogic(EnvironmentLogic())
    _, payload = logic.start(protocol.start_run(8, False, seed=1), 4)
    run = logic.base.run
    awaited = payload["INSTANCES"]

    def actions(values, dtype=batch.ACTION):
        return batch.encode_array(values, dtype)

    for bad in (
        {"INSTANCES": batch.encode_array([0, 1, 2], batch.INDEX), "ACTIONS": actions([0, 0, 0])},  # not those awaited
        {"INSTANCES": [0, 1, 2, 3], "ACTIONS": actions([0, 1, 0, 0])},  # the instances as JSON numbers
        {"INSTANCES": awaited, "ACTIONS": actions([0, 1, 2, 0])},  # 2 is no CartPole action
        {"INSTANCES": awaited, "ACTIONS": actions([0, 1, -1, 0])},
        {"INSTANCES": awaited, "ACTIONS": actions([0, 1])},
        {"INSTANCES": awaited, "ACTIONS": actions([0, 1, 0, 0], "<i2")},  # 8 bytes: not 4 actions of 4
        {"INSTANCES": awaited, "ACTIONS": [0, 1, 0, 1]},
        {"INSTANCES": awaited, "ACTIONS": "0101"},
        {"INSTANCES": awaited, "ACTIONS": "not base64!"},
    ):
        sent, reply = logic.step({"BATCH": 4, "ROOT_ID": payload["ROOT_ID"], **bad})
        assert reply is None and [m["STATUS"] for m in sent] == [protocol.ENV_ERROR]
    assert run.steps == 0 and run.active.tolist() == [0, 1, 2, 3] and logic.base.run is run
    sent, reply = logic.step({"BATCH": 4, "ROOT_ID": payload["ROOT_ID"], **batch.actions(4, awaited, [0, 1, 0, 1])})
    assert reply is not None and run.steps == 4  # the same step, well formed, is taken


def test_a_seeded_run_repeats_for_a_given_n_and_differs_for_another_seed():
    def scores(n, seed):
        sent = play(VectorLogic(EnvironmentLogic()), lean, episodes=24, n=n, seed=seed)
        return [m["SCORE"] for m in episodes_of(sent)]

    assert scores(6, 5) == scores(6, 5)
    assert scores(6, 5) != scores(6, 6)


def test_cartpole_arrays_match_gymnasium_step_for_step():
    arrays, envs = CartPoleInstances(3), [gym.make("CartPole-v1") for _ in range(3)]
    rng = np.random.default_rng(0)
    for i, env in enumerate(envs):
        assert np.array_equal(arrays.reset(i, 10 + i), env.reset(seed=10 + i)[0])
    for _ in range(600):  # past 500 steps: truncation too
        actions = rng.integers(2, size=3).tolist()
        observations, _, dones = arrays.step(np.arange(3), np.asarray(actions))
        for i, env in enumerate(envs):
            obs, _, terminated, truncated, _ = env.step(actions[i])
            assert np.array_equal(observations[i], obs) and dones[i] == (terminated or truncated)
            if dones[i]:
                assert np.array_equal(arrays.reset(i), env.reset()[0])


def test_training_gives_each_instance_s_episode_to_one_model_and_each_model_one_episode():
    chooser = BatchChooser(AggregationLogic(seed=0))
    ids = [f"m{k}" for k in range(4)]
    logits = np.zeros((4, 4, 2))
    chooser.observe({"BATCH": 4})  # a run's first observation
    chooser.choose(ids, logits, np.arange(4), deterministic=False)
    assert sorted(chooser.players.values()) == ids
    player = chooser.players[2]
    chooser.observe({"BATCH": 4, **batch.results([2], [1.0], [True], [0])})
    assert chooser.logic.solo_episodes[player] == 1 and chooser.logic.solo_totals[player] == 1.0
    # instance 2's next episode goes to the model with the fewest episodes, counting those being
    # played (every model has one, finished or under way), ties to the first seen
    chooser.choose(ids, logits, np.arange(4), deterministic=False)
    assert chooser.players[2] == "m0" and chooser.players[0] == "m0"


def test_the_players_logits_alone_play_as_every_models_would():
    """The models beside our aggregation compute each instance's player's logits alone
    (BatchChooser.play); an aggregation given every model's (choose) plays and credits the same,
    step by step, across episode ends, GETs and runs."""
    ids = [f"m{k}" for k in range(4)]
    given_all, given_players = BatchChooser(AggregationLogic(seed=0)), BatchChooser(AggregationLogic(seed=0))
    rng = np.random.default_rng(3)
    for run in range(2):
        message: dict = {"BATCH": 6}  # a run's first observation
        for step in range(40):
            given_all.observe(message)
            given_players.observe(message)
            instances = np.flatnonzero(rng.random(6) < 0.8)  # some instances finished their quota
            every = rng.normal(size=(4, len(instances), 2))
            columns = np.arange(len(instances))
            chosen = given_all.choose(ids, every, instances, deterministic=False)
            asked: list[np.ndarray] = []

            def players_logits(rows, every=every, columns=columns, asked=asked):
                asked.append(rows)
                return every[rows, columns]

            played = given_players.play(ids, instances, players_logits)
            assert played.tolist() == chosen.tolist() and len(asked) == 1, (run, step)
            assert given_players.players == given_all.players, (run, step)
            if step % 15 == 14:  # an evolution's GET
                assert given_players.logic.contribution() == given_all.logic.contribution()
            dones = rng.random(len(instances)) < 0.3
            message = {"BATCH": 6, **batch.results(instances, np.ones(len(instances)), dones, chosen)}


def test_deterministic_steps_are_a_vote_per_instance():
    chooser = BatchChooser(AggregationLogic(seed=0))
    # instance 0: two models lean to 0, one is sure of 1 (the summed probabilities pick 1);
    # instance 1: all lean to 0
    logits = np.array([[[0.2, 0.0], [1.0, 0.0]], [[0.2, 0.0], [1.0, 0.0]], [[0.0, 5.0], [0.5, 0.0]]])
    assert chooser.choose(["a", "b", "c"], logits, np.arange(2), deterministic=True).tolist() == [1, 0]


# --- on the wire ------------------------------------------------------------------------------------


def members(broker, room: str) -> int:
    counters = broker.stats()["rooms"].get(room)
    return counters.members if counters else 0


def test_a_run_is_vectorised_only_while_every_agent_understands_batches(broker, closing):
    closing(Swarm(HOST, broker.port, models=4, seed=1).start())
    env = VectorEnvironmentComponent(HOST, broker.port, seed=1, parallel=8).start()
    closing(env)
    control = ControlClient(HOST, broker.port)
    closing(control)
    wait_for(
        lambda: (
            (members(broker, protocol.OBSERVATION), members(broker, protocol.LOGITS), members(broker, "control"))
            == (2, 1, 3)  # the models and the control room: the aggregation is handed the observations
        ),
        5,
        "models, aggregation and environment to join",
    )

    first = control.run(16, False, seed=1, idle_timeout=20)
    assert env.instances == 8 and first.episodes == 16 and len(first.scores) == 16

    # a published model: an unmodified swergio 0.0.2 client answering each observation with LOGITS
    heard: list[dict] = []
    lock = threading.Lock()

    def published_model(msg):
        with lock:
            heard.append(msg)
        return {"LOGITS": [0.0, 0.0], "COMPONENT_ID": "published", "DETERMINISTIC": msg.get("DETERMINISTIC", False)}

    model = Client("model", HOST, broker.port, "utf-8", 10)
    answer(model, published_model, protocol.OBSERVATION, protocol.LOGITS)
    start_swergio_client(model)
    wait_for(lambda: members(broker, protocol.OBSERVATION) == 3, 5, "the published model to join")

    result = control.run(6, False, seed=2, idle_timeout=20)
    assert env.instances == 1 and result.episodes == 6 and len(result.scores) == 6
    with lock:  # (the first run's last observation, results only, follows its ENV_DONE: it may come)
        second = [m for m in heard if m.get("ROOT_ID") != first.run_id]
        assert second and not any("BATCH" in m for m in second)  # it saw the published format only
    model.close()


def test_without_a_census_the_environment_plays_one_instance(swergio_server, closing):
    closing(Swarm(HOST, swergio_server, models=2, seed=1).start())
    env = VectorEnvironmentComponent(HOST, swergio_server, seed=1, parallel=8, census_timeout=0.2).start()
    closing(env)
    control = ControlClient(HOST, swergio_server)
    closing(control)
    # swergio.Server routes a room's message to those in it when it comes: a START sent before the
    # environment's JOINROOM was lost (1 in ~10 runs). It has no stats: ask until the environment answers
    wait_for(lambda: control.environment_answered or control.query_state(), 10, "the environment in the control room")
    # swergio.Server has no census to answer: after the time-out, one instance as before
    result = control.run(2, True, seed=1, idle_timeout=60)
    assert env.instances == 1 and result.episodes == 2


def test_a_stop_while_the_census_is_awaited_ends_the_run_at_once(swergio_server, closing):
    env = VectorEnvironmentComponent(HOST, swergio_server, parallel=8, census_timeout=30).start()
    closing(env)
    control = ControlClient(HOST, swergio_server)
    closing(control)
    control.start_run(16, False)
    wait_for(lambda: env._pending is not None, 10, "the start to wait for its census")
    control.stop_run()
    # swergio.Server never answers the census; the stop does not wait 30 s for its time-out
    result = control.wait_run(idle_timeout=10)
    assert result.stopped and result.episodes == 0


def test_a_run_stopped_while_its_census_is_awaited_is_announced_to_every_room(swergio_server, closing):
    """Its start was told by the room that sent it only: a follower logged "run 7 stopped" with
    no "run 7 started" before it."""
    env = VectorEnvironmentComponent(HOST, swergio_server, parallel=8, census_timeout=30).start()
    closing(env)
    starter, follower = ControlClient(HOST, swergio_server), ControlClient(HOST, swergio_server, name="follower")
    closing(starter), closing(follower)
    heard: list[object] = []
    follower.on_event = heard.append
    wait_for(lambda: follower.environment_answered or follower.query_state(), 10, "the environment")
    starter.start_run(16, False)
    wait_for(lambda: env._pending is not None, 10, "the start to wait for its census")
    starter.stop_run()
    result = starter.wait_run(idle_timeout=10)
    wait_for(lambda: len([e for e in heard if isinstance(e, (RunStarted, RunFinished))]) >= 2, 10, "both told")
    told = [e for e in heard if isinstance(e, (RunStarted, RunFinished))]
    assert [type(e) for e in told] == [RunStarted, RunFinished]
    assert told[0].run_id == told[1].run_id == result.run_id and told[1].stopped and told[1].episodes == 0
    assert env.logic.awaiting is None  # the next run's first observation waits for nothing


def test_a_start_that_fails_once_its_census_answered_says_env_error(broker, closing):
    env = VectorEnvironmentComponent(HOST, broker.port, parallel=8).start()
    closing(env)

    class Failing(EnvironmentObserver):
        def on_run_started(self, event):
            raise RuntimeError("disk on fire")

    env.add_observer(Failing())
    errors: list[NetworkError] = []
    control = ControlClient(
        HOST, broker.port, on_event=lambda e: errors.append(e) if isinstance(e, NetworkError) else None
    )
    closing(control)
    wait_for(lambda: members(broker, protocol.CONTROL) == 2, 5, "environment and control to join")
    with env._lock:  # as the census handler holds it; the census allowed one instance
        env._begin(protocol.start_run(4, False), 1)  # a start with no first observation to send
    (error,) = wait_for(lambda: errors, 5, "the start's ENV_ERROR")
    assert "disk on fire" in error.text and env.logic.run is None


def test_the_census_counts_listeners_without_batch_and_answers_only_the_asker(broker, closing):
    class Batch(Component):
        batch = True

    heard: dict[str, list[dict]] = {"asker": [], "listener": []}
    asker, listener = Batch("asker", HOST, broker.port), Batch("listener", HOST, broker.port)
    for name, client in (("asker", asker), ("listener", listener)):
        client.dispatch = heard[name].append
        closing(client.start())
    listener.join_room(protocol.OBSERVATION)
    plain = Client("plain", HOST, broker.port, "utf-8", 10)  # an unmodified swergio 0.0.2 client
    answer(plain, lambda msg: None, protocol.LOGITS, protocol.ACTION)  # joins logits and action
    start_swergio_client(plain)
    wait_for(lambda: members(broker, protocol.ACTION) == 1, 5, "joins")

    asker.send(batch.census_request())
    (reply,) = wait_for(lambda: [m for m in heard["asker"] if batch.CENSUS in m], 5, "the census")
    assert reply[batch.CENSUS] == {"observation": [1, 0], "logits": [1, 1], "action": [1, 1]}
    assert not batch.census_allows_batches(reply)
    assert not any(batch.CENSUS in m for m in heard["listener"])  # not routed to _command
    plain.close()


def test_batch_messages_reach_only_the_members_that_said_batch(broker, closing):
    """The census is asked at a run's start: a published model joining observation during a
    vectorised run was sent batch observations, and its handler (msg["OBSERVATION"]) died on the
    first (attack pass 5). The broker passes a batch message on to members that said BATCH alone."""

    class Batch(Component):
        batch = True

    heard: list[dict] = []
    sender, listener = Batch("environment", HOST, broker.port), Batch("models", HOST, broker.port)
    listener.dispatch = heard.append
    closing(sender.start())
    closing(listener.start())
    listener.join_room(protocol.OBSERVATION)
    published: list[dict] = []
    plain = Client("published", HOST, broker.port, "utf-8", 10)  # an unmodified swergio 0.0.2 client
    answer(plain, lambda msg: published.append(msg), protocol.OBSERVATION, protocol.LOGITS)
    start_swergio_client(plain)
    wait_for(lambda: members(broker, protocol.OBSERVATION) == 2, 5, "both to join observation")

    sender.send(protocol.custom(protocol.OBSERVATION, **batch.observation(2, [0, 1], np.zeros((2, 4)), False)))
    sender.send(protocol.custom(protocol.OBSERVATION, OBSERVATION=[0.0] * 4, DETERMINISTIC=False))
    wait_for(lambda: len([m for m in heard if m.get("TO_ROOM") == protocol.OBSERVATION]) == 2, 5, "both to models")
    wait_for(lambda: published, 5, "the one-instance observation to the published model")
    assert [("BATCH" in m, "OBSERVATION" in m) for m in published] == [(False, True)]
    plain.close()
