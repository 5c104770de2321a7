"""What `train.py` does, over the Python interface: resolve the run (new or resumed), build the agent with
`agents.make` or `agents.load`, and `learn` into the run directory. One path for the command line and
for Python."""

from __future__ import annotations

import math
import os
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from agents import Evaluate, StopAfter, StopAtReturn, get_agent_class, load, make
from agents.base import Agent, TrainResult
from agents.callbacks import Callback, CheckpointEvery
from core.checkpoint import RECENT_EPISODES
from core.errors import ConfigError, SuiteError
from core.resources import die_with_parent, usable_cores
from core.seeding import check_seed

EVAL_EPISODES = 5
"""Episodes of each evaluation unless `--eval-episodes` (or a resumed run's schedule) says otherwise."""


@dataclass
class RunOptions:
    agent: str
    env_id: str | None = None
    """None: the agent's default env. `pkg.module:EnvId-v0` imports the module first."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Constructor arguments of the env."""
    steps: int | None = None
    """Total environment steps (including those before a resume); None: the agent's budget for the env."""
    seed: int = 1
    name: str | None = None
    runs_dir: Path = Path("runs")
    device: str = "auto"
    overrides: dict[str, Any] = field(default_factory=dict)
    """Hyperparameters by name; `env.NAME` keys change the env's settings (`env.frame_stack`)."""
    resume: Path | None = None
    checkpoint_every: int | None = None
    """Steps between checkpoints; None: a tenth of the run."""
    max_minutes: float | None = None
    """Stop after this much wall time (`StopAfter`)."""
    stop_at_return: float | None = None
    """Stop once the mean return of the last 100 episodes reaches this (`StopAtReturn`)."""
    eval_every: int | None = None
    """Evaluate the greedy policy every this many env steps (`agents.Evaluate`), keeping the best."""
    stop_at_eval_return: float | None = None
    """Stop at the first evaluation whose mean return reaches this (needs evaluations: `eval_every`)."""
    eval_episodes: int | None = None
    """Episodes of each evaluation; None: `EVAL_EPISODES`, or a resumed run's own number."""
    video_every: int | None = None
    """Record one evaluation episode to <run>/videos every this many env steps."""
    progress: bool = True
    callbacks: list[Callback] = field(default_factory=list)
    """More callbacks, for Python callers."""


def _run_dir_name(env_id: str, agent: str, seed: int, stamp: str | None = None) -> str:
    """`env__agent__seed__time`, the env id made fit for a file name."""
    env = re.sub(r"[^A-Za-z0-9_.-]", "-", env_id)
    return f"{env}__{agent}__{seed}__{stamp or datetime.now().strftime('%Y%m%d-%H%M%S')}"


def new_agent(options: RunOptions, seed: int | None = None, env_id: str | None = None, **params: Any) -> Agent:
    """`agents.make` for these options (their env, env kwargs, env settings and --set values), with `params`
    on top; `seed` and `env_id` default to the options'."""
    hyperparameters, env_settings = split_overrides(options.overrides)
    return make(
        options.agent,
        env_id or options.env_id,
        seed=options.seed if seed is None else seed,
        device=options.device,
        env_kwargs=options.env_kwargs,
        env_settings=env_settings,
        **{**hyperparameters, **params},
    )


def split_overrides(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(hyperparameters, env settings): `env.frame_stack=2` goes to the env, the rest to the agent."""
    agent = {k: v for k, v in overrides.items() if not k.startswith("env.")}
    env = {k[len("env.") :]: v for k, v in overrides.items() if k.startswith("env.")}
    return agent, env


def prepare(options: RunOptions) -> tuple[Agent, Path, int]:
    """The agent, its run directory and the steps still to go; refuses bad options before anything is written."""
    if options.steps is not None and options.steps < 1:
        raise ConfigError(f"--steps must be a positive number, not {options.steps}")
    for option, value in (
        ("--checkpoint-every", options.checkpoint_every),
        ("--eval-every", options.eval_every),
        ("--video-every", options.video_every),
    ):
        if value is not None and value < 1:
            raise ConfigError(f"{option} must be positive, not {value}")
    if options.eval_episodes is not None and options.eval_episodes < 1:
        raise ConfigError(f"--eval-episodes must be at least 1, not {options.eval_episodes}")
    if options.stop_at_eval_return is not None and not math.isfinite(options.stop_at_eval_return):
        raise ConfigError(f"--stop-at-eval-return must be a finite number, not {options.stop_at_eval_return}")
    if options.resume is not None:
        if options.env_id is not None or options.env_kwargs:
            raise ConfigError("--env cannot change on --resume; the run's env is in its checkpoint")
        settings, env_settings = split_overrides(options.overrides)
        if env_settings:
            raise ConfigError("--set env.* cannot change on --resume; the run's env is in its checkpoint")
        agent = load(options.resume, device=options.device, settings=settings, agent=options.agent)
        if agent.run_dir is None:
            raise SuiteError(
                f"{options.resume} is not a run directory nor a checkpoint in one (<run>/checkpoints/, beside a "
                f"config.json that names the same agent, env and seed); nothing was written"
            )
        total = options.steps if options.steps is not None else agent.run.total_steps
        return agent, agent.run_dir, total - agent.run.global_step
    name = options.name
    if name is not None and (not name or Path(name).is_absolute() or len(Path(name).parts) != 1 or name in (".", "..")):
        raise ConfigError(f"--name must be one directory name inside --runs-dir, not {name!r}")
    get_agent_class(options.agent)  # an unknown agent is refused before the env is looked at
    agent = new_agent(options)
    env_id = agent.env_config.env_id
    run_dir = Path(options.runs_dir) / (options.name or _run_dir_name(env_id, options.agent, options.seed))
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise SuiteError(f"run directory {run_dir} already exists; pick another --name or --resume it")
    steps = options.steps if options.steps is not None else agent.steps_for(agent.env_config.name)
    return agent, run_dir, steps


def run(options: RunOptions) -> TrainResult:
    agent, run_dir, steps = prepare(options)
    callbacks = list(options.callbacks)
    if options.checkpoint_every is not None:
        callbacks.append(CheckpointEvery(options.checkpoint_every))
    if options.max_minutes is not None:
        callbacks.append(StopAfter(minutes=options.max_minutes))
    stop_at_return, stop_at_eval_return = stopping_goals(options, agent)
    agent.run.stop_at_return = stop_at_return  # a goal met is the run's no longer
    if stop_at_return is not None:
        callbacks.append(StopAtReturn(stop_at_return))
    evaluation = evaluation_schedule(options, agent)
    if options.stop_at_eval_return is not None and not (evaluation and evaluation[0]):
        raise ConfigError("--stop-at-eval-return needs evaluations: give --eval-every N")
    if evaluation is not None:
        stop_at = stop_at_eval_return if evaluation[0] else None
        callbacks.append(Evaluate(evaluation[0], evaluation[1], video_every=evaluation[2], stop_at=stop_at))
    if steps < 1:
        raise ConfigError(f"the run already has {agent.run.global_step:,} steps; ask --steps for more")
    return agent.learn(steps, run_dir=run_dir, callbacks=callbacks, progress=options.progress)


def evaluation_schedule(options: RunOptions, agent: Agent) -> tuple[int, int, int] | None:
    """(every, episodes, video_every) of the run's `Evaluate`, None for none: the options' where they ask
    for evaluations or videos, else a resumed run's own schedule (with the options' episodes, if given)."""
    if options.eval_every or options.video_every:
        return options.eval_every or 0, options.eval_episodes or EVAL_EPISODES, options.video_every or 0
    kept = agent.run.evaluation if options.resume is not None else {}
    if not (kept.get("every") or kept.get("video_every")):
        return None
    episodes = options.eval_episodes or kept.get("episodes") or EVAL_EPISODES
    return kept.get("every", 0), episodes, kept.get("video_every", 0)


def stopping_goals(options: RunOptions, agent: Agent) -> tuple[float | None, float | None]:
    """(mean return of the last 100, greedy evaluation mean) at which the run stops: the options' where
    given, else a resumed run's own goals that it has not met yet. A run stopped by its goal, and resumed
    for more steps, goes on training: its goal is met, so it is not kept."""
    goals = [options.stop_at_return, options.stop_at_eval_return]
    if options.resume is None:
        return goals[0], goals[1]
    run = agent.run
    recent = run.recent_returns
    if goals[0] is None and run.stop_at_return is not None:
        met = len(recent) >= RECENT_EPISODES and sum(recent) / len(recent) >= run.stop_at_return
        goals[0] = None if met else run.stop_at_return
    kept = run.evaluation.get("stop_at")
    if goals[1] is None and kept is not None:
        goals[1] = None if run.best_return is not None and run.best_return >= kept else float(kept)
    return goals[0], goals[1]


def train(agent: str, **kwargs: Any) -> TrainResult:
    """`train.py` from Python: `train("qtable", env_id="Taxi-v4", steps=50_000, progress=False)`."""
    return run(RunOptions(agent=agent, **kwargs))


def seed_run_name(options: RunOptions, seed: int, stamp: str) -> str:
    """`NAME__seed<S>` with --name, else the usual `env__agent__seed__time` (one time for all seeds), so
    `compare.py` finds them as one group (same agent, same env)."""
    if options.name:
        return f"{options.name}__seed{seed}"
    return _run_dir_name(options.env_id or get_agent_class(options.agent).default_env, options.agent, seed, stamp)


def parallel_runs(options: RunOptions, seeds: int) -> int:
    """How many seeds can train at once: the machine's cores over the cores one run keeps busy."""
    probe = new_agent(options)
    return max(1, min(seeds, usable_cores() // max(1, probe.cores_used())))


def _run_one(options: RunOptions) -> TrainResult:
    result = run(options)
    return replace(result, agent_object=None)  # results cross back between processes


def _init_seed_process(parent: int) -> None:
    die_with_parent(parent)


def run_seeds(options: RunOptions, seeds: list[int]) -> list[TrainResult]:
    """One run per seed: at once where the agent leaves cores free (`parallel_runs`), else one after
    another. Ctrl-C stops every run cleanly, each with its checkpoint."""
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds must be distinct, not {seeds}")
    for seed in seeds:
        check_seed(seed)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    per_seed = [replace(options, seed=s, name=seed_run_name(options, s, stamp)) for s in seeds]
    for each in per_seed:  # every run is checked before the first starts
        if (Path(each.runs_dir) / each.name).exists():
            raise SuiteError(f"run directory {Path(each.runs_dir) / each.name} already exists")
    at_once = parallel_runs(options, len(seeds))
    if at_once == 1:
        results = []
        for each in per_seed:
            results.append(run(each))
            if results[-1].interrupted:
                break
        return results
    with ProcessPoolExecutor(at_once, mp_context=get_context("spawn"), initializer=_init_seed_process,
                             initargs=(os.getpid(),)) as pool:  # fmt: skip
        futures = [pool.submit(_run_one, replace(each, progress=False)) for each in per_seed]
        while True:
            try:  # the runs stop themselves on Ctrl-C (each has its session): wait for their checkpoints
                return [future.result() for future in futures]
            except KeyboardInterrupt:
                continue
