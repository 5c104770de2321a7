"""A3C (Mnih et al. 2016): asynchronous advantage actor-critic with Hogwild workers on a shared network.

The global actor-critic and the optimizer statistics live in shared memory; each worker process
copies the global weights, plays t_max steps of its own env, and applies its clipped gradient to the
global network without locks. `backend=ray` runs the same workers as Ray actors around a parameter
server instead (agents/a3c/ray_backend.py). Training always runs on the CPU: Hogwild needs the
weights in shared host memory, and per-step batch-1 inference gains nothing from a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import gymnasium as gym
import torch

from agents.a3c.local_backend import run_local
from agents.a3c.shared_optim import make_shared_optimizer
from agents.a3c.worker import build_network
from agents.base import Agent, require_discrete
from envs import EnvConfig
from trainer.context import TrainContext
from trainer.errors import ConfigError, IncompatibleEnvError
from trainer.resources import usable_cores
from trainer.seeding import generator_state, set_generator_state


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


class A3CAgent(Agent):
    name = "a3c"
    Config = A3CConfig
    default_env = "VizdoomBasic-v1"
    default_steps = 500_000
    presets = {
        # Juliani's reward scale; a 3x larger step than his 1e-4 reaches the target within minutes.
        "VizdoomBasic-v1": {"reward_scale": 0.01, "learning_rate": 3e-4},
        # No LSTM needed for a fully observed state; a small MLP and a larger step learn in about a minute.
        "CartPole-v1": {"lstm_size": 0, "hidden_size": 64, "learning_rate": 2e-3, "reward_scale": 0.1},
    }

    @classmethod
    def env_config(cls, env_id: str, config: A3CConfig) -> EnvConfig:
        # The LSTM carries the history, so one 84x84 frame per step (the tutorial's input) is enough.
        env = EnvConfig(env_id)
        if env.family not in ("vizdoom", "atari"):
            return env
        return replace(
            env,
            frame_stack=1,
            frame_skip=config.frame_skip or env.frame_skip,
            screen_size=config.screen_size or env.screen_size,
        )

    @classmethod
    def check_spaces(cls, observation_space: gym.Space, action_space: gym.Space) -> None:
        require_discrete("a3c", action_space, "action")
        if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) not in (1, 2, 3):
            raise IncompatibleEnvError(f"a3c needs vector or image Box observations, not {observation_space}")

    def __init__(self, config: A3CConfig, observation_space, action_space, **kwargs):
        super().__init__(config, observation_space, action_space, **kwargs)
        torch.manual_seed(self.seed)
        self.global_net = build_network(config, observation_space, action_space)
        self.global_net.share_memory()
        self.optimizer = make_shared_optimizer(config.optimizer, self.global_net.parameters(), config.learning_rate)
        self.worker_episodes: dict[int, int] = {}
        """Episodes each worker rank finished in the last `learn` (diagnostics, not checkpointed)."""

    @property
    def num_workers(self) -> int:
        return self.config.num_workers or usable_cores()

    def learn(self, ctx: TrainContext) -> None:
        if self.config.backend == "ray":
            from agents.a3c.ray_backend import run_ray  # noqa: PLC0415  (ray is an optional extra)

            self.worker_episodes = dict(run_ray(self, ctx, self.num_workers))
        else:
            self.worker_episodes = dict(run_local(self, ctx, self.num_workers))

    def initial_state(self) -> Any:
        return self.global_net.initial_state()

    def act(self, observation: Any, state: Any = None) -> tuple[int, Any]:
        with torch.inference_mode():
            logits, _, state = self.global_net(torch.as_tensor(observation)[None], state)
        return int(logits[0].argmax()), state

    def state_dict(self) -> dict[str, Any]:
        return {
            "network": {k: v.detach().clone() for k, v in self.global_net.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "rng": generator_state(self.rng),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.global_net.load_state_dict(state["network"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.optimizer.share_memory()  # load_state_dict replaced the shared statistics with private copies
        set_generator_state(self.rng, state["rng"])
