"""Doubles of the published RLGym components, as plain swergio 0.0.2 ``Client``s.

numpy stands in for torch/SB3/deap; every behaviour PROTOCOL.md lists under "What the
published components really do" is kept, quirks included:

- model: one client named ``model`` per model, ``COMPONENT_ID`` a uuid4 hex; LOGITS echo
  the observation's DETERMINISTIC; "online training" every 5 steps (counted, weights
  untouched) turned off by GET and on by SET; SET reads ``WEIGHTS[COMPONENT_ID]`` and
  raises KeyError when its id is missing (which, as in swergio, ends its listener).
- aggregation: latest LOGITS per COMPONENT_ID; at exactly 20 distinct ids one ACTION
  (argmax when the *last* LOGITS said DETERMINISTIC), ROOT_ID copied from the last
  LOGITS by swergio; GET answers CONTRIBUTION and clears it.
- evolution: EVOLUTION → GET; stores WEIGHTS and CONTRIBUTION and never clears them, so
  after the first evolution every WEIGHTS/CONTRIBUTION evolves again; it evolves only when it
  holds *exactly* 20 of each (``==`` in 05_evolutionary.py): after a model restarts it holds
  21 ids and never sends EVO_DONE again (:meth:`PublishedNetwork.restart_model`); EVO_DONE
  carries a fresh random ROOT_ID and ID and goes out before the SET; SET is a dict keyed by
  COMPONENT_ID (a restarted model's id is missing from a SET of the old ids: KeyError).
- environment: the seed's 04_gym_env.py on gymnasium: ENV_DONE without RUN_ID (random
  ROOT_ID), and the observation of the step that ended the run still goes out after it; it
  knows no STOP (a control message without NR_OF_EPISODE is ignored).
- a killed model (``client.close()``) leaves its LOGITS of the step in the aggregation, which
  then never has 20 again: the run stalls.

Transport timing is not reproduced: the doubles set TCP_NODELAY so that a test is not
slowed to the published 10-30 steps/s by Nagle's algorithm. What the real network's timing
does to the protocol can be asked for: ``PublishedNetwork(stagger=s)`` makes model i take
i·s seconds to answer, as 20 torch processes on a few cores do (seen with
``network.sh``: the LOGITS of one observation arrive over ~0.1-0.3 s, and a model's LOGITS
for the next observation before a slower one's for the last). An observation sent before
the last one's ACTION then mixes the two in the aggregation: one ACTION, named after the
old observation, and the new observation is never answered.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid

import gymnasium as gym
import numpy as np
from swergio import MESSAGE_TYPE, Client, Trigger

from cartpole_tui.env.swarm.policy import N_WEIGHTS, Population, softmax

NR_OF_MODELS = 20  # hard-coded in the published aggregation and evolution
CUSTOM = MESSAGE_TYPE.DATA.CUSTOM
HOST = "127.0.0.1"


class PublishedClient(Client):
    """swergio.Client as shipped, plus TCP_NODELAY (see the module's note)."""

    def connect(self, server, port):
        sock = super().connect(server, port)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock


def _listen(client: Client) -> threading.Thread:
    """swergio's listen() in a thread; a handler's exception ends it, as in the published
    scripts, and is kept as ``client.died``."""
    client.died = None

    def run():
        try:
            client.listen()
        except OSError:  # swergio's close-on-EOF writes to a closed socket
            pass
        except Exception as error:
            client.died = error

    thread = threading.Thread(target=run, daemon=True, name=f"published-{client.name}")
    thread.start()
    return thread


class PublishedModel:
    """02_model.py: one model, one client named ``model``."""

    def __init__(self, port: int, seed: int | None = None, host: str = HOST, answer_delay: float = 0.0):
        self.component_id = uuid.uuid4().hex
        self.answer_delay = answer_delay  # s the forward pass takes (torch on a busy core)
        self.population = Population(1, seed)
        self.training = True
        self.steps = 0
        self.trainings = 0
        self.sets = 0
        self.hung = False  # its forward pass never returns (see hang)
        self.client = PublishedClient("model", host, port)
        self.client.add_eventHandler(
            self.forward, CUSTOM, responseRooms="logits", trigger=Trigger(CUSTOM, "observation")
        )
        self.client.add_eventHandler(
            self.evolution, CUSTOM, responseRooms="evolution", trigger=Trigger(CUSTOM, "evolution")
        )
        self.thread = _listen(self.client)

    def hang(self) -> None:
        """Stop answering observations, connected (a forward pass stuck). On swergio.Server a
        killed model is not the same test: the server's relay to its dead socket raises in the
        thread of whichever client it was relaying, and that client's connection is closed too
        (seen under load: the control room's)."""
        self.hung = True

    def forward(self, msg):
        if self.hung:
            return None  # swergio sends nothing for None
        if "REWARD" in msg and self.training:
            self.steps += 1
            if self.steps % 5 == 0:
                self.trainings += 1
        if self.answer_delay:
            time.sleep(self.answer_delay)  # the model's compute time, not a synchronisation
        logits = self.population.logits(np.asarray(msg["OBSERVATION"], dtype=float))[0]
        return {"LOGITS": logits.tolist(), "COMPONENT_ID": self.component_id, "DETERMINISTIC": msg["DETERMINISTIC"]}

    def evolution(self, msg):
        if msg.get("CMD") == "GET":
            self.training = False
            return {"WEIGHTS": self.population.weights[0].tolist(), "COMPONENT_ID": self.component_id}
        if msg.get("CMD") == "SET":
            self.population.set_model(0, msg["WEIGHTS"][self.component_id])  # KeyError when missing
            self.sets += 1
            self.training = True
        return None


class PublishedAggregation:
    """03_aggregation.py."""

    def __init__(self, port: int, seed: int | None = None, host: str = HOST):
        self.rng = np.random.default_rng(seed)
        self.logits: dict[str, list[float]] = {}
        self.contribution: dict[str, float] = {}
        self.actions = 0
        self.client = PublishedClient("aggregation", host, port)
        self.client.add_eventHandler(self.aggregate, CUSTOM, responseRooms="action", trigger=Trigger(CUSTOM, "logits"))
        self.client.add_eventHandler(
            self.evolution, CUSTOM, responseRooms="evolution", trigger=Trigger(CUSTOM, "evolution")
        )
        self.thread = _listen(self.client)

    def aggregate(self, msg):
        self.logits[msg["COMPONENT_ID"]] = msg["LOGITS"]
        if len(self.logits) != NR_OF_MODELS:
            return None
        ids = list(self.logits)
        probs = softmax(np.asarray([self.logits[i] for i in ids], dtype=float))
        summed = probs.sum(axis=0)
        if msg["DETERMINISTIC"]:  # the last LOGITS received decides
            action = int(np.argmax(summed))
        else:
            action = int(self.rng.choice(len(summed), p=summed / summed.sum()))
        for i, model_id in enumerate(ids):
            self.contribution[model_id] = self.contribution.get(model_id, 0.0) + float(
                probs[i, action] / summed[action]
            )
        self.logits = {}
        self.actions += 1
        return {"ACTION": [action]}

    def evolution(self, msg):
        if msg.get("CMD") != "GET":
            return None
        contribution, self.contribution = self.contribution, {}
        return {"CONTRIBUTION": contribution}


class PublishedEvolution:
    """05_evolutionary.py: memory never cleared; EVO_DONE with a random ROOT_ID."""

    def __init__(self, port: int, seed: int | None = None, host: str = HOST):
        self.rng = np.random.default_rng(seed)
        self.weights: dict[str, list[float]] = {}
        self.contribution: dict[str, float] = {}
        self.evolutions = 0
        self.history: list[tuple[str, str]] = []  # ("request", its ROOT_ID) and ("done", EVO_DONE's ROOT_ID)
        self.client = PublishedClient("evolution", host, port)
        self.client.add_eventHandler(
            self.request, CUSTOM, responseRooms="evolution", trigger=Trigger(CUSTOM, "control")
        )
        self.client.add_eventHandler(
            self.collect, CUSTOM, responseRooms="evolution", trigger=Trigger(CUSTOM, "evolution")
        )
        self.thread = _listen(self.client)

    def request(self, msg):
        if not msg.get("EVOLUTION"):
            return None
        self.history.append(("request", msg.get("ROOT_ID")))
        return {"CMD": "GET"}

    def collect(self, msg):
        if "WEIGHTS" in msg and "COMPONENT_ID" in msg:
            self.weights[msg["COMPONENT_ID"]] = msg["WEIGHTS"]
        elif "CONTRIBUTION" in msg:
            self.contribution.update(msg["CONTRIBUTION"])
        else:
            return None
        if len(self.weights) != NR_OF_MODELS or len(self.contribution) != NR_OF_MODELS:
            return None  # exactly 20: a 21st id (a restarted model) stops every evolution
        new = self.evolve()
        self.evolutions += 1
        root = uuid.uuid4().hex
        self.history.append(("done", root))
        self.client.send(
            {"ROOT_ID": root, "ID": uuid.uuid4().hex, "TYPE": CUSTOM.id, "STATUS": "EVO_DONE", "TO_ROOM": "control"}
        )
        return {"CMD": "SET", "WEIGHTS": new}

    def evolve(self) -> dict[str, list[float]]:
        """Tournament 3, two-point crossover 0.5, Gaussian mutation σ 1 on 1 % of genes."""
        ids = list(self.weights)
        genes = np.asarray([self.weights[i] for i in ids], dtype=float)
        fitness = np.asarray([self.contribution.get(i, 0.0) for i in ids])
        picks = [max(self.rng.choice(len(ids), 3), key=lambda j: fitness[j]) for _ in ids]
        children = genes[picks].copy()
        for a in range(0, len(children) - 1, 2):
            if self.rng.random() < 0.5:
                lo, hi = sorted(self.rng.choice(N_WEIGHTS, 2, replace=False))
                children[[a, a + 1], lo:hi] = children[[a + 1, a], lo:hi]
        mask = self.rng.random(children.shape) < 0.01
        children[mask] += self.rng.normal(0.0, 1.0, mask.sum())
        return {model_id: children[i].tolist() for i, model_id in enumerate(ids)}


class PublishedEnvironment:
    """04_gym_env.py (the seed) on gymnasium."""

    def __init__(self, port: int, seed: int | None = None, host: str = HOST):
        self.env = gym.make("CartPole-v1")
        self.env.reset(seed=seed)
        self.episodes_counter = 0
        self.run_episodes = 0
        self.score = 0.0  # not reset by a start, as in the seed
        self.totalscore = 0.0
        self.deterministic = False
        self.observations = 0
        self.client = PublishedClient("environment", host, port)
        self.client.add_eventHandler(
            self.start, CUSTOM, responseRooms="observation", trigger=Trigger(CUSTOM, "control")
        )
        self.client.add_eventHandler(
            self.next_observation, CUSTOM, responseRooms="observation", trigger=Trigger(CUSTOM, "action")
        )
        self.thread = _listen(self.client)

    def start(self, msg):
        if "NR_OF_EPISODE" not in msg:
            return None
        self.run_episodes = msg["NR_OF_EPISODE"]
        self.episodes_counter = 0
        self.totalscore = 0.0
        self.deterministic = msg["DETERMINISTIC"]
        obs, _ = self.env.reset()
        self.observations += 1
        return {"OBSERVATION": obs.tolist(), "DETERMINISTIC": self.deterministic}

    def next_observation(self, msg):
        if self.episodes_counter >= self.run_episodes:
            return None
        action = msg["ACTION"]
        obs, reward, terminated, truncated, _ = self.env.step(action[0])
        done = bool(terminated or truncated)
        self.score += reward
        if done:
            self.episodes_counter += 1
            obs, _ = self.env.reset()
            self.totalscore += self.score
            self.score = 0.0
            if self.episodes_counter == self.run_episodes:
                self.client.send(
                    {
                        "ROOT_ID": uuid.uuid4().hex,
                        "ID": uuid.uuid4().hex,
                        "TYPE": CUSTOM.id,
                        "STATUS": "ENV_DONE",
                        "AVG_SCORE": self.totalscore / self.run_episodes,
                        "TO_ROOM": "control",
                    }
                )
        self.observations += 1
        return {
            "OBSERVATION": obs.tolist(),
            "REWARD": float(reward),
            "DONE": done,
            "DETERMINISTIC": self.deterministic,
            "ACTION": msg["ACTION"],
        }


class PublishedNetwork:
    """The published models (20), aggregation and evolution — and the environment if asked;
    ``stagger``: model i answers i·stagger s late (see the module's note)."""

    def __init__(
        self,
        port: int,
        *,
        models: int = NR_OF_MODELS,
        aggregation: bool = True,
        evolution: bool = True,
        environment: bool = False,
        seed: int = 0,
        stagger: float = 0.0,
    ):
        self.port, self.stagger = port, stagger
        self.models = [PublishedModel(port, seed + i, answer_delay=i * stagger) for i in range(models)]
        self.aggregation = PublishedAggregation(port, seed) if aggregation else None
        self.evolution = PublishedEvolution(port, seed) if evolution else None
        self.environment = PublishedEnvironment(port, seed) if environment else None

    def restart_model(self, index: int) -> PublishedModel:
        """Kill model ``index`` and start it again, as `python 02_model.py` does: a new COMPONENT_ID."""
        old = self.models[index]
        old.client.close()
        self.models[index] = PublishedModel(self.port, 1000 + index, answer_delay=old.answer_delay)
        return self.models[index]

    @property
    def clients(self) -> list[Client]:
        parts = [*self.models, self.aggregation, self.evolution, self.environment]
        return [part.client for part in parts if part is not None]

    def close(self) -> None:
        for client in self.clients:
            try:
                client.close()
            except OSError:
                pass


assert N_WEIGHTS == 755
