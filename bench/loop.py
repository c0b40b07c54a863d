"""Steps/s of one CartPole environment + agent loop over four transports, side by side.

    python -m bench.loop [--steps N] [--rounds R] [--swergio-seconds S]

(a) one process, no sockets; (b) two processes, a direct socket with our framing;
(c) three processes: our Broker, and our Component on both sides; (d) the same through
swergio 0.0.2's Server and Client as shipped (slow, so bounded by time); (e) (c) with the
broker's TCP_QUICKACK off, to show what it costs on this loop. The environment
(gymnasium CartPole-v1, reset when an episode ends) and the agent (a noisy hand-written
policy) are the same code in every set-up. (a)-(c) and (e) run in interleaved rounds and the best
round of each counts. Loopback only; every run is bounded in steps and time; a line per
run is printed as it goes, then a table and the ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import queue
import random
import socket
import sys
import threading
import time

import gymnasium
import swergio
from swergio import MESSAGE_TYPE, Trigger

from cartpole_tui.env import defaults
from cartpole_tui.env.wire import broker as broker_module
from cartpole_tui.env.wire import protocol
from cartpole_tui.env.wire.broker import Broker
from cartpole_tui.env.wire.transport import Component

HOST = defaults.LOOPBACK
SETUP_TIMEOUT = 120.0  # seconds; a set-up that takes longer is reported as timed out
READY = "READY"


# --- the loop's two halves, the same in every set-up ------------------------------------------


class CartPole:
    """CartPole-v1 speaking the network's observation payloads; resets when an episode ends."""

    def __init__(self, seed: int = 0):
        self.env = gymnasium.make("CartPole-v1")
        self.seed = seed

    def first(self) -> dict:
        obs, _ = self.env.reset(seed=self.seed)
        return protocol.observation(obs, deterministic=False)

    def step(self, message: dict) -> dict:
        action = message["ACTION"]
        obs, reward, terminated, truncated, _ = self.env.step(action[0])
        done = terminated or truncated
        if done:
            obs, _ = self.env.reset()
        return protocol.observation(obs, False, reward=reward, done=done, action=action)


class Agent:
    """Leans the cart under the pole, with a random action one step in five."""

    def __init__(self, seed: int = 1):
        self.rng = random.Random(seed)

    def act(self, message: dict) -> dict:
        _, _, angle, velocity = message["OBSERVATION"]
        action = self.rng.randrange(2) if self.rng.random() < 0.2 else int(angle + 0.5 * velocity > 0)
        return {"ACTION": [action]}


class EnvironmentSide:
    """The environment as an event handler: answers each ACTION with the next observation.

    The agent's READY message starts the clock; the run ends after ``steps`` steps or
    ``seconds``, whichever comes first.
    """

    def __init__(self, steps: int, seconds: float):
        self.cartpole = CartPole()
        self.steps, self.seconds = steps, seconds
        self.count = 0
        self.started = self.elapsed = 0.0
        self.finished = threading.Event()

    def on_action(self, message: dict) -> dict | None:
        if message.get(READY):
            self.started = time.perf_counter()
            return self.cartpole.first()
        if self.finished.is_set():
            return None
        reply = self.cartpole.step(message)
        self.count += 1
        self.elapsed = time.perf_counter() - self.started
        if self.count >= self.steps or self.elapsed >= self.seconds:
            self.finished.set()
            return None
        return reply


# --- (a) one process -------------------------------------------------------------------------


def run_in_process(steps: int) -> tuple[int, float]:
    cartpole, agent = CartPole(), Agent()
    started = time.perf_counter()
    observation = cartpole.first()
    for _ in range(steps):
        observation = cartpole.step(agent.act(observation))
    return steps, time.perf_counter() - started


# --- (b) a direct socket ------------------------------------------------------------------------


def _read_frame(reader) -> dict | None:
    header = reader.read(protocol.HEADER_LENGTH)
    if not header:
        return None
    return protocol.decode_body(reader.read(protocol.parse_header(header)))


def _nodelay(sock: socket.socket) -> socket.socket:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def direct_environment(steps: int, ports: mp.Queue, results: mp.Queue) -> None:
    with socket.create_server((HOST, 0)) as listener:
        ports.put(listener.getsockname()[1])
        conn, _ = listener.accept()
    cartpole = CartPole()
    with _nodelay(conn), conn.makefile("rb") as reader:
        started = time.perf_counter()
        observation = cartpole.first()
        for _ in range(steps):
            conn.sendall(protocol.encode_frame(protocol.custom(protocol.OBSERVATION, **observation)))
            observation = cartpole.step(_read_frame(reader))
        results.put((steps, time.perf_counter() - started))


def direct_agent(port: int) -> None:
    agent = Agent()
    with _nodelay(socket.create_connection((HOST, port))) as conn, conn.makefile("rb") as reader:
        while (observation := _read_frame(reader)) is not None:
            conn.sendall(protocol.encode_frame(protocol.custom(protocol.ACTION, **agent.act(observation))))


# --- (c) and (d): a broker and two swergio-style clients ----------------------------------------


def our_broker(ports: mp.Queue, stop: mp.Event, quickack: bool = True) -> None:
    if not quickack:
        broker_module._QUICKACK = None  # the broker as it was before quick ACKs (set e)
    broker = Broker(HOST, 0).start()
    ports.put(broker.port)
    stop.wait(SETUP_TIMEOUT)
    broker.stop()


def swergio_server(ports: mp.Queue, stop: mp.Event) -> None:
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the process's life: it prints a line per message
    threading.excepthook = lambda args: None  # its client threads die with a traceback when a client leaves
    server = swergio.Server(HOST, 0, protocol.FORMAT, protocol.HEADER_LENGTH)
    server.server.listen()  # start() listens again; this lets us publish the port first
    ports.put(server.server.getsockname()[1])
    threading.Thread(target=server.start, daemon=True).start()
    stop.wait(SETUP_TIMEOUT)
    os._exit(0)  # its per-client threads are not daemons


def _client(kind: str, name: str, port: int):
    if kind == "ours":
        component = Component(name, HOST, port)
        return component, component.start
    client = swergio.Client(name, HOST, port, protocol.FORMAT, protocol.HEADER_LENGTH)

    def listen():
        with contextlib.suppress(OSError):  # its close() after EOF may hit the dead socket
            client.listen()

    return client, lambda: threading.Thread(target=listen, daemon=True).start()


def _answer(client, function, heard_in: str, answer_in: str) -> None:
    """``function`` answers each DATA/CUSTOM message in room ``heard_in`` in room ``answer_in``."""
    custom = MESSAGE_TYPE.DATA.CUSTOM
    client.add_eventHandler(function, custom, responseRooms=answer_in, trigger=Trigger(custom, heard_in))


def client_environment(kind: str, port: int, steps: int, seconds: float, results: mp.Queue) -> None:
    """Puts READY on ``results`` once joined, then (steps, seconds) when the run is over."""
    side = EnvironmentSide(steps, seconds)
    client, start = _client(kind, "environment", port)
    _answer(client, side.on_action, protocol.ACTION, protocol.OBSERVATION)
    start()
    results.put(READY)
    side.finished.wait(SETUP_TIMEOUT)
    results.put((side.count, side.elapsed))
    with contextlib.suppress(OSError):
        client.close()


def client_agent(kind: str, port: int, stop: mp.Event) -> None:
    agent = Agent()
    client, start = _client(kind, "agent", port)
    _answer(client, agent.act, protocol.OBSERVATION, protocol.ACTION)
    start()
    # Sent after our joins on the same connection, so the first observation finds us joined.
    client.send({"ID": protocol.new_id(), "TYPE": protocol.CUSTOM, "TO_ROOM": protocol.ACTION, READY: True})
    stop.wait(SETUP_TIMEOUT)
    with contextlib.suppress(OSError):
        client.close()


# --- running the set-ups --------------------------------------------------------------------------


class Processes:
    """Child processes of one set-up; all of them are ended when the set-up is over."""

    def __init__(self, context):
        self.context = context
        self.children: list[mp.Process] = []

    def start(self, target, *args) -> None:
        child = self.context.Process(target=target, args=args, daemon=True)
        child.start()
        self.children.append(child)

    def get(self, channel: mp.Queue, timeout: float):
        """The next item a child puts on ``channel``; RuntimeError at once if a child dies first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                return channel.get(timeout=0.2)
            for child in self.children:
                if child.exitcode not in (None, 0):
                    raise RuntimeError(f"{child.name} failed (exit code {child.exitcode})")
        raise TimeoutError(f"no result within {timeout:g} s")

    def end(self) -> None:
        for child in self.children:
            child.join(2)
            if child.is_alive():
                child.terminate()
                child.join(2)


def run_direct(context, steps: int) -> tuple[int, float]:
    ports, results, children = context.Queue(), context.Queue(), Processes(context)
    try:
        children.start(direct_environment, steps, ports, results)
        children.start(direct_agent, children.get(ports, SETUP_TIMEOUT))
        return children.get(results, SETUP_TIMEOUT)
    finally:
        children.end()


def run_brokered(context, kind: str, steps: int, seconds: float, quickack: bool = True) -> tuple[int, float]:
    ports, results = context.Queue(), context.Queue()
    server, clients = Processes(context), Processes(context)
    stop_server, stop_clients = context.Event(), context.Event()
    try:
        if kind == "ours":
            server.start(our_broker, ports, stop_server, quickack)
        else:
            server.start(swergio_server, ports, stop_server)
        port = server.get(ports, SETUP_TIMEOUT)
        clients.start(client_environment, kind, port, steps, seconds, results)
        clients.get(results, SETUP_TIMEOUT)  # the environment has joined its rooms
        clients.start(client_agent, kind, port, stop_clients)
        return clients.get(results, SETUP_TIMEOUT + seconds)
    finally:
        # Clients first, so none of them sees the broker go away under it.
        stop_clients.set()
        clients.end()
        stop_server.set()
        server.end()


def _measure(run) -> tuple[float, str]:
    """(steps/s, what happened) of one run of a set-up; NaN when it failed."""
    try:
        steps, seconds = run()
    except (RuntimeError, TimeoutError, OSError) as error:
        return float("nan"), f"failed: {error}"
    return steps / seconds, f"{steps} steps in {seconds:.2f} s"


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loop", description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5000, help="steps per run of (a)-(c) (default 5000)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of (a)-(c), interleaved; the best round counts (default 3)"
    )
    parser.add_argument(
        "--swergio-seconds", type=float, default=3.0, help="time bound of the one swergio 0.0.2 run (default 3 s)"
    )
    args = parser.parse_args(argv)
    if args.steps < 1 or args.rounds < 1 or args.swergio_seconds <= 0:
        parser.error("--steps and --rounds must be >= 1, --swergio-seconds > 0")
    context = mp.get_context("spawn")
    setups = {
        "a": ("one process, no sockets", lambda: run_in_process(args.steps)),
        "b": ("direct socket, our framing", lambda: run_direct(context, args.steps)),
        "c": ("our Broker + Component", lambda: run_brokered(context, "ours", args.steps, SETUP_TIMEOUT)),
        "e": (
            "(c) without TCP_QUICKACK",
            lambda: run_brokered(context, "ours", args.steps, SETUP_TIMEOUT, quickack=False),
        ),
        "d": (
            "swergio 0.0.2 Server + Client",
            lambda: run_brokered(context, "swergio", args.steps, args.swergio_seconds),
        ),
    }
    print(
        f"CartPole-v1 loop on loopback, {os.cpu_count()} CPUs: {args.rounds} round(s) of (a)-(c) at "
        f"{args.steps} steps, then (d) bounded by {args.swergio_seconds:g} s",
        flush=True,
    )
    rates: dict[str, list[float]] = {key: [] for key in setups}
    # Other load only ever slows a run down, so interleaved rounds and the best of each
    # set-up compare the set-ups under the most similar conditions one run can give.
    plan = [key for _ in range(args.rounds) for key in "abce"] + ["d"]
    for key in plan:
        label, run = setups[key]
        rate, note = _measure(run)
        rates[key].append(rate)
        print(f"  ({key}) {label:<30} {rate:>11,.0f} steps/s   ({note})", flush=True)
    best = {key: max(values, key=lambda r: -1.0 if r != r else r) for key, values in rates.items()}
    print()
    print(f"{'set-up':<36}{'best steps/s':>14}{'vs (a)':>9}   all runs")
    for key, (label, _) in setups.items():
        runs = ", ".join(f"{rate:,.0f}" for rate in rates[key])
        print(f"({key}) {label:<32}{best[key]:>14,.0f}{_ratio(best[key], best['a']):>9.3f}   {runs}")
    print()
    c_of_b, c_over_d = _ratio(best["c"], best["b"]), _ratio(best["c"], best["d"])
    print(f"(c) / (b) = {c_of_b:.0%}   target >= 50%    {'met' if c_of_b >= 0.5 else 'MISSED'}")
    print(f"(c) / (d) = {c_over_d:,.0f}x   target >= 250x   {'met' if c_over_d >= 250 else 'MISSED'}")
    print(f"(c) / (e) = {_ratio(best['c'], best['e']):.0%}   the broker's TCP_QUICKACK after each read, on this loop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
