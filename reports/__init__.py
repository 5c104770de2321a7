"""Reports on finished (or running) runs: learning curves compared across agents and seeds.

`reports.curves` reads and summarizes runs, `reports.table` formats the numbers, `reports.plot` draws them.
"""

from reports.curves import CompareError, Group, GroupSummary, RunCurve, Selection, load_run, select, summarize
from reports.plot import picture_size, plot_groups
from reports.table import format_markdown, format_text, table_rows, write_csv

__all__ = [
    "CompareError",
    "Group",
    "GroupSummary",
    "RunCurve",
    "Selection",
    "format_markdown",
    "format_text",
    "load_run",
    "picture_size",
    "plot_groups",
    "select",
    "summarize",
    "table_rows",
    "write_csv",
]
