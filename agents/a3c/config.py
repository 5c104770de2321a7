"""A3C's hyperparameters, in a module of their own so that worker processes and Ray actors import them
without importing the agent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from core.errors import ConfigError


@dataclass(frozen=True)
class A3CConfig:
    num_workers: int = 0
    """Worker processes (0 = one per CPU core)."""
    t_max: int = 20
    """Steps per rollout before an update (Mnih et al. 2016 use 5; the Doom tutorial 30)."""
    gamma: float = 0.99
    """Discount (Mnih et al. 2016; Juliani's Doom tutorial)."""
    gae_lambda: float = 1.0
    """GAE lambda for the policy's advantage; 1 is the paper's n-step advantage (Juliani, ikostrikov)."""
    learning_rate: float = 1e-4
    """Step size of the shared optimizer (Adam 1e-4 in Juliani's Doom tutorial)."""
    optimizer: Literal["adam", "rmsprop"] = "adam"
    """Shared Adam, or the paper's shared RMSProp (alpha 0.99, eps 0.1)."""
    value_coef: float = 0.5
    """Weight of the value loss (Juliani; ikostrikov)."""
    entropy_coef: float = 0.01
    """Weight of the entropy bonus (Mnih et al. 2016)."""
    max_grad_norm: float = 40.0
    """Global gradient norm clip per update (Juliani's Doom tutorial)."""
    reward_scale: float = 1.0
    """Training rewards are multiplied by this (0.01 for Doom as in the tutorial); logs show real scores."""
    hidden_size: int = 256
    """Width of the FC layer after the convs, or of the MLP body for vector observations."""
    lstm_size: int = 256
    """LSTM cells after the body (0 = no LSTM)."""
    frame_skip: int = 0
    """Tics each action repeats for in VizDoom/Atari (0 = the env default, 4). Coarser steps shorten the
    credit-assignment horizon: the ViZDoom DQN example repeats each action 12 tics on Basic."""
    screen_size: int = 0
    """Side of the square grayscale VizDoom/Atari frame (0 = the env default, 84). Frames of 64 or less
    get the universe-starter-agent's small conv stack (4x conv 3x3/2, 32 channels) instead of Mnih's."""
    backend: Literal["local", "ray"] = "local"
    """`local`: Hogwild processes on this machine; `ray`: Ray actors and a parameter server."""
    ray_address: str = ""
    """Ray cluster to join (empty: $RAY_ADDRESS, else a local Ray started for the run)."""

    def validate(self) -> None:
        if self.num_workers < 0 or self.t_max < 1 or self.frame_skip < 0 or self.screen_size < 0:
            raise ConfigError("num_workers, frame_skip and screen_size must be >= 0 and t_max >= 1")
        if self.learning_rate <= 0 or self.reward_scale <= 0 or self.max_grad_norm <= 0:
            raise ConfigError("learning_rate, reward_scale and max_grad_norm must be positive")
        if not (0 <= self.gamma <= 1 and 0 <= self.gae_lambda <= 1):
            raise ConfigError("gamma and gae_lambda must be in [0, 1]")
        if self.hidden_size < 1 or self.lstm_size < 0:
            raise ConfigError("hidden_size must be >= 1 and lstm_size >= 0")
