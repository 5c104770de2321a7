"""`EpisodeBatch`: n episodes played side by side, each slot once, for callers that score a batch of
policies (NEAT's population). Where gymnasium has a numpy implementation of the whole batch (CartPole)
one array step moves every slot; elsewhere each slot is its own `make_env` copy and only the slots whose
episode goes on are stepped (a vector env would step, and autoreset, every slot until the longest
episode ends, several times the work on LunarLander)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from envs.factory import make_env, numpy_batch_available
from envs.spec import EnvConfig


class EpisodeBatch:
    def __init__(self, config: EnvConfig, n: int, seed: int):
        self.n = n
        self.vector_env: gym.vector.VectorEnv | None = None
        self.envs: list[gym.Env] = []
        if numpy_batch_available(config):
            self.vector_env = gym.make_vec(
                config.name, num_envs=n, vectorization_mode="vector_entry_point", **config.env_kwargs
            )
            self.vector_env.action_space.seed(seed)
            self.observation_space = self.vector_env.single_observation_space
            self.action_space = self.vector_env.single_action_space
        else:
            self.envs = [make_env(config, seed=seed + i) for i in range(n)]
            self.observation_space, self.action_space = self.envs[0].observation_space, self.envs[0].action_space
        self.active = np.zeros(n, dtype=bool)
        """Slots whose episode goes on."""
        self._observations: np.ndarray | None = None

    @property
    def vectorized(self) -> bool:
        """One array step moves every slot (no need to spread the slots over processes)."""
        return self.vector_env is not None

    def reset(self, seed: int) -> np.ndarray:
        """(n, obs_dim) float64 first observations; slot i is reset with seed + i."""
        if self.vector_env is not None:
            observations, _ = self.vector_env.reset(seed=seed)
        else:
            observations = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(self.envs)])
        self._observations = np.asarray(observations, dtype=np.float64).reshape(self.n, -1)
        self.active[:] = True
        return self._observations.copy()

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Step the active slots with their rows of `actions`; returns (observations (n, obs_dim) float64,
        rewards (n,) float64). Finished slots keep their last observation and earn 0; `active` is
        updated."""
        rewards = np.zeros(self.n)
        if self.vector_env is not None:
            observations, reward, terminated, truncated, _ = self.vector_env.step(actions)
            rewards = np.where(self.active, reward, 0.0)
            self._observations[self.active] = np.asarray(observations, np.float64).reshape(self.n, -1)[self.active]
            self.active &= ~(np.asarray(terminated) | np.asarray(truncated))
        else:
            for i in np.flatnonzero(self.active):
                observation, reward, terminated, truncated, _ = self.envs[i].step(actions[i])
                self._observations[i] = np.ravel(observation)
                rewards[i] = float(reward)
                self.active[i] = not (terminated or truncated)
        return self._observations.copy(), rewards

    def close(self) -> None:
        if self.vector_env is not None:
            self.vector_env.close()
        for env in self.envs:
            env.close()
