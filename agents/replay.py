"""Experience replay that stores every observation frame once, with n-step returns at sample time.

Observations go into a ring of *frames*: at an episode's start the whole first observation (all
`frame_stack` frames of an image stack, or the whole vector), then one newest frame per step. A
transition only records where its observation's newest frame lies; its stack is the `frame_stack`
frames ending there and its next observation ends one frame later. Since every episode begins with a
full stack of its own frames, a stack never mixes two episodes, and the final observation of an
episode is kept like any other. For Atari this is one 84x84 frame per step: 1M transitions take
about 7 GiB instead of 2 x 28 GB for stacked obs and next_obs.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from agents.sumtree import SumTree


class ReplayBatch(NamedTuple):
    """A sampled batch (numpy). obs/next_obs: (B, *obs_shape) in the observation dtype; actions (B,)
    int64; returns (B,) float32 discounted n-step reward sums; terminated (B,) float32, 1 when the
    episode terminated within the n steps (no bootstrap); discounts (B,) float32, gamma**m for the
    m steps actually taken (fewer than n at an episode end or at the newest data)."""

    obs: np.ndarray
    actions: np.ndarray
    returns: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray
    discounts: np.ndarray


class ReplayBuffer:
    """Ring buffer of `capacity` transitions. Images: `observation_shape` = (frame_stack, H, W)."""

    def __init__(
        self,
        capacity: int,
        observation_shape: tuple[int, ...],
        dtype: np.dtype | type = np.float32,
        *,
        frame_stack: int = 1,
        frame_capacity: int | None = None,
    ):
        if capacity < 1:
            raise ValueError("replay capacity must be at least 1")
        self.capacity = capacity
        self.frame_stack = frame_stack
        self.observation_shape = tuple(observation_shape)
        frame_shape = self.observation_shape[1:] if frame_stack > 1 else self.observation_shape
        self.frame_capacity = frame_capacity or self.frames_for(capacity, frame_stack)
        self.frames = np.zeros((self.frame_capacity, *frame_shape), dtype=dtype)
        self.frame_pos = np.zeros(capacity, np.int64)
        self.actions = np.zeros(capacity, np.int64)
        self.rewards = np.zeros(capacity, np.float32)
        self.terminated = np.zeros(capacity, bool)
        self.ends = np.zeros(capacity, bool)
        self.frames_added = 0
        self.added = 0
        self.in_episode = False
        self._current = -1

    def __len__(self) -> int:
        return min(self.added, self.capacity)

    @staticmethod
    def frames_for(capacity: int, frame_stack: int) -> int:
        """Frames kept for `capacity` transitions. Episode starts cost frame_stack frames instead of one;
        1/16 spare covers episodes of 48+ steps at stack 4. Older transitions whose frames were
        overwritten are simply not sampled."""
        return capacity + capacity // 16 + 4 * frame_stack

    @classmethod
    def planned_bytes(
        cls, capacity: int, observation_shape: tuple[int, ...], dtype: np.dtype | type, frame_stack: int = 1
    ) -> int:
        """What a buffer of these dimensions allocates (`nbytes` before it exists)."""
        frame_shape = tuple(observation_shape)[1:] if frame_stack > 1 else tuple(observation_shape)
        frame = int(np.prod(frame_shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        return cls.frames_for(capacity, frame_stack) * frame + capacity * (8 + 8 + 4 + 1 + 1)

    @property
    def nbytes(self) -> int:
        arrays = (self.frames, self.frame_pos, self.actions, self.rewards, self.terminated, self.ends)
        return sum(a.nbytes for a in arrays)

    # Writing ------------------------------------------------------------------------------------
    def _write_frame(self, frame: np.ndarray) -> None:
        self.frames[self.frames_added % self.frame_capacity] = frame
        self._current = self.frames_added
        self.frames_added += 1

    def start_episode(self, observation: np.ndarray) -> None:
        """Store the first observation of an episode (all its frames)."""
        if self.in_episode and self.added > 0:
            # The last episode was cut off (a resume mid-episode): close it as a truncation.
            self.ends[(self.added - 1) % self.capacity] = True
        for frame in observation if self.frame_stack > 1 else (observation,):
            self._write_frame(frame)
        self.in_episode = True

    def add(self, action: int, reward: float, next_observation: np.ndarray, terminated: bool, truncated: bool) -> None:
        """One step from the current observation; `next_observation` is the full (stacked) one."""
        if not self.in_episode:
            raise RuntimeError("ReplayBuffer.add before start_episode")
        slot = self.added % self.capacity
        self.frame_pos[slot] = self._current
        self.actions[slot] = action
        self.rewards[slot] = reward
        self.terminated[slot] = terminated
        self.ends[slot] = terminated or truncated
        self.added += 1
        self._write_frame(next_observation[-1] if self.frame_stack > 1 else next_observation)
        if terminated or truncated:
            self.in_episode = False

    # Sampling -----------------------------------------------------------------------------------
    def _stack(self, newest: np.ndarray) -> np.ndarray:
        """(B,) absolute frame positions -> (B, *observation_shape) observations."""
        if self.frame_stack == 1:
            return self.frames[newest % self.frame_capacity]
        offsets = np.arange(1 - self.frame_stack, 1)
        return self.frames[(newest[:, None] + offsets) % self.frame_capacity]

    def _sample_positions(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """Absolute transition positions whose oldest frame is still in the frame ring."""
        oldest = max(0, self.added - self.capacity)
        first_frame = self.frames_added - self.frame_capacity
        positions = rng.integers(oldest, self.added, size=batch_size)
        for _ in range(100):
            stale = self.frame_pos[positions % self.capacity] - (self.frame_stack - 1) < first_frame
            if not stale.any():
                return positions
            positions[stale] = rng.integers(oldest, self.added, size=int(stale.sum()))
        raise RuntimeError("replay frame ring too small for these episode lengths")

    def sample(
        self,
        batch_size: int,
        rng: np.random.Generator,
        *,
        n_step: int = 1,
        gamma: float = 0.99,
        positions: np.ndarray | None = None,
    ) -> ReplayBatch:
        """`batch_size` transitions drawn uniformly (or those at the absolute `positions`)."""
        if self.added == 0:
            raise RuntimeError("cannot sample an empty replay buffer")
        if positions is None:
            positions = self._sample_positions(batch_size, rng)
        slots = positions % self.capacity
        returns = np.zeros(batch_size, np.float32)
        terminated = np.zeros(batch_size, np.float32)
        steps = np.zeros(batch_size, np.int64)
        alive = np.ones(batch_size, bool)
        for j in range(n_step):
            # A step counts while the episode goes on and the transition has been written.
            alive &= positions + j < self.added
            if not alive.any():
                break
            slot_j = (positions + j) % self.capacity
            returns += np.where(alive, gamma**j * self.rewards[slot_j], 0.0).astype(np.float32)
            terminated = np.where(alive & self.terminated[slot_j], 1.0, terminated).astype(np.float32)
            steps += alive
            alive &= ~self.ends[slot_j]
        newest = self.frame_pos[slots]
        return ReplayBatch(
            obs=self._stack(newest),
            actions=self.actions[slots],
            returns=returns,
            next_obs=self._stack(newest + steps),
            terminated=terminated,
            discounts=(gamma**steps).astype(np.float32),
        )

    # Persistence --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The filled part of every array as tensors (no copies), plus the counters."""
        n, f = len(self), min(self.frames_added, self.frame_capacity)
        arrays = {
            "frames": self.frames[:f],
            "frame_pos": self.frame_pos[:n],
            "actions": self.actions[:n],
            "rewards": self.rewards[:n],
            "terminated": self.terminated[:n],
            "ends": self.ends[:n],
        }
        state: dict[str, Any] = {k: torch.from_numpy(v) for k, v in arrays.items()}
        state.update(
            frames_added=self.frames_added, added=self.added, in_episode=self.in_episode, current=self._current
        )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("frames", "frame_pos", "actions", "rewards", "terminated", "ends"):
            values = state[key].numpy()
            getattr(self, key)[: len(values)] = values
        self.frames_added = int(state["frames_added"])
        self.added = int(state["added"])
        self.in_episode = bool(state["in_episode"])
        self._current = int(state["current"])


class PrioritizedReplayBuffer(ReplayBuffer):
    """Prioritized replay (Schaul et al. 2016, proportional): transition i is drawn with probability
    P(i) = p_i^alpha / sum_k p_k^alpha, p_i = |TD error| + eps, new transitions at the highest priority
    seen; the loss of a draw is weighted by (N P(i))^-beta / max over the batch, beta annealed to 1 by the
    caller. Priorities live in a `SumTree` over the slots of the ring."""

    def __init__(self, capacity: int, observation_shape: tuple[int, ...], dtype: np.dtype | type = np.float32,
                 *, frame_stack: int = 1, alpha: float = 0.5, eps: float = 1e-6):  # fmt: skip
        super().__init__(capacity, observation_shape, dtype, frame_stack=frame_stack)
        self.tree = SumTree(capacity)
        self.alpha, self.eps = alpha, eps
        self.max_priority = 1.0
        """The largest p^alpha given so far: what a new transition gets."""

    def add(self, action: int, reward: float, next_observation: np.ndarray, terminated: bool, truncated: bool) -> None:
        slot = self.added % self.capacity
        super().add(action, reward, next_observation, terminated, truncated)
        self.tree.update(np.array([slot]), np.array([self.max_priority]))

    def _positions_of(self, slots: np.ndarray) -> np.ndarray:
        """Absolute positions of the transitions now in `slots` (the newest one written to each)."""
        return slots + self.capacity * ((self.added - 1 - slots) // self.capacity)

    def sample_prioritized(
        self, batch_size: int, rng: np.random.Generator, beta: float, *, n_step: int = 1, gamma: float = 0.99
    ) -> tuple[ReplayBatch, np.ndarray, np.ndarray]:
        """(batch, slots (B,) int64, importance weights (B,) float32)."""
        if self.added == 0:
            raise RuntimeError("cannot sample an empty replay buffer")
        slots = self.tree.sample(batch_size, rng)
        first_frame = self.frames_added - self.frame_capacity
        for _ in range(100):  # a transition whose oldest frame was overwritten cannot be stacked: draw again
            stale = self.frame_pos[slots] - (self.frame_stack - 1) < first_frame
            if not stale.any():
                break
            self.tree.update(slots[stale], np.zeros(int(stale.sum())))  # and it is never drawn again
            slots[stale] = self.tree.sample(int(stale.sum()), rng)
        batch = self.sample(batch_size, rng, n_step=n_step, gamma=gamma, positions=self._positions_of(slots))
        probabilities = self.tree.get(slots) / self.tree.total
        weights = (len(self) * probabilities) ** -beta
        return batch, slots, (weights / weights.max()).astype(np.float32)

    def update_priorities(self, slots: np.ndarray, td_errors: np.ndarray) -> None:
        """New priorities (|TD error| + eps)^alpha for the transitions just learned from."""
        priorities = (np.abs(np.asarray(td_errors, np.float64)) + self.eps) ** self.alpha
        self.tree.update(slots, priorities)
        self.max_priority = max(self.max_priority, float(priorities.max()))

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["priorities"] = torch.from_numpy(self.tree.get(np.arange(len(self))).copy())
        state["max_priority"] = self.max_priority
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        priorities = state["priorities"].numpy()
        self.tree.update(np.arange(len(priorities)), priorities)
        self.max_priority = float(state["max_priority"])
