"""The published network's quirks, each tried once against the real components: what we say.

    RLGYM_WITH_ENV=1 BROKER_CMD='.venv/bin/cartpole-tui broker --host 127.0.0.1 --port $SWERGIO_PORT' \\
        SWERGIO_PORT=18080 RLGYM_DIR=/tmp/rlgym-upstream ../shared/published/network.sh start
    python -m bench.real_messages --port 18080      # then: ../shared/published/network.sh stop

With their network up (their environment too), as a ``--no-env`` control room: ``x`` on a run of
theirs twice, and the late ENV_DONE; the run's episodes and steps a second as the history has them;
one model killed (the stall names it); the model started again (the evolution counts 21 and the
time-out says so). Prints each message as a person would read it. Not for CI: 20 torch processes.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from cartpole_tui.env.components.control import ControlTimeout
from cartpole_tui.env.events import ComponentSeen, NetworkError
from cartpole_tui.env.history.store import RunStore
from cartpole_tui.env.runtime.session import Session, SessionOptions


def wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    tick = threading.Event()
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        tick.wait(0.2)
    raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")


def model_pids(run_dir: Path) -> list[tuple[int, str]]:
    lines = (run_dir / "network.pids").read_text().split("\n")
    return [(int(pid), name) for pid, _, name in (line.split() for line in lines if line) if name.startswith("model")]


def restart_model(run_dir: Path, name: str, port: int) -> int:
    """Start 02_model.py again as network.sh does, and add it to the pid file (network.sh stop ends it)."""
    shared = Path(os.environ.get("RLGYM_NETWORK_SH", "/work/shared/published/network.sh")).parent
    upstream = Path(os.environ.get("RLGYM_DIR", "/tmp/rlgym-upstream"))
    venv = Path(os.environ.get("RLGYM_VENV", "/tmp/rlgym-venv"))
    env = {**os.environ, "PYTHONPATH": str(shared / "shims"), "PYTHONUNBUFFERED": "1", "SWERGIO_PORT": str(port)}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    with open(run_dir / "logs" / f"{name}-again.log", "w") as log:
        child = subprocess.Popen(
            [str(venv / "bin" / "python"), str(upstream / "02_model.py")],
            cwd=upstream,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    start = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    with open(run_dir / "network.pids", "a") as pids:
        pids.write(f"{child.pid} {start} {name}-again\n")
    return child.pid


def through_swergio_server(port: int, run_dir: Path) -> int:
    """swergio.Server: the components seen (from messages), and a killed model named."""
    seen: list[str] = []

    def heard(event: object) -> None:
        if isinstance(event, ComponentSeen):
            seen.append(event.name)
        elif isinstance(event, NetworkError):
            print(f"  log: {event.line}", flush=True)

    session = Session(SessionOptions(connect=f"127.0.0.1:{port}"), on_event=heard)
    session.open()
    control = session.control
    assert control is not None
    try:
        wait(lambda: control.watching_models, 10, "the control client to listen to logits (no stats)")
        control.start_run(200)
        wait(lambda: len(control.models.known) == 20, 120, "the 20 models' LOGITS")
        print(f"1. components seen (the network pane lists them): {', '.join(sorted(set(seen)))}")
        pid, _ = model_pids(run_dir)[6]
        os.kill(pid, signal.SIGKILL)
        print("2. one model killed (kill -9); after 5 s without a step the app's hint says:")
        stalled = wait(lambda: control.models.silent() and control.silence(), 60, "the silent model")
        print(f"  no step for 5s: {stalled}")
        control.stop_run()
    finally:
        session.close()
    print("stop the network: ../shared/published/network.sh stop")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.real_messages", description=__doc__)
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--run-dir", help="network.sh's RLGYM_RUN_DIR (default /tmp/rlgym-net-PORT)")
    parser.add_argument(
        "--swergio", action="store_true", help="their 01_server.py is the broker (BROKER_CMD unset), without their env"
    )
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir or f"/tmp/rlgym-net-{args.port}")
    if args.swergio:
        return through_swergio_server(args.port, run_dir)
    events: list[object] = []

    def heard(event: object) -> None:
        events.append(event)
        if isinstance(event, NetworkError):
            print(f"  log: {event.line}", flush=True)

    with tempfile.TemporaryDirectory() as folder:
        store = RunStore.open(str(Path(folder) / "runs.sqlite3"))
        session = Session(
            SessionOptions(connect=f"127.0.0.1:{args.port}", embed_env=False), on_event=heard, store=store
        )
        session.open()
        control = session.control
        assert control is not None
        try:
            wait(lambda: session.published_environment, 10, "the session to find their environment")
            print("1. x twice on a 20-episode run of their environment")
            control.start_run(20)
            wait(lambda: session.observed_run.episodes >= 2, 120, "two episodes")
            print(f"  x: {session.stop_run().text}")
            print(f"  x: {session.stop_run().text}")
            wait(lambda: any("finished after all" in getattr(e, "text", "") for e in events), 600, "the late ENV_DONE")
            record = store.runs()[-1]
            print(
                f"  runs table: {record.state}, {record.finished} episodes, avg {record.avg_score}, "
                f"{record.steps_per_s or 0:.1f} steps/s"
            )
            print("2. a run of 3 episodes; its time-out follows the observations (idle 5 s)")
            result = control.run(3, idle_timeout=5)
            print(
                f"  done: {result.episodes} episodes, average {result.avg_score:.1f};"
                f" {control.observations} observations"
            )
            control.evolve(timeout=60)  # the control room learns the 20 models' ids
            print("3. one model killed (kill -9) during a run")
            pid, name = model_pids(run_dir)[6]
            os.kill(pid, signal.SIGKILL)
            try:
                control.run(3, idle_timeout=10)
                print("  (the run ended: the kill came too late)")
            except ControlTimeout as error:
                print(f"  run: {error}")
            print("4. the model started again; evolve")
            restart_model(run_dir, name, args.port)
            wait(lambda: control.stats and control.stats.clients.count("model") == 20, 180, "the model to join again")
            for attempt in (1, 2):
                try:
                    control.evolve(timeout=30)
                    print(f"  evolve {attempt}: EVO_DONE")
                except ControlTimeout as error:
                    print(f"  evolve {attempt}: {error}")
        finally:
            session.close()
            store.close()
    print("stop the network: ../shared/published/network.sh stop")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
