"""Episodes that end out of number order reach the plot in number order."""

from __future__ import annotations

from cartpole_tui.env.components.in_order import InOrder
from cartpole_tui.env.events import EpisodeFinished


def numbers(events: list[EpisodeFinished]) -> list[int]:
    return [event.episode for event in events]


def test_episodes_wait_for_every_lower_number_of_their_run():
    order = InOrder()
    assert numbers(order.add(EpisodeFinished("a", 3, 9.0, 9))) == []
    assert numbers(order.add(EpisodeFinished("a", 1, 40.0, 40))) == [1]
    assert numbers(order.add(EpisodeFinished("a", 4, 8.0, 8))) == []
    assert numbers(order.add(EpisodeFinished("a", 2, 50.0, 50))) == [2, 3, 4]
    assert order.waiting == {}


def test_a_runs_end_or_the_next_run_lets_out_the_rest_gaps_and_all():
    order = InOrder()
    order.add(EpisodeFinished("a", 2, 1.0, 1))
    order.add(EpisodeFinished("a", 5, 1.0, 1))
    assert numbers(order.add(EpisodeFinished("b", 1, 1.0, 1))) == [2, 5, 1]  # a stopped run's rest first
    order.add(EpisodeFinished("b", 3, 1.0, 1))
    assert numbers(order.flush()) == [3] and order.flush() == []


def test_a_number_seen_before_passes_and_a_peer_skipping_numbers_cannot_fill_memory():
    order = InOrder(max_waiting=3)
    order.add(EpisodeFinished("a", 1, 1.0, 1))
    assert numbers(order.add(EpisodeFinished("a", 1, 2.0, 1))) == [1]  # a repeat is not held back
    for episode in (10, 20, 30):
        assert order.add(EpisodeFinished("a", episode, 1.0, 1)) == []
    assert numbers(order.add(EpisodeFinished("a", 40, 1.0, 1))) == [10]  # over the cap: the lowest goes
    assert len(order.waiting) == 3


def test_a_run_joined_midway_goes_out_as_it_comes():
    # the episodes that ended before the join never come: nothing may wait for them
    order = InOrder()
    order.joined("r")
    assert numbers(order.add(EpisodeFinished("r", 512, 9.0, 9))) == [512]
    assert numbers(order.add(EpisodeFinished("r", 505, 9.0, 9))) == [505]
    assert order.waiting == {}
