"""Prioritized replay: the sum tree against hand-worked sums and draws, importance weights, priority
updates, a round trip through a checkpoint, and DQN learning CartPole with it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents import load, make
from agents.dqn import DQNAgent, DQNConfig
from agents.replay import PrioritizedReplayBuffer
from agents.sumtree import SumTree
from core.errors import ConfigError


def test_sum_tree_sums_and_finds_by_hand():
    tree = SumTree(5)  # 8 leaves, the last 3 spare
    tree.update(np.array([0, 1, 2, 3, 4]), np.array([1.0, 2.0, 3.0, 4.0, 0.0]))
    assert tree.leaves == 8 and tree.total == 10.0
    assert tree.nodes[2] == 10.0 and tree.nodes[3] == 0.0  # left half (0-3) and right half (4-7)
    assert (tree.nodes[4], tree.nodes[5]) == (3.0, 7.0)  # (0, 1) and (2, 3)
    # Cumulative spans: leaf 0 [0, 1), leaf 1 [1, 3), leaf 2 [3, 6), leaf 3 [6, 10).
    found = tree.find(np.array([0.0, 0.99, 1.0, 2.5, 3.0, 5.99, 6.0, 9.99]))
    np.testing.assert_array_equal(found, [0, 0, 1, 1, 2, 2, 3, 3])
    tree.update(np.array([3, 3]), np.array([5.0, 0.5]))  # the last of a repeated index wins
    assert tree.total == 6.5 and tree.get(np.array([3]))[0] == 0.5
    with pytest.raises(ValueError):
        tree.update(np.array([0]), np.array([-1.0]))


def test_sum_tree_draws_in_proportion_to_priority():
    tree = SumTree(4)
    tree.update(np.arange(4), np.array([1.0, 2.0, 3.0, 4.0]))
    draws = np.concatenate([tree.sample(100, np.random.default_rng(seed)) for seed in range(200)])
    shares = np.bincount(draws, minlength=4) / len(draws)
    np.testing.assert_allclose(shares, [0.1, 0.2, 0.3, 0.4], atol=0.01)
    # Stratified: one draw in each quarter of the total: [0, 2.5) [2.5, 5) [5, 7.5) [7.5, 10) against the
    # leaves' spans [0, 1) [1, 3) [3, 6) [6, 10).
    for seed in range(20):
        draws = tree.sample(4, np.random.default_rng(seed))
        assert [int(d) in allowed for d, allowed in zip(draws, [{0, 1}, {1, 2}, {2, 3}, {3}], strict=True)] == [
            True
        ] * 4


def filled(n: int = 6, **kwargs) -> PrioritizedReplayBuffer:
    buffer = PrioritizedReplayBuffer(8, (1,), np.float32, **kwargs)
    buffer.start_episode(np.zeros(1, np.float32))
    for i in range(n):
        buffer.add(i % 2, float(i), np.full(1, i + 1, np.float32), terminated=False, truncated=False)
    return buffer


def test_new_transitions_get_the_highest_priority_and_updates_follow_td_errors():
    buffer = filled(alpha=0.5, eps=0.0)
    np.testing.assert_array_equal(buffer.tree.get(np.arange(6)), np.ones(6))
    buffer.update_priorities(np.array([0, 1]), np.array([4.0, -9.0]))  # |delta|^0.5
    np.testing.assert_allclose(buffer.tree.get(np.array([0, 1])), [2.0, 3.0])
    assert buffer.max_priority == 3.0
    buffer.add(0, 0.0, np.full(1, 7.0, np.float32), terminated=True, truncated=False)
    assert buffer.tree.get(np.array([6]))[0] == 3.0


def test_importance_weights_by_hand():
    buffer = filled(4, alpha=1.0, eps=0.0)
    buffer.update_priorities(np.arange(4), np.array([1.0, 1.0, 2.0, 4.0]))  # P = 1/8, 1/8, 2/8, 4/8
    batch, slots, weights = buffer.sample_prioritized(4, np.random.default_rng(0), beta=1.0)
    # Stratified over 8: slices [0,2) [2,4) [4,6) [6,8) -> slots 0 or 1, 2, 3, 3.
    assert slots[0] in (0, 1) and list(slots[1:]) == [2, 3, 3]
    # w = (N P)^-1 / max: N P = 0.5, 1, 2, 2 -> w = 2, 1, 0.5, 0.5 -> / 2.
    np.testing.assert_allclose(weights, [1.0, 0.5, 0.25, 0.25])
    np.testing.assert_array_equal(batch.actions, slots % 2)  # the batch holds those slots' transitions
    np.testing.assert_array_equal(batch.obs[:, 0], slots.astype(np.float32))
    _, _, flat = buffer.sample_prioritized(4, np.random.default_rng(0), beta=0.0)
    np.testing.assert_array_equal(flat, np.ones(4))  # beta 0: no correction


def test_importance_weight_exponent_anneals_over_the_run_or_a_fixed_number_of_steps():
    def beta_drawn(steps: int, schedule_steps: int, beta_steps: int = 0) -> float:
        agent = make("dqn", prioritized=True, priority_beta0=0.4, priority_beta_steps=beta_steps, batch_size=2)
        agent.replay.start_episode(np.zeros(4, np.float32))
        for _ in range(3):
            agent.replay.add(0, 1.0, np.zeros(4, np.float32), False, False)
        betas = []
        draw = agent.replay.sample_prioritized
        agent.replay.sample_prioritized = lambda n, rng, beta, **k: betas.append(beta) or draw(n, rng, beta, **k)
        agent.steps, agent.schedule_steps = steps, schedule_steps
        agent.update(2)
        assert len(betas) == 2  # one draw per gradient step, each with the same exponent
        return betas[0]

    assert beta_drawn(500, 1000) == pytest.approx(0.7)  # 0.4 + 0.5 * (1 - 0.4)
    assert beta_drawn(1000, 1000) == pytest.approx(1.0)
    # Over a fixed 400 steps, whatever the run's length: 0.4 + 0.25 * 0.6 at step 100, then held at 1.
    assert beta_drawn(100, 1000, beta_steps=400) == pytest.approx(0.55)
    assert beta_drawn(100, 5000, beta_steps=400) == pytest.approx(0.55)
    assert beta_drawn(900, 1000, beta_steps=400) == pytest.approx(1.0)
    # The Atari preset anneals it over the 500k steps its runs were measured on, whatever --steps says.
    assert DQNAgent.preset_for("ALE/Pong-v5")["priority_beta_steps"] == 500_000
    with pytest.raises(ConfigError, match="priority_beta_steps"):
        DQNConfig(priority_beta_steps=-1).validate()


def test_dqn_with_prioritized_replay_round_trips_and_resumes(tmp_path):
    small = {"learning_starts": 100, "train_freq": 4, "gradient_steps": 1, "batch_size": 16, "buffer_size": 2000}
    agent = make("dqn", seed=2, prioritized=True, adam_eps=1.5e-4, save_replay=True, **small)
    agent.learn(600, run_dir=tmp_path / "per")
    assert agent.optimizer.param_groups[0]["eps"] == 1.5e-4
    priorities = agent.replay.tree.get(np.arange(len(agent.replay)))
    assert len(np.unique(priorities)) > 10  # learned from: no longer all the initial 1.0
    again = load(tmp_path / "per")
    assert isinstance(again.replay, PrioritizedReplayBuffer)
    np.testing.assert_array_equal(again.replay.tree.get(np.arange(len(again.replay))), priorities)
    assert again.replay.max_priority == agent.replay.max_priority
    for key, value in agent.q_network.state_dict().items():
        assert torch.equal(again.q_network.state_dict()[key], value)
    resumed = again.learn(300, run_dir=tmp_path / "per")
    assert resumed.global_step == 900 and again.replay.added == 900


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_cartpole_learns_with_prioritized_replay(seed):
    """The greedy policy plays 475 or more (mean of 10 episodes) at one of the checks every 2,500 steps of a
    50k-step run, which then stops. Measured: first at 22.5k (seed 1) and 17.5k (seed 2); before learning
    the greedy mean stayed under 250."""
    from agents import Evaluate

    agent = make("dqn", seed=seed, prioritized=True)
    checks = Evaluate(every=2_500, episodes=10, seed=100, stop_at=475)
    result = agent.learn(50_000, callbacks=[checks])
    assert checks.history[-1][1] >= 475 and checks.history[-1][0] <= result.global_step < 50_000
