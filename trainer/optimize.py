"""Hyperparameter search, as RL Zoo's `--optimize`: an Optuna study (TPE sampler, median pruner fed by
the evaluations during training) over the agent's `search_space`, stored in an SQLite file in the runs
directory so that an interrupted search resumes. Optuna is an optional extra: `pip install '.[optuna]'`.

    python train.py qtable --optimize --trials 30 --steps 30000
"""

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

from agents import Evaluate, get_agent_class, make
from agents.callbacks import Callback
from core.errors import ConfigError, SuiteError
from trainer.runner import RunOptions, split_overrides

EVALUATIONS = 5
"""Evaluations per trial by default (the pruner's reports)."""


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
        sets = " ".join(f"--set {k}={_plain(v)}" for k, v in self.best_params.items())
        return f"python train.py {agent} {sets}"


def _plain(value: Any) -> str:
    return str(value).replace(" ", "")


def _optuna():
    try:
        import optuna  # noqa: PLC0415  (an optional extra)
    except ImportError:
        raise SuiteError("--optimize needs Optuna: pip install -e '.[optuna]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
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


class Pruning(Callback):
    """Reports each evaluation's mean return to the trial; stops the run when the median pruner says so.
    It follows the run's `Evaluate` callback, which comes first in the list, so its newest result is there."""

    def __init__(self, trial: Any, evaluation: Evaluate):
        self.trial, self.evaluation = trial, evaluation
        self.step_interval = evaluation.step_interval
        self.reported = 0
        self.pruned = False

    def on_step(self, ctx) -> None:
        for step, mean, _ in self.evaluation.history[self.reported :]:
            self.trial.report(mean, step)
            self.reported += 1
            if self.trial.should_prune():
                self.pruned = True
                ctx.request_stop(f"trial {self.trial.number} pruned at step {step}")


@dataclass
class Plan:
    """What a search trains: the same for the local Optuna study and for Ray Tune."""

    options: RunOptions
    agent_cls: type
    space: dict[str, dict[str, Any]]
    """The agent's search space less what --set fixes."""
    fixed: dict[str, Any]
    env_settings: dict[str, Any]
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
        fixed, env_settings = split_overrides(options.overrides)
        space = {k: v for k, v in agent_cls.search_space.items() if k not in fixed}  # --set fixes a value
        env_id = options.env_id or agent_cls.default_env
        steps = options.steps or agent_cls.steps_for(env_id)
        name = options.name or f"{env_id.replace('/', '-').replace(':', '-')}__{options.agent}__optimize"
        return cls(options, agent_cls, space, fixed, env_settings, env_id, steps,
                   options.eval_every or max(1, steps // EVALUATIONS), name, Path(options.runs_dir) / name)  # fmt: skip

    def train(
        self, params: dict[str, Any], seed: int, run_dir: Path | None, follow: Callable[[Evaluate], Callback]
    ) -> Evaluate:
        """One trial's run, its evaluations followed by `follow(evaluation)` (pruning, reporting)."""
        o = self.options
        agent = make(o.agent, self.env_id, seed=seed, device=o.device, env_kwargs=o.env_kwargs,
                     env_settings=self.env_settings, **self.fixed, **params)  # fmt: skip
        evaluation = Evaluate(self.every, o.eval_episodes)
        result = agent.learn(self.steps, run_dir=run_dir, callbacks=[evaluation, follow(evaluation)])
        if result.interrupted:
            raise KeyboardInterrupt
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


def optimize(options: RunOptions, trials: int, say=print, ray_address: str | None = None) -> SearchResult:
    """Run the study until it holds `trials` finished trials; returns the best. With `ray_address` ("" for
    a local Ray) the trials run on a Ray cluster through Ray Tune's Optuna searcher."""
    plan = Plan.of(options, trials)
    if ray_address is not None:
        from trainer.tune import optimize_on_ray  # noqa: PLC0415  (Ray is an optional extra)

        return optimize_on_ray(plan, trials, ray_address, say)
    optuna = _optuna()
    plan.study_dir.mkdir(parents=True, exist_ok=True)
    storage = optuna.storages.RDBStorage(
        f"sqlite:///{plan.study_dir / 'study.db'}", heartbeat_interval=10, grace_period=30
    )
    study = optuna.create_study(
        study_name=plan.name,
        storage=storage,
        load_if_exists=True,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=options.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=plan.every),
    )
    optuna.storages.fail_stale_trials(study)  # a trial of a killed search is not left running forever

    def finished() -> list:
        done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        return [t for t in study.trials if t.state in done]

    def objective(trial: Any) -> float:
        params = suggest(trial, plan.agent_cls.Config, plan.space)
        pruning: list[Pruning] = []

        def prune(evaluation: Evaluate) -> Pruning:
            pruning.append(Pruning(trial, evaluation))
            return pruning[0]

        # Each trial its own seed: settings that only suit one seed's luck do not win the search.
        evaluation = plan.train(params, options.seed + trial.number, plan.study_dir / f"trial-{trial.number}", prune)
        if pruning[0].pruned:
            say(f"trial {trial.number}: pruned at step {evaluation.history[-1][0]:,}")
            raise optuna.TrialPruned()
        value = score(evaluation.history)
        say(f"trial {trial.number}: {value:.4g}  " + " ".join(f"{k}={_plain(v)}" for k, v in params.items()))
        return value

    left = trials - len(finished())
    if left > 0:
        say(f"study {plan.study_dir / 'study.db'}: {len(finished())} trials done, {left} to go")
        try:
            study.optimize(objective, n_trials=left, catch=())
        except KeyboardInterrupt:
            say("Interrupted; the study is saved: run the same command again to go on")
    done = finished()
    complete = [t for t in done if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise SuiteError("no trial finished unpruned; run more trials or a longer --steps")
    best = max(complete, key=lambda t: t.value)
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in done)
    return plan.finish(best.params, best.value, best.number, len(done), pruned)


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
