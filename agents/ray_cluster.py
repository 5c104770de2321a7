"""Joining a Ray cluster, shared by the agents with a `backend=ray` option (A3C, NEAT). Imported only
on that path: Ray is an optional extra, and nothing else in the suite imports it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import ray

# Actors import this repository's packages; a local cluster shares the filesystem, so PYTHONPATH suffices.
REPO_ROOT = str(Path(__file__).resolve().parents[1])
RUNTIME_ENV: dict[str, Any] = {"env_vars": {"PYTHONPATH": REPO_ROOT}}
"""Runtime environment for the job and its actors."""


def connect(address: str = "") -> bool:
    """Join `address`, else $RAY_ADDRESS, else start a local Ray; an already connected driver stays as it
    is. True when this call started (or joined) Ray, so that the caller shuts it down when done."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is None:
        _reap_local_ray_with_this_process()
    ray.init(address=address, runtime_env=RUNTIME_ENV, log_to_driver=False)
    return True


_reaper: list = []


def _reap_local_ray_with_this_process() -> None:
    """A local Ray's raylet dies with its driver, but some of its helpers outlive a `kill -9`'d driver:
    a watchdog (`core.reaper`) kills them then. One per process."""
    if not _reaper:
        from core.reaper import start_reaper  # noqa: PLC0415

        _reaper.append(start_reaper())
