"""The N instances of a vectorised run: stepped together, reset one by one.

Components layer, no sockets: :mod:`.vector_env` steps them.

:class:`GymInstances` steps any gymnasium environment, one ``step()`` each.
:class:`CartPoleInstances` is CartPole-v1 as arrays: gymnasium's equations, constants,
thresholds, reset distribution and per-instance seeding (``seeding.np_random``), one
numpy operation per equation for all instances — a gymnasium step costs ~12 µs, which
at 100 instances was most of a batch step. Both return observations as float32 values
(what gymnasium's CartPole returns) in float64 arrays.
"""

from __future__ import annotations

import math
from typing import Protocol

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding

from cartpole_tui.env.components.spaces import make_env


class Instances(Protocol):
    """What a vectorised run steps: instances ``0..n-1``, reset one by one, stepped together."""

    def reset(self, i: int, seed: int | None = None) -> np.ndarray: ...

    def step(self, indices: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


class GymInstances:
    """``n`` gymnasium environments of ``env_id`` (``first``: one already made, reused)."""

    def __init__(self, env_id: str, n: int, first: gym.Env | None = None):
        self.envs = [first] if first is not None else []
        while len(self.envs) < n:
            self.envs.append(make_env(env_id))

    def reset(self, i: int, seed: int | None = None) -> np.ndarray:
        return np.asarray(self.envs[i].reset(seed=seed)[0], dtype=np.float64)

    def step(self, indices: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(observations (M, d), rewards (M,), dones (M,)) of one step of ``indices``."""
        observations, rewards, dones = [], [], []
        for i, action in zip(indices.tolist(), actions.tolist()):
            obs, reward, terminated, truncated, _ = self.envs[i].step(action)
            observations.append(obs)
            rewards.append(float(reward))
            dones.append(bool(terminated or truncated))
        return np.asarray(observations, dtype=np.float64), np.asarray(rewards), np.asarray(dones, dtype=bool)


class CartPoleInstances:
    """``n`` CartPole-v1 instances as one (n, 4) float64 state array."""

    GRAVITY, MASSPOLE, TOTAL_MASS, LENGTH = 9.8, 0.1, 1.1, 0.5
    POLEMASS_LENGTH, FORCE_MAG, TAU = 0.05, 10.0, 0.02
    THETA_THRESHOLD, X_THRESHOLD = 12 * 2 * math.pi / 360, 2.4

    def __init__(self, n: int, max_steps: int = 500):
        self.state = np.zeros((n, 4))
        self.elapsed = np.zeros(n, dtype=np.int64)
        self.rngs: list[np.random.Generator | None] = [None] * n
        self.max_steps = max_steps

    def reset(self, i: int, seed: int | None = None) -> np.ndarray:
        rng = self.rngs[i]
        if seed is not None or rng is None:  # as gymnasium's Env.reset seeds its np_random
            rng, _ = seeding.np_random(seed)
            self.rngs[i] = rng
        self.state[i] = rng.uniform(low=-0.05, high=0.05, size=(4,))
        self.elapsed[i] = 0
        return self.state[i].astype(np.float32).astype(np.float64)

    def step(self, indices: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(observations (M, 4), rewards (M,), dones (M,)) of one step of ``indices``."""
        idx = np.asarray(indices, dtype=np.intp)
        x, x_dot, theta, theta_dot = self.state[idx].T
        force = np.where(np.asarray(actions) == 1, self.FORCE_MAG, -self.FORCE_MAG)
        costheta, sintheta = np.cos(theta), np.sin(theta)
        temp = (force + self.POLEMASS_LENGTH * np.square(theta_dot) * sintheta) / self.TOTAL_MASS
        thetaacc = (self.GRAVITY * sintheta - costheta * temp) / (
            self.LENGTH * (4.0 / 3.0 - self.MASSPOLE * np.square(costheta) / self.TOTAL_MASS)
        )
        xacc = temp - self.POLEMASS_LENGTH * thetaacc * costheta / self.TOTAL_MASS
        state = np.stack(
            (
                x + self.TAU * x_dot,
                x_dot + self.TAU * xacc,
                theta + self.TAU * theta_dot,
                theta_dot + self.TAU * thetaacc,
            ),
            axis=1,
        )
        self.state[idx] = state
        x, theta = state[:, 0], state[:, 2]
        terminated = (x < -self.X_THRESHOLD) | (x > self.X_THRESHOLD)
        terminated |= (theta < -self.THETA_THRESHOLD) | (theta > self.THETA_THRESHOLD)
        self.elapsed[idx] += 1
        dones = terminated | (self.elapsed[idx] >= self.max_steps)
        return state.astype(np.float32).astype(np.float64), np.ones(len(idx)), dones


def make_instances(env_id: str, n: int, first: gym.Env | None = None) -> Instances:
    """The fast CartPole-v1 arrays for CartPole-v1, gymnasium environments for anything else."""
    if env_id == "CartPole-v1":
        return CartPoleInstances(n)
    return GymInstances(env_id, n, first)
