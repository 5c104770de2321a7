"""A user's own env, as a test module: importing it registers `Corridor-v0` (discrete observations) and
`CorridorBox-v0` (one-hot vector observations). Walk right along a corridor of `length` cells; reaching
the end pays 1 and ends the episode, every step costs 0.01, and 4 * length steps truncate it."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class Corridor(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, length: int = 5, render_mode: str | None = None):
        self.length = int(length)
        self.observation_space = gym.spaces.Discrete(self.length)
        self.action_space = gym.spaces.Discrete(2)  # 0 left, 1 right
        self.position = 0
        self.steps = 0

    def _observation(self):
        return self.position

    def reset(self, *, seed: int | None = None, options=None):
        super().reset(seed=seed)
        self.position, self.steps = 0, 0
        return self._observation(), {}

    def step(self, action):
        self.steps += 1
        self.position = int(np.clip(self.position + (1 if int(action) == 1 else -1), 0, self.length - 1))
        terminated = self.position == self.length - 1
        reward = 1.0 if terminated else -0.01
        return self._observation(), reward, terminated, self.steps >= 4 * self.length, {}


class CorridorBox(Corridor):
    def __init__(self, length: int = 5, render_mode: str | None = None):
        super().__init__(length, render_mode)
        self.observation_space = gym.spaces.Box(0.0, 1.0, (self.length,), np.float32)

    def _observation(self):
        return np.eye(self.length, dtype=np.float32)[self.position]


class BrokenReset(Corridor):
    """Builds (so `agents.make` reads its spaces) but fails at its first reset: a start that fails after
    the run directory was made."""

    def reset(self, *, seed: int | None = None, options=None):
        raise RuntimeError("this env cannot reset")


def make_corridor_box(length: int = 4) -> gym.Env:
    """An env function, as a user might pass to `agents.make(env=...)`: its env has no registered id."""
    return CorridorBox(length)


for _name, _cls in (("Corridor-v0", Corridor), ("CorridorBox-v0", CorridorBox), ("BrokenReset-v0", BrokenReset)):
    if _name not in gym.registry:
        gym.register(_name, entry_point=f"{__name__}:{_cls.__name__}")
