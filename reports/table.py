"""The comparison table: `GroupSummary` rows as aligned text (stdout), Markdown (docs) or CSV (plain numbers)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from reports.curves import GroupSummary

MISSING = "-"


def format_seconds(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def _reached(summary: GroupSummary, value: str) -> str:
    # A mean over only the runs that made it would flatter a group; say how many did.
    return value if summary.reached == summary.runs else f"{value} ({summary.reached}/{summary.runs} runs)"


def table_rows(
    summaries: Sequence[GroupSummary], threshold: float | None = None, last: int = 100
) -> tuple[list[str], list[list[str]]]:
    """Header and rows of strings; the threshold columns only when a threshold was given."""
    header = ["group", "env", "runs", "episodes", f"final return (last {last})"]
    with_iqm = any(s.iqm is not None for s in summaries)
    if with_iqm:
        header += ["IQM [95% CI]"]
    if threshold is not None:
        header += [f"steps to {threshold:g}", f"time to {threshold:g}"]
    rows = []
    for s in summaries:
        row = [s.label, s.env, str(s.runs), f"{s.episodes:,}", f"{s.final_mean:.3f} ± {s.final_std:.3f}"]
        if with_iqm:
            row += [MISSING if s.iqm is None else f"{s.iqm:.3f} [{s.iqm_ci[0]:.3f}, {s.iqm_ci[1]:.3f}]"]
        if threshold is not None:
            if s.reached:
                row += [
                    _reached(s, f"{s.steps_to_threshold:,.0f}"),
                    _reached(s, format_seconds(s.seconds_to_threshold)),
                ]
            else:
                row += [MISSING, MISSING]
        rows.append(row)
    return header, rows


def format_text(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def format_markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |" for line in lines)


CSV_FIELDS = [
    "group",
    "env",
    "runs",
    "episodes",
    "last_episodes",
    "final_mean",
    "final_std",
    "iqm",
    "iqm_ci_low",
    "iqm_ci_high",
    "threshold",
    "reached",
    "steps_to_threshold",
    "seconds_to_threshold",
]


def write_csv(path: str | Path, summaries: Sequence[GroupSummary], threshold: float | None, last: int) -> Path:
    """Plain numbers, one row per group; empty cells where the threshold was not given or not reached."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_FIELDS)
        for s in summaries:
            writer.writerow(
                [
                    s.label,
                    s.env,
                    s.runs,
                    s.episodes,
                    last,
                    repr(s.final_mean),
                    repr(s.final_std),
                    "" if s.iqm is None else repr(s.iqm),
                    "" if s.iqm_ci is None else repr(s.iqm_ci[0]),
                    "" if s.iqm_ci is None else repr(s.iqm_ci[1]),
                    "" if threshold is None else repr(threshold),
                    s.reached if threshold is not None else "",
                    "" if s.steps_to_threshold is None else repr(s.steps_to_threshold),
                    "" if s.seconds_to_threshold is None else repr(s.seconds_to_threshold),
                ]
            )
    return path
