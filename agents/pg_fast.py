"""The policy gradient's CPU fast paths, each behind one call and tested equal to the plain torch path
(`policy(torch.as_tensor(x).float())`). Why they pay, with figures: docs/pg.md.

A Pong difference frame has ~1% nonzero pixels. `acting_logits` multiplies only the input rows of the
pixels lit somewhere in the batch, in numpy (no torch thread pool, whose tiny kernels stall on a busy
machine); `update_input` hands the update a sparse COO matrix when the batch is mostly zero, so the big
input layer's forward and backward products skip the zeros.
"""

from __future__ import annotations

import numpy as np
import torch

SPARSE_DENSITY = 0.05
"""Below this fraction of nonzero inputs a CPU update multiplies a sparse matrix."""


def update_input(observations: np.ndarray, device: torch.device) -> torch.Tensor:
    """(batch, *obs_shape) any dtype -> the (batch, obs_dim) input of the policy's forward pass: a float32
    sparse matrix on the CPU when mostly zero, else dense on `device` (frames travel as int8, 4x smaller)."""
    flat = np.asarray(observations).reshape(len(observations), -1)
    if device.type == "cpu" and np.count_nonzero(flat) < SPARSE_DENSITY * flat.size:
        return sparse_rows(flat)
    return torch.as_tensor(flat, device=device).float()


def acting_logits(policy: torch.nn.Module, observations: np.ndarray) -> np.ndarray | None:
    """(batch, *obs_shape) -> (batch, 1 or n_actions) float32 logits in numpy for a CPU policy with
    `input_weight` (obs_dim, hidden) and `out` (no biases); None elsewhere (the caller uses torch).
    The weights are read as views, so they follow the optimizer's in-place steps."""
    if policy.input_weight.device.type != "cpu":
        return None
    x = np.asarray(observations).reshape(len(observations), -1)
    w1 = policy.input_weight.detach().numpy()
    w2 = policy.out.weight.detach().numpy()
    lit = np.flatnonzero(x.any(axis=0))
    hidden = np.maximum(x[:, lit].astype(np.float32) @ w1[lit], 0)
    return hidden @ w2.T


def sparse_rows(x: np.ndarray) -> torch.Tensor:
    """(batch, n) array -> the same values as a float32 sparse COO tensor (row-major, coalesced)."""
    rows, cols = np.divmod(_flat_nonzero(x), x.shape[1])
    indices = torch.as_tensor(np.stack([rows, cols]))
    values = torch.as_tensor(x[rows, cols], dtype=torch.float32)
    # The indices come in row-major order, each once: already coalesced, nothing to check.
    return torch.sparse_coo_tensor(indices, values, x.shape, is_coalesced=True, check_invariants=False)


def _flat_nonzero(x: np.ndarray) -> np.ndarray:
    """`np.flatnonzero`, for a mostly-zero array of bytes scanning 8 bytes at a time as int64 words,
    then only the bytes of the few nonzero words."""
    flat = np.ascontiguousarray(x).reshape(-1)
    if flat.dtype.itemsize != 1 or flat.size % 8:
        return np.flatnonzero(flat)
    words = np.flatnonzero(flat.view(np.int64))
    byte_rows, byte_cols = np.nonzero(flat.reshape(-1, 8)[words])
    return words[byte_rows] * 8 + byte_cols
