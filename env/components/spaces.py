"""Which gymnasium environments we play, and what a network needs to know of one.

Components layer, no sockets: the environment makes its gymnasium environment here; the
swarm sizes its models from :class:`EnvSpaces`; the control room takes its solved line
and axes from it.

We play every environment with a one-dimensional ``Box`` observation and a ``Discrete``
action space (CartPole-v1, Acrobot-v1, MountainCar-v0, LunarLander-v3 with the box2d
extra…); anything else is refused in one line.
"""

from __future__ import annotations

import functools
import os

import gymnasium as gym
from gymnasium.spaces import Box, Discrete

from cartpole_tui.env import defaults
from cartpole_tui.env.events import EnvSpaces

# gymnasium's extras that some environments need, by the module gymnasium could not import.
EXTRAS = {"box2d": "box2d", "Box2D": "box2d", "pygame": "classic-control", "mujoco": "mujoco"}


CARTPOLE = EnvSpaces("CartPole-v1", 4, 2, 475.0, 500)


def make_env(env_id: str, render_mode: str | None = None) -> gym.Env:
    """A gymnasium environment we can play; ValueError (one line) otherwise."""
    if not isinstance(env_id, str) or not 0 < len(env_id) <= defaults.ENV_ID_MAX or not env_id.isprintable():
        raise ValueError(f"an environment id is 1..{defaults.ENV_ID_MAX} printable characters")
    if render_mode is not None:
        quiet_renderer()
    try:
        env = gym.make(env_id, render_mode=render_mode)
    except (gym.error.DependencyNotInstalled, ImportError) as error:
        raise ValueError(_missing(env_id, error)) from None
    except gym.error.Error as error:
        raise ValueError(f"unknown gymnasium environment {env_id!r}: {_one_line(error)}") from None
    problem = _unplayable(env)
    if problem is not None:
        env.close()
        raise ValueError(f"{env_id} {problem}; cartpole-tui plays a Box observation and Discrete actions")
    return env


def quiet_renderer() -> None:
    """Keep gymnasium's renderer (pygame, SDL) off our stdout and stderr: its greeting would
    break ``run``'s JSON and a missing sound device would print over the app's screen."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")


def _unplayable(env: gym.Env) -> str | None:
    obs, actions = env.observation_space, env.action_space
    if not isinstance(actions, Discrete):
        return f"has a {type(actions).__name__} action space"
    if not isinstance(obs, Box):  # a Tuple or Dict has no shape to tell ("of shape None" was noise)
        return f"has a {type(obs).__name__} observation"
    if len(obs.shape) != 1:
        return f"has a Box observation of shape {obs.shape} (one dimension is played)"
    if not 1 <= obs.shape[0] <= defaults.ENV_OBSERVATIONS_MAX or not 2 <= int(actions.n) <= defaults.ENV_ACTIONS_MAX:
        return f"has {obs.shape[0]} observations and {int(actions.n)} actions (beyond our bounds)"
    return None


def _missing(env_id: str, error: BaseException) -> str:
    text = str(error)
    extra = next((extra for module, extra in EXTRAS.items() if module in text), None)
    if extra == "box2d":
        # the README's form too: a checkout installs its extras with -e
        install = "pip install 'cartpole-tui[box2d]' (from a checkout: pip install -e '.[box2d]')"
        return f"{env_id} needs gymnasium's box2d extra: {install}"
    if extra is not None:
        return f"{env_id} needs gymnasium's {extra} extra: pip install 'gymnasium[{extra}]'"
    return f"{env_id} needs a package that is not installed: {_one_line(error)}"


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:200] or type(error).__name__


def spaces(env: gym.Env, env_id: str) -> EnvSpaces:
    """The spaces of an environment :func:`make_env` made."""
    spec = env.spec
    threshold = spec.reward_threshold if spec is not None else None
    steps = spec.max_episode_steps if spec is not None else None
    return EnvSpaces(
        env_id,
        int(env.observation_space.shape[0]),  # type: ignore[index]  # make_env admits 1-D Boxes only
        int(env.action_space.n),  # type: ignore[attr-defined]  # ... and Discrete actions
        None if threshold is None else float(threshold),
        None if steps is None else int(steps),
    )


@functools.lru_cache(maxsize=32)
def spaces_of(env_id: str) -> EnvSpaces:
    """The spaces of ``env_id`` (made once, then closed); ValueError as :func:`make_env`."""
    if env_id == CARTPOLE.env_id:
        return CARTPOLE  # the one every default uses: no gymnasium environment made for it
    env = make_env(env_id)
    try:
        return spaces(env, env_id)
    finally:
        env.close()
