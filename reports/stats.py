"""Aggregates across seeds as the `rliable` paper recommends (Agarwal et al. 2021, "Deep RL at the edge of
the statistical precipice"): the interquartile mean of the runs' scores, with a percentile bootstrap
confidence interval over runs (rliable's stratified bootstrap, which for one task resamples runs)."""

from __future__ import annotations

import numpy as np

MIN_RUNS = 3
"""Below this many runs an IQM and its interval say nothing the mean and the std do not."""


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean: the mean of the scores left after cutting `int(0.25 n)` from each end of the
    sorted scores (`scipy.stats.trim_mean(scores, 0.25)`, rliable's `aggregate_iqm`)."""
    ordered = np.sort(np.asarray(scores, dtype=np.float64).reshape(-1))
    cut = int(0.25 * len(ordered))
    return float(ordered[cut : len(ordered) - cut].mean())


def bootstrap_ci(scores: np.ndarray, reps: int = 2000, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the IQM: `reps` resamples of the runs with replacement."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    rng = np.random.default_rng(seed)
    samples = scores[rng.integers(0, len(scores), size=(reps, len(scores)))]
    ordered = np.sort(samples, axis=1)
    cut = int(0.25 * len(scores))
    estimates = ordered[:, cut : len(scores) - cut].mean(axis=1)
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(estimates, [tail, 100 - tail])
    return float(low), float(high)
