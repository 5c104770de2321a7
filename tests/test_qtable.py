"""Tabular Q-learning: the update by hand, and learning thresholds on the toy-text envs."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from agents.evaluation import evaluate_agent
from agents.qtable import QTableAgent, QTableConfig
from envs import EnvConfig
from trainer.runner import train


def make_agent(**overrides) -> QTableAgent:
    config = QTableConfig(**overrides)
    return QTableAgent(config, gym.spaces.Discrete(3), gym.spaces.Discrete(2), seed=0)


def test_one_bellman_update_by_hand():
    agent = make_agent(learning_rate=0.5, learning_rate_end=0.5, gamma=0.9)
    agent.q[2] = [1.0, 3.0]
    agent.q[0, 1] = 2.0
    td = agent.td_update(0, 1, reward=1.0, s_next=2, terminated=False)
    # target = 1 + 0.9 * max(1, 3) = 3.7; td = 3.7 - 2 = 1.7; Q = 2 + 0.5 * 1.7 = 2.85
    assert td == pytest.approx(1.7)
    assert agent.q[0, 1] == pytest.approx(2.85)


def test_termination_stops_bootstrapping_but_truncation_does_not():
    agent = make_agent(learning_rate=1.0, learning_rate_end=1.0, gamma=0.9)
    agent.q[2] = [5.0, 5.0]
    agent.observe(0, 0, 1.0, 2, terminated=True, truncated=False)
    assert agent.q[0, 0] == pytest.approx(1.0)
    agent.observe(1, 0, 1.0, 2, terminated=False, truncated=True)
    assert agent.q[1, 0] == pytest.approx(1.0 + 0.9 * 5.0)


def test_exploration_and_learning_rate_decay_linearly():
    agent = make_agent(epsilon_start=1.0, epsilon_end=0.1, learning_rate=0.2, learning_rate_end=0.1, decay_steps=100)
    assert agent.epsilon == pytest.approx(1.0)
    agent.steps = 50
    assert agent.epsilon == pytest.approx(0.55)
    assert agent.learning_rate == pytest.approx(0.15)
    agent.steps = 1000
    assert agent.epsilon == pytest.approx(0.1)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_frozenlake_greedy_success_rate_at_least_070(seed, runs_dir):
    result = train("qtable", seed=seed, runs_dir=runs_dir, progress=False)
    success = evaluate_agent(result.agent_object, EnvConfig("FrozenLake-v1"), episodes=1000, seed=10_000)
    assert success.mean() >= 0.70, f"seed {seed}: greedy success {success.mean():.3f}"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("env_id", "steps", "threshold"), [("Taxi-v4", 150_000, 7.0), ("CliffWalking-v1", 30_000, -13.0)]
)
def test_learns_taxi_and_cliffwalking_with_presets(env_id, steps, threshold, runs_dir):
    result = train("qtable", env_id=env_id, steps=steps, seed=1, runs_dir=runs_dir, progress=False)
    returns = evaluate_agent(result.agent_object, EnvConfig(env_id), episodes=50, seed=500)
    # Taxi's optimum averages about 8; CliffWalking's shortest safe path returns -13.
    assert returns.mean() >= threshold, f"{env_id}: {returns.mean():.2f}"
    assert np.isfinite(result.agent_object.q).all()
