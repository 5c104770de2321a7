"""Benchmark (not a test): our DQN against Stable-Baselines3's DQN with matched hyperparameters.

1. CartPole-v1: training wall seconds and env steps until a greedy evaluation first reaches 475,
   and the final greedy return (evaluation time is not counted as training time).
   With `--cartpole-envs 1 4` also our agent on 4 envs (one batched forward pass, 4 replay streams).
2. ALE/Pong-v5: training steps/s over a window after learning starts, ours and SB3's with RL Zoo's
   settings, ours with the suite's Pong preset (also with `compile_update`), and a ceiling: one
   Nature-CNN batch-32 update in plain torch, at one update per 4 env steps (the share of it that
   training reaches is printed).
3. Replay memory for 1M Atari transitions: ours (frames stored once) vs SB3's ReplayBuffer with
   optimize_memory_usage, from the allocated array sizes.
4. With `--race-minutes M`: a Pong race, our preset against the RL Zoo preset the suite shipped before
   (both ours), each for M minutes of wall time in this run: env steps and minutes until the mean of the
   last 100 real scores first reaches -15, -10 and 0.

    python bench/bench_dqn.py --quick                 # a few minutes on 2 cores
    python bench/bench_dqn.py --seeds 1 2 3           # full CartPole runs
    python bench/bench_dqn.py --skip cartpole memory sb3 --race-minutes 60   # the Pong race: 2 hours

Ctrl-C skips to the table with what was measured. Needs `pip install stable-baselines3`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents import Callback, StopAfter, make  # noqa: E402
from agents.dqn import RL_ZOO_ATARI, DQNAgent, DQNConfig  # noqa: E402
from agents.evaluation import evaluate_agent  # noqa: E402
from agents.replay import ReplayBatch, ReplayBuffer  # noqa: E402
from core.resources import default_threads, keep_freed_memory, native_bf16  # noqa: E402
from envs import EnvConfig, make_env  # noqa: E402

SB3_KEYS = (
    "learning_rate",
    "batch_size",
    "buffer_size",
    "learning_starts",
    "gamma",
    "target_update_interval",
    "train_freq",
    "gradient_steps",
    "exploration_fraction",
    "exploration_final_eps",
    "max_grad_norm",
)


def sb3_kwargs(config: DQNConfig) -> dict:
    kwargs = {k: getattr(config, k) for k in SB3_KEYS}
    kwargs["policy_kwargs"] = {"net_arch": list(config.hidden_sizes)}
    return kwargs


class GreedyEvaluation(Callback):
    """Every `every` steps: the greedy return over `episodes` episodes, the training time so far (the
    evaluations' own time left out) and the first (step, time) at which it reached 475."""

    def __init__(self, agent, every: int, episodes: int, seed: int):
        self.agent, self.step_interval, self.episodes, self.seed = agent, every, episodes, seed
        self.wall, self.solved, self.last = 0.0, None, float("nan")
        self.started, self.evaluated_at = 0.0, -1

    def on_start(self, ctx) -> None:
        self.started = time.perf_counter()

    def on_step(self, ctx) -> None:
        self.wall += time.perf_counter() - self.started
        self.last = float(evaluate_agent(self.agent, episodes=self.episodes, seed=10_000).mean())
        print(f"  ours  seed {self.seed} step {ctx.global_step:6d} train {self.wall:6.1f}s greedy {self.last:6.1f}")
        if self.solved is None and self.last >= 475:
            self.solved = (ctx.global_step, self.wall)
        self.started, self.evaluated_at = time.perf_counter(), ctx.global_step

    def on_end(self, ctx) -> None:
        if self.evaluated_at != ctx.global_step:
            self.on_step(ctx)


def ours_cartpole(seed: int, steps: int, eval_every: int, episodes: int, num_envs: int = 1) -> dict:
    """Our agent through the public interface, paused every `eval_every` steps for greedy evaluations."""
    torch.manual_seed(seed)
    # Matched to SB3's DQN with RL Zoo's settings: no Double DQN, a constant step size (our preset anneals it).
    agent = make("dqn", env="CartPole-v1", seed=seed, device="cpu", double_q=False, final_learning_rate=-1.0,
                 num_envs=num_envs)  # fmt: skip
    evaluation = GreedyEvaluation(agent, eval_every, episodes, seed)
    agent.learn(steps, callbacks=[evaluation])
    return {"solved": evaluation.solved, "wall": evaluation.wall, "final": evaluation.last}


def sb3_cartpole(seed: int, steps: int, eval_every: int, episodes: int) -> dict:
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback

    torch.set_num_threads(1)
    config = make("dqn", env="CartPole-v1").config  # the same preset as ours
    out = {"solved": None, "final": float("nan"), "wall": 0.0}

    class Evaluate(BaseCallback):
        def _on_training_start(self) -> None:
            self.started = time.perf_counter()

        def _on_step(self) -> bool:
            if self.num_timesteps % eval_every == 0 or self.num_timesteps == steps:
                out["wall"] += time.perf_counter() - self.started
                out["final"] = sb3_greedy_return(self.model, episodes)
                print(
                    f"  sb3   seed {seed} step {self.num_timesteps:6d} train {out['wall']:6.1f}s "
                    f"greedy {out['final']:6.1f}",
                    flush=True,
                )
                if out["solved"] is None and out["final"] >= 475:
                    out["solved"] = (self.num_timesteps, out["wall"])
                self.started = time.perf_counter()
            return True

    model = DQN("MlpPolicy", gym.make("CartPole-v1"), seed=seed, device="cpu", verbose=0, **sb3_kwargs(config))
    model.learn(steps, callback=Evaluate())
    return out


def sb3_greedy_return(model, episodes: int) -> float:
    env = make_env(EnvConfig("CartPole-v1"), mode="eval")
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=10_000 + episode)
        done, info = False, {}
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, _, terminated, truncated, info = env.step(int(action))
            done = terminated or truncated
        returns.append(info["episode"]["r"])
    env.close()
    return float(np.mean(returns))


def rl_zoo_pong() -> dict:
    """RL Zoo's Atari settings (the suite's preset before #19): every setting our Pong preset changes set
    back to the default, then RL Zoo's values; no Double DQN (SB3's DQN has none)."""
    defaults = DQNConfig()
    settings = {k: getattr(defaults, k) for k in DQNAgent.preset_for("ALE/Pong-v5")}
    return {**settings, **RL_ZOO_ATARI, "double_q": False}


FEWER_ENVS = {"num_envs": 8}
"""Candidate C of docs/dqn-atari.md: the preset with 8 envs instead of 16."""


def pong_overrides(warmup: int, buffer: int, double_q: bool = False) -> dict:
    return {**rl_zoo_pong(), "learning_starts": warmup, "buffer_size": buffer, "double_q": double_q}


class Clock(Callback):
    """The time at which env steps `first` and `last` were passed (several envs step a few at once)."""

    step_interval = 1

    def __init__(self, first: int, last: int):
        self.first, self.last, self.times = first, last, {}

    def on_step(self, ctx) -> None:
        for mark in (self.first, self.last):
            if ctx.global_step >= mark and mark not in self.times:
                self.times[mark] = time.perf_counter()


class ScoreClock(Callback):
    """The env step and minutes at which the mean of the last 100 real scores (of all so far, before
    100 episodes) first reached each threshold."""

    step_interval = 1  # on_step every step: a clock read, for the progress line

    def __init__(self, thresholds: tuple[float, ...], report_minutes: float = 5.0):
        self.thresholds, self.reached, self.scores = thresholds, {}, []
        self.started = self.reported = 0.0
        self.report_seconds = report_minutes * 60  # a progress line this often (0: never)

    def on_start(self, ctx) -> None:
        self.started = self.reported = time.perf_counter()

    def on_step(self, ctx) -> None:
        now = time.perf_counter()
        if self.report_seconds > 0 and now - self.reported >= self.report_seconds:
            self.reported = now
            mean = f"{np.mean(self.scores[-100:]):.2f}" if self.scores else "-"
            print(f"    step {ctx.global_step:,}, {(now - self.started) / 60:.1f} min: mean {mean} "
                  f"over the last {min(len(self.scores), 100)} of {len(self.scores)} games", flush=True)  # fmt: skip

    def on_episode(self, ctx, episodic_return: float, length: int) -> None:
        self.scores.append(episodic_return)
        mean = float(np.mean(self.scores[-100:]))
        for threshold in self.thresholds:
            if threshold not in self.reached and mean >= threshold:
                self.reached[threshold] = (ctx.global_step, (time.perf_counter() - self.started) / 60)
                print(f"    mean {mean:.2f} >= {threshold:g} at step {ctx.global_step:,}, "
                      f"{self.reached[threshold][1]:.1f} min", flush=True)  # fmt: skip


RACE_THRESHOLDS = (-15.0, -10.0, 0.0)


def pong_race(minutes: float, seed: int, device: str, report_minutes: float = 5.0) -> dict[str, dict]:
    """Each preset for `minutes` of wall time: when the mean score reached each of RACE_THRESHOLDS."""
    results = {}
    for name, settings in (("ours", {}), ("rl-zoo", rl_zoo_pong())):
        print(f"  Pong race, {name} preset, seed {seed}, {minutes:g} min", flush=True)
        agent = make("dqn", env="ALE/Pong-v5", seed=seed, device=device, **settings)
        clock = ScoreClock(RACE_THRESHOLDS, report_minutes)
        budget = DQNAgent.step_budgets["ALE/Pong-v5"] if not settings else 10_000_000  # RL Zoo's budget
        result = agent.learn(budget, callbacks=[StopAfter(minutes=minutes), clock])
        results[name] = {"reached": clock.reached, "steps": result.global_step, "episodes": len(clock.scores),
                         "last": float(np.mean(clock.scores[-100:])) if clock.scores else float("nan")}  # fmt: skip
        del agent
    return results


def ours_pong_sps(settings: dict, warmup: int, window: int, device: str) -> float:
    # Asked for warmup + window steps, epsilon decays over the same fraction of them as SB3's does.
    agent = make("dqn", env="ALE/Pong-v5", seed=0, device=device, **settings)
    clock = Clock(warmup, warmup + window)
    agent.learn(warmup + window, callbacks=[clock])
    return window / (clock.times[warmup + window] - clock.times[warmup])


def sb3_pong_sps(warmup: int, window: int, buffer: int, device: str) -> float:
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback

    times = {}

    class Clock(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps in (warmup, warmup + window):
                times[self.num_timesteps] = time.perf_counter()
            return True

    env = make_env(EnvConfig("ALE/Pong-v5"), seed=0)
    kwargs = sb3_kwargs(make("dqn", env="ALE/Pong-v5", **pong_overrides(warmup, buffer)).config)
    kwargs.pop("policy_kwargs")
    model = DQN("CnnPolicy", env, seed=0, device=device, verbose=0, **kwargs)
    model.learn(warmup + window, callback=Clock())
    return window / (times[warmup + window] - times[warmup])


def plain_nature_q(n_actions: int = 6) -> torch.nn.Sequential:
    """The Nature-CNN Q-network as plain torch layers, default memory format (no tuning)."""
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(4, 32, 8, stride=4), nn.ReLU(), nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
        nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(), nn.Flatten(), nn.Linear(3136, 512), nn.ReLU(),
        nn.Linear(512, n_actions),
    )  # fmt: skip


def seconds_per_call(update, device: str, repeats: int) -> float:
    """Mean seconds of `update()` over `repeats` calls after 3 warm-up calls (CUDA synchronised)."""
    for _ in range(3):
        update()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        update()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / repeats


def ceiling_sps(device: str, repeats: int = 30) -> float:
    """One plain-torch Nature-CNN DQN update (online fwd+bwd, target fwd, Adam, grad clip), batch 32
    of uint8 frames scaled to [0, 1], at one update per 4 env steps; env stepping and acting are free."""
    online, target = plain_nature_q().to(device), plain_nature_q().to(device)
    optimizer = torch.optim.Adam(online.parameters(), lr=1e-4)
    obs = torch.randint(0, 255, (32, 4, 84, 84), dtype=torch.uint8, device=device)
    actions = torch.zeros(32, 1, dtype=torch.int64, device=device)

    def update() -> None:
        with torch.no_grad():
            y = target(obs.float() / 255.0).max(1).values
        loss = torch.nn.functional.smooth_l1_loss(online(obs.float() / 255.0).gather(1, actions).squeeze(1), y)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(online.parameters(), 10.0)
        optimizer.step()

    return 4 / seconds_per_call(update, device, repeats)


def update_ms(
    batch: int, precision: str, device: str, repeats: int = 15, compile_update: bool = False, cnn_scale: float = 1.0
) -> float:
    """One update of our agent (Double DQN target, online forward and backward, Huber, Adam) on a batch of
    random frames, in milliseconds (with `compile_update`, after the compilation in the warm-up calls)."""
    space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    config = DQNConfig(batch_size=batch, precision=precision, compile_update=compile_update, cnn_scale=cnn_scale)
    torch._dynamo.reset()  # each agent's networks compile afresh, within dynamo's per-function recompile limit
    agent = DQNAgent(config, space, gym.spaces.Discrete(6), device=device)
    frames = torch.randint(0, 255, (batch, 4, 84, 84), dtype=torch.uint8, device=agent.device)
    zeros = torch.zeros(batch, device=agent.device)
    batch_ = ReplayBatch(frames, zeros.long(), zeros, frames.flip(0), zeros, zeros + 0.99)

    def update() -> None:
        agent._apply(agent.loss(batch_))

    return 1000 * seconds_per_call(update, device, repeats)


def auto_precision(device: str) -> str:
    """The precision the Atari preset's `precision=auto` resolves to for batch 32 on `device`."""
    space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    agent = DQNAgent(DQNConfig(batch_size=32, precision="auto"), space, gym.spaces.Discrete(6), device=device)
    return "bf16" if agent.bf16 else "fp32"


def update_ms_memory_returned(precision: str, device: str) -> float:
    """`update_ms(32, precision)` in a fresh process, where glibc hands freed memory back to the OS as it
    does by default (this process keeps it, as `Agent.learn` sets, which no call can undo)."""
    import multiprocessing  # noqa: PLC0415

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_update_ms_in_child, (precision, device, torch.get_num_threads()))


def _update_ms_in_child(precision: str, device: str, threads: int) -> float:
    torch.set_num_threads(threads)
    return update_ms(32, precision, device)


def replay_gib() -> tuple[float, float]:
    """1M Atari transitions: our buffer vs SB3's optimize_memory_usage buffer (arrays' nbytes)."""

    ours = ReplayBuffer(1_000_000, (4, 84, 84), np.uint8, frame_stack=4).nbytes
    try:
        from stable_baselines3.common.buffers import ReplayBuffer as SB3Buffer

        # np.zeros only reserves pages, so this does not touch 26 GiB of memory.
        sb3 = SB3Buffer(
            1_000_000,
            gym.spaces.Box(0, 255, (4, 84, 84), np.uint8),
            gym.spaces.Discrete(6),
            device="cpu",
            optimize_memory_usage=True,
            handle_timeout_termination=False,
        )
        theirs = sum(a.nbytes for a in (sb3.observations, sb3.actions, sb3.rewards, sb3.dones))
    except (MemoryError, ImportError):
        theirs = 1_000_000 * (4 * 84 * 84 + 8 + 4 + 4)  # the same arrays, from their shapes
    return ours / 2**30, theirs / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 30k CartPole steps, short Pong window")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default 1 2 (--quick: 1)")
    parser.add_argument("--cartpole-steps", type=int, default=None, help="default 50,000 (--quick: 30,000)")
    parser.add_argument("--eval-every", type=int, default=2_500)
    parser.add_argument("--eval-episodes", type=int, default=None, help="default 10 (--quick: 5)")
    parser.add_argument("--pong-warmup", type=int, default=None, help="default 5,000 (--quick: 1,000)")
    parser.add_argument("--pong-window", type=int, default=None, help="default 5,000 (--quick: 1,000)")
    parser.add_argument(
        "--cartpole-envs", type=int, nargs="+", default=[1], help="our CartPole runs with these num_envs"
    )
    parser.add_argument("--race-minutes", type=float, default=0.0, help="Pong race per preset (0: no race)")
    parser.add_argument("--race-seed", type=int, default=1)
    parser.add_argument("--race-report-minutes", type=float, default=5.0, help="a race progress line this often")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--skip", nargs="*", default=[], choices=["cartpole", "pong", "memory", "sb3"])
    args = parser.parse_args()
    # What is not given explicitly: the quick or the full value.
    for name, full, quick in (
        ("seeds", [1, 2], [1]),
        ("cartpole_steps", 50_000, 30_000),
        ("eval_episodes", 10, 5),
        ("pong_warmup", 5_000, 1_000),
        ("pong_window", 5_000, 1_000),
    ):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    rows: list[tuple[str, str, str, str]] = []
    race: dict[str, dict] = {}
    # Every row, SB3's and the plain-torch ceiling's too, runs under the allocator setting that our
    # `learn` makes for its process, not only those measured after our first `learn`.
    keep_freed_memory()
    try:
        if "memory" not in args.skip:
            ours, theirs = replay_gib()
            rows.append(("replay 1M Atari (GiB)", f"{ours:.2f}", f"{theirs:.2f}", f"{ours / theirs:.2f}"))
        if "cartpole" not in args.skip:
            cartpole(args, rows)
        if "pong" not in args.skip:
            pong(args, rows)
        if args.race_minutes > 0:
            race = pong_race(args.race_minutes, args.race_seed, args.device, args.race_report_minutes)
    except KeyboardInterrupt:
        print("\ninterrupted: table of what was measured so far")
    print(f"\n{'measure':<40} {'ours':>10} {'sb3':>10} {'ours/sb3':>9}")
    for row in rows:
        print(f"{row[0]:<40} {row[1]:>10} {row[2]:>10} {row[3]:>9}")
    if args.race_minutes > 0 and race:
        print_race(race, args.race_minutes, args.race_seed)


def print_race(race: dict[str, dict], minutes: float, seed: int) -> None:
    ours, zoo = race.get("ours"), race.get("rl-zoo")
    print(f"\nPong race, seed {seed}, {minutes:g} min each: mean of the last 100 real scores")
    print(f"{'measure':<40} {'our preset':>12} {'RL Zoo':>12} {'ours/zoo':>9}")
    for threshold in RACE_THRESHOLDS:
        for i, unit in ((0, "steps"), (1, "min")):
            a = ours and ours["reached"].get(threshold, (None, None))[i]
            b = zoo and zoo["reached"].get(threshold, (None, None))[i]
            spec = ",d" if unit == "steps" else ".1f"
            print(f"{f'{unit} to {threshold:g}':<40} {_fmt(a, spec):>12} {_fmt(b, spec):>12} {_ratio(a, b):>9}")
    for key, spec in (("steps", ",d"), ("episodes", "d"), ("last", ".2f")):
        a, b = ours and ours[key], zoo and zoo[key]
        ratio = "-" if key == "last" else _ratio(a, b)  # scores change sign: no ratio
        print(f"{f'at the end: {key}':<40} {_fmt(a, spec):>12} {_fmt(b, spec):>12} {ratio:>9}")


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "never" if value is None else format(value, spec)


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}"


def cartpole(args: argparse.Namespace, rows: list) -> None:
    for seed in args.seeds:
        print(f"CartPole-v1 seed {seed}, {args.cartpole_steps} steps", flush=True)
        sb3 = (
            None if "sb3" in args.skip else sb3_cartpole(seed, args.cartpole_steps, args.eval_every, args.eval_episodes)
        )
        for envs in args.cartpole_envs:
            ours = ours_cartpole(seed, args.cartpole_steps, args.eval_every, args.eval_episodes, envs)
            cartpole_rows(rows, f"CartPole s{seed}" + (f" {envs} envs" if envs > 1 else ""), ours, sb3)


def cartpole_rows(rows: list, label: str, ours: dict, sb3: dict | None) -> None:
    o_steps, o_wall = ours["solved"] or (None, None)
    s_steps, s_wall = (sb3 or {}).get("solved") or (None, None)
    rows.append((f"{label} steps to 475", _fmt(o_steps, "d"), _fmt(s_steps, "d"), _ratio(o_steps, s_steps)))
    rows.append((f"{label} train s to 475", _fmt(o_wall), _fmt(s_wall), _ratio(o_wall, s_wall)))
    rows.append(
        (
            f"{label} train s total",
            _fmt(ours["wall"]),
            _fmt(sb3 and sb3["wall"]),
            _ratio(ours["wall"], sb3 and sb3["wall"]),
        )
    )
    rows.append(
        (
            f"{label} final greedy",
            _fmt(ours["final"]),
            _fmt(sb3 and sb3["final"]),
            _ratio(ours["final"], sb3 and sb3["final"]),
        )
    )


def pong(args: argparse.Namespace, rows: list) -> None:
    buffer = max(10_000, args.pong_warmup + args.pong_window)
    torch.set_num_threads(default_threads(4))  # what DQNAgent.learn picks for the CNN
    print(f"Pong SPS: warm-up {args.pong_warmup}, window {args.pong_window}, device {args.device}", flush=True)
    # With bf16 instructions (or a GPU) both precisions are measured at every batch; without them bf16 is
    # emulated, measured once at batch 32 to show why `precision=auto` keeps float32 there. The other rows
    # measure the precision the preset runs at: `auto`, as the agent resolves it on this device.
    native = native_bf16(args.device)
    prec = auto_precision(args.device)
    print(f"  precision=auto takes {prec} here", flush=True)
    returned = update_ms_memory_returned(prec, args.device)
    print(f"  one update, batch 32: {returned:.1f} ms {prec} with freed memory returned to the OS", flush=True)
    ceiling = ceiling_sps(args.device)
    print(f"  ceiling {ceiling:.0f} steps/s", flush=True)
    for batch in (16, 32, 64, 128):
        fp32 = update_ms(batch, "fp32", args.device)
        bf16 = update_ms(batch, "bf16", args.device) if native else None
        plain = bf16 if prec == "bf16" else fp32  # at the preset's precision
        if native:
            print(f"  one update, batch {batch}: {fp32:.1f} ms fp32, {bf16:.1f} ms bf16", flush=True)
            rows.append((f"update ms, batch {batch}: bf16 (vs fp32)", f"{bf16:.1f}", f"{fp32:.1f}", _ratio(bf16, fp32)))
        elif batch == 32:
            emulated = update_ms(batch, "bf16", args.device, repeats=3)
            print(f"  one update, batch {batch}: {fp32:.1f} ms fp32, {emulated:.1f} ms bf16 emulated", flush=True)
            rows.append((f"update ms, batch {batch}: bf16 emulated (vs fp32)", f"{emulated:.1f}", f"{fp32:.1f}",
                         _ratio(emulated, fp32)))  # fmt: skip
        else:
            print(f"  one update, batch {batch}: {fp32:.1f} ms fp32", flush=True)
            rows.append((f"update ms, batch {batch}: fp32", f"{fp32:.1f}", "", ""))
        if batch <= 64:
            fast = update_ms(batch, prec, args.device, compile_update=True)
            print(f"  one update, batch {batch}: {fast:.1f} ms {prec} with torch.compile", flush=True)
            rows.append((f"update ms, batch {batch}: {prec} compiled (vs {prec})", f"{fast:.1f}", f"{plain:.1f}",
                         _ratio(fast, plain)))  # fmt: skip
        if batch == 32:
            rows.append((f"update ms, batch 32: {prec} memory kept (vs returned)", f"{plain:.1f}", f"{returned:.1f}",
                         _ratio(plain, returned)))  # fmt: skip
            half = update_ms(batch, prec, args.device, cnn_scale=0.5)
            print(f"  one update, batch {batch}: {half:.1f} ms {prec} with the half-width CNN", flush=True)
            rows.append((f"update ms, batch {batch}: {prec} cnn_scale 0.5 (vs 1)", f"{half:.1f}", f"{plain:.1f}",
                         _ratio(half, plain)))  # fmt: skip
    # SB3's DQN has no Double DQN: the matched comparison turns ours off too; Double DQN is measured beside.
    zoo = ours_pong_sps(pong_overrides(args.pong_warmup, buffer), args.pong_warmup, args.pong_window, args.device)
    print(f"  ours, RL Zoo settings {zoo:.0f} steps/s", flush=True)
    double = ours_pong_sps(pong_overrides(args.pong_warmup, buffer, double_q=True), args.pong_warmup,
                           args.pong_window, args.device)  # fmt: skip
    print(f"  ours, RL Zoo settings + Double DQN {double:.0f} steps/s", flush=True)
    # Learning starts halfway through the warm-up, so torch.compile's compilation (at the first update) and
    # the first updates fall before the window for both preset rows.
    settings = {"learning_starts": args.pong_warmup // 2, "buffer_size": buffer}
    preset = ours_pong_sps(settings, args.pong_warmup, args.pong_window, args.device)
    print(f"  ours, Pong preset {preset:.0f} steps/s", flush=True)
    eight = ours_pong_sps({**settings, **FEWER_ENVS}, args.pong_warmup, args.pong_window, args.device)
    print(f"  ours, Pong preset with 8 envs {eight:.0f} steps/s", flush=True)
    torch._dynamo.reset()
    compiled = ours_pong_sps({**settings, "compile_update": True}, args.pong_warmup, args.pong_window, args.device)
    print(f"  ours, Pong preset + compile_update {compiled:.0f} steps/s", flush=True)
    sb3 = None if "sb3" in args.skip else sb3_pong_sps(args.pong_warmup, args.pong_window, buffer, args.device)
    print(f"  sb3 {_fmt(sb3, '.0f')} steps/s", flush=True)
    rows.append(("Pong train steps/s, RL Zoo settings", f"{zoo:.0f}", _fmt(sb3, ".0f"), _ratio(zoo, sb3)))
    rows.append(("Pong train steps/s, + Double DQN", f"{double:.0f}", _fmt(sb3, ".0f"), _ratio(double, sb3)))
    rows.append(("Pong train steps/s, Pong preset", f"{preset:.0f}", _fmt(sb3, ".0f"), _ratio(preset, sb3)))
    rows.append(("Pong steps/s, preset with 8 envs (vs 16)", f"{eight:.0f}", f"{preset:.0f}",
                 _ratio(eight, preset)))  # fmt: skip
    rows.append(("Pong steps/s, preset compiled (vs preset)", f"{compiled:.0f}", f"{preset:.0f}",
                 _ratio(compiled, preset)))  # fmt: skip
    # The share of the plain-torch update ceiling (same batch and replay ratio) that training reaches.
    rows.append(("Pong ceiling steps/s (plain torch)", f"{ceiling:.0f}", "", f"{zoo / ceiling:.2f}"))


if __name__ == "__main__":
    main()
