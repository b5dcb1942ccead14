"""Errors that the CLI turns into one line and a non-zero exit.

Every error a user can cause is an :class:`XdrError`; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class XdrError(Exception):
    """A user-facing error: the message alone tells what went wrong and how to fix it."""


class DataError(XdrError):
    """A malformed input row: names the file, the line (1-based) and the field."""

    def __init__(self, path: str | Path, line: int | None, field: str | None, problem: str) -> None:
        where = str(path)
        if line is not None:
            where += f":{line}"
        if field is not None:
            where += f": field '{field}'"
        super().__init__(f"{where}: {problem}")
        self.path, self.line, self.field, self.problem = str(path), line, field, problem


class XdrWarning(UserWarning):
    """A result that is valid but likely not what the user wants (e.g. approximate search far from exact);
    the CLI prints it as one line."""


class MismatchError(XdrError):
    """Two artifacts (or an artifact and a model) that were not made to be used together."""
