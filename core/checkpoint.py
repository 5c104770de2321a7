"""Checkpoints as plain data: one typed, versioned structure, written atomically, read back with
`torch.load(weights_only=True)`.

`Checkpoint` is the structure; `Checkpoint.write` is the one writer and `Checkpoint.read` the one reader
(`save_checkpoint` / `load_checkpoint` are their file-level halves: bytes <-> a validated dict).
On disk a checkpoint is a dict: `format`, `version`, `checksum`, `agent`, `agent_config`, `env_config`,
`run` (`RunState`'s fields), `agent_state` (tensors and plain containers) and `rng` (python, numpy, torch
generator states). `checksum` is a SHA-256 of everything else, computed over the values themselves (each
tensor's dtype, shape and bytes; containers in order), so a flipped byte anywhere in the data is refused
on load, whatever the zip layout around it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from core.errors import CheckpointError

FORMAT = "gym-agents-checkpoint"
VERSION = 2
"""2: with `checksum`. Version 1 files (no checksum) still load."""
READABLE_VERSIONS = (1, 2)
CHECKPOINT_DIR = "checkpoints"
LATEST = "latest.pt"
RECENT_EPISODES = 100
"""Episodes a run's "mean return of the last 100" covers (`RunState.recent_returns` keeps that many)."""


@dataclass
class RunState:
    """Where a run stands: what `learn` continues from."""

    seed: int
    """The run's seed (env seeds and worker seeds derive from it)."""
    total_steps: int = 0
    """Env steps the run was last asked to reach (schedules anneal towards it)."""
    global_step: int = 0
    """Env steps done so far, all workers together."""
    episodes: int = 0
    """Episodes finished so far."""
    wall_time: float = 0.0
    """Seconds spent learning so far, over every sitting."""
    best_return: float | None = None
    """Best mean return of the evaluations during training (`agents.Evaluate`), None before the first."""
    recent_returns: list[float] = field(default_factory=list)
    """Real returns of the run's last `RECENT_EPISODES` episodes, oldest first, over every sitting, so a
    resumed run's "mean of the last 100" and `StopAtReturn` go on from where it stopped. (Checkpoints
    written before this field existed load with it empty: their window starts again at the resume.)"""
    evaluation: dict[str, int | float] = field(default_factory=dict)
    """The run's `agents.Evaluate` schedule (`every`, `episodes`, `video_every`, and `stop_at` where it stops
    at an evaluation mean), so that `train.py --resume` goes on evaluating, and stops, as the run did;
    empty for a run that never evaluated."""
    stop_at_return: float | None = None
    """The run's `StopAtReturn` goal over its last `RECENT_EPISODES` episodes (`--stop-at-return`), so that
    `train.py --resume` keeps it; None for none."""

    def copy(self) -> RunState:
        return dataclasses.replace(self, recent_returns=list(self.recent_returns), evaluation=dict(self.evaluation))


@dataclass
class Checkpoint:
    agent: str
    """Registered agent name (`dqn`, ...)."""
    agent_config: dict[str, Any]
    """The agent's config dataclass as plain data."""
    env_config: dict[str, Any]
    """`envs.EnvConfig` as plain data: enough to rebuild the env and its preprocessing."""
    run: RunState
    agent_state: dict[str, Any]
    """The agent's `state_dict()`: tensors and plain containers."""
    rng: dict[str, Any] = field(default_factory=dict)
    """Global generator states (`core.seeding.rng_state`)."""

    def write(self, path: str | Path) -> Path:
        data = dataclasses.asdict(self)
        return save_checkpoint(data, path)

    @classmethod
    def read(cls, target: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
        """A run directory (its latest checkpoint) or a checkpoint file; anything unreadable, foreign or
        incomplete raises `CheckpointError` in one line."""
        data = load_checkpoint(target, map_location)
        return cls.from_data(data, checkpoint_path(target))

    @classmethod
    def from_data(cls, data: dict[str, Any], where: str | Path = "checkpoint") -> Checkpoint:
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in data and f.name != "rng"]
        if missing:
            raise CheckpointError(f"{where} does not hold a usable agent (missing {', '.join(missing)})")
        run = data["run"]
        if not isinstance(run, dict) or "seed" not in run:
            raise CheckpointError(f"{where} does not hold a usable agent (its run record has no seed)")
        known = {f.name for f in dataclasses.fields(RunState)}
        try:
            run_state = RunState(**{k: v for k, v in run.items() if k in known})
        except TypeError as exc:
            raise CheckpointError(f"{where} does not hold a usable agent ({exc})") from exc
        recent = run_state.recent_returns
        if not isinstance(recent, (list, tuple)) or not all(_is_number(r) for r in recent):
            raise CheckpointError(f"{where} does not hold a usable agent (its recent returns are not numbers)")
        run_state.recent_returns = [float(r) for r in recent][-RECENT_EPISODES:]
        if not _valid_schedule(run_state.evaluation):
            raise CheckpointError(f"{where} does not hold a usable agent (its evaluation schedule is not valid)")
        if run_state.stop_at_return is not None and not _finite_number(run_state.stop_at_return):
            raise CheckpointError(f"{where} does not hold a usable agent (its return goal is not a number)")
        for name in ("agent_config", "env_config", "agent_state"):
            if not isinstance(data[name], dict):
                raise CheckpointError(f"{where} does not hold a usable agent ({name} is not a mapping)")
        return cls(
            agent=str(data["agent"]),
            agent_config=data["agent_config"],
            env_config=data["env_config"],
            run=run_state,
            agent_state=data["agent_state"],
            rng=data.get("rng") or {},
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite_number(value: Any) -> bool:
    return _is_number(value) and math.isfinite(value)


def _valid_schedule(evaluation: Any) -> bool:
    """`RunState.evaluation`: counts that are whole and not negative, and a finite `stop_at`."""
    if not isinstance(evaluation, dict):
        return False
    counts = all(
        _is_number(v) and isinstance(v, int) and v >= 0
        for k, v in evaluation.items()
        if k in ("every", "episodes", "video_every")
    )
    known = set(evaluation) <= {"every", "episodes", "video_every", "stop_at"}
    return counts and known and ("stop_at" not in evaluation or _finite_number(evaluation["stop_at"]))


TEMP_PREFIX = "."
TEMP_MARK = ".tmp"


def save_checkpoint(data: dict[str, Any], path: str | Path) -> Path:
    """Write to a temp file beside `path`, fsync, then rename: a crash never leaves a half file, and a
    failed write (a full disk) removes its temp file and leaves the previous checkpoint as it was."""
    path = Path(path)
    tmp = path.with_name(f"{TEMP_PREFIX}{path.name}{TEMP_MARK}{os.getpid()}")
    payload = {"format": FORMAT, "version": VERSION, **data}
    payload["checksum"] = payload_digest(payload)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise CheckpointError(f"cannot write the checkpoint {path}: {exc.strerror or exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return path


def remove_stale_temp_files(directory: str | Path) -> list[Path]:
    """Temp files a crashed writer left in `directory` (call it only while holding the run's lock)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stale = [p for p in directory.iterdir() if p.name.startswith(TEMP_PREFIX) and TEMP_MARK in p.name]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def payload_digest(data: dict[str, Any]) -> str:
    """SHA-256 of every entry but `checksum`, over the values (see the module docstring)."""
    digest = hashlib.sha256()
    _feed(digest, {k: v for k, v in data.items() if k != "checksum"})
    return digest.hexdigest()


def _feed(digest: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        flat = value.detach().cpu().contiguous().reshape(-1)
        digest.update(f"T{flat.dtype}{tuple(value.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    elif isinstance(value, dict):
        digest.update(f"D{len(value)}".encode())
        for key in sorted(value, key=lambda k: (type(k).__name__, repr(k))):
            _feed(digest, key)
            _feed(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"{'L' if isinstance(value, list) else 'U'}{len(value)}".encode())
        for item in value:
            _feed(digest, item)
    elif isinstance(value, (bytes, bytearray)):
        digest.update(b"B%d" % len(value) + bytes(value))
    else:  # str, int, float, bool, None, torch.Size and the like: their type and repr
        text = f"{type(value).__name__}:{value!r}".encode()
        digest.update(b"V%d" % len(text) + text)


def checkpoint_path(target: str | Path) -> Path:
    """A run directory -> its latest checkpoint; a file path is returned as it is. Anything but a regular
    file (a FIFO, a device) is refused: reading one could block forever."""
    target = Path(target)
    if target.is_dir():
        candidate = target / CHECKPOINT_DIR / LATEST
        if not candidate.exists():
            raise CheckpointError(f"no checkpoint in {target} (expected {candidate})")
        target = candidate
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        raise CheckpointError(f"no such run directory or checkpoint: {target}") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read {target}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(mode):
        raise CheckpointError(f"{target} is not a regular file, so not a checkpoint")
    return target


def load_checkpoint(target: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate; any unreadable, truncated or foreign file raises `CheckpointError`."""
    path = checkpoint_path(target)
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # a damaged file can fail anywhere in the unzip and unpickle
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} is not a readable checkpoint ({first[:160]})") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a checkpoint of this suite")
    if data.get("version") not in READABLE_VERSIONS:
        raise CheckpointError(f"{path} has checkpoint version {data.get('version')}, expected {VERSION}")
    if data["version"] >= 2:
        try:
            intact = data.get("checksum") == payload_digest(data)
        except Exception:  # a damaged value that cannot even be hashed
            intact = False
        if not intact:
            raise CheckpointError(f"{path} is damaged: its checksum does not match its contents")
    return data
