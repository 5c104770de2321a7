"""Tests of the Karpathy policy-gradient agent: returns and gradients by hand, Pong frames, learning,
checkpoints."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents import load
from agents.pg import (
    EpisodeBuffer,
    PGConfig,
    PolicyGradientAgent,
    discounted_returns,
    log_prob,
    probabilities,
)
from agents.pg_fast import SPARSE_DENSITY, sparse_rows
from core.config import build_config
from core.errors import ConfigError
from envs.atari import KarpathyPong, karpathy_frame
from trainer.runner import train

BACKGROUND = 144


# Discounted returns -------------------------------------------------------------------------------
def test_discounted_returns_reset_at_each_point():
    rewards = np.array([0, 0, 1, 0, -1], dtype=np.float32)
    # By hand, gamma 0.5, from the end: -1; -0.5; the +1 starts a new point: 1; 0.5; 0.25.
    np.testing.assert_allclose(discounted_returns(rewards, 0.5, True), [0.25, 0.5, 1.0, -0.5, -1.0])
    # Without the reset the +1 step also sees the later -1: 1 - 0.25 = 0.75; 0.375; 0.1875.
    np.testing.assert_allclose(discounted_returns(rewards, 0.5, False), [0.1875, 0.375, 0.75, -0.5, -1.0])


def test_standardised_batch_advantages():
    agent = _agent(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2), reset_at_reward=False)
    episodes = [(np.zeros((2, 3)), np.zeros(2, int), np.array([1.0, 1.0], np.float32))] * 2
    weights = agent.advantages(episodes)
    assert weights.shape == (4,)
    np.testing.assert_allclose([weights.mean(), weights.std()], [0.0, 1.0], atol=1e-6)


# Preprocessing ---------------------------------------------------------------------------------------
def _frame(paddle_row: int) -> np.ndarray:
    """A (210, 160, 3) Pong-like frame: background, a 109-shade stripe, a score above the crop, a paddle."""
    frame = np.full((210, 160, 3), BACKGROUND, np.uint8)
    frame[100:102, :, 0] = 109  # the other background shade is dropped too
    frame[5:20, 10:30] = 236  # the score, above row 35, is cropped away
    frame[paddle_row : paddle_row + 8, 140:142] = 92
    return frame


def test_karpathy_frame_crops_downsamples_binarises():
    out = karpathy_frame(_frame(51))
    assert out.shape == (80, 80) and out.dtype == np.int8
    expected = np.zeros((80, 80), np.int8)
    # Output row k is screen row 35 + 2k, column j is screen column 2j: rows 51..57 -> 8..11, col 140 -> 70.
    expected[8:12, 70] = 1
    np.testing.assert_array_equal(out, expected)


class _MovingPaddle(gym.Env):
    """Raw frames whose paddle moves down 4 screen rows (2 output rows) per step."""

    observation_space = gym.spaces.Box(0, 255, (210, 160, 3), np.uint8)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        self.row = 51
        return _frame(self.row), {}

    def step(self, action):
        self.row += 4
        return _frame(self.row), 0.0, False, False, {}


def test_karpathy_pong_difference_frames():
    env = KarpathyPong(_MovingPaddle())
    first, _ = env.reset()
    np.testing.assert_array_equal(first, karpathy_frame(_frame(51)))  # difference with a blank frame
    second, _, _, _, _ = env.step(0)
    assert second.dtype == np.int8 and env.observation_space.contains(second)
    expected = np.zeros((80, 80), np.int8)
    expected[8:10, 70] = -1  # rows the paddle left
    expected[12:14, 70] = 1  # rows it moved into
    np.testing.assert_array_equal(second, expected)
    again, _ = env.reset()
    np.testing.assert_array_equal(again, first)  # reset forgets the previous frame


# Policy ------------------------------------------------------------------------------------------
def _agent(obs_space, act_space, **overrides) -> PolicyGradientAgent:
    config = build_config(PGConfig, overrides)
    return PolicyGradientAgent(config, obs_space, act_space, seed=0)


def test_log_probability_gradient_by_hand():
    agent = _agent(gym.spaces.Box(-5, 5, (2,)), gym.spaces.Discrete(2), hidden_size=2)
    with torch.no_grad():
        # Input-major (inputs x hidden units): unit 0 reads 1 x0 + 0 x1, unit 1 reads 0.5 x0 - 1 x1.
        agent.policy.input_weight.copy_(torch.tensor([[1.0, 0.5], [0.0, -1.0]]))
        agent.policy.out.weight.copy_(torch.tensor([[2.0, -1.0]]))
    x = np.array([[1.0, 2.0]], np.float32)
    # h = relu([1, 0.5 - 2]) = [1, 0]; z = 2; p(index 0) = sigmoid(2); d log p / dz = 1 - p.
    p = 1 / (1 + np.exp(-2.0))
    log_prob(agent._logits(x), torch.tensor([0])).sum().backward()
    np.testing.assert_allclose(agent.policy.out.weight.grad.numpy(), [[1 - p, 0.0]], rtol=1e-6)
    # dW1 = outer((1 - p) * W2 * relu'(h_pre), x): only the active first unit gets (1 - p) * 2 * x.
    expected = [[2 * (1 - p), 0], [4 * (1 - p), 0]]  # input-major
    np.testing.assert_allclose(agent.policy.input_weight.grad.numpy(), expected, rtol=1e-6)
    # Karpathy's "y - aprob" for the other action (y = 0): d log(1 - p) / dz = -p.
    agent.policy.zero_grad()
    log_prob(agent._logits(x), torch.tensor([1])).sum().backward()
    np.testing.assert_allclose(agent.policy.out.weight.grad.numpy(), [[-p, 0.0]], rtol=1e-6)


def test_softmax_log_probability_gradient():
    agent = _agent(gym.spaces.Box(-5, 5, (2,)), gym.spaces.Discrete(3), hidden_size=2)
    logits = torch.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
    log_prob(logits, torch.tensor([1])).sum().backward()
    p = np.exp([1.0, 2.0, 3.0]) / np.exp([1.0, 2.0, 3.0]).sum()
    np.testing.assert_allclose(logits.grad.numpy()[0], np.array([0, 1, 0]) - p, rtol=1e-6)
    assert agent.policy.out.weight.shape == (3, 2)  # three actions: a softmax head


def test_greedy_act_is_most_probable_pong_action():
    agent = _agent(gym.spaces.Box(-1, 1, (80, 80), np.int8), gym.spaces.Discrete(6), action_subset=(2, 3))
    frame = np.zeros((80, 80), np.int8)
    frame[10, 10] = 1
    with torch.no_grad():
        agent.policy.input_weight.zero_()
        agent.policy.input_weight[10 * 80 + 10, 0] = 1.0
        agent.policy.out.weight.zero_()
        agent.policy.out.weight[0, 0] = 3.0  # p(UP) = sigmoid(3) > 0.5
    assert agent.act(frame)[0] == 2
    with torch.no_grad():
        agent.policy.out.weight.mul_(-1)
    assert agent.act(frame)[0] == 3
    assert set(agent.actions[agent.sample(np.stack([frame] * 50))]) <= {2, 3}


@pytest.mark.parametrize("n_actions", [2, 3])
def test_sparse_acting_path_matches_torch_forward(n_actions):
    agent = _agent(gym.spaces.Box(-1, 1, (80, 80), np.int8), gym.spaces.Discrete(n_actions))
    frames = np.random.default_rng(0).choice([-1, 0, 0, 0, 0, 0, 0, 1], size=(5, 80, 80)).astype(np.int8)
    frames[2] = 0  # an all-zero frame (no column active in it)
    with torch.no_grad():
        expected = probabilities(agent._logits(frames)).numpy()
    np.testing.assert_allclose(agent.action_probabilities(frames), expected, atol=1e-5)
    # The numpy path keeps a copy of the weights: after an update it must act on the new ones.
    agent.update([(frames, np.arange(5) % n_actions, np.array([1.0, -1, 0, 1, 0]))])
    with torch.no_grad():
        updated = probabilities(agent._logits(frames)).numpy()
    assert not np.allclose(updated, expected, atol=1e-5)
    np.testing.assert_allclose(agent.action_probabilities(frames), updated, atol=1e-5)


@pytest.mark.parametrize(
    ("dtype", "shape"), [(np.int8, (40, 6400)), (np.uint8, (3, 13)), (np.float32, (4, 16)), (np.int64, (2, 8))]
)
def test_sparse_rows_equal_the_dense_rows(dtype, shape):
    """Byte arrays take the 8-bytes-at-a-time scan (when their size allows), the rest plain numpy."""
    rng = np.random.default_rng(0)
    x = (rng.choice([-1, 1], size=shape) * (rng.random(shape) < 0.05)).astype(dtype)
    x[0, : min(9, shape[1])] = 1  # neighbours within one 8-byte word and across two
    x[-1, -1] = 1  # the very last element
    dense = sparse_rows(x).to_dense()
    assert dense.dtype == torch.float32 and dense.equal(torch.as_tensor(x.astype(np.float32)))
    assert sparse_rows(np.zeros(shape, dtype))._nnz() == 0


def test_sparse_update_gradient_equals_dense():
    agent = _agent(gym.spaces.Box(-1, 1, (80, 80), np.int8), gym.spaces.Discrete(6), action_subset=(2, 3))
    frames = np.random.default_rng(1).choice([-1, 1], size=(40, 80, 80)).astype(np.int8)
    frames *= np.random.default_rng(2).random((40, 80, 80)) < 0.01  # ~1% nonzero, as a Pong difference
    frames[3] = 0
    actions, weights = torch.arange(40) % 2, torch.linspace(-1, 1, 40)
    grads = []
    for logits in (agent._logits(frames), agent.policy(torch.as_tensor(frames.reshape(40, -1)).float())):
        agent.policy.zero_grad()
        (weights * log_prob(logits, actions)).sum().backward()
        grads.append([p.grad.clone() for p in agent.policy.parameters()])
    assert np.count_nonzero(frames) < SPARSE_DENSITY * frames.size  # so _logits took the sparse product
    assert sparse_rows(frames.reshape(40, -1)).to_dense().equal(torch.as_tensor(frames.reshape(40, -1)).float())
    for sparse_grad, dense_grad in zip(*grads, strict=True):
        torch.testing.assert_close(sparse_grad, dense_grad, rtol=1e-5, atol=1e-6)


def test_config_rejects_bad_action_subset():
    with pytest.raises(ConfigError):
        build_config(PGConfig, {"action_subset": "2"})
    with pytest.raises(ConfigError):
        _agent(gym.spaces.Box(-1, 1, (2,)), gym.spaces.Discrete(3), action_subset=(2, 3))


def _frames(*values: int) -> np.ndarray:
    """One tiny (2,) observation per value, filled with it, to tell them apart."""
    return np.array([[v, v] for v in values], np.int8)


def test_episode_buffer_pairs_each_env_reward_with_its_own_action():
    """Rows come back by env id, in any order and a step or more after their action was sent; a row
    whose env had no action pending (a reset frame arriving late) records nothing."""
    buffer = EpisodeBuffer(3)
    buffer.act(np.array([0, 1]), _frames(0, 10), np.array([1, 0]))
    # Env 2's late reset frame and env 1's answer come back first; env 0 is still emulating.
    assert buffer.answer(np.array([2, 1]), np.array([0.0, 0.0]), np.array([False, False])) == 1
    buffer.act(np.array([2, 1]), _frames(20, 11), np.array([0, 1]))
    assert buffer.answer(np.array([0, 1]), np.array([1.0, -1.0]), np.array([True, False])) == 2
    assert buffer.answer(np.array([2]), np.array([-1.0]), np.array([True])) == 1
    episodes = buffer.take()
    assert [ep[0][:, 0].tolist() for ep in episodes] == [[0], [20]]
    assert [ep[1].tolist() for ep in episodes] == [[1], [0]]
    assert [ep[2].tolist() for ep in episodes] == [[1.0], [-1.0]]
    obs, act, rew = buffer.running[1]  # env 1 goes on: two actions, two rewards
    assert [o[0] for o in obs] == [10, 11] and act == [0, 1] and rew == [0.0, -1.0]
    assert buffer.take() == []


# Training -----------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_learns_cartpole(tmp_path, seed):
    result = train("pg", env_id="CartPole-v1", steps=80_000, seed=seed, runs_dir=tmp_path, progress=False)
    returns = result.episode_returns
    # A random policy averages ~22; seeds 1-8 reached 115-500 over the last 20 episodes at 80k steps.
    assert np.mean(returns[-20:]) > 80, returns[-20:]


def test_checkpoint_round_trip_gives_identical_greedy_actions(tmp_path):
    result = train("pg", env_id="CartPole-v1", steps=3000, seed=3, runs_dir=tmp_path, progress=False)
    agent = result.agent_object
    assert agent.updates >= 1
    loaded = load(result.run_dir)
    observations = np.random.default_rng(0).uniform(-2, 2, (200, 4)).astype(np.float32)
    assert [agent.act(o)[0] for o in observations] == [loaded.act(o)[0] for o in observations]
    assert loaded.updates == agent.updates and loaded.running_return == agent.running_return
    # Karpathy's running reward over exactly the episodes the trainer recorded.
    expected = result.episode_returns[0]
    for ret in result.episode_returns[1:]:
        expected = 0.99 * expected + 0.01 * ret
    assert agent.running_return == pytest.approx(expected)
    assert len({agent.act(o)[0] for o in observations}) == 2  # a real comparison, not a constant


def test_checkpoint_of_the_earlier_layout_loads_transposed():
    """Agent states saved before the input weights were stored input-major still load, RMSProp's
    running average included, and act the same."""
    spaces = gym.spaces.Box(-1, 1, (80, 80), np.int8), gym.spaces.Discrete(6)
    config = build_config(PGConfig, {"action_subset": (2, 3)})
    agent, other = (PolicyGradientAgent(config, *spaces, seed=seed) for seed in (0, 5))
    frames = np.random.default_rng(0).choice([-1, 0, 0, 0, 0, 0, 0, 1], size=(6, 80, 80)).astype(np.int8)
    agent.update([(frames, np.arange(6) % 2, np.array([1.0, -1, 0, 1, 0, -1]))])
    state = agent.state_dict()
    weights, square_avg = state["policy"]["input_weight"], state["optimizer"]["state"][0]["square_avg"]
    earlier = {
        **state,
        "policy": {"hidden.weight": weights.t(), "out.weight": state["policy"]["out.weight"]},
        "optimizer": {
            **state["optimizer"],
            "state": {
                **state["optimizer"]["state"],
                0: {**state["optimizer"]["state"][0], "square_avg": square_avg.t()},
            },
        },
    }
    assert not other.policy.input_weight.equal(weights)
    other.load_state_dict(earlier)
    assert other.policy.input_weight.equal(weights)
    assert other.optimizer.state_dict()["state"][0]["square_avg"].equal(square_avg)
    np.testing.assert_array_equal(other.action_probabilities(frames), agent.action_probabilities(frames))


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    [
        {"num_envs": 1},
        {"num_envs": 3, "envs_per_step": 2},
        {"num_envs": 2, "vector_mode": "async"},
    ],
    ids=["ale-batch", "ale-partial-batch", "process-per-env"],
)
def test_pong_smoke(tmp_path, overrides):
    """The Pong path end to end: Karpathy frames, UP/DOWN only, an update, a running mean; through
    ale-py's batch (whole, or answering 2 of 3 envs per step) and through a process per env.

    A game of random UP/DOWN Pong lasts ~820-1,420 steps. A partial batch answers whichever envs
    finish first, so the steps are not shared evenly; 2,500 per env guarantees that at least one env
    plays 2,500 steps and so finishes a game, however the steps fall."""
    result = train(
        "pg",
        env_id="ALE/Pong-v5",
        steps=2_500 * overrides["num_envs"],
        seed=1,
        runs_dir=tmp_path,
        progress=False,
        overrides={"batch_size": 1, **overrides},
    )
    agent = result.agent_object
    assert agent.updates >= 1 and result.episodes >= 1
    assert agent.running_return is not None
    assert all(-21 <= r <= 21 for r in result.episode_returns)
    assert agent.act(np.zeros((80, 80), np.int8))[0] in (2, 3)
