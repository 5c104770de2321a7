"""What both hyperparameter searches share (the local Optuna study in `trainer.optimize`, Ray Tune in
`trainer.tune`): the plan of a trial's run, its score, the suggestions from the agent's search space,
and the result with its preset file."""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents import Evaluate, get_agent_class
from agents.callbacks import Callback
from core.errors import ConfigError, SuiteError
from trainer.runner import EVAL_EPISODES, RunOptions, new_agent, split_overrides


class TrialInterrupted(Exception):
    """A trial's run was stopped by Ctrl-C or SIGTERM: the trial counts as failed and is run again later."""


EVALUATIONS = 5
"""Evaluations per trial by default (what the pruner or the stopping rule is fed)."""


@dataclass
class SearchResult:
    study_dir: Path
    best_value: float
    best_params: dict[str, Any]
    trials: int
    """Finished trials in the study (complete or pruned), earlier sittings included."""
    pruned: int
    preset_file: Path

    def set_line(self, agent: str) -> str:
        sets = " ".join(f"--set {k}={plain(v)}" for k, v in self.best_params.items())
        return f"python train.py {agent} {sets}"


def plain(value: Any) -> str:
    return str(value).replace(" ", "")


def optuna_module():
    try:
        import optuna  # noqa: PLC0415  (an optional extra)
    except ImportError:
        raise SuiteError("--optimize needs Optuna: pip install -e '.[optuna]'") from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our own lines say what each trial did
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # the heartbeat's
    return optuna


def suggest(trial: Any, config_cls: type, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One value per searched hyperparameter, of its config field's type."""
    types = {f.name: f.type for f in dataclasses.fields(config_cls)}
    params: dict[str, Any] = {}
    for name, spec in space.items():
        if "choices" in spec:
            params[name] = trial.suggest_categorical(name, spec["choices"])
        elif types[name] in (int, "int"):
            params[name] = trial.suggest_int(name, spec["low"], spec["high"], log=spec.get("log", False))
        else:
            params[name] = trial.suggest_float(name, spec["low"], spec["high"], log=spec.get("log", False))
    return params


@dataclass
class Plan:
    """What a search trains: the same for the local Optuna study and for Ray Tune."""

    options: RunOptions
    agent_cls: type
    space: dict[str, dict[str, Any]]
    """The agent's search space less what --set fixes."""
    fixed: dict[str, Any]
    env_id: str
    steps: int
    every: int
    name: str
    study_dir: Path

    @classmethod
    def of(cls, options: RunOptions, trials: int) -> Plan:
        agent_cls = get_agent_class(options.agent)
        if not agent_cls.search_space:
            raise ConfigError(f"{options.agent} has no search space")
        if trials < 1:
            raise ConfigError(f"--trials must be at least 1, not {trials}")
        fixed = split_overrides(options.overrides)[0]
        space = {k: v for k, v in agent_cls.search_space.items() if k not in fixed}  # --set fixes a value
        env_id = options.env_id or agent_cls.default_env
        steps = options.steps or agent_cls.steps_for(env_id)
        name = options.name or f"{env_id.replace('/', '-').replace(':', '-')}__{options.agent}__optimize"
        return cls(options, agent_cls, space, fixed, env_id, steps,
                   options.eval_every or max(1, steps // EVALUATIONS), name, Path(options.runs_dir) / name)  # fmt: skip

    def train(
        self, params: dict[str, Any], seed: int, run_dir: Path | None, follow: Callable[[Evaluate], Callback]
    ) -> Evaluate:
        """One trial's run, its evaluations followed by `follow(evaluation)` (pruning, reporting)."""
        agent = new_agent(self.options, seed, self.env_id, **params)
        evaluation = Evaluate(self.every, self.options.eval_episodes or EVAL_EPISODES)
        result = agent.learn(self.steps, run_dir=run_dir, callbacks=[evaluation, follow(evaluation)])
        if result.interrupted:
            raise TrialInterrupted(f"stopped at step {result.global_step:,}")
        return evaluation

    def finish(
        self, best_params: dict[str, Any], best_value: float, trial: Any, trials: int, pruned: int
    ) -> SearchResult:
        params = {**{k: v for k, v in self.fixed.items() if k in self.agent_cls.search_space}, **best_params}
        preset_file = self.study_dir / "best.json"
        preset_file.write_text(json.dumps({"agent": self.options.agent, "env": self.env_id, "value": best_value,
                                           "trial": trial, "hyperparameters": params}, indent=2) + "\n")  # fmt: skip
        return SearchResult(self.study_dir, float(best_value), params, trials, pruned, preset_file)


def score(history: list[tuple[int, float, float]]) -> float:
    """A trial's score from its evaluations (`Evaluate.history`): the mean of the last two (one alone
    rewards a policy that peaked at the end by chance)."""
    return float(np.mean([mean for _, mean, _ in history[-2:]])) if history else -math.inf


def read_preset(path: str | Path, agent: str) -> dict[str, Any]:
    """The hyperparameters of a preset file (`best.json` of a search) for `agent`."""
    try:
        data = json.loads(Path(path).read_text())
        hyperparameters = data["hyperparameters"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is not a preset file of a search ({type(exc).__name__}: {exc})") from None
    if data.get("agent") != agent:
        raise ConfigError(f"{path} is a preset for {data.get('agent')}, not {agent}")
    return dict(hyperparameters)
