"""XOR as a tiny Gymnasium env (`XOR-v0`), the classic first test of NEAT (paper, section 4.1).

An episode shows the four input pairs in order; the action is the predicted output in [0, 1] and
each step's reward is 1 - (prediction - target)^2, so the return is neat-python's XOR fitness
4 - sum of squared errors. Its registered reward_threshold 3.9 is neat-python's example threshold.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

XOR_INPUTS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
XOR_TARGETS = np.array([0, 1, 1, 0], dtype=np.float32)


class XorEnv(gym.Env):
    """Observations (2,) float32 in {0, 1}; actions (1,) float32 in [0, 1]; four steps per episode."""

    metadata = {"render_modes": []}

    def __init__(self, render_mode: str | None = None):
        self.observation_space = gym.spaces.Box(0.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
        self.render_mode = render_mode
        self._index = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._index = 0
        return XOR_INPUTS[0].copy(), {}

    def step(self, action):
        prediction = float(np.asarray(action, dtype=np.float64).reshape(-1)[0])
        reward = 1.0 - (prediction - float(XOR_TARGETS[self._index])) ** 2
        self._index += 1
        terminated = self._index == len(XOR_INPUTS)
        observation = XOR_INPUTS[self._index % len(XOR_INPUTS)].copy()
        return observation, reward, terminated, False, {}


def register() -> None:
    if "XOR-v0" not in gym.registry:
        gym.register("XOR-v0", entry_point="envs.xor:XorEnv", reward_threshold=3.9)
