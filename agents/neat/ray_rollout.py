"""`BatchRollout`'s interface on a Ray cluster (`backend=ray`): the genomes are split into one share per
actor, each actor plays its share in its own `BatchRollout`. Shares and their seeds are `split_shares`'s,
as in `ParallelRollout`, so for a fixed seed both backends give the same fitnesses with the same number of
workers. Imported only with `backend=ray`.
"""

from __future__ import annotations

import numpy as np
import ray

from agents.neat.genome import Genome
from agents.neat.rollout import BatchRollout, split_shares
from agents.ray_cluster import RUNTIME_ENV, connect
from core.errors import ConfigError, worker_error
from envs import EnvConfig


@ray.remote(num_cpus=1)
class ShareActor:
    """Plays one share of the genomes; its `BatchRollout` is kept between generations and made anew
    when the share's size changes."""

    def __init__(self, env_config: EnvConfig, episodes: int, seed: int, recurrent: bool):
        self.env_config, self.episodes, self.seed, self.recurrent = env_config, episodes, seed, recurrent
        self.rollout: BatchRollout | None = None

    def node(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def evaluate(self, genomes: list[Genome], seed: int) -> tuple[np.ndarray, np.ndarray]:
        if self.rollout is None or self.rollout.n_genomes != len(genomes):
            if self.rollout is not None:
                self.rollout.close()
            self.rollout = BatchRollout(self.env_config, len(genomes), self.episodes, self.seed, self.recurrent)
        return self.rollout.evaluate(genomes, seed)


class RayRollout:
    """`BatchRollout`'s interface over `workers` Ray actors (0: one per CPU of the cluster), one CPU each,
    spread over the nodes. `nodes[k]` is the Ray node id of actor k."""

    def __init__(
        self,
        env_config: EnvConfig,
        n_genomes: int,
        episodes: int,
        seed: int,
        recurrent: bool,
        workers: int,
        address: str = "",
    ):
        self.n_genomes, self.episodes = n_genomes, episodes
        self.started_ray = connect(address)
        self.actors: list = []
        try:
            cpus = int(ray.cluster_resources().get("CPU", 0))
            self.workers = min(workers or cpus, n_genomes)
            if self.workers > cpus:
                # Each actor needs one CPU: more actors than CPUs would wait for resources forever.
                raise ConfigError(f"num_workers={self.workers} needs {self.workers} CPUs; the Ray cluster has {cpus}")
            self.actors = [
                ShareActor.options(runtime_env=RUNTIME_ENV, scheduling_strategy="SPREAD").remote(
                    env_config, episodes, seed, recurrent
                )
                for _ in range(self.workers)
            ]
            self.nodes: list[str] = self._gather([actor.node.remote() for actor in self.actors], "start")
        except BaseException:
            self.close()
            raise

    def evaluate(self, genomes: list[Genome], seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(returns, lengths) of every genome's episodes, each (len(genomes), episodes): float64, int64."""
        shares = split_shares(genomes, len(self.actors), seed)
        refs = [actor.evaluate.remote(*share) for actor, share in zip(self.actors, shares, strict=False)]
        results = self._gather(refs, "evaluate its share")
        return np.concatenate([r for r, _ in results]), np.concatenate([n for _, n in results])

    def _gather(self, refs: list, what: str) -> list:
        """`ray.get` each reference; an actor's death or exception becomes one `WorkerError` line."""
        results = []
        for k, ref in enumerate(refs):
            try:
                results.append(ray.get(ref))
            except ray.exceptions.RayError as exc:
                # A task error's last line already names the exception the actor raised.
                kind = "" if isinstance(exc, ray.exceptions.RayTaskError) else type(exc).__name__
                raise worker_error(f"neat ray actor {k} failed to {what}", str(exc), kind) from None
        return results

    def close(self) -> None:
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
        if self.started_ray:
            ray.shutdown()
            self.started_ray = False
