"""Hogwild A3C on one machine: spawn worker processes, relay their reports to the trainer, stop cleanly.

Workers report through one `multiprocessing.Queue`; the main process is the only one that talks to
the `TrainContext` (steps, episodes, losses, checkpoints, stop decisions). Stopping sets a shared
Event; workers that do not finish in time are terminated, so no process outlives `learn`.
"""

from __future__ import annotations

import queue as queue_lib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch.multiprocessing as mp

from agents.a3c.worker import worker_main
from agents.context import TrainContext
from core.errors import WorkerError, worker_error
from core.resources import children_ignore_ctrl_c

if TYPE_CHECKING:
    from agents.a3c.agent import A3CAgent

POLL_SECONDS = 0.2
JOIN_SECONDS = 10.0
DEAD_WORKER_GRACE = 1.0
"""Seconds the others get to finish after a worker died: one killed while writing to the report queue
takes the queue's lock with it, and the others would hang on it until JOIN_SECONDS."""


@dataclass
class WorkerStats:
    """What a backend reports of its workers after a `learn`: episodes and Ray node per worker rank."""

    episodes: Counter[int] = field(default_factory=Counter)
    nodes: dict[int, str] = field(default_factory=dict)


def handle_update(ctx: TrainContext, steps: int, episodes: list[tuple[float, int]], stats: dict[str, float]) -> None:
    ctx.add_steps(steps)
    for episodic_return, length in episodes:
        ctx.record_episode(episodic_return, length)
    ctx.log(stats)


def run_local(
    agent: A3CAgent, ctx: TrainContext, num_workers: int, target: Callable[..., None] | None = None
) -> WorkerStats:
    """Run `num_workers` processes of `target` (default `worker_main`) until `ctx.should_stop()`.

    Returns how many episodes each worker rank finished.
    """
    target = target or worker_main  # looked up at call time so tests can substitute a failing worker
    stats = WorkerStats()
    episodes = stats.episodes
    spawn = mp.get_context("spawn")
    reports = spawn.Queue()
    stop = spawn.Event()
    step_budget = spawn.Value("q", max(0, ctx.total_steps - ctx.global_step))
    procs = [
        spawn.Process(
            target=target,
            args=(
                k,
                agent.config,
                ctx.env_config,
                ctx.env_seed(k),
                agent.global_net,
                agent.optimizer,
                reports,
                stop,
                step_budget,
            ),
            name=f"a3c-worker-{k}",
            daemon=True,
        )
        for k in range(num_workers)
    ]
    grace = JOIN_SECONDS
    try:
        with children_ignore_ctrl_c():
            for proc in procs:
                proc.start()
        _relay(ctx, reports, procs, episodes)
    except WorkerError:
        grace = DEAD_WORKER_GRACE
        raise
    finally:
        stop.set()
        _shutdown(ctx, reports, procs, episodes, grace)
    return stats


def _relay(ctx: TrainContext, reports: Any, procs: list, episodes: Counter[int]) -> None:
    done: set[int] = set()
    exited: set[int] = set()
    checked = time.monotonic()
    while not ctx.should_stop() and len(done) < len(procs):
        # Every poll interval, however busy the queue is with the other workers' reports.
        if time.monotonic() - checked >= POLL_SECONDS:
            _check_alive(procs, done, exited)
            checked = time.monotonic()
        try:
            message = reports.get(timeout=POLL_SECONDS)
        except queue_lib.Empty:
            _check_exited(exited, done)
            continue
        kind, rank = message[0], message[1]
        if kind == "error":
            raise worker_error(f"a3c worker {rank} failed", message[2])
        if kind == "done":
            done.add(rank)
            continue
        handle_update(ctx, *message[2:])
        episodes[rank] += len(message[3])
        ctx.maybe_checkpoint()


def _check_alive(procs: list, done: set[int], exited: set[int]) -> None:
    """A worker that is gone with an error died. One that exited cleanly wrote its "done" into the queue's
    pipe before it went (a process joins its queue's feeder thread on exit), but other reports may still
    be ahead of it: it is noted in `exited`, and `_check_exited` judges it once the queue runs dry."""
    for rank, proc in enumerate(procs):
        if rank in done or proc.exitcode is None:
            continue
        if proc.exitcode != 0:
            raise WorkerError(f"a3c worker {rank} died with exit code {proc.exitcode}")
        exited.add(rank)


def _check_exited(exited: set[int], done: set[int]) -> None:
    """The queue is empty: a worker that exited without its "done" in it stopped before its work was over."""
    for rank in sorted(exited - done):
        raise WorkerError(f"a3c worker {rank} exited before it finished (exit code 0)")


def _shutdown(ctx: TrainContext, reports: Any, procs: list, episodes: Counter[int], grace: float) -> None:
    """Drain the queue while workers finish their last rollout (a full queue would block their exit),
    count the steps they still report, then terminate whatever is left after `grace` seconds."""
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            message = reports.get(timeout=POLL_SECONDS)
        except queue_lib.Empty:
            if not any(p.is_alive() for p in procs):
                break
            continue
        if message[0] == "update":
            handle_update(ctx, *message[2:])
            episodes[message[1]] += len(message[3])
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
        proc.join(timeout=2.0)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=2.0)
    reports.close()
    reports.cancel_join_thread()
