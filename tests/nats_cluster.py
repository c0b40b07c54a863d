"""A NATS cluster of N ``nats-server`` processes on 127.0.0.1 for the gateway tests and bench.nats.

Each node has its own client, route and monitoring port and routes to all the others;
``start()`` returns once every node reports routes to every other one (``/routez``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

HOST = "127.0.0.1"
CONFIG = """\
server_name: n{index}
listen: {host}:{client}
http: {host}:{http}
max_payload: {max_payload}
cluster {{
  name: {cluster}
  listen: {host}:{route}
  routes: [{routes}]
}}
{extra}
"""
# Our broker takes frames up to 16 MiB; NATS's default cap is 1 MiB.
MAX_PAYLOAD = 16 * 1024 * 1024 + 64


def nats_server() -> str | None:
    """The nats-server binary: $NATS_SERVER, on PATH, or Debian's /usr/sbin/nats-server."""
    for candidate in (os.environ.get("NATS_SERVER"), shutil.which("nats-server"), "/usr/sbin/nats-server"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            sock = socket.socket()
            sock.bind((HOST, 0))
            socks.append(sock)
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


class NatsCluster:
    def __init__(self, size: int = 3, workdir: str | None = None, name: str = "cartpole-tui-test", extra: str = ""):
        self.extra = extra  # more configuration for every node (e.g. an authorization block)
        self.binary = nats_server()
        if self.binary is None:
            raise FileNotFoundError("nats-server not found (apt-get install nats-server, or set NATS_SERVER)")
        self.size, self.name = size, name
        self.workdir = workdir or tempfile.mkdtemp(prefix="nats-cluster-")
        ports = free_ports(3 * size)
        self.client_ports, self.route_ports, self.http_ports = ports[:size], ports[size : 2 * size], ports[2 * size :]
        self.procs: list[subprocess.Popen | None] = [None] * size

    def url(self, index: int) -> str:
        return f"nats://{HOST}:{self.client_ports[index]}"

    @property
    def urls(self) -> list[str]:
        return [self.url(i) for i in range(self.size)]

    def _config(self, index: int) -> str:
        path = os.path.join(self.workdir, f"n{index}.conf")
        routes = ", ".join(f"nats://{HOST}:{p}" for i, p in enumerate(self.route_ports) if i != index)
        with open(path, "w") as out:
            out.write(
                CONFIG.format(
                    index=index,
                    host=HOST,
                    client=self.client_ports[index],
                    http=self.http_ports[index],
                    max_payload=MAX_PAYLOAD,
                    cluster=self.name,
                    route=self.route_ports[index],
                    routes=routes,
                    extra=self.extra,
                )
            )
        return path

    def start_node(self, index: int) -> None:
        with open(os.path.join(self.workdir, f"n{index}.log"), "ab") as log:
            self.procs[index] = subprocess.Popen(
                [self.binary, "-c", self._config(index)], stdout=log, stderr=subprocess.STDOUT
            )

    def start(self, timeout: float = 10.0) -> NatsCluster:
        for index in range(self.size):
            self.start_node(index)
        self.wait_formed(timeout)
        return self

    def alive(self) -> list[int]:
        return [i for i, p in enumerate(self.procs) if p is not None and p.poll() is None]

    def routes(self, index: int) -> int:
        url = f"http://{HOST}:{self.http_ports[index]}/routez"
        with urllib.request.urlopen(url, timeout=1) as answer:
            return json.load(answer)["num_routes"]

    def wait_formed(self, timeout: float = 10.0) -> None:
        """Until every live node routes to every other live node."""
        deadline = time.monotonic() + timeout
        pause = 0.01
        while True:
            try:
                if all(self.routes(i) >= len(self.alive()) - 1 for i in self.alive()):
                    return
            except OSError:
                pass  # a monitoring port not listening yet
            if time.monotonic() > deadline:
                raise TimeoutError(f"NATS cluster not formed in {timeout}s; logs in {self.workdir}")
            time.sleep(pause)  # a child process's readiness: nothing to wait on but its port

    def kill(self, index: int, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[index]
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            proc.wait(10)

    def stop(self) -> None:
        for index in range(self.size):
            self.kill(index, signal.SIGTERM)

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
