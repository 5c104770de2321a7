"""Greedy evaluation of a trained agent (returns, a window to watch it, mp4 videos at real speed), and the
`Evaluate` callback that runs it during training."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np

from agents.base import Agent
from agents.callbacks import Callback
from agents.session import Session
from core.errors import ConfigError, SuiteError
from envs import EnvConfig, make_env


def has_display() -> bool:
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def evaluate_agent(
    agent: Agent,
    env_config: EnvConfig | None = None,
    *,
    episodes: int = 10,
    seed: int = 0,
    render: bool = False,
    video_dir: str | Path | None = None,
    video_name: str = "rl-video",
    video_episodes: int | None = None,
) -> np.ndarray:
    """Returns of `episodes` greedy episodes on the evaluation env (no reward clipping, no life loss);
    `env_config` defaults to the agent's. With `video_dir`, the first `video_episodes` (default: all) are
    recorded there as `<video_name>-episode-<k>.mp4`, at the game's real speed."""
    if episodes < 1:
        raise SuiteError(f"--episodes must be at least 1, not {episodes}")
    env = make_env(
        env_config or agent.env_config,
        seed=seed,
        mode="eval",
        render_mode="human" if render else None,
        video_dir=video_dir,
        video_name=video_name,
        video_episodes=video_episodes,
    )
    try:
        return np.asarray([play_episode(agent, env, seed + episode) for episode in range(episodes)])
    finally:
        env.close()


def play_episode(agent: Agent, env: gym.Env, seed: int | None = None) -> float:
    """One greedy episode; its real score (`RecordEpisodeStatistics` holds it, whatever the preprocessing)."""
    observation, info = env.reset(seed=seed)
    state = agent.initial_state()
    while True:
        action, state = agent.act(observation, state)
        observation, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            return float(info["episode"]["r"])


class Evaluate(Callback):
    """Every `every` env steps the greedy policy plays `episodes` episodes of a separate env in eval mode
    (real scores: no reward clipping, no life-loss endings); `eval/mean_return` and `eval/std_return` are
    logged against env steps, and `checkpoints/best.pt` is written (atomically) whenever the mean beats
    the best so far, of the policy alone (`Agent.policy_state_dict`: without DQN's saved replay). The
    run's best and this schedule (with `stop_at`) are kept in its checkpoints, so a resumed run keeps them
    (`train.py --resume` evaluates, and stops, on the same schedule unless told otherwise). With
    `video_every`, one evaluation episode is recorded to `<run>/videos/step-<N>-episode-0.mp4` at that
    interval. Agents with worker processes are evaluated from a snapshot of their weights while the
    workers go on training. With `stop_at`, the run stops (with its checkpoint) at the first evaluation
    whose mean reaches it, as Stable-Baselines3's `StopTrainingOnRewardThreshold` does."""

    def __init__(
        self,
        every: int = 0,
        episodes: int = 5,
        *,
        video_every: int = 0,
        seed: int = 1_000_000,
        stop_at: float | None = None,
    ):
        if every < 0 or video_every < 0 or not (every or video_every):
            raise ConfigError("Evaluate needs a positive `every` (or `video_every`), in env steps")
        if episodes < 1:
            raise ConfigError(f"Evaluate needs at least 1 episode, not {episodes}")
        if stop_at is not None and not (every and math.isfinite(stop_at)):
            raise ConfigError(f"stopping at an evaluation mean needs a finite return and evaluations, not {stop_at}")
        self.every, self.episodes, self.video_every, self.seed = every, episodes, video_every, seed
        self.stop_at = stop_at
        self.step_interval = math.gcd(every, video_every)
        self.history: list[tuple[int, float, float]] = []
        """(env step, mean return, std return) of every evaluation."""
        self.videos: list[Path] = []
        self._next = {"eval": math.inf, "video": math.inf}

    def on_start(self, ctx: Session) -> None:
        schedule: dict[str, int | float] = {
            "every": self.every,
            "episodes": self.episodes,
            "video_every": self.video_every,
        }
        if self.stop_at is not None:
            schedule["stop_at"] = float(self.stop_at)
        ctx.agent.run.evaluation = schedule
        for kind, interval in (("eval", self.every), ("video", self.video_every)):
            self._next[kind] = (ctx.global_step // interval + 1) * interval if interval else math.inf

    def _due(self, kind: str, step: int, interval: int) -> bool:
        if step < self._next[kind]:
            return False
        self._next[kind] = (step // interval + 1) * interval
        return True

    def on_step(self, ctx: Session) -> None:
        step = ctx.global_step
        evaluating = self._due("eval", step, self.every)
        recording = self._due("video", step, self.video_every) and ctx.run_dir is not None
        if not (evaluating or recording):
            return
        policy = ctx.agent.snapshot()
        returns = evaluate_agent(
            policy,
            episodes=self.episodes if evaluating else 1,
            seed=self.seed,
            video_dir=ctx.run_dir / "videos" if recording else None,
            video_name=f"step-{step}",
            video_episodes=1,
        )
        if recording:
            self.videos.append(ctx.run_dir / "videos" / f"step-{step}-episode-0.mp4")
        if evaluating:
            self._record(ctx, policy, step, float(returns.mean()), float(returns.std()))

    def _record(self, ctx: Session, policy: Agent, step: int, mean: float, std: float) -> None:
        self.history.append((step, mean, std))
        ctx.log_now({"eval/mean_return": mean, "eval/std_return": std})
        run = ctx.agent.run
        if run.best_return is None or mean > run.best_return:
            run.best_return = mean
            ctx.checkpoint_as("best.pt", policy, policy_only=True)
        if self.stop_at is not None and mean >= self.stop_at:
            ctx.request_stop(f"greedy evaluation mean {mean:.3f} reached {self.stop_at:g}")
