"""Atari wrappers that gymnasium lacks: true episodic life, fire on reset, and Karpathy's Pong frames
(one env, or a whole batch from ale-py's threaded `AtariVectorEnv`).

The DQN stack itself is gymnasium's `AtariPreprocessing` + `FrameStackObservation`; these wrappers
only fill the gaps around it.
"""

from __future__ import annotations

import time
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
        if not has_fire_action(env):
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


# Red channel value -> 1 for paddles and ball, 0 for the two background shades (144, 109) and black.
_PONG_FOREGROUND = np.ones(256, np.int8)
_PONG_FOREGROUND[[0, 109, 144]] = 0


def karpathy_frame(frame: np.ndarray) -> np.ndarray:
    """(..., 210, 160, 3) uint8 Pong frames -> (..., 80, 80) int8 of 0/1: crop, downsample by 2, drop
    the background.

    Follows "Pong from Pixels": rows 35..195 hold the playfield; 144 and 109 are the two background
    shades; anything else (paddles, ball) becomes 1.
    """
    # One table lookup per pixel instead of three comparisons (docs/performance.md).
    return np.take(_PONG_FOREGROUND, frame[..., 35:195:2, ::2, 0])


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
    """`KarpathyPong` for a vector env of raw (n, [1,] 210, 160, 3) frames with SAME_STEP autoreset:
    (n, 80, 80) int8 differences, each sub-env's first frame after a reset differenced with a blank one,
    exactly as the single-env wrapper does. Previous frames are kept per env id, so a partial batch
    (`infos["env_id"]` names the n envs answered; see `ale_vector_env`) is differenced correctly."""

    def __init__(self, env: gym.vector.VectorEnv):
        super().__init__(env)
        self.single_observation_space = gym.spaces.Box(-1, 1, (80, 80), np.int8)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)
        self._previous = np.zeros((self.num_envs, 80, 80), np.int8)

    def reset(self, **kwargs):
        observations, infos = self.env.reset(**kwargs)
        # Envs whose reset frame comes in a later partial batch start from a blank frame, too.
        self._previous[:] = 0
        return self._difference(observations, infos, np.zeros(len(observations), bool)), infos

    def step(self, actions):
        observations, rewards, terminated, truncated, infos = self.env.step(actions)
        # Finished envs already show a new episode's frame: difference it with a blank one.
        difference = self._difference(observations, infos, terminated | truncated)
        return difference, rewards, terminated, truncated, infos

    def _difference(self, observations: np.ndarray, infos: dict[str, Any], restarted: np.ndarray) -> np.ndarray:
        current = karpathy_frame(observations.reshape(len(observations), 210, 160, 3))
        ids = answered_env_ids(infos, len(observations))
        previous = self._previous[ids]  # a copy (integer indexing)
        previous[restarted] = 0
        self._previous[ids] = current
        return current - previous


def answered_env_ids(infos: dict[str, Any], batch: int) -> np.ndarray:
    """Which sub-envs the rows of a vector step belong to: `infos["env_id"]` where the env answers a
    partial batch (ale-py), otherwise all of them in order."""
    return np.asarray(infos["env_id"]) if "env_id" in infos else np.arange(batch)


class PartialBatchEpisodeStatistics(gym.vector.VectorWrapper):
    """gymnasium's `RecordEpisodeStatistics` for a vector env that answers a partial batch per step
    (ale-py with `batch_size` < `num_envs`; SAME_STEP autoreset), which that wrapper cannot follow: it
    adds rewards by position. Same `infos["episode"]` / `infos["_episode"]` for the rows answered.

    The envs' actions go to the envs of the previous answer; a row whose env had no action pending is
    a reset frame that arrives late (after `reset`, only the first batch is returned) and counts no step.
    """

    def __init__(self, env: gym.vector.VectorEnv):
        super().__init__(env)
        self._returns = np.zeros(self.num_envs)
        self._lengths = np.zeros(self.num_envs, np.int64)
        self._starts = np.zeros(self.num_envs)
        self._pending = np.zeros(self.num_envs, bool)
        self._answered = np.arange(0)

    def reset(self, **kwargs):
        observations, infos = self.env.reset(**kwargs)
        self._returns[:], self._lengths[:], self._starts[:] = 0.0, 0, time.perf_counter()
        self._pending[:] = False
        self._answered = answered_env_ids(infos, len(observations))
        return observations, infos

    def step(self, actions):
        self._pending[self._answered] = True
        observations, rewards, terminated, truncated, infos = self.env.step(actions)
        ids = answered_env_ids(infos, len(observations))
        stepped = self._pending[ids]
        self._pending[ids] = False
        self._answered = ids
        self._returns[ids] += np.where(stepped, rewards, 0.0)
        self._lengths[ids] += stepped
        done = (terminated | truncated) & stepped
        if done.any():
            now = time.perf_counter()
            episode = {"r": self._returns[ids], "l": self._lengths[ids], "t": now - self._starts[ids]}
            infos = {**infos, "episode": episode, "_episode": done}
            finished = ids[done]
            self._returns[finished], self._lengths[finished], self._starts[finished] = 0.0, 0, now
        return observations, rewards, terminated, truncated, infos


class AtariTrainingBatch(gym.vector.VectorWrapper):
    """What `EpisodicLife` and reward clipping do for one env, for ale-py's batch of DQN frames, above
    the statistics wrapper (which so records real scores of whole games): a lost life ends the
    learner's episode (`terminated`) while the game goes on, and rewards become their sign."""

    def __init__(self, env: gym.vector.VectorEnv, *, episodic_life: bool, clip_rewards: bool):
        super().__init__(env)
        self.episodic_life, self.clip_rewards = episodic_life, clip_rewards
        self._lives = np.zeros(self.num_envs, np.int64)

    def reset(self, **kwargs):
        observations, infos = self.env.reset(**kwargs)
        self._lives[answered_env_ids(infos, len(observations))] = infos["lives"]
        return observations, infos

    def step(self, actions):
        observations, rewards, terminated, truncated, infos = self.env.step(actions)
        if self.episodic_life:
            ids = answered_env_ids(infos, len(observations))
            lives = np.asarray(infos["lives"], np.int64)
            # A game that really ended was reset in this step: its lives are the new game's.
            lost = (lives < self._lives[ids]) & (lives > 0) & ~(terminated | truncated)
            terminated = terminated | lost
            self._lives[ids] = lives
        if self.clip_rewards:
            rewards = np.sign(rewards)
        return observations, rewards, terminated, truncated, infos


def ale_dqn_vector_env(
    game: str, num_envs: int, *, frame_skip: int, repeat_action_probability: float, screen_size: int,
    frame_stack: int, noop_max: int, **kwargs,
):  # fmt: skip
    """ale-py's `AtariVectorEnv` doing the DQN preprocessing of `AtariPreprocessing` +
    `FrameStackObservation` in its C++ threads: (N, frame_stack, size, size) grayscale frames, max-pooled
    over the last two of each skip, up to `noop_max` no-ops and FIRE at reset, SAME_STEP autoreset; raw
    rewards and whole games (`AtariTrainingBatch` adds life loss and clipping above the statistics)."""
    dqn = {"img_height": screen_size, "img_width": screen_size, "grayscale": True, "stack_num": frame_stack,
           "maxpool": True, "noop_max": noop_max, "use_fire_reset": True}  # fmt: skip
    return ale_vector_env(game, num_envs, frame_skip=frame_skip,
                          repeat_action_probability=repeat_action_probability, **{**dqn, **kwargs})  # fmt: skip


def ale_vector_env(game: str, num_envs: int, *, frame_skip: int, repeat_action_probability: float, **kwargs):
    """ale-py's `AtariVectorEnv` giving the raw (N, 1, 210, 160, 3) RGB frames of the v5 envs: no max
    pooling, no-ops, fire, life loss or reward clipping (gym.make("ALE/...-v5") has none of them),
    SAME_STEP autoreset. Its C++ threads step every copy in one process: no frames between processes.

    With ale-py's `batch_size` below `num_envs`, `step` sends the actions to the envs of the previous
    answer and returns the first `batch_size` envs to finish (`infos["env_id"]`); the others go on
    emulating meanwhile. After `reset` the first answer holds `batch_size` envs and the other reset
    frames arrive in later steps. `kwargs` may replace the raw settings (`ale_dqn_vector_env` does)."""
    from ale_py.vector_env import AtariVectorEnv  # noqa: PLC0415  (ale-py is imported lazily by the factory)

    raw = {"img_height": 210, "img_width": 160, "grayscale": False, "stack_num": 1, "maxpool": False,
           "noop_max": 0, "use_fire_reset": False, "episodic_life": False, "reward_clipping": False}  # fmt: skip
    return AtariVectorEnv(game, num_envs, frameskip=frame_skip, repeat_action_probability=repeat_action_probability,
                          autoreset_mode=gym.vector.AutoresetMode.SAME_STEP, **{**raw, **kwargs})  # fmt: skip
