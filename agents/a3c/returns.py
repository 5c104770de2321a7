"""n-step returns, generalized advantage estimation and the A3C loss of one worker's rollout."""

from __future__ import annotations

import numpy as np
import torch
from torch.distributions import Categorical


def n_step_returns(rewards: np.ndarray, bootstrap: float, gamma: float) -> np.ndarray:
    """R_t = r_t + gamma * R_{t+1}, with R_T = bootstrap (0 after termination). (T,) float32."""
    returns = np.zeros(len(rewards), np.float32)
    running = float(bootstrap)
    for t in reversed(range(len(rewards))):
        running = float(rewards[t]) + gamma * running
        returns[t] = running
    return returns


def gae(rewards: np.ndarray, values: np.ndarray, bootstrap: float, gamma: float, lam: float) -> np.ndarray:
    """A_t = sum_k (gamma*lam)^k delta_{t+k}, delta_t = r_t + gamma V_{t+1} - V_t, V_T = bootstrap.

    Schulman et al. 2016; lam = 1 gives the n-step advantage R_t - V_t of the A3C paper. (T,) float32.
    """
    next_values = np.append(np.asarray(values[1:], np.float64), bootstrap)
    deltas = np.asarray(rewards, np.float64) + gamma * next_values - np.asarray(values, np.float64)
    return n_step_returns(deltas, 0.0, gamma * lam)


def a3c_loss(
    logits: torch.Tensor,
    values: torch.Tensor,
    actions: torch.Tensor,
    returns: torch.Tensor,
    advantages: torch.Tensor,
    value_coef: float,
    entropy_coef: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Summed over the rollout as in Mnih et al. 2016 (gradients accumulated over t_max steps).

    logits (T, A), values (T,), actions (T,) int64, returns/advantages (T,) float32.
    """
    dist = Categorical(logits=logits)
    policy_loss = -(dist.log_prob(actions) * advantages).sum()
    value_loss = 0.5 * (returns - values).pow(2).sum()
    entropy = dist.entropy().sum()
    loss = policy_loss + value_coef * value_loss - entropy_coef * entropy
    steps = len(actions)
    stats = {
        "losses/policy_loss": float(policy_loss.detach()) / steps,
        "losses/value_loss": float(value_loss.detach()) / steps,
        "losses/entropy": float(entropy.detach()) / steps,
    }
    return loss, stats
