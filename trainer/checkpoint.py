"""Checkpoints as plain data: written atomically, read back with `torch.load(weights_only=True)`.

Layout of a checkpoint dict: `format`, `version`, `agent`, `agent_config`, `env_config`, `run`
(seed, step counters, options), `agent_state` (tensors and plain containers), `rng` (python, numpy,
torch generator states).
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from trainer.errors import CheckpointError

FORMAT = "gym-agents-checkpoint"
VERSION = 1
CHECKPOINT_DIR = "checkpoints"
LATEST = "latest.pt"


def save_checkpoint(data: dict[str, Any], path: str | Path) -> Path:
    """Write to a temp file beside `path`, fsync, then rename: a crash never leaves a half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    payload = {"format": FORMAT, "version": VERSION, **data}
    with open(tmp, "wb") as fh:
        torch.save(payload, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def checkpoint_path(target: str | Path) -> Path:
    """A run directory -> its latest checkpoint; a file path is returned as it is."""
    target = Path(target)
    if target.is_dir():
        candidate = target / CHECKPOINT_DIR / LATEST
        if not candidate.exists():
            raise CheckpointError(f"no checkpoint in {target} (expected {candidate})")
        return candidate
    if not target.exists():
        raise CheckpointError(f"no such run directory or checkpoint: {target}")
    return target


def load_checkpoint(target: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate; any unreadable, truncated or foreign file raises `CheckpointError`."""
    path = checkpoint_path(target)
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} is not a readable checkpoint ({first[:160]})") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a checkpoint of this suite")
    if data.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {data.get('version')}, expected {VERSION}")
    return data
