"""The agent interface every family implements, and the shared loop of step-wise learners.

An agent is built from its config dataclass and the (preprocessed) spaces, trains inside
`learn(ctx)` by reporting to a `TrainContext`, acts greedily through `act`, and saves itself as plain
data through `state_dict` / `load_state_dict` (tensors, arrays as tensors, plain containers).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch

from envs import EnvConfig
from trainer.context import TrainContext
from trainer.errors import IncompatibleEnvError


class Agent(ABC):
    name: ClassVar[str]
    """Command-line name (`qtable`, `dqn`, ...)."""
    Config: ClassVar[type]
    """Frozen dataclass of hyperparameters; every field has a working default and a docstring."""
    default_env: ClassVar[str]
    default_steps: ClassVar[int]
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    """Per-env hyperparameter overrides, as data: `{"Taxi-v3": {"learning_rate": 0.5}}`."""

    def __init__(
        self,
        config: Any,
        observation_space: gym.Space,
        action_space: gym.Space,
        *,
        device: torch.device | str = "cpu",
        seed: int = 0,
    ):
        self.config = config
        self.observation_space = observation_space
        self.action_space = action_space
        self.device = torch.device(device)
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    # Class-level decisions made before an agent exists ---------------------------------------
    @classmethod
    def env_config(cls, env_id: str, config: Any) -> EnvConfig:
        """The env (and preprocessing) this agent trains on; override to pick e.g. Karpathy frames."""
        return EnvConfig(env_id)

    @classmethod
    def check_spaces(cls, observation_space: gym.Space, action_space: gym.Space) -> None:
        """Raise `IncompatibleEnvError` (one line) when the agent cannot run on these spaces."""
        return None

    # Training and acting ----------------------------------------------------------------------
    @abstractmethod
    def learn(self, ctx: TrainContext) -> None:
        """Train until `ctx.should_stop()`, reporting steps, episodes and metrics to `ctx`."""

    @abstractmethod
    def act(self, observation: Any, state: Any = None) -> tuple[Any, Any]:
        """Greedy action for one observation; `state` is carried between steps (an LSTM's, say)."""

    def initial_state(self) -> Any:
        """The `state` to pass to `act` at the start of an episode (None for memoryless policies)."""
        return None

    # Persistence --------------------------------------------------------------------------------
    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: parameters, optimizer, schedules, RNG. Plain data only."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def require_discrete(agent: str, space: gym.Space, what: str) -> None:
    if not isinstance(space, gym.spaces.Discrete):
        raise IncompatibleEnvError(f"{agent} needs a discrete {what} space, but this env has {space}")


class StepwiseAgent(Agent):
    """An agent that learns from every transition of one env: Q-table, Q-network, DQN.

    Subclasses implement `explore` and `observe`; the loop, episode logging, checkpoints and stops
    are shared here.
    """

    @abstractmethod
    def explore(self, observation: Any) -> Any:
        """Training-time (exploring) action for one observation."""

    @abstractmethod
    def observe(
        self,
        observation: Any,
        action: Any,
        reward: float,
        next_observation: Any,
        terminated: bool,
        truncated: bool,
    ) -> dict[str, float] | None:
        """Learn from one transition; return scalars to log (e.g. `{"losses/td": ...}`) or None.

        `terminated` ends bootstrapping; `truncated` (a time limit) does not.
        """

    def end_episode(self) -> dict[str, float] | None:
        """Called after each episode (per-episode schedules); return scalars to log or None."""
        return None

    def learn(self, ctx: TrainContext) -> None:
        env = ctx.make_env()
        try:
            observation, _ = env.reset(seed=ctx.env_seed())
            while not ctx.should_stop():
                action = self.explore(observation)
                next_observation, reward, terminated, truncated, info = env.step(action)
                metrics = self.observe(observation, action, float(reward), next_observation, terminated, truncated)
                if metrics:
                    ctx.log(metrics)
                ctx.add_steps(1)
                if terminated or truncated:
                    ctx.record_info(info)
                    metrics = self.end_episode()
                    if metrics:
                        ctx.log(metrics)
                    ctx.maybe_checkpoint()
                    observation, _ = env.reset()
                else:
                    observation = next_observation
        finally:
            env.close()
