"""The context protocol: the one object an agent's training loop reports to.

Every agent family, whether it steps one env (Q-table, DQN), collects batches of episodes (policy
gradient), runs worker processes (A3C) or evaluates generations (NEAT), reports its environment
steps, finished episodes and metrics to a `TrainContext` and asks it whether to stop. Agents define
this protocol; `agents.session.Session` implements it (run directory, TensorBoard, checkpoints,
callbacks, Ctrl-C), so an agent never opens a log or a file itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import torch

from envs import EnvConfig


class TrainContext(Protocol):
    env_config: EnvConfig
    """The env (and its preprocessing) this run trains on."""
    seed: int
    """The run's seed; env `k` of a run is seeded from it (`env_seed`)."""
    device: torch.device
    total_steps: int
    """Env steps the run is to reach, counting those before this `learn` call (schedules anneal to it)."""
    global_step: int
    """Env steps so far, all workers together."""
    episodes: int
    """Episodes finished so far."""
    episode_returns: list[float]
    """Real returns of the episodes finished in this `learn` call."""
    recent_returns: Sequence[float]
    """Real returns of the run's last 100 episodes, oldest first, earlier calls and sittings included."""
    run_dir: Path | None
    """Where the run's files go; None when learning without a run directory (nothing is written)."""

    @property
    def recent_mean_return(self) -> float:
        """Mean of `recent_returns`: the run's last 100 episodes (nan before the first)."""
        ...

    # Environments
    def env_seed(self, offset: int = 0) -> int:
        """Seed for an env: distinct per worker (`offset`) and per resume."""
        ...

    def make_env(self, *, offset: int = 0) -> gym.Env:
        """One training env of this run (the user's own env object for offset 0 when one was given)."""
        ...

    def make_vector_env(self, num_envs: int, *, mode: str = "auto", envs_per_step: int = 0) -> gym.vector.VectorEnv:
        """`envs.make_vector_env` for this run's env, seeded from the run's seed."""
        ...

    # Reporting
    def add_steps(self, n: int = 1) -> None:
        """Count `n` environment steps (all workers' steps, for parallel agents)."""
        ...

    def record_episode(self, episodic_return: float, length: int) -> None:
        """One finished episode with its real (unclipped) return."""
        ...

    def record_info(self, info: dict[str, Any]) -> None:
        """The episode `RecordEpisodeStatistics` put in a single env's `info`, if one ended."""
        ...

    def record_vector_info(self, infos: dict[str, Any]) -> list[tuple[float, int]]:
        """The same for a vector env's `infos`; returns the (return, length) of each recorded episode."""
        ...

    def log(self, metrics: dict[str, float]) -> None:
        """Scalars averaged until the next flush, e.g. `{"losses/td": 0.3}`."""
        ...

    def log_now(self, metrics: dict[str, float]) -> None:
        """Scalars written at the current step at once (per generation, per update)."""
        ...

    def artifact_path(self, name: str) -> Path | None:
        """Where to write a file of the run (a picture, say); None when there is no run directory."""
        ...

    # Control
    def should_stop(self) -> bool:
        """True once the step budget is spent, a callback or Ctrl-C / SIGTERM asked to stop."""
        ...

    def request_stop(self, reason: str) -> None: ...

    def request_checkpoint(self) -> None:
        """Ask for a checkpoint at the agent's next `maybe_checkpoint` (callbacks use this)."""
        ...

    def maybe_checkpoint(self) -> None:
        """Agents call this where their state is consistent; a checkpoint is written when one is due."""
        ...
