"""Learning curves read back from run directories: find runs, group them, smooth, align seeds, summarize.

`compare.py` and `bench/make_results.py` sit on top of this module; `reports.plot` draws what it computes.
Curves come from the `charts/episodic_return` scalars every agent logs through the trainer, read with
TensorBoard's own `EventAccumulator`, so a run that is still training is read up to its last flush.

Conventions (also in `compare.py --help`):
- Runs are grouped by (agent, env), or by `--label NAME=GLOB`; a labelled group must hold a single env.
- Smoothing is a trailing moving average over the last W episodes of each run (W=1: raw returns).
- The mean curve of a group is taken on a common grid over the stretch every seed covers; the band is ± 1
  standard deviation across seeds (population std, as `evaluate.py` reports).
- "Final return" of a run is the mean of its last N episodes; the table shows mean ± std across runs.
- "Steps / time to threshold" of a run is the first episode whose smoothed return reaches the threshold;
  the table shows the mean over the runs that reached it, and how many did when not all of them did.
- Wall time counts from a run's first event (its writer opening); for a resumed run it includes the pause.
  A resume's purge_step marker makes the reader drop the events the crashed run wrote past its checkpoint.
"""

from __future__ import annotations

import glob
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.errors import SuiteError
from reports.stats import MIN_RUNS, bootstrap_ci, iqm

RETURN_TAG = "charts/episodic_return"
GLOB_CHARS = frozenset("*?[")


class CompareError(SuiteError):
    """Runs that cannot be compared: missing, not a run, no episodes yet, several envs under one label."""


@dataclass
class RunCurve:
    """One run's episodes, in the order they ended; every array has shape (episodes,)."""

    path: Path
    agent: str
    env: str
    seed: int | None
    steps: np.ndarray
    """int64 environment step at which each episode ended."""
    wall: np.ndarray
    """float64 seconds from the run's first event to each episode's end."""
    returns: np.ndarray
    """float64 real episodic return."""

    @property
    def episodes(self) -> int:
        return len(self.returns)


@dataclass
class Group:
    """Runs averaged into one curve: same env, same agent (or same user label)."""

    label: str
    env: str
    runs: list[RunCurve]


@dataclass
class Selection:
    groups: list[Group]
    skipped: list[str] = field(default_factory=list)
    """One line per argument that was passed over (a plain file, a run with no episodes yet)."""


# Finding runs ---------------------------------------------------------------------------------------
def is_run_dir(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def _runs_inside(path: Path) -> list[Path]:
    return sorted(child for child in path.iterdir() if is_run_dir(child))


def expand(pattern: str, skipped: list[str]) -> list[Path]:
    """Run directories named by a path, a directory of runs (one level, like `tensorboard --logdir`)
    or a glob pattern. Plain files are skipped with a note (a shell's `runs/*` also matches
    `runs/README.md`); anything else that is not a run is an error."""
    is_glob = any(c in GLOB_CHARS for c in pattern)
    paths = [Path(p) for p in sorted(glob.glob(pattern))] if is_glob else [Path(pattern)]
    if is_glob and not paths:
        raise CompareError(f"no path matches '{pattern}'")
    found: list[Path] = []
    for path in paths:
        if not path.exists():
            raise CompareError(f"{path}: no such run directory")
        if not path.is_dir():
            skipped.append(f"skipping {path}: a file, not a run directory")
        elif is_run_dir(path):
            found.append(path)
        elif inside := _runs_inside(path):
            found.extend(inside)
        elif is_glob:
            skipped.append(f"skipping {path}: not a run directory (no config.json)")
        else:
            raise CompareError(f"{path} is not a run directory (no config.json) and holds no runs")
    if is_glob and not found:
        raise CompareError(f"'{pattern}' matches no run directory (none holds a config.json)")
    return found


def parse_label(text: str) -> tuple[str, str]:
    """`NAME=GLOB` -> (name, glob)."""
    name, sep, pattern = text.partition("=")
    if not sep or not name.strip() or not pattern.strip():
        raise CompareError(f"--label wants NAME=GLOB, not '{text}'")
    return name.strip(), pattern.strip()


# Reading runs ---------------------------------------------------------------------------------------
def _read_config(path: Path) -> dict:
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CompareError(f"{path}/config.json is unreadable ({exc})") from exc
    missing = [key for key in ("agent", "env") if not isinstance(config, dict) or key not in config]
    if missing:
        raise CompareError(f"{path}/config.json lacks {' and '.join(repr(k) for k in missing)}; is it a run directory?")
    return config


def load_run(path: str | Path) -> RunCurve:
    """Read a run directory as it is now (all its event files; a run still training up to its last flush)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    path = Path(path)
    if not path.is_dir():
        raise CompareError(f"{path}: no such run directory")
    config = _read_config(path)
    accumulator = EventAccumulator(str(path), size_guidance={"scalars": 0})  # 0: keep every point
    accumulator.Reload()
    events = accumulator.Scalars(RETURN_TAG) if RETURN_TAG in accumulator.Tags()["scalars"] else []
    # Stable sort: a resumed run's files are read in order, but steps decide the x-axis.
    events = sorted(events, key=lambda e: e.step)
    start = accumulator.FirstEventTimestamp() if events else 0.0
    seed = config.get("seed")
    return RunCurve(
        path=path,
        agent=str(config["agent"]),
        env=str(config["env"]),
        seed=int(seed) if seed is not None else None,
        steps=np.array([e.step for e in events], dtype=np.int64),
        wall=np.array([e.wall_time - start for e in events], dtype=np.float64),
        returns=np.array([e.value for e in events], dtype=np.float64),
    )


def _group_key(run: RunCurve, label: str | None) -> tuple[str, str]:
    return (label, "") if label is not None else (run.agent, run.env)


def group_runs(runs: Sequence[RunCurve], labels: dict[Path, str] | None = None) -> list[Group]:
    """Group by (agent, env), or by the user's label (`labels` is keyed by resolved run path); groups
    keep the order of their first run."""
    labels = labels or {}
    groups: dict[tuple[str, str], Group] = {}
    for run in runs:
        label = labels.get(run.path.resolve())
        key = _group_key(run, label)
        group = groups.setdefault(key, Group(label=label or run.agent, env=run.env, runs=[]))
        if run.env != group.env:
            raise CompareError(
                f"label '{label}' mixes envs {group.env} and {run.env} ({run.path}); returns of different envs "
                "cannot be averaged: give each env its own label"
            )
        group.runs.append(run)
    return list(groups.values())


def select(patterns: Sequence[str], labels: Sequence[str] = ()) -> Selection:
    """Everything `compare.py` reads: runs of the positional patterns and of each `NAME=GLOB` label,
    loaded and grouped; runs without any episode yet are skipped with a note."""
    skipped: list[str] = []
    paths: list[Path] = []
    label_of: dict[Path, str] = {}
    for text in labels:
        name, pattern = parse_label(text)
        for path in expand(pattern, skipped):
            label_of.setdefault(path.resolve(), name)
            paths.append(path)
    for pattern in patterns:
        paths.extend(expand(pattern, skipped))
    if not paths:
        raise CompareError("no runs given: pass run directories, a directory of runs, or --label NAME=GLOB")
    # The same run named twice (by a label and by a glob, say) counts once, under its label.
    unique: dict[Path, Path] = {}
    for path in paths:
        unique.setdefault(path.resolve(), path)
    runs = [load_run(p) for p in unique.values()]
    with_episodes = [r for r in runs if r.episodes]
    if not with_episodes:
        which = str(runs[0].path) if len(runs) == 1 else f"any of the {len(runs)} runs"
        raise CompareError(f"no episode logged yet in {which} ({RETURN_TAG} is empty); wait for the first episodes")
    skipped += [f"skipping {r.path}: no episode logged yet" for r in runs if not r.episodes]
    return Selection(groups=group_runs(with_episodes, label_of), skipped=skipped)


# Curves and numbers ---------------------------------------------------------------------------------
def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average: item i is the mean of values[max(0, i-window+1) : i+1]. Same shape."""
    if window < 1:
        raise CompareError(f"--smooth must be at least 1 episode, not {window}")
    values = np.asarray(values, dtype=np.float64)
    sums = np.concatenate([[0.0], np.cumsum(values)])
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(0, ends - window)
    return (sums[ends] - sums[starts]) / (ends - starts)


def x_values(run: RunCurve, x: str) -> np.ndarray:
    if x == "steps":
        return run.steps.astype(np.float64)
    if x == "time":
        return run.wall
    raise CompareError(f"--x must be steps or time, not '{x}'")


@dataclass
class MeanCurve:
    """A group's curve on a common grid; arrays of shape (points,)."""

    x: np.ndarray
    mean: np.ndarray
    std: np.ndarray


def mean_curve(runs: Sequence[RunCurve], x: str = "steps", window: int = 1, points: int = 200) -> MeanCurve:
    """Each run's smoothed curve interpolated onto a grid over the stretch all runs cover; mean and std
    across runs at each grid point. Runs that do not overlap at all fall back to the union of their
    stretches, each point averaging the runs that cover it."""
    xs = [x_values(run, x) for run in runs]
    ys = [smooth(run.returns, window) for run in runs]
    low, high = max(v[0] for v in xs), min(v[-1] for v in xs)
    if low > high:
        low, high = min(v[0] for v in xs), max(v[-1] for v in xs)
    grid = np.linspace(low, high, points) if high > low else np.array([low])
    values = np.stack([np.interp(grid, xv, yv, left=np.nan, right=np.nan) for xv, yv in zip(xs, ys, strict=True)])
    covered = ~np.isnan(values).all(axis=0)
    values, grid = values[:, covered], grid[covered]
    return MeanCurve(x=grid, mean=np.nanmean(values, axis=0), std=np.nanstd(values, axis=0))


@dataclass
class GroupSummary:
    label: str
    env: str
    runs: int
    episodes: int
    """Episodes of all runs together."""
    final_mean: float
    final_std: float
    reached: int = 0
    """Runs whose smoothed return reached the threshold (0 without one)."""
    iqm: float | None = None
    """Interquartile mean of the runs' final returns, with 3 runs or more (`reports.stats`)."""
    iqm_ci: tuple[float, float] | None = None
    """Its 95% percentile bootstrap interval over runs."""
    steps_to_threshold: float | None = None
    seconds_to_threshold: float | None = None


def first_reach(run: RunCurve, threshold: float, window: int) -> tuple[int, float] | None:
    """(step, seconds) of the first episode whose smoothed return is >= threshold; None if none is."""
    hits = np.flatnonzero(smooth(run.returns, window) >= threshold)
    if not len(hits):
        return None
    return int(run.steps[hits[0]]), float(run.wall[hits[0]])


def summarize(group: Group, last: int = 100, threshold: float | None = None, window: int = 1) -> GroupSummary:
    """Final return (mean of each run's last `last` episodes; mean ± std across runs) and, given a
    threshold, the mean steps and seconds to reach it over the runs that did."""
    if last < 1:
        raise CompareError(f"--last must be at least 1 episode, not {last}")
    finals = np.array([run.returns[-last:].mean() for run in group.runs])
    summary = GroupSummary(
        label=group.label,
        env=group.env,
        runs=len(group.runs),
        episodes=sum(run.episodes for run in group.runs),
        final_mean=float(finals.mean()),
        final_std=float(finals.std()),
    )
    if len(finals) >= MIN_RUNS:
        summary.iqm, summary.iqm_ci = iqm(finals), bootstrap_ci(finals)
    if threshold is not None:
        reaches = [r for r in (first_reach(run, threshold, window) for run in group.runs) if r is not None]
        summary.reached = len(reaches)
        if reaches:
            summary.steps_to_threshold = float(np.mean([step for step, _ in reaches]))
            summary.seconds_to_threshold = float(np.mean([seconds for _, seconds in reaches]))
    return summary
