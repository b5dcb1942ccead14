"""One progress style for every long stage: rows done of the total, rows/s, elapsed time, on stderr."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
from rich.text import Text


class _RateColumn(ProgressColumn):
    """Rows per second: the throughput figure that decides how long an 18M-row corpus takes."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed or (task.completed / task.elapsed if task.elapsed else 0.0)
        return Text(f"{speed:,.0f} rows/s", style="progress.data.speed")


def row_progress(enabled: bool) -> Progress:
    """A progress bar on stderr, so that stdout stays clean for piping."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        console=Console(file=sys.stderr),
        disable=not enabled,
    )
