"""The Python interface as a notebook user drives it, for every agent family (tiny step counts):
`make` with an id, a `pkg.module:Id` entry and a `gym.Env` object; `learn` with callbacks that really stop
the run; `predict` on one observation and a batch of 8; `save` / `load`; `learn` again continuing."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from agents import Callback, CheckpointEvery, StopAfter, StopAtReturn, load, make
from core.errors import ConfigError, SuiteError
from tests import custom_env

ROOT = Path(__file__).resolve().parents[1]

# family -> (registered id, custom id, small hyperparameters, steps of a short learn)
FAMILIES = {
    "qtable": ("FrozenLake-v1", "tests.custom_env:Corridor-v0", {}, 400),
    "qnet": ("FrozenLake-v1", "tests.custom_env:Corridor-v0", {}, 400),
    "dqn": (
        "CartPole-v1",
        "tests.custom_env:CorridorBox-v0",
        {"learning_starts": 50, "train_freq": 10, "gradient_steps": 2, "batch_size": 16, "buffer_size": 2000},
        400,
    ),
    "pg": ("CartPole-v1", "tests.custom_env:CorridorBox-v0", {"num_envs": 2, "batch_size": 2}, 400),
    "a3c": (
        "CartPole-v1",
        "tests.custom_env:CorridorBox-v0",
        {"num_workers": 1, "lstm_size": 0, "hidden_size": 16},
        400,
    ),
    "neat": ("CartPole-v1", "tests.custom_env:CorridorBox-v0", {"population_size": 10, "num_workers": 1}, 400),
}


def observations_of(env_id: str, n: int = 8, seed: int = 0) -> np.ndarray:
    """n observations met along a random walk in the env (as the agent sees them)."""
    env = gym.make(env_id.rpartition(":")[2])
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    seen = [obs]
    while len(seen) < n:
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        seen.append(env.reset()[0] if terminated or truncated else obs)
    env.close()
    return np.stack([np.asarray(o) for o in seen])


class Counting(Callback):
    """Records what the session called it with."""

    step_interval = 100

    def __init__(self):
        self.started = self.ended = 0
        self.steps: list[int] = []
        self.episodes = 0
        self.checkpoints: list[Path] = []
        self.checkpoint_steps: list[int] = []

    def on_start(self, ctx):
        self.started += 1

    def on_step(self, ctx):
        self.steps.append(ctx.global_step)

    def on_episode(self, ctx, episodic_return, length):
        self.episodes += 1

    def on_checkpoint(self, ctx, path):
        self.checkpoints.append(path)
        self.checkpoint_steps.append(ctx.global_step)

    def on_end(self, ctx):
        self.ended += 1


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_notebook_workflow(family, tmp_path):
    env_id, _, small, steps = FAMILIES[family]
    agent = make(family, env=env_id, seed=1, **small)
    assert agent.env_config.env_id == env_id and agent.run.global_step == 0

    # A stopping callback really stops the run: one episode of a 100-episode budget.
    stopped = agent.learn(100_000, run_dir=tmp_path / "run", callbacks=[StopAtReturn(-1e9, window=1)])
    assert stopped.stop_reason and "reached" in stopped.stop_reason
    assert stopped.episodes >= 1 and stopped.global_step < 100_000
    assert (tmp_path / "run" / "checkpoints" / "latest.pt").is_file()

    # predict: one observation and a batch of 8, valid and deterministic, the batch equal to one by one.
    batch = observations_of(env_id)
    single, _ = agent.predict(batch[0])
    assert agent.action_space.contains(np.asarray(single, dtype=agent.action_space.dtype))
    actions, states = agent.predict(batch)
    assert np.shape(actions) == (8,) and len(states) == 8
    assert all(agent.action_space.contains(np.asarray(a, dtype=agent.action_space.dtype)) for a in actions)
    np.testing.assert_array_equal(actions, agent.predict(batch)[0])
    np.testing.assert_array_equal(actions, [agent.predict(obs)[0] for obs in batch])
    sampled, _ = agent.predict(batch, deterministic=False)
    assert np.shape(sampled) == (8,)
    with pytest.raises(ConfigError, match="predict takes an observation"):
        agent.predict(np.zeros((2, 2, 2, 2, 2)))

    # save / load: identical greedy actions, from the file and from the run directory.
    path = agent.save(tmp_path / "agent.pt")
    for again in (load(path), load(tmp_path / "run")):
        assert again.name == family and again.env_config == agent.env_config
        np.testing.assert_array_equal(again.predict(batch)[0], actions)
    assert load(path).run.global_step == agent.run.global_step

    # learn again continues the step counter (and the run directory's curve).
    before, episodes_before = agent.run.global_step, agent.run.episodes
    counting = Counting()
    more = agent.learn(steps, run_dir=tmp_path / "run", callbacks=[counting])
    assert more.global_step >= before + steps and agent.run.global_step == more.global_step
    assert more.episodes == episodes_before + len(more.episode_returns)
    assert counting.started == counting.ended == 1 and counting.episodes == len(more.episode_returns)
    # Step hooks come at (the first report past) each multiple of their interval in the run's steps.
    assert counting.steps and counting.steps[0] >= (before // 100 + 1) * 100
    assert all(b // 100 > a // 100 for a, b in itertools.pairwise(counting.steps))
    # Every tenth of the call (by default) and at the end, always into the run's latest checkpoint.
    assert len(counting.checkpoints) >= 1 and set(counting.checkpoints) == {
        tmp_path / "run" / "checkpoints" / "latest.pt"
    }
    assert load(tmp_path / "run").run.global_step == more.global_step


@pytest.mark.parametrize("family", list(FAMILIES))
def test_make_takes_an_entry_point_and_an_env_object(family):
    _, custom_id, small, steps = FAMILIES[family]
    from_entry = make(family, env=custom_id, seed=2, env_kwargs={"length": 4}, **small)
    assert from_entry.env_config.env_kwargs == {"length": 4}
    result = from_entry.learn(steps)
    assert result.global_step >= steps and result.run_dir is None
    name = custom_id.rpartition(":")[2]
    from_object = make(family, env=gym.make(name, length=4), seed=2, **small)
    assert from_object.env_config.name == name and from_object.env_config.env_kwargs == {"length": 4}
    assert from_object.learn(steps).global_step >= steps


def test_an_env_function_is_stored_so_load_rebuilds_it(tmp_path):
    agent = make("dqn", env=custom_env.make_corridor_box, learning_starts=50, train_freq=10, batch_size=16)
    assert agent.env_config.entry_point == "tests.custom_env:make_corridor_box"
    assert agent.observation_space.shape == (4,)  # the function's length, not the class default
    agent.learn(200)
    again = load(agent.save(tmp_path / "f.pt"))
    assert again.observation_space.shape == (4,)
    np.testing.assert_array_equal(again.predict(np.eye(4, dtype=np.float32))[0], agent.predict(np.eye(4))[0])


def test_an_env_object_is_the_first_training_env():
    env = custom_env.Corridor(length=6)
    agent = make("qtable", env=env, seed=3)
    assert agent.observation_space.n == 6
    agent.learn(300)
    assert env.steps > 0  # the user's own object was stepped


def test_stop_after_stops_on_time():
    agent = make("dqn", env="CartPole-v1", learning_starts=10**9)
    started = time.monotonic()
    result = agent.learn(10**8, callbacks=[StopAfter(seconds=1.0)])
    assert "time limit" in result.stop_reason and time.monotonic() - started < 10
    assert 0 < result.global_step < 10**8


def test_checkpoint_every_writes_at_its_interval(tmp_path):
    seen = Counting()
    make("qtable").learn(3000, run_dir=tmp_path / "r", callbacks=[CheckpointEvery(1000), seen])
    # At the first episode end past 1000 and past 2000; the request at 3000 is the final checkpoint.
    first, second, final = seen.checkpoint_steps
    assert 1000 <= first < 1200 and 2000 <= second < 2200 and final == 3000


def test_bad_arguments_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="steps must be a positive integer"):
        make("qtable").learn(0)
    with pytest.raises(ConfigError, match="callbacks must be instances"):
        make("qtable").learn(10, callbacks=[lambda ctx: None])
    with pytest.raises(SuiteError, match="seed must be an integer"):
        make("qtable", seed=-1)
    with pytest.raises(ConfigError, match="env must be an id"):
        make("qtable", env=42)
    with pytest.raises(ConfigError, match="unknown hyperparameter"):
        make("qtable", learnin_rate=0.1)
    with pytest.raises(ConfigError, match="finite"):
        make("qtable", learning_rate=float("nan"))
    with pytest.raises(SuiteError, match="cannot import"):
        make("qtable", env="no_such_module_here:Thing-v0")
    with pytest.raises(ConfigError, match="not a setting"):
        make("dqn", env_settings={"env_id": "x"})
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    with pytest.raises(SuiteError, match="already exists"):
        make("qtable").learn(10, run_dir=tmp_path / "taken")


def test_env_settings_are_stored_with_the_run(tmp_path):
    agent = make("dqn", env="ALE/Pong-v5", env_settings={"frame_stack": 2, "screen_size": 64})
    assert agent.observation_space.shape == (2, 64, 64)
    again = load(agent.save(tmp_path / "pong.pt"))
    assert again.env_config.frame_stack == 2 and again.observation_space.shape == (2, 64, 64)


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_a_custom_env_through_train_py_and_evaluate_py(tmp_path):
    runs = tmp_path / "runs"
    trained = _cli(
        "train.py", "qtable", "--env", "tests.custom_env:Corridor-v0", "--env-kwargs", "length=4",
        "--steps", "3000", "--runs-dir", str(runs), "--name", "corridor", "--no-progress",
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    config = json.loads((runs / "corridor" / "config.json").read_text())
    assert config["env_config"]["env_kwargs"] == {"length": 4}
    evaluated = _cli("evaluate.py", str(runs / "corridor"), "--episodes", "3", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    result = json.loads(evaluated.stdout)
    # The corridor of 4 is walked right in 3 steps: 1 - 2 * 0.01.
    assert result["env"] == "tests.custom_env:Corridor-v0" and result["mean_return"] == pytest.approx(0.98)


def test_a_run_trained_from_python_on_an_env_function_plays_in_evaluate_py(tmp_path):
    agent = make("qtable", env=custom_env.Corridor, seed=1)
    agent.learn(3000, run_dir=tmp_path / "py")
    evaluated = _cli("evaluate.py", str(tmp_path / "py"), "--episodes", "2", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["mean_return"] == pytest.approx(0.97)  # 4 steps right, length 5


def test_installed_commands_and_no_shadowing_modules():
    from importlib.metadata import distribution

    dist = distribution("gym-agents")
    scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    assert scripts == {
        "gym-agents-train": "gym_agents.train:main",
        "gym-agents-evaluate": "gym_agents.evaluate:main",
        "gym-agents-compare": "gym_agents.compare:main",
    }
    # Outside the repository the installed package has no top-level train / evaluate / compare module.
    names = ("train", "evaluate", "compare", "gym_agents.evaluate")
    probe = f"import importlib.util as u; print([n for n in {names} if u.find_spec(n)])"
    found = subprocess.run([sys.executable, "-c", probe], cwd=Path("/"), capture_output=True, text=True)
    assert found.returncode == 0 and found.stdout.strip() == "['gym_agents.evaluate']", found.stdout + found.stderr
    helped = subprocess.run(
        [str(Path(sys.executable).parent / "gym-agents-train"), "dqn", "--help"], capture_output=True, text=True
    )
    assert helped.returncode == 0 and "env.frame_stack" in helped.stdout and "Step budgets" in helped.stdout
