"""The two command lines in-process: happy paths, and one-line errors for every kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import typer

from core.checkpoint import save_checkpoint
from gym_agents import evaluate, train
from gym_agents.cli import run_app


def run(app, argv, capsys):
    code = run_app(app.app, argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def trained_run(runs_dir, capsys):
    code, out, _ = run(train, ["qtable", "--steps", "2000", "--runs-dir", str(runs_dir), "--no-progress"], capsys)
    assert code == 0
    return out.strip().splitlines()[-1]


def test_train_prints_run_directory_last_and_evaluate_reads_it(trained_run, capsys):
    assert "FrozenLake-v1__qtable__1__" in trained_run
    code, out, _ = run(evaluate, [trained_run, "--episodes", "5", "--json"], capsys)
    assert code == 0
    result = json.loads(out)
    assert result["agent"] == "qtable" and result["env"] == "FrozenLake-v1" and result["episodes"] == 5
    assert len(result["returns"]) == 5
    assert result["mean_return"] == pytest.approx(sum(result["returns"]) / 5)
    code, out, _ = run(evaluate, [trained_run, "--episodes", "3"], capsys)
    assert code == 0 and "mean return" in out and "±" in out


def test_evaluate_writes_videos_headless(trained_run, tmp_path, capsys):
    code, _, _ = run(evaluate, [trained_run, "--episodes", "2", "--video", str(tmp_path / "videos")], capsys)
    assert code == 0
    assert len(list((tmp_path / "videos").glob("*.mp4"))) == 2


def test_resume_with_set_changes_the_step_size_or_says_why_not(trained_run, capsys):
    code, _, err = run(train, ["qtable", "--resume", trained_run, "--steps", "3000", "--set", "gamma=0.5"], capsys)
    assert code == 2 and err.strip().splitlines() == [
        "error: gamma cannot change on a resumed qtable run: its saved state was built or learned with it (a "
        "resume may change decay_steps, epsilon_end, learning_rate, learning_rate_end)"
    ]
    code, out, _ = run(train, ["qtable", "--resume", trained_run, "--steps", "3000", "--set", "learning_rate=0.5",
                               "--no-progress"], capsys)  # fmt: skip
    assert code == 0 and out.strip().splitlines()[-1] == trained_run
    config = json.loads((Path(trained_run) / "config.json").read_text())
    assert config["agent_config"]["learning_rate"] == 0.5 and config["agent_config"]["gamma"] == 0.99


def test_render_without_display_points_to_video(trained_run, monkeypatch, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    code, _, err = run(evaluate, [trained_run, "--render"], capsys)
    assert code == 2
    assert (
        err.strip() == "error: --render needs a display and none was found; use --video DIR to write mp4 files instead"
    )


def test_env_settings_kwargs_and_stopping_options(runs_dir, capsys):
    argv = ["qtable", "--runs-dir", str(runs_dir), "--no-progress", "--steps", "100000"]
    code, out, _ = run(
        train,
        [
            *argv,
            "--name",
            "a",
            "--env-kwargs",
            "is_slippery=False",
            "--set",
            "env.frame_stack=2",
            "--stop-at-return",
            "0.5",
        ],
        capsys,
    )
    assert code == 0 and "Stopped early: mean return of the last 100 episodes" in out
    config = json.loads((runs_dir / "a" / "config.json").read_text())
    assert config["env_config"]["env_kwargs"] == {"is_slippery": False} and config["env_config"]["frame_stack"] == 2
    code, out, _ = run(train, [*argv, "--name", "b", "--max-minutes", "0.01"], capsys)
    assert code == 0 and "Stopped early: time limit of 0.6 s reached" in out
    # Deterministic FrozenLake: the greedy policy reaches the goal in every evaluation episode long before
    # 100k steps; the run stops at that evaluation.
    code, out, _ = run(train, [*argv, "--name", "c", "--env-kwargs", "is_slippery=False", "--eval-every", "1000",
                               "--eval-episodes", "3", "--stop-at-eval-return", "1"], capsys)  # fmt: skip
    assert code == 0 and "Stopped early: greedy evaluation mean 1.000 reached 1" in out
    assert (runs_dir / "c" / "checkpoints" / "best.pt").is_file()


def test_agent_help_lists_hyperparameters_and_presets(capsys):
    code, out, _ = run(train, ["qtable", "--help"], capsys)
    assert code == 0
    assert "learning_rate" in out and "0.1" in out and "Taxi-v4" in out and "--set" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["qtabel"], "unknown agent 'qtabel'; did you mean qtable?"),
        (["qtable", "--env", "FrozenLake-v9"], "unknown env id 'FrozenLake-v9'"),
        (["qtable", "--env", "CartPole-v1"], "needs a discrete observation space"),
        (["qtable", "--steps", "-5"], "--steps must be a positive number"),
        (["qtable", "--bogus"], "No such option"),
        (["qtable", "--set", "gama=0.9"], "unknown hyperparameter 'gama'"),
        (["qtable", "--set", "gamma=high"], "gamma must be a number"),
        (["qtable", "--set", "gamma"], "--set takes key=value"),
        (["qtable", "--device", "tpu"], "--device must be auto, cpu or cuda"),
        (["qtable", "--resume", "/nonexistent/run"], "no such run directory"),
        (["qtable", "--set", "env.frame_stack=many"], "frame_stack must be an integer"),
        (["qtable", "--set", "env.env_id=Taxi-v4"], "env.env_id is not a setting"),
        (["qtable", "--set", "learning_rate=nan"], "learning_rate must be a finite number"),
        (["qtable", "--seed", "-3"], "seed must be an integer from 0"),
        (["qtable", "--env-kwargs", "is_slippery"], "--env-kwargs takes key=value"),
        (["qtable", "--env-kwargs", "nonsense=1"], "cannot be built with {'nonsense': 1}"),
        (["qtable", "--max-minutes", "-1"], "StopAfter needs a positive, finite time"),
        (["qtable", "--stop-at-return", "inf"], "StopAtReturn needs a finite threshold"),
        (["qtable", "--stop-at-eval-return", "0.5"], "--stop-at-eval-return needs evaluations: give --eval-every"),
        (["qtable", "--stop-at-eval-return", "nan", "--eval-every", "9"], "--stop-at-eval-return must be a finite"),
        ([], "missing AGENT"),
    ],
)
def test_bad_train_input_is_one_line_error(argv, message, runs_dir, capsys):
    code, _, err = run(train, [*argv, "--runs-dir", str(runs_dir)], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert not runs_dir.exists() or not any(runs_dir.iterdir())  # no half-made run directory


def test_bad_checkpoints_are_one_line_errors(tmp_path, capsys):
    truncated = save_checkpoint({"agent": "qtable"}, tmp_path / "t.pt")
    truncated.write_bytes(truncated.read_bytes()[:40])
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    incomplete = save_checkpoint({"agent": "qtable", "agent_config": {}}, tmp_path / "incomplete.pt")
    cases = [
        (tmp_path / "missing", "no such run directory"),
        (truncated, "not a readable checkpoint"),
        (foreign, "not a checkpoint of this suite"),
        (incomplete, "does not hold a usable agent"),
        (tmp_path, "no checkpoint in"),
    ]
    for path, message in cases:
        code, _, err = run(evaluate, [str(path)], capsys)
        assert code == 2, path
        lines = err.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], err
    code, _, err = run(evaluate, [str(tmp_path), "--episodes", "0"], capsys)
    assert code == 2 and "--episodes must be at least 1" in err


def test_ctrl_c_before_the_command_handles_it_is_one_line(capsys):
    """A KeyboardInterrupt inside a command (a Ctrl-C during a slow start-up, before the run's own
    handlers) reaches the user as `error: interrupted` and exit 130, not a silent exit."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

    @app.command()
    def slow_start() -> None:
        raise KeyboardInterrupt

    code, out, err = run(SimpleNamespace(app=app), [], capsys)
    assert (code, out, err.strip()) == (130, "", "error: interrupted")
