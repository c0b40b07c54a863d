"""A population on disk: numpy ``.npz`` with the published 755-weight order.

Swarm layer, no sockets: :mod:`.swarm` loads and saves through it; the command line
names the file beside the run history.

The format (documented in the README, stable):

- ``weights``: float64, shape (K, 755): one model a row, each row the published RLGym
  model's flat weight vector (torch ``parameters()`` order: policy_net, value_net,
  action_net, value head; each layer's weight (out × in) then bias; see ``policy.LAYOUT``);
- ``generation``: int, evolutions the population has been through;
- ``seed``: int, the swarm's seed, -1 when none was given;
- ``format``: the string ``"cartpole-tui population 1"``;
- ``env_id`` (a string), ``observations`` and ``actions`` (ints): the environment the models
  were built for; a file without them is CartPole-v1's (4, 2). Weights are then (K, W) with
  W the layout's size for those spaces (``policy.n_weights``: 755 for CartPole-v1, 838 for
  Acrobot-v1). A file for other spaces than the swarm's is refused in one line;
- ``voters`` (optional): int64, the rows whose vote a deterministic step counts (the fittest of the
  last training, as the swarm's aggregation chose them); without it every row votes. The swarm
  writes the file again whenever that vote changes, so a swarm started from it plays as the one
  that wrote it did (a schedule's confirmed vote).

A published model's weights (755 floats) can be written as one row and loaded.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from cartpole_tui.env import defaults
from cartpole_tui.env.components.spaces import CARTPOLE
from cartpole_tui.env.events import EnvSpaces
from cartpole_tui.env.paths import NotRegularFile, default_db_path, open_regular, refuse_special
from cartpole_tui.env.swarm.policy import n_weights

FORMAT = "cartpole-tui population 1"
MAX_MODELS = 10_000  # rows a file may hold (60 MB of weights); a swarm uses its first --models rows
MAX_GENERATION = 10**12  # far beyond any run, far below int64's end (each evolution adds one)
REAL_KINDS = "fiub"  # float, int, unsigned, bool dtypes; never complex, string or object


@dataclass(frozen=True)
class SavedPopulation:
    weights: np.ndarray  # (K, 755) for CartPole-v1
    generation: int = 0
    seed: int | None = None
    spaces: EnvSpaces = CARTPOLE  # the environment the models were built for
    voters: tuple[int, ...] | None = None  # the rows that vote in deterministic steps; None: all


def save(path: str, population: SavedPopulation) -> None:
    """Write atomically (a reader never sees half a file; a crash keeps the previous one)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, scratch = tempfile.mkstemp(prefix=".population-", suffix=".npz", dir=directory)
    try:
        arrays: dict[str, Any] = {  # Any: savez's keywords include allow_pickle, a bool
            "weights": np.asarray(population.weights, dtype=np.float64),
            "generation": np.int64(population.generation),
            "seed": np.int64(-1 if population.seed is None else population.seed),
            "format": np.str_(FORMAT),
            "env_id": np.str_(population.spaces.env_id),
            "observations": np.int64(population.spaces.observations),
            "actions": np.int64(population.spaces.actions),
        }
        if population.voters is not None:
            arrays["voters"] = np.asarray(population.voters, dtype=np.int64)
        with os.fdopen(handle, "wb") as out:
            np.savez(out, **arrays)
        os.replace(scratch, path)
    except BaseException:
        if os.path.exists(scratch):
            os.unlink(scratch)
        raise


def load(path: str, spaces: EnvSpaces = CARTPOLE) -> SavedPopulation:
    """Read and check a population file for models built for ``spaces``; ValueError (one line
    naming the file) saying what is wrong with it — a file of another environment's shapes
    among them. Each array's header is checked before its data is read, so a file that
    claims a huge shape or inflates on decompression is refused without allocating it."""
    try:
        with open_regular(path) as file, zipfile.ZipFile(file) as archive:
            built_for = _spaces(archive)
            if (built_for.observations, built_for.actions) != (spaces.observations, spaces.actions):
                raise WrongSpaces(f"{path}: a population for {built_for.shape}, not {spaces.shape}")
            weights = _read(archive, "weights", "weights", n_weights(spaces.observations, spaces.actions))
            weights = weights.astype(np.float64)
            generation = _integer(archive, "generation", 0, MAX_GENERATION)
            seed = _integer(archive, "seed", -1, 2**63 - 1)
            voters = _voters(archive, len(weights) if weights.ndim == 2 else 1)
    except WrongSpaces:
        raise
    except NotRegularFile:
        raise ValueError(f"{path} is not a population file (not a regular file)") from None
    except OSError as error:
        raise ValueError(f"{path}: cannot be read ({error.strerror or _one_line(error)})") from None
    except (EOFError, zipfile.BadZipFile, zlib.error, ValueError) as error:
        raise ValueError(f"{path} is not a population file ({_one_line(error)})") from None
    if weights.ndim == 1:
        weights = weights[None, :]  # one published model's vector
    if not np.all(np.isfinite(weights)):
        raise ValueError(f"{path}: weights must be finite numbers")
    return SavedPopulation(weights, generation, None if seed < 0 else seed, built_for, voters)


class WrongSpaces(ValueError):
    """A population file built for another environment's shapes (its message names both)."""


def _spaces(archive: zipfile.ZipFile) -> EnvSpaces:
    """The environment a file's models were built for (CartPole-v1 when it does not say)."""
    if "env_id.npy" not in archive.namelist():
        return CARTPOLE
    env_id = _text(archive, "env_id", defaults.ENV_ID_MAX)
    observations = _integer(archive, "observations", 1, defaults.ENV_OBSERVATIONS_MAX)
    actions = _integer(archive, "actions", 2, defaults.ENV_ACTIONS_MAX)
    return EnvSpaces(env_id, observations, actions)


def _text(archive: zipfile.ZipFile, key: str, most: int) -> str:
    """The short string stored as ``key``; ValueError when it is none, too long or not printable."""
    with archive.open(f"{key}.npy") as stream:
        version = np.lib.format.read_magic(stream)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"{key}: unsupported .npy version {version}")
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = reader(stream)
        if dtype.kind != "U" or shape != () or dtype.itemsize > 4 * most:
            raise ValueError(f"{key}: must be a string of at most {most} characters")
        data = stream.read(dtype.itemsize + 1)
    if len(data) != dtype.itemsize:
        raise ValueError(f"{key}: {len(data)} bytes of data for {dtype}")
    text = str(np.frombuffer(data, dtype=dtype)[0])
    if not text or not text.isprintable():
        raise ValueError(f"{key}: must be printable characters")
    return text


def _read(archive: zipfile.ZipFile, key: str, what: str, width: int = 0) -> np.ndarray:
    """The array stored as ``key``; ValueError when its header is not what a population holds."""
    try:
        member = archive.getinfo(f"{key}.npy")
    except KeyError:
        raise ValueError(f"no {what!r} array") from None
    with archive.open(member) as stream:
        version = np.lib.format.read_magic(stream)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"{what}: unsupported .npy version {version}")
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = reader(stream)
        if dtype.kind not in REAL_KINDS or dtype.itemsize > 8:
            raise ValueError(f"{what}: must be real numbers, got dtype {dtype}")
        if key == "weights":
            _check_weights_shape(shape, width)
        elif key == "voters":
            if dtype.kind not in "iu" or len(shape) != 1 or not 1 <= shape[0] <= MAX_MODELS:
                raise ValueError(f"voters: must be 1 to {MAX_MODELS} row numbers, got {dtype} of shape {shape}")
        elif shape != ():
            raise ValueError(f"{what}: must be one number, got shape {shape}")
        count = int(np.prod(shape, dtype=np.int64))
        data = stream.read(count * dtype.itemsize + 1)  # one byte more tells a longer member
    if len(data) != count * dtype.itemsize:
        raise ValueError(f"{what}: {len(data)} bytes of data for shape {shape}")
    array = np.frombuffer(data, dtype=dtype)
    return array.reshape(shape[::-1]).T if fortran else array.reshape(shape)


def _check_weights_shape(shape: tuple[int, ...], width: int) -> None:
    rows = shape[0] if len(shape) == 2 else 1
    if len(shape) not in (1, 2) or shape[-1] != width or not 1 <= rows <= MAX_MODELS:
        raise ValueError(f"weights must be (models, {width}) with 1 to {MAX_MODELS} models, got {shape}")


def _integer(archive: zipfile.ZipFile, key: str, low: int, high: int) -> int:
    """The whole number stored as ``key`` (``low`` when absent), within [low, high]."""
    if f"{key}.npy" not in archive.namelist():
        return low
    value = _read(archive, key, key)[()]
    if not float(value).is_integer() or not low <= value <= high:
        raise ValueError(f"{key} must be a whole number from {low} to {high}, got {value}")
    return int(value)


def _voters(archive: zipfile.ZipFile, rows: int) -> tuple[int, ...] | None:
    """The rows that vote (None, all, when the file does not say): distinct row numbers of ``rows``."""
    if "voters.npy" not in archive.namelist():
        return None
    voters = _read(archive, "voters", "voters").tolist()
    if len(set(voters)) != len(voters) or not all(0 <= row < rows for row in voters):
        raise ValueError(f"voters must be distinct row numbers from 0 to {rows - 1}, got {voters[:10]}")
    return tuple(voters)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def fit(weights: np.ndarray, models: int) -> np.ndarray:
    """``models`` rows from a saved population: cycled when it holds fewer, the first ones when more."""
    return weights[np.arange(models) % len(weights)]


def fit_voters(voters: tuple[int, ...] | None, models: int) -> tuple[int, ...] | None:
    """The voting rows among the ``models`` rows :func:`fit` keeps (a cycled copy does not vote);
    None (all vote) when the file said none or none of them is kept."""
    kept = tuple(row for row in voters or () if row < models)
    return kept or None


@dataclass(frozen=True)
class Restored:
    """What a swarm started from a file: the generation and how many models the file held."""

    generation: int
    rows: int

    @classmethod
    def of(cls, population: SavedPopulation) -> Restored:
        return cls(population.generation, len(population.weights))


def start_note(path: str | None, restored: Restored | None, models: int, *, fresh: bool = False) -> str:
    """What a swarm of ``models`` started from, in one line: every start says it."""
    if restored is not None:
        fitted = ""
        if restored.rows < models:
            fitted = f" (cycled to {models})"
        elif restored.rows > models:
            fitted = f" (the first {models} used)"
        return f"restored generation {restored.generation}, {restored.rows} models{fitted}, from {path}"
    start = f"{models} models from random weights" + (" (--fresh)" if fresh else "")
    return (
        f"{start} (not saved)"
        if path is None
        else f"{start}; saved to {path} as it learns (each evolution, each new vote)"
    )


def beside_history(db_path: str | None, env_id: str = CARTPOLE.env_id) -> str | None:
    """The population file kept with a run history: ``<db>.population.npz`` for CartPole-v1,
    ``<db>.<env id>.population.npz`` for another environment. None (kept in memory only) for
    ``:memory:``, and for a history that is no regular file (a device, FIFO or folder, which the
    history refuses too): ``/dev/null.population.npz`` is no file to write."""
    path = db_path or default_db_path()
    if path == ":memory:":
        return None
    try:
        refuse_special(path)
    except NotRegularFile:
        return None
    return f"{path}.population.npz" if env_id == CARTPOLE.env_id else f"{path}.{file_part(env_id)}.population.npz"


_PLAIN_ID = re.compile(r"[A-Za-z0-9_.-]{1,80}")


def file_part(env_id: str) -> str:
    """``env_id`` as part of one file name: itself when only letters, digits and ``_ . -`` (every
    shipped one); else those, ``_`` for the rest, and a hash of the id, so that ``ns/Name-v0`` or
    ``module:Name-v0`` names no folder and no two ids share a file, and 80 characters of any
    script stay within a file name's 255 bytes."""
    if _PLAIN_ID.fullmatch(env_id):
        return env_id
    digest = hashlib.sha256(env_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{re.sub(r'[^A-Za-z0-9_.-]', '_', env_id)[:80]}-{digest}"
