"""Unmodified swergio 0.0.2 clients through swergio.Server and through our Broker, side by side.

    python -m bench.published [--rounds N] [--seconds S] [--fan-in K]
    python -m bench.published --real ...   (the real published network: bench/real.py)

Two patterns of the published network, played by ``swergio.Client`` exactly as shipped
(two ``send()``s a frame, no TCP_NODELAY): a ping-pong pair (one client asks, one
answers) and a fan-in (one client asks, K clients answer, the asker waits for all K
before it asks again, as the published aggregation waits for 20 LOGITS). Each pattern
runs through (1) swergio 0.0.2's ``Server``, (2) our ``Broker`` without TCP_QUICKACK and
(3) our ``Broker`` as shipped; every run is bounded by rounds and by time. The K
answering clients are threads of one process (each its own client and connection: the
frames on the wire are those of K processes).
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import sys
import threading
import time

import swergio
from swergio import MESSAGE_TYPE, Trigger

from bench.loop import HOST, READY, SETUP_TIMEOUT, Processes, our_broker, swergio_server
from cartpole_tui.env.wire import protocol

ASK, ANSWER = "ask", "answer"
CUSTOM = MESSAGE_TYPE.DATA.CUSTOM


def _client(name: str, port: int, function, heard_in: str, answer_in: str) -> swergio.Client:
    """An unmodified swergio client answering ``heard_in`` in ``answer_in``, listening in a thread."""
    client = swergio.Client(name, HOST, port, protocol.FORMAT, protocol.HEADER_LENGTH)
    client.add_eventHandler(function, CUSTOM, responseRooms=answer_in, trigger=Trigger(CUSTOM, heard_in))

    def listen():
        with contextlib.suppress(OSError, ValueError):  # its close() after EOF may hit the dead socket
            client.listen()

    threading.Thread(target=listen, daemon=True).start()
    return client


class Asker:
    """Asks, waits for ``answerers`` answers, asks again; the clock starts when all said READY."""

    def __init__(self, answerers: int, rounds: int, seconds: float):
        self.answerers, self.rounds, self.seconds = answerers, rounds, seconds
        self.ready = self.answers = self.count = 0
        self.started = self.elapsed = 0.0
        self.finished = threading.Event()

    def on_answer(self, message: dict) -> dict | None:
        if message.get(READY):
            self.ready += 1
            if self.ready < self.answerers:
                return None
            self.started = time.perf_counter()
            return {"ROUND": 0}
        if self.finished.is_set():
            return None
        self.answers += 1
        if self.answers < self.answerers:
            return None
        self.answers = 0
        self.count += 1
        self.elapsed = time.perf_counter() - self.started
        if self.count >= self.rounds or self.elapsed >= self.seconds:
            self.finished.set()
            return None
        return {"ROUND": self.count}


def asker(port: int, answerers: int, rounds: int, seconds: float, results: mp.Queue) -> None:
    side = Asker(answerers, rounds, seconds)
    client = _client("asker", port, side.on_answer, ANSWER, ASK)
    results.put(READY)
    side.finished.wait(SETUP_TIMEOUT + seconds)
    results.put((side.count, side.elapsed))
    with contextlib.suppress(OSError):
        client.close()


def answerers(port: int, k: int, stop: mp.Event) -> None:
    clients = [_client(f"answerer-{i}", port, lambda m: {"ROUND": m.get("ROUND")}, ASK, ANSWER) for i in range(k)]
    for client in clients:
        # After its joins on the same connection, so the first question finds it joined.
        client.send({"ID": protocol.new_id(), "TYPE": CUSTOM.id, "TO_ROOM": ANSWER, READY: True})
    stop.wait(SETUP_TIMEOUT)
    for client in clients:
        with contextlib.suppress(OSError):
            client.close()


def run(context, server: str, k: int, rounds: int, seconds: float) -> tuple[int, float]:
    ports, results = context.Queue(), context.Queue()
    servers, clients = Processes(context), Processes(context)
    stop_server, stop_clients = context.Event(), context.Event()
    try:
        if server == "swergio":
            servers.start(swergio_server, ports, stop_server)
        else:
            servers.start(our_broker, ports, stop_server, server == "ours")
        port = servers.get(ports, SETUP_TIMEOUT)
        clients.start(asker, port, k, rounds, seconds, results)
        clients.get(results, SETUP_TIMEOUT)  # the asker has joined its rooms
        clients.start(answerers, port, k, stop_clients)
        return clients.get(results, SETUP_TIMEOUT + seconds)
    finally:
        stop_clients.set()
        clients.end()
        stop_server.set()
        servers.end()


SERVERS = {
    "swergio": "swergio 0.0.2 Server",
    "no-quickack": "our Broker, no TCP_QUICKACK",
    "ours": "our Broker",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--real" in argv:
        from bench import real

        return real.main([arg for arg in argv if arg != "--real"])
    parser = argparse.ArgumentParser(prog="python -m bench.published", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3000, help="round bound of a run (default 3000)")
    parser.add_argument("--seconds", type=float, default=3.0, help="time bound of a run (default 3 s)")
    parser.add_argument("--fan-in", type=int, default=20, help="answering clients of the fan-in (default 20)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.seconds <= 0 or args.fan_in < 1:
        parser.error("--rounds and --fan-in must be >= 1, --seconds > 0")
    context = mp.get_context("spawn")
    print(
        f"unmodified swergio 0.0.2 clients on loopback, {os.cpu_count()} CPUs; "
        f"runs bounded by {args.rounds} rounds or {args.seconds:g} s"
    )
    rates: dict[tuple[str, int], float] = {}
    for k, label in ((1, "ping-pong"), (args.fan_in, f"fan-in of {args.fan_in}")):
        for server, name in SERVERS.items():
            try:
                count, seconds = run(context, server, k, args.rounds, args.seconds)
                rate = count / seconds if seconds > 0 else float("nan")
                note = f"{count} rounds in {seconds:.2f} s"
            except (RuntimeError, TimeoutError, OSError) as error:
                rate, note = float("nan"), f"failed: {error}"
            rates[server, k] = rate
            print(f"  {label:<14} {name:<30} {rate:>9,.1f} rounds/s   ({note})", flush=True)
    print()
    for k, label in ((1, "ping-pong"), (args.fan_in, f"fan-in of {args.fan_in}")):
        base = rates["swergio", k]
        ours, plain = rates["ours", k] / base, rates["no-quickack", k] / base
        target = "   target >= 200x   " + ("met" if ours >= 200 else "MISSED") if k == 1 else ""
        print(f"{label:<14} ours / swergio.Server = {ours:,.0f}x (without quick ACK {plain:,.1f}x){target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
