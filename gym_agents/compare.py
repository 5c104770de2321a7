"""Compare learning curves of runs: one picture (mean ± std across seeds) and a table of final returns.

    python compare.py runs                                   # every run in runs/, grouped by agent and env
    python compare.py 'runs/CartPole-v1__*' --threshold 475 --x time
    python compare.py --label lr0.1='runs/*lr01*' --label lr0.01='runs/*lr001*' --csv compare.csv

Runs are grouped by (agent, env) unless `--label NAME=GLOB` names a group; each env gets its own panel,
and a label whose runs span several envs is refused (their returns cannot be averaged). Runs still
training are read up to their last flush; runs with no episode yet are skipped with a warning.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from gym_agents.cli import fail, main_exit

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


class XAxis(str, Enum):
    steps = "steps"
    time = "time"


@app.command()
def compare(
    runs: Annotated[
        list[str] | None,
        typer.Argument(help="Run directories, directories of runs, or quoted glob patterns.", show_default=False),
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option(help="NAME=GLOB: the runs GLOB matches form one group called NAME (repeat).", show_default=False),
    ] = None,
    out: Annotated[Path, typer.Option(help="Picture to write (.png, .svg or .pdf).")] = Path("compare.png"),
    x: Annotated[XAxis, typer.Option(help="x-axis: environment steps or wall time.")] = XAxis.steps,
    smooth: Annotated[int, typer.Option(help="Moving average over this many episodes (1: raw returns).")] = 10,
    threshold: Annotated[
        float | None, typer.Option(help="Return to reach: the table gets steps and time to it.", show_default=False)
    ] = None,
    last: Annotated[int, typer.Option(help="Final return of a run: mean of its last N episodes.")] = 100,
    csv: Annotated[Path | None, typer.Option(help="Also write the table as CSV here.", show_default=False)] = None,
) -> None:
    """Plot mean episodic return across seeds per group and print final returns (and time to --threshold).

    Runs are grouped by agent and env, or by --label; each env gets its own panel (a label spanning envs
    is refused). Curves are smoothed per run, averaged on the steps (or seconds) every seed covers, with
    a band of ± 1 std across seeds. Steps / time to the threshold: the first episode whose smoothed return
    reaches it, averaged over the runs that did ("-" if none did; "(k/n runs)" if only some did).
    """
    import math

    from core.files import writable_file
    from reports import format_text, plot_groups, select, summarize, table_rows, write_csv
    from reports.curves import smooth as check_window

    check_window([], smooth)  # a bad --smooth fails before any event file is read
    if threshold is not None and not math.isfinite(threshold):
        raise fail(f"--threshold must be a finite number, not {threshold}")
    if last < 1:
        raise fail(f"--last must be at least 1, not {last}")
    writable_file(out, "--out")
    if csv is not None:
        writable_file(csv, "--csv")
    selection = select(runs or [], label or [])
    for note in selection.skipped:
        typer.echo(f"warning: {note}", err=True)
    summaries = [summarize(g, last=last, threshold=threshold, window=smooth) for g in selection.groups]
    typer.echo(format_text(*table_rows(summaries, threshold=threshold, last=last)))
    picture = plot_groups(selection.groups, out, x=x.value, window=smooth, threshold=threshold)
    typer.echo(f"picture: {picture}")
    if csv is not None:
        typer.echo(f"table: {write_csv(csv, summaries, threshold=threshold, last=last)}")


def main() -> None:
    main_exit(app)


if __name__ == "__main__":
    main()
