"""One progress style for every long stage: done of the total, a rate, time left, elapsed, a note; on stderr.

Rich draws it. Two columns are written here because rich's estimate only looks at the last 30 seconds of
updates, and a stage that reports once per shard (generation can take minutes per shard) would show no
rate and no time left between reports: both fall back to the average since the start.

A task may set fields that these columns read: ``unit`` (what the rate counts, default ``rows``),
``scale`` (units per step of ``completed``, e.g. queries per passage) and ``note`` (a short status such as
the kept rate so far).
"""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column
from rich.text import Text


def _speed(task: Task) -> float:
    """Steps per second: rich's recent estimate, else the average since the task started."""
    return task.finished_speed or task.speed or (task.completed / task.elapsed if task.elapsed else 0.0)


class _RateColumn(ProgressColumn):
    """Units per second: the throughput figure that decides how long an 18M-row corpus takes."""

    def render(self, task: Task) -> Text:
        rate = _speed(task) * task.fields.get("scale", 1)
        return Text(f"{rate:,.0f} {task.fields.get('unit', 'rows')}/s", style="progress.data.speed")


class _TimeLeftColumn(TimeRemainingColumn):
    """Rich's time remaining, blank when the total is unknown; from the average rate between rare updates."""

    def render(self, task: Task) -> Text:
        if task.total is None:
            return Text("")
        if task.finished or task.time_remaining is not None or not _speed(task):
            left = super().render(task)
        else:
            minutes, seconds = divmod(int((task.total - task.completed) / _speed(task)), 60)
            hours, minutes = divmod(minutes, 60)
            left = Text(f"{hours:d}:{minutes:02d}:{seconds:02d}", style="progress.remaining")
        return Text.assemble("eta ", left)


class _NoteColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(task.fields.get("note", ""))


def row_progress(enabled: bool) -> Progress:
    """A progress bar on stderr, so that stdout stays clean for piping.

    One line whatever the terminal's width: the figures never wrap, the bar takes the room that is left.
    """
    figure = Column(no_wrap=True)
    return Progress(
        TextColumn("{task.description}", table_column=figure),
        BarColumn(bar_width=None),
        MofNCompleteColumn(table_column=figure),
        _RateColumn(table_column=figure),
        _TimeLeftColumn(table_column=figure),
        TimeElapsedColumn(table_column=figure),
        _NoteColumn(table_column=figure),
        console=Console(file=sys.stderr),
        disable=not enabled,
    )
