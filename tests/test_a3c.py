"""A3C: returns and GAE by hand, the shared optimizer across processes, Hogwild workers on CartPole and
VizDoom, a crashing worker, and the Ray backend on a two-node local cluster."""

from __future__ import annotations

import multiprocessing
import queue
import time
from collections import Counter

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from agents import load
from agents.a3c import A3CAgent, A3CConfig, local_backend
from agents.a3c.returns import gae, n_step_returns
from agents.a3c.shared_optim import ADAM_RATIO_BOUND, SharedAdam, SharedRMSprop
from agents.a3c.worker import worker_main
from agents.evaluation import evaluate_agent
from core.errors import SuiteError, WorkerError
from envs import EnvConfig
from trainer.runner import train


# Returns and advantages, worked by hand -------------------------------------------------------
def test_n_step_returns_bootstrap_and_termination():
    rewards = np.array([1.0, 0.0, 2.0])
    # R2 = 2 + .5*10 = 7, R1 = 0 + .5*7 = 3.5, R0 = 1 + .5*3.5 = 2.75
    np.testing.assert_allclose(n_step_returns(rewards, 10.0, 0.5), [2.75, 3.5, 7.0])
    np.testing.assert_allclose(n_step_returns(rewards, 0.0, 0.5), [1.5, 1.0, 2.0])


def test_gae_by_hand_and_lambda_one_is_n_step_advantage():
    rewards, values = np.array([1.0, 0.0, 2.0]), np.array([1.0, 2.0, 3.0])
    # deltas: 1 + .5*2 - 1 = 1, 0 + .5*3 - 2 = -.5, 2 + .5*4 - 3 = 1; gamma*lam = .25
    np.testing.assert_allclose(gae(rewards, values, 4.0, 0.5, 0.5), [0.9375, -0.25, 1.0])
    np.testing.assert_allclose(gae(rewards, values, 4.0, 0.5, 1.0), n_step_returns(rewards, 4.0, 0.5) - values)


# Shared optimizer -----------------------------------------------------------------------------
def _step_in_child(pairs: list[tuple[torch.nn.Module, torch.optim.Optimizer]]) -> None:
    for net, optimizer in pairs:
        for p in net.parameters():
            p.grad = torch.ones_like(p)
        optimizer.step()


def test_shared_optimizers_updates_are_seen_across_processes():
    pairs = []
    for optimizer_cls in (SharedAdam, SharedRMSprop):
        net = torch.nn.Linear(3, 2)
        net.share_memory()
        pairs.append((net, optimizer_cls(net.parameters(), lr=0.1)))
    before = [net.weight.detach().clone() for net, _ in pairs]
    child = mp.get_context("spawn").Process(target=_step_in_child, args=(pairs,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    for (net, optimizer), weight in zip(pairs, before, strict=True):
        assert not torch.allclose(net.weight, weight), "the child's step must move the shared weights"
        assert float(optimizer.state[net.weight]["step"]) == 1.0, "the child's step count must be shared"
    _step_in_child(pairs)
    assert all(float(optimizer.state[net.weight]["step"]) == 2.0 for net, optimizer in pairs)


def test_shared_adam_steps_exactly_as_torch_adam():
    torch.manual_seed(0)
    ours, reference = torch.nn.Linear(5, 3), torch.nn.Linear(5, 3)
    reference.load_state_dict(ours.state_dict())
    pairs = [
        (ours, SharedAdam(ours.parameters(), lr=1e-2)),
        (reference, torch.optim.Adam(reference.parameters(), lr=1e-2)),
    ]
    for _ in range(50):
        x = torch.randn(8, 5)
        for net, optimizer in pairs:
            optimizer.zero_grad()
            net(x).pow(2).sum().backward()
            optimizer.step()
    for p, q in zip(ours.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def test_shared_adam_bounds_the_step_of_a_torn_state():
    # The Hogwild race: another worker's gradient is in the first moment, the second moment and this
    # worker's own gradient are zero. Torch's Adam would move the weight by lr * 0.1 / eps = 1e7 lr.
    weight = torch.nn.Parameter(torch.zeros(2))
    optimizer = SharedAdam([weight], lr=1e-3)
    optimizer.state[weight]["exp_avg"].fill_(1.0)
    weight.grad = torch.zeros(2)
    optimizer.step()
    assert weight.abs().max().item() == pytest.approx(1e-3 * ADAM_RATIO_BOUND)


# Workers --------------------------------------------------------------------------------------
def test_two_workers_both_contribute_episodes(tmp_path):
    # Workers share one step budget, so on a loaded machine the first worker up can spend all of a
    # short sitting while the other still imports torch: resume in sittings of 3,000 steps until
    # both have finished episodes (bounded), rather than trusting one fixed count.
    result = train(
        "a3c", env_id="CartPole-v1", steps=3000, runs_dir=tmp_path, progress=False, overrides={"num_workers": 2}
    )
    counts = Counter(result.agent_object.workers.episodes)
    assert result.global_step >= 3000 and result.episodes == sum(counts.values())
    for sitting in range(2, 9):
        if set(counts) == {0, 1}:
            break
        result = train("a3c", steps=3000 * sitting, resume=result.run_dir, progress=False)
        counts.update(result.agent_object.workers.episodes)
        assert result.global_step >= 3000 * sitting
        assert not multiprocessing.active_children()
    assert set(counts) == {0, 1} and min(counts.values()) > 0
    assert result.episodes == sum(counts.values())  # the run's count carries across sittings
    assert not multiprocessing.active_children()


@pytest.mark.slow
def test_cartpole_learns(tmp_path):
    """Seed 1 reached 20-episode means of 300-500 by 60k steps in every trial run; 150 leaves a wide margin."""
    result = train(
        "a3c", env_id="CartPole-v1", steps=60_000, runs_dir=tmp_path, progress=False, overrides={"num_workers": 2}
    )
    returns = np.array(result.episode_returns)
    best_window = max(returns[i : i + 20].mean() for i in range(len(returns) - 19))
    assert best_window >= 150, f"best 20-episode mean {best_window:.1f}"
    assert returns[-20:].mean() > 3 * returns[:20].mean()


@pytest.mark.slow
def test_vizdoom_smoke_logs_episodes_and_round_trips(tmp_path):
    pytest.importorskip("vizdoom")
    result = train("a3c", steps=400, runs_dir=tmp_path, progress=False, overrides={"num_workers": 2})
    assert result.episodes >= 2 and all(-500 < r < 100 for r in result.episode_returns)
    assert list(result.run_dir.glob("events.out.tfevents.*"))
    loaded = load(result.run_dir)
    observation = np.zeros((84, 84), np.uint8)
    state_a, state_b = result.agent_object.initial_state(), loaded.initial_state()
    for _ in range(3):  # the LSTM state is carried: same greedy actions step after step
        action_a, state_a = result.agent_object.act(observation, state_a)
        action_b, state_b = loaded.act(observation, state_b)
        assert action_a == action_b
    returns = evaluate_agent(loaded, episodes=1, seed=3)
    assert returns.shape == (1,) and np.isfinite(returns).all()


def _failing_worker(rank, *args):
    """worker_main whose rollouts raise in worker 1 (patched in the child process only)."""
    if rank == 1:
        from agents.a3c.worker import RolloutLearner

        def rollout(self):
            time.sleep(1.0)
            raise ValueError("boom from worker")

        RolloutLearner.rollout = rollout
    worker_main(rank, *args)


def test_a_failing_worker_stops_the_run_with_its_error(tmp_path, monkeypatch):
    monkeypatch.setattr(local_backend, "worker_main", _failing_worker)
    started = time.monotonic()
    with pytest.raises(SuiteError, match="a3c worker 1 failed: ValueError: boom from worker") as info:
        train("a3c", env_id="CartPole-v1", steps=10**9, runs_dir=tmp_path, progress=False, overrides={"num_workers": 2})
    assert time.monotonic() - started < 60
    assert "in rollout" in "".join(info.value.__notes__)
    assert not multiprocessing.active_children()


def test_config_rejects_bad_values():
    from core.config import build_config

    with pytest.raises(SuiteError):
        build_config(A3CConfig, {"t_max": 0})
    assert A3CAgent.env_config_for(EnvConfig("VizdoomBasic-v1"), A3CConfig()).frame_stack == 1
    assert A3CAgent.env_config_for(EnvConfig("VizdoomBasic-v1"), A3CConfig()).frame_skip == 4  # 0 keeps the env default
    assert A3CAgent.env_config_for(EnvConfig("VizdoomBasic-v1"), A3CConfig(frame_skip=10)).frame_skip == 10
    with pytest.raises(SuiteError):
        build_config(A3CConfig, {"frame_skip": -1})


# Ray backend ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_ray_backend_on_a_two_node_cluster(tmp_path):
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    from agents.ray_cluster import REPO_ROOT

    # One CPU per node and one CPU per worker actor: the two workers must land on different nodes.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    try:
        ray.init(address=cluster.address, runtime_env={"env_vars": {"PYTHONPATH": REPO_ROOT}}, log_to_driver=False)
        result = train(
            "a3c",
            env_id="CartPole-v1",
            steps=25_000,
            runs_dir=tmp_path,
            progress=False,
            overrides={"num_workers": 2, "backend": "ray"},
        )
    finally:
        ray.shutdown()
        cluster.shutdown()
    agent = result.agent_object
    assert len(set(agent.workers.nodes.values())) == 2, agent.workers.nodes
    assert min(agent.workers.episodes.values()) > 0
    returns = np.array(result.episode_returns)
    assert returns[-20:].mean() > 2 * returns[:20].mean(), (returns[:20].mean(), returns[-20:].mean())
    # The agent's copy of the server's weights is what the checkpoint saved and what `act` uses.
    loaded = load(result.run_dir)
    observation = np.zeros(4, np.float32)
    assert loaded.act(observation)[0] == agent.act(observation)[0]


class _Exited:
    """A worker process that has already exited."""

    def __init__(self, exitcode: int):
        self.exitcode = exitcode


class _NeverStops:
    def should_stop(self) -> bool:
        return False


def test_a_clean_exit_whose_done_is_still_queued_is_no_death():
    """A worker flushes "done" and exits; the relay may see the exit before it reads the message (a race a
    fresh-clone CI run hit). Its "done" behind other reports still counts; a clean exit without one fails."""

    class SlowQueue(queue.Queue):  # each get takes a poll interval, so the exits are seen before the "done"s
        def get(self, block=True, timeout=None):
            time.sleep(local_backend.POLL_SECONDS)
            return super().get(block, timeout)

    reports = SlowQueue()
    for rank in (0, 1):
        reports.put(("done", rank))
    local_backend._relay(_NeverStops(), reports, [_Exited(0), _Exited(0)], Counter())  # returns: both are done

    reports = SlowQueue()
    reports.put(("done", 0))
    with pytest.raises(WorkerError, match="a3c worker 1 exited before it finished"):
        local_backend._relay(_NeverStops(), reports, [_Exited(0), _Exited(0)], Counter())
    with pytest.raises(WorkerError, match="a3c worker 0 died with exit code -9"):
        local_backend._relay(_NeverStops(), SlowQueue(), [_Exited(-9)], Counter())
