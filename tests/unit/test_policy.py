"""The numpy population (published layout, batched forward) and the genetic operators."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as examples
from hypothesis import strategies as st

from cartpole_tui.env.swarm import genetic
from cartpole_tui.env.swarm.policy import LAYOUT, N_WEIGHTS, SLICES, Population, biases, softmax


def reference_logits(vector: np.ndarray, obs: np.ndarray) -> np.ndarray:
    """One model's logits, read from the flat vector in the published (torch) order, as a torch
    ActorCriticPolicy computes them: y = W x + b per layer, tanh between."""
    offset, layers = 0, {}
    for name, shape in LAYOUT:
        size = int(np.prod(shape))
        layers[name] = vector[offset : offset + size].reshape(shape)
        offset += size
    h = np.tanh(layers["pi_w0"] @ obs + layers["pi_b0"])
    h = np.tanh(layers["pi_w1"] @ h + layers["pi_b1"])
    return layers["act_w"] @ h + layers["act_b"]


def test_the_published_shape_has_755_weights_in_torch_order():
    assert N_WEIGHTS == 755
    assert [name for name, _ in LAYOUT] == [
        "pi_w0",
        "pi_b0",
        "pi_w1",
        "pi_b1",
        "vf_w0",
        "vf_b0",
        "vf_w1",
        "vf_b1",
        "act_w",
        "act_b",
        "val_w",
        "val_b",
    ]
    assert dict(LAYOUT)["pi_w0"] == (16, 4) and dict(LAYOUT)["act_w"] == (2, 16) and dict(LAYOUT)["val_w"] == (1, 16)
    assert SLICES["vf_w0"].start == 352 and SLICES["act_w"].start == 704 and SLICES["val_b"].stop == 755


def test_layer_views_are_the_rows_of_the_weight_array():
    pop = Population(3, seed=0)
    pop.set_model(1, np.arange(N_WEIGHTS, dtype=float))
    assert pop.layers["pi_w0"][1][0].tolist() == [0, 1, 2, 3]
    assert pop.layers["pi_b0"][1][0] == 64
    assert pop.layers["act_b"][1].tolist() == [736, 737]
    assert pop.layers["val_b"][1].tolist() == [754]
    assert not np.array_equal(pop.layers["pi_w0"][0], pop.layers["pi_w0"][1])


@pytest.mark.parametrize("per_model", [False, True])
def test_batched_forward_matches_a_model_by_model_loop(per_model):
    rng = np.random.default_rng(4)
    pop = Population(7, seed=2)
    obs = rng.normal(size=(7, 4)) if per_model else rng.normal(size=4)
    got = pop.logits(obs)
    want = np.array([reference_logits(pop.weights[i], obs[i] if per_model else obs) for i in range(7)])
    assert got.shape == (7, 2)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_a_weight_vector_round_trips_into_another_population():
    source, target = Population(4, seed=1), Population(4, seed=99)
    obs = np.array([0.02, -0.3, 0.05, 0.4])
    assert not np.allclose(source.logits(obs), target.logits(obs))
    for i in range(4):
        target.set_model(i, source.weights[i].tolist())  # as it travels in JSON
    np.testing.assert_array_equal(target.logits(obs), source.logits(obs))


def test_set_model_refuses_wrong_lengths_and_non_finite_numbers():
    pop = Population(2, seed=0)
    before = pop.weights.copy()
    with pytest.raises(ValueError, match="755"):
        pop.set_model(0, [0.0] * 754)
    bad = [0.0] * N_WEIGHTS
    bad[10] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        pop.set_model(0, bad)
    np.testing.assert_array_equal(pop.weights, before)


def test_seeded_populations_are_reproducible():
    assert np.array_equal(Population(5, seed=3).weights, Population(5, seed=3).weights)
    assert not np.array_equal(Population(5, seed=3).weights, Population(5, seed=4).weights)
    # torch's nn.Linear bounds: |w| <= 1/sqrt(fan_in)
    pop = Population(50, seed=0)
    assert np.abs(pop.layers["pi_w0"]).max() <= 0.5 and np.abs(pop.layers["pi_w1"]).max() <= 0.25
    assert np.abs(pop.layers["pi_w0"]).max() > 0.45


def test_our_models_start_without_biases_and_so_play_odd_policies():
    mask = biases()
    assert mask.sum() == 16 + 16 + 16 + 16 + 2 + 1
    assert all(mask[SLICES[name]].all() == name.endswith(("_b0", "_b1", "_b")) for name, _ in LAYOUT)
    assert biases(6, 3).sum() == 16 * 4 + 3 + 1  # Acrobot-v1's layout
    pop = Population(4, seed=2)
    np.testing.assert_array_equal(pop.weights[:, mask], 0.0)
    obs = np.array([0.01, -0.2, 0.03, 0.4])
    np.testing.assert_allclose(pop.logits(-obs), -pop.logits(obs))


def test_softmax_is_stable_for_large_logits():
    np.testing.assert_allclose(softmax(np.array([[1000.0, 0.0], [0.0, 0.0]])), [[1.0, 0.0], [0.5, 0.5]])


# --- genetic operators -------------------------------------------------------------------------------


def test_a_generation_keeps_population_size_and_weight_length_and_the_elite():
    rng = np.random.default_rng(0)
    pop = rng.normal(size=(20, N_WEIGHTS))
    fitness = rng.uniform(0, 500, size=20)
    for settings in (genetic.SWARM, genetic.TOURNAMENT):
        out = genetic.next_generation(pop, fitness, settings, np.random.default_rng(1))
        assert out.shape == (20, N_WEIGHTS)
        np.testing.assert_array_equal(out[0], pop[np.argmax(fitness)])
        assert not any(np.array_equal(out[i], pop[j]) for i in range(1, 20) for j in range(20))  # all mutated


def test_next_generation_refuses_a_fitness_per_row_mismatch():
    with pytest.raises(ValueError, match="one fitness per row"):
        genetic.next_generation(np.zeros((4, 3)), [1.0, 2.0], genetic.SWARM, np.random.default_rng(0))


def test_tournament_winners_are_the_fittest_of_their_entrants():
    fitness = np.arange(10.0)
    winners = genetic.tournament(fitness, 2000, 3, np.random.default_rng(0))
    # P(winner <= w) = ((w+1)/10)^3 for three entrants drawn with replacement
    counts = np.bincount(winners, minlength=10) / 2000
    expected = np.diff(np.concatenate([[0.0], (np.arange(1, 11) / 10) ** 3]))
    np.testing.assert_allclose(counts, expected, atol=0.03)


def test_truncation_draws_parents_from_the_fittest_fraction_only():
    fitness = np.array([5.0, 1.0, 9.0, 3.0, 7.0, 0.0, 2.0, 8.0, 4.0, 6.0])
    parents = genetic.truncation(fitness, 500, 0.2, np.random.default_rng(0))
    assert set(parents.tolist()) == {2, 7}


def test_remembered_averages_an_unchanged_rows_fitness_over_generations():
    remembered = genetic.Remembered()
    kept, new, other = np.full(3, 0.1), np.ones(3), np.full(3, 2.0)
    np.testing.assert_array_equal(remembered.average(np.stack([kept, new]), [500.0, 100.0]), [500.0, 100.0])
    remembered.keep(np.stack([kept, other]))  # `new` was not kept: its record goes
    kept = kept.astype(np.float32).astype(np.float64)  # as a published (torch) model gives it back
    # the kept row's second measurement joins its first; a lucky new row does not outrank it
    np.testing.assert_array_equal(
        remembered.average(np.stack([kept, other, new]), [100.0, 400.0, 50.0]), [300.0, 400.0, 50.0]
    )


def test_two_point_crossover_swaps_one_contiguous_slice_per_pair():
    pop = np.stack([np.zeros(50), np.ones(50), np.full(50, 2.0), np.full(50, 3.0), np.full(50, 9.0)])
    out = genetic.two_point_crossover(pop, 1.0, np.random.default_rng(3))
    for a, b in ((0, 1), (2, 3)):
        swapped = out[a] != pop[a]
        assert swapped.any() and not swapped.all()
        positions = np.flatnonzero(swapped)
        assert np.array_equal(positions, np.arange(positions[0], positions[-1] + 1))  # one slice
        np.testing.assert_array_equal(out[a][swapped], pop[b][swapped])
        np.testing.assert_array_equal(out[b][swapped], pop[a][swapped])
        np.testing.assert_array_equal(out[b][~swapped], pop[b][~swapped])
    np.testing.assert_array_equal(out[4], pop[4])  # the odd one out has no partner
    np.testing.assert_array_equal(genetic.two_point_crossover(pop, 0.0, np.random.default_rng(3)), pop)


def test_gaussian_mutation_has_the_requested_spread_and_probabilities():
    pop = np.zeros((200, 500))
    rng = np.random.default_rng(0)
    out = genetic.gaussian_mutation(
        pop, genetic.GeneticSettings(sigma=0.1, mutation_prob=0.5, gene_mutation_prob=0.2), rng
    )
    mutated_rows = (out != 0).any(axis=1)
    assert 0.4 < mutated_rows.mean() < 0.6
    genes = out[mutated_rows]
    assert 0.17 < (genes != 0).mean() < 0.23
    assert 0.09 < genes[genes != 0].std() < 0.11


def test_a_generation_mutates_no_weight_it_is_told_to_keep():
    pop = np.random.default_rng(0).normal(size=(20, N_WEIGHTS))
    out = genetic.next_generation(pop, np.arange(20.0), genetic.SWARM, np.random.default_rng(1), biases())
    np.testing.assert_array_equal(out[:, biases()], np.broadcast_to(pop[19, biases()], (20, biases().sum())))
    assert (out[1:, ~biases()] != pop[19, ~biases()]).all()


@examples(max_examples=50, deadline=None)
@given(
    k=st.integers(1, 40),
    m=st.integers(1, 64),
    with_biases=st.sampled_from(["none", "all", "one"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_the_players_logits_are_their_rows_of_every_model_s(k, m, with_biases, seed):
    """player_logits (a training step's, on contiguous slices, biases skipped when every model's
    are 0) is exactly batch_logits' row of each instance's player: ours without biases, a file's or
    published models' with them, or one model with them among ours."""
    rng = np.random.default_rng(seed)
    population = Population(k, seed)
    rows = {"none": slice(0, 0), "all": slice(None), "one": slice(k - 1, k)}[with_biases]
    population.weights[rows, biases()] = rng.normal(size=population.weights[rows, biases()].shape)
    obs = rng.normal(size=(m, 4))
    players = rng.integers(0, k, size=m)
    played = population.player_logits(obs, players)
    assert np.array_equal(played, population.batch_logits(obs)[players, np.arange(m)])
    for i in range(min(m, 3)):  # and, within float32, each model's own float64 forward pass
        assert np.allclose(played[i], population.logits(obs[i])[players[i]], atol=1e-5)
