"""A3C (Mnih et al. 2016): asynchronous advantage actor-critic with Hogwild workers on a shared network.

The global actor-critic and the optimizer statistics live in shared memory; each worker process
copies the global weights, plays t_max steps of its own env, and applies its clipped gradient to the
global network without locks. `backend=ray` runs the same workers as Ray actors around a parameter
server instead (agents/a3c/ray_backend.py). Training always runs on the CPU: Hogwild needs the
weights in shared host memory, and per-step batch-1 inference gains nothing from a GPU.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import gymnasium as gym
import torch

from agents.a3c.config import A3CConfig
from agents.a3c.local_backend import WorkerStats, run_local
from agents.a3c.shared_optim import make_shared_optimizer
from agents.a3c.worker import build_network
from agents.base import Agent, require_discrete
from agents.context import TrainContext
from core.errors import IncompatibleEnvError
from core.resources import PROCESS_BYTES, check_fits, usable_cores
from core.seeding import generator_state, set_generator_state
from envs import EnvConfig


class A3CAgent(Agent[A3CConfig]):
    name = "a3c"
    Config = A3CConfig
    default_env = "VizdoomBasic-v1"
    default_steps = 500_000
    step_budgets = {"CartPole-v1": 200_000}
    search_space = {
        "learning_rate": {"low": 1e-5, "high": 1e-2, "log": True},
        "t_max": {"choices": [5, 10, 20, 30, 50]},
        "gamma": {"choices": [0.9, 0.95, 0.98, 0.99, 0.995]},
        "entropy_coef": {"low": 0.0, "high": 0.05},
        "gae_lambda": {"choices": [0.9, 0.95, 1.0]},
    }
    presets = {
        # Juliani's reward scale; a 3x larger step than his 1e-4 reaches the target within minutes.
        "VizdoomBasic-v1": {"reward_scale": 0.01, "learning_rate": 3e-4},
        # No LSTM needed for a fully observed state; a small MLP and a larger step learn in about a minute.
        "CartPole-v1": {"lstm_size": 0, "hidden_size": 64, "learning_rate": 2e-3, "reward_scale": 0.1},
    }

    @classmethod
    def env_config_for(cls, env: EnvConfig, config: A3CConfig) -> EnvConfig:
        # The LSTM carries the history, so one 84x84 frame per step (the tutorial's input) is enough.
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
        self.workers = WorkerStats()
        """Episodes and Ray node of each worker rank in the last `learn` (diagnostics, not checkpointed)."""

    @property
    def num_workers(self) -> int:
        return self.config.num_workers or usable_cores()

    def cores_used(self) -> int:
        return self.num_workers

    def check_machine(self) -> None:
        check_fits("num_workers", self.num_workers, PROCESS_BYTES, "each worker is a process with torch and an env")

    def train(self, ctx: TrainContext) -> None:
        if self.config.backend == "ray":
            from agents.a3c.ray_backend import run_ray  # noqa: PLC0415  (ray is an optional extra)

            self.workers = run_ray(self, ctx, self.num_workers)
        else:
            self.workers = run_local(self, ctx, self.num_workers)

    def initial_state(self) -> Any:
        return self.global_net.initial_state()

    def act(self, observation: Any, state: Any = None) -> tuple[int, Any]:
        with torch.inference_mode():
            logits, _, state = self.global_net(torch.as_tensor(observation)[None], state)
        return int(logits[0].argmax()), state

    def snapshot(self) -> A3CAgent:
        """A copy of the global network as it is now; the workers go on updating the shared one."""
        frozen = copy.copy(self)
        frozen.global_net = copy.deepcopy(self.global_net)
        return frozen

    def sample_action(self, observation: Any, state: Any = None) -> tuple[int, Any]:
        with torch.inference_mode():
            logits, _, state = self.global_net(torch.as_tensor(observation)[None], state)
            return int(torch.distributions.Categorical(logits=logits[0]).sample()), state

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
