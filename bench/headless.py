"""What a terminal costs `run`: its progress bar and per-episode lines on a terminal vs stderr redirected.

    python -m bench.headless [--episodes 2000] [--rounds 3] [--seed 1] [--tmux | --link KIB] [--before DIR]

(t) `cartpole-tui run --episodes N --json --db :memory:` with standard error on a terminal of
80x24: a pseudo-terminal this process reads as fast as it is written; --link KIB reads it at
KIB KiB/s, as a slow terminal or SSH link would; --tmux runs it in a tmux window of 80x24 with a
client attached (tmux parses and draws what it gets, as a user's terminal does). (r) the same
run with standard error to /dev/null. The figure is the run's steps/s from its --json (the
history's one figure). Rounds alternate (t) and (r), best of each (other load only slows a run
down); target: (t) >= 90 % of (r). --before DIR also runs both for the tree in DIR (`git archive
<commit>` unpacked into DIR/cartpole_tui: PYTHONPATH puts it before the installed one), in the
same rounds, so a change is measured side by side. Every wait is bounded.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import termios
import threading
from pathlib import Path

RUN_TIMEOUT = 600.0  # s a run may take
TARGET = 0.90  # (t) / (r)


def command(episodes: int, seed: int) -> list[str]:
    run = ["run", "--episodes", str(episodes), "--seed", str(seed), "--json", "--db", ":memory:"]
    return [sys.executable, "-m", "cartpole_tui.tui.cli.parser", *run]


def environment(tree: str | None) -> dict[str, str]:
    """The child's environment: ``tree`` first on its path (its processes inherit it)."""
    env = {**os.environ}
    env.pop("COLUMNS", None)
    env.pop("LINES", None)
    if tree is not None:
        env["PYTHONPATH"] = tree
    return env


def steps_per_s(stdout: str) -> float:
    return float(json.loads(stdout)["steps_per_s"])


def redirected(argv: list[str], env: dict[str, str]) -> float:
    done = subprocess.run(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, timeout=RUN_TIMEOUT
    )
    return steps_per_s(done.stdout)


def _drain(master: int, written: list[int], link: float | None = None) -> None:
    """Read a pseudo-terminal's output, counting the bytes, until it closes: as fast as it comes,
    or at ``link`` bytes a second (a slow terminal or SSH link: the writer blocks once the
    pseudo-terminal's buffer is full)."""
    pause = threading.Event()
    while True:
        try:
            chunk = os.read(master, 1024 if link else 65536)
        except OSError:
            return
        if not chunk:
            return
        written[0] += len(chunk)
        if link:
            pause.wait(len(chunk) / link)


def on_pty(argv: list[str], env: dict[str, str], link: float | None = None) -> tuple[float, int]:
    """The run with stderr on an 80x24 pseudo-terminal drained by a thread (at ``link`` bytes a
    second, or as fast as it comes); its steps/s and the bytes written there."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    written = [0]
    reader = threading.Thread(target=_drain, args=(master, written, link), daemon=True)
    reader.start()
    try:
        done = subprocess.run(
            argv,
            env={**env, "TERM": "xterm-256color"},
            stdout=subprocess.PIPE,
            stderr=slave,
            text=True,
            timeout=RUN_TIMEOUT,
        )
    finally:
        os.close(slave)
        reader.join(5)
        os.close(master)
    return steps_per_s(done.stdout), written[0]


def in_tmux(argv: list[str], env: dict[str, str]) -> float:
    """The run in a tmux window of 80x24, its stdout to a file, with a client attached (on a
    pseudo-terminal drained as fast as tmux writes): what a user watching it in tmux has."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "out.json"
        name = f"bench-headless-{os.getpid()}"
        exports = " ".join(f"{key}={shlex.quote(value)}" for key, value in env.items() if key == "PYTHONPATH")
        shell = (
            f"tmux wait-for {name}-go; {exports} {' '.join(map(shlex.quote, argv))} > {shlex.quote(str(out))}; "
            f"tmux wait-for -S {name}"
        )
        subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", "80", "-y", "24", shell], check=True, timeout=30)
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        reader = threading.Thread(target=_drain, args=(master, [0]), daemon=True)
        reader.start()
        client = subprocess.Popen(
            ["tmux", "attach", "-t", name],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env={**os.environ, "TERM": "xterm-256color"},
            start_new_session=True,
        )
        try:
            subprocess.run(["tmux", "wait-for", "-S", f"{name}-go"], check=True, timeout=30)
            subprocess.run(["tmux", "wait-for", name], check=True, timeout=RUN_TIMEOUT)
        finally:
            subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True, timeout=30)
            client.wait(30)
            os.close(slave)
            reader.join(5)
            os.close(master)
        return steps_per_s(out.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tmux", action="store_true", help="(t) in a tmux window, not a drained pty")
    parser.add_argument("--before", metavar="DIR", help="also the tree in DIR (DIR/cartpole_tui)")
    parser.add_argument("--link", type=float, metavar="KIB", help="(t): the pty read at KIB KiB/s, a slow link")
    args = parser.parse_args()
    if args.tmux and shutil.which("tmux") is None:
        print("--tmux: no tmux here", file=sys.stderr)
        return 2
    argv = command(args.episodes, args.seed)
    trees = {"this tree": None, **({"before": str(Path(args.before).resolve())} if args.before else {})}
    best: dict[str, float] = {}
    for number in range(1, args.rounds + 1):
        for name, tree in trees.items():
            env = environment(tree)
            if args.tmux:
                terminal, shown = in_tmux(argv, env), "tmux"
            else:
                terminal, written = on_pty(argv, env, args.link * 1024 if args.link else None)
                shown = f"pty{f' at {args.link:g} KiB/s' if args.link else ''}, {written / 1024:,.0f} KiB written"
            plain = redirected(argv, env)
            print(f"round {number} {name:>9}: (t) {terminal:9,.0f} steps/s ({shown})   (r) {plain:9,.0f} steps/s")
            best[f"{name} t"] = max(best.get(f"{name} t", 0.0), terminal)
            best[f"{name} r"] = max(best.get(f"{name} r", 0.0), plain)
    for name in trees:
        ratio = best[f"{name} t"] / best[f"{name} r"]
        verdict = "ok" if ratio >= TARGET else "MISSED"
        print(
            f"{name:>9}: best (t) {best[f'{name} t']:,.0f} vs (r) {best[f'{name} r']:,.0f} steps/s: "
            f"{ratio:.0%} (target >= {TARGET:.0%}: {verdict})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
