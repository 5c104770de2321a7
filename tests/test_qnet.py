"""The one-layer Q-network: its TD loss and gradient step by hand, and learning FrozenLake."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch

from agents.evaluation import evaluate_agent
from agents.qnet import QNetConfig, QNetworkAgent
from envs import EnvConfig
from trainer.runner import train


def make_agent(**overrides) -> QNetworkAgent:
    agent = QNetworkAgent(QNetConfig(**overrides), gym.spaces.Discrete(3), gym.spaces.Discrete(2), seed=0)
    with torch.no_grad():
        agent.q_network.weight.copy_(torch.tensor([[0.0, 0.0, 1.0], [2.0, 0.0, 3.0]]))  # (actions, states)
    return agent


def test_network_is_one_layer_without_bias():
    agent = make_agent()
    assert [name for name, _ in agent.q_network.named_parameters()] == ["weight"]
    assert agent.q_values(2).tolist() == [1.0, 3.0]


def test_one_gradient_step_on_the_squared_td_error_by_hand():
    agent = make_agent(learning_rate=0.1, learning_rate_end=0.1, gamma=0.9)
    # Q(s0, a1) = 2; target = 1 + 0.9 * max(1, 3) = 3.7; loss = (3.7 - 2)^2 = 2.89
    loss = agent.td_loss(0, 1, 1.0, 2, terminated=False)
    assert loss.item() == pytest.approx(2.89)
    agent.observe(0, 1, 1.0, 2, terminated=False, truncated=False)
    # dL/dW[1, 0] = -2 * 1.7; SGD: 2 + 0.1 * 3.4 = 2.34; nothing else moves.
    assert agent.q_network.weight[1, 0].item() == pytest.approx(2.34)
    assert agent.q_network.weight[0].tolist() == [0.0, 0.0, 1.0]


def test_terminated_target_has_no_bootstrap():
    agent = make_agent(gamma=0.9)
    assert float(agent.td_loss(0, 1, 1.0, 2, terminated=True).detach()) == pytest.approx((1.0 - 2.0) ** 2)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_frozenlake_greedy_success_rate_at_least_060(seed, runs_dir):
    result = train(
        "qnet", seed=seed, steps=100_000, overrides={"decay_steps": "70000"}, runs_dir=runs_dir, progress=False
    )
    success = evaluate_agent(result.agent_object, EnvConfig("FrozenLake-v1"), episodes=1000, seed=20_000)
    assert success.mean() >= 0.60, f"seed {seed}: greedy success {success.mean():.3f}"
