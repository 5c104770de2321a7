"""What the two agents of the Q-learning tutorial share: decaying schedules and epsilon-greedy with a
random tie-break, over discrete states and actions (`qtable`, `qnet`)."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import TypeVar

import gymnasium as gym
import numpy as np

from agents.base import StepwiseAgent, require_discrete
from agents.schedules import linear_schedule
from core.errors import ConfigError


@dataclass(frozen=True)
class DiscreteQConfig:
    learning_rate: float = 0.1
    """Step size at the start of training (the tutorial's network used 0.1)."""
    learning_rate_end: float = 0.01
    """Step size after `decay_steps`; a small final rate averages out slippery (stochastic) transitions."""
    gamma: float = 0.99
    """Discount; 0.99 rather than the tutorial table's 0.95, so the agent prefers the safe long way round."""
    epsilon_start: float = 1.0
    """Probability of a random action at the start."""
    epsilon_end: float = 0.05
    """Probability of a random action after `decay_steps`."""
    decay_steps: int = 100_000
    """Steps over which epsilon and the learning rate decay linearly."""

    def validate(self) -> None:
        if self.learning_rate <= 0 or self.learning_rate_end <= 0:
            raise ConfigError("learning_rate and learning_rate_end must be positive")
        if not 0 <= self.gamma <= 1:
            raise ConfigError("gamma must be in [0, 1]")


C = TypeVar("C", bound=DiscreteQConfig)


class DiscreteQAgent(StepwiseAgent[C]):
    """Step counter, schedules and exploration; subclasses provide `q_row` and the update."""

    default_env = "FrozenLake-v1"
    default_steps = 150_000
    resume_settings = frozenset({"learning_rate", "learning_rate_end", "epsilon_end", "decay_steps"})
    search_space = {
        "learning_rate": {"low": 0.01, "high": 1.0, "log": True},
        "learning_rate_end": {"low": 0.001, "high": 0.1, "log": True},
        "gamma": {"low": 0.9, "high": 0.999},
        "epsilon_end": {"low": 0.0, "high": 0.2},
        "decay_steps": {"low": 1_000, "high": 200_000, "log": True},
    }

    @classmethod
    def check_spaces(cls, observation_space: gym.Space, action_space: gym.Space) -> None:
        require_discrete(cls.name, observation_space, "observation")
        require_discrete(cls.name, action_space, "action")

    def __init__(self, config: DiscreteQConfig, observation_space, action_space, **kwargs):
        super().__init__(config, observation_space, action_space, **kwargs)
        self.steps = 0

    @property
    def epsilon(self) -> float:
        c = self.config
        return linear_schedule(c.epsilon_start, c.epsilon_end, c.decay_steps, self.steps)

    @property
    def learning_rate(self) -> float:
        c = self.config
        return linear_schedule(c.learning_rate, c.learning_rate_end, c.decay_steps, self.steps)

    @abstractmethod
    def q_row(self, state: int) -> np.ndarray:
        """(n_actions,) Q-values of one discrete state, as numpy."""

    def act(self, observation, state=None) -> tuple[int, None]:
        return int(np.argmax(self.q_row(int(observation)))), state

    def explore(self, observation) -> int:
        if self.rng.random() < self.epsilon:
            return int(self.rng.integers(self.action_space.n))
        row = self.q_row(int(observation))
        # Random tie-break: an all-zero row must not always pick action 0.
        return int(self.rng.choice(np.flatnonzero(row == row.max())))
