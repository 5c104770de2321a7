"""A3C benchmark: worker throughput against raw env stepping, wall time to the VizDoom / CartPole targets,
and SB3's A2C on CartPole for comparison.

    python bench/bench_a3c.py --quick          # ~4 minutes on 2 cores
    python bench/bench_a3c.py --doom-cap 900   # the 15-minute VizDoom target of the issue

Throughput is the median of the trainer's `charts/SPS` (steps/s between log flushes, so process
start-up is left out); raw speed steps the same number of envs with random actions, one process each.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents import StopAfter, StopAtReturn, make  # noqa: E402
from envs import EnvConfig, make_env, make_vector_env  # noqa: E402

DOOM = "VizdoomBasic-v1"


def raw_steps_per_second(env_config: EnvConfig, num_envs: int, seconds: float) -> float:
    """Random-action steps/s of `num_envs` envs, each in its own process when more than one."""
    if num_envs == 1:
        env = make_env(env_config, seed=0)
        env.reset(seed=0)
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            steps += 1
            if terminated or truncated:
                env.reset()
        env.close()
        return steps / (time.perf_counter() - start)
    envs = make_vector_env(env_config, num_envs, seed=0, mode="async")
    envs.reset(seed=0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        envs.step(envs.action_space.sample())
        steps += num_envs
    elapsed = time.perf_counter() - start
    envs.close()
    return steps / elapsed


def timed_a3c(env_id: str, target: float | None, cap_s: float, steps: int, overrides: dict, runs_dir: Path) -> dict:
    """Train until the last-100-episode mean reaches `target` (None: run all `steps`) or `cap_s` seconds pass."""
    agent = make("a3c", env=env_id, **overrides)
    callbacks = [StopAfter(cap_s)] + ([StopAtReturn(target)] if target is not None else [])
    result = agent.learn(steps, run_dir=runs_dir / env_id.replace("/", "-"), callbacks=callbacks)
    returns = result.episode_returns
    mean100 = float(np.mean(returns[-100:])) if returns else float("nan")
    return {
        "env": env_id,
        "target": target,
        "reached": target is not None and len(returns) >= 100 and mean100 >= target,
        "wall_s": round(result.wall_time, 1),
        "steps": result.global_step,
        "episodes": result.episodes,
        "mean100": round(mean100, 1),
        "median_sps": median_sps(result.run_dir),
    }


def median_sps(run_dir: Path) -> float:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir))
    events.Reload()
    values = [e.value for e in events.Scalars("charts/SPS")] if "charts/SPS" in events.Tags()["scalars"] else []
    return round(float(np.median(values[1:] or values)), 1) if values else float("nan")


def sb3_a2c_cartpole(cap_s: float) -> dict:
    """SB3 A2C with the rl-baselines3-zoo CartPole-v1 hyperparameters (8 envs, ent_coef 0)."""
    from stable_baselines3 import A2C
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    class StopAtTarget(BaseCallback):
        def _on_step(self) -> bool:
            infos = self.model.ep_info_buffer
            self.reached = len(infos) >= 100 and np.mean([i["r"] for i in infos]) >= 475
            return not self.reached and time.perf_counter() - start < cap_s

    model = A2C("MlpPolicy", make_vec_env("CartPole-v1", n_envs=8, seed=1), ent_coef=0.0, seed=1, device="cpu")
    callback = StopAtTarget()
    start = time.perf_counter()
    model.learn(total_timesteps=1_000_000, callback=callback)
    infos = model.ep_info_buffer
    return {
        "env": "CartPole-v1",
        "target": 475,
        "reached": bool(getattr(callback, "reached", False)),
        "wall_s": round(time.perf_counter() - start, 1),
        "steps": model.num_timesteps,
        "mean100": round(float(np.mean([i["r"] for i in infos])), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short caps: a few minutes in all")
    parser.add_argument("--doom-cap", type=float, default=None, help="seconds allowed to reach VizDoom mean 70")
    parser.add_argument("--cartpole-cap", type=float, default=None, help="seconds allowed to reach CartPole 475")
    parser.add_argument("--sps-steps", type=int, default=None, help="steps of each throughput run")
    parser.add_argument("--skip-sb3", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    args = parser.parse_args()
    doom_cap = args.doom_cap or (45 if args.quick else 900)
    cartpole_cap = args.cartpole_cap or (60 if args.quick else 300)
    sps_steps = args.sps_steps or (3_000 if args.quick else 20_000)
    results: dict = {"throughput": []}
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp)
        for workers in (1, 2):
            run = timed_a3c(DOOM, None, 1e9, sps_steps, {"num_workers": workers}, runs / f"sps{workers}")
            raw = raw_steps_per_second(make("a3c", env=DOOM).env_config, workers, 5.0)
            row = {"workers": workers, "a3c_sps": run["median_sps"], "raw_env_sps": round(raw, 1)}
            row["ratio"] = round(row["a3c_sps"] / raw, 3)
            results["throughput"].append(row)
            print(row, flush=True)
        results["cartpole"] = timed_a3c("CartPole-v1", 475, cartpole_cap, 2_000_000, {}, runs / "cartpole")
        print(results["cartpole"], flush=True)
        results["vizdoom"] = timed_a3c(DOOM, 70, doom_cap, 10_000_000, {}, runs / "doom")
        print(results["vizdoom"], flush=True)
    if not args.skip_sb3:
        results["sb3_a2c_cartpole"] = sb3_a2c_cartpole(cartpole_cap)
        print(results["sb3_a2c_cartpole"], flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
