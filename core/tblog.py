"""TensorBoard logging and the progress bar: the same tags, against environment steps, for every agent.

Tags: `charts/episodic_return`, `charts/episodic_length`, `charts/SPS`, `losses/<name>`, and any
agent scalar such as `charts/epsilon` or `neat/best_fitness`. Scalars an agent reports between two
flushes are averaged, so a per-step loss costs a float addition, not an event-file write.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm


class RunLogger:
    """Owns the `SummaryWriter` and the progress bar of one run."""

    def __init__(
        self,
        run_dir: Path | None,
        total_steps: int,
        start_step: int = 0,
        hyperparameters: dict[str, Any] | None = None,
        flush_every_steps: int = 1000,
        progress: bool = True,
        status: Callable[[], tuple[int, float]] | None = None,
    ):
        """`status()` gives (episodes so far, mean return of the recent ones) for the progress bar."""
        # Without a run directory only the progress bar is shown.
        self.writer = _NoWriter() if run_dir is None else _writer(run_dir, start_step)
        if hyperparameters:
            flat = _flatten(hyperparameters)
            table = "\n".join(f"|{k}|{v}|" for k, v in flat.items())
            self.writer.add_text("hyperparameters", f"|param|value|\n|-|-|\n{table}", start_step)
            self._hparams_started = self.writer.start_hparams(flat)
        else:
            self._hparams_started = False
        self.flush_every_steps = flush_every_steps
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        self._last_flush_step = start_step
        self._last_flush_time = time.perf_counter()
        self._bar = tqdm(
            total=total_steps,
            initial=start_step,
            unit="step",
            dynamic_ncols=True,
            disable=not progress,
            file=sys.stderr,
            mininterval=0.5,
        )
        self._bar_step = start_step
        self._status = status or (lambda: (0, float("nan")))
        self._sps = 0.0

    def episode(self, step: int, episodic_return: float, length: int) -> None:
        self.writer.add_scalar("charts/episodic_return", episodic_return, step)
        self.writer.add_scalar("charts/episodic_length", length, step)

    def scalars(self, metrics: dict[str, float]) -> None:
        for tag, value in metrics.items():
            self._sums[tag] = self._sums.get(tag, 0.0) + float(value)
            self._counts[tag] = self._counts.get(tag, 0) + 1

    def scalars_now(self, step: int, metrics: dict[str, float]) -> None:
        """Write at once, for per-generation or per-update values that need no averaging."""
        for tag, value in metrics.items():
            self.writer.add_scalar(tag, float(value), step)

    def maybe_flush(self, step: int, force: bool = False) -> None:
        now = time.perf_counter()
        elapsed = now - self._last_flush_time
        # Slow envs (Atari, VizDoom) still refresh the bar every few seconds.
        if not force and step - self._last_flush_step < self.flush_every_steps and elapsed < 5.0:
            return
        if step > self._last_flush_step and elapsed > 0:
            self._sps = (step - self._last_flush_step) / elapsed
            self.writer.add_scalar("charts/SPS", self._sps, step)
        for tag, total in self._sums.items():
            self.writer.add_scalar(tag, total / self._counts[tag], step)
        self._sums.clear()
        self._counts.clear()
        self._last_flush_step = step
        self._last_flush_time = now
        self._update_bar(step)

    def _update_bar(self, step: int) -> None:
        episodes, mean = self._status()
        self._bar.set_postfix(episodes=episodes, mean_return=f"{mean:.2f}", sps=f"{self._sps:.0f}", refresh=False)
        self._bar.update(step - self._bar_step)
        self._bar_step = step

    def close(self, step: int, final_metrics: dict[str, float | None] | None = None) -> None:
        """Flush and close; `final_metrics` (`HPARAM_METRICS` tags) go to TensorBoard's HPARAMS tab."""
        self.maybe_flush(step, force=True)
        self._bar.close()
        if self._hparams_started:
            for tag, value in (final_metrics or {}).items():
                if value is not None and math.isfinite(value):
                    self.writer.add_scalar(tag, float(value), step)
            self.writer.end_hparams()
        self.writer.flush()
        self.writer.close()


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


HPARAM_METRICS = {
    "hparams/mean_return_last100": "mean return of the last 100 training episodes",
    "hparams/best_eval_return": "best mean return of the evaluations during training (--eval-every)",
}
"""The metrics TensorBoard's HPARAMS tab shows beside each run's hyperparameters."""


def _writer(run_dir: Path, start_step: int) -> Any:
    from torch.utils.tensorboard import SummaryWriter

    class Writer(SummaryWriter):
        """A `SummaryWriter` that also writes the hparams plugin's session records into the run's own event
        file (torch's `add_hparams` makes a separate run for them, which TensorBoard then lists apart)."""

        def start_hparams(self, flat: dict[str, Any]) -> bool:
            from torch.utils.tensorboard.summary import hparams

            values = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in flat.items()}
            values = {k: v for k, v in values.items() if not (isinstance(v, float) and not math.isfinite(v))}
            experiment, start, self._hparams_end = hparams(values, dict.fromkeys(HPARAM_METRICS, 0.0))
            self.file_writer.add_summary(experiment)
            self.file_writer.add_summary(start)
            return True

        def end_hparams(self) -> None:
            self.file_writer.add_summary(self._hparams_end)

    # purge_step drops events a crashed run wrote after its last checkpoint, so a resumed curve has no
    # duplicated stretch. Events at the checkpoint's own step came before it (the episode that ended
    # there, the flush of its step) and were counted by it: the purge starts one step later.
    return Writer(str(run_dir), purge_step=start_step + 1 if start_step > 0 else None)


class _NoWriter:
    """`SummaryWriter`'s methods that the log calls, doing nothing."""

    def add_scalar(self, *args: Any, **kwargs: Any) -> None:
        pass

    add_text = add_scalar
    flush = add_scalar
    close = add_scalar
    end_hparams = add_scalar

    def start_hparams(self, flat: dict[str, Any]) -> bool:
        return False
