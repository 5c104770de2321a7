"""Hyperparameter search, as RL Zoo's `--optimize`: an Optuna study (TPE sampler, median pruner fed by
the evaluations during training) over the agent's `search_space`, stored in an SQLite file in the runs
directory so that an interrupted search resumes. Optuna is an optional extra: `pip install '.[optuna]'`.

    python train.py qtable --optimize --trials 30 --steps 30000
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from agents import Evaluate
from agents.callbacks import Callback
from core.errors import SuiteError
from trainer.runner import RunOptions
from trainer.search import (
    Plan,
    SearchResult,
    TrialInterrupted,
    optuna_module,
    plain,
    read_preset,
    score,
    suggest,
)

__all__ = ["optimize", "read_preset"]


@contextmanager
def stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """SIGINT and SIGTERM call `stop` instead of raising in whatever code runs (Optuna's bookkeeping
    breaks when a KeyboardInterrupt lands in it). Off the main thread signals are left alone."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda *_: stop())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


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


def optimize(options: RunOptions, trials: int, say=print, ray_address: str | None = None) -> SearchResult:
    """Run the study until it holds `trials` finished trials; returns the best. With `ray_address` ("" for
    a local Ray) the trials run on a Ray cluster through Ray Tune's Optuna searcher."""
    plan = Plan.of(options, trials)
    if ray_address is not None:
        from trainer.tune import optimize_on_ray  # noqa: PLC0415  (Ray is an optional extra)

        return optimize_on_ray(plan, trials, ray_address, say)
    optuna = optuna_module()
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
        say(f"trial {trial.number}: {value:.4g}  " + " ".join(f"{k}={plain(v)}" for k, v in params.items()))
        return value

    left = trials - len(finished())
    if left > 0:
        say(f"study {plan.study_dir / 'study.db'}: {len(finished())} trials done, {left} to go")
        stopped: list[int] = []

        def stop() -> None:  # Ctrl-C or SIGTERM between trials; within one, its run's session stops it first
            stopped.append(1)
            study.stop()

        with stop_on_signals(stop):
            # A trial whose run was interrupted fails (it is run again on resume) and ends the study.
            def end_on_failure(_, trial: Any) -> None:
                if trial.state == optuna.trial.TrialState.FAIL:
                    stop()

            study.optimize(objective, n_trials=left, catch=(TrialInterrupted,), callbacks=[end_on_failure])
        if stopped:
            say("Interrupted; the study is saved: run the same command again to go on")
    done = finished()
    complete = [t for t in done if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise SuiteError("no trial finished unpruned; run more trials or a longer --steps")
    best = max(complete, key=lambda t: t.value)
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in done)
    return plan.finish(best.params, best.value, best.number, len(done), pruned)
