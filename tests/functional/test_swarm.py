"""The swarm's components over a real broker: models, aggregation, evolution, schedule, learning.

Known logits go in through a probe client and the answers are checked against the
rules; unmodified swergio 0.0.2 clients stand in for the published models and
aggregation where the test is about compatibility.
"""

from __future__ import annotations

import base64
import json
import logging
import queue
import threading

import numpy as np
import pytest
import swergio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from swergio import MESSAGE_TYPE, Trigger

from cartpole_tui.env import defaults
from cartpole_tui.env.components.control import ControlClient
from cartpole_tui.env.components.environment import EnvironmentComponent
from cartpole_tui.env.components.vector_env import BatchClient
from cartpole_tui.env.events import EnvSpaces
from cartpole_tui.env.runtime.schedule import run_schedule
from cartpole_tui.env.swarm.aggregation import Aggregation, AggregationLogic
from cartpole_tui.env.swarm.evolution import Evolution
from cartpole_tui.env.swarm.models import ModelPool
from cartpole_tui.env.swarm.policy import N_WEIGHTS, biases, softmax
from cartpole_tui.env.swarm.swarm import Swarm, serve_swarm
from cartpole_tui.env.wire import batch, protocol
from cartpole_tui.env.wire.transport import ConnectionFailed, ConnectionLost
from tests.conftest import start_swergio_client, wait_for
from tests.published import PublishedModel

HOST = "127.0.0.1"
CUSTOM = MESSAGE_TYPE.DATA.CUSTOM
OBS = [0.01, -0.02, 0.03, 0.04]


class Probe:
    """A client in ``rooms`` that queues every DATA/CUSTOM message it receives there (it says
    BATCH: the broker passes batch messages on to such clients alone)."""

    def __init__(self, port: int, *rooms: str, name: str = "probe"):
        self.inbox: queue.Queue = queue.Queue()
        self.client = BatchClient(name, HOST, port)
        for room in rooms:
            self.client.add_eventHandler(self.inbox.put, None, trigger=Trigger(CUSTOM, room))
        self.client.start()

    def send(self, room: str, **payload) -> dict:
        message = protocol.custom(room, **payload)
        self.client.send(message)
        return message

    def get(self, n: int = 1, timeout: float = 5.0) -> list[dict]:
        return [self.inbox.get(timeout=timeout) for _ in range(n)]

    def close(self) -> None:
        self.client.close()


def members(broker, room: str) -> int:
    rooms = broker.stats()["rooms"]
    return rooms[room].members if room in rooms else 0


# --- aggregation rules, no sockets ---------------------------------------------------------------------


def test_the_deterministic_vote_sums_probabilities_not_argmaxes():
    logic = AggregationLogic(seed=0)
    # two models lean slightly to 0, one is sure of 1: the summed probabilities pick 1
    logits = {"a": [0.2, 0.0], "b": [0.2, 0.0], "c": [0.0, 5.0]}
    assert logic.choose(logits, deterministic=True) == 1
    probs = softmax(np.array(list(logits.values())))
    shares = probs[:, 1] / probs[:, 1].sum()
    assert logic.contribution() == pytest.approx(dict(zip("abc", shares)))
    assert logic.contribution() == {"a": 0.0, "b": 0.0, "c": 0.0}  # reset by the GET


def test_stochastic_vote_samples_from_the_summed_probabilities():
    logic = AggregationLogic(seed=1, solo=False)
    logits = {"a": [0.0, 1.0], "b": [2.0, 0.0], "c": [0.0, 0.0]}
    n = 6000
    ones = sum(logic.choose(logits, deterministic=False) for _ in range(n))
    p1 = softmax(np.array(list(logits.values())))[:, 1].mean()
    assert abs(ones / n - p1) < 5 * np.sqrt(p1 * (1 - p1) / n)


def test_solo_episodes_go_to_each_model_in_turn_and_score_its_returns():
    logic = AggregationLogic(seed=0)
    logits = {"a": [1.0, 0.0], "b": [0.0, 1.0], "c": [3.0, 0.0]}
    played = []
    for length in (3, 5, 2, 4):  # four episodes of these lengths
        logic.observe(None, False) if not played else None
        actions = set()
        for step in range(length):
            actions.add(logic.choose(logits, deterministic=False))
            logic.observe(1.0, step == length - 1)
        played.append(actions)
    # a, b, c, then a again; each acts greedily on its own logits
    assert played == [{0}, {1}, {0}, {0}]
    assert logic.contribution() == {"a": 3.5, "b": 5.0, "c": 2.0}
    assert logic.choose(logits, deterministic=True) == 0  # the vote is unaffected by solo play


def test_after_solo_episodes_only_the_fittest_vote_ties_in():
    logic = AggregationLogic(seed=0, fittest=2)
    heard: list[frozenset[str] | None] = []
    logic.on_voters = heard.append
    logic.solo_totals.update(a=500.0, b=20.0, c=300.0, d=300.0)
    logic.solo_episodes.update(a=1, b=1, c=1, d=1)
    np.testing.assert_array_equal(logic.voting(["a", "b", "c", "d", "e"]), [0, 2, 3])  # e played none
    # b is sure of 1 but does not vote; a, c and d lean to 0
    logits = {"a": [0.1, 0.0], "b": [0.0, 9.0], "c": [0.1, 0.0], "d": [0.1, 0.0], "e": [0.0, 9.0]}
    assert logic.choose(logits, deterministic=True) == 0
    logic.contribution()  # the GET: no solo episodes since, so all vote again
    assert logic.choose(logits, deterministic=True) == 1
    assert heard == [frozenset("acd"), None]  # each change of the vote, once (the swarm saves it)
    apart = AggregationLogic(seed=0, fittest=None)  # an aggregation apart from its models: all vote
    apart.solo_totals.update(a=500.0)
    apart.solo_episodes.update(a=1)
    assert apart.choose(logits, deterministic=True) == 1


def test_the_vote_does_not_change_with_which_models_answered_a_step():
    """The fittest were chosen among the models that answered the step: a step without one of them
    (a model late, or a foreign peer's LOGITS counted first in its place, as any peer may send) chose
    another vote, and each change wrote the population file, in the aggregation's thread: a hostile
    peer made every deterministic step a file write."""
    logic = AggregationLogic(seed=0, fittest=2)
    heard: list[frozenset[str] | None] = []
    logic.on_voters = heard.append
    logic.solo_totals.update(a=500.0, b=20.0, c=300.0, d=300.0)
    logic.solo_episodes.update(a=1, b=1, c=1, d=1)
    for _ in range(3):
        np.testing.assert_array_equal(logic.voting(["a", "b", "c", "d"]), [0, 2, 3])
        np.testing.assert_array_equal(logic.voting(["evil", "b", "c", "d"]), [2, 3])  # a missing: c, d vote
    assert heard == [frozenset("acd")]  # one vote, saved once
    few = AggregationLogic(seed=0, fittest=3)  # fewer played than vote: all vote, whoever answers
    few.on_voters = heard.append
    few.solo_totals.update(a=5.0)
    few.solo_episodes.update(a=1)
    np.testing.assert_array_equal(few.voting(["a", "b"]), [0, 1])
    np.testing.assert_array_equal(few.voting(["a", "b", "evil"]), [0, 1, 2])
    assert heard == [frozenset("acd")]


def test_a_run_start_discards_an_unfinished_solo_episode():
    logic = AggregationLogic(seed=0)
    logits = {"a": [1.0, 0.0], "b": [0.0, 1.0]}
    logic.choose(logits, deterministic=False)
    logic.observe(1.0, False)  # a plays one step, then the run is stopped and a new one starts
    logic.observe(None, False)
    logic.choose(logits, deterministic=False)
    logic.observe(1.0, True)
    assert logic.contribution() == {"a": 1.0, "b": 0.0}


# --- models over the wire ---------------------------------------------------------------------------------


def test_models_answer_one_logits_per_model_with_root_id(broker, closing):
    pool = ModelPool(HOST, broker.port, models=5, seed=3).start()
    closing(pool)
    probe = Probe(broker.port, protocol.LOGITS)
    closing(probe)
    wait_for(lambda: members(broker, protocol.OBSERVATION) == 1, 5, "models to join observation")
    probe.send(protocol.OBSERVATION, OBSERVATION=OBS, DETERMINISTIC=True, ROOT_ID="run-1")
    answers = probe.get(5)
    assert sorted(a["COMPONENT_ID"] for a in answers) == sorted(pool.ids)
    want = dict(zip(pool.ids, pool.population.logits(OBS).tolist()))
    for answer in answers:
        assert answer["LOGITS"] == want[answer["COMPONENT_ID"]]
        assert answer["DETERMINISTIC"] is True and answer["ROOT_ID"] == "run-1"
        assert answer["TYPE"] == protocol.CUSTOM and answer["SENT_BY"] == "models"
    assert len({a["ID"] for a in answers}) == 5
    with pytest.raises(queue.Empty):
        probe.inbox.get(timeout=0.2)  # exactly one per model


def test_weights_get_then_set_leaves_behaviour_unchanged_and_moves_models(broker, closing):
    source = ModelPool(HOST, broker.port, models=3, seed=1, name="source").start()
    closing(source)
    probe = Probe(broker.port, protocol.EVOLUTION)
    closing(probe)
    wait_for(lambda: members(broker, protocol.EVOLUTION) == 2, 5, "models to join evolution")
    probe.send(protocol.EVOLUTION, CMD="GET")
    answers = {a["COMPONENT_ID"]: a["WEIGHTS"] for a in probe.get(3)}
    assert set(answers) == set(source.ids) and all(len(w) == N_WEIGHTS for w in answers.values())
    before = source.population.logits(OBS).copy()
    probe.send(protocol.EVOLUTION, CMD="SET", WEIGHTS=answers)  # GET then SET: nothing changes
    probe.send(protocol.EVOLUTION, CMD="GET")
    assert {a["COMPONENT_ID"]: a["WEIGHTS"] for a in probe.get(3)} == answers
    np.testing.assert_array_equal(source.population.logits(OBS), before)

    # the same vectors SET into other models (by id) make them behave the same
    target = ModelPool(HOST, broker.port, models=3, seed=2, name="target").start()
    closing(target)
    wait_for(lambda: members(broker, protocol.EVOLUTION) == 3, 5, "target to join evolution")
    assert not np.allclose(target.population.logits(OBS), before)
    probe.send(protocol.EVOLUTION, CMD="SET", WEIGHTS={t: answers[s] for t, s in zip(target.ids, source.ids)})
    wait_for(lambda: np.array_equal(target.population.logits(OBS), before), 5, "SET to reach the target")


def test_models_refuse_bad_weights_and_keep_their_own(broker, closing, caplog):
    pool = ModelPool(HOST, broker.port, models=2, seed=1).start()
    closing(pool)
    probe = Probe(broker.port, protocol.EVOLUTION)
    closing(probe)
    wait_for(lambda: members(broker, protocol.EVOLUTION) == 2, 5, "models to join evolution")
    before = pool.population.weights.copy()
    probe.send(protocol.EVOLUTION, CMD="SET", WEIGHTS={pool.ids[0]: [1.0] * 10, pool.ids[1]: "x"})
    wait_for(lambda: sum("refused" in r.getMessage() for r in caplog.records) == 2, 5, "two refusals logged")
    np.testing.assert_array_equal(pool.population.weights, before)


def test_models_and_evolution_refuse_malformed_batch_weights(broker, closing, caplog):
    pool = ModelPool(HOST, broker.port, models=2, seed=1).start()
    closing(pool)
    evolution = Evolution(HOST, broker.port, models=2, seed=2, timeout=0.5).start()
    closing(evolution)
    probe = Probe(broker.port, protocol.EVOLUTION)
    closing(probe)
    wait_for(lambda: members(broker, protocol.EVOLUTION) == 3, 5, "everyone to join evolution")
    before = pool.rows()
    huge = batch.encode_array(np.full((2, N_WEIGHTS), 1e308), batch.WEIGHT)  # each finite, their sums not
    for payload in ({"BATCH_WEIGHTS": "x"}, {"BATCH_WEIGHTS": huge}, {"BATCH_WEIGHTS": huge[:-8]}):
        probe.send(protocol.EVOLUTION, CMD="SET", COMPONENT_IDS=pool.ids, **payload)
    wait_for(lambda: caplog.text.count("malformed BATCH_WEIGHTS in SET") == 3, 5, "three refusals logged")
    np.testing.assert_array_equal(pool.rows(), before)
    # an answer the evolution cannot read is left out: the pool's own still counts
    probe.send(protocol.CONTROL, EVOLUTION=True)
    probe.send(protocol.EVOLUTION, COMPONENT_IDS=["a", "b"], BATCH_WEIGHTS=huge)
    wait_for(lambda: evolution.generations == 1, 5, "the generation of the pool's two models")
    assert "evolution: ignored a malformed BATCH_WEIGHTS" in caplog.text


# --- aggregation over the wire ----------------------------------------------------------------------------


def start_aggregation(broker, closing, **kwargs) -> tuple[Aggregation, Probe]:
    aggregation = Aggregation(HOST, broker.port, seed=0, **kwargs).start()
    closing(aggregation)
    probe = Probe(broker.port, protocol.ACTION, protocol.EVOLUTION)
    closing(probe)
    wait_for(lambda: members(broker, protocol.LOGITS) == 1, 5, "aggregation to join logits")
    return aggregation, probe


def test_aggregation_answers_one_action_per_step_and_contribution(broker, closing):
    _, probe = start_aggregation(broker, closing, models=3)
    logits = {"a": [0.2, 0.0], "b": [0.2, 0.0], "c": [0.0, 5.0]}
    for model_id, row in logits.items():
        probe.send(protocol.LOGITS, LOGITS=row, COMPONENT_ID=model_id, DETERMINISTIC=True, ROOT_ID="run-7")
    (action,) = probe.get()
    assert action["ACTION"] == [1] and action["ROOT_ID"] == "run-7"
    assert action["TO_ROOM"] == protocol.ACTION and action["SENT_BY"] == "aggregation"
    probe.send(protocol.EVOLUTION, CMD="GET", ROOT_ID="evo-1")
    (answer,) = probe.get()
    probs = softmax(np.array(list(logits.values())))
    assert answer["CONTRIBUTION"] == pytest.approx(dict(zip(logits, probs[:, 1] / probs[:, 1].sum())))
    assert answer["ROOT_ID"] == "evo-1"


def test_aggregation_times_out_a_silent_model_and_carries_on(broker, closing, caplog):
    aggregation, probe = start_aggregation(broker, closing, models=3, timeout=0.3)
    caplog.set_level(logging.INFO, logger="cartpole_tui.env.swarm")

    def step(ids):
        probe.send(protocol.OBSERVATION, OBSERVATION=OBS, DETERMINISTIC=True)  # as the environment does
        for model_id in ids:
            probe.send(protocol.LOGITS, LOGITS=[1.0, 0.0], COMPONENT_ID=model_id, DETERMINISTIC=True)
        return probe.get()[0]["ACTION"]

    assert step("abc") == [0]
    assert step("ab") == [0]  # c is silent: answered after the time-out
    timeouts = [r for r in caplog.records if "did not answer" in r.getMessage()]
    assert len(timeouts) == 1 and "c" in timeouts[0].getMessage()
    assert aggregation.expected == 2
    assert step("ab") == [0]  # no second wait for c
    assert len([r for r in caplog.records if "did not answer" in r.getMessage()]) == 1
    assert step("abc") == [0]  # c answers late: counted again from the next step
    wait_for(lambda: aggregation.expected == 3, 5, "c to be expected again")
    assert step("abc") == [0]
    assert len([r for r in caplog.records if "did not answer" in r.getMessage()]) == 1


def test_aggregation_ignores_malformed_logits(broker, closing, caplog):
    _, probe = start_aggregation(broker, closing, models=1)
    probe.send(protocol.LOGITS, LOGITS=[1.0, float("inf")], COMPONENT_ID="a")
    probe.send(protocol.LOGITS, LOGITS=[1.0], COMPONENT_ID="a")
    probe.send(protocol.LOGITS, LOGITS=[1.0, 2.0])
    probe.send(protocol.LOGITS, LOGITS=[0.0, 2.0], COMPONENT_ID="a", DETERMINISTIC=True)
    assert probe.get()[0]["ACTION"] == [1]
    assert sum("ignored LOGITS" in r.getMessage() for r in caplog.records) == 3


# --- compatibility with unmodified swergio clients -------------------------------------------------------------


def test_a_room_that_is_not_a_string_takes_the_generic_path(broker, closing):
    aggregation = Aggregation(HOST, broker.port, models=1)
    closing(aggregation.start())
    # a list is unhashable: looked up in the direct-path table it raised TypeError in the listener
    aggregation.client.dispatch({"TYPE": CUSTOM.id, "TO_ROOM": [protocol.LOGITS], "LOGITS": [0.0, 1.0]})
    assert not aggregation._pending


def test_unmodified_swergio_models_drive_our_aggregation(broker, closing):
    """Three published-style models (swergio.Client, handler returns LOGITS) and our aggregation."""
    _, probe = start_aggregation(broker, closing, models=3)
    published = []
    for i, row in enumerate(([0.0, 3.0], [0.0, 2.0], [4.0, 0.0])):
        client = swergio.Client(f"model{i}", HOST, broker.port, "utf-8", 10)
        client.add_eventHandler(
            lambda msg, row=row, i=i: {"LOGITS": row, "COMPONENT_ID": f"m{i}", "DETERMINISTIC": msg["DETERMINISTIC"]},
            CUSTOM,
            responseRooms=protocol.LOGITS,
            trigger=Trigger(CUSTOM, protocol.OBSERVATION),
        )
        start_swergio_client(client)
        published.append(client)
    try:
        wait_for(lambda: members(broker, protocol.OBSERVATION) == 4, 5, "models to join observation")
        probe.send(protocol.OBSERVATION, OBSERVATION=OBS, DETERMINISTIC=True, ROOT_ID="r")
        (action,) = probe.get()
        assert action["ACTION"] == [1] and action["ROOT_ID"] == "r"  # 0.95 + 0.88 + 0.02 > 0.05 + 0.12 + 0.98
    finally:
        for client in published:
            client.client.close()


def test_our_models_answer_an_unmodified_swergio_aggregation(broker, closing):
    """A published-style aggregation (swergio.Client) collects our models' LOGITS and acts."""
    pool = ModelPool(HOST, broker.port, models=4, seed=5).start()
    closing(pool)
    received = []

    def aggregate(msg):
        received.append(msg)
        if len(received) == 4:
            total = softmax(np.array([m["LOGITS"] for m in received])).sum(axis=0)
            return {"ACTION": [int(np.argmax(total))]}
        return None

    published = swergio.Client("aggregation", HOST, broker.port, "utf-8", 10)
    published.add_eventHandler(
        aggregate, CUSTOM, responseRooms=protocol.ACTION, trigger=Trigger(CUSTOM, protocol.LOGITS)
    )
    start_swergio_client(published)
    probe = Probe(broker.port, protocol.ACTION)
    closing(probe)
    try:
        wait_for(lambda: members(broker, protocol.ACTION) == 2, 5, "aggregation to join action")
        probe.send(protocol.OBSERVATION, OBSERVATION=OBS, DETERMINISTIC=True, ROOT_ID="run-3")
        (action,) = probe.get()
        want = int(np.argmax(softmax(pool.population.logits(OBS)).sum(axis=0)))
        assert action["ACTION"] == [want] and action["ROOT_ID"] == "run-3"
        assert sorted(m["COMPONENT_ID"] for m in received) == sorted(pool.ids)
    finally:
        published.client.close()


# --- evolution ------------------------------------------------------------------------------------------


def test_evolution_gets_selects_sets_and_answers_evo_done(broker, closing):
    pool = ModelPool(HOST, broker.port, models=6, seed=1).start()
    closing(pool)
    evolution = Evolution(HOST, broker.port, models=6, seed=2).start()
    closing(evolution)
    aggregator = Probe(broker.port, protocol.EVOLUTION, name="aggregation")  # answers GET by hand
    closing(aggregator)
    control = Probe(broker.port, protocol.CONTROL, name="control")
    closing(control)
    wait_for(lambda: members(broker, protocol.EVOLUTION) == 3, 5, "everyone to join evolution")
    before = pool.weights()
    fittest = pool.ids[4]

    control.send(protocol.CONTROL, EVOLUTION=True, ROOT_ID="evo-9")
    (get,) = aggregator.get()
    assert get["CMD"] == "GET" and get["ROOT_ID"] == "evo-9"
    aggregator.send(protocol.EVOLUTION, CONTRIBUTION={i: (100.0 if i == fittest else 1.0) for i in pool.ids})
    done = [m for m in control.get(1) if m.get("STATUS") == protocol.EVO_DONE]
    assert done and done[0]["ROOT_ID"] == "evo-9"
    # EVO_DONE follows the SET out of the evolution; the models apply it in their own thread
    after = wait_for(lambda: (w := pool.weights()) != before and w, 5, "the SET to be applied")
    assert set(after) == set(before) and all(len(w) == N_WEIGHTS for w in after.values())
    assert before[fittest] in after.values()  # the elite is kept as it was
    assert sum(after[i] != before[i] for i in pool.ids) >= 5  # the others are new
    assert evolution.generations == 1


def test_our_pool_and_evolution_trade_all_weights_in_one_message_each_way(broker, closing):
    """Our pool answers our evolution's GET with every model's weights in one BATCH_WEIGHTS and SET
    sends them back so (their JSON, written and read by four parts, was most of an evolution's
    time); a published model beside it is asked, answers and is SET in lists as before."""
    pool = ModelPool(HOST, broker.port, models=3, seed=1).start()
    closing(pool)
    published = PublishedModel(broker.port, 7)
    closing(published.client)
    evolution = Evolution(HOST, broker.port, models=4, seed=2).start()
    closing(evolution)
    aggregator = Probe(broker.port, protocol.EVOLUTION, name="aggregation")  # sees the room, answers GET
    closing(aggregator)
    control = Probe(broker.port, protocol.CONTROL, name="control")
    closing(control)
    wait_for(lambda: members(broker, protocol.EVOLUTION) == 4, 5, "everyone to join evolution")
    before = pool.rows()

    control.send(protocol.CONTROL, EVOLUTION=True, ROOT_ID="evo-1")
    get, *answers = aggregator.get(3)  # the GET, then one answer from the pool and one from the model
    assert get["CMD"] == "GET" and get[batch.BATCH_WEIGHTS] is True
    (ours,) = [a for a in answers if batch.BATCH_WEIGHTS in a]
    (theirs,) = [a for a in answers if "WEIGHTS" in a]
    assert ours["COMPONENT_IDS"] == pool.ids
    np.testing.assert_array_equal(batch.decode_array(ours[batch.BATCH_WEIGHTS], batch.WEIGHT, before.shape), before)
    assert theirs["COMPONENT_ID"] == published.component_id and len(theirs["WEIGHTS"]) == N_WEIGHTS
    aggregator.send(protocol.EVOLUTION, CONTRIBUTION={i: 1.0 for i in [*pool.ids, published.component_id]})
    (sent,) = aggregator.get()
    assert sent["CMD"] == "SET" and sent["COMPONENT_IDS"] == pool.ids
    assert list(sent["WEIGHTS"]) == [published.component_id]
    rows = batch.decode_array(sent[batch.BATCH_WEIGHTS], batch.WEIGHT, before.shape)
    wait_for(lambda: np.array_equal(pool.rows(), rows), 5, "the pool to load its rows")
    wait_for(lambda: published.sets == 1, 5, "the published model to load its list")
    assert published.population.weights[0].tolist() == sent["WEIGHTS"][published.component_id]
    assert not np.array_equal(rows, before)


def evolution_by_hand(broker, closing, models: int, in_evolution: int) -> tuple[Probe, Probe]:
    """Our evolution of ``models``, a Probe standing for the aggregation (its GET answered by hand)
    and one for a control room; once ``in_evolution`` clients are in that room."""
    closing(Evolution(HOST, broker.port, models=models, seed=2).start())
    aggregator = Probe(broker.port, protocol.EVOLUTION, name="aggregation")
    closing(aggregator)
    control = Probe(broker.port, protocol.CONTROL, name="control")
    closing(control)
    wait_for(lambda: members(broker, protocol.EVOLUTION) == in_evolution, 5, "everyone to join evolution")
    return aggregator, control


def test_published_models_have_their_biases_evolved(broker, closing):
    """Our models have no biases and our evolution leaves them so; a published model's are torch's
    random ones (nn.Linear), and every child took the elite's, never mutated: a push one way whatever
    the pole does could not be evolved away on a mixed network (`swarm --only evolution`)."""
    mask, rng = biases(), np.random.default_rng(5)
    models = [PublishedModel(broker.port, 10 + i) for i in range(4)]
    for model in models:
        closing(model.client)
        model.population.weights[0, mask] = rng.uniform(-0.25, 0.25, mask.sum())  # as torch starts them
    aggregator, control = evolution_by_hand(broker, closing, models=4, in_evolution=6)
    before = [model.population.weights[0, mask].copy() for model in models]

    control.send(protocol.CONTROL, EVOLUTION=True, ROOT_ID="evo-1")
    aggregator.get(5)  # the GET and the four models' answers
    aggregator.send(protocol.EVOLUTION, CONTRIBUTION={m.component_id: float(i) for i, m in enumerate(models)})
    wait_for(lambda: all(model.sets == 1 for model in models), 5, "the models to load the next generation")
    after = [model.population.weights[0, mask] for model in models]
    elite = before[3]  # the fittest, kept as it was
    assert sum(np.array_equal(a, elite) for a in after) == 1
    assert all(not np.array_equal(a, b) for a, b in zip(after[:3], before[:3]))


def test_evolution_without_models_still_answers(broker, closing, caplog):
    evolution = Evolution(HOST, broker.port, models=3, seed=0, timeout=0.3).start()
    closing(evolution)
    control = Probe(broker.port, protocol.CONTROL, name="control")
    closing(control)
    wait_for(lambda: members(broker, protocol.CONTROL) == 2, 5, "evolution to join control")
    control.send(protocol.CONTROL, EVOLUTION=True)
    (done,) = control.get()
    assert done["STATUS"] == protocol.EVO_DONE and "nothing to evolve" in done["ERROR"]
    assert any("evolving what answered" in r.getMessage() for r in caplog.records)


# --- the whole swarm ---------------------------------------------------------------------------------------


def network(broker, closing, models: int, seed: int) -> ControlClient:
    swarm = Swarm(HOST, broker.port, models=models, seed=seed).start()
    closing(swarm)
    env = EnvironmentComponent(HOST, broker.port, seed=seed).start()
    closing(env)
    control = ControlClient(HOST, broker.port)
    closing(control)
    wait_for(
        lambda: members(broker, protocol.LOGITS) == 1 and members(broker, protocol.CONTROL) == 3,
        5,
        "the network to join its rooms",
    )
    return control


def test_a_short_seeded_schedule_learns(broker, closing):
    control = network(broker, closing, models=20, seed=1)
    rounds = []
    result = run_schedule(
        control, rounds=4, train=20, evaluate=5, on_round=rounds.append, final_eval=10, target=None, seed=1
    )
    assert len(rounds) == 4 and all(r.evolved for r in rounds)
    assert [r.round for r in rounds] == [1, 2, 3, 4]
    assert rounds[-1].train_steps == sum(round(r.train_avg * 20) for r in rounds)
    # a random policy averages ~22; after four generations the swarm is well above it. Seeded runs
    # reach 150+ here, but one ordering of the whole suite gave 75 (not reproduced alone): the
    # bounds below are ~3x and ~2x random, clear learning without depending on that.
    assert max(r.eval_avg for r in rounds) > 60
    assert result.final_eval_avg > 44
    data = json.loads(json.dumps(result.to_json()))
    assert data["final_eval_avg"] == result.final_eval_avg and len(data["rounds"]) == 4
    assert {"train_avg", "eval_avg", "train_seconds"} <= set(data["rounds"][0])


def test_a_seeded_network_is_reproducible(broker):
    def scores() -> list[list[float]]:
        items = []
        try:
            control = network(broker, items.append, models=4, seed=7)
            out = [control.run(8, False, seed=11).scores]
            control.evolve()
            out.append(control.run(3, True, seed=12).scores)
            return out
        finally:
            for item in reversed(items):
                item.close()
            wait_for(lambda: members(broker, protocol.LOGITS) == 0, 5, "the network to leave")

    first = scores()
    assert len(first[0]) == 8 and len(first[1]) == 3
    assert scores() == first


def test_serve_swarm_ends_when_the_broker_goes(broker):
    errors = []

    def serve():
        try:
            serve_swarm(HOST, broker.port, models=2, seed=0)
        except ConnectionLost as error:
            errors.append(error)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    wait_for(lambda: members(broker, protocol.LOGITS) == 1, 5, "the swarm to join")
    broker.stop()
    thread.join(10)
    assert not thread.is_alive() and errors


def test_serve_swarm_to_nowhere_fails_clearly():
    from tests.conftest import free_port

    with pytest.raises(ConnectionFailed, match="cannot reach broker"):
        serve_swarm(HOST, free_port(), models=2)


def test_a_schedule_stops_at_a_confirmed_target_without_evolving(broker, closing):
    control = network(broker, closing, models=4, seed=2)
    phases = []
    result = run_schedule(
        control,
        rounds=5,
        train=4,
        evaluate=3,
        final_eval=3,
        target=5.0,
        seed=3,
        on_phase=lambda phase, number: phases.append((phase, number)),
    )
    # every CartPole episode lasts at least 8 steps, so round 1 reaches 5 and is confirmed
    assert phases == [("train", 1), ("eval", 1), ("confirm", 1)]
    assert result.solved and len(result.rounds) == 1 and not result.rounds[0].evolved
    assert result.final_eval_avg == result.rounds[0].confirm_avg >= 5.0


def test_a_schedule_without_a_check_ends_at_the_first_evaluation_reaching_the_target(broker, closing):
    control = network(broker, closing, models=4, seed=2)
    phases = []
    result = run_schedule(
        control, rounds=5, train=4, evaluate=3, final_eval=0, target=5.0, seed=3,
        on_phase=lambda phase, number: phases.append((phase, number)),
    )  # fmt: skip
    # as above, round 1's evaluation reaches 5; with no check asked for it stands for one
    assert phases == [("train", 1), ("eval", 1)]
    assert result.solved and len(result.rounds) == 1 and not result.rounds[0].evolved
    assert result.final_eval_avg == result.rounds[0].eval_avg >= 5.0 and result.rounds[0].confirm_avg is None


def test_a_hopeless_confirmation_is_stopped_early(broker, closing):
    from cartpole_tui.env.runtime.schedule import _forwarding_episodes, _HopelessConfirmation

    control = network(broker, closing, models=4, seed=3)
    hopeless = _HopelessConfirmation(control, episodes=50, target=400.0)
    with _forwarding_episodes(control, [hopeless]):
        hopeless.watch(control.start_run(50, True, seed=1))
        result = control.wait_run(30)
    # this untrained population scores ~10 (seed 2's, without biases, plays 500s): even the rest
    # all scoring 500 cannot bring it to 400
    assert result.stopped and 1 <= result.episodes < 50 and result.avg_score < 400


def test_an_evolution_of_more_weights_than_one_frame_holds(broker, closing):
    """All of a pool's weights went as one BATCH_WEIGHTS, and the SET as one: 100 models of an
    environment of 1,024 observations and 64 actions (34,449 weights each) are 35 MiB of base64,
    over the broker's 16 MiB frame, and the broker cut the pool off (as WEIGHTS lists, a model a
    message, they had fitted). Now both go in messages of at most BATCH_WEIGHTS_BYTES."""
    spaces = EnvSpaces("Wide-v0", 1024, 64)
    models = 100
    pool = ModelPool(HOST, broker.port, models=models, seed=1, spaces=spaces).start()
    closing(pool)
    closing(Aggregation(HOST, broker.port, models=models, seed=1, spaces=spaces).start())
    closing(Evolution(HOST, broker.port, models=models, seed=1, spaces=spaces).start())
    control = ControlClient(HOST, broker.port)
    closing(control)
    wait_for(lambda: members(broker, protocol.EVOLUTION) == 3, 10, "the swarm in the evolution room")
    before, in_logits = pool.rows(), members(broker, protocol.LOGITS)
    done = control.evolve()
    assert done.generation == 1 and len(done.fitness) == models
    wait_for(lambda: (pool.rows() != before).any(axis=1).sum() >= models - 1, 10, "the SET loaded")
    assert members(broker, protocol.LOGITS) == in_logits  # the pool is still there


def messages(broker, room: str) -> int:
    rooms = broker.stats()["rooms"]
    return rooms[room].messages if room in rooms else 0


def test_the_whole_swarm_answers_a_training_step_with_each_instance_s_player_alone(broker, closing):
    """In one process the pool hands each batch step to the aggregation beside it: no LOGITS
    through the broker; each instance's episode is played by one model (fewest episodes first,
    ties in the pool's order), on that model's logits alone, and credited to it."""
    swarm = Swarm(HOST, broker.port, models=4, seed=1).start()
    closing(swarm)
    probe = Probe(broker.port, protocol.ACTION)
    closing(probe)
    wait_for(lambda: members(broker, protocol.OBSERVATION) == 1, 5, "the swarm to join observation")
    assert members(broker, protocol.LOGITS) == 1  # still heard there: models of another pool
    observations = np.random.default_rng(0).normal(0.0, 0.05, size=(8, 4))
    first = batch.observation(8, np.arange(8), observations, deterministic=False)
    probe.send(protocol.OBSERVATION, **first, ROOT_ID="run-1")
    (action,) = probe.get()
    assert action["ROOT_ID"] == "run-1"
    ids = swarm.models.ids
    assert swarm.aggregation.batches.players == {i: ids[i % 4] for i in range(8)}
    everyone = swarm.models.population.batch_logits(observations)  # (K, M, 2)
    played = everyone[np.arange(8) % 4, np.arange(8)]
    chosen = batch.decode_ints(action["ACTIONS"], batch.ACTION, 0, 2, 8)
    assert chosen.tolist() == played.argmax(axis=1).tolist()

    # instance 1's episode ends: model 1 played it; its next one goes to model 0 (every model has
    # two episodes now, ended or under way, and model 0 is first)
    results = batch.results(np.arange(8), np.ones(8), np.arange(8) == 1, chosen)
    probe.send(protocol.OBSERVATION, **first, **results, ROOT_ID="run-1")
    probe.get()
    assert dict(swarm.aggregation.logic.solo_episodes) == {ids[1]: 1}
    assert dict(swarm.aggregation.logic.solo_totals) == {ids[1]: 1.0}
    assert swarm.aggregation.batches.players[1] == ids[0]
    assert messages(broker, protocol.LOGITS) == 0 and messages(broker, protocol.ACTION) == 2


def test_a_pool_apart_from_our_aggregation_answers_a_training_step_with_every_model(broker, closing):
    """Another aggregation may sample from every model's probabilities: ``--only models`` sends them all."""
    swarm = Swarm(HOST, broker.port, models=3, seed=1, only="models").start()
    closing(swarm)
    probe = Probe(broker.port, protocol.LOGITS)
    closing(probe)
    wait_for(lambda: members(broker, protocol.OBSERVATION) == 1, 5, "the models to join observation")
    probe.send(protocol.OBSERVATION, **batch.observation(2, [0, 1], np.zeros((2, 4)), deterministic=False))
    (logits,) = probe.get()
    assert batch.decode_array(logits["BATCH_LOGITS"], batch.LOGIT, (3, 2, 1)).shape == (3, 2, 1)


def test_the_whole_swarm_answers_a_batch_step_once_beside_a_pool_of_another_process(broker, closing, caplog):
    """A pool apart (``--only models``) sends batch LOGITS to the whole swarm's aggregation, which
    answered the step already through the models beside it: taken, they made a second ACTION (the
    environment applied it to the next step, or refused it as bad actions) and moved the instances'
    episodes to the other pool's models. They are ignored, said once (until the next GET)."""
    swarm = Swarm(HOST, broker.port, models=4, seed=1).start()
    closing(swarm)
    other = Swarm(HOST, broker.port, models=4, seed=2, only="models").start()
    closing(other)
    probe = Probe(broker.port, protocol.ACTION, protocol.LOGITS)
    closing(probe)
    wait_for(lambda: members(broker, protocol.OBSERVATION) == 2, 5, "both pools to join observation")
    first = batch.observation(8, np.arange(8), np.zeros((8, 4)), deterministic=False)
    step = batch.results(np.arange(8), np.ones(8), np.zeros(8, dtype=bool), np.zeros(8, dtype=int))
    with caplog.at_level(logging.WARNING):
        for results in ({}, step, step):
            probe.send(protocol.OBSERVATION, **first, **results, ROOT_ID="run-1")
        heard = probe.get(6)
        # routed after the other pool's three answers: handled after them too
        probe.send(protocol.LOGITS, BATCH=8, INSTANCES="?", COMPONENT_IDS=["x"], BATCH_LOGITS="")
        wait_for(lambda: "LOGITS from probe" in caplog.text, 5, "the probe's LOGITS to be handled")
    actions = [m for m in heard + probe.get(probe.inbox.qsize()) if m.get("SENT_BY") == "aggregation"]
    assert len(actions) == 3  # one a step
    assert caplog.text.count("ignored batch LOGITS from models: the models beside it answer every batch step") == 1
    assert set(swarm.aggregation.batches.players.values()) == set(swarm.models.ids)


def test_made_up_model_ids_never_crowd_out_the_models_beside_the_aggregation(broker, closing):
    """A peer's LOGITS of MODELS_MAX made-up ids, before a run, filled what the aggregation takes:
    the whole swarm's own models were then refused, and every run, one instance or many, hung."""
    swarm = Swarm(HOST, broker.port, models=4, seed=1).start()
    closing(swarm)
    hostile = Probe(broker.port, name="hostile")
    closing(hostile)
    probe = Probe(broker.port, protocol.ACTION)
    closing(probe)
    wait_for(lambda: members(broker, protocol.OBSERVATION) == 1, 5, "the swarm to join observation")
    for i in range(defaults.MODELS_MAX):
        hostile.send(protocol.LOGITS, LOGITS=[0.0, 0.0], COMPONENT_ID=f"made-up-{i}")
    wait_for(lambda: len(swarm.aggregation.logic.order) == defaults.MODELS_MAX, 10, "the made-up ids")
    probe.send(protocol.OBSERVATION, **batch.observation(8, np.arange(8), np.zeros((8, 4)), False), ROOT_ID="run-1")
    probe.send(protocol.OBSERVATION, OBSERVATION=OBS, ROOT_ID="run-2")

    def answered() -> set:
        return {m.get("ROOT_ID") for m in list(probe.inbox.queue)}

    wait_for(lambda: {"run-1", "run-2"} <= answered(), 5, "both runs' steps to be answered")
    assert set(swarm.aggregation.batches.players.values()) == set(swarm.models.ids)


def malformed(message: dict, key: str, value: object) -> dict | None:
    """``message`` with ``key`` set to ``value`` (None: left out), when that is no batch
    observation our pool takes; else None."""
    changed = {k: v for k, v in message.items() if k != key}
    if value is not None:
        changed[key] = value
    try:
        batch.parse_observation(changed, 4)
        batch.step_results(changed)
    except protocol.ProtocolError:
        return changed
    return None


ARRAYS = st.one_of(
    st.binary(max_size=80).map(lambda raw: base64.b64encode(raw).decode()),
    st.lists(st.floats(allow_nan=True), max_size=8).map(lambda xs: batch.encode_array(xs, "<f8")),
    st.text(max_size=20),
    st.integers(),
    st.none(),
    st.lists(st.integers(0, 9), max_size=4),
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cases=st.lists(st.tuples(st.sampled_from(["INSTANCES", "OBSERVATIONS", "STEPPED", "REWARDS", "DONES"]), ARRAYS)))
def test_a_malformed_batch_observation_changes_nothing_in_the_whole_swarm(broker, caplog, cases):
    """The pool beside our aggregation hands it the observations it takes: one it refuses (logged)
    reset every instance's player (no STEPPED: a run's first) or credited its results before."""
    items: list = []
    try:
        swarm = Swarm(HOST, broker.port, models=4, seed=1).start()
        items.append(swarm)
        probe = Probe(broker.port, protocol.ACTION)
        items.append(probe)
        wait_for(lambda: members(broker, protocol.OBSERVATION) == 1, 5, "the swarm to join observation")
        observe = batch.observation(8, np.arange(8), np.zeros((8, 4)), deterministic=False)
        step = {**observe, **batch.results(np.arange(8), np.ones(8), np.arange(8) == 1, np.zeros(8, dtype=int))}
        probe.send(protocol.OBSERVATION, **observe, ROOT_ID="run-1")
        probe.send(protocol.OBSERVATION, **step, ROOT_ID="run-1")
        probe.get(2)
        chooser, logic = swarm.aggregation.batches, swarm.aggregation.logic
        before = (chooser.players, chooser._returns.tolist(), dict(logic.solo_episodes), dict(logic.solo_totals))
        nothing = {**observe, **batch.results([], [], [], [])}  # taken: it changes nothing
        refused = [m for m in (malformed(step, key, value) for key, value in cases) if m is not None]
        with caplog.at_level(logging.WARNING):
            caplog.clear()
            for k, message in enumerate(refused):
                probe.send(protocol.OBSERVATION, **message, ROOT_ID="refused")
                probe.send(protocol.OBSERVATION, **nothing, ROOT_ID=f"after-{k}")
                (answer,) = probe.get()  # the pool answers in order: the refused one was handled
                assert answer["ROOT_ID"] == f"after-{k}"
        assert caplog.text.count("models: ignored a batch observation") == len(refused)
        after = (chooser.players, chooser._returns.tolist(), dict(logic.solo_episodes), dict(logic.solo_totals))
        assert after == before
    finally:
        for item in reversed(items):
            item.close()
        wait_for(lambda: members(broker, protocol.OBSERVATION) == 0, 5, "the swarm to leave")
