"""REINFORCE policy gradient after Karpathy's "Pong from Pixels" (2016), in torch, over parallel envs.

One hidden layer of ReLU units maps an observation (on Pong the (80, 80) int8 difference frame of
`envs.atari.KarpathyPong`) to a sigmoid over two actions (UP/DOWN on Pong) or a softmax over more.
Episodes are played by several envs at once with one batched forward pass; after every
`batch_size` finished episodes the log-likelihood of the sampled actions, weighted by standardised
discounted returns, is ascended with RMSProp. Episodes that straddle an update were partly played
by the previous parameters (Karpathy's own loop is strictly on-policy with one env); with 16 envs
that is about 1.6 updates per episode, and Pong still learns fast with 3e-4 (below).

On Pong the envs are ale-py's threaded vector env (`batched`): every core emulates, in this process,
and the Karpathy frames are made for the whole batch at once. Of its 16 envs the policy acts on
the first 8 to finish (`envs_per_step`) while the other 8 emulate, so acting overlaps the emulation
(the update still pauses it): 2.98x the single-process numpy original on 2 cores (bench/bench_pg.py:
6,346 vs 2,128 steps/s; 2.27x with all 8 envs stepped at once). Three times his step size beats the built-in
player (mean of the last 100 episodes above 0) after 8.1M steps, 3,741 episodes, 23 minutes on 2
cores at ~6,000 steps/s (seed 1; +4.25 at 16.5M steps, 45 minutes; seed 2: 9.8M steps, 27 minutes):

    python train.py pg --set learning_rate=3e-4 --steps 20000000
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from agents.base import Agent, require_discrete
from agents.context import TrainContext
from core.errors import ConfigError, IncompatibleEnvError
from core.resources import torch_threads
from core.seeding import generator_state, set_generator_state
from envs import EnvConfig, answered_env_ids

# Karpathy's gradient-collection batch can reach ~10 games x ~8k steps; the backward pass runs over
# it in chunks so the float32 copy of the frames never has to exist all at once.
UPDATE_CHUNK = 8192
# Below this fraction of nonzero inputs a CPU update multiplies a sparse matrix: a Pong difference
# frame has ~0.1-1% nonzero pixels, and the sparse forward + backward of a 3,000-frame batch took
# 117 ms against 499 ms dense here, with the same gradient.
SPARSE_DENSITY = 0.05


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
    """Envs played in parallel (Pong on 2 cores, ale-py batch, steps/s in training: 8 envs 5,063,
    16 envs acting on 8 at a time 6,378, 24 on 12 6,653)."""
    batched: bool = True
    """Atari: ale-py's vector env, whose C++ threads emulate every env on all cores in this process."""
    envs_per_step: int = 8
    """With `batched` Atari: act on the first this many envs (at most num_envs; 0 = all) to finish
    each step while the others emulate, so the policy's work overlaps the emulators'. Episodes then
    interleave by thread timing, so a run is not reproducible step for step; 0 is."""
    asynchronous: bool = True
    """Without `batched`: one process per env (preprocessing in the worker; only the small frame crosses)."""
    torch_threads: int = 1
    """CPU threads for torch while training (0 = leave as is): the env workers need the other cores,
    and a one-row matmul on two contended threads measured 16x slower than on one here."""

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
    rows, one per lit pixel (4x faster than the columns of an (hidden, obs_dim) matrix here).
    """

    def __init__(self, obs_dim: int, hidden_size: int, n_actions: int, generator: torch.Generator):
        super().__init__()
        self.input_weight = nn.Parameter(torch.randn((obs_dim, hidden_size), generator=generator) / obs_dim**0.5)
        self.out = nn.Linear(hidden_size, 1 if n_actions == 2 else n_actions, bias=False)
        with torch.no_grad():
            self.out.weight.copy_(torch.randn(self.out.weight.shape, generator=generator) / hidden_size**0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`x` dense, or a sparse COO matrix (autograd still reaches the input weights)."""
        hidden = torch.sparse.mm(x, self.input_weight) if x.is_sparse else x @ self.input_weight
        return self.out(torch.relu(hidden))


def sparse_rows(x: np.ndarray) -> torch.Tensor:
    """(batch, n) array -> the same values as a float32 sparse COO tensor (row-major, coalesced)."""
    rows, cols = np.divmod(_flat_nonzero(x), x.shape[1])
    indices = torch.as_tensor(np.stack([rows, cols]))
    values = torch.as_tensor(x[rows, cols], dtype=torch.float32)
    # The indices come in row-major order, each once: already coalesced, nothing to check.
    return torch.sparse_coo_tensor(indices, values, x.shape, is_coalesced=True, check_invariants=False)


def _flat_nonzero(x: np.ndarray) -> np.ndarray:
    """`np.flatnonzero`; for a mostly-zero array of bytes 3.4x faster (8,000 Pong frames: 41 vs
    141 ms): scan 8 bytes at a time as int64 words, then only the bytes of the few nonzero words."""
    flat = np.ascontiguousarray(x).reshape(-1)
    if flat.dtype.itemsize != 1 or flat.size % 8:
        return np.flatnonzero(flat)
    words = np.flatnonzero(flat.view(np.int64))
    byte_rows, byte_cols = np.nonzero(flat.reshape(-1, 8)[words])
    return words[byte_rows] * 8 + byte_cols


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


class PolicyGradientAgent(Agent):
    name = "pg"
    Config = PGConfig
    default_env = "ALE/Pong-v5"
    default_steps = 20_000_000
    presets = {
        "ALE/Pong-v5": {"action_subset": (2, 3), "reset_at_reward": True},
        "PongNoFrameskip-v4": {"action_subset": (2, 3), "reset_at_reward": True},
        # Dense +1/-1 rewards: resetting at each would erase every return. Tiny envs step faster in
        # one process, and their few inputs tolerate a larger step (CartPole: seeds 1-8 reach 115-500
        # in 80k steps; Acrobot runs but has not learned in 100k steps with lr 1e-2 or 1e-3).
        "CartPole-v1": {"reset_at_reward": False, "learning_rate": 1e-2, "asynchronous": False, "num_envs": 8},
        "Acrobot-v1": {"reset_at_reward": False, "learning_rate": 1e-2, "asynchronous": False, "num_envs": 8},
    }

    @classmethod
    def env_config_for(cls, env: EnvConfig, config: PGConfig) -> EnvConfig:
        return replace(env, preprocessing="karpathy") if env.family == "atari" else env

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
        """(batch, *obs_shape) any dtype -> logits; frames travel to the device as int8 (4x smaller).
        Mostly-zero inputs on the CPU go through a sparse product (SPARSE_DENSITY)."""
        flat = np.asarray(observations).reshape(len(observations), -1)
        if self.device.type == "cpu" and np.count_nonzero(flat) < SPARSE_DENSITY * flat.size:
            return self.policy(sparse_rows(flat))
        return self.policy(torch.as_tensor(flat, device=self.device).float())

    def action_probabilities(self, observations: np.ndarray) -> np.ndarray:
        """(batch, *obs_shape) -> (batch, n_actions) float64 probabilities.

        On the CPU this runs in numpy and multiplies only the input columns that are nonzero in some
        row: a Pong difference frame has ~1% nonzero pixels, so the 6400x200 layer costs ~100x less,
        exactly. numpy also avoids torch's thread pool, whose tiny kernels stall on a busy machine.
        """
        x = np.asarray(observations).reshape(len(observations), -1)
        if self.device.type == "cpu":
            w1 = self.policy.input_weight.detach().numpy()  # views: they follow the optimizer's in-place steps
            w2 = self.policy.out.weight.detach().numpy()
            lit = np.flatnonzero(x.any(axis=0))
            hidden = np.maximum(x[:, lit].astype(np.float32) @ w1[lit], 0)
            logits = (hidden @ w2.T).astype(np.float64)
        else:
            with torch.inference_mode():
                logits = self._logits(x).cpu().numpy().astype(np.float64)
        if logits.shape[1] == 1:
            up = 1.0 / (1.0 + np.exp(-logits))
            return np.concatenate([up, 1.0 - up], axis=1)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def act(self, observation: Any, state: Any = None) -> tuple[int, Any]:
        probs = self.action_probabilities(np.asarray(observation)[None])
        return int(self.actions[int(probs[0].argmax())]), state

    def sample(self, observations: np.ndarray) -> np.ndarray:
        """(num_envs, ...) observations -> (num_envs,) sampled indices into `self.actions`."""
        probs = self.action_probabilities(observations)
        draws = self.rng.random(len(probs))[:, None]
        return np.minimum((draws >= probs.cumsum(axis=1)).sum(axis=1), probs.shape[1] - 1)

    def train(self, ctx: TrainContext) -> None:
        with torch_threads(self.config.torch_threads, self.device):
            self._learn(ctx)

    def _learn(self, ctx: TrainContext) -> None:
        c = self.config
        # ale-py's threaded batch autoresets in the same step like the factory's other vector envs;
        # gymnasium's numpy CartPole resets a step later, which the episode buffer does not expect.
        batched = c.batched and ctx.env_config.family == "atari"
        envs_per_step = min(c.envs_per_step, c.num_envs) if batched else 0
        envs = ctx.make_vector_env(
            c.num_envs, asynchronous=c.asynchronous, batched=batched, envs_per_step=envs_per_step
        )
        buffer = EpisodeBuffer(c.num_envs)
        try:
            observations, infos = envs.reset(seed=ctx.env_seed())
            while not ctx.should_stop():
                indices = self.sample(observations)
                buffer.act(answered_env_ids(infos, len(observations)), observations, indices)
                observations, rewards, terminated, truncated, infos = envs.step(self.actions[indices])
                # A truncated game ends the Monte Carlo return like a terminated one: nothing to bootstrap.
                done = terminated | truncated
                ctx.add_steps(buffer.answer(answered_env_ids(infos, len(observations)), rewards, done))
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
        self.updates = int(state["updates"])
        self.running_return = None if state["running_return"] is None else float(state["running_return"])
        set_generator_state(self.rng, state["rng"])
