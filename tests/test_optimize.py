"""Hyperparameter search: a tiny Optuna study of qtable on FrozenLake finishes, prunes, and resumes from
its SQLite file after an interruption; its best trial comes out as a --set line and a preset file."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gym_agents import train
from gym_agents.cli import run_app
from tests.polling import wait_until

optuna = pytest.importorskip("optuna", reason="the search is an optional extra: pip install -e '.[optuna]'")
ROOT = Path(__file__).resolve().parents[1]
SEARCH = ["qtable", "--optimize", "--steps", "10000", "--eval-episodes", "40", "--seed", "3", "--no-progress"]


def finished(study_db: Path) -> list:
    study = optuna.load_study(study_name="FrozenLake-v1__qtable__optimize", storage=f"sqlite:///{study_db}")
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return [t for t in study.trials if t.state in states]


def finished_so_far(study_db: Path) -> int:
    """Finished trials of a study another process is writing, read only once its first trial started: a
    reader that opens the SQLite file while the search still creates its tables races it to write the
    schema (one of the two fails)."""
    if not (study_db.parent / "trial-0").exists():
        return 0
    return len(finished(study_db))


@pytest.mark.slow
def test_a_study_prunes_is_interrupted_and_resumes(tmp_path, capsys):
    runs = tmp_path / "runs"
    study_db = runs / "FrozenLake-v1__qtable__optimize" / "study.db"
    search = subprocess.Popen(
        [sys.executable, "train.py", *SEARCH, "--trials", "12", "--runs-dir", str(runs)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        wait_until(lambda: finished_so_far(study_db) >= 3, 120, every=0.2)
        os.killpg(search.pid, signal.SIGINT)  # Ctrl-C in the middle of the search
        out, err = search.communicate(timeout=60)
    finally:
        if search.poll() is None:
            os.killpg(search.pid, signal.SIGKILL)
    assert search.returncode == 0, err
    assert "Interrupted; the study is saved" in out
    before = len(finished(study_db))
    assert 3 <= before < 12
    # The same command again goes on from the SQLite file up to 12 finished trials.
    code = run_app(train.app, [*SEARCH, "--trials", "12", "--runs-dir", str(runs)])
    out = capsys.readouterr().out
    assert code == 0 and f"{before} trials done, {12 - before} to go" in out
    trials = finished(study_db)
    assert len(trials) == 12
    assert any(t.state == optuna.trial.TrialState.PRUNED for t in trials)
    line = next(line for line in out.splitlines() if line.startswith("Train with it: python train.py qtable --set"))
    preset = json.loads((runs / "FrozenLake-v1__qtable__optimize" / "best.json").read_text())
    best = max((t for t in trials if t.state == optuna.trial.TrialState.COMPLETE), key=lambda t: t.value)
    assert preset["hyperparameters"] == best.params and preset["value"] == best.value
    assert all(f"--set {k}=" in line for k in best.params)
    # The preset file trains a run with those values.
    preset_file = str(runs / "FrozenLake-v1__qtable__optimize" / "best.json")
    argv = ["qtable", "--preset", preset_file, "--steps", "1000", "--runs-dir", str(runs), "--name", "tuned"]
    code = run_app(train.app, [*argv, "--no-progress"])
    assert code == 0
    config = json.loads((runs / "tuned" / "config.json").read_text())["agent_config"]
    assert config["gamma"] == pytest.approx(best.params["gamma"])


def test_optimize_refuses_what_it_cannot_do(tmp_path, capsys):
    code = run_app(train.app, [*SEARCH, "--trials", "0", "--runs-dir", str(tmp_path)])
    assert code == 2 and "--trials must be at least 1" in capsys.readouterr().err
    code = run_app(train.app, ["qtable", "--optimize", "--seeds", "1", "2", "--runs-dir", str(tmp_path)])
    assert code == 2 and "neither --resume nor --seeds" in capsys.readouterr().err
    for flag in ("--max-minutes", "--stop-at-return", "--stop-at-eval-return"):  # trials would not compare
        code = run_app(train.app, ["qtable", "--optimize", flag, "5", "--runs-dir", str(tmp_path)])
        assert code == 2 and f"--optimize runs every trial for --steps; it takes no {flag}" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
    (tmp_path / "bad.json").write_text(json.dumps({"agent": "dqn", "hyperparameters": {}}))
    code = run_app(train.app, ["qtable", "--preset", str(tmp_path / "bad.json"), "--runs-dir", str(tmp_path)])
    assert code == 2 and "is a preset for dqn, not qtable" in capsys.readouterr().err


@pytest.mark.slow
def test_the_search_runs_on_a_local_ray_cluster_through_ray_tune(tmp_path, capsys):
    pytest.importorskip("ray.tune", reason="needs the [ray] extra")
    runs = tmp_path / "runs"
    code = run_app(train.app, [*SEARCH, "--trials", "4", "--steps", "4000", "--ray-address", "local",
                               "--runs-dir", str(runs)])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    study = runs / "FrozenLake-v1__qtable__optimize"
    preset = json.loads((study / "best.json").read_text())
    assert set(preset["hyperparameters"]) == {
        "learning_rate",
        "learning_rate_end",
        "gamma",
        "epsilon_end",
        "decay_steps",
    }
    assert re.search(r"best of 4 trials \(\d pruned\)", out)
    assert len(list((study / "tune").glob("trainable_*"))) == 4


@pytest.mark.slow
def test_ctrl_c_at_any_moment_of_a_search_is_a_clean_stop(tmp_path):
    """Within a trial's run or in Optuna's bookkeeping between trials: exit 0, no traceback, a study that
    loads and goes on."""
    runs = tmp_path / "runs"
    study_db = runs / "FrozenLake-v1__qtable__optimize" / "study.db"
    rng = np.random.default_rng(11)
    # The first search is interrupted a moment after its first trial ends, whatever the machine's speed; the
    # others at random moments from 1.5 to 4 s after the start (at start-up on a slow machine, or in a trial).
    delays = [None, *rng.uniform(1.5, 4.0, size=3)]
    done_before = 0
    for delay in delays:
        search = subprocess.Popen(
            [sys.executable, "train.py", *SEARCH, "--trials", "400", "--steps", "40000", "--runs-dir", str(runs)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        try:
            if delay is None:
                assert wait_until(lambda: finished_so_far(study_db) >= 1, 120, every=0.5), search.poll()
                done_before = len(finished(study_db))
                delay = rng.uniform(0.0, 1.0)
            time.sleep(delay)
            os.killpg(search.pid, signal.SIGINT)
            out, err = search.communicate(timeout=60)
        finally:
            if search.poll() is None:
                os.killpg(search.pid, signal.SIGKILL)
        assert search.returncode in (0, 2, 130) and "Traceback" not in err, (search.returncode, err)
        if search.returncode == 0:
            assert "Interrupted; the study is saved" in out
        elif search.returncode == 2:  # no trial had finished unpruned yet, said in one line
            assert "no trial finished unpruned" in err
        else:  # a slow machine still starting up: nothing begun
            assert err.strip() == "error: interrupted"
    assert len(finished(study_db)) >= done_before >= 1  # no finished trial was lost to an interruption
