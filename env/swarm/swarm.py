"""The built-in learning swarm: K numpy models, an aggregation and an evolution.

Top of the swarm layer: the embedded network's child and ``cartpole-tui swarm`` run it.

Each speaks the published RLGym network's messages (PROTOCOL.md), so each can stand
in for its published counterpart: :class:`~cartpole_tui.env.swarm.models.ModelPool`,
:class:`~cartpole_tui.env.swarm.aggregation.Aggregation` and
:class:`~cartpole_tui.env.swarm.evolution.Evolution`. :class:`Swarm` runs all three in
one process; :func:`serve_swarm` is ``cartpole-tui swarm``.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable
from typing import TypeVar

import numpy as np

from cartpole_tui.env import defaults
from cartpole_tui.env.components.spaces import spaces_of
from cartpole_tui.env.events import EnvSpaces
from cartpole_tui.env.swarm import saved
from cartpole_tui.env.swarm.aggregation import Aggregation
from cartpole_tui.env.swarm.client import SwarmComponent
from cartpole_tui.env.swarm.evolution import Evolution
from cartpole_tui.env.swarm.models import ModelPool
from cartpole_tui.env.wire.transport import ConnectionLost

log = logging.getLogger(__name__)

PARTS = ("models", "aggregation", "evolution")
Part = TypeVar("Part", bound=SwarmComponent)


class Swarm:
    """Models, aggregation and evolution in this process (one client and thread each).

    ``load``: a population file (:mod:`~cartpole_tui.env.swarm.saved`) to start from, when it
    exists; ``save``: where the population is written after every evolution and, with the vote of
    the fittest (a whole swarm), whenever that vote changes — so that a swarm started from the file
    plays deterministic runs as this one did. An aggregation run apart (``only``) has no file to keep
    its vote in: every model votes there.
    """

    def __init__(
        self,
        host: str,
        port: int,
        models: int = defaults.MODELS,
        seed: int | None = None,
        *,
        on_disconnect: Callable[[str], None] | None = None,
        load: str | None = None,
        save: str | None = None,
        only: str | None = None,
        env_id: str = defaults.ENV_ID,
    ):
        self.spaces = spaces = spaces_of(env_id)  # ValueError (one line) for an environment we cannot play
        if only not in (None, *PARTS):
            raise ValueError(f"--only must be one of {', '.join(PARTS)}, got {only!r}")
        if save is not None and only not in (None, "evolution"):
            raise ValueError("--save writes what our evolution makes: not with --only models or aggregation")
        if not 1 <= models <= defaults.MODELS_MAX:
            raise ValueError(f"models must be 1..{defaults.MODELS_MAX}, got {models}")
        if seed is not None and not 0 <= seed <= defaults.SEED_MAX:
            raise ValueError(f"seed must be 0..{defaults.SEED_MAX}, got {seed}")
        seeds: list[int | None] = [None] * 3
        if seed is not None:
            seeds = [int(s) for s in np.random.SeedSequence(seed).generate_state(3)]
        # the files are read before anything connects: a bad one is said alone, the network untouched
        population = _population_to_load(load, save, spaces)
        self.components: list[SwarmComponent] = []
        self.evolution: Evolution | None = None
        self.aggregation: Aggregation | None = None
        self.models: ModelPool | None = None
        self._saving = threading.Lock()  # the evolution's and the aggregation's threads write the file
        wanted = PARTS if only is None else (only,)  # one part beside published ones: a mixed network
        try:
            if "evolution" in wanted:
                self.evolution = self._add(
                    Evolution(host, port, models=models, seed=seeds[2], on_disconnect=on_disconnect, spaces=spaces)
                )
            if "aggregation" in wanted:
                fittest = defaults.VOTERS if only is None else None
                self.aggregation = self._add(
                    Aggregation(
                        host,
                        port,
                        models=models,
                        seed=seeds[1],
                        fittest=fittest,
                        on_disconnect=on_disconnect,
                        spaces=spaces,
                        fed="models" in wanted,  # by the pool beside it: Aggregation.act
                    )
                )
            if "models" in wanted:
                self.models = self._add(
                    ModelPool(
                        host,
                        port,
                        models=models,
                        seed=seeds[0],
                        on_disconnect=on_disconnect,
                        spaces=spaces,
                        aggregation=self.aggregation,
                    )
                )
        except Exception:
            self.close()
            raise
        self.seed = seed
        self.restored: saved.Restored | None = None
        if population is not None:
            self.restored = saved.Restored.of(population)
            if self.models is not None:
                self.models.population.weights[...] = saved.fit(population.weights, models)
            if self.evolution is not None:
                self.evolution.generations = population.generation
            voters = saved.fit_voters(population.voters, models)
            if self.models is not None and self.aggregation is not None and voters is not None:
                self.aggregation.logic.voters = frozenset(self.models.ids[row] for row in voters)
        if self.evolution is not None and save is not None:
            self.evolution.on_generation = functools.partial(self._save, save)
            if self.models is not None and self.aggregation is not None:
                self.aggregation.logic.on_voters = functools.partial(self._save_vote, save)

    def _save(self, path: str, population: np.ndarray, generation: int, voters: tuple[int, ...] | None = None) -> None:
        try:
            with self._saving:
                saved.save(path, saved.SavedPopulation(population, generation, self.seed, self.spaces, voters))
        except OSError as error:  # a full disk must not stop the swarm: said in its log
            log.warning("swarm: population not saved to %s: %s", path, error)

    def _save_vote(self, path: str, voters: frozenset[str] | None) -> None:
        """The population as the models hold it, with the rows that vote (None: all)."""
        assert self.models is not None and self.evolution is not None
        rows = None if voters is None else tuple(k for k, i in enumerate(self.models.ids) if i in voters)
        self._save(path, self.models.rows(), self.evolution.generations, rows or None)

    def _add(self, component: Part) -> Part:
        self.components.append(component)
        return component

    def start(self) -> Swarm:
        for component in self.components:
            component.start()
        return self

    def close(self) -> None:
        for component in reversed(self.components):
            component.close()


def _population_to_load(load: str | None, save: str | None, spaces: EnvSpaces) -> saved.SavedPopulation | None:
    """The population ``load`` holds (None without the file); ValueError (one line) for a bad
    file, or for ``save`` holding another game's population (not written over unasked)."""
    if save is not None and save != load and os.path.exists(save):
        try:
            saved.load(save, spaces)
        except saved.WrongSpaces as error:
            raise ValueError(f"{error}: --save would write over it (give another file, or move it aside)") from None
        except ValueError:
            pass  # not a population file of ours: written over, as before
    if load is not None and os.path.exists(load):
        return saved.load(load, spaces)
    return None


def serve_swarm(
    host: str,
    port: int,
    models: int = defaults.MODELS,
    seed: int | None = None,
    *,
    load: str | None = None,
    save: str | None = None,
    only: str | None = None,
    say: Callable[[str], None] | None = None,
    env_id: str = defaults.ENV_ID,
) -> None:
    """Run the swarm until Ctrl-C or until the broker goes away (then ConnectionLost); ``say``
    is told what the population started from."""
    lost: list[str] = []
    gone = threading.Event()

    def on_disconnect(reason: str) -> None:
        lost.append(reason)
        gone.set()

    swarm = Swarm(
        host, port, models, seed, on_disconnect=on_disconnect, load=load, save=save, only=only, env_id=env_id
    ).start()
    try:
        swarm.components[0].client.check_broker()  # NotABroker: an address that is no broker is said so
        if say is not None and only in (None, "models"):
            say(saved.start_note(load if swarm.restored else save, swarm.restored, models))
        while not gone.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        swarm.close()
    if lost:
        raise ConnectionLost(lost[0])
