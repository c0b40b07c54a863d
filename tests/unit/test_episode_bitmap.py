"""The store's duplicate check (a bitmap of the numbers a run gives, a scan for any other): a copy
is refused and nothing else, whatever the number, at the map's edges and past them."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cartpole_tui.env import defaults
from cartpole_tui.env.history.store import MEMORY, RunStore

EDGES = st.sampled_from([-(2**63), -9, -1, 0, 1, 7, 8, 9, defaults.EPISODES_MAX, defaults.EPISODES_MAX + 1, 2**63 - 1])
NUMBERS = EDGES | st.integers(-20, defaults.EPISODES_MAX + 20) | st.integers(-(2**63), 2**63 - 1)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(NUMBERS, max_size=30))
def test_each_number_is_recorded_once(numbers):
    with RunStore.open(MEMORY) as store:
        store.begin_run("r", episodes=10, deterministic=False, seed=None, env_id="x", address="", started=1.0)
        added = [store.add_episode("r", n, 1.0, 1, 2.0) for n in numbers]
        first = [n not in numbers[:i] for i, n in enumerate(numbers)]
        assert added == first
        assert sorted(e.index for e in store.episodes("r")) == sorted(set(numbers))
        assert store.duplicate_episodes == len(numbers) - len(set(numbers))
