"""The comparison picture: one panel per env, one mean curve with a ± std band per group.

Drawn with matplotlib's Agg canvas on a bare `Figure` (no pyplot, no window, no global backend change),
and saved without `bbox_inches="tight"` so its pixel size is fixed: PANEL_SIZE x DPI per panel, panels
in rows of at most MAX_COLUMNS.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from reports.curves import CompareError, Group, mean_curve

PANEL_SIZE = (7.0, 4.5)
"""Inches of one env's panel; at DPI 100 a one-env picture is 700 x 450 pixels."""
DPI = 100
MAX_COLUMNS = 2
FORMATS = (".png", ".svg", ".pdf")


def picture_size(n_envs: int) -> tuple[int, int]:
    """(width, height) in pixels of the picture for `n_envs` panels."""
    columns = min(MAX_COLUMNS, n_envs)
    rows = math.ceil(n_envs / columns)
    return round(PANEL_SIZE[0] * columns * DPI), round(PANEL_SIZE[1] * rows * DPI)


def _time_unit(seconds: float) -> tuple[float, str]:
    if seconds <= 300:
        return 1.0, "s"
    if seconds <= 3 * 3600:
        return 60.0, "min"
    return 3600.0, "h"


def _draw_panel(ax, env: str, groups: Sequence[Group], x: str, window: int, threshold: float | None) -> None:
    from matplotlib.ticker import EngFormatter

    curves = [(group, mean_curve(group.runs, x=x, window=window)) for group in groups]
    scale, unit = _time_unit(max(curve.x[-1] for _, curve in curves)) if x == "time" else (1.0, "")
    for group, curve in curves:
        seeds = len(group.runs)
        label = f"{group.label} ({seeds} run{'s' if seeds > 1 else ''})"
        (line,) = ax.plot(curve.x / scale, curve.mean, label=label, linewidth=1.6)
        ax.fill_between(
            curve.x / scale, curve.mean - curve.std, curve.mean + curve.std, color=line.get_color(), alpha=0.2
        )
    if threshold is not None:
        ax.axhline(threshold, color="0.4", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    ax.set_title(env)
    if x == "steps":
        ax.set_xlabel("environment steps")
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    else:
        ax.set_xlabel(f"wall time ({unit})")
    smoothing = f", mean of last {window} episodes" if window > 1 else ""
    ax.set_ylabel(f"episodic return{smoothing}")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")


def plot_groups(
    groups: Sequence[Group],
    out: str | Path,
    x: str = "steps",
    window: int = 1,
    threshold: float | None = None,
) -> Path:
    """Write the picture to `out` (.png, .svg or .pdf); returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(out)
    if out.suffix.lower() not in FORMATS:
        raise CompareError(f"--out must end in {', '.join(FORMATS)}, not '{out.name}'")
    envs = list(dict.fromkeys(group.env for group in groups))
    if not envs:
        raise CompareError("nothing to plot")
    columns = min(MAX_COLUMNS, len(envs))
    rows = math.ceil(len(envs) / columns)
    fig = Figure(figsize=(PANEL_SIZE[0] * columns, PANEL_SIZE[1] * rows), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, env in zip(axes, envs, strict=False):  # a last row may have a spare panel
        _draw_panel(ax, env, [g for g in groups if g.env == env], x, window, threshold)
    for ax in axes[len(envs) :]:
        ax.set_visible(False)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI)
    return out
