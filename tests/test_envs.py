"""The environment factory: shapes and dtypes per family, wrapper order, eval mode, seeding, errors."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.wrappers import FrameStackObservation, TransformReward

from core.errors import IncompatibleEnvError, SuiteError, UnknownEnvError
from envs import EnvConfig, finished_episodes, make_env, make_vector_env
from envs.atari import EpisodicLife, KarpathyPong


def _chain(env: gym.Env | gym.vector.VectorEnv):
    """The wrappers around an env or a vector env, outermost first."""
    while isinstance(env, (gym.Wrapper, gym.vector.VectorWrapper)):
        yield env
        env = env.env


def wrapper_types(env: gym.Env) -> list[type]:
    return [type(wrapper) for wrapper in _chain(env)]


@pytest.mark.parametrize(
    ("config", "shape", "dtype"),
    [
        (EnvConfig("FrozenLake-v1"), (), np.int64),
        (EnvConfig("CartPole-v1"), (4,), np.float32),
        (EnvConfig("ALE/Pong-v5"), (4, 84, 84), np.uint8),
        (EnvConfig("ALE/Breakout-v5", frame_stack=2, screen_size=64), (2, 64, 64), np.uint8),
        (EnvConfig("ALE/Pong-v5", preprocessing="karpathy"), (80, 80), np.int8),
        (EnvConfig("VizdoomBasic-v1"), (4, 84, 84), np.uint8),
        (EnvConfig("VizdoomBasic-v1", frame_stack=1), (84, 84), np.uint8),
    ],
    ids=["frozenlake", "cartpole", "atari-dqn", "atari-custom", "atari-karpathy", "vizdoom", "vizdoom-single"],
)
def test_observations_match_spaces(config, shape, dtype):
    env = make_env(config, seed=0)
    try:
        assert env.observation_space.shape == shape
        obs, _ = env.reset(seed=0)
        for _ in range(3):
            obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        obs = np.asarray(obs)
        assert obs.shape == shape
        assert obs.dtype == dtype
        assert env.observation_space.contains(obs if shape else int(obs))
        assert isinstance(terminated, bool) and isinstance(truncated, bool)
    finally:
        env.close()


def test_atari_training_clips_and_ends_on_life_loss_but_eval_does_not():
    train = wrapper_types(make_env("ALE/Breakout-v5", mode="train"))
    evaluation = wrapper_types(make_env("ALE/Breakout-v5", mode="eval"))
    assert TransformReward in train and EpisodicLife in train
    assert TransformReward not in evaluation and EpisodicLife not in evaluation
    # Statistics sit under every reward change (the list runs outermost first), so they record
    # the game's real score.
    assert train.index(TransformReward) < train.index(gym.wrappers.RecordEpisodeStatistics)


def test_reward_clipping_in_training_only():
    train = make_env("ALE/Breakout-v5", mode="train")
    clip = next(w for w in _chain(train) if isinstance(w, TransformReward))
    assert [clip.func(r) for r in (-3.0, 0.0, 7.0)] == [-1.0, 0.0, 1.0]


def test_frame_stack_puts_newest_frame_last():
    env = make_env("ALE/Pong-v5", seed=0)
    assert isinstance(env, FrameStackObservation)
    first, _ = env.reset(seed=0)
    second, *_ = env.step(0)
    np.testing.assert_array_equal(second[:-1], first[1:])


def test_karpathy_pong_difference_frames():
    env = make_env(EnvConfig("ALE/Pong-v5", preprocessing="karpathy"), seed=0)
    assert any(isinstance(w, KarpathyPong) for w in _chain(env))
    obs, _ = env.reset(seed=0)
    values = set(np.unique(obs).tolist())
    assert values <= {-1, 0, 1}
    # At reset there is no previous frame: the difference is the frame itself (0/1 only).
    assert values <= {0, 1}


def test_same_seed_same_first_observation():
    for env_id in ("CartPole-v1", "ALE/Pong-v5"):
        a, _ = make_env(env_id).reset(seed=7)
        b, _ = make_env(env_id).reset(seed=7)
        np.testing.assert_array_equal(a, b)
    a, _ = make_env("CartPole-v1").reset(seed=7)
    c, _ = make_env("CartPole-v1").reset(seed=8)
    assert not np.array_equal(a, c)


def test_vector_env_records_real_episode_statistics():
    envs = make_vector_env("CartPole-v1", 2, seed=0)
    envs.reset(seed=0)
    finished = 0
    for _ in range(200):
        _, _, terminated, truncated, infos = envs.step(envs.action_space.sample())
        episodes = finished_episodes(infos)
        assert len(episodes) == int((terminated | truncated).sum())
        for episodic_return, length in episodes:
            assert episodic_return == length > 0  # CartPole pays 1 per step
        finished += len(episodes)
    envs.close()
    assert finished > 0


def test_unknown_env_suggests_close_ids():
    with pytest.raises(UnknownEnvError, match="did you mean CartPole-v1"):
        make_env("CartPole-v9")


def test_qtable_refuses_continuous_observations():
    from agents.qtable import QTableAgent

    env = make_env("CartPole-v1")
    with pytest.raises(IncompatibleEnvError, match="discrete observation space"):
        QTableAgent.check_spaces(env.observation_space, env.action_space)


def test_episode_batch_is_numpy_vectorized_where_gymnasium_has_one():
    from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv

    from envs import EpisodeBatch, numpy_batch_available

    assert numpy_batch_available(EnvConfig("CartPole-v1"))
    assert not numpy_batch_available(EnvConfig("ALE/Pong-v5"))
    batch = EpisodeBatch(EnvConfig("CartPole-v1"), 64, seed=0)
    assert batch.vectorized and isinstance(batch.vector_env.unwrapped, CartPoleVectorEnv)
    observations = batch.reset(seed=0)
    assert observations.shape == (64, 4) and batch.active.all()
    lengths, returns = np.zeros(64, int), np.zeros(64)
    rng = np.random.default_rng(0)
    while batch.active.any():
        lengths += batch.active
        observations, rewards = batch.step(rng.integers(0, 2, size=64))
        returns += rewards
    batch.close()
    # Each slot played one episode: CartPole pays 1 per step, and nothing after its end.
    np.testing.assert_array_equal(returns, lengths)
    assert (lengths > 0).all() and (lengths <= 500).all()
    # Without a numpy implementation each slot is its own env, and only running slots are stepped.
    separate = EpisodeBatch(EnvConfig("FrozenLake-v1"), 3, seed=0)
    assert not separate.vectorized and len(separate.envs) == 3
    separate.reset(seed=0)
    steps = [0, 0, 0]
    while separate.active.any():
        for i in np.flatnonzero(separate.active):
            steps[i] += 1
        separate.step(np.zeros(3, np.int64))
    assert all(n > 0 for n in steps)
    # A finished slot is not stepped again: its env's step counter stays where its episode ended.
    counts = [env.get_wrapper_attr("episode_count") for env in separate.envs]
    separate.step(np.zeros(3, np.int64))
    assert [env.get_wrapper_attr("episode_count") for env in separate.envs] == counts == [1, 1, 1]
    separate.close()


def test_every_vector_env_names_the_env_of_each_row():
    for mode in ("sync", "auto"):
        envs = make_vector_env("CartPole-v1", 3, seed=0, mode=mode)
        _, infos = envs.reset(seed=0)
        np.testing.assert_array_equal(infos["env_id"], [0, 1, 2])
        _, _, _, _, infos = envs.step(envs.action_space.sample())
        np.testing.assert_array_equal(infos["env_id"], [0, 1, 2])
        envs.close()
    with pytest.raises(SuiteError, match="has none"):
        make_vector_env("CartPole-v1", 2, seed=0, mode="batch")


def test_ale_batch_gives_the_single_env_karpathy_frames():
    """ale-py's threaded vector env + the batch Karpathy wrapper == `make_env` copies, frame for frame,
    across episode ends (SAME_STEP autoreset) and with the real scores in the episode statistics."""
    from dataclasses import replace

    from envs import resolve_vector_mode
    from envs.atari import KarpathyPongBatch

    # No sticky actions: then both play the same deterministic game from the same actions.
    config = replace(EnvConfig("ALE/Pong-v5", preprocessing="karpathy"), repeat_action_probability=0.0)
    assert resolve_vector_mode(config) == "batch"
    assert resolve_vector_mode(EnvConfig("ALE/Pong-v5")) == "batch"  # dqn preprocessing, in ale-py's threads
    assert resolve_vector_mode(EnvConfig("ALE/Pong-v5", frame_stack=1)) == "sync"  # ale-py always stacks
    batch = make_vector_env(config, 2, seed=0)
    assert isinstance(batch.env, KarpathyPongBatch) and batch.single_observation_space.shape == (80, 80)
    singles = [make_env(config, seed=i) for i in range(2)]
    observations, _ = batch.reset(seed=0)
    expected = np.stack([env.reset(seed=i)[0] for i, env in enumerate(singles)])
    np.testing.assert_array_equal(observations, expected)
    rng = np.random.default_rng(0)
    nonzero, batch_scores, single_scores = 0, [], []
    for _ in range(900):  # a lost game of Pong lasts ~760-900 steps: at least one episode ends
        actions = rng.integers(0, 6, size=2)
        observations, rewards, terminated, truncated, infos = batch.step(actions)
        batch_scores += [score for score, _ in finished_episodes(infos)]
        for i, env in enumerate(singles):
            single_obs, single_reward, single_terminated, single_truncated, info = env.step(int(actions[i]))
            if single_terminated or single_truncated:
                single_scores.append(info["episode"]["r"])
                single_obs, _ = env.reset()
            np.testing.assert_array_equal(observations[i], single_obs)
            assert rewards[i] == single_reward and terminated[i] == single_terminated
        nonzero += int(np.count_nonzero(observations))
    batch.close()
    assert nonzero > 0 and single_scores and sorted(batch_scores) == sorted(single_scores)


def test_ale_partial_batch_gives_each_env_its_own_karpathy_frames_and_scores():
    """With `envs_per_step` < num_envs ale-py answers whichever envs finish first, named in
    `infos["env_id"]`: each env's frames, rewards, episode ends and statistics still equal those of
    its own `make_env` copy given the same actions, and late reset frames count no step."""
    from dataclasses import replace

    from envs.atari import PartialBatchEpisodeStatistics

    config = replace(EnvConfig("ALE/Pong-v5", preprocessing="karpathy"), repeat_action_probability=0.0)
    batch = make_vector_env(config, 4, seed=0, mode="batch", envs_per_step=2)
    assert PartialBatchEpisodeStatistics in wrapper_types(batch)
    singles = [make_env(config, seed=i) for i in range(4)]
    started = [False] * 4

    def check_reset_frame(env_id: int, observation: np.ndarray) -> None:
        np.testing.assert_array_equal(observation, singles[env_id].reset(seed=int(env_id))[0])
        started[env_id] = True

    observations, infos = batch.reset(seed=0)
    ids = infos["env_id"]
    assert len(ids) == 2
    for row, env_id in enumerate(ids):
        check_reset_frame(env_id, observations[row])
    rng = np.random.default_rng(0)
    batch_episodes, single_episodes, late_resets, pending, finished = [], [], 0, {}, set()
    # Until every env has lost a game (~760-930 steps each). Whichever envs finish first are answered,
    # so on a loaded machine one env can get far fewer steps than the others: bounded, not counted.
    for _ in range(12_000):
        if len(finished) == 4:
            break
        actions = rng.integers(0, 6, size=len(ids))
        pending.update(zip(ids.tolist(), actions.tolist(), strict=True))
        observations, rewards, terminated, truncated, infos = batch.step(actions)
        batch_episodes += finished_episodes(infos)
        ids = infos["env_id"]
        for row, env_id in enumerate(ids):
            if not started[env_id]:  # its reset frame arrives only now; no action was pending
                assert env_id not in pending and rewards[row] == 0 and not terminated[row]
                check_reset_frame(env_id, observations[row])
                late_resets += 1
                continue
            single_obs, reward, single_terminated, single_truncated, info = singles[env_id].step(pending.pop(env_id))
            if single_terminated or single_truncated:
                single_episodes.append((float(info["episode"]["r"]), int(info["episode"]["l"])))
                finished.add(env_id)
                single_obs, _ = singles[env_id].reset()
            np.testing.assert_array_equal(observations[row], single_obs)
            assert rewards[row] == reward and terminated[row] == single_terminated
    batch.close()
    assert late_resets == 2 and all(started)
    assert finished == {0, 1, 2, 3} and sorted(batch_episodes) == sorted(single_episodes)


@pytest.mark.parametrize(
    ("env_id", "num_envs", "envs_per_step", "message"),
    [
        ("CartPole-v1", 4, 2, "needs ale-py's batch"),
        (EnvConfig("ALE/Pong-v5", frame_stack=1), 4, 2, "needs ale-py's batch"),  # ale-py's frames are stacked
        ("CartPole-v1", 4, 5, "between 0"),
        ("CartPole-v1", 4, -1, "between 0"),
    ],
)
def test_partial_batch_refused_where_no_library_batch_supports_it(env_id, num_envs, envs_per_step, message):
    with pytest.raises(SuiteError, match=message):
        make_vector_env(env_id, num_envs, seed=0, mode="batch", envs_per_step=envs_per_step)


def test_sticky_actions_follow_the_env_id_unless_set(monkeypatch):
    """`PongNoFrameskip-v4` is the deterministic Atari (no sticky actions), `ALE/Pong-v5` repeats the last
    action with probability 0.25; the suite keeps each id's own unless `env.repeat_action_probability` is set."""
    import ale_py.vector_env

    from agents.api import with_settings
    from core.errors import ConfigError

    v4, v5 = EnvConfig("PongNoFrameskip-v4"), EnvConfig("ALE/Pong-v5")
    assert (v4.resolved_repeat_action_probability(), v5.resolved_repeat_action_probability()) == (0.0, 0.25)
    set_v4 = with_settings(v4, {"repeat_action_probability": "0.1"})
    assert set_v4.resolved_repeat_action_probability() == 0.1
    for config, expected in ((v4, 0.0), (v5, 0.25), (set_v4, 0.1)):
        env = make_env(config, seed=0)
        assert env.unwrapped.ale.getFloat("repeat_action_probability") == pytest.approx(expected)
        env.close()
    # ale-py's threaded batch (the DQN route) hides its settings: catch what the factory passes it.
    passed = []
    real = ale_py.vector_env.AtariVectorEnv

    def spy(*args, **kwargs):
        passed.append(kwargs["repeat_action_probability"])
        return real(*args, **kwargs)

    monkeypatch.setattr(ale_py.vector_env, "AtariVectorEnv", spy)
    for config in (v4, v5, set_v4):
        make_vector_env(config, 2, seed=0).close()
    assert passed == [0.0, 0.25, 0.1]
    with pytest.raises(ConfigError, match="between 0 and 1"):
        with_settings(v5, {"repeat_action_probability": 1.5})
    with pytest.raises(ConfigError, match="noop_max"):
        with_settings(v5, {"noop_max": -1})
