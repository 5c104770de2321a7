"""A3C on a Ray cluster: workers are actors that return gradients; a parameter-server actor owns the
global network and optimizer and applies each gradient as it arrives (asynchronous, one at a time).

The driver (the trainer's process) only routes object references: worker k's gradient goes to the
server, the server's new weights go back to worker k, and the small report (steps, episodes, losses,
node) comes to the driver for the `TrainContext`. Imported only with `backend=ray`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ray
import torch

from agents.a3c.config import A3CConfig
from agents.a3c.local_backend import WorkerStats, handle_update
from agents.a3c.worker import RolloutLearner, build_network
from agents.context import TrainContext
from agents.ray_cluster import RUNTIME_ENV, connect
from core.errors import worker_error
from envs import EnvConfig

if TYPE_CHECKING:
    from agents.a3c.agent import A3CAgent

SYNC_EVERY_UPDATES = 50
"""How often the agent's copy of the global weights (what checkpoints save) is refreshed."""


@ray.remote(num_cpus=0)
class ParameterServer:
    def __init__(self, config: A3CConfig, observation_space, action_space, state: dict[str, Any]):
        torch.set_num_threads(1)
        self.net = build_network(config, observation_space, action_space)
        self.net.load_state_dict(state["network"])
        optimizer_cls = torch.optim.Adam if config.optimizer == "adam" else torch.optim.RMSprop
        kwargs = {} if config.optimizer == "adam" else {"alpha": 0.99, "eps": 0.1}
        self.optimizer = optimizer_cls(self.net.parameters(), lr=config.learning_rate, **kwargs)
        self.optimizer.load_state_dict(state["optimizer"])

    def weights(self) -> dict[str, torch.Tensor]:
        return self.net.state_dict()

    def apply(self, grads: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        for param, grad in zip(self.net.parameters(), grads, strict=True):
            param.grad = grad
        self.optimizer.step()
        return self.net.state_dict()

    def state(self) -> dict[str, Any]:
        return {"network": self.net.state_dict(), "optimizer": self.optimizer.state_dict()}


@ray.remote(num_cpus=1)
class RayWorker:
    def __init__(self, rank: int, config: A3CConfig, env_config: EnvConfig, seed: int):
        torch.set_num_threads(1)
        self.rank = rank
        self.learner = RolloutLearner(config, env_config, seed)
        self.node = ray.get_runtime_context().get_node_id()

    @ray.method(num_returns=2)
    def update(self, weights: dict[str, torch.Tensor]) -> tuple[list[torch.Tensor], dict[str, Any]]:
        """Sync, roll out, and return (gradients, report) for the parameter server and the driver."""
        self.learner.net.load_state_dict(weights)
        rollout = self.learner.rollout()
        stats = self.learner.compute_gradients(rollout)
        grads = [p.grad for p in self.learner.net.parameters()]
        report = {"steps": len(rollout.actions), "episodes": rollout.episodes, "stats": stats, "node": self.node}
        return grads, report


def run_ray(agent: A3CAgent, ctx: TrainContext, num_workers: int) -> WorkerStats:
    """Train until `ctx.should_stop()`; returns episodes and the Ray node of each worker rank."""
    started_ray = connect(agent.config.ray_address)
    server = ParameterServer.options(runtime_env=RUNTIME_ENV).remote(
        agent.config, agent.observation_space, agent.action_space, agent.state_dict()
    )
    workers = [
        RayWorker.options(runtime_env=RUNTIME_ENV, scheduling_strategy="SPREAD").remote(
            k, agent.config, ctx.env_config, ctx.env_seed(k)
        )
        for k in range(num_workers)
    ]
    stats = WorkerStats()
    try:
        _drive(agent, ctx, server, workers, stats)
    finally:
        try:
            _sync_agent(agent, server)
        finally:
            for actor in [*workers, server]:
                ray.kill(actor)
            if started_ray:
                ray.shutdown()
    return stats


def _drive(agent: A3CAgent, ctx: TrainContext, server: Any, workers: list, stats: WorkerStats) -> None:
    weights = server.weights.remote()
    pending: dict[Any, tuple[int, Any]] = {}
    for rank, worker in enumerate(workers):
        grads, report = worker.update.remote(weights)
        pending[report] = (rank, grads)
    updates = 0
    while not ctx.should_stop():
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
        if not ready:
            continue
        rank, grads = pending.pop(ready[0])
        try:
            report = ray.get(ready[0])
        except ray.exceptions.RayError as exc:
            raise worker_error(f"a3c ray worker {rank} failed", str(exc)) from None
        new_grads, new_report = workers[rank].update.remote(server.apply.remote(grads))
        pending[new_report] = (rank, new_grads)
        handle_update(ctx, report["steps"], report["episodes"], report["stats"])
        stats.episodes[rank] += len(report["episodes"])
        stats.nodes[rank] = report["node"]
        updates += 1
        if updates % SYNC_EVERY_UPDATES == 0:
            _sync_agent(agent, server)
            ctx.maybe_checkpoint()


def _sync_agent(agent: A3CAgent, server: Any) -> None:
    """Copy the server's network and optimizer into the agent, so `state_dict` and `act` see them."""
    state = ray.get(server.state.remote(), timeout=60)
    agent.global_net.load_state_dict(state["network"])
    agent.optimizer.load_state_dict(state["optimizer"])
    agent.optimizer.share_memory()
