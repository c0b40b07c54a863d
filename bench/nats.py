"""Gateway mode against one broker, side by side in one run.

    python -m bench.nats [--episodes N] [--messages M] [--members K] [--repeats R]

1. A run's steps/s: environment and control on gateway A, the 20-model swarm on gateway B
   (each gateway on its own node of a 3-node NATS cluster), against the same components on
   one broker. Each step crosses NATS twice (observation A→B, action B→A); the 20 LOGITS
   stay on B.
2. Fan-out: deliveries/s to a K-member room (K/3 members on each of three gateways, the
   sender on A) against the same room on one broker. Members are bare sockets that count
   bytes, so the receivers cost almost nothing.

Brokers, gateways, NATS nodes and the swarm are separate processes (as on separate hosts);
environment, control and the fan-out sockets live in this one. Needs nats-server (Debian's
/usr/sbin/nats-server, or $NATS_SERVER) and nats-py (`pip install -e '.[nats]'`).
"""

from __future__ import annotations

import argparse
import contextlib
import selectors
import socket
import statistics
import subprocess
import sys
import threading
import time

from cartpole_tui.env.components.control import ControlClient
from cartpole_tui.env.components.environment import EnvironmentComponent
from cartpole_tui.env.wire import protocol
from tests.nats_cluster import HOST, NatsCluster, free_ports

CLI = [sys.executable, "-m", "cartpole_tui"]


@contextlib.contextmanager
def process(*args: str, ready: str):
    """A child process of ours, once ``ready`` shows in its output; terminated after."""
    child = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in child.stdout:
            if ready in line:
                break
        else:
            raise RuntimeError(f"{' '.join(args)} exited: {child.wait()}")
        threading.Thread(target=child.stdout.read, daemon=True).start()  # keep its pipe drained
        yield child
    finally:
        child.terminate()
        child.wait(10)


@contextlib.contextmanager
def brokers(cluster: NatsCluster | None, nodes: list[int]):
    """One broker (cluster None), or a gateway on each node in ``nodes``: their ports."""
    ports = free_ports(len(nodes) if cluster else 1)
    with contextlib.ExitStack() as stack:
        for i, port in enumerate(ports):
            nats = ["--nats", cluster.url(nodes[i]), "--network", "bench"] if cluster else []
            stack.enter_context(process("broker", "--port", str(port), *nats, ready="listening"))
        yield ports


# --- 1. a run split over two gateways --------------------------------------------------------------


def run_steps_per_s(cluster: NatsCluster | None, episodes: int, seed: int) -> float:
    with brokers(cluster, [0, 1]) as ports:
        a, b = ports[0], ports[-1]
        with process("swarm", "--connect", f"{HOST}:{b}", "--seed", str(seed), ready="connecting"):
            env = EnvironmentComponent(HOST, a, seed=seed).start()
            control = ControlClient(HOST, a)
            try:
                for _ in range(100):  # until the swarm has joined (and, with NATS, been heard of)
                    try:
                        control.run(3, False, seed=seed, idle_timeout=0.5)
                        break
                    except TimeoutError:
                        control.stop_run()
                started = time.perf_counter()
                result = control.run(episodes, False, seed=seed)
                return sum(result.scores) / (time.perf_counter() - started)
            finally:
                control.close()
                env.close()


# --- 2. fan-out to a big room ---------------------------------------------------------------------------


def member(port: int, name: str, room: str) -> socket.socket:
    sock = socket.create_connection((HOST, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(
        protocol.encode_frame({"TYPE": protocol.REGISTER, "NAME": name, "TO_ROOM": protocol.COMMAND_ROOM})
        + protocol.encode_frame({"TYPE": protocol.JOINROOM, "ROOM": room, "TO_ROOM": protocol.COMMAND_ROOM})
    )
    return sock


def count_bytes(socks: list[socket.socket], until: threading.Event, counts: dict) -> None:
    """Read every member's socket; ``counts[sock]`` is the bytes it got."""
    selector = selectors.DefaultSelector()
    for sock in socks:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        counts[sock] = 0
    while not until.is_set():
        for key, _ in selector.select(0.1):
            try:
                counts[key.fileobj] += len(key.fileobj.recv(1 << 20))
            except BlockingIOError:
                pass
    selector.close()


def quiet(counts: dict, until: int | None = None, after: float = 1.0) -> float:
    """Wait until ``until`` bytes arrived in all, or none for ``after`` s; when the last arrived."""
    last, last_change = sum(counts.values()), time.perf_counter()
    while (until is None or last < until) and time.perf_counter() - last_change < after:
        time.sleep(0.01)
        if sum(counts.values()) != last:
            last, last_change = sum(counts.values()), time.perf_counter()
    return last_change


def fan_out_per_s(cluster: NatsCluster | None, members: int, messages: int) -> tuple[float, float]:
    """(deliveries/s, share of the deliveries that arrived)."""
    room = "fanout"
    with brokers(cluster, [0, 1, 2]) as ports:
        socks = [member(ports[i % len(ports)], f"m{i}", room) for i in range(members)]
        sender = member(ports[0], "sender", "elsewhere")
        counts: dict = {}
        stop = threading.Event()
        reader = threading.Thread(target=count_bytes, args=(socks, stop, counts), daemon=True)
        reader.start()
        frame = protocol.encode_frame(protocol.custom(room, X=1, PAD="x" * 40, SENT_BY="sender"))  # as delivered
        # warm up: a message at a time until one reaches every member (every gateway is in place)...
        while True:
            before = sum(counts.values())
            sender.sendall(frame)
            time.sleep(0.2)
            if sum(counts.values()) - before >= members * len(frame):
                break
        quiet(counts)  # ...and the stragglers of the warm-up are in
        base = sum(counts.values())
        want = members * messages * len(frame)
        started = time.perf_counter()
        batch = frame * 1000
        for _ in range(messages // 1000):
            sender.sendall(batch)
        last_change = quiet(counts, until=base + want)
        got = (sum(counts.values()) - base) // len(frame)
        seconds = last_change - started
        stop.set()
        reader.join(5)
        for sock in [*socks, sender]:
            sock.close()
        return got / seconds, got / (members * messages)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.nats", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--episodes", type=int, default=300, help="episodes of each measured run")
    parser.add_argument("--messages", type=int, default=20_000, help="messages to the big room")
    parser.add_argument("--members", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2, help="alternations of one broker and gateways")
    args = parser.parse_args(argv)
    with NatsCluster(3) as cluster:
        steps = {"one broker": [], "two gateways": []}
        fan = {"one broker": [], "three gateways": []}
        for repeat in range(args.repeats):
            steps["one broker"].append(run_steps_per_s(None, args.episodes, seed=repeat + 1))
            steps["two gateways"].append(run_steps_per_s(cluster, args.episodes, seed=repeat + 1))
            fan["one broker"].append(fan_out_per_s(None, args.members, args.messages))
            fan["three gateways"].append(fan_out_per_s(cluster, args.members, args.messages))
            print(f"repeat {repeat + 1}: steps/s {steps}  fan-out {fan}", flush=True)
    one, split = statistics.median(steps["one broker"]), statistics.median(steps["two gateways"])
    print(
        f"\nrun, 20-model swarm:  one broker {one:,.0f} steps/s   two gateways {split:,.0f} steps/s   "
        f"ratio {split / one:.2f}"
    )
    one = statistics.median(d for d, _ in fan["one broker"])
    spread = statistics.median(d for d, _ in fan["three gateways"])
    share = min(s for _, s in fan["three gateways"])
    print(
        f"fan-out, {args.members}-member room:  one broker {one:,.0f} deliveries/s   three gateways "
        f"{spread:,.0f} deliveries/s   ratio {spread / one:.2f}   (delivered {share:.1%} at least)"
    )


if __name__ == "__main__":
    main()
