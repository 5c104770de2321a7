"""VizDoom: take the screen out of the dict observation, as a small grayscale image."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class DoomScreen(gym.ObservationWrapper):
    """Dict observation with a (H, W, 3) `screen` -> (size, size) uint8 grayscale.

    Crops the status-bar-free middle of the frame (the top and bottom rows carry no information in the
    bundled scenarios' HUD-less configs) before resizing, like the A3C Doom tutorial.
    """

    def __init__(self, env: gym.Env, size: int = 84, crop: tuple[float, float] = (0.1, 0.9)):
        super().__init__(env)
        import cv2  # noqa: PLC0415  (opencv is only needed for image envs)

        self._cv2 = cv2
        self.size = size
        self.crop = crop
        self.observation_space = gym.spaces.Box(0, 255, (size, size), np.uint8)

    def observation(self, observation) -> np.ndarray:
        screen = observation["screen"] if isinstance(observation, dict) else observation
        if screen.ndim == 3 and screen.shape[0] in (1, 3) and screen.shape[-1] not in (1, 3):
            screen = np.moveaxis(screen, 0, -1)  # CHW buffers from custom scenario configs
        rows = screen.shape[0]
        top, bottom = int(rows * self.crop[0]), int(rows * self.crop[1])
        screen = screen[top:bottom]
        gray = screen[..., 0] if screen.shape[-1] == 1 else self._cv2.cvtColor(screen, self._cv2.COLOR_RGB2GRAY)
        return self._cv2.resize(gray, (self.size, self.size), interpolation=self._cv2.INTER_AREA)
