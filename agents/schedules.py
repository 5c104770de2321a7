"""Exploration and learning-rate schedules shared by the value-based agents."""

from __future__ import annotations


def linear_schedule(start: float, end: float, duration: int, step: int) -> float:
    """`start` at step 0, moving linearly to `end` at `duration`, then held (Mnih et al. 2015)."""
    if duration <= 0:
        return end
    fraction = min(1.0, step / duration)
    return start + fraction * (end - start)
