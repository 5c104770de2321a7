"""The agent interface every family implements, with its Python face (`learn`, `predict`, `save`), and
the shared loop of step-wise learners.

An agent is built from its config dataclass and the (preprocessed) spaces by `agents.make` or
`agents.load`. Its own training loop, `train(ctx)`, reports to a `TrainContext`; `learn` wraps it in a
`Session` (logging, checkpoints, callbacks, Ctrl-C). It acts through `act` and saves itself as plain
data through `state_dict` / `load_state_dict` (tensors, arrays as tensors, plain containers).
"""

from __future__ import annotations

import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import gymnasium as gym
import numpy as np
import torch

from agents.callbacks import Callback, CheckpointEvery
from agents.context import TrainContext
from agents.session import RunDirectory, Session
from core.checkpoint import CHECKPOINT_DIR, LATEST, Checkpoint, RunState
from core.config import config_to_dict
from core.errors import ConfigError, IncompatibleEnvError, WorkerError
from core.resources import ENV_BYTES, PROCESS_BYTES, check_fits, keep_freed_memory
from core.seeding import rng_state
from core.tblog import RunLogger
from envs import EnvConfig, resolve_vector_mode
from envs.spec import env_family, split_env_id

C = TypeVar("C")


@dataclass(frozen=True)
class TrainResult:
    """What one `learn` call did."""

    run_dir: Path | None
    agent: str
    env_id: str
    global_step: int
    """Env steps of the run so far, earlier `learn` calls included."""
    episodes: int
    """Episodes of the run so far, earlier `learn` calls included."""
    episode_returns: list[float]
    """Real returns of the episodes finished in this call."""
    mean_return: float
    """Mean return of the run's last 100 episodes, earlier calls and sittings included (nan before the
    run's first episode)."""
    wall_time: float
    """Seconds this call took."""
    interrupted: bool
    """Stopped by Ctrl-C or SIGTERM."""
    stop_reason: str | None = None
    """Why the run stopped before its step budget (a callback, a signal), else None."""
    agent_object: Any = field(repr=False, default=None)


class Agent(ABC, Generic[C]):
    name: ClassVar[str]
    """Command-line name (`qtable`, `dqn`, ...)."""
    Config: ClassVar[type]
    """Frozen dataclass of hyperparameters; every field has a working default and a docstring."""
    default_env: ClassVar[str]
    default_steps: ClassVar[int]
    """Env steps of a run on an env without its own budget in `step_budgets`."""
    step_budgets: ClassVar[dict[str, int]] = {}
    """Env steps of a run per env id, where they differ from `default_steps`; a family's name (`atari`,
    `vizdoom`, `classic`) gives the budget of each of its ids without its own."""
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    """Per-env hyperparameter overrides, as data: `{"Taxi-v4": {"learning_rate": 0.5}}`; a family's name
    (`{"atari": {...}}`) gives the preset of each of its ids without its own."""
    search_space: ClassVar[dict[str, dict[str, Any]]] = {}
    """What `train.py AGENT --optimize` searches, as data: `{"gamma": {"low": 0.9, "high": 0.999}}`
    (`"log": True` for a log scale; `{"choices": [...]}` for a categorical)."""
    resume_settings: ClassVar[frozenset[str]] = frozenset()
    """Hyperparameters that `load(..., settings=...)` (`train.py --resume RUN --set key=value`) may change on a
    saved run: those that only steer how training goes on (the step size and its schedule), never one the
    saved state was built or learned with (a size, the discount). The agent applies them from its next update."""

    def __init__(
        self,
        config: C,
        observation_space: gym.Space,
        action_space: gym.Space,
        *,
        device: torch.device | str = "cpu",
        seed: int = 0,
        env_config: EnvConfig | None = None,
    ):
        self.config = config
        self.observation_space = observation_space
        self.action_space = action_space
        self.device = torch.device(device)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.env_config = env_config or EnvConfig(self.default_env)
        self.run = RunState(seed=seed)
        """Steps, episodes and time of every `learn` so far (what a checkpoint records)."""
        self.run_dir: Path | None = None
        """The run directory this agent was last trained in or loaded from."""
        self.user_env: gym.Env | None = None
        """The env object given to `agents.make`, used as the first training env of the next `learn`."""

    # Class-level decisions made before an agent exists ---------------------------------------
    @classmethod
    def env_config_for(cls, env: EnvConfig, config: C) -> EnvConfig:
        """The env (and preprocessing) this agent trains on; override to pick e.g. Karpathy frames."""
        return env

    @classmethod
    def check_spaces(cls, observation_space: gym.Space, action_space: gym.Space) -> None:
        """Raise `IncompatibleEnvError` (one line) when the agent cannot run on these spaces."""
        return None

    @classmethod
    def upgrade_config(cls, stored: dict[str, Any]) -> dict[str, Any]:
        """A config saved by an earlier version in today's fields; override where fields were renamed."""
        return stored

    @classmethod
    def steps_for(cls, env_id: str) -> int:
        """The step budget of a run on `env_id`: its own, else its family's, else `default_steps`."""
        return cls.step_budgets.get(env_id, cls.step_budgets.get(env_family(env_id), cls.default_steps))

    @classmethod
    def preset_for(cls, env_id: str) -> dict[str, Any]:
        """The hyperparameters applied for `env_id` before the user's: its own preset, else its family's."""
        return dict(cls.presets.get(split_env_id(env_id)[1], cls.presets.get(env_family(env_id), {})))

    # The family's own parts ---------------------------------------------------------------------
    @abstractmethod
    def train(self, ctx: TrainContext) -> None:
        """Train until `ctx.should_stop()`, reporting steps, episodes and metrics to `ctx`."""

    @abstractmethod
    def act(self, observation: Any, state: Any = None) -> tuple[Any, Any]:
        """Greedy action for one observation; `state` is carried between steps (an LSTM's, say)."""

    def sample_action(self, observation: Any, state: Any = None) -> tuple[Any, Any]:
        """Training-time (exploring or sampled) action for one observation; greedy unless overridden."""
        return self.act(observation, state)

    def act_batch(self, observations: np.ndarray, states: list[Any]) -> tuple[np.ndarray, list[Any]]:
        """Greedy actions for a batch (one row per observation); override with one batched forward pass."""
        pairs = [self.act(obs, state) for obs, state in zip(observations, states, strict=True)]
        return np.asarray([a for a, _ in pairs]), [s for _, s in pairs]

    def initial_state(self) -> Any:
        """The `state` to pass to `act` at the start of an episode (None for memoryless policies)."""
        return None

    def snapshot(self) -> Agent[C]:
        """An agent whose policy stays as it is now while this one trains on, to evaluate during training.
        The agent itself where its weights change only in the calling thread (between `act` calls); agents
        whose workers update the weights meanwhile (A3C) return a copy."""
        return self

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: parameters, optimizer, schedules, RNG. Plain data only."""

    def policy_state_dict(self) -> dict[str, Any]:
        """`state_dict()` less what only resumed training needs and is large (DQN's saved replay): the
        state of a policy kept for playing (`best.pt`). It still loads, and resumes as a run saved without
        that part does."""
        return self.state_dict()

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    # The Python interface -------------------------------------------------------------------------
    def predict(self, observation: Any, state: Any = None, deterministic: bool = True) -> tuple[Any, Any]:
        """Actions for one observation or a batch of them (a leading batch axis), and the next `state`.

        Deterministic (greedy) by default; `deterministic=False` samples as in training. For a batch,
        `state` is a list with one entry per row (None: each starts an episode).
        """
        obs = np.asarray(observation)
        single_ndim = len(self.observation_space.shape or ())
        if obs.ndim == single_ndim:
            return self.act(obs, state) if deterministic else self.sample_action(obs, state)
        if obs.ndim != single_ndim + 1:
            raise ConfigError(
                f"predict takes an observation of shape {self.observation_space.shape} or a batch of them, "
                f"not shape {obs.shape}"
            )
        states = list(state) if state is not None else [None] * len(obs)
        if len(states) != len(obs):
            raise ConfigError(f"predict got {len(states)} states for a batch of {len(obs)} observations")
        if deterministic:
            return self.act_batch(obs, states)
        pairs = [self.sample_action(o, s) for o, s in zip(obs, states, strict=True)]
        return np.asarray([a for a, _ in pairs]), [s for _, s in pairs]

    def describe(self) -> dict[str, Any]:
        """The run's configuration as plain data (`config.json`, TensorBoard's hyperparameter table)."""
        return {
            "agent": self.name,
            "env": self.env_config.env_id,
            "seed": self.run.seed,
            "total_steps": self.run.total_steps,
            "device": str(self.device),
            "agent_config": config_to_dict(self.config),
            "env_config": config_to_dict(self.env_config),
        }

    def checkpoint(self, *, policy_only: bool = False) -> Checkpoint:
        """Everything `agents.load` needs, as one typed structure; `policy_only` takes the agent's state
        from `policy_state_dict()`."""
        return Checkpoint(
            agent=self.name,
            agent_config=config_to_dict(self.config),
            env_config=config_to_dict(self.env_config),
            run=self.run.copy(),
            agent_state=self.policy_state_dict() if policy_only else self.state_dict(),
            rng=rng_state(),
        )

    def save(self, path: str | Path, *, policy_only: bool = False) -> Path:
        """Write a checkpoint to `path` atomically; `agents.load(path)` gives this agent back (without
        what `policy_state_dict()` leaves out, where `policy_only`)."""
        return self.checkpoint(policy_only=policy_only).write(path)

    def cores_used(self) -> int:
        """CPU cores a run of this agent keeps busy (several seeds train at once where cores are left)."""
        return 1

    def check_machine(self) -> None:
        """Refuse (one line, `core.resources.check_fits`) what this machine cannot hold: worker processes,
        envs, a replay buffer. Called by `learn` before anything is written."""

    def learn(
        self,
        steps: int | None = None,
        *,
        run_dir: str | Path | None = None,
        callbacks: Sequence[Callback] = (),
        progress: bool = False,
    ) -> TrainResult:
        """Train for `steps` more env steps (default: the agent's budget for its env), continuing the step
        counter, schedules and optimizer of earlier calls. With `run_dir`, TensorBoard events, `config.json`
        and `checkpoints/latest.pt` go there (every tenth of the call unless a `CheckpointEvery` callback is
        given, and at the end); without it nothing is written. The directory is locked while the call
        runs. Ctrl-C or SIGTERM stop at the next step (`result.interrupted`), after a checkpoint where there
        is a run directory; so does a dead worker, which then raises its `WorkerError`."""
        if steps is None:
            steps = self.steps_for(self.env_config.name)
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
            raise ConfigError(f"steps must be a positive integer, not {steps!r}")
        callbacks = list(callbacks)
        if not all(isinstance(c, Callback) for c in callbacks):
            raise ConfigError("callbacks must be instances of agents.Callback (StopAfter, StopAtReturn, ...)")
        self.check_machine()
        keep_freed_memory()  # each update reuses the last one's memory instead of faulting it in again
        self.run.total_steps = self.run.global_step + int(steps)
        owned = None
        if run_dir is not None:
            continuing = self.run_dir is not None and Path(run_dir).resolve() == self.run_dir.resolve()
            owned = RunDirectory(Path(run_dir), continuing).open(self.describe())
            self.run_dir = owned.path
            if not any(isinstance(c, CheckpointEvery) for c in callbacks):
                callbacks.append(CheckpointEvery(max(1, int(steps) // 10)))
        try:
            session = self._session(owned, callbacks, progress)
        except BaseException:
            if owned is not None:
                owned.close(failed_start=True)
            raise
        started, wall_before = time.perf_counter(), self.run.wall_time
        try:
            if owned is not None and not (owned.path / CHECKPOINT_DIR / LATEST).exists():
                session.checkpoint(notify=False)  # a run killed before its first interval can still resume
            with session.stop_signals():
                session.start()
                try:
                    self.train(session)
                except KeyboardInterrupt:  # a second Ctrl-C: still keep what was learned
                    session.interrupted = True
                session.end()
            session.checkpoint()
        except WorkerError:
            session.checkpoint()  # a worker died; the agent's own state is whole: keep it
            raise
        finally:
            # A crashed agent may be mid-update: its last good checkpoint stays as it was.
            self._sync_run(session, wall_before + time.perf_counter() - started)
            session.close()
            if owned is not None:
                owned.close(failed_start=sys.exc_info()[0] is not None and not session.stepped)
        return TrainResult(
            run_dir=None if owned is None else owned.path,
            agent=self.name,
            env_id=self.env_config.env_id,
            global_step=self.run.global_step,
            episodes=self.run.episodes,
            episode_returns=session.episode_returns,
            mean_return=session.recent_mean_return,
            wall_time=time.perf_counter() - started,
            interrupted=session.interrupted,
            stop_reason=session.stop_reason if session.global_step < session.total_steps else None,
            agent_object=self,
        )

    def _session(self, owned: RunDirectory | None, callbacks: list[Callback], progress: bool) -> Session:
        """The context of one `learn` call: its log (when there is a directory or a progress bar) and its
        checkpoint writer."""
        directory = None if owned is None else owned.path
        logger = None
        if directory is not None or progress:
            logger = RunLogger(
                directory,
                total_steps=self.run.total_steps,
                start_step=self.run.global_step,
                hyperparameters=self.describe(),
                progress=progress,
                status=lambda: (session.episodes, session.recent_mean_return),
            )
        started, wall_before = time.perf_counter(), self.run.wall_time

        def save(name: str = LATEST, policy: Agent | None = None, policy_only: bool = False) -> Path | None:
            self._sync_run(session, wall_before + time.perf_counter() - started)
            if directory is None:
                return None
            return (policy or self).save(directory / CHECKPOINT_DIR / name, policy_only=policy_only)

        session = Session(
            env_config=self.env_config,
            seed=self.run.seed,
            device=self.device,
            total_steps=self.run.total_steps,
            global_step=self.run.global_step,
            episodes=self.run.episodes,
            recent_returns=self.run.recent_returns,
            run_dir=directory,
            logger=logger,
            save_checkpoint=save,
            callbacks=callbacks,
            user_env=self.user_env,
            agent=self,
        )
        self.user_env = None  # handed to the session, which closes it with the run
        return session

    def _sync_run(self, session: Session, wall_time: float) -> None:
        self.run.global_step, self.run.episodes, self.run.wall_time = session.global_step, session.episodes, wall_time
        self.run.recent_returns = list(session.recent_returns)


def require_discrete(agent: str, space: gym.Space, what: str) -> None:
    if not isinstance(space, gym.spaces.Discrete):
        raise IncompatibleEnvError(f"{agent} needs a discrete {what} space, but this env has {space}")


def check_vector_envs(env_config: EnvConfig, num_envs: int, mode: str) -> None:
    """Refuse `num_envs` envs that this machine's memory cannot hold: a process each in the `async`
    mode, an env each in this process otherwise."""
    if resolve_vector_mode(env_config, mode) == "async":
        check_fits("num_envs", num_envs, PROCESS_BYTES, "each env is a process (vector_mode async)")
    else:
        check_fits("num_envs", num_envs, ENV_BYTES, "every env lives in this process")


class StepwiseAgent(Agent[C]):
    """An agent that learns from every transition of one env: Q-table, Q-network, DQN.

    Subclasses implement `explore` and `observe`; the loop, episode logging, checkpoints and stops
    are shared here.
    """

    @abstractmethod
    def explore(self, observation: Any) -> Any:
        """Training-time (exploring) action for one observation."""

    def sample_action(self, observation: Any, state: Any = None) -> tuple[Any, Any]:
        return self.explore(observation), state

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

    def train(self, ctx: TrainContext) -> None:
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
