"""Greedy evaluation of a trained agent: returns, a window to watch it, or mp4 videos."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from agents.base import Agent
from core.errors import SuiteError
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
) -> np.ndarray:
    """Returns of `episodes` greedy episodes on the evaluation env (no reward clipping, no life loss);
    `env_config` defaults to the agent's."""
    if episodes < 1:
        raise SuiteError(f"--episodes must be at least 1, not {episodes}")
    env = make_env(
        env_config or agent.env_config,
        seed=seed,
        mode="eval",
        render_mode="human" if render else None,
        video_dir=video_dir,
    )
    returns = []
    try:
        for episode in range(episodes):
            observation, info = env.reset(seed=seed + episode)
            state = agent.initial_state()
            while True:
                action, state = agent.act(observation, state)
                observation, _, terminated, truncated, info = env.step(action)
                if terminated or truncated:
                    break
            # RecordEpisodeStatistics holds the real score, whatever the preprocessing did.
            returns.append(float(info["episode"]["r"]))
    finally:
        env.close()
    return np.asarray(returns)
