"""Time to solve CartPole-v1: our schedule against stable-baselines3's PPO, seed by seed.

    python -m bench.solve [--seeds 1 2 ... 10] [--ppo-steps 300000] [--no-ppo]

Ours: ``cartpole-tui run --schedule --seed S --db :memory: --json``, the whole process timed
(start of the embedded network included) until it prints its result; solved means its
deterministic 100-episode check averaged >= 475.

PPO (only where stable-baselines3 is installed: ``.venv/bin/pip install torch==2.13.0
stable-baselines3``; not part of any extra), with rl-zoo3's CartPole-v1 hyperparameters: 8
environments, n_steps 32, batch 256, gae_lambda 0.8, gamma 0.98, 20 epochs, ent_coef 0,
learning rate and clip range linear from 1e-3 and 0.2 over its budget (rl-zoo3's 100k
steps, ``--ppo-steps``), seeded with S. Every 10,000 steps its deterministic policy plays
100 episodes (on one environment, as rl-zoo3's evaluation does; ``--ppo-eval-envs 10`` plays
them 10 at once, ~3x quicker); solved when they average >= 475. Timed from the
model's construction (imports excluded, in PPO's favour) to that evaluation's end,
evaluations included, as ours includes its checks. Each run is its own process; ours and
PPO alternate seed by seed, so load on this shared machine falls on both.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

TARGET = 475.0
ZOO_STEPS = 100_000  # rl-zoo3's n_timesteps for CartPole-v1: the linear schedules run over these
EVAL_EVERY = 10_000
EVAL_EPISODES = 100


def ours(seed: int, timeout: float) -> dict:
    command = [sys.executable, "-m", "cartpole_tui", "run", "--schedule", "--seed", str(seed), "--db", ":memory:"]
    started = time.perf_counter()
    done = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        return {"solved": False, "wall": wall, "error": done.stderr.strip().splitlines()[-1:]}
    result = json.loads(done.stdout)
    return {
        "solved": bool(result["solved"]),
        "wall": wall,
        "rounds": len(result["rounds"]),
        "final": result["final_eval_avg"],
    }


def ppo(seed: int, max_steps: int, eval_envs: int, timeout: float) -> dict | None:
    """One PPO run in its own process; None when stable-baselines3 is not installed."""
    command = [sys.executable, "-m", "bench.solve", "--ppo-one", str(seed), "--ppo-steps", str(max_steps)]
    command += ["--ppo-eval-envs", str(eval_envs)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if done.returncode == 3:
        return None
    if done.returncode != 0:
        return {"solved": False, "wall": float("nan"), "error": done.stderr.strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def ppo_one(seed: int, max_steps: int, eval_envs: int) -> None:
    """Train PPO until solved (or ``max_steps``); prints one JSON line. Exit 3 without stable-baselines3."""
    try:
        from stable_baselines3 import PPO
        from stable_baselines3.common.callbacks import BaseCallback
        from stable_baselines3.common.env_util import make_vec_env
        from stable_baselines3.common.evaluation import evaluate_policy
    except ImportError:
        sys.exit(3)

    def linear(start: float):
        # rl-zoo3's lin_<x>: progress_remaining goes 1 -> 0 over n_timesteps
        return lambda remaining: start * remaining

    class SolvedCheck(BaseCallback):
        def __init__(self, eval_env):
            super().__init__()
            self.eval_env = eval_env
            self.next_eval = EVAL_EVERY
            self.evaluations: list[tuple[int, float]] = []
            self.solved = False

        def _on_step(self) -> bool:
            if self.num_timesteps < self.next_eval:
                return True
            self.next_eval += EVAL_EVERY
            mean, _ = evaluate_policy(self.model, self.eval_env, n_eval_episodes=EVAL_EPISODES, deterministic=True)
            self.evaluations.append((self.num_timesteps, float(mean)))
            self.solved = bool(mean >= TARGET)
            return not self.solved

    env = make_vec_env("CartPole-v1", n_envs=8, seed=seed)
    eval_env = make_vec_env("CartPole-v1", n_envs=eval_envs, seed=seed + 10_000)
    started = time.perf_counter()
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=32,
        batch_size=256,
        gae_lambda=0.8,
        gamma=0.98,
        n_epochs=20,
        ent_coef=0.0,
        learning_rate=linear(1e-3),
        clip_range=linear(0.2),
        seed=seed,
        verbose=0,
    )
    check = SolvedCheck(eval_env)
    model.learn(total_timesteps=max_steps, callback=check)  # the linear schedules run over it
    wall = time.perf_counter() - started
    steps, last = check.evaluations[-1] if check.evaluations else (model.num_timesteps, float("nan"))
    print(json.dumps({"solved": check.solved, "wall": wall, "steps": steps, "final": last}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.solve", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(1, 11)))
    parser.add_argument(
        "--ppo-steps", type=int, default=ZOO_STEPS, help=f"PPO's budget of environment steps (rl-zoo3's {ZOO_STEPS})"
    )
    parser.add_argument("--ppo-eval-envs", type=int, default=1, help="environments PPO's evaluation plays at once")
    parser.add_argument("--no-ppo", action="store_true", help="ours only")
    parser.add_argument("--timeout", type=float, default=600.0, help="s one run may take")
    parser.add_argument("--ppo-one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.ppo_one is not None:
        ppo_one(args.ppo_one, args.ppo_steps, args.ppo_eval_envs)
        return 0

    print(f"time to solve CartPole-v1 (deterministic 100-episode mean >= {TARGET:g}), seed by seed")
    rows = []
    have_ppo = not args.no_ppo
    for seed in args.seeds:
        mine = ours(seed, args.timeout)
        theirs = ppo(seed, args.ppo_steps, args.ppo_eval_envs, args.timeout * 4) if have_ppo else None
        if theirs is None and have_ppo:
            have_ppo = False
            print("  (stable-baselines3 is not installed: ours only; `pip install torch==2.13.0 stable-baselines3`)")
        line = f"  seed {seed:>2}: ours {mine['wall']:6.2f}s {'solved' if mine['solved'] else 'NOT solved'}"
        if "rounds" in mine:
            line += f" ({mine['rounds']} rounds, {mine['final']:.1f})"
        if "error" in mine:  # the process failed (not a run that did not solve): its last line says why
            line += f" (failed: {' '.join(mine['error']) or 'no message'})"
        if theirs is not None:
            line += f"   PPO {theirs['wall']:6.2f}s {'solved' if theirs['solved'] else 'NOT solved'}"
            if "steps" in theirs:
                line += f" ({theirs['steps']} steps, {theirs['final']:.1f})"
            line += f"   PPO/ours {theirs['wall'] / mine['wall']:5.1f}x"
        print(line, flush=True)
        rows.append((seed, mine, theirs))

    walls = [m["wall"] for _, m, _ in rows]
    solved = sum(m["solved"] for _, m, _ in rows)
    print(
        f"ours: solved {solved} of {len(rows)}; wall median {statistics.median(walls):.2f}s, max {max(walls):.2f}s"
        f"   targets: every seed <= 6 s, median <= 4 s"
    )
    pairs = [(m, t) for _, m, t in rows if t is not None]
    if pairs:
        theirs_walls = [t["wall"] for _, t in pairs]
        ratios = [t["wall"] / m["wall"] for m, t in pairs]
        print(
            f"PPO: solved {sum(t['solved'] for _, t in pairs)} of {len(pairs)}; wall median "
            f"{statistics.median(theirs_walls):.2f}s, max {max(theirs_walls):.2f}s; PPO/ours median "
            f"{statistics.median(ratios):.1f}x, min {min(ratios):.1f}x   target >= 5x"
            " (an unsolved PPO run counts its whole budget)"
        )
    return 1 if any("error" in m for _, m, _ in rows) else 0  # a failed process is no figure


if __name__ == "__main__":
    sys.exit(main())
