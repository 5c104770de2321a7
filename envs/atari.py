"""Atari wrappers that gymnasium lacks: true episodic life, fire on reset, and Karpathy's Pong frames
(one env, or a whole batch from ale-py's threaded `AtariVectorEnv`).

The DQN stack itself is gymnasium's `AtariPreprocessing` + `FrameStackObservation`; these wrappers
only fill the gaps around it.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class EpisodicLife(gym.Wrapper):
    """Signal `terminated` at each life lost, but only reset the game when it is really over.

    gymnasium's `terminal_on_life_loss` resets the whole game at every life, which throws away the
    rest of the game; Mnih et al. (2015) continue it, as this wrapper does.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self._lives = 0
        self._game_over = True

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._game_over = terminated or truncated
        lives = self.env.unwrapped.ale.lives()
        if 0 < lives < self._lives:
            terminated = True
        self._lives = lives
        return obs, reward, terminated, truncated, info

    def reset(self, **kwargs):
        if self._game_over:
            obs, info = self.env.reset(**kwargs)
        else:
            # Continue the same game: one no-op step stands in for the reset.
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset(**kwargs)
        self._lives = self.env.unwrapped.ale.lives()
        self._game_over = False
        return obs, info


class FireOnReset(gym.Wrapper):
    """Press FIRE after every reset, for games that stand still until it is pressed (Breakout)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        meanings = env.unwrapped.get_action_meanings()
        if len(meanings) < 3 or meanings[1] != "FIRE":
            raise ValueError("FireOnReset needs an env whose action 1 is FIRE")

    def reset(self, **kwargs):
        self.env.reset(**kwargs)
        obs, _, terminated, truncated, info = self.env.step(1)
        if terminated or truncated:
            obs, info = self.env.reset(**kwargs)
        return obs, info


def has_fire_action(env: gym.Env) -> bool:
    meanings = env.unwrapped.get_action_meanings()
    return len(meanings) >= 3 and meanings[1] == "FIRE"


def karpathy_frame(frame: np.ndarray) -> np.ndarray:
    """(..., 210, 160, 3) uint8 Pong frames -> (..., 80, 80) int8 of 0/1: crop, downsample by 2, drop
    the background.

    Follows "Pong from Pixels": rows 35..195 hold the playfield; 144 and 109 are the two background
    shades; anything else (paddles, ball) becomes 1.
    """
    img = frame[..., 35:195:2, ::2, 0]
    return ((img != 144) & (img != 109) & (img != 0)).astype(np.int8)


class KarpathyPong(gym.ObservationWrapper):
    """Observations become the difference of consecutive preprocessed frames: (80, 80) int8 in {-1, 0, 1}.

    Running this inside each vector-env worker means only 6.4 KB per step crosses between processes,
    instead of a 100 KB raw frame.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.observation_space = gym.spaces.Box(-1, 1, (80, 80), np.int8)
        self._previous: np.ndarray | None = None

    def reset(self, **kwargs) -> tuple[np.ndarray, dict[str, Any]]:
        self._previous = None
        return super().reset(**kwargs)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        current = karpathy_frame(observation)
        previous = self._previous if self._previous is not None else np.zeros_like(current)
        self._previous = current
        return current - previous


class KarpathyPongBatch(gym.vector.VectorWrapper):
    """`KarpathyPong` for a vector env of raw (N, [1,] 210, 160, 3) frames with SAME_STEP autoreset:
    (N, 80, 80) int8 differences, each sub-env's first frame after a reset differenced with a blank one,
    exactly as the single-env wrapper does."""

    def __init__(self, env: gym.vector.VectorEnv):
        super().__init__(env)
        self.single_observation_space = gym.spaces.Box(-1, 1, (80, 80), np.int8)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)
        self._previous = np.zeros((self.num_envs, 80, 80), np.int8)

    def _frames(self, observations: np.ndarray) -> np.ndarray:
        return karpathy_frame(observations.reshape(self.num_envs, 210, 160, 3))

    def reset(self, **kwargs):
        observations, infos = self.env.reset(**kwargs)
        self._previous = self._frames(observations)
        return self._previous.copy(), infos

    def step(self, actions):
        observations, rewards, terminated, truncated, infos = self.env.step(actions)
        current = self._frames(observations)
        self._previous[terminated | truncated] = 0  # those sub-envs already show a new episode's frame
        difference = current - self._previous
        self._previous = current
        return difference, rewards, terminated, truncated, infos


def ale_vector_env(game: str, num_envs: int, *, frame_skip: int, repeat_action_probability: float, **kwargs):
    """ale-py's `AtariVectorEnv` giving the raw (N, 1, 210, 160, 3) RGB frames of the v5 envs: no max
    pooling, no-ops, fire, life loss or reward clipping (gym.make("ALE/...-v5") has none of them),
    SAME_STEP autoreset. Its C++ threads step every copy in one process: no frames between processes."""
    from ale_py.vector_env import AtariVectorEnv  # noqa: PLC0415  (ale-py is imported lazily by the factory)

    return AtariVectorEnv(
        game,
        num_envs,
        frameskip=frame_skip,
        repeat_action_probability=repeat_action_probability,
        img_height=210,
        img_width=160,
        grayscale=False,
        stack_num=1,
        maxpool=False,
        noop_max=0,
        use_fire_reset=False,
        episodic_life=False,
        reward_clipping=False,
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
        **kwargs,
    )
