"""`TrainContext`: the one object an agent's `learn` loop talks to.

Every agent family, whether it steps one env (Q-table, DQN), collects batches of episodes (policy
gradient), runs worker processes (A3C) or evaluates generations (NEAT), reports its environment
steps, finished episodes and metrics here; the trainer turns them into the same TensorBoard tags,
progress bar, checkpoints and stop decisions for all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch

from envs import EnvConfig, make_env, make_vector_env
from envs.factory import finished_episodes

if TYPE_CHECKING:
    from trainer.logger import RunLogger


class TrainContext:
    def __init__(
        self,
        *,
        env_config: EnvConfig,
        seed: int,
        device: torch.device,
        total_steps: int,
        run_dir: Path,
        logger: RunLogger,
        save_checkpoint: Callable[[], None],
        checkpoint_every: int,
        global_step: int = 0,
        episodes: int = 0,
        resumed: bool = False,
    ):
        self.env_config = env_config
        self.seed = seed
        self.device = device
        self.total_steps = total_steps
        self.run_dir = run_dir
        self.global_step = global_step
        self.episodes = episodes
        self.resumed = resumed
        self.episode_returns: list[float] = []
        self.interrupted = False
        self.stop_reason: str | None = None
        self._logger = logger
        self._save_checkpoint = save_checkpoint
        self._checkpoint_every = checkpoint_every
        self._last_checkpoint_step = global_step
        self._episode_hooks: list[Callable[[TrainContext, float], bool | None]] = []

    # Environments -----------------------------------------------------------------------------
    def env_seed(self, offset: int = 0) -> int:
        """Seed for an env: distinct per worker (`offset`) and per resume (episodes done so far)."""
        return self.seed + offset + 1_000_003 * self.episodes

    def make_env(self, *, offset: int = 0, **env_changes: Any) -> gym.Env:
        config = self._config_with(env_changes)
        return make_env(config, seed=self.env_seed(offset), mode="train")

    def make_vector_env(
        self,
        num_envs: int,
        *,
        asynchronous: bool = False,
        batched: bool = False,
        envs_per_step: int = 0,
        **env_changes: Any,
    ) -> gym.vector.VectorEnv:
        """The factory's `make_vector_env` for this run's env, seeded from the run's seed."""
        config = self._config_with(env_changes)
        return make_vector_env(
            config,
            num_envs,
            seed=self.env_seed(),
            asynchronous=asynchronous,
            batched=batched,
            envs_per_step=envs_per_step,
        )

    def _config_with(self, changes: dict[str, Any]) -> EnvConfig:
        return replace(self.env_config, **changes) if changes else self.env_config

    # Reporting --------------------------------------------------------------------------------
    def add_steps(self, n: int = 1) -> None:
        """Count `n` environment steps (all workers' steps, for parallel agents)."""
        self.global_step += n
        self._logger.maybe_flush(self.global_step)

    def record_episode(self, episodic_return: float, length: int) -> None:
        """One finished episode with its real (unclipped) return."""
        self.episodes += 1
        self.episode_returns.append(float(episodic_return))
        self._logger.episode(self.global_step, float(episodic_return), int(length))
        for hook in self._episode_hooks:
            if hook(self, float(episodic_return)):
                self.request_stop("an episode hook asked to stop")

    def record_info(self, info: dict[str, Any]) -> None:
        """Log the episode `RecordEpisodeStatistics` put in a single env's `info`, if one ended."""
        episode = info.get("episode")
        if episode is not None:
            self.record_episode(float(episode["r"]), int(episode["l"]))

    def record_vector_info(self, infos: dict[str, Any]) -> list[tuple[float, int]]:
        """Same for a vector env's batched `infos`, whichever autoreset mode it uses; returns the
        (return, length) of the episodes it recorded, for agents that keep their own statistics."""
        episodes = finished_episodes(infos)
        for episodic_return, length in episodes:
            self.record_episode(episodic_return, length)
        return episodes

    def log(self, metrics: dict[str, float]) -> None:
        """Scalars averaged until the next flush, e.g. `{"losses/td": 0.3, "charts/epsilon": 0.1}`."""
        self._logger.scalars(metrics)

    def log_now(self, metrics: dict[str, float]) -> None:
        """Scalars written at the current step at once (per generation, per update)."""
        self._logger.scalars_now(self.global_step, metrics)

    def add_episode_hook(self, hook: Callable[[TrainContext, float], bool | None]) -> None:
        """`hook(ctx, episodic_return)` after every episode; returning True stops training."""
        self._episode_hooks.append(hook)

    # Control ----------------------------------------------------------------------------------
    @property
    def recent_mean_return(self) -> float:
        window = self.episode_returns[-100:]
        return float(np.mean(window)) if window else float("nan")

    def should_stop(self) -> bool:
        return self.interrupted or self.stop_reason is not None or self.global_step >= self.total_steps

    def request_stop(self, reason: str) -> None:
        self.stop_reason = reason

    def maybe_checkpoint(self) -> None:
        """Agents call this where their state is consistent; it saves when the interval has passed."""
        if self.global_step - self._last_checkpoint_step >= self._checkpoint_every:
            self.checkpoint()

    def checkpoint(self) -> None:
        self._save_checkpoint()
        self._last_checkpoint_step = self.global_step
