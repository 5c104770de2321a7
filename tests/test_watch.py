"""Watching a run: evaluation during training with a best checkpoint, and videos at the game's real speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents import Evaluate, load, make
from envs import EnvConfig, make_env

ROOT = Path(__file__).resolve().parents[1]


def scalars(run: Path, tag: str) -> list:
    events = EventAccumulator(str(run), size_guidance={"scalars": 0})
    events.Reload()
    return events.Scalars(tag) if tag in events.Tags()["scalars"] else []


def test_evaluation_during_training_logs_points_and_keeps_the_best(tmp_path):
    agent = make("qtable", seed=3)
    evaluation = Evaluate(2_000, episodes=20)
    agent.learn(10_000, run_dir=tmp_path / "run", callbacks=[evaluation])
    means = scalars(tmp_path / "run", "eval/mean_return")
    assert [p.step for p in means] == [2_000, 4_000, 6_000, 8_000, 10_000]
    assert len(scalars(tmp_path / "run", "eval/std_return")) == 5
    best_mean = max(mean for _, mean, _ in evaluation.history)
    assert [p.value for p in means] == pytest.approx([m for _, m, _ in evaluation.history])
    best = load(tmp_path / "run" / "checkpoints" / "best.pt")
    assert best.run.best_return == pytest.approx(best_mean) and agent.run.best_return == pytest.approx(best_mean)
    # The best checkpoint is the policy of that evaluation (first time the best mean was reached).
    first_best = next(step for step, mean, _ in evaluation.history if mean == best_mean)
    assert best.run.global_step == first_best
    played = subprocess.run(
        [sys.executable, "evaluate.py", str(tmp_path / "run"), "--best", "--episodes", "20", "--seed", "1000000",
         "--json"], cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert played.returncode == 0, played.stderr
    assert json.loads(played.stdout)["mean_return"] == pytest.approx(best_mean)
    assert json.loads(played.stdout)["trained_steps"] == first_best


def test_a_resumed_run_keeps_its_best(tmp_path):
    agent = make("qtable", seed=3)
    agent.learn(4_000, run_dir=tmp_path / "run", callbacks=[Evaluate(2_000, episodes=20)])
    best = agent.run.best_return
    again = load(tmp_path / "run")
    assert again.run.best_return == best
    later = Evaluate(1_000, episodes=20)
    again.learn(2_000, run_dir=tmp_path / "run", callbacks=[later])
    kept = load(tmp_path / "run" / "checkpoints" / "best.pt").run.best_return
    assert kept == max([best] + [m for _, m, _ in later.history])


def test_train_py_resume_goes_on_evaluating_on_the_runs_schedule(tmp_path):
    def cli(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "train.py", "qtable", "--no-progress", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done

    run = tmp_path / "runs" / "r"
    cli("--steps", "4500", "--eval-every", "1000", "--eval-episodes", "7", "--runs-dir", str(tmp_path / "runs"),
        "--name", "r")  # fmt: skip
    assert load(run).run.evaluation == {"every": 1000, "episodes": 7, "video_every": 0}
    cli("--resume", str(run), "--steps", "6000")  # no --eval-every: the run's own schedule, on its multiples
    assert [p.step for p in scalars(run, "eval/mean_return")] == [1000, 2000, 3000, 4000, 5000, 6000]
    cli("--resume", str(run), "--steps", "8000", "--eval-every", "2000", "--eval-episodes", "3")  # told otherwise
    assert [p.step for p in scalars(run, "eval/mean_return")][-1] == 8000
    assert len(scalars(run, "eval/mean_return")) == 7
    assert load(run).run.evaluation == {"every": 2000, "episodes": 3, "video_every": 0}


@pytest.mark.slow
def test_a3c_is_evaluated_from_a_snapshot_while_its_workers_train(tmp_path):
    agent = make("a3c", env="CartPole-v1", num_workers=2, lstm_size=0, hidden_size=32)
    evaluation = Evaluate(1_000, episodes=2)
    result = agent.learn(4_000, run_dir=tmp_path / "a3c", callbacks=[evaluation])
    assert len(evaluation.history) >= 3 and result.global_step >= 4_000
    assert (tmp_path / "a3c" / "checkpoints" / "best.pt").is_file()
    frozen = agent.snapshot()
    assert frozen.global_net is not agent.global_net
    for a, b in zip(frozen.global_net.parameters(), agent.global_net.parameters(), strict=True):
        assert a.data_ptr() != b.data_ptr() and a.equal(b)


def video_seconds(path: Path) -> float:
    capture = cv2.VideoCapture(str(path))
    frames, fps = capture.get(cv2.CAP_PROP_FRAME_COUNT), capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    assert frames > 0 and fps > 0, path
    return frames / fps


# env, agent steps -> real seconds of play (the emulator's frames per agent step / its frame rate)
VIDEO_CASES = {
    "cartpole": (EnvConfig("CartPole-v1"), 1 / 50),
    "pong-dqn": (EnvConfig("ALE/Pong-v5"), 4 / 60),
    "pong-karpathy": (EnvConfig("ALE/Pong-v5", preprocessing="karpathy"), 4 / 60),
    "vizdoom": (EnvConfig("VizdoomBasic-v1", frame_stack=1), 4 / 35),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(VIDEO_CASES))
def test_videos_play_at_the_games_real_speed(case, tmp_path):
    config, seconds_per_step = VIDEO_CASES[case]
    env = make_env(config, seed=0, mode="eval", video_dir=tmp_path, video_name=case, video_episodes=1)
    env.action_space.seed(0)
    env.reset(seed=0)
    steps = 0
    while True:
        steps += 1
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated or (case.startswith("pong") and steps >= 600):
            break
    env.close()  # writes the video of the (possibly cut) episode
    expected = steps * seconds_per_step
    assert video_seconds(tmp_path / f"{case}-episode-0.mp4") == pytest.approx(expected, rel=0.10)


def test_video_every_records_an_evaluation_episode_named_by_step(tmp_path):
    agent = make("qtable")
    evaluation = Evaluate(video_every=1_000)
    agent.learn(2_500, run_dir=tmp_path / "run", callbacks=[evaluation])
    names = sorted(p.name for p in (tmp_path / "run" / "videos").glob("*.mp4"))
    assert names == ["step-1000-episode-0.mp4", "step-2000-episode-0.mp4"]
    assert not evaluation.history and not (tmp_path / "run" / "checkpoints" / "best.pt").exists()
    assert np.isfinite(video_seconds(tmp_path / "run" / "videos" / names[0]))
