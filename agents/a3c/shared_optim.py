"""Optimizers whose statistics live in shared memory, so every Hogwild worker updates the same moments.

The state tensors are created up front (torch creates them lazily on the first step, which would make
them private to whichever process stepped first) and moved to shared memory. `share_memory()` must be
called again after `load_state_dict`, which replaces the state tensors.
"""

from __future__ import annotations

import torch


def _share_state(optimizer: torch.optim.Optimizer) -> None:
    for state in optimizer.state.values():
        for value in state.values():
            if torch.is_tensor(value):
                value.share_memory_()


class SharedAdam(torch.optim.Adam):
    def __init__(self, params, lr: float = 1e-4, **kwargs):
        # foreach=False: the per-tensor path updates state in place, which is what sharing needs.
        super().__init__(params, lr=lr, foreach=False, **kwargs)
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                state["step"] = torch.zeros((), dtype=torch.float32)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if group["amsgrad"]:
                    state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        self.share_memory()

    def share_memory(self) -> None:
        _share_state(self)


class SharedRMSprop(torch.optim.RMSprop):
    """RMSProp with shared statistics, the optimizer of Mnih et al. 2016 (alpha 0.99, eps 0.1)."""

    def __init__(self, params, lr: float = 7e-4, alpha: float = 0.99, eps: float = 0.1, **kwargs):
        super().__init__(params, lr=lr, alpha=alpha, eps=eps, foreach=False, **kwargs)
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                state["step"] = torch.zeros((), dtype=torch.float32)
                state["square_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if group["momentum"] > 0:
                    state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if group["centered"]:
                    state["grad_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        self.share_memory()

    def share_memory(self) -> None:
        _share_state(self)


def make_shared_optimizer(name: str, params, lr: float) -> SharedAdam | SharedRMSprop:
    if name == "adam":
        return SharedAdam(params, lr=lr)
    return SharedRMSprop(params, lr=lr)
