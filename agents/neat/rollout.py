"""Playing a whole population at once: one batch of episodes (genomes x episodes) stepped together
(`envs.EpisodeBatch`), the networks of every genome activated together each step; or the population
split into shares over worker processes (`ParallelRollout`) where the env has no numpy batch.
"""

from __future__ import annotations

import os
import signal
from concurrent.futures.process import BrokenProcessPool

import gymnasium as gym
import numpy as np

from agents.neat.genome import Genome
from agents.neat.network import PopulationNetwork
from core.errors import IncompatibleEnvError, WorkerError
from core.resources import children_ignore_ctrl_c, die_with_parent
from envs import EnvConfig, EpisodeBatch


class ActionMap:
    """Network outputs in (0, 1) -> actions. Discrete(n): argmax over n outputs; Box: each output
    scaled to [low, high] (to [-1, 1] where a bound is infinite)."""

    def __init__(self, action_space: gym.Space):
        self.space = action_space
        if isinstance(action_space, gym.spaces.Discrete):
            self.n_outputs = int(action_space.n)
        elif isinstance(action_space, gym.spaces.Box):
            self.n_outputs = int(np.prod(action_space.shape))
            finite = np.isfinite(action_space.low) & np.isfinite(action_space.high)
            self.low = np.where(finite, action_space.low, -1.0).reshape(-1)
            self.high = np.where(finite, action_space.high, 1.0).reshape(-1)
        else:
            raise IncompatibleEnvError(f"neat needs a Discrete or Box action space, not {action_space}")

    def __call__(self, outputs: np.ndarray) -> np.ndarray:
        """outputs (batch, n_outputs) -> actions (batch,) int64 or (batch, *shape) of the Box dtype."""
        if isinstance(self.space, gym.spaces.Discrete):
            return outputs.argmax(axis=1).astype(np.int64) + int(self.space.start)
        actions = self.low + outputs * (self.high - self.low)
        return actions.reshape(len(outputs), *self.space.shape).astype(self.space.dtype)


class BatchRollout:
    """Plays `n_genomes * episodes` episodes at once in an `envs.EpisodeBatch`. Slot `g * episodes + k`
    is genome g's episode k."""

    def __init__(self, env_config: EnvConfig, n_genomes: int, episodes: int, seed: int, recurrent: bool = False):
        self.n_genomes, self.episodes, self.recurrent = n_genomes, episodes, recurrent
        self.batch = EpisodeBatch(env_config, n_genomes * episodes, seed)
        self.actions = ActionMap(self.batch.action_space)
        self.n_inputs = int(np.prod(self.batch.observation_space.shape))

    def close(self) -> None:
        self.batch.close()

    def evaluate(self, genomes: list[Genome], seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(returns, lengths) of every genome's episodes, each (len(genomes), episodes)."""
        network = PopulationNetwork(genomes, self.n_inputs, self.actions.n_outputs, self.episodes, self.recurrent)
        return self.play(network, seed)

    def play(self, network: PopulationNetwork, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(returns, lengths), each (n_genomes, episodes): float64 and int64. Slot i is reset with seed + i."""
        observation = self.batch.reset(seed)
        returns, lengths = np.zeros(self.batch.n), np.zeros(self.batch.n, dtype=np.int64)
        while self.batch.active.any():
            # Finished slots keep their last observation; their outputs are computed and ignored.
            lengths += self.batch.active
            observation, rewards = self.batch.step(self.actions(network.activate(observation)))
            returns += rewards
        shape = (self.n_genomes, self.episodes)
        return returns.reshape(shape), lengths.reshape(shape)


SHARE_SEED_STRIDE = 7919
"""Share k is reset with seed + SHARE_SEED_STRIDE * k: a prime above any share's slot count, so the slots
of different shares get different env seeds, whichever worker plays them."""


def split_shares(genomes: list[Genome], workers: int, seed: int) -> list[tuple[list[Genome], int]]:
    """The genomes in `workers` contiguous shares (empty ones left out), each with its reset seed."""
    shares = np.array_split(np.arange(len(genomes)), workers)
    return [([genomes[i] for i in share], seed + SHARE_SEED_STRIDE * k) for k, share in enumerate(shares) if share.size]


# Worker processes for envs without a vectorized version: each plays a share of the genomes in its
# own BatchRollout (kept between generations, one per share size).
_worker_rollouts: dict[int, BatchRollout] = {}
_worker_setup: dict = {}


def _init_worker(env_config: EnvConfig, episodes: int, seed: int, recurrent: bool, parent: int) -> None:
    die_with_parent(parent)  # even a `kill -9`'d trainer takes its evaluators
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the trainer owns Ctrl-C and stops between generations
    _worker_setup.update(env_config=env_config, episodes=episodes, seed=seed, recurrent=recurrent)


def _evaluate_share(genomes: list[Genome], seed: int) -> tuple[np.ndarray, np.ndarray]:
    n = len(genomes)
    if n not in _worker_rollouts:
        s = _worker_setup
        _worker_rollouts[n] = BatchRollout(s["env_config"], n, s["episodes"], s["seed"], s["recurrent"])
    return _worker_rollouts[n].evaluate(genomes, seed)


class ParallelRollout:
    """`BatchRollout`'s interface over `workers` processes; share i is reset with `seed + i`, so the
    results do not depend on which process plays which share."""

    def __init__(self, env_config: EnvConfig, n_genomes: int, episodes: int, seed: int, recurrent: bool, workers: int):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.n_genomes, self.episodes, self.workers = n_genomes, episodes, workers
        self.pool = ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(env_config, episodes, seed, recurrent, os.getpid()),
        )

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)

    def evaluate(self, genomes: list[Genome], seed: int) -> tuple[np.ndarray, np.ndarray]:
        try:
            with children_ignore_ctrl_c():  # the pool starts its processes on the first submits
                shares = split_shares(genomes, self.workers, seed)
                futures = [self.pool.submit(_evaluate_share, *share) for share in shares]
            results = [f.result() for f in futures]
        except BrokenProcessPool:
            # The pool notices a dead process at once (it waits on each one's sentinel).
            codes = [p.exitcode for p in getattr(self.pool, "_processes", {}).values() if p.exitcode is not None]
            how = f"exit code {codes[0]}" if codes else "an unknown exit code"
            raise WorkerError(f"a neat evaluator process died ({how}); the run stopped") from None
        return np.concatenate([r for r, _ in results]), np.concatenate([n for _, n in results])
