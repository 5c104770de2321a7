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
    """Ring buffers of `capacity` transitions in all, one ring per *stream*: each env of a vector env
    writes its own stream, so a stack, a next observation or an n-step return never mixes two envs.
    Images: `observation_shape` = (frame_stack, H, W). A transition is named by its stream and its
    absolute position in that stream (0, 1, 2, ... as written)."""

    def __init__(
        self,
        capacity: int,
        observation_shape: tuple[int, ...],
        dtype: np.dtype | type = np.float32,
        *,
        frame_stack: int = 1,
        frame_capacity: int | None = None,
        streams: int = 1,
    ):
        if capacity < 1 or streams < 1:
            raise ValueError("replay capacity and streams must be at least 1")
        self.streams = streams
        self.capacity = -(-capacity // streams)
        """Transitions per stream."""
        self.frame_stack = frame_stack
        self.observation_shape = tuple(observation_shape)
        frame_shape = self.observation_shape[1:] if frame_stack > 1 else self.observation_shape
        self.frame_capacity = frame_capacity or self.frames_for(self.capacity, frame_stack)
        self.frames = np.zeros((streams, self.frame_capacity, *frame_shape), dtype=dtype)
        self.frame_pos = np.zeros((streams, self.capacity), np.int64)
        self.actions = np.zeros((streams, self.capacity), np.int64)
        self.rewards = np.zeros((streams, self.capacity), np.float32)
        self.terminated = np.zeros((streams, self.capacity), bool)
        self.ends = np.zeros((streams, self.capacity), bool)
        self.frames_added = np.zeros(streams, np.int64)
        self.stream_added = np.zeros(streams, np.int64)
        """Transitions written to each stream so far (the next one's absolute position)."""
        self.in_episode = np.zeros(streams, bool)
        self._current = np.full(streams, -1, np.int64)
        """Absolute position of each stream's newest frame: where its current observation ends."""

    @property
    def added(self) -> int:
        """Transitions written so far, all streams together."""
        return int(self.stream_added.sum())

    def __len__(self) -> int:
        return int(np.minimum(self.stream_added, self.capacity).sum())

    @staticmethod
    def frames_for(capacity: int, frame_stack: int) -> int:
        """Frames kept for `capacity` transitions. Episode starts cost frame_stack frames instead of one;
        1/16 spare covers episodes of 48+ steps at stack 4. Older transitions whose frames were
        overwritten are simply not sampled."""
        return capacity + capacity // 16 + 4 * frame_stack

    @classmethod
    def planned_bytes(
        cls,
        capacity: int,
        observation_shape: tuple[int, ...],
        dtype: np.dtype | type,
        frame_stack: int = 1,
        streams: int = 1,
    ) -> int:
        """What a buffer of these dimensions allocates (`nbytes` before it exists)."""
        frame_shape = tuple(observation_shape)[1:] if frame_stack > 1 else tuple(observation_shape)
        frame = int(np.prod(frame_shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        per_stream = -(-capacity // streams)
        return streams * (cls.frames_for(per_stream, frame_stack) * frame + per_stream * (8 + 8 + 4 + 1 + 1))

    @property
    def nbytes(self) -> int:
        arrays = (self.frames, self.frame_pos, self.actions, self.rewards, self.terminated, self.ends)
        return sum(a.nbytes for a in arrays)

    # Writing ------------------------------------------------------------------------------------
    def _write_frames(self, streams: np.ndarray, frames: np.ndarray) -> None:
        """One newest frame for each of `streams` (distinct), (B, *frame_shape)."""
        self.frames[streams, self.frames_added[streams] % self.frame_capacity] = frames
        self._current[streams] = self.frames_added[streams]
        self.frames_added[streams] += 1

    def start_episode(self, observation: np.ndarray, stream: int = 0) -> None:
        """Store the first observation of an episode (all its frames) in `stream`."""
        self.start_episodes(np.array([stream]), np.asarray(observation)[None])

    def start_episodes(self, streams: np.ndarray, observations: np.ndarray) -> None:
        """The first observations (B, *observation_shape) of episodes in the distinct `streams` (B,)."""
        streams = np.asarray(streams, np.int64)
        cut = streams[self.in_episode[streams] & (self.stream_added[streams] > 0)]
        # An episode cut off (a resume mid-episode): closed as a truncation.
        self.ends[cut, (self.stream_added[cut] - 1) % self.capacity] = True
        if self.frame_stack > 1:
            for k in range(self.frame_stack):
                self._write_frames(streams, observations[:, k])
        else:
            self._write_frames(streams, observations)
        self.in_episode[streams] = True

    def add(self, action: int, reward: float, next_observation: np.ndarray, terminated: bool, truncated: bool,
            stream: int = 0) -> None:  # fmt: skip
        """One step from the current observation of `stream`; `next_observation` is the full (stacked) one."""
        self.add_batch(np.array([stream]), np.array([action]), np.array([reward], np.float32),
                       np.asarray(next_observation)[None], np.array([terminated]), np.array([truncated]))  # fmt: skip

    def add_batch(
        self,
        streams: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_observations: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
    ) -> np.ndarray:
        """One step in each of the distinct `streams` (B,); returns the (B,) slots written. An episode that
        ends closes its stream until `start_episodes` opens the next."""
        streams = np.asarray(streams, np.int64)
        if not self.in_episode[streams].all():
            raise RuntimeError("ReplayBuffer.add before start_episode")
        slots = self.stream_added[streams] % self.capacity
        ends = np.asarray(terminated, bool) | np.asarray(truncated, bool)
        self.frame_pos[streams, slots] = self._current[streams]
        self.actions[streams, slots] = actions
        self.rewards[streams, slots] = rewards
        self.terminated[streams, slots] = terminated
        self.ends[streams, slots] = ends
        self.stream_added[streams] += 1
        newest = next_observations[:, -1] if self.frame_stack > 1 else next_observations
        self._write_frames(streams, newest)
        self.in_episode[streams[ends]] = False
        return slots

    # Sampling -----------------------------------------------------------------------------------
    def _stack(self, streams: np.ndarray, newest: np.ndarray) -> np.ndarray:
        """(B,) streams and absolute frame positions -> (B, *observation_shape) observations."""
        if self.frame_stack == 1:
            return self.frames[streams, newest % self.frame_capacity]
        offsets = np.arange(1 - self.frame_stack, 1)
        return self.frames[streams[:, None], (newest[:, None] + offsets) % self.frame_capacity]

    def _stale(self, streams: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Which transitions have lost their oldest frame to the frame ring (they cannot be stacked)."""
        first_frame = self.frames_added[streams] - self.frame_capacity
        return self.frame_pos[streams, positions % self.capacity] - (self.frame_stack - 1) < first_frame

    def _draw(self, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """`count` transitions uniformly over everything stored: (streams, absolute positions)."""
        sizes = np.minimum(self.stream_added, self.capacity)
        flat = rng.integers(0, int(sizes.sum()), size=count)
        ends = np.cumsum(sizes)
        streams = np.searchsorted(ends, flat, side="right")
        oldest = self.stream_added[streams] - sizes[streams]
        return streams, oldest + flat - (ends[streams] - sizes[streams])

    def _sample_positions(self, batch_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Uniformly drawn (streams, absolute positions) whose oldest frame is still in the frame ring."""
        streams, positions = self._draw(batch_size, rng)
        for _ in range(100):
            stale = self._stale(streams, positions)
            if not stale.any():
                return streams, positions
            streams[stale], positions[stale] = self._draw(int(stale.sum()), rng)
        raise RuntimeError("replay frame ring too small for these episode lengths")

    def sample(
        self,
        batch_size: int,
        rng: np.random.Generator,
        *,
        n_step: int = 1,
        gamma: float = 0.99,
        positions: np.ndarray | None = None,
        streams: np.ndarray | None = None,
    ) -> ReplayBatch:
        """`batch_size` transitions drawn uniformly (or those at the absolute `positions` of `streams`,
        stream 0 when not given)."""
        if self.added == 0:
            raise RuntimeError("cannot sample an empty replay buffer")
        if positions is None:
            streams, positions = self._sample_positions(batch_size, rng)
        elif streams is None:
            streams = np.zeros(len(positions), np.int64)
        written = self.stream_added[streams]
        returns = np.zeros(batch_size, np.float32)
        terminated = np.zeros(batch_size, np.float32)
        steps = np.zeros(batch_size, np.int64)
        alive = np.ones(batch_size, bool)
        for j in range(n_step):
            # A step counts while the episode goes on and the transition has been written.
            alive &= positions + j < written
            if not alive.any():
                break
            slot_j = (positions + j) % self.capacity
            returns += np.where(alive, gamma**j * self.rewards[streams, slot_j], 0.0).astype(np.float32)
            terminated = np.where(alive & self.terminated[streams, slot_j], 1.0, terminated).astype(np.float32)
            steps += alive
            alive &= ~self.ends[streams, slot_j]
        slots = positions % self.capacity
        newest = self.frame_pos[streams, slots]
        return ReplayBatch(
            obs=self._stack(streams, newest),
            actions=self.actions[streams, slots],
            returns=returns,
            next_obs=self._stack(streams, newest + steps),
            terminated=terminated,
            discounts=(gamma**steps).astype(np.float32),
        )

    # Persistence --------------------------------------------------------------------------------
    _ARRAYS = ("frames", "frame_pos", "actions", "rewards", "terminated", "ends")

    def state_dict(self) -> dict[str, Any]:
        """The filled part of every array as tensors (no copies), plus the counters."""
        n = int(min(self.stream_added.max(), self.capacity))
        f = int(min(self.frames_added.max(), self.frame_capacity))
        state: dict[str, Any] = {
            k: torch.from_numpy(getattr(self, k)[:, : f if k == "frames" else n]) for k in self._ARRAYS
        }
        counters = {"frames_added": self.frames_added, "added": self.stream_added, "in_episode": self.in_episode,
                    "current": self._current}  # fmt: skip
        state.update({k: torch.from_numpy(v.copy()) for k, v in counters.items()})
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Also reads the single-stream layout of checkpoints written before streams existed."""
        single = state["frame_pos"].ndim == 1
        streams = 1 if single else state["frame_pos"].shape[0]
        if streams != self.streams:
            raise ValueError(f"the saved replay has {streams} streams (envs), this agent {self.streams}")
        for key in self._ARRAYS:
            values = state[key].numpy()
            values = values[None] if single else values
            getattr(self, key)[:, : values.shape[1]] = values
        for key, attr in (("frames_added", "frames_added"), ("added", "stream_added"), ("in_episode", "in_episode"),
                          ("current", "_current")):  # fmt: skip
            value = state[key]
            getattr(self, attr)[:] = value.numpy() if isinstance(value, torch.Tensor) else value


class PrioritizedReplayBuffer(ReplayBuffer):
    """Prioritized replay (Schaul et al. 2016, proportional): transition i is drawn with probability
    P(i) = p_i^alpha / sum_k p_k^alpha, p_i = |TD error| + eps, new transitions at the highest priority
    seen; the loss of a draw is weighted by (N P(i))^-beta / max over the batch, beta annealed to 1 by the
    caller. Priorities live in one `SumTree` over all streams' slots (leaf = stream * capacity + slot)."""

    def __init__(self, capacity: int, observation_shape: tuple[int, ...], dtype: np.dtype | type = np.float32,
                 *, frame_stack: int = 1, alpha: float = 0.5, eps: float = 1e-6, streams: int = 1):  # fmt: skip
        super().__init__(capacity, observation_shape, dtype, frame_stack=frame_stack, streams=streams)
        self.tree = SumTree(self.streams * self.capacity)
        self.alpha, self.eps = alpha, eps
        self.max_priority = 1.0
        """The largest p^alpha given so far: what a new transition gets."""

    def add_batch(self, streams, actions, rewards, next_observations, terminated, truncated) -> np.ndarray:
        slots = super().add_batch(streams, actions, rewards, next_observations, terminated, truncated)
        leaves = np.asarray(streams, np.int64) * self.capacity + slots
        self.tree.update(leaves, np.full(len(leaves), self.max_priority))
        return slots

    def _positions_of(self, leaves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(streams, absolute positions) of the transitions now in the tree's `leaves` (the newest one
        written to each slot)."""
        streams, slots = np.divmod(leaves, self.capacity)
        return streams, slots + self.capacity * ((self.stream_added[streams] - 1 - slots) // self.capacity)

    def sample_prioritized(
        self, batch_size: int, rng: np.random.Generator, beta: float, *, n_step: int = 1, gamma: float = 0.99
    ) -> tuple[ReplayBatch, np.ndarray, np.ndarray]:
        """(batch, leaves (B,) int64 to pass back to `update_priorities`, importance weights (B,) float32)."""
        if self.added == 0:
            raise RuntimeError("cannot sample an empty replay buffer")
        leaves = self.tree.sample(batch_size, rng)
        for _ in range(100):  # a transition whose oldest frame was overwritten cannot be stacked: draw again
            stale = self._stale(*self._positions_of(leaves))
            if not stale.any():
                break
            self.tree.update(leaves[stale], np.zeros(int(stale.sum())))  # and it is never drawn again
            leaves[stale] = self.tree.sample(int(stale.sum()), rng)
        streams, positions = self._positions_of(leaves)
        batch = self.sample(batch_size, rng, n_step=n_step, gamma=gamma, positions=positions, streams=streams)
        probabilities = self.tree.get(leaves) / self.tree.total
        weights = (len(self) * probabilities) ** -beta
        return batch, leaves, (weights / weights.max()).astype(np.float32)

    def update_priorities(self, leaves: np.ndarray, td_errors: np.ndarray) -> None:
        """New priorities (|TD error| + eps)^alpha for the transitions just learned from."""
        priorities = (np.abs(np.asarray(td_errors, np.float64)) + self.eps) ** self.alpha
        self.tree.update(leaves, priorities)
        self.max_priority = max(self.max_priority, float(priorities.max()))

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["priorities"] = torch.from_numpy(self.tree.get(np.arange(self.streams * self.capacity)).copy())
        state["max_priority"] = self.max_priority
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        priorities = state["priorities"].numpy()
        self.tree.update(np.arange(len(priorities)), priorities)
        self.max_priority = float(state["max_priority"])
