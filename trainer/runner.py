"""The trainer: builds the agent and its env, owns the run directory, logging, checkpoints, Ctrl-C
and resume, and returns a `TrainResult`."""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from agents import get_agent_class
from envs import EnvConfig, check_env_id, spaces_of
from trainer.checkpoint import CHECKPOINT_DIR, LATEST, load_checkpoint, save_checkpoint
from trainer.config import build_config, config_to_dict
from trainer.context import TrainContext
from trainer.errors import SuiteError
from trainer.logger import RunLogger
from trainer.seeding import resolve_device, rng_state, seed_everything, set_rng_state


@dataclass
class RunOptions:
    agent: str
    env_id: str | None = None
    """None: the agent's default env."""
    steps: int | None = None
    """Total environment steps (including those before a resume); None: the agent's default."""
    seed: int = 1
    name: str | None = None
    runs_dir: Path = Path("runs")
    device: str = "auto"
    overrides: dict[str, Any] = field(default_factory=dict)
    resume: Path | None = None
    checkpoint_every: int | None = None
    """Steps between checkpoints; None: a tenth of the run."""
    progress: bool = True


@dataclass
class TrainResult:
    run_dir: Path
    agent: str
    env_id: str
    global_step: int
    episodes: int
    episode_returns: list[float]
    mean_return: float
    """Mean of the last 100 episodes' returns (nan if none finished)."""
    wall_time: float
    interrupted: bool
    agent_object: Any = field(repr=False, default=None)


def _run_dir_name(env_id: str, agent: str, seed: int) -> str:
    env = re.sub(r"[^A-Za-z0-9_.-]", "-", env_id)
    return f"{env}__{agent}__{seed}__{datetime.now().strftime('%Y%m%d-%H%M%S')}"


@contextmanager
def _interrupt_sets_flag(ctx_holder: dict[str, TrainContext]):
    """First Ctrl-C asks the agent to stop at its next step; a second one aborts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        ctx = ctx_holder.get("ctx")
        if ctx is None or ctx.interrupted:
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        ctx.interrupted = True

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class Trainer:
    def __init__(self, options: RunOptions):
        self.options = options
        if options.steps is not None and options.steps < 0:
            raise SuiteError(f"--steps must be positive, not {options.steps}")
        self.checkpoint: dict[str, Any] | None = None
        if options.resume is not None:
            self.checkpoint = load_checkpoint(options.resume)
            if self.checkpoint["agent"] != options.agent:
                raise SuiteError(f"{options.resume} holds a '{self.checkpoint['agent']}' run, not '{options.agent}'")
        self.agent_cls = get_agent_class(options.agent)
        if self.checkpoint is not None:
            run = self.checkpoint["run"]
            if options.overrides:
                raise SuiteError("--set cannot change hyperparameters of a resumed run")
            self.config = build_config(self.agent_cls.Config, self.checkpoint["agent_config"])
            self.env_config = EnvConfig(**self.checkpoint["env_config"])
            self.seed = int(run["seed"])
            self.total_steps = options.steps if options.steps is not None else int(run["total_steps"])
            self.run_dir = Path(options.resume) if Path(options.resume).is_dir() else Path(options.resume).parent.parent
        else:
            env_id = options.env_id or self.agent_cls.default_env
            check_env_id(env_id)
            preset = self.agent_cls.presets.get(env_id, {})
            self.config = build_config(self.agent_cls.Config, preset, options.overrides)
            self.env_config = self.agent_cls.env_config(env_id, self.config)
            self.seed = options.seed
            self.total_steps = options.steps if options.steps is not None else self.agent_cls.default_steps
            self.run_dir = Path(options.runs_dir) / (options.name or _run_dir_name(env_id, options.agent, self.seed))
        self.device = resolve_device(options.device)
        observation_space, action_space = spaces_of(self.env_config)
        self.agent_cls.check_spaces(observation_space, action_space)
        self.spaces = (observation_space, action_space)

    def describe(self) -> dict[str, Any]:
        return {
            "agent": self.options.agent,
            "env": self.env_config.env_id,
            "seed": self.seed,
            "total_steps": self.total_steps,
            "device": str(self.device),
            "agent_config": config_to_dict(self.config),
            "env_config": config_to_dict(self.env_config),
        }

    def run(self) -> TrainResult:
        opts = self.options
        if self.checkpoint is None and self.run_dir.exists() and any(self.run_dir.iterdir()):
            raise SuiteError(f"run directory {self.run_dir} already exists; pick another --name or --resume it")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.json").write_text(json.dumps(self.describe(), indent=2) + "\n")

        seed_everything(self.seed)
        agent = self.agent_cls(self.config, *self.spaces, device=self.device, seed=self.seed)
        start_step, start_episodes, wall_before = 0, 0, 0.0
        if self.checkpoint is not None:
            agent.load_state_dict(self.checkpoint["agent_state"])
            set_rng_state(self.checkpoint["rng"])
            run = self.checkpoint["run"]
            start_step, start_episodes = int(run["global_step"]), int(run["episodes"])
            wall_before = float(run.get("wall_time", 0.0))

        logger = RunLogger(
            self.run_dir,
            total_steps=self.total_steps,
            start_step=start_step,
            start_episodes=start_episodes,
            hyperparameters=self.describe(),
            progress=opts.progress,
        )
        started = time.perf_counter()
        holder: dict[str, TrainContext] = {}

        def save() -> None:
            ctx = holder["ctx"]
            save_checkpoint(
                {
                    "agent": opts.agent,
                    "agent_config": config_to_dict(self.config),
                    "env_config": config_to_dict(self.env_config),
                    "run": {
                        "seed": self.seed,
                        "total_steps": self.total_steps,
                        "global_step": ctx.global_step,
                        "episodes": ctx.episodes,
                        "wall_time": wall_before + time.perf_counter() - started,
                    },
                    "agent_state": agent.state_dict(),
                    "rng": rng_state(),
                },
                self.run_dir / CHECKPOINT_DIR / LATEST,
            )

        ctx = TrainContext(
            env_config=self.env_config,
            seed=self.seed,
            device=self.device,
            total_steps=self.total_steps,
            run_dir=self.run_dir,
            logger=logger,
            save_checkpoint=save,
            checkpoint_every=opts.checkpoint_every or max(1, self.total_steps // 10),
            global_step=start_step,
            episodes=start_episodes,
            resumed=self.checkpoint is not None,
        )
        holder["ctx"] = ctx
        try:
            with _interrupt_sets_flag(holder):
                agent.learn(ctx)
        except KeyboardInterrupt:
            # A second Ctrl-C: still keep what was learned.
            ctx.interrupted = True
        except BaseException:
            # A crashed agent may be mid-update: keep the last good checkpoint instead.
            logger.close(ctx.global_step)
            raise
        ctx.checkpoint()
        logger.close(ctx.global_step)
        returns = ctx.episode_returns
        return TrainResult(
            run_dir=self.run_dir,
            agent=opts.agent,
            env_id=self.env_config.env_id,
            global_step=ctx.global_step,
            episodes=ctx.episodes,
            episode_returns=returns,
            mean_return=float(np.mean(returns[-100:])) if returns else float("nan"),
            wall_time=time.perf_counter() - started,
            interrupted=ctx.interrupted,
            agent_object=agent,
        )


def train(agent: str, **kwargs: Any) -> TrainResult:
    """Library entry point: `train("qtable", env_id="Taxi-v3", steps=50_000, progress=False)`."""
    return Trainer(RunOptions(agent=agent, **kwargs)).run()
