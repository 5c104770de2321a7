"""Tabular Q-learning for envs with discrete observations and actions (FrozenLake, Taxi, CliffWalking).

From "Q-learning with tables and neural networks" (Juliani, 2016): one Bellman update per step,
Q[s, a] += lr * (r + gamma * max_a' Q[s', a'] - Q[s, a]), with epsilon-greedy exploration that decays
linearly instead of the tutorial's noisy argmax, and a learning rate that decays too so the table
settles on slippery (stochastic) ice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from agents.base import StepwiseAgent, require_discrete
from agents.schedules import linear_schedule
from trainer.errors import ConfigError
from trainer.seeding import generator_state, set_generator_state


@dataclass(frozen=True)
class QTableConfig:
    learning_rate: float = 0.1
    """Step size of the Bellman update at the start of training."""
    learning_rate_end: float = 0.01
    """Step size reached after `decay_steps`; a small final rate averages out slippery transitions."""
    gamma: float = 0.99
    """Discount; 0.99 rather than the tutorial's 0.95 so the table prefers the safe long way round."""
    epsilon_start: float = 1.0
    """Probability of a random action at the start."""
    epsilon_end: float = 0.05
    """Probability of a random action after `decay_steps`."""
    decay_steps: int = 100_000
    """Steps over which epsilon and the learning rate decay linearly."""
    initial_q: float = 0.0
    """Initial value of every table entry (optimistic values explore more)."""

    def validate(self) -> None:
        if not 0 < self.learning_rate <= 1 or not 0 < self.learning_rate_end <= 1:
            raise ConfigError("learning_rate and learning_rate_end must be in (0, 1]")
        if not 0 <= self.gamma <= 1:
            raise ConfigError("gamma must be in [0, 1]")


class QTableAgent(StepwiseAgent):
    name = "qtable"
    Config = QTableConfig
    default_env = "FrozenLake-v1"
    default_steps = 150_000
    presets = {
        # Deterministic grids: a large step size is safe and fast. (Gymnasium 1.x names: Taxi-v4,
        # CliffWalking-v1; the older Taxi-v3 and CliffWalking-v0 are gone.)
        "Taxi-v4": {"learning_rate": 0.5, "learning_rate_end": 0.1, "decay_steps": 100_000},
        "CliffWalking-v1": {"learning_rate": 0.5, "learning_rate_end": 0.1, "decay_steps": 20_000},
    }

    @classmethod
    def check_spaces(cls, observation_space: gym.Space, action_space: gym.Space) -> None:
        require_discrete("qtable (a Q-table)", observation_space, "observation")
        require_discrete("qtable (a Q-table)", action_space, "action")

    def __init__(self, config: QTableConfig, observation_space, action_space, **kwargs):
        super().__init__(config, observation_space, action_space, **kwargs)
        self.q = np.full((observation_space.n, action_space.n), config.initial_q, dtype=np.float64)
        self.steps = 0

    @property
    def epsilon(self) -> float:
        c = self.config
        return linear_schedule(c.epsilon_start, c.epsilon_end, c.decay_steps, self.steps)

    @property
    def learning_rate(self) -> float:
        c = self.config
        return linear_schedule(c.learning_rate, c.learning_rate_end, c.decay_steps, self.steps)

    def act(self, observation: Any, state: Any = None) -> tuple[int, Any]:
        return int(np.argmax(self.q[int(observation)])), state

    def explore(self, observation: Any) -> int:
        if self.rng.random() < self.epsilon:
            return int(self.rng.integers(self.q.shape[1]))
        row = self.q[int(observation)]
        # Random tie-break: an all-zero row must not always pick action 0.
        return int(self.rng.choice(np.flatnonzero(row == row.max())))

    def td_update(self, s: int, a: int, reward: float, s_next: int, terminated: bool) -> float:
        """One Bellman update; returns the TD error. Bootstraps on truncation, not on termination."""
        target = reward if terminated else reward + self.config.gamma * self.q[s_next].max()
        td_error = target - self.q[s, a]
        self.q[s, a] += self.learning_rate * td_error
        return float(td_error)

    def observe(self, observation, action, reward, next_observation, terminated, truncated):
        td_error = self.td_update(int(observation), int(action), reward, int(next_observation), terminated)
        self.steps += 1
        if self.steps % 100 == 0:
            return {"losses/td_error": abs(td_error), "charts/epsilon": self.epsilon}
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"q": torch.from_numpy(self.q.copy()), "steps": self.steps, "rng": generator_state(self.rng)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        q = state["q"].numpy()
        if q.shape != self.q.shape:
            raise ValueError(f"Q-table of shape {tuple(q.shape)} does not fit this env's {self.q.shape}")
        self.q = q.astype(np.float64).copy()
        self.steps = int(state["steps"])
        set_generator_state(self.rng, state["rng"])
