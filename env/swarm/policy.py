"""A population of K actor-critic MLPs in batched numpy arrays.

Swarm layer, pure numpy: :mod:`.models` and :mod:`.batching` compute with it, :mod:`.saved`
checks files against its size.

Each model has the published RLGym model's shape — policy and value nets 4→16→16
(tanh), an action head 16→2 and a value head 16→1, 755 weights — for CartPole-v1; for
another environment the same layout from its observation size to its actions (Acrobot-v1:
6→16→16→3, 838 weights). Its weights live in one row of a (K, weights) array in the published flat order (torch's
``parameters()`` order: policy_net, value_net, action_net, value head; each layer's
weight (out × in) then bias). Every layer is a (K, …) view into that array, so a
forward pass for all K models is one 3-D matmul per layer, and a row is exactly the
vector the evolution GETs and SETs.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

OBS_SIZE = 4  # CartPole-v1's: the published model's
HIDDEN = 16
N_ACTIONS = 2


def layout(observations: int = OBS_SIZE, actions: int = N_ACTIONS) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """(name, shape) of each layer, in the published flat order, for an environment's spaces."""
    return (
        ("pi_w0", (HIDDEN, observations)),
        ("pi_b0", (HIDDEN,)),
        ("pi_w1", (HIDDEN, HIDDEN)),
        ("pi_b1", (HIDDEN,)),
        ("vf_w0", (HIDDEN, observations)),
        ("vf_b0", (HIDDEN,)),
        ("vf_w1", (HIDDEN, HIDDEN)),
        ("vf_b1", (HIDDEN,)),
        ("act_w", (actions, HIDDEN)),
        ("act_b", (actions,)),
        ("val_w", (1, HIDDEN)),
        ("val_b", (1,)),
    )


def n_weights(observations: int = OBS_SIZE, actions: int = N_ACTIONS) -> int:
    """Weights of one model for an environment's spaces (755 for CartPole-v1's 4 → 2)."""
    return sum(int(np.prod(shape)) for _, shape in layout(observations, actions))


def slices(observations: int = OBS_SIZE, actions: int = N_ACTIONS) -> dict[str, slice]:
    out, start = {}, 0
    for name, shape in layout(observations, actions):
        size = int(np.prod(shape))
        out[name] = slice(start, start + size)
        start += size
    return out


LAYOUT = layout()
N_WEIGHTS = n_weights()  # 755: the published CartPole model's
SLICES = slices()
FORWARD = ("pi_w0", "pi_b0", "pi_w1", "pi_b1", "act_w", "act_b")  # the layers an action's logits take


def biases(observations: int = OBS_SIZE, actions: int = N_ACTIONS) -> np.ndarray:
    """A row's bias weights, as a bool mask. Our models' stay 0: without biases a model's logits are
    an odd function of the observation (logits(−s) = −logits(s)), the mirror symmetry CartPole's
    controllers have; random biases mostly pushed one way whatever the pole did (10-step episodes),
    and mutated ones cost rounds (python -m bench.learn: :mod:`.genetic`'s docstring)."""
    mask, where = np.zeros(n_weights(observations, actions), dtype=bool), slices(observations, actions)
    for name, _ in layout(observations, actions)[1::2]:  # each layer's weight, then its bias
        mask[where[name]] = True
    return mask


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, stable for large logits."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


class Population:
    """K policy models as one (K, weights) float64 array with per-layer views.

    ``Population(k, seed)`` initialises each weight like torch's ``nn.Linear`` (uniform in
    ±1/sqrt(fan_in)) and each bias to 0, which the evolution leaves so (:func:`biases`);
    ``weights`` is the (K, 755) array itself (CartPole's spaces;
    ``observations`` and ``actions`` size the first layers and the action head for
    another environment's), so writing a row changes that model.
    """

    def __init__(self, k: int, seed: int | None = None, observations: int = OBS_SIZE, actions: int = N_ACTIONS):
        if k < 1:
            raise ValueError(f"a population needs at least one model, got {k}")
        self.k = k
        self.observations, self.actions = observations, actions
        self.n_weights = n_weights(observations, actions)
        self.weights = np.empty((k, self.n_weights))
        shapes = layout(observations, actions)
        where = slices(observations, actions)
        self.layers = {name: self.weights[:, where[name]].reshape(k, *shape) for name, shape in shapes}
        rng = np.random.default_rng(seed)
        for (weight, (_, fan_in)), (bias, _) in zip(shapes[0::2], shapes[1::2]):
            bound = 1.0 / np.sqrt(fan_in)
            self.layers[weight][...] = rng.uniform(-bound, bound, size=self.layers[weight].shape)
            self.layers[bias][...] = 0.0

    def set_model(self, index: int, weights: npt.ArrayLike) -> None:
        """Load one model's flat weight vector (published order); ValueError on a bad length."""
        vector = np.asarray(weights, dtype=np.float64)
        if vector.shape != (self.n_weights,):
            raise ValueError(f"a model has {self.n_weights} weights, got shape {vector.shape}")
        if not np.all(np.isfinite(vector)):
            raise ValueError("weights must be finite numbers")
        self.weights[index] = vector

    def logits(self, obs: npt.ArrayLike) -> np.ndarray:
        """Action logits (K, actions) of every model for one observation (obs,) or one per model (K, obs)."""
        obs = np.asarray(obs, dtype=np.float64)
        L = self.layers
        if obs.ndim == 1:
            h = np.tanh(L["pi_w0"] @ obs + L["pi_b0"])
        else:
            h = np.tanh(np.matmul(L["pi_w0"], obs[:, :, None])[:, :, 0] + L["pi_b0"])
        h = np.tanh(np.matmul(L["pi_w1"], h[:, :, None])[:, :, 0] + L["pi_b1"])
        return np.matmul(L["act_w"], h[:, :, None])[:, :, 0] + L["act_b"]

    def batch_logits(self, obs: npt.ArrayLike) -> np.ndarray:
        """Action logits (K, M, actions) of every model for each of M observations (M, obs), in
        float32: what travels (batch.LOGIT), and tanh over K × M × 16 is most of a batch step's work
        at 1,000 instances (float32: ~4x faster than float64 here)."""
        return self._forward(np.asarray(obs, dtype=np.float32), self._float32())

    def player_logits(self, obs: npt.ArrayLike, players: np.ndarray) -> np.ndarray:
        """Action logits (M, actions), float32, of each of M observations (M, obs) by its player
        only (``players``: M model indices): in training one model plays each instance, so the
        other K - 1 models' logits (:meth:`batch_logits`) were work thrown away."""
        order = np.argsort(players, kind="stable")
        ordered = np.asarray(obs, dtype=np.float32)[order]  # each model's instances one slice
        played = np.empty((len(ordered), self.actions), dtype=np.float32)
        layers = self._float32()
        ends = np.cumsum(np.bincount(players, minlength=self.k)).tolist()
        start = 0
        for k, end in enumerate(ends):  # one small forward pass per model, on its instances
            if end > start:
                played[start:end] = self._forward(
                    ordered[start:end], tuple(None if layer is None else layer[k] for layer in layers)
                )
            start = end
        out = np.empty_like(played)
        out[order] = played
        return out

    def _float32(self) -> tuple[np.ndarray | None, ...]:
        """The policy net's and action head's layers in :data:`FORWARD` order as float32: weights
        contiguous (K, in, out) (matmul on the strided views is ~3x slower), biases (K, 1, out), or
        None when every model's are 0 (ours are: :func:`biases`; adding them was a third of the
        ops of a training step's 20 small forward passes)."""
        return tuple(
            np.ascontiguousarray(self.layers[name].transpose(0, 2, 1), dtype=np.float32)
            if "_w" in name
            else (self.layers[name][:, None, :].astype(np.float32) if self.layers[name].any() else None)
            for name in FORWARD
        )

    @staticmethod
    def _forward(obs: np.ndarray, layers: tuple[np.ndarray | None, ...]) -> np.ndarray:
        """The policy net and action head on float32 observations (…, M, obs): :meth:`_float32`'s
        layers, or one model's of them (a bias None: none)."""
        h = obs
        for depth, (weight, bias) in enumerate(zip(layers[0::2], layers[1::2])):
            assert weight is not None  # only a bias may be left out
            h = h @ weight
            if bias is not None:
                h += bias
            if depth < len(layers) // 2 - 1:  # the action head is linear
                np.tanh(h, out=h)
        return h
