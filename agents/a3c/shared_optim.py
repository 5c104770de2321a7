"""Optimizers whose statistics live in shared memory, so every Hogwild worker updates the same moments.

The state tensors are created up front (torch creates them lazily on the first step, which would make
them private to whichever process stepped first) and moved to shared memory. `share_memory()` must be
called again after `load_state_dict`, which replaces the state tensors.
"""

from __future__ import annotations

import math

import torch


def _share_state(optimizer: torch.optim.Optimizer) -> None:
    for state in optimizer.state.values():
        for value in state.values():
            if torch.is_tensor(value):
                value.share_memory_()


ADAM_RATIO_BOUND = 10.0
"""Most an Adam step moves a parameter, in units of the learning rate. For any consistent Adam state,
|m_hat| / sqrt(v_hat) <= (1 - b1) / sqrt(1 - b2) * sqrt(1 / (1 - b1^2 / b2)), about 7.3 for the default
betas (Cauchy-Schwarz over the two moving averages), so the clamp never acts on a consistent state."""


class SharedAdam(torch.optim.Adam):
    """Adam whose moments are shared by every Hogwild worker and updated without locks.

    Lock-free updates can interleave: a worker may read a first moment that already holds another
    worker's gradient with a second moment that does not yet. Where the reader's own gradient is zero
    (a ReLU unit silent over its whole rollout) the second moment is then exactly zero and torch's
    Adam divides by eps alone, a step of ~1e7 learning rates that wrecked the network within the first
    updates (value loss 1e5) with eight workers. `step` clamps each parameter's step to the bound a
    consistent state obeys, so a race costs at most an ordinary step.
    """

    def __init__(self, params, lr: float = 1e-4, **kwargs):
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

    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None:
            raise ValueError("SharedAdam.step takes no closure")
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if group["weight_decay"]:
                    grad = grad.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                state["step"] += 1
                t = float(state["step"])
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denom = (exp_avg_sq.sqrt() / math.sqrt(1 - beta2**t)).add_(group["eps"])
                ratio = (exp_avg / (1 - beta1**t)).div_(denom).clamp_(-ADAM_RATIO_BOUND, ADAM_RATIO_BOUND)
                p.add_(ratio, alpha=-group["lr"])
        return None


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
