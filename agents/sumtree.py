"""A sum tree for prioritized replay (Schaul et al. 2016), vectorised with numpy: leaves hold priorities,
each inner node the sum of its two children, so drawing in proportion to priority is a descent of
log2(capacity) levels, done for a whole batch at once."""

from __future__ import annotations

import numpy as np


class SumTree:
    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError("a sum tree needs a capacity of at least 1")
        self.capacity = capacity
        self.leaves = 1 << max(0, (capacity - 1).bit_length())
        """Leaf count: the capacity rounded up to a power of two (the spare leaves stay 0)."""
        self.nodes = np.zeros(2 * self.leaves, np.float64)
        """nodes[1] is the root; node k has children 2k and 2k+1; leaf i is node leaves + i."""

    @property
    def total(self) -> float:
        return float(self.nodes[1])

    def get(self, indices: np.ndarray) -> np.ndarray:
        return self.nodes[self.leaves + np.asarray(indices)]

    def update(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        """Set the leaves `indices` (B,) to `priorities` (B,) >= 0 and every sum above them. A repeated
        index keeps its last priority."""
        indices = np.asarray(indices, np.int64)
        priorities = np.asarray(priorities, np.float64)
        if (priorities < 0).any() or not np.isfinite(priorities).all():
            raise ValueError("priorities must be finite and >= 0")
        nodes = self.leaves + indices
        self.nodes[nodes] = priorities  # numpy assigns in order: the last of a repeated index wins
        nodes = np.unique(nodes // 2)
        while nodes[0] >= 1:
            self.nodes[nodes] = self.nodes[2 * nodes] + self.nodes[2 * nodes + 1]
            if nodes[0] == 1:
                break
            nodes = np.unique(nodes // 2)

    def find(self, values: np.ndarray) -> np.ndarray:
        """(B,) cumulative values in [0, total) -> (B,) leaf indices whose span of the cumulative sum holds
        each value (leaf i spans [sum of leaves before i, that + priority i))."""
        values = np.asarray(values, np.float64).copy()
        nodes = np.ones(len(values), np.int64)
        while nodes[0] < self.leaves:
            left = 2 * nodes
            go_right = values >= self.nodes[left]
            values -= np.where(go_right, self.nodes[left], 0.0)
            nodes = left + go_right
        # Rounding can step onto an empty spare leaf at the far right: take the last real one.
        return np.minimum(nodes - self.leaves, self.capacity - 1)

    def sample(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """Stratified draw in proportion to priority: one value in each of `batch_size` equal slices of the
        total (lower variance than independent draws, as in the paper)."""
        if self.total <= 0:
            raise ValueError("cannot sample a sum tree whose priorities are all 0")
        bounds = np.linspace(0.0, self.total, batch_size + 1)
        return self.find(rng.uniform(bounds[:-1], bounds[1:]))
