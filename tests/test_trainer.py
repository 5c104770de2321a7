"""The shared trainer: checkpoints, determinism, TensorBoard events, resume and Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents import StopAtReturn, load
from core.checkpoint import load_checkpoint, save_checkpoint
from core.errors import CheckpointError, ConfigError, SuiteError
from trainer.runner import train

ROOT = Path(__file__).resolve().parents[1]


def scalars(run_dir: Path) -> EventAccumulator:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return events


@pytest.mark.parametrize("agent", ["qtable", "qnet"])
def test_checkpoint_round_trip_gives_identical_greedy_actions(agent, runs_dir):
    result = train(agent, steps=3000, runs_dir=runs_dir, progress=False)
    checkpoint = result.run_dir / "checkpoints" / "latest.pt"
    torch.load(checkpoint, weights_only=True)  # plain data only
    loaded = load(result.run_dir)
    for state in range(16):
        assert loaded.act(state)[0] == result.agent_object.act(state)[0]
    assert loaded.run.global_step == 3000
    assert not [p for p in checkpoint.parent.iterdir() if p.name != "latest.pt"], "temp files left behind"


def test_same_seed_same_returns_other_seed_other_returns(runs_dir):
    a = train("qtable", steps=20_000, seed=5, runs_dir=runs_dir, name="a", progress=False)
    b = train("qtable", steps=20_000, seed=5, runs_dir=runs_dir, name="b", progress=False)
    c = train("qtable", steps=20_000, seed=6, runs_dir=runs_dir, name="c", progress=False)
    assert a.episode_returns == b.episode_returns
    np.testing.assert_array_equal(a.agent_object.q, b.agent_object.q)
    assert a.episode_returns != c.episode_returns


def test_event_files_hold_exactly_the_logged_episodes(runs_dir):
    result = train("qnet", steps=5000, runs_dir=runs_dir, progress=False)
    events = scalars(result.run_dir)
    tags = set(events.Tags()["scalars"])
    assert {
        "charts/episodic_return",
        "charts/episodic_length",
        "charts/SPS",
        "losses/td_squared",
        "charts/epsilon",
    } <= tags
    logged = events.Scalars("charts/episodic_return")
    assert len(logged) == result.episodes
    assert [e.value for e in logged] == pytest.approx(result.episode_returns)
    steps = [e.step for e in logged]
    assert steps == sorted(steps) and 0 < steps[-1] <= 5000
    assert sum(e.value for e in events.Scalars("charts/episodic_length")) <= 5000
    assert "hyperparameters" in "".join(events.Tags().get("tensors", []))
    config = (result.run_dir / "config.json").read_text()
    assert '"agent": "qnet"' in config and '"learning_rate": 0.1' in config


def test_resume_continues_steps_schedule_and_curve(runs_dir):
    first = train("qtable", steps=10_000, seed=3, runs_dir=runs_dir, name="r", progress=False)
    epsilon_at_pause = first.agent_object.epsilon
    second = train("qtable", steps=25_000, resume=first.run_dir, progress=False)
    assert second.run_dir == first.run_dir
    assert second.global_step == 25_000
    assert second.agent_object.steps == 25_000
    assert second.agent_object.epsilon < epsilon_at_pause
    assert second.episodes == first.episodes + len(second.episode_returns)
    logged = scalars(first.run_dir).Scalars("charts/episodic_return")
    assert len(logged) == second.episodes
    assert max(e.step for e in logged) <= 25_000 and min(e.step for e in logged[first.episodes :]) > 10_000


def test_a_resumed_run_keeps_the_mean_of_its_last_100_episodes_across_the_resume(runs_dir):
    first = train("qtable", steps=10_000, seed=3, runs_dir=runs_dir, name="m", progress=False)
    assert first.episodes > 100
    assert first.mean_return == pytest.approx(np.mean(first.episode_returns[-100:]))
    saved = load_checkpoint(first.run_dir)["run"]["recent_returns"]
    assert saved == pytest.approx(first.episode_returns[-100:])
    # Resumed for fewer than 100 episodes: the mean still covers the run's last 100, not the call's few.
    second = train("qtable", steps=10_300, resume=first.run_dir, progress=False)
    assert 0 < len(second.episode_returns) < 100
    whole = [e.value for e in scalars(first.run_dir).Scalars("charts/episodic_return")]
    assert whole == pytest.approx(first.episode_returns + second.episode_returns)
    assert second.mean_return == pytest.approx(np.mean(whole[-100:]))
    assert second.mean_return != pytest.approx(np.mean(second.episode_returns))
    # The TensorBoard summary metric and the command line's summary line say the same.
    hparams = scalars(first.run_dir).Scalars("hparams/mean_return_last100")
    assert hparams[-1].value == pytest.approx(second.mean_return)
    out = subprocess.run(
        [sys.executable, "train.py", "qtable", "--resume", str(first.run_dir), "--steps", "10600", "--no-progress"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    third = load(first.run_dir).run
    after = [e.value for e in scalars(first.run_dir).Scalars("charts/episodic_return")]
    assert len(after) == third.episodes and third.recent_returns == pytest.approx(after[-100:])
    assert f"mean return (last 100) {np.mean(after[-100:]):.3f}" in out


def test_stop_at_return_after_a_resume_counts_the_episodes_before_it(runs_dir):
    first = train("qtable", steps=10_000, seed=3, runs_dir=runs_dir, name="s", progress=False)
    threshold = first.mean_return - 0.05  # already met by the last 100 episodes before the resume
    resumed = load(first.run_dir)
    result = resumed.learn(50_000, run_dir=first.run_dir, callbacks=[StopAtReturn(threshold)])
    assert result.stop_reason is not None and "last 100 episodes" in result.stop_reason
    assert len(result.episode_returns) <= 5, "waited for 100 new episodes instead of going on from the run's"


def test_checkpoints_without_the_newer_run_fields_still_load_and_bad_ones_are_refused(runs_dir, tmp_path):
    first = train("qtable", steps=2000, seed=3, runs_dir=runs_dir, name="o", progress=False)
    data = load_checkpoint(first.run_dir)
    del data["run"]["recent_returns"], data["run"]["evaluation"]  # as written before the fields existed
    data = {k: v for k, v in data.items() if k not in ("format", "version", "checksum")}
    old = save_checkpoint(data, tmp_path / "old.pt")
    assert load(old).run.recent_returns == [] and load(old).run.episodes == first.episodes
    assert load(old).run.evaluation == {}
    data["run"]["recent_returns"] = ["high", 1.0]
    with pytest.raises(CheckpointError, match="recent returns are not numbers"):
        load(save_checkpoint(data, tmp_path / "bad.pt"))
    data["run"]["recent_returns"] = [1.0]
    data["run"]["evaluation"] = {"every": "often"}
    with pytest.raises(CheckpointError, match="evaluation schedule is not valid"):
        load(save_checkpoint(data, tmp_path / "bad.pt"))
    data["run"]["evaluation"] = {"every": 100, "episodes": 2, "video_every": 0, "stop_at": float("nan")}
    with pytest.raises(CheckpointError, match="evaluation schedule is not valid"):
        load(save_checkpoint(data, tmp_path / "bad.pt"))
    data["run"]["evaluation"] = {"every": 100, "episodes": 2, "video_every": 0, "stop_at": 0.5}
    data["run"]["stop_at_return"] = "high"
    with pytest.raises(CheckpointError, match="return goal is not a number"):
        load(save_checkpoint(data, tmp_path / "bad.pt"))
    data["run"]["stop_at_return"] = 0.25
    assert load(save_checkpoint(data, tmp_path / "goals.pt")).run.stop_at_return == 0.25


def test_a_resumed_run_keeps_its_stopping_goals_until_it_meets_them(runs_dir):
    """`--stop-at-eval-return` and `--stop-at-return` are kept with the run: a sitting stopped before its goal
    (Ctrl-C, `--steps`) and resumed without them still stops there; a run that met its goal and is resumed
    for more steps goes on training; a goal given again on the resume replaces the run's."""
    evals = {"eval_every": 1000, "eval_episodes": 2}
    first = train("qtable", steps=500, seed=3, runs_dir=runs_dir, name="e", progress=False, **evals,
                  stop_at_eval_return=-1.0)  # fmt: skip
    assert first.stop_reason is None and load(first.run_dir).run.evaluation["stop_at"] == -1.0
    kept = train("qtable", resume=first.run_dir, steps=5000, progress=False)
    assert kept.stop_reason is not None and "greedy evaluation mean" in kept.stop_reason
    assert 1000 <= kept.global_step < 2000
    met = train("qtable", resume=first.run_dir, steps=3000, progress=False)
    assert met.stop_reason is None and met.global_step >= 3000
    assert "stop_at" not in load(first.run_dir).run.evaluation and load(first.run_dir).run.evaluation["every"] == 1000
    replaced = train("qtable", resume=first.run_dir, steps=4000, progress=False, stop_at_eval_return=2.0)
    assert replaced.stop_reason is None and load(first.run_dir).run.evaluation["stop_at"] == 2.0

    first = train("qtable", steps=200, seed=3, runs_dir=runs_dir, name="r", progress=False, stop_at_return=-1.0)
    assert first.stop_reason is None and first.episodes < 100 and load(first.run_dir).run.stop_at_return == -1.0
    kept = train("qtable", resume=first.run_dir, steps=20_000, progress=False)
    assert kept.stop_reason is not None and "last 100 episodes" in kept.stop_reason and kept.global_step < 20_000
    met = train("qtable", resume=first.run_dir, steps=20_000, progress=False)
    assert met.stop_reason is None and met.global_step >= 20_000 and load(first.run_dir).run.stop_at_return is None


def test_resume_refuses_other_agent_and_settings_that_shape_the_checkpoint(runs_dir):
    first = train("qtable", steps=1000, runs_dir=runs_dir, progress=False)
    with pytest.raises(SuiteError, match="holds a 'qtable' run"):
        train("qnet", resume=first.run_dir)
    with pytest.raises(SuiteError, match="holds a 'qtable' run, not 'dqn'"):  # said before dqn's settings are read
        train("dqn", resume=first.run_dir, overrides={"final_learning_rate": "0"})
    allowed = "decay_steps, epsilon_end, learning_rate, learning_rate_end"
    refused = f"^gamma cannot change on a resumed qtable run: .*\\(a resume may change {allowed}\\)$"
    with pytest.raises(ConfigError, match=refused):
        train("qtable", resume=first.run_dir, overrides={"gamma": "0.5", "learning_rate": "0.5"})
    with pytest.raises(ConfigError, match="env.\\* cannot change on --resume"):
        train("qtable", resume=first.run_dir, overrides={"env.frame_stack": "2"})
    with pytest.raises(ConfigError, match="unknown hyperparameter 'learnin_rate'"):
        train("qtable", resume=first.run_dir, overrides={"learnin_rate": "0.5"})
    with pytest.raises(ConfigError, match="at most 1 for a table"):
        train("qtable", resume=first.run_dir, overrides={"learning_rate": "2"})
    kept = load(first.run_dir)
    assert kept.config.learning_rate == 0.1 and kept.run.global_step == 1000
    assert json.loads((first.run_dir / "config.json").read_text())["agent_config"]["learning_rate"] == 0.1


def test_a_resume_may_change_the_step_size(runs_dir):
    first = train("qtable", steps=1000, runs_dir=runs_dir, progress=False)
    # gamma given at its own value is no change, so it is accepted beside the step size's settings.
    later = train("qtable", resume=first.run_dir, steps=2000, progress=False,
                  overrides={"learning_rate": "0.5", "learning_rate_end": "0.5", "gamma": "0.99"})  # fmt: skip
    assert later.global_step == 2000
    agent = load(first.run_dir)
    assert (agent.config.learning_rate, agent.config.learning_rate_end, agent.learning_rate) == (0.5, 0.5, 0.5)
    assert json.loads((first.run_dir / "config.json").read_text())["agent_config"]["learning_rate"] == 0.5

    # DQN's optimizer carries the step size of the checkpoint (CartPole's anneals to 0 at the run's end):
    # the resumed updates must use the new one, constant or scheduled.
    overrides = {"learning_starts": "64", "batch_size": "16", "train_freq": "16", "gradient_steps": "1"}
    dqn = train("dqn", steps=400, runs_dir=runs_dir, name="d", progress=False, overrides=overrides)
    assert load(dqn.run_dir).optimizer.param_groups[0]["lr"] < 1e-5
    resumed = load(dqn.run_dir, settings={"learning_rate": 1e-3, "final_learning_rate": -1.0})
    resumed.learn(100, run_dir=dqn.run_dir, progress=False)
    assert resumed.optimizer.param_groups[0]["lr"] == 1e-3 and resumed.steps == 500
    schedule = {"learning_rate": 1e-3, "final_learning_rate": 1e-4, "learning_rate_steps": 1000}
    scheduled = load(dqn.run_dir, settings=schedule)
    scheduled.learn(100, run_dir=dqn.run_dir, progress=False)
    # From 1e-3 at step 0 to 1e-4 at 1,000: the last update, at step 592, takes 1e-3 - 0.592 * 9e-4.
    assert scheduled.steps == 600 and scheduled.optimizer.param_groups[0]["lr"] == pytest.approx(4.672e-4)
    assert load(dqn.run_dir).config.learning_rate_steps == 1000
    with pytest.raises(ConfigError, match="buffer_size cannot change on a resumed dqn run"):
        load(dqn.run_dir, settings={"buffer_size": 999})

    # The policy gradient's RMSProp likewise.
    pg = train("pg", env_id="CartPole-v1", steps=600, runs_dir=runs_dir, name="p", progress=False)
    assert load(pg.run_dir, settings={"learning_rate": 0.05}).optimizer.param_groups[0]["lr"] == 0.05


def test_existing_run_directory_is_not_overwritten(runs_dir):
    train("qtable", steps=1000, runs_dir=runs_dir, name="same", progress=False)
    with pytest.raises(SuiteError, match="already exists"):
        train("qtable", steps=1000, runs_dir=runs_dir, name="same", progress=False)


def test_overrides_are_type_checked(runs_dir):
    with pytest.raises(ConfigError, match="valid: .*decay_steps"):
        train("qtable", overrides={"learnin_rate": "0.1"}, runs_dir=runs_dir)
    with pytest.raises(ConfigError, match="decay_steps must be an integer"):
        train("qtable", overrides={"decay_steps": "lots"}, runs_dir=runs_dir)


def test_broken_checkpoints_give_clear_errors(tmp_path):
    good = save_checkpoint({"agent": "qtable"}, tmp_path / "good.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:50])
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(truncated)
    with pytest.raises(CheckpointError, match="not a checkpoint of this suite"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="no such run directory"):
        load_checkpoint(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="no checkpoint in"):
        load_checkpoint(tmp_path)


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_writes_checkpoint_and_resumes(runs_dir):
    command = [
        sys.executable,
        str(ROOT / "train.py"),
        "qnet",
        "--steps",
        "10000000",
        "--runs-dir",
        str(runs_dir),
        "--name",
        "interrupted",
        "--no-progress",
    ]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    events = runs_dir / "interrupted"
    deadline = time.time() + 60
    while not any(events.glob("events.out.tfevents*")) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(2.0)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "Resume with: python train.py qnet --resume" in stdout
    assert stdout.strip().splitlines()[-1] == str(events)
    paused = load_checkpoint(events)["run"]["global_step"]
    assert 0 < paused < 10_000_000
    resumed = train("qnet", steps=paused + 2000, resume=events, progress=False)
    assert resumed.global_step == paused + 2000
    assert os.path.exists(events / "checkpoints" / "latest.pt")


def test_torch_thread_limit_is_restored_and_ignored_off_the_cpu():
    from core.resources import torch_threads, usable_cores

    before = torch.get_num_threads()
    with torch_threads(1, torch.device("cpu")):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(1, torch.device("cuda")):
        assert torch.get_num_threads() == before
    assert 1 <= usable_cores() <= (os.cpu_count() or 1)


_FAULTS_AFTER = """
import resource, sys
import numpy as np
from agents import make
from core.resources import keep_freed_memory
if sys.argv[1] == "learn":
    make("qtable", env="FrozenLake-v1", seed=1).learn(50)
    print(keep_freed_memory(), end=" ")  # already in force: learn set it
else:
    print(False, end=" ")
block = 48 << 20  # above glibc's largest dynamic mmap threshold (32 MiB): unmapped on free by default
np.ones(block, np.uint8)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    np.ones(block, np.uint8)  # made, written and freed: the same memory again each time, if it was kept
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str, **env: str) -> tuple[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", _FAULTS_AFTER, mode],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        cwd=Path(__file__).parent.parent,
        check=True,
    )
    kept, faults = done.stdout.split()
    return kept, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_learn_keeps_freed_memory_so_repeated_allocations_stop_faulting():
    # A training step frees and re-allocates the same large tensors; without the setting each one is
    # handed back to the OS and faulted in again page by page.
    _, plain = _faults("plain")
    kept, after_learn = _faults("learn")
    assert kept == "True"
    assert plain >= 20 and after_learn * 10 < plain, (plain, after_learn)
    # A user's own malloc tuning wins: the suite leaves it alone.
    assert _faults("learn", MALLOC_TOP_PAD_=str(128 << 10))[0] == "False"
    assert _faults("learn", GLIBC_TUNABLES="glibc.malloc.trim_threshold=131072")[0] == "False"
