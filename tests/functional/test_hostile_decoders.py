"""Hostile values for the newer decoders, driven into live parts over a real broker: each test
failed before its fix.

JSON integers may have 4,300 digits, past float's range: ``math.isfinite`` raised OverflowError
on them, a handler's traceback instead of a clear message (and, in the evolution, no EVO_DONE).
A batch LOGITS for other instances than the step's was stacked with the step's and failed it.
"""

from __future__ import annotations

import queue
import subprocess
import time

import numpy as np
import pytest
from test_hostile_numbers import following
from test_swarm import Probe, evolution_by_hand, members, start_aggregation

from cartpole_tui.env import defaults
from cartpole_tui.env.components.control import ControlClient
from cartpole_tui.env.events import BrokerStats, NetworkError
from cartpole_tui.env.swarm.evolution import Evolution
from cartpole_tui.env.swarm.models import ModelPool
from cartpole_tui.env.swarm.policy import n_weights
from cartpole_tui.env.wire import batch, protocol
from tests.hostile import Raw

from conftest import CLI, cli, free_port, wait_for

HOST = "127.0.0.1"
HUGE = 10**400  # JSON takes it; no float holds it


@pytest.fixture
def followed(broker, tmp_path):
    """A ``--no-env`` control room recording into its own file, and an attacker."""
    with following(broker.port, tmp_path / "followed.sqlite3") as (_, store, events, attacker):
        yield store, events, attacker


def said(events: list[object], words: str) -> list[str]:
    return [e.text for e in events if isinstance(e, NetworkError) and words in e.text]


def test_a_score_past_floats_range_is_said_and_not_recorded(followed):
    store, events, attacker = followed
    run_id = "huge-score"
    facts = protocol.run_facts(run_id, 3, False, None, 1, "CartPole-v1", time.time())
    attacker.send(protocol.run_started(facts, None))
    attacker.send(protocol.episode_done(run_id, 1, 0.0, 9, time.time()) | {"SCORE": HUGE})
    bad = protocol.episodes_done(run_id, [2], [HUGE], [9], time.time())  # type: ignore[list-item]
    attacker.send(bad)
    attacker.send(protocol.episode_done(run_id, 3, 30.0, 30, time.time()))
    wait_for(lambda: store.flush(1.0) and [e.index for e in store.episodes(run_id)] == [3], what="the valid episode")
    assert len(said(events, "malformed EPISODE_DONE: SCORE")) == 1
    assert len(said(events, "malformed EPISODES_DONE: SCORE")) == 1
    assert [(e.index, e.score) for e in store.episodes(run_id)] == [(3, 30.0)]


def test_an_evolution_answers_whatever_a_contribution_holds(broker, closing):
    pool = ModelPool(HOST, broker.port, models=3, seed=1).start()
    closing(pool)
    aggregator, control = evolution_by_hand(broker, closing, models=3, in_evolution=3)
    control.send(protocol.CONTROL, EVOLUTION=True, ROOT_ID="evo-huge")
    (get,) = aggregator.get()
    assert get["CMD"] == "GET"
    aggregator.send(protocol.EVOLUTION, CONTRIBUTION={pool.ids[0]: HUGE, pool.ids[1]: 5.0, pool.ids[2]: 1.0})
    (done,) = control.get(1)
    assert done["STATUS"] == protocol.EVO_DONE and done["ROOT_ID"] == "evo-huge"
    assert sorted(done["FITNESS"]) == [0.0, 1.0, 5.0]  # no number counts as none


def test_an_evolution_ignores_weights_of_integers_past_floats_range(broker, closing):
    evolution = Evolution(HOST, broker.port, models=2, seed=2).start()
    closing(evolution)
    pool = Probe(broker.port, protocol.EVOLUTION, name="models")  # answers GET by hand
    closing(pool)
    control = Probe(broker.port, protocol.CONTROL, name="control")
    closing(control)
    wait_for(lambda: members(broker, protocol.EVOLUTION) == 2, 5, "everyone to join evolution")
    control.send(protocol.CONTROL, EVOLUTION=True)
    pool.get()
    width = n_weights(4, 2)
    pool.send(protocol.EVOLUTION, WEIGHTS=[HUGE, -HUGE] + [0.0] * (width - 2), COMPONENT_ID="bad")  # sums to 0
    pool.send(protocol.EVOLUTION, WEIGHTS=[0.0] * width, COMPONENT_ID="a")
    pool.send(protocol.EVOLUTION, WEIGHTS=[1.0] * width, COMPONENT_ID="b")
    pool.send(protocol.EVOLUTION, CONTRIBUTION={"a": 1.0, "b": 2.0, "bad": 3.0})
    (done,) = control.get(1)
    assert done["STATUS"] == protocol.EVO_DONE and done["FITNESS"] == [1.0, 2.0]


def batch_logits(ids: list[str], instances: list[int], logit: float) -> dict:
    """A batch LOGITS of ``ids`` for ``instances``: every model's action-1 logit ``logit``."""
    relative = np.full((len(ids), len(instances), 1), logit)
    return {
        batch.BATCH: 4,
        "INSTANCES": batch.encode_array(instances, batch.INDEX),
        "COMPONENT_IDS": ids,
        "BATCH_LOGITS": batch.encode_array(relative, batch.LOGIT),
        "DETERMINISTIC": True,
    }


def test_batch_logits_for_other_instances_do_not_fail_the_step(broker, closing):
    aggregation, probe = start_aggregation(broker, closing, models=2, timeout=60.0)
    probe.send(protocol.LOGITS, **batch_logits(["a"], [0, 1], 3.0))
    probe.send(protocol.LOGITS, **batch_logits(["x"], [2], -3.0))  # not the step pending: refused
    probe.send(protocol.LOGITS, **single(["y"]))  # nor a single step's
    probe.send(protocol.LOGITS, **batch_logits(["b"], [0, 1], 3.0))
    (action,) = probe.get(timeout=10.0)  # before: the step failed, and waited for the time-out
    assert action["INSTANCES"] == batch.encode_array([0, 1], batch.INDEX)
    assert batch.decode_ints(action["ACTIONS"], batch.ACTION, 0, 2).tolist() == [1, 1]
    assert "x" not in aggregation.logic.order and "y" not in aggregation.logic.order


def single(ids: list[str]) -> dict:
    return {"LOGITS": [0.0, 1.0], "COMPONENT_ID": ids[0], "DETERMINISTIC": True}


def test_a_new_runs_logits_are_not_refused_for_a_stopped_runs_step(broker, closing):
    _, probe = start_aggregation(broker, closing, models=2, timeout=60.0)
    probe.send(protocol.LOGITS, **batch_logits(["a"], [0, 1, 2], 3.0))  # the stopped run's step, half answered
    first = {batch.BATCH: 4, "INSTANCES": batch.encode_array([0], batch.INDEX), "OBSERVATIONS": ""}
    probe.send(protocol.OBSERVATION, **first)  # the new run's first observation
    probe.send(protocol.LOGITS, **batch_logits(["a"], [0], -3.0))
    probe.send(protocol.LOGITS, **batch_logits(["b"], [0], -3.0))
    (action,) = probe.get(timeout=10.0)
    assert batch.decode_ints(action["ACTIONS"], batch.ACTION, 0, 2).tolist() == [0]
    with pytest.raises(queue.Empty):
        probe.get(timeout=0.2)  # (one ACTION: a second would be a bug, not a timing)


def test_models_ignore_a_batch_naming_an_instance_twice(broker, closing, caplog):
    pool = ModelPool(HOST, broker.port, models=2, seed=1).start()
    closing(pool)
    probe = Probe(broker.port, protocol.LOGITS)
    closing(probe)
    wait_for(lambda: members(broker, protocol.OBSERVATION) == 1, 5, "the models to join observation")
    repeated = [0] * 5000  # each a row of every model's work
    probe.send(protocol.OBSERVATION, **batch.observation(4, repeated, np.zeros((5000, 4)), True))
    probe.send(protocol.OBSERVATION, **batch.observation(4, [0, 1], np.zeros((2, 4)), True))
    (answer,) = probe.get()  # the models answer in order: the first answer is to the second batch
    assert answer["INSTANCES"] == batch.encode_array([0, 1], batch.INDEX)
    assert any("distinct instance numbers" in r.getMessage() for r in caplog.records)


def test_forged_broker_stats_with_numbers_past_range_are_ignored(broker, closing, caplog):
    """Any client may send to ``_stats``: an infinity raised OverflowError in the control client's
    handler, and a 400-digit counter was taken (the health check divides by it)."""
    heard: list[object] = []
    control = ControlClient(HOST, broker.port, on_event=heard.append)
    closing(control)
    attacker = Raw(broker.port, "attacker")
    closing(attacker)
    wait_for(lambda: members(broker, protocol.STATS_ROOM) == 1, 5, "the control client to join _stats")

    def stats(name: str, **figures) -> None:
        body = {"clients": [name], "rooms": {}, "frames_refused": 0, "undeliverable": 0} | figures
        attacker.send({"TYPE": protocol.LOG_CUSTOM, "TO_ROOM": protocol.STATS_ROOM, "ID": name, "STATS": body})

    stats("inf", frames_refused=float("inf"))
    stats("huge", undeliverable=HUGE)
    stats("rooms", rooms={protocol.OBSERVATION: [1, HUGE, 0]})
    stats("marker")  # handled after the others (one connection, in order)
    wait_for(lambda: any(isinstance(e, BrokerStats) and e.clients == ("marker",) for e in heard), what="the marker")
    forged = {"inf", "huge", "rooms", "marker"}
    assert [e.clients for e in heard if isinstance(e, BrokerStats) and forged & set(e.clients)] == [("marker",)]
    assert not any("_on_stats failed" in r.getMessage() for r in caplog.records)


def test_made_up_model_ids_are_bounded_and_let_go_at_the_next_get(broker, closing):
    """Each new id a LOGITS named was kept for good: every step's work and CONTRIBUTION grew
    without end. At most MODELS_MAX are known; those not heard since the last GET are let go."""
    aggregation, probe = start_aggregation(broker, closing, models=1, timeout=60.0)
    for flood in range(3):
        ids = [f"fake-{flood}-{i}" for i in range(defaults.MODELS_MAX)]
        probe.send(protocol.LOGITS, **batch_logits(ids, [0], 1.0))
    probe.send(protocol.LOGITS, **batch_logits(["real"], [0], 1.0))
    probe.send(protocol.EVOLUTION, CMD="GET")
    answers = probe.get(2)  # the first flood's ACTION, then CONTRIBUTION: the rest were refused
    assert len(answers[-1]["CONTRIBUTION"]) == defaults.MODELS_MAX
    probe.send(protocol.EVOLUTION, CMD="GET")  # nothing heard since the last: named once more, then let go
    assert len(probe.get()[0]["CONTRIBUTION"]) == defaults.MODELS_MAX and not aggregation.logic.order
    probe.send(protocol.LOGITS, **batch_logits(["real"], [0], 1.0))
    assert "ACTIONS" in probe.get()[0] and list(aggregation.logic.order) == ["real"]


def test_a_peers_run_id_reaches_no_terminal_through_a_csv_export(followed):
    """A RUN_ID may hold any character but NUL: ``export`` (CSV on standard output) printed its
    escape sequences raw to the terminal (JSON escapes them)."""
    store, _, attacker = followed
    run_id = "r\x1b]0;pwned\x07\x1b[2J\x9b1m"
    facts = protocol.run_facts(run_id, 1, False, None, 1, "CartPole-v1", time.time())
    attacker.send(protocol.run_started(facts, None))
    attacker.send(protocol.episode_done(run_id, 1, 9.0, 9, time.time()))
    attacker.send(protocol.custom(protocol.CONTROL, **protocol.env_done(9.0, run_id, 1)))
    wait_for(lambda: store.flush(1.0) and [r.state for r in store.runs()] == ["done"], what="the run recorded")
    exported = cli("export", "--db", store.path)
    assert exported.returncode == 0, exported.stderr
    lines = exported.stdout.splitlines()
    assert len(lines) == 2 and lines[1].startswith("1,r") and "pwned" in lines[1]
    assert all(ch.isprintable() for ch in exported.stdout.replace("\n", ""))


def test_a_peers_name_reaches_no_terminal_through_the_log(tmp_path):
    """`broker` (and `env`, `swarm`) log to standard error, a terminal: a client's NAME (and a
    model's id, a sender) went into the lines raw, escape sequences and all."""
    port = free_port()
    with open(tmp_path / "broker.log", "w") as log:
        broker = subprocess.Popen([CLI, "broker", "--port", str(port)], stdout=subprocess.PIPE, stderr=log, text=True)
        try:
            assert broker.stdout is not None and "listening" in broker.stdout.readline()
            evil = Raw(port, "evil\x1b]0;pwned\x07\x1b[2J\u009b1mname\nforged line")
            wait_for(lambda: "registered as evil" in (tmp_path / "broker.log").read_text(), what="the REGISTER logged")
            evil.close()
        finally:
            broker.terminate()
            broker.wait(10)
    lines = (tmp_path / "broker.log").read_text().splitlines()
    named = [line for line in lines if "registered as evil" in line]
    assert len(named) == 1 and "pwned" in named[0] and "forged line" in named[0]  # one line: no forged one
    assert all(ch.isprintable() for line in lines for ch in line)
