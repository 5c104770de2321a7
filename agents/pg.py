"""REINFORCE policy gradient after Karpathy's "Pong from Pixels" (2016), in torch, over parallel envs.

One hidden layer of ReLU units maps an observation (on Pong the (80, 80) int8 difference frame of
`envs.atari.KarpathyPong`) to a sigmoid over two actions (UP/DOWN on Pong) or a softmax over more.
Episodes are played by several envs at once with one batched forward pass; after every `batch_size`
finished episodes the log-likelihood of the sampled actions, weighted by standardised discounted
returns, is ascended with RMSProp. Episodes that straddle an update were partly played by the previous
parameters (Karpathy's own loop is strictly on-policy with one env).

On Pong the envs are ale-py's threaded batch (every core emulates in this process) and the policy acts
on the first envs to finish each step while the others emulate (`envs_per_step`). The CPU fast paths
for acting and for the update's sparse frames live in `agents/pg_fast.py`; speeds and the learning
curves of `python train.py pg --set learning_rate=3e-4` are in docs/pg.md and the README.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from agents import pg_fast
from agents.base import Agent, check_vector_envs, require_discrete
from agents.context import TrainContext
from core.errors import ConfigError, IncompatibleEnvError
from core.resources import torch_threads, usable_cores
from core.seeding import generator_state, set_generator_state
from envs import EnvConfig, resolve_vector_mode

# Karpathy's gradient-collection batch can reach ~10 games x ~8k steps; the backward pass runs over
# it in chunks so the float32 copy of the frames never has to exist all at once.
UPDATE_CHUNK = 8192


@dataclass(frozen=True)
class PGConfig:
    hidden_size: int = 200
    """ReLU units in the one hidden layer (Karpathy: H = 200)."""
    batch_size: int = 10
    """Finished episodes per parameter update (Karpathy: batch_size = 10)."""
    learning_rate: float = 1e-4
    """RMSProp step size (Karpathy: learning_rate = 1e-4)."""
    decay_rate: float = 0.99
    """RMSProp decay of the squared-gradient average, torch's alpha (Karpathy: decay_rate = 0.99)."""
    rmsprop_eps: float = 1e-5
    """RMSProp denominator epsilon (Karpathy: 1e-5)."""
    gamma: float = 0.99
    """Discount of rewards (Karpathy: gamma = 0.99)."""
    reset_at_reward: bool = True
    """Restart the discounted sum at every nonzero reward: in Pong each point is its own game."""
    standardize: Literal["batch", "episode", "none"] = "batch"
    """Standardise returns over the whole batch, per episode (Karpathy's code), or not at all."""
    action_subset: tuple[int, ...] = ()
    """Env actions the policy chooses among (Pong: 2, 3 = UP, DOWN); empty = all. Two -> sigmoid."""
    num_envs: int = 16
    """Envs played in parallel."""
    vector_mode: Literal["auto", "sync", "async", "batch"] = "auto"
    """How the envs run (`envs.VectorMode`): auto is ale-py's threaded batch on Atari (every core
    emulates in this process), one process after another elsewhere; async is one process per env."""
    envs_per_step: int = 8
    """Where the batch can (ale-py's), act on the first this many envs to finish each step (at most
    num_envs; 0 = all) while the others emulate, so the policy's work overlaps the emulators'. Episodes
    then interleave by thread timing, so a run is not reproducible step for step; 0 is."""
    torch_threads: int = 1
    """CPU threads for torch while training (0 = leave as is): the emulators need the other cores, and
    tiny matrix products on two contended threads stall."""

    def validate(self) -> None:
        if self.hidden_size < 1 or self.batch_size < 1 or self.num_envs < 1:
            raise ConfigError("hidden_size, batch_size and num_envs must be at least 1")
        if self.envs_per_step < 0 or self.torch_threads < 0:
            raise ConfigError("envs_per_step and torch_threads must be at least 0")
        if self.learning_rate <= 0:
            raise ConfigError("learning_rate must be positive")
        if not 0 <= self.gamma <= 1 or not 0 <= self.decay_rate < 1:
            raise ConfigError("gamma must be in [0, 1] and decay_rate in [0, 1)")
        if len(self.action_subset) == 1 or len(set(self.action_subset)) != len(self.action_subset):
            raise ConfigError("action_subset must name at least two distinct actions (or be empty)")


def discounted_returns(rewards: np.ndarray, gamma: float, reset_at_reward: bool) -> np.ndarray:
    """(T,) rewards -> (T,) float32 discounted returns G_t = r_t + gamma G_{t+1}.

    With `reset_at_reward` the sum restarts after each nonzero reward, as Karpathy does for Pong
    (a point ends a rally; what follows is not the consequence of earlier actions).
    """
    out = np.zeros(len(rewards), dtype=np.float32)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        if reset_at_reward and rewards[t] != 0:
            running = 0.0
        running = running * gamma + float(rewards[t])
        out[t] = running
    return out


def standardized(values: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance (left centred only when all values are equal)."""
    values = values - values.mean()
    std = values.std()
    return values / std if std > 0 else values


class PolicyNetwork(nn.Module):
    """x (batch, obs_dim) float32 -> logits (batch, 1) for two actions or (batch, n_actions).

    No biases and weights ~ N(0, 1/fan_in), as in Karpathy's numpy code. The input weights are
    stored input-major, (obs_dim, hidden): acting on a sparse frame then gathers whole contiguous
    rows, one per lit pixel.
    """

    def __init__(self, obs_dim: int, hidden_size: int, n_actions: int, generator: torch.Generator):
        super().__init__()
        self.input_weight = nn.Parameter(torch.randn((obs_dim, hidden_size), generator=generator) / obs_dim**0.5)
        self.out = nn.Linear(hidden_size, 1 if n_actions == 2 else n_actions, bias=False)
        with torch.no_grad():
            self.out.weight.copy_(torch.randn(self.out.weight.shape, generator=generator) / hidden_size**0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`x` (batch, obs_dim) float32, dense or a sparse COO matrix (autograd reaches the weights either way)."""
        return self.out(torch.relu(x @ self.input_weight))


def log_prob(logits: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """log pi(index | x) for (batch, 1) sigmoid logits (index 0 has probability sigmoid) or softmax."""
    if logits.shape[1] == 1:
        z = logits[:, 0]
        # log sigmoid(z) for index 0, log sigmoid(-z) for index 1.
        return nn.functional.logsigmoid(torch.where(indices == 0, z, -z))
    return torch.log_softmax(logits, dim=1).gather(1, indices[:, None])[:, 0]


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """(batch, n_actions) action probabilities from either head."""
    if logits.shape[1] == 1:
        up = torch.sigmoid(logits)
        return torch.cat([up, 1 - up], dim=1)
    return torch.softmax(logits, dim=1)


class EpisodeBuffer:
    """Per-env trajectories in progress and the finished episodes of the current batch.

    A step is recorded in two halves, keyed by env id: `act` when the action is sent and `answer`
    when its reward comes back, which a partial batch (`envs_per_step`) may return a few steps
    later. An answer with no action pending is a reset frame arriving late and records nothing.
    """

    def __init__(self, num_envs: int):
        self.running: list[tuple[list, list, list]] = [([], [], []) for _ in range(num_envs)]
        self.finished: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def act(self, env_ids: np.ndarray, observations: np.ndarray, indices: np.ndarray) -> None:
        for row, env in enumerate(env_ids):
            obs, act, _ = self.running[env]
            obs.append(observations[row])
            act.append(indices[row])

    def answer(self, env_ids: np.ndarray, rewards: np.ndarray, done: np.ndarray) -> int:
        """Rewards (and episode ends) for these envs' pending actions; returns how many there were."""
        steps = 0
        for row, env in enumerate(env_ids):
            obs, act, rew = self.running[env]
            if len(rew) == len(act):
                continue
            rew.append(rewards[row])
            steps += 1
            if done[row]:
                self.finished.append((np.stack(obs), np.array(act), np.array(rew, dtype=np.float32)))
                self.running[env] = ([], [], [])
        return steps

    def take(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        batch, self.finished = self.finished, []
        return batch


def input_major_state(state: dict[str, Any]) -> dict[str, Any]:
    """An agent state from before the input-major layout (the input weights as a (hidden, obs_dim)
    `hidden.weight`) in today's layout, RMSProp's running average of them included; others as is."""
    if "hidden.weight" not in state["policy"]:
        return state
    policy = {key: value for key, value in state["policy"].items() if key != "hidden.weight"}
    policy["input_weight"] = state["policy"]["hidden.weight"].t().contiguous()
    # The input weights are the optimizer's parameter 0 in both layouts.
    optimizer_state = dict(state["optimizer"]["state"])
    if 0 in optimizer_state:
        optimizer_state[0] = {
            key: value.t().contiguous() if torch.is_tensor(value) and value.dim() == 2 else value
            for key, value in optimizer_state[0].items()
        }
    return {**state, "policy": policy, "optimizer": {**state["optimizer"], "state": optimizer_state}}


class PolicyGradientAgent(Agent[PGConfig]):
    name = "pg"
    Config = PGConfig
    default_env = "ALE/Pong-v5"
    default_steps = 20_000_000
    step_budgets = {"CartPole-v1": 100_000, "Acrobot-v1": 100_000}
    search_space = {
        "learning_rate": {"low": 1e-5, "high": 3e-2, "log": True},
        "batch_size": {"low": 1, "high": 20},
        "gamma": {"choices": [0.9, 0.95, 0.98, 0.99, 0.995]},
        "hidden_size": {"low": 16, "high": 400, "log": True},
        "decay_rate": {"choices": [0.9, 0.99, 0.999]},
    }
    resume_settings = frozenset({"learning_rate"})
    presets = {
        "ALE/Pong-v5": {"action_subset": (2, 3), "reset_at_reward": True},
        "PongNoFrameskip-v4": {"action_subset": (2, 3), "reset_at_reward": True},
        # Dense +1/-1 rewards: resetting at each would erase every return. Tiny envs step faster in
        # one process, and their few inputs tolerate a larger step (CartPole: seeds 1-8 reach 115-500
        # in 80k steps; Acrobot runs but has not learned in 100k steps with lr 1e-2 or 1e-3).
        "CartPole-v1": {"reset_at_reward": False, "learning_rate": 1e-2, "num_envs": 8},
        "Acrobot-v1": {"reset_at_reward": False, "learning_rate": 1e-2, "num_envs": 8},
    }

    @classmethod
    def env_config_for(cls, env: EnvConfig, config: PGConfig) -> EnvConfig:
        return replace(env, preprocessing="karpathy") if env.family == "atari" else env

    @classmethod
    def upgrade_config(cls, stored: dict[str, Any]) -> dict[str, Any]:
        """Runs saved before `vector_mode` had two flags: `batched` (ale-py's batch on Atari, the auto
        mode's choice) and `asynchronous` (a process per env elsewhere)."""
        if "batched" not in stored and "asynchronous" not in stored:
            return stored
        upgraded = {k: v for k, v in stored.items() if k not in ("batched", "asynchronous")}
        if stored.get("batched", True):
            upgraded["vector_mode"] = "auto"
        else:
            upgraded["vector_mode"] = "async" if stored.get("asynchronous", True) else "sync"
        return upgraded

    @classmethod
    def check_spaces(cls, observation_space: gym.Space, action_space: gym.Space) -> None:
        require_discrete("pg", action_space, "action")
        if not isinstance(observation_space, gym.spaces.Box):
            raise IncompatibleEnvError(f"pg needs a Box observation space, but this env has {observation_space}")

    def __init__(self, config: PGConfig, observation_space, action_space, **kwargs):
        super().__init__(config, observation_space, action_space, **kwargs)
        n = int(action_space.n)
        self.actions = np.array(config.action_subset or range(n), dtype=np.int64)
        if self.actions.max() >= n:
            raise ConfigError(f"action_subset {config.action_subset} names actions beyond this env's {n}")
        obs_dim = int(np.prod(observation_space.shape))
        generator = torch.Generator().manual_seed(self.seed)
        self.policy = PolicyNetwork(obs_dim, config.hidden_size, len(self.actions), generator).to(self.device)
        # Karpathy's update is exactly torch's RMSprop without momentum: cache = a*cache + (1-a)*g^2.
        self.optimizer = torch.optim.RMSprop(
            self.policy.parameters(), lr=config.learning_rate, alpha=config.decay_rate, eps=config.rmsprop_eps
        )
        self.updates = 0
        self.running_return: float | None = None

    def _logits(self, observations: np.ndarray) -> torch.Tensor:
        """(batch, *obs_shape) any dtype -> (batch, 1 or n_actions) logits, with autograd (the update)."""
        return self.policy(pg_fast.update_input(observations, self.device))

    def action_probabilities(self, observations: np.ndarray) -> np.ndarray:
        """(batch, *obs_shape) -> (batch, n_actions) float64 probabilities, without autograd (acting)."""
        logits = pg_fast.acting_logits(self.policy, observations)
        with torch.inference_mode():
            if logits is None:
                flat = np.asarray(observations).reshape(len(observations), -1)
                logits = self.policy(torch.as_tensor(flat, device=self.device).float()).cpu()
            return probabilities(torch.as_tensor(logits, dtype=torch.float64)).numpy()

    def act(self, observation: Any, state: Any = None) -> tuple[int, Any]:
        probs = self.action_probabilities(np.asarray(observation)[None])
        return int(self.actions[int(probs[0].argmax())]), state

    def act_batch(self, observations: np.ndarray, states: list[Any]) -> tuple[np.ndarray, list[Any]]:
        return self.actions[self.action_probabilities(observations).argmax(axis=1)], states

    def sample_action(self, observation: Any, state: Any = None) -> tuple[int, Any]:
        return int(self.actions[int(self.sample(np.asarray(observation)[None])[0])]), state

    def sample(self, observations: np.ndarray) -> np.ndarray:
        """(num_envs, ...) observations -> (num_envs,) sampled indices into `self.actions`."""
        probs = self.action_probabilities(observations)
        draws = self.rng.random(len(probs))[:, None]
        return np.minimum((draws >= probs.cumsum(axis=1)).sum(axis=1), probs.shape[1] - 1)

    def cores_used(self) -> int:
        mode = resolve_vector_mode(self.env_config, self.config.vector_mode)
        return 1 if mode == "sync" else min(self.config.num_envs, usable_cores())

    def check_machine(self) -> None:
        check_vector_envs(self.env_config, self.config.num_envs, self.config.vector_mode)

    def train(self, ctx: TrainContext) -> None:
        with torch_threads(self.config.torch_threads, self.device):
            self._learn(ctx)

    def _learn(self, ctx: TrainContext) -> None:
        c = self.config
        envs = ctx.make_vector_env(c.num_envs, mode=c.vector_mode, envs_per_step=min(c.envs_per_step, c.num_envs))
        buffer = EpisodeBuffer(c.num_envs)
        try:
            observations, infos = envs.reset(seed=ctx.env_seed())
            while not ctx.should_stop():
                indices = self.sample(observations)
                buffer.act(infos["env_id"], observations, indices)
                observations, rewards, terminated, truncated, infos = envs.step(self.actions[indices])
                # A truncated game ends the Monte Carlo return like a terminated one: nothing to bootstrap.
                done = terminated | truncated
                ctx.add_steps(buffer.answer(infos["env_id"], rewards, done))
                if done.any():
                    self._record_episodes(ctx, infos)
                if len(buffer.finished) >= c.batch_size:
                    ctx.log_now(self.update(buffer.take()))
                    ctx.maybe_checkpoint()
        finally:
            envs.close()

    def _record_episodes(self, ctx: TrainContext, infos: dict[str, Any]) -> None:
        for ret, _ in ctx.record_vector_info(infos):
            # Karpathy's running reward: an exponential average over episodes.
            self.running_return = ret if self.running_return is None else 0.99 * self.running_return + 0.01 * ret
            ctx.log({"charts/running_mean_return": self.running_return})

    def advantages(self, episodes: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> np.ndarray:
        """Concatenated (T_total,) float32 weights of every step's log-probability."""
        c = self.config
        returns = [discounted_returns(rew, c.gamma, c.reset_at_reward) for _, _, rew in episodes]
        if c.standardize == "episode":
            returns = [standardized(r) for r in returns]
        flat = np.concatenate(returns).astype(np.float32)
        return standardized(flat) if c.standardize == "batch" else flat

    def update(self, episodes: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, float]:
        """One RMSProp ascent step on sum_t A_t log pi(a_t|x_t) over the batch (Karpathy sums, too)."""
        weights = self.advantages(episodes)
        observations = np.concatenate([obs for obs, _, _ in episodes])
        indices = np.concatenate([act for _, act, _ in episodes])
        self.optimizer.zero_grad(set_to_none=True)
        total, entropy = 0.0, 0.0
        for start in range(0, len(weights), UPDATE_CHUNK):
            part = slice(start, start + UPDATE_CHUNK)
            logits = self._logits(observations[part])
            idx = torch.as_tensor(indices[part], device=self.device)
            w = torch.as_tensor(weights[part], device=self.device)
            loss = -(w * log_prob(logits, idx)).sum()
            loss.backward()
            total += float(loss.detach())
            with torch.no_grad():
                p = probabilities(logits)
                entropy += float(-(p * torch.log(p.clamp_min(1e-12))).sum())
        self.optimizer.step()
        self.updates += 1
        return {
            "losses/policy_loss": total / len(weights),
            "losses/entropy": entropy / len(weights),
            "charts/updates": self.updates,
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "updates": self.updates,
            "running_return": self.running_return,
            "rng": generator_state(self.rng),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        state = input_major_state(state)
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        for group in self.optimizer.param_groups:  # the config's step size: a resume may change it
            group["lr"] = self.config.learning_rate
        self.updates = int(state["updates"])
        self.running_return = None if state["running_return"] is None else float(state["running_return"])
        set_generator_state(self.rng, state["rng"])
