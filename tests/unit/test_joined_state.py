"""A late joiner records what RUN_STATE tells (SCORE_EPISODES, SCORE_STEPS, SCORE_ENDED): any
state its decoders let through leaves the file in range, never more episodes than FINISHED."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cartpole_tui.env.events import RunJoined, RunStarted
from cartpole_tui.env.history.store import MEMORY, RunStore
from cartpole_tui.env.runtime.run_events import RunEvents
from cartpole_tui.env.wire import protocol

ODD = st.integers(-2, 60) | st.floats(allow_nan=True) | st.none() | st.booleans()


def column(n: int, valid: st.SearchStrategy) -> st.SearchStrategy:
    """None (not told), ``n`` entries most often in range, or a list of any length and values."""
    return st.none() | st.lists(valid, min_size=n, max_size=n) | st.lists(ODD, max_size=8)


@st.composite
def states(draw: st.DrawFn) -> tuple[int, int, dict]:
    episodes, instances = draw(st.integers(1, 50)), draw(st.sampled_from([1, 4]))
    n = draw(st.integers(0, 8))
    message = {
        "FINISHED": draw(st.integers(0, 3) | st.integers(-1, 51)),
        "STEPS": 0,
        "SCORES": draw(st.lists(st.floats(-600, 600), min_size=n, max_size=n)),
    }
    numbers = draw(st.none() | st.lists(st.integers(0, 51), min_size=n, max_size=n, unique=True) | column(n, ODD))
    for key, values in (
        ("SCORE_EPISODES", numbers),
        ("SCORE_STEPS", draw(column(n, st.integers(-1, protocol.MAX_EPISODE_STEPS + 1)))),
        ("SCORE_ENDED", draw(column(n, st.floats(-1.0, 2.0**41)))),
    ):
        if values is not None:
            message[key] = values
    return episodes, instances, message


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(states())
def test_a_joined_state_records_only_checked_episodes(state):
    episodes, instances, message = state
    try:
        finished, steps, told = protocol.parse_run_progress(message, episodes)
        numbered = protocol.parse_score_episodes(message, len(told), episodes, finished)
    except protocol.ProtocolError:
        return
    run = RunStarted("r", episodes, False, None, 1.0, instances=instances)
    joined = RunJoined(run, finished, steps, tuple(told), *(numbered or (None, None, None)))
    emitted: list[object] = []
    with RunStore.open(MEMORY) as store:
        events = RunEvents(emitted.append, environment_here=False, store=store)
        events.from_network(joined)
        rows = store.episodes("r")
        assert len(rows) <= finished and len({e.index for e in rows}) == len(rows)
        assert all(1 <= e.index <= episodes and 0 <= e.wall_time < protocol.MAX_TIME for e in rows)
        assert all(0 <= e.steps <= protocol.MAX_EPISODE_STEPS for e in rows)
        (said,) = [e for e in emitted if isinstance(e, RunJoined)]
        assert said.missed == finished - len(rows)
