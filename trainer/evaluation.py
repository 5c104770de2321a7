"""Greedy evaluation of a trained agent, from an object or from a checkpoint."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents import get_agent_class
from agents.base import Agent
from envs import EnvConfig, make_env, spaces_of
from trainer.checkpoint import load_checkpoint
from trainer.config import build_config
from trainer.errors import CheckpointError, SuiteError


@dataclass
class LoadedAgent:
    agent: Agent
    env_config: EnvConfig
    checkpoint: dict[str, Any]


def load_agent(target: str | Path, device: str = "cpu") -> LoadedAgent:
    """Rebuild an agent from a run directory or checkpoint file, ready to `act`."""
    data = load_checkpoint(target)
    try:
        agent_cls = get_agent_class(data["agent"])
        config = build_config(agent_cls.Config, data["agent_config"])
        env_config = EnvConfig(**data["env_config"])
        agent = agent_cls(config, *spaces_of(env_config), device=device, seed=int(data["run"]["seed"]))
        agent.load_state_dict(data["agent_state"])
    except SuiteError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{target} does not hold a usable agent ({type(exc).__name__}: {exc})") from exc
    return LoadedAgent(agent, env_config, data)


def has_display() -> bool:
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def evaluate_agent(
    agent: Agent,
    env_config: EnvConfig,
    *,
    episodes: int = 10,
    seed: int = 0,
    render: bool = False,
    video_dir: str | Path | None = None,
) -> np.ndarray:
    """Returns of `episodes` greedy episodes on the evaluation env (no reward clipping, no life loss)."""
    if episodes < 1:
        raise SuiteError(f"--episodes must be at least 1, not {episodes}")
    env = make_env(
        env_config,
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
