"""Tabular Q-learning for envs with discrete observations and actions (FrozenLake, Taxi, CliffWalking).

From "Q-learning with tables and neural networks" (Juliani, 2016): one Bellman update per step,
Q[s, a] += lr * (r + gamma * max_a' Q[s', a'] - Q[s, a]), with epsilon-greedy exploration that decays
linearly instead of the tutorial's noisy argmax, and a learning rate that decays too so the table
settles on slippery (stochastic) ice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from agents.tabular import DiscreteQAgent, DiscreteQConfig
from core.errors import ConfigError
from core.seeding import generator_state, set_generator_state


@dataclass(frozen=True)
class QTableConfig(DiscreteQConfig):
    initial_q: float = 0.0
    """Initial value of every table entry (optimistic values explore more)."""

    def validate(self) -> None:
        super().validate()
        if self.learning_rate > 1 or self.learning_rate_end > 1:
            raise ConfigError("learning_rate and learning_rate_end must be at most 1 for a table")


class QTableAgent(DiscreteQAgent[QTableConfig]):
    name = "qtable"
    Config = QTableConfig
    presets = {
        # Deterministic grids: a large step size is safe and fast. (Gymnasium 1.x names: Taxi-v4,
        # CliffWalking-v1; the older Taxi-v3 and CliffWalking-v0 are gone.)
        "Taxi-v4": {"learning_rate": 0.5, "learning_rate_end": 0.1, "decay_steps": 100_000},
        "CliffWalking-v1": {"learning_rate": 0.5, "learning_rate_end": 0.1, "decay_steps": 20_000},
    }

    def __init__(self, config: QTableConfig, observation_space, action_space, **kwargs):
        super().__init__(config, observation_space, action_space, **kwargs)
        self.q = np.full((observation_space.n, action_space.n), config.initial_q, dtype=np.float64)

    def q_row(self, state: int) -> np.ndarray:
        return self.q[state]

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
