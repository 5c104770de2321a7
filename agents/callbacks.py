"""Callbacks: small objects the training session calls (every `step_interval` env steps, after every
episode, after every checkpoint, at the start and the end), able to stop the run.

    agent.learn(100_000, callbacks=[StopAtReturn(475), StopAfter(minutes=10), CheckpointEvery(10_000)])

A hook stops the run by calling `ctx.request_stop(reason)`; `ctx` is the run's session, a `TrainContext`
(`ctx.global_step`, `ctx.episodes`, `ctx.episode_returns`, ...) that also holds `ctx.agent` and
`ctx.checkpoint_as(name)`. Subclass `Callback` and override what you need.
"""

from __future__ import annotations

import math
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

from agents.context import TrainContext
from core.checkpoint import RECENT_EPISODES
from core.errors import ConfigError

if TYPE_CHECKING:
    from agents.session import Session


class Callback:
    step_interval: int = 0
    """Env steps between `on_step` calls (0: never). Agents report steps in chunks (a rollout, a
    generation), so a call comes at the first report at or past each multiple."""

    def on_start(self, ctx: TrainContext) -> None:
        """Before the first step of a `learn` call."""

    def on_step(self, ctx: TrainContext) -> None:
        """Every `step_interval` env steps."""

    def on_episode(self, ctx: TrainContext, episodic_return: float, length: int) -> None:
        """After every finished episode, with its real return."""

    def on_checkpoint(self, ctx: TrainContext, path: Path) -> None:
        """After a checkpoint was written to `path`."""

    def on_end(self, ctx: TrainContext) -> None:
        """After the last step, before the final checkpoint."""


class StopAfter(Callback):
    """Stop once `seconds` (plus `minutes`, `hours`) of wall time have passed since the run started."""

    step_interval = 1

    def __init__(self, seconds: float = 0.0, *, minutes: float = 0.0, hours: float = 0.0):
        self.limit = seconds + 60.0 * minutes + 3600.0 * hours
        if not math.isfinite(self.limit) or self.limit <= 0:
            raise ConfigError(f"StopAfter needs a positive, finite time, not {self.limit} s")
        self.deadline = math.inf

    def on_start(self, ctx: TrainContext) -> None:
        self.deadline = time.monotonic() + self.limit

    def on_step(self, ctx: TrainContext) -> None:
        if time.monotonic() >= self.deadline:
            ctx.request_stop(f"time limit of {self.limit:g} s reached")

    def on_episode(self, ctx: TrainContext, episodic_return: float, length: int) -> None:
        self.on_step(ctx)


class StopAtReturn(Callback):
    """Stop once the mean return of the run's last `window` episodes reaches `threshold` (no earlier than
    `window` episodes). A resumed run's episodes before the resume count, as far as the run keeps them
    (its last 100). Over the run's own window (100) the goal is kept in its checkpoints
    (`RunState.stop_at_return`), so that `train.py --resume` keeps it."""

    def __init__(self, threshold: float, window: int = 100):
        if not math.isfinite(threshold):
            raise ConfigError(f"StopAtReturn needs a finite threshold, not {threshold}")
        if window < 1:
            raise ConfigError(f"StopAtReturn needs a window of at least 1 episode, not {window}")
        self.threshold, self.window = float(threshold), int(window)
        self.returns: deque[float] = deque(maxlen=self.window)

    def on_start(self, ctx: Session) -> None:
        self.returns.clear()
        self.returns.extend(ctx.recent_returns)
        if self.window == RECENT_EPISODES:
            ctx.agent.run.stop_at_return = self.threshold

    @property
    def mean(self) -> float:
        return sum(self.returns) / len(self.returns) if self.returns else math.nan

    def on_episode(self, ctx: TrainContext, episodic_return: float, length: int) -> None:
        self.returns.append(float(episodic_return))
        if len(self.returns) == self.window and self.mean >= self.threshold:
            ctx.request_stop(
                f"mean return of the last {self.window} episodes {self.mean:.3f} reached {self.threshold:g}"
            )


class CheckpointEvery(Callback):
    """Write a checkpoint every `steps` env steps (at the agent's next consistent point). Only runs with a
    run directory write checkpoints."""

    def __init__(self, steps: int):
        if steps < 1:
            raise ConfigError(f"CheckpointEvery needs a positive number of steps, not {steps}")
        self.step_interval = int(steps)

    def on_step(self, ctx: TrainContext) -> None:
        ctx.request_checkpoint()
