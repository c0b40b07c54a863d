"""A population on disk: numpy ``.npz`` with the published 755-weight order.

Swarm layer, no sockets: :mod:`.swarm` loads and saves through it; the command line
names the file beside the run history.

The format (documented in the README, stable):

- ``weights``: float64, shape (K, 755): one model a row, each row the published RLGym
  model's flat weight vector (torch ``parameters()`` order: policy_net, value_net,
  action_net, value head; each layer's weight (out × in) then bias; see ``policy.LAYOUT``);
- ``generation``: int, evolutions the population has been through;
- ``seed``: int, the swarm's seed, -1 when none was given;
- ``format``: the string ``"cartpole-tui population 1"``.

A published model's weights (755 floats) can be written as one row and loaded.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

import numpy as np

from cartpole_tui.env.paths import default_db_path
from cartpole_tui.env.swarm.policy import N_WEIGHTS

FORMAT = "cartpole-tui population 1"


@dataclass(frozen=True)
class SavedPopulation:
    weights: np.ndarray  # (K, 755)
    generation: int = 0
    seed: int | None = None


def save(path: str, population: SavedPopulation) -> None:
    """Write atomically (a reader never sees half a file; a crash keeps the previous one)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, scratch = tempfile.mkstemp(prefix=".population-", suffix=".npz", dir=directory)
    try:
        with os.fdopen(handle, "wb") as out:
            np.savez(
                out,
                weights=np.asarray(population.weights, dtype=np.float64),
                generation=np.int64(population.generation),
                seed=np.int64(-1 if population.seed is None else population.seed),
                format=np.str_(FORMAT),
            )
        os.replace(scratch, path)
    except BaseException:
        if os.path.exists(scratch):
            os.unlink(scratch)
        raise


def load(path: str) -> SavedPopulation:
    """Read and check a population file; ValueError saying, with its name, what is wrong with it."""
    not_ours = f"{path} is not a population file (numpy .npz with a weights array)"
    try:
        data = np.load(path, allow_pickle=False)
    except OSError as error:
        raise ValueError(f"{path}: cannot read it: {error.strerror or error}") from None
    except Exception:  # numpy's guesses at what else the bytes might be (pickles…) are not for this reader
        raise ValueError(not_ours) from None
    if not isinstance(data, np.lib.npyio.NpzFile):  # a bare .npy array
        raise ValueError(not_ours)
    with data:
        if "weights" not in data.files:
            raise ValueError(f"{path} is not a population file: it has no weights array")
        try:
            weights = np.array(data["weights"], dtype=np.float64)
            generation = int(data["generation"]) if "generation" in data.files else 0
            seed = int(data["seed"]) if "seed" in data.files else -1
        except Exception:  # object arrays, text, a damaged member
            raise ValueError(f"{path}: its weights, generation and seed must be numbers") from None
    if weights.ndim == 1:
        weights = weights[None, :]  # one published model's vector
    if weights.ndim != 2 or weights.shape[1] != N_WEIGHTS or len(weights) < 1:
        raise ValueError(f"{path}: weights must be (models, {N_WEIGHTS}), got {weights.shape}")
    if not np.all(np.isfinite(weights)):
        raise ValueError(f"{path}: weights must be finite numbers")
    if generation < 0:
        raise ValueError(f"{path}: generation must be ≥ 0, got {generation}")
    return SavedPopulation(weights, generation, None if seed < 0 else seed)


def fit(weights: np.ndarray, models: int) -> np.ndarray:
    """``models`` rows from a saved population: cycled when it holds fewer, the first ones when more."""
    return weights[np.arange(models) % len(weights)]


def beside_history(db_path: str | None) -> str | None:
    """The population file kept with a run history: ``<db>.population.npz`` (none for ``:memory:``)."""
    path = db_path or default_db_path()
    return None if path == ":memory:" else f"{path}.population.npz"
