"""A one-layer Q-network on one-hot states, trained online by gradient descent on the squared TD error.

The second half of "Q-learning with tables and neural networks" (Juliani, 2016): a 16x4 weight
matrix with no hidden layer and no bias, so Q(s, .) = onehot(s) @ W, updated once per step with plain
SGD. It learns the same table the hard way, which is the point: the same update with a network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from agents.tabular import DiscreteQAgent, DiscreteQConfig
from core.seeding import generator_state, set_generator_state


@dataclass(frozen=True)
class QNetConfig(DiscreteQConfig):
    init_scale: float = 0.01
    """Weights start uniform in [0, init_scale) as in the tutorial."""


class QNetworkAgent(DiscreteQAgent[QNetConfig]):
    name = "qnet"
    Config = QNetConfig

    def __init__(self, config: QNetConfig, observation_space, action_space, **kwargs):
        super().__init__(config, observation_space, action_space, **kwargs)
        self.n_states = int(observation_space.n)
        self.q_network = nn.Linear(self.n_states, int(action_space.n), bias=False)
        with torch.no_grad():
            generator = torch.Generator().manual_seed(self.seed)
            self.q_network.weight.uniform_(0.0, config.init_scale, generator=generator)
        # The network is tiny: one-state updates on the CPU beat any kernel launch, whatever --device says.
        self.optimizer = torch.optim.SGD(self.q_network.parameters(), lr=config.learning_rate)
        self._eye = torch.eye(self.n_states)

    def q_values(self, state: int) -> torch.Tensor:
        """(n_actions,) float32 Q-values of one discrete state."""
        return self.q_network(self._eye[state])

    def q_row(self, state: int) -> np.ndarray:
        with torch.inference_mode():
            return self.q_values(state).numpy()

    def td_loss(self, s: int, a: int, reward: float, s_next: int, terminated: bool) -> torch.Tensor:
        """Squared TD error of one transition; the target is held fixed (no gradient through it)."""
        with torch.no_grad():
            bootstrap = 0.0 if terminated else self.config.gamma * float(self.q_values(s_next).max())
        target = reward + bootstrap
        return (target - self.q_values(s)[a]).pow(2)

    def observe(self, observation, action, reward, next_observation, terminated, truncated):
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate
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
