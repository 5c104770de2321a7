"""The hyperparameter search on a Ray cluster: Ray Tune runs the trials as actors wherever the cluster has
a free CPU, its `OptunaSearch` proposes them with the same TPE sampler and search space as the local study,
and its `MedianStoppingRule` stops those below the median evaluation, as the local median pruner does.
`train.py AGENT --optimize --ray-address HOST:PORT` (or $RAY_ADDRESS); Ray Tune's experiment directory
in the runs directory lets the same command resume an interrupted search. Needs `pip install -e '.[ray]'`.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from agents.callbacks import Callback
from agents.evaluation import Evaluate
from core.errors import SuiteError
from trainer.search import Plan, SearchResult, optuna_module, plain, score, suggest

METRIC = "score"


class TuneReport(Callback):
    """Hands each evaluation to Ray Tune (which may stop the trial there)."""

    def __init__(self, evaluation: Evaluate):
        self.evaluation, self.step_interval, self.reported = evaluation, evaluation.step_interval, 0

    def on_step(self, ctx) -> None:
        from ray import tune  # noqa: PLC0415

        for step, _, _ in self.evaluation.history[self.reported :]:
            self.reported += 1
            tune.report({METRIC: score(self.evaluation.history[: self.reported]), "step": step})


class DefineByRun:
    """The search space as Optuna's define-by-run function (a class, so Ray Tune can pickle its searcher)."""

    def __init__(self, config_cls: type, space: dict[str, dict[str, Any]]):
        self.config_cls, self.space = config_cls, space

    def __call__(self, trial: Any) -> None:
        suggest(trial, self.config_cls, self.space)


def optimize_on_ray(plan: Plan, trials: int, address: str, say=print) -> SearchResult:
    optuna = optuna_module()
    try:
        import ray  # noqa: PLC0415
        from ray import tune  # noqa: PLC0415
        from ray.tune.schedulers import MedianStoppingRule  # noqa: PLC0415
        from ray.tune.search.optuna import OptunaSearch  # noqa: PLC0415
    except ImportError:
        raise SuiteError("--ray-address needs Ray Tune: pip install -e '.[ray,optuna]'") from None
    from agents.ray_cluster import connect  # noqa: PLC0415

    started = connect(address)
    plan.study_dir.mkdir(parents=True, exist_ok=True)
    storage = str(plan.study_dir.resolve())

    def trainable(config: dict[str, Any]) -> None:
        params = {k: v for k, v in config.items() if k in plan.space}
        trial_dir = Path(tune.get_context().get_trial_dir())
        # Each trial its own seed, from its counter in Ray's trial name ("trainable_<id>_<n>_<params>").
        counter = re.search(r"_(\d+)_", tune.get_context().get_trial_name())
        seed = plan.options.seed + (int(counter.group(1)) if counter else 0)
        plan.train(params, seed, trial_dir / "run", TuneReport)

    trainable_on_one_cpu = tune.with_resources(trainable, {"cpu": 1})
    try:
        experiment = Path(storage) / "tune"
        if tune.Tuner.can_restore(str(experiment)):
            say(f"resuming the Ray Tune search in {experiment}")
            tuner = tune.Tuner.restore(
                str(experiment), trainable_on_one_cpu, resume_unfinished=True, resume_errored=True
            )
        else:
            sampler = optuna.samplers.TPESampler(seed=plan.options.seed)
            searcher = OptunaSearch(DefineByRun(plan.agent_cls.Config, plan.space), METRIC, "max", sampler=sampler)
            # min_time_slice: a trial is never paused to give others a turn (a function trainable would
            # restart from scratch); it runs to its end or is stopped below the median.
            stopping = MedianStoppingRule(time_attr="step", metric=METRIC, mode="max", grace_period=plan.every,
                                          min_samples_required=2, min_time_slice=math.inf)  # fmt: skip
            tuner = tune.Tuner(
                trainable_on_one_cpu,
                tune_config=tune.TuneConfig(search_alg=searcher, scheduler=stopping, num_samples=trials),
                run_config=tune.RunConfig(name="tune", storage_path=storage, verbose=0),
            )
        results = tuner.fit()
        finished = [r for r in results if r.metrics and METRIC in r.metrics]
        if not finished:
            raise SuiteError("no Ray Tune trial reported an evaluation; run a longer --steps")
        best = max(finished, key=lambda r: r.metrics[METRIC])
        stopped = sum(r.metrics.get("step", 0) < plan.steps for r in finished)
        for r in finished:
            params = " ".join(f"{k}={plain(v)}" for k, v in r.config.items() if k in plan.space)
            say(f"trial {r.path.rsplit('/', 1)[-1][:40]}: {r.metrics[METRIC]:.4g}  {params}")
        best_params = {k: v for k, v in best.config.items() if k in plan.space}
        return plan.finish(best_params, best.metrics[METRIC], best.path, len(finished), stopped)
    finally:
        if started:
            ray.shutdown()
