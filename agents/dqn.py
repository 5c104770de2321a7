"""Deep Q-network (Mnih et al. 2015) with Double DQN, a dueling head and n-step returns as options.

Experience replay, a target network synced every `target_update_interval` steps (or softly with
`tau` < 1), the Huber loss on the TD error, gradient-norm clipping and a linearly decaying
epsilon-greedy policy. An MLP reads vector observations, the Nature CNN reads frame stacks.
Defaults are RL Zoo's CartPole-v1 hyperparameters (rl-baselines3-zoo, hyperparams/dqn.yml).
"""

from __future__ import annotations

import copy
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from agents.base import StepwiseAgent, check_vector_envs, require_discrete
from agents.context import TrainContext
from agents.networks import adam, check_compiler, clip_grad_norm, compiled, is_image_space, make_torso
from agents.replay import PrioritizedReplayBuffer, ReplayBatch, ReplayBuffer
from agents.schedules import linear_schedule
from core.errors import ConfigError, IncompatibleEnvError
from core.resources import check_fits, default_threads, native_bf16, torch_threads, total_memory
from core.seeding import generator_state, set_generator_state
from envs import final_observations

# Replay batches for a round are drawn together up to this many bytes of observations (CartPole: all
# 128 of a round; Atari: ~18 batches of 32 frame stacks).
SAMPLE_BYTES = 32 * 2**20
# `precision=auto` on a CPU with bf16 instructions takes bf16 only if its update passes take at most this
# share of float32's: a clear win, so that close timings do not flip the choice between runs.
BF16_PAYS = 0.85


@dataclass(frozen=True)
class DQNConfig:
    learning_rate: float = 2.3e-3
    """Adam step size (RL Zoo CartPole: 2.3e-3; Atari: 1e-4)."""
    final_learning_rate: float = -1.0
    """Step size reached linearly at the run's last step (RL Zoo's `lin_` schedules), or after
    `learning_rate_steps` where set; < 0 keeps `learning_rate` constant. CartPole's preset anneals to 0 so
    the last updates cannot undo the policy."""
    learning_rate_steps: int = 0
    """> 0: the step size reaches `final_learning_rate` after this many env steps and is held there, whatever
    the run's length (instead of at the run's last step)."""
    buffer_size: int = 100_000
    """Replay capacity in transitions."""
    learning_starts: int = 1_000
    """Env steps of pure experience collection before the first update (a run resumed without its replay
    collects as many again before it learns)."""
    batch_size: int = 64
    """Transitions per gradient step (Mnih et al.: 32; RL Zoo CartPole: 64)."""
    gamma: float = 0.99
    """Discount factor."""
    train_freq: int = 256
    """Env steps between training rounds (Mnih et al.: 4; RL Zoo CartPole: 256)."""
    gradient_steps: int = 128
    """Gradient steps per training round (RL Zoo CartPole: 128)."""
    target_update_interval: int = 10
    """Env steps between target-network syncs (Mnih et al.: 10k updates; RL Zoo CartPole: 10)."""
    tau: float = 1.0
    """Target sync weight: 1 copies the online net, < 1 is a soft (Polyak) update."""
    exploration_fraction: float = 0.16
    """Fraction of the run over which epsilon decays linearly (RL Zoo CartPole: 0.16)."""
    exploration_steps: int = 0
    """> 0: epsilon decays over this many env steps whatever the run's length (instead of the fraction)."""
    exploration_initial_eps: float = 1.0
    """Epsilon at the start."""
    exploration_final_eps: float = 0.04
    """Epsilon after the decay (RL Zoo CartPole: 0.04; Atari: 0.01)."""
    max_grad_norm: float = 10.0
    """Gradient-norm clip (Stable-Baselines3's default)."""
    hidden_sizes: tuple[int, ...] = (256, 256)
    """MLP hidden layers for vector observations (ignored for images: Nature CNN)."""
    cnn_scale: float = 1.0
    """Width of the Nature CNN for images, as a multiple of Mnih et al.'s (0.5: 16, 32, 32 filters and 256
    units, a cheaper update that affords more of them)."""
    double_q: bool = True
    """Double DQN target (van Hasselt et al. 2016): online net picks, target net evaluates."""
    dueling: bool = False
    """Dueling head (Wang et al. 2016): Q = V + A - mean(A)."""
    n_step: int = 1
    """Steps of real rewards before bootstrapping (Sutton 1988; Hessel et al. 2018 use 3)."""
    prioritized: bool = False
    """Prioritized replay (Schaul et al. 2016): draw transitions in proportion to their TD error."""
    priority_alpha: float = 0.5
    """How strongly priorities skew the draw (0: uniform; Rainbow: 0.5)."""
    priority_beta0: float = 0.4
    """Importance-weight exponent at the start, annealed linearly to 1 by the run's end (Schaul et al.: 0.4),
    or after `priority_beta_steps` where set."""
    priority_beta_steps: int = 0
    """> 0: the importance-weight exponent reaches 1 after this many env steps and is held there, whatever the
    run's length (instead of at the run's last step)."""
    priority_eps: float = 1e-6
    """Added to |TD error| so that no transition's priority is 0."""
    adam_eps: float = 1e-8
    """Adam's epsilon (torch: 1e-8; Rainbow on Atari: 1.5e-4, which damps steps of rarely seen states)."""
    num_envs: int = 1
    """Envs played together, one batched forward pass choosing all their actions; each env's transitions
    are a stream of their own in the replay. `learning_starts`, `train_freq`, `target_update_interval` and
    the exploration schedule count env steps of all envs together, so the replay ratio
    (gradient_steps / train_freq updates per env step) stays the same whatever the number of envs."""
    vector_mode: Literal["auto", "sync", "async", "batch"] = "auto"
    """How several envs run (envs.VectorMode): `auto` takes ale-py's threaded batch for Atari, else
    one env after another in this process."""
    save_replay: bool = False
    """Put the replay buffer in checkpoints, so a resumed run keeps its memory (large for Atari)."""
    precision: Literal["fp32", "bf16", "auto"] = "fp32"
    """`bf16`: the update's forward and backward passes run under bfloat16 autocast; weights, Adam and
    the loss stay float32, acting stays float32. `auto`: bf16 on a CUDA GPU that computes it; on a CPU
    with bf16 instructions (AVX-512 BF16, AMX) only where the first update measures it faster for this
    network and batch (AVX-512 BF16 alone can lose to float32); else fp32."""
    compile_update: bool = False
    """`torch.compile` the two networks' passes of the update (acting stays eager): fewer, fused kernels
    after a compilation of some seconds at the first update; on a CPU it needs a C++ compiler."""
    torch_threads: int = 0
    """CPU threads for torch; 0 picks 1 for MLPs (small batches only lose to thread sync, badly so on a
    busy machine) and up to 4 for the CNN (at most the usable cores and `OMP_NUM_THREADS` where set)."""

    def validate(self) -> None:
        if self.learning_rate <= 0:
            raise ConfigError("learning_rate must be positive")
        if not 0 <= self.gamma <= 1:
            raise ConfigError("gamma must be in [0, 1]")
        if not 0 < self.tau <= 1:
            raise ConfigError("tau must be in (0, 1]")
        if min(self.buffer_size, self.batch_size, self.train_freq, self.gradient_steps, self.n_step) < 1:
            raise ConfigError("buffer_size, batch_size, train_freq, gradient_steps and n_step must be >= 1")
        if self.target_update_interval < 1:
            raise ConfigError("target_update_interval must be >= 1")
        if not 0 <= self.exploration_fraction <= 1:
            raise ConfigError("exploration_fraction must be in [0, 1]")
        if not (0 <= self.priority_alpha <= 1 and 0 <= self.priority_beta0 <= 1):
            raise ConfigError("priority_alpha and priority_beta0 must be in [0, 1]")
        if self.priority_eps <= 0 or self.adam_eps <= 0:
            raise ConfigError("priority_eps and adam_eps must be positive")
        if self.exploration_steps < 0:
            raise ConfigError("exploration_steps must be >= 0 (0: use exploration_fraction)")
        if self.learning_rate_steps < 0:
            raise ConfigError("learning_rate_steps must be >= 0 (0: anneal over the whole run)")
        if self.priority_beta_steps < 0:
            raise ConfigError("priority_beta_steps must be >= 0 (0: anneal over the whole run)")
        if self.precision not in ("fp32", "bf16", "auto"):
            raise ConfigError(f"precision must be fp32, bf16 or auto, not {self.precision!r}")
        if self.num_envs < 1:
            raise ConfigError("num_envs must be >= 1")
        if not 0 < self.cnn_scale <= 8:
            raise ConfigError(f"cnn_scale must be in (0, 8], not {self.cnn_scale}")
        if self.num_envs > self.buffer_size:
            raise ConfigError("buffer_size must hold at least one transition per env (num_envs)")


RL_ZOO_ATARI = {
    # RL Zoo hyperparams/dqn.yml "atari" (10M steps there); Mnih et al. use a 1M buffer. The suite's Atari
    # preset until #19; bench/bench_dqn.py races it against `_ATARI`.
    "learning_rate": 1e-4,
    "buffer_size": 100_000,
    "learning_starts": 100_000,
    "batch_size": 32,
    "train_freq": 4,
    "gradient_steps": 1,
    "target_update_interval": 1_000,
    "exploration_fraction": 0.1,
    "exploration_final_eps": 0.01,
}

_ATARI = {
    # Chosen for wall time to beat Pong's player on 2 CPU cores (docs/dqn-atari.md): 16 envs in ale-py's threads (8
    # beat the player on one of seeds 1 and 2, 16 on both); 16 replayed transitions per env step as batch 32 every 2
    # steps (RL Zoo: 32 every 4), twice the updates of batch 64 every 4 for about the same cost; the Rainbow parts
    # that pay on this budget (3-step returns, Double, dueling, prioritized replay, Adam eps 1.5e-4); learning from
    # 10k steps with epsilon gone by 50k; a step size of 3e-4 annealed to 1e-4 over the first 500k steps (a
    # constant 2e-4 or 3e-4 beat the player within 500k steps on one seed of 1 and 2 or the other, not on both run
    # after run), a target sync every 1,000 steps (500 updates); the step size and the importance weights annealed
    # over a fixed 500k steps, so a run of any length matches the measured 500k runs there; bf16 autocast for the
    # update where it is faster (a GPU; a CPU where the first update measures it so).
    "num_envs": 16,
    "learning_rate": 3e-4,
    "final_learning_rate": 1e-4,
    "learning_rate_steps": 500_000,
    "priority_beta_steps": 500_000,
    "adam_eps": 1.5e-4,
    "buffer_size": 100_000,
    "learning_starts": 10_000,
    "batch_size": 32,
    "train_freq": 2,
    "gradient_steps": 1,
    "target_update_interval": 1_000,
    "exploration_steps": 50_000,
    "exploration_final_eps": 0.01,
    "n_step": 3,
    "double_q": True,
    "dueling": True,
    "prioritized": True,
    "precision": "auto",
}


class QNetwork(nn.Module):
    """Torso (MLP or Nature CNN) plus a linear Q head, or a dueling value/advantage pair.

    Input (batch, *obs_shape); output (batch, n_actions) float32 Q-values.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        n_actions: int,
        hidden_sizes: tuple[int, ...],
        dueling: bool,
        cnn_scale: float = 1.0,
    ):
        super().__init__()
        self.torso = make_torso(observation_space, hidden_sizes, cnn_scale)
        width = self.torso.out_features
        self.dueling = dueling
        self.advantage = nn.Linear(width, n_actions)
        self.value = nn.Linear(width, 1) if dueling else None

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        """Raw observations, or the torso's `inputs` of them (an update scales each batch once)."""
        features = self.torso(observations)
        advantage = self.advantage(features)
        if self.value is None:
            return advantage
        return dueling_combine(self.value(features), advantage)


def dueling_combine(value: torch.Tensor, advantage: torch.Tensor) -> torch.Tensor:
    """(B, 1) V and (B, A) advantages -> (B, A) Q; the mean is subtracted so V and A are identifiable."""
    return value + advantage - advantage.mean(dim=1, keepdim=True)


def td_targets(
    batch_returns: torch.Tensor,
    terminated: torch.Tensor,
    discounts: torch.Tensor,
    next_q_online: torch.Tensor | None,
    next_q_target: torch.Tensor,
) -> torch.Tensor:
    """R + gamma^m (1 - terminated) Q_target(s', a*). Double DQN: a* = argmax of the online net's
    `next_q_online`; plain DQN (None): a* = argmax of the target net itself. All (B,) except Q (B, A)."""
    if next_q_online is None:
        next_value = next_q_target.max(dim=1).values
    else:
        best = next_q_online.argmax(dim=1, keepdim=True)
        next_value = next_q_target.gather(1, best).squeeze(1)
    return batch_returns + discounts * (1.0 - terminated) * next_value


class DQNAgent(StepwiseAgent[DQNConfig]):
    name = "dqn"
    Config = DQNConfig
    default_env = "CartPole-v1"
    default_steps = 50_000
    step_budgets = {
        "Acrobot-v1": 100_000,
        "ALE/Pong-v5": 2_000_000,
        "PongNoFrameskip-v4": 2_000_000,
        "atari": 10_000_000,
    }
    """RL Zoo's budgets (hyperparams/dqn.yml), but Pong's: its preset plays 20+ well before 2M steps."""
    search_space = {  # after RL Zoo's DQN sampler (rl_zoo3/hyperparams_opt.py)
        "learning_rate": {"low": 1e-5, "high": 1e-2, "log": True},
        "batch_size": {"choices": [16, 32, 64, 128, 256]},
        "buffer_size": {"choices": [10_000, 50_000, 100_000]},
        "gamma": {"choices": [0.9, 0.95, 0.98, 0.99, 0.995, 0.999]},
        "train_freq": {"choices": [1, 4, 8, 16, 128, 256]},
        "gradient_steps": {"choices": [1, 4, 8, 16, 128]},
        "target_update_interval": {"choices": [1, 10, 100, 1_000, 10_000]},
        "exploration_fraction": {"low": 0.0, "high": 0.5},
        "exploration_final_eps": {"low": 0.0, "high": 0.2},
        "learning_starts": {"choices": [0, 1_000, 5_000]},
        "hidden_sizes": {"choices": ["64", "64,64", "256,256"]},
    }
    resume_settings = frozenset({"learning_rate", "final_learning_rate", "learning_rate_steps"})
    presets = {
        # The defaults are RL Zoo's CartPole values (hyperparams/dqn.yml, 5e4 steps). With their constant
        # 2.3e-3 the greedy policy often collapses in the last 10k steps (20-episode eval at 50k, seeds 1-3:
        # 127/500/106); annealing to 0 keeps it: 500 on seeds 1,2,4,5,6,8, 442 on 3, 99 on 7. (Plain DQN +
        # annealing: 500 on 1-6, 277 on 7, but slower early on.)
        "CartPole-v1": {"final_learning_rate": 0.0},
        "Acrobot-v1": {  # RL Zoo hyperparams/dqn.yml (1e5 steps; its gradient_steps=-1 is train_freq)
            "learning_rate": 6.3e-4,
            "batch_size": 128,
            "buffer_size": 50_000,
            "learning_starts": 0,
            "gamma": 0.99,
            "target_update_interval": 250,
            "train_freq": 4,
            "gradient_steps": 4,
            "exploration_fraction": 0.12,
            "exploration_final_eps": 0.1,
            "hidden_sizes": (256, 256),
        },
        "atari": dict(_ATARI),  # every Atari id: ALE/Pong-v5, ALE/Breakout-v5, PongNoFrameskip-v4, ...
    }

    @classmethod
    def check_spaces(cls, observation_space: gym.Space, action_space: gym.Space) -> None:
        require_discrete("dqn", action_space, "action")
        if not isinstance(observation_space, gym.spaces.Box):
            raise IncompatibleEnvError(f"dqn needs a Box observation space (vector or frames), not {observation_space}")

    def __init__(self, config: DQNConfig, observation_space, action_space, **kwargs):
        super().__init__(config, observation_space, action_space, **kwargs)
        self.n_actions = int(action_space.n)
        self.q_network = self._build_network().to(self.device)
        self.target_network = self._build_network().to(self.device)
        self.target_network.load_state_dict(self.q_network.state_dict())
        self.target_network.requires_grad_(False)
        self._target_bf16: QNetwork | None = None
        """The target's weights in bfloat16 for bf16 updates (`target_for_update`), made after each sync."""
        self.optimizer = adam(self.q_network.parameters(), config.learning_rate, eps=config.adam_eps)
        shape = observation_space.shape
        stack = shape[0] if is_image_space(observation_space) and len(shape) == 3 else 1
        streams = config.num_envs
        self.replay_bytes = ReplayBuffer.planned_bytes(
            config.buffer_size, shape, observation_space.dtype, stack, streams
        )
        # Refused before numpy tries: a buffer larger than the machine's memory can never be filled.
        check_fits("buffer_size", config.buffer_size, self.replay_bytes / config.buffer_size,
                   "each transition keeps its observation in memory", budget=total_memory())  # fmt: skip
        if config.prioritized:
            self.replay = PrioritizedReplayBuffer(config.buffer_size, shape, observation_space.dtype, frame_stack=stack,
                                                  alpha=config.priority_alpha, eps=config.priority_eps,
                                                  streams=streams)  # fmt: skip
        else:
            self.replay = ReplayBuffer(config.buffer_size, shape, observation_space.dtype, frame_stack=stack,
                                       streams=streams)  # fmt: skip
        self.update_q, self.update_target = self.q_network, self.target_network
        """The networks as the update calls them: compiled views sharing their weights (`compile_update`)."""
        if config.compile_update:
            check_compiler(self.device)
            self.update_q, self.update_target = compiled(self.q_network), compiled(self.target_network)
        self.steps = 0
        self.updates = 0
        self.exploration_steps = 1
        self.schedule_steps = 0  # set by `learn`; 0 leaves the step size alone (updates outside a run)

    @functools.cached_property
    def bf16(self) -> bool:
        """Whether the update runs under bfloat16 autocast: `precision`, resolved for this device when the
        first update asks (inside `learn`, under the torch threads the updates run with)."""
        c = self.config
        if c.precision != "auto":
            return c.precision == "bf16"
        if not native_bf16(self.device):
            return False
        if self.device.type == "cuda":
            return True
        fp32, bf16 = self.update_pass_seconds()
        return bf16 <= BF16_PAYS * fp32

    def update_pass_seconds(self, repeats: int = 3) -> tuple[float, float]:
        """Seconds of the update's network passes on one batch (`network_passes`, as the update makes them:
        frames scaled in the pass's dtype, the target's bf16 copy under bf16, Double DQN's online pass on the
        next frames, then backward), in float32 and under bf16 autocast: the best of `repeats` after one
        warm-up each, taken in turn. Weights, optimizer and random streams are left as they were (gradients
        are cleared)."""
        shape = (self.config.batch_size, *self.observation_space.shape)
        frames = torch.from_numpy(np.zeros(shape, self.observation_space.dtype)).to(self.device)
        targets = {False: self.target_network, True: copy.deepcopy(self.target_network).to(torch.bfloat16)}
        best = {False: float("inf"), True: float("inf")}
        for trial in range(repeats + 1):
            for bf16 in (False, True):
                started = time.perf_counter()
                *_, q = self.network_passes(self.q_network, targets[bf16], frames, frames, bf16)
                q.sum().backward()
                self.q_network.zero_grad(set_to_none=True)
                if trial:
                    best[bf16] = min(best[bf16], time.perf_counter() - started)
        return best[False], best[True]

    def _build_network(self) -> QNetwork:
        c = self.config
        return QNetwork(self.observation_space, self.n_actions, tuple(c.hidden_sizes), c.dueling, c.cnn_scale)

    # Acting ---------------------------------------------------------------------------------------
    @property
    def epsilon(self) -> float:
        c = self.config
        return linear_schedule(c.exploration_initial_eps, c.exploration_final_eps, self.exploration_steps, self.steps)

    def _greedy(self, observation: Any) -> int:
        return int(self._greedy_batch(np.asarray(observation)[None])[0])

    def _greedy_batch(self, observations: np.ndarray) -> np.ndarray:
        """(batch, *obs_shape) -> (batch,) int64 greedy actions, one forward pass."""
        with torch.inference_mode():
            obs = torch.as_tensor(np.asarray(observations), device=self.device)
            return self.q_network(obs).argmax(dim=1).cpu().numpy()

    def act(self, observation: Any, state: Any = None) -> tuple[int, Any]:
        return self._greedy(observation), state

    def act_batch(self, observations: np.ndarray, states: list[Any]) -> tuple[np.ndarray, list[Any]]:
        return self._greedy_batch(observations), states

    def explore(self, observation: Any) -> int:
        if self.rng.random() < self.epsilon:
            return int(self.rng.integers(self.n_actions))
        return self._greedy(observation)

    def explore_batch(self, observations: np.ndarray) -> np.ndarray:
        """Epsilon-greedy for each row of (B, *obs_shape): one coin per env, and one forward pass for the
        rows that act greedily (none while epsilon is 1)."""
        n = len(observations)
        actions = self.rng.integers(self.n_actions, size=n)
        greedy = self.rng.random(n) >= self.epsilon
        if greedy.any():
            actions[greedy] = self._greedy_batch(observations[greedy])
        return actions

    # Learning -------------------------------------------------------------------------------------
    def train(self, ctx: TrainContext) -> None:
        default = self._default_threads()
        if self.steps == 0:
            c = self.config
            self.exploration_steps = c.exploration_steps or max(1, int(c.exploration_fraction * ctx.total_steps))
        # The step size anneals towards this run's end, also when a resume extends the run.
        self.schedule_steps = max(1, ctx.total_steps)
        with torch_threads(self.config.torch_threads or default, self.device):
            if self.config.num_envs == 1:
                super().train(ctx)  # StepwiseAgent's loop over one env: explore, observe
            else:
                self._train_on_vector_env(ctx)

    def _train_on_vector_env(self, ctx: TrainContext) -> None:
        envs = ctx.make_vector_env(self.config.num_envs, mode=self.config.vector_mode)
        try:
            observations, _ = envs.reset(seed=ctx.env_seed())
            every = np.arange(len(observations))
            self.replay.start_episodes(every, observations)  # a stream cut off by a resume ends as truncated
            while not ctx.should_stop():
                actions = self.explore_batch(observations)
                observations, rewards, terminated, truncated, infos = envs.step(actions)
                done = terminated | truncated
                reached = final_observations(observations, infos, done)
                metrics = self.observe_batch(every, actions, rewards, reached, terminated, truncated)
                if metrics:
                    ctx.log(metrics)
                ctx.add_steps(len(actions))
                if done.any():
                    ctx.record_vector_info(infos)
                    self.replay.start_episodes(every[done], observations[done])
                    ctx.maybe_checkpoint()
        finally:
            envs.close()

    def cores_used(self) -> int:
        return self.config.torch_threads or self._default_threads()

    def check_machine(self) -> None:
        c = self.config
        check_fits("buffer_size", c.buffer_size, self.replay_bytes / c.buffer_size, "the replay fills up as it learns")
        if c.num_envs > 1:
            check_vector_envs(self.env_config, c.num_envs, c.vector_mode)

    def _default_threads(self) -> int:
        # Small MLP updates run fastest on one thread; the CNN's convolutions use a few cores.
        return default_threads(4) if is_image_space(self.observation_space) else 1

    def observe(self, observation, action, reward, next_observation, terminated, truncated):
        if not self.replay.in_episode[0]:
            self.replay.start_episode(observation)
        self.replay.add(action, reward, next_observation, terminated, truncated)
        self.steps += 1
        return self._learn_when_due(self.steps - 1)

    def observe_batch(self, streams, actions, rewards, next_observations, terminated, truncated):
        """One step of several envs (`streams` (B,) their env ids), each into its own replay stream."""
        self.replay.add_batch(streams, actions, rewards, next_observations, terminated, truncated)
        self.steps += len(streams)
        return self._learn_when_due(self.steps - len(streams))

    def _learn_when_due(self, before: int) -> dict[str, float] | None:
        """The training rounds and target syncs whose env step fell in (before, self.steps]: one per
        `train_freq` (after `learning_starts`) and one per `target_update_interval`."""
        c = self.config

        def multiples(every: int, after: int) -> int:
            return max(0, self.steps // every - max(before, after) // every)

        rounds = multiples(c.train_freq, c.learning_starts)
        metrics = None
        # A run resumed without its replay (save_replay off) refills it first, as a new run fills it.
        warm = max(c.batch_size, min(c.learning_starts, self.replay.streams * self.replay.capacity))
        if rounds and len(self.replay) >= warm:
            metrics = {
                "losses/td_huber": self.update(c.gradient_steps * rounds),
                "charts/epsilon": self.epsilon,
                "charts/learning_rate": self.optimizer.param_groups[0]["lr"],
            }
        if multiples(c.target_update_interval, 0):
            self.sync_target()
        return metrics

    def to_tensors(self, batch: ReplayBatch) -> ReplayBatch:
        """The sampled numpy batch as tensors on the agent's device (the same fields)."""
        # from_numpy shares memory; `.to` copies only when the device is not the CPU.
        return ReplayBatch(*(torch.from_numpy(array).to(self.device, non_blocking=True) for array in batch))

    def loss(self, batch: ReplayBatch, weights: torch.Tensor | None = None) -> torch.Tensor:
        """Huber loss between Q(s, a) and the (n-step, optionally Double DQN) TD target of a batch of
        tensors (`to_tensors`); with `weights` (B,), prioritized replay's importance-weighted mean."""
        return self.loss_and_errors(batch, weights)[0]

    def network_passes(
        self, online: Callable, target: Callable, obs: torch.Tensor, next_obs: torch.Tensor, bf16: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """The update's passes on raw frames: (target's Q of the next frames, float32; the online net's Q of
        them for Double DQN, else None; the online net's float32 Q of the frames, with gradient)."""
        # Frames are scaled once per batch (the next ones feed two passes), in the autocast dtype.
        scale = self.q_network.torso.inputs
        dtype = torch.bfloat16 if bf16 else torch.float32
        obs, next_obs = scale(obs, dtype), scale(next_obs, dtype)
        with torch.autocast(self.device.type, torch.bfloat16, enabled=bf16):
            with torch.no_grad():
                next_q_target = target(next_obs).float()
                next_q_online = online(next_obs) if self.config.double_q else None
            return next_q_target, next_q_online, online(obs).float()

    def loss_and_errors(
        self, batch: ReplayBatch, weights: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, (B,) |TD errors| without gradient, for the new priorities)."""
        obs, actions, returns, next_obs, terminated, discounts = batch
        next_q_target, next_q_online, q = self.network_passes(self.update_q, self.target_for_update, obs, next_obs,
                                                              self.bf16)  # fmt: skip
        with torch.no_grad():
            targets = td_targets(returns, terminated, discounts, next_q_online, next_q_target)
        q_taken = q.gather(1, actions.unsqueeze(1)).squeeze(1)
        errors = (targets - q_taken).detach().abs()
        if weights is None:
            return F.smooth_l1_loss(q_taken, targets), errors
        return (weights * F.smooth_l1_loss(q_taken, targets, reduction="none")).mean(), errors

    def learning_rate(self) -> float:
        """The step size now: `learning_rate`, or its linear schedule to `final_learning_rate`."""
        c = self.config
        if c.final_learning_rate < 0:
            return c.learning_rate
        horizon = c.learning_rate_steps or max(1, self.schedule_steps)
        return linear_schedule(c.learning_rate, c.final_learning_rate, horizon, self.steps)

    def update(self, gradient_steps: int = 1) -> float:
        """`gradient_steps` gradient steps, each on its own replay batch; returns their mean loss.

        The buffer does not change within a round, so the batches are drawn together (up to
        SAMPLE_BYTES of observations per draw): CartPole's 128 steps per round pay numpy's per-call
        overhead once instead of 128 times (docs/performance.md).
        """
        c = self.config
        if self.schedule_steps:  # in a run (outside one, the optimizer's own step size is left alone)
            for group in self.optimizer.param_groups:
                group["lr"] = self.learning_rate()
        if isinstance(self.replay, PrioritizedReplayBuffer):
            # Priorities change with every step: each batch is drawn right before its step.
            horizon = c.priority_beta_steps or max(1, self.schedule_steps)
            beta = linear_schedule(c.priority_beta0, 1.0, horizon, self.steps)
            return float(torch.stack([self._prioritized_step(beta) for _ in range(gradient_steps)]).mean())
        transition_bytes = 2 * self.replay.frames.itemsize * int(np.prod(self.observation_space.shape))
        per_draw = max(1, min(gradient_steps, SAMPLE_BYTES // (transition_bytes * c.batch_size)))
        losses = []
        for first in range(0, gradient_steps, per_draw):
            steps = min(per_draw, gradient_steps - first)
            drawn = self.replay.sample(c.batch_size * steps, self.rng, n_step=c.n_step, gamma=c.gamma)
            tensors = self.to_tensors(drawn)
            for i in range(steps):
                rows = slice(i * c.batch_size, (i + 1) * c.batch_size)
                losses.append(self._gradient_step(ReplayBatch(*(t[rows] for t in tensors))))
        # One host sync for the round, not one per step (matters on CUDA).
        return float(torch.stack(losses).mean())

    def _prioritized_step(self, beta: float) -> torch.Tensor:
        c = self.config
        drawn, slots, weights = self.replay.sample_prioritized(c.batch_size, self.rng, beta, n_step=c.n_step,
                                                               gamma=c.gamma)  # fmt: skip
        loss, errors = self.loss_and_errors(self.to_tensors(drawn), torch.from_numpy(weights).to(self.device))
        self._apply(loss)
        self.replay.update_priorities(slots, errors.cpu().numpy())
        return loss.detach()

    def _gradient_step(self, batch: ReplayBatch) -> torch.Tensor:
        loss = self.loss(batch)
        self._apply(loss)
        return loss.detach()

    def _apply(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_grad_norm(list(self.q_network.parameters()), self.config.max_grad_norm)
        self.optimizer.step()
        self.updates += 1

    def target_for_update(self, inputs: torch.Tensor) -> torch.Tensor:
        """The target network's Q-values for the update. Under bf16 autocast, a bfloat16 copy of its
        weights made once per sync answers: autocast would cast each weight on every pass (the target's
        weights need no gradient, so it keeps no cast), and the values are the same."""
        if not self.bf16 or self.config.compile_update:
            return self.update_target(inputs)
        if self._target_bf16 is None:
            self._target_bf16 = copy.deepcopy(self.target_network).to(torch.bfloat16)
        return self._target_bf16(inputs)

    def sync_target(self) -> None:
        self._target_bf16 = None
        with torch.no_grad():
            if self.config.tau >= 1.0:
                self.target_network.load_state_dict(self.q_network.state_dict())
                return
            for target, online in zip(self.target_network.parameters(), self.q_network.parameters(), strict=True):
                target.lerp_(online, self.config.tau)

    # Persistence ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = self.policy_state_dict()
        if self.config.save_replay:
            state["replay"] = self.replay.state_dict()
        return state

    def policy_state_dict(self) -> dict[str, Any]:
        """Everything but the replay (which `save_replay` adds to `state_dict`)."""
        return {
            "q_network": self.q_network.state_dict(),
            "target_network": self.target_network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "steps": self.steps,
            "updates": self.updates,
            "exploration_steps": self.exploration_steps,
            "rng": generator_state(self.rng),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.q_network.load_state_dict(state["q_network"])
        self.target_network.load_state_dict(state["target_network"])
        self._target_bf16 = None
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps = int(state["steps"])
        self.updates = int(state["updates"])
        self.exploration_steps = int(state["exploration_steps"])
        set_generator_state(self.rng, state["rng"])
        if "replay" in state:
            self.replay.load_state_dict(state["replay"])
