"""Benchmark of the `pg` agent on Pong against a faithful numpy port of Karpathy's pong.py, in one run.

Each phase plays ALE/Pong-v5 (frameskip 4, sticky actions) for the same wall-clock window, counted
from its first step (worker start-up excluded) and reports env steps/s, frames/s (x4), episodes per
minute and the mean return of its last 100 episodes. Ctrl-C stops the current phase; the table of
what was measured is still printed.

    python bench/bench_pg.py            # 60 s per phase
    python bench/bench_pg.py --quick    # 20 s per phase
"""

from __future__ import annotations

import os

# One BLAS/OpenMP thread on both sides: on a shared 2-core machine a threaded one-row matmul stalls
# on its thread pool (measured 16x slower), which would punish the reference unfairly.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents import Callback, make  # noqa: E402
from core.resources import keep_freed_memory  # noqa: E402
from envs.spec import ensure_registered  # noqa: E402

ENV_ID = "ALE/Pong-v5"
FRAME_SKIP = 4
STOP = {"requested": False}


@dataclass
class Phase:
    name: str
    steps: int
    seconds: float
    returns: list[float]

    @property
    def sps(self) -> float:
        return self.steps / max(self.seconds, 1e-9)

    def row(self, reference_sps: float | None) -> str:
        last = f"{np.mean(self.returns[-100:]):7.2f}" if self.returns else "    n/a"
        ratio = f"{self.sps / reference_sps:5.2f}x" if reference_sps else "   n/a"
        per_min = len(self.returns) / max(self.seconds, 1e-9) * 60
        return (
            f"{self.name:<24} {self.steps:>8} {self.seconds:7.1f} {self.sps:8.0f} {self.sps * FRAME_SKIP:9.0f} "
            f"{per_min:8.1f} {len(self.returns):5} {last} {ratio}"
        )


class Progress:
    def __init__(self, name: str, every: float = 5.0):
        self.name, self.every, self.last = name, every, time.perf_counter()

    def maybe(self, elapsed: float, steps: int, episodes: int) -> None:
        if elapsed > 0 and time.perf_counter() - self.last >= self.every:
            self.last = time.perf_counter()
            print(f"  [{self.name}] {elapsed:5.1f} s  {steps:7} steps  {steps / elapsed:6.0f} steps/s  {episodes} eps")


# The reference: Karpathy's pong.py (2016), ported line by line to Python 3 / numpy / gymnasium ---------
def karpathy_prepro(frame: np.ndarray) -> np.ndarray:
    img = frame[35:195][::2, ::2, 0].copy()
    img[img == 144] = 0
    img[img == 109] = 0
    img[img != 0] = 1
    return img.astype(np.float64).ravel()


def karpathy_discount(r: np.ndarray, gamma: float) -> np.ndarray:
    out = np.zeros_like(r)
    running = 0.0
    for t in reversed(range(r.size)):
        if r[t] != 0:
            running = 0.0  # game boundary (Pong specific)
        running = running * gamma + r[t]
        out[t] = running
    return out


def run_reference(window: float, seed: int) -> Phase:
    """Single process, float64, one env, per-episode standardisation, RMSProp every 10 episodes."""
    H, D, batch_size, lr, gamma, decay = 200, 80 * 80, 10, 1e-4, 0.99, 0.99
    rng = np.random.default_rng(seed)
    model = {"W1": rng.standard_normal((H, D)) / np.sqrt(D), "W2": rng.standard_normal(H) / np.sqrt(H)}
    grad_buffer = {k: np.zeros_like(v) for k, v in model.items()}
    cache = {k: np.zeros_like(v) for k, v in model.items()}
    ensure_registered()
    env = gym.make(ENV_ID)
    obs, _ = env.reset(seed=seed)
    prev_x, xs, hs, dlogps, drs, returns, reward_sum = None, [], [], [], [], [], 0.0
    steps, episodes, progress = 0, 0, Progress("reference")
    start = time.perf_counter()
    while not STOP["requested"] and time.perf_counter() - start < window:
        cur_x = karpathy_prepro(obs)
        x = cur_x - prev_x if prev_x is not None else np.zeros(D)
        prev_x = cur_x
        h = model["W1"] @ x
        h[h < 0] = 0
        aprob = 1.0 / (1.0 + np.exp(-(model["W2"] @ h)))
        action = 2 if rng.uniform() < aprob else 3
        xs.append(x)
        hs.append(h)
        dlogps.append((1.0 if action == 2 else 0.0) - aprob)
        obs, reward, terminated, truncated, _ = env.step(action)
        reward_sum += reward
        drs.append(reward)
        steps += 1
        if terminated or truncated:
            episodes += 1
            epx, eph, epdlogp = np.vstack(xs), np.vstack(hs), np.array(dlogps)
            adv = karpathy_discount(np.array(drs), gamma)
            adv = (adv - adv.mean()) / adv.std()
            epdlogp *= adv
            dh = np.outer(epdlogp, model["W2"])
            dh[eph <= 0] = 0
            grad_buffer["W2"] += eph.T @ epdlogp
            grad_buffer["W1"] += dh.T @ epx
            xs, hs, dlogps, drs = [], [], [], []
            if episodes % batch_size == 0:
                for k, v in model.items():
                    g = grad_buffer[k]
                    cache[k] = decay * cache[k] + (1 - decay) * g**2
                    v += lr * g / (np.sqrt(cache[k]) + 1e-5)
                    grad_buffer[k] = np.zeros_like(v)
            returns.append(reward_sum)
            reward_sum, prev_x = 0.0, None
            obs, _ = env.reset()
        progress.maybe(time.perf_counter() - start, steps, episodes)
    env.close()
    return Phase("reference numpy (1 env)", steps, time.perf_counter() - start, returns)


# Ours: the agent's own learn loop, through the public interface, stopped by a callback ---------
class Window(Callback):
    """Stops `window` seconds after the first reported step (envs running, start-up excluded), or at
    Ctrl-C; prints progress on the way."""

    step_interval = 1

    def __init__(self, window: float, name: str):
        self.window, self.progress = window, Progress(name)
        self.started: float | None = None
        self.start_step = 0
        self.steps = 0

    def on_step(self, ctx) -> None:
        now = time.perf_counter()
        if self.started is None:
            self.started, self.start_step = now, ctx.global_step
        self.steps = ctx.global_step - self.start_step
        self.progress.maybe(now - self.started, self.steps, ctx.episodes)
        if STOP["requested"] or now - self.started >= self.window:
            ctx.request_stop("window over")

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started if self.started is not None else 0.0


def run_ours(window: float, seed: int, num_envs: int, mode: str, workdir: Path, envs_per_step: int = 0) -> Phase:
    """mode: "batch" (ale-py's threaded vector env), "async" (a process per env) or "sync"."""
    agent = make(
        "pg", env=ENV_ID, seed=seed, device="cpu", num_envs=num_envs, vector_mode=mode, envs_per_step=envs_per_step
    )
    answered = f" on {envs_per_step}" if 0 < envs_per_step < num_envs else ""
    name = f"pg {mode} ({num_envs} env{'s' if num_envs > 1 else ''}{answered})"
    run_dir = workdir / name.replace(" ", "_").replace("(", "").replace(")", "")
    timer = Window(window, name)
    # While it runs the session owns Ctrl-C: a first one stops the phase, as the reference's handler does.
    result = agent.learn(10**12, run_dir=run_dir, callbacks=[timer])
    if result.interrupted:
        _request_stop(signal.SIGINT, None)
    return Phase(name, timer.steps, timer.seconds, result.episode_returns)


def _request_stop(signum, frame) -> None:
    if STOP["requested"]:
        raise KeyboardInterrupt
    STOP["requested"] = True
    print("\n  Ctrl-C: stopping this phase, skipping the rest; Ctrl-C again to abort", flush=True)


def print_table(phases: list[Phase]) -> None:
    reference = next((p.sps for p in phases if p.name.startswith("reference")), None)
    print(
        f"\n{'implementation':<24} {'steps':>8} {'wall s':>7} {'steps/s':>8} {'frames/s':>9} {'ep/min':>8} {'eps':>5} "
        f"{'last100':>7} {'ratio':>6}"
    )
    for phase in phases:
        print(phase.row(reference))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20 s per phase instead of 60 s")
    parser.add_argument("--window", type=float, default=None, help="seconds per phase (overrides --quick)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    window = args.window or (20.0 if args.quick else 60.0)
    signal.signal(signal.SIGINT, _request_stop)
    keep_freed_memory()  # the reference runs under the allocator setting our `learn` makes, too
    # (kind, num_envs, mode, envs_per_step): ours by default (16 envs, acting on the first 8 to finish
    # while the other 8 emulate), then the whole batch of 8 at once, one env, a process per env.
    plans = [
        ("reference", 1, "", 0),
        ("pg", 16, "batch", 8),
        ("pg", 8, "batch", 0),
        ("pg", 1, "sync", 0),
        ("pg", 2, "async", 0),
    ]
    phases: list[Phase] = []
    with tempfile.TemporaryDirectory(prefix="bench_pg_") as tmp:
        for kind, num_envs, mode, envs_per_step in plans:
            if STOP["requested"]:
                break
            print(f"phase: {kind} envs={num_envs} {mode}, {window:.0f} s", flush=True)
            if kind == "reference":
                phases.append(run_reference(window, args.seed))
            else:
                phases.append(run_ours(window, args.seed, num_envs, mode, Path(tmp), envs_per_step))
            print(f"  -> {phases[-1].sps:.0f} steps/s", flush=True)
    print_table(phases)


if __name__ == "__main__":
    main()
