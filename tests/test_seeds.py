"""Several seeds in one command, the rliable-style aggregate across them, and curves for every agent."""

from __future__ import annotations

import re

import numpy as np
import pytest

from agents import make
from gym_agents import train
from gym_agents.cli import run_app
from reports import select
from reports.curves import mean_curve
from reports.stats import bootstrap_ci, iqm


def test_iqm_by_hand():
    assert iqm(np.arange(1, 9)) == pytest.approx(4.5)  # 1..8 without 1, 2 and 7, 8: mean of 3..6
    assert iqm([5.0, 1.0, 9.0]) == pytest.approx(5.0)  # int(0.75) = 0 cut: the plain mean
    assert iqm([0, 0, 0, 0, 100, 100, 100, 100]) == pytest.approx(50.0)
    assert iqm([1, 2, 3, 1000]) == pytest.approx(2.5)  # an outlier run does not drag it
    scipy = pytest.importorskip("scipy.stats")
    scores = np.random.default_rng(3).normal(size=23)
    assert iqm(scores) == pytest.approx(scipy.trim_mean(scores, 0.25))  # rliable's aggregate_iqm


def test_bootstrap_interval():
    assert bootstrap_ci([2.0, 2.0, 2.0, 2.0]) == (2.0, 2.0)
    rng = np.random.default_rng(0)
    few, many = rng.normal(10, 1, size=4), rng.normal(10, 1, size=64)
    low, high = bootstrap_ci(few)
    assert low <= iqm(few) <= high and bootstrap_ci(few) == (low, high)  # seeded: repeatable
    many_low, many_high = bootstrap_ci(many)
    assert many_high - many_low < high - low and many_low < 10 < many_high


def test_seeds_make_one_run_each_and_print_the_table(runs_dir, capsys):
    code = run_app(train.app, ["qtable", "--seeds", "1", "2", "3", "--steps", "6000", "--runs-dir", str(runs_dir)])
    out = capsys.readouterr().out
    assert code == 0
    runs = sorted(p.name for p in runs_dir.iterdir())
    assert len(runs) == 3 and [re.match(r"FrozenLake-v1__qtable__(\d)__", r).group(1) for r in runs] == ["1", "2", "3"]
    assert "IQM [95% CI]" in out and re.search(r"qtable\s+FrozenLake-v1\s+3\s", out)
    code = run_app(
        train.app, ["qtable", "--seeds", "4,5", "--name", "pair", "--steps", "3000", "--runs-dir", str(runs_dir)]
    )
    assert code == 0 and (runs_dir / "pair__seed4").is_dir() and (runs_dir / "pair__seed5").is_dir()
    code = run_app(train.app, ["qtable", "--seeds", "1", "x", "--runs-dir", str(runs_dir)])
    assert code == 2 and "--seeds takes integers" in capsys.readouterr().err


def test_compare_draws_a_neat_curve(tmp_path):
    agent = make("neat", env="CartPole-v1", population_size=30, fitness_threshold=1e9)
    agent.learn(60_000, run_dir=tmp_path / "neat")
    (group,) = select([str(tmp_path / "neat")]).groups
    run = group.runs[0]
    # A generation's episodes spread along the steps, one step count per episode as other agents log them.
    assert len(np.unique(run.steps)) == len(run.steps) == agent.run.episodes
    curve = mean_curve(group.runs, window=10)
    assert len(curve.x) > 50 and np.isfinite(curve.mean).all() and curve.x[-1] > curve.x[0]
