"""A one-layer Q-network on one-hot states, trained online by gradient descent on the squared TD error.

The second half of "Q-learning with tables and neural networks" (Juliani, 2016): a 16x4 weight
matrix with no hidden layer and no bias, so Q(s, .) = onehot(s) @ W, updated once per step with plain
SGD. It learns the same table the hard way, which is the point: the same update with a network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from agents.base import StepwiseAgent, require_discrete
from agents.schedules import linear_schedule
from trainer.errors import ConfigError
from trainer.seeding import generator_state, set_generator_state


@dataclass(frozen=True)
class QNetConfig:
    learning_rate: float = 0.1
    """SGD step size (the tutorial's 0.1)."""
    learning_rate_end: float = 0.01
    """Step size after `decay_steps`; decaying it lets the weights settle on slippery ice."""
    gamma: float = 0.99
    """Discount (the tutorial's 0.99)."""
    epsilon_start: float = 1.0
    """Probability of a random action at the start."""
    epsilon_end: float = 0.05
    """Probability of a random action after `decay_steps`."""
    decay_steps: int = 100_000
    """Steps over which epsilon and the learning rate decay linearly."""
    init_scale: float = 0.01
    """Weights start uniform in [0, init_scale) as in the tutorial."""

    def validate(self) -> None:
        if self.learning_rate <= 0 or self.learning_rate_end <= 0:
            raise ConfigError("learning_rate and learning_rate_end must be positive")
        if not 0 <= self.gamma <= 1:
            raise ConfigError("gamma must be in [0, 1]")


class QNetworkAgent(StepwiseAgent):
    name = "qnet"
    Config = QNetConfig
    default_env = "FrozenLake-v1"
    default_steps = 150_000

    @classmethod
    def check_spaces(cls, observation_space: gym.Space, action_space: gym.Space) -> None:
        require_discrete("qnet (one-hot states)", observation_space, "observation")
        require_discrete("qnet", action_space, "action")

    def __init__(self, config: QNetConfig, observation_space, action_space, **kwargs):
        super().__init__(config, observation_space, action_space, **kwargs)
        self.n_states = int(observation_space.n)
        self.q_network = nn.Linear(self.n_states, int(action_space.n), bias=False)
        with torch.no_grad():
            generator = torch.Generator().manual_seed(self.seed)
            self.q_network.weight.uniform_(0.0, config.init_scale, generator=generator)
        # The network is tiny: the CPU beats any kernel launch, whatever --device says.
        self.optimizer = torch.optim.SGD(self.q_network.parameters(), lr=config.learning_rate)
        self.steps = 0
        self._eye = torch.eye(self.n_states)

    @property
    def epsilon(self) -> float:
        c = self.config
        return linear_schedule(c.epsilon_start, c.epsilon_end, c.decay_steps, self.steps)

    def q_values(self, state: int) -> torch.Tensor:
        """(n_actions,) float32 Q-values of one discrete state."""
        return self.q_network(self._eye[state])

    def act(self, observation: Any, state: Any = None) -> tuple[int, Any]:
        with torch.inference_mode():
            return int(self.q_values(int(observation)).argmax()), state

    def explore(self, observation: Any) -> int:
        if self.rng.random() < self.epsilon:
            return int(self.rng.integers(self.action_space.n))
        with torch.inference_mode():
            q = self.q_values(int(observation)).numpy()
        return int(self.rng.choice(np.flatnonzero(q == q.max())))

    def td_loss(self, s: int, a: int, reward: float, s_next: int, terminated: bool) -> torch.Tensor:
        """Squared TD error of one transition; the target is held fixed (no gradient through it)."""
        with torch.no_grad():
            bootstrap = 0.0 if terminated else self.config.gamma * float(self.q_values(s_next).max())
        target = reward + bootstrap
        return (target - self.q_values(s)[a]).pow(2)

    def observe(self, observation, action, reward, next_observation, terminated, truncated):
        c = self.config
        for group in self.optimizer.param_groups:
            group["lr"] = linear_schedule(c.learning_rate, c.learning_rate_end, c.decay_steps, self.steps)
        loss = self.td_loss(int(observation), int(action), reward, int(next_observation), terminated)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.steps += 1
        if self.steps % 100 == 0:
            return {"losses/td_squared": float(loss.detach()), "charts/epsilon": self.epsilon}
        return None

    def state_dict(self) -> dict[str, Any]:
        return {
            "q_network": self.q_network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "steps": self.steps,
            "rng": generator_state(self.rng),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.q_network.load_state_dict(state["q_network"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps = int(state["steps"])
        set_generator_state(self.rng, state["rng"])
