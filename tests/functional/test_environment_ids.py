"""Environment ids beyond the shipped ones: a gymnasium id may hold a namespace (``ns/Name-v0``), a
module to import (``module:Name-v0``) and letters of any script. Only the user's own ``--env-id``
is ever made; an id a peer announces is shown, recorded and compared, never made or imported;
and the population file named from an id is one file beside the history, whatever the id.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest

from cartpole_tui.env.components.spaces import spaces_of
from cartpole_tui.env.events import EnvSpaces, RunStarted
from cartpole_tui.env.history.store import RunStore
from cartpole_tui.env.runtime.session import Session, SessionOptions
from cartpole_tui.env.swarm import saved
from cartpole_tui.env.swarm.models import ModelPool
from cartpole_tui.env.swarm.policy import n_weights
from cartpole_tui.env.swarm.swarm import Swarm
from cartpole_tui.env.wire import protocol
from cartpole_tui.env.wire.transport import Component

from conftest import wait_for

HOST = "127.0.0.1"
CARTPOLE_ENTRY = "gymnasium.envs.classic_control.cartpole:CartPoleEnv"
NAMESPACED = "attackns/Cart-v0"
LONG = "中" * 77 + "-v0"  # 80 characters, 234 bytes: with the history's name past a file name's 255


@pytest.fixture(scope="module", autouse=True)
def registered():
    """The user's own environments: CartPole under a namespace and under a long name."""
    for env_id in (NAMESPACED, LONG):
        gym.register(env_id, entry_point=CARTPOLE_ENTRY, max_episode_steps=50)
    yield
    for env_id in (NAMESPACED, LONG):
        gym.registry.pop(env_id, None)


@pytest.mark.parametrize("env_id", [NAMESPACED, LONG, f"{CARTPOLE_ENTRY.split(':')[0]}:CartPole-v1"])
def test_a_population_file_is_one_file_beside_the_history_whatever_the_id(tmp_path, env_id):
    spaces = spaces_of(env_id)  # the user's own --env-id: made
    db = str(tmp_path / "runs.sqlite3")
    path = saved.beside_history(db, env_id)
    assert path is not None and os.path.dirname(path) == str(tmp_path)
    weights = np.zeros((2, n_weights(spaces.observations, spaces.actions)))
    saved.save(path, saved.SavedPopulation(weights, 3, None, spaces))  # before: a folder, or ENAMETOOLONG
    assert sorted(os.listdir(tmp_path)) == [os.path.basename(path)]
    assert saved.load(path, spaces).generation == 3
    others = {saved.beside_history(db, other) for other in (NAMESPACED, "attackns_Cart-v0", LONG, "Acrobot-v1")}
    assert len(others) == 4  # ids that differ keep files that differ


PROBE = "cartpole_tui_attack_probe"


def test_an_announced_environment_is_never_made_or_imported(broker, closing, tmp_path, monkeypatch):
    """RUN_STARTED and a run's first observation from a peer, and a population file, name a
    ``module:Name`` id: neither the control room nor the swarm imports the module (gymnasium's make
    would)."""
    imported = tmp_path / "imported"
    (tmp_path / f"{PROBE}.py").write_text(f"open({str(imported)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    env_id = f"{PROBE}:Evil-v0"
    pool = ModelPool(HOST, broker.port, models=1, seed=1).start()
    closing(pool)
    store = RunStore.open(str(tmp_path / "followed.sqlite3"))
    closing(store)
    events: list[object] = []
    options = SessionOptions(connect=f"{HOST}:{broker.port}", embed_env=False, agent="random")
    closing(Session(options, store=store, on_event=events.append).open())
    peer = Component("peer", HOST, broker.port)
    closing(peer)
    facts = protocol.run_facts("evil", 2, False, None, 1, env_id, time.time(), spaces_of("Acrobot-v1"))
    peer.send(protocol.run_started(facts, None))
    announcement = protocol.announcement(replace(spaces_of("Acrobot-v1"), env_id=env_id), "evil")
    peer.send(protocol.custom(protocol.OBSERVATION, OBSERVATION=[0.0] * 6, DETERMINISTIC=False, **announcement))
    wait_for(lambda: any(isinstance(e, RunStarted) and e.env_id == env_id for e in events), what="the announcement")
    wait_for(lambda: pool._other_env, what="the models to hear of another environment")
    assert store.flush(5.0) and [r.params.env_id for r in store.runs()] == [env_id]  # recorded as data
    # a population file's env_id: read, compared by shape, never made
    path = str(tmp_path / "probe.population.npz")
    saved.save(path, saved.SavedPopulation(np.zeros((2, n_weights(4, 2))), 7, None, EnvSpaces(env_id, 4, 2)))
    swarm = Swarm(HOST, broker.port, models=2, load=path)
    closing(swarm)
    assert swarm.restored == saved.Restored(7, 2)
    assert PROBE not in sys.modules and not imported.exists()
