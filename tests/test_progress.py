"""What a user sees on the terminal around a stage: the one progress style (totals, rate, time left, note),
the cheap row counts behind its totals, tables that fit a narrow window, and `xdr --version`."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console
from rich.progress import Progress

import xdr.data
from xdr.config import ModelSpec
from xdr.data import count_rows
from xdr.data.schema import Query
from xdr.encode import encode_queries
from xdr.progress import row_progress
from xdr.version import __version__


def _line(bar: Progress) -> str:
    """The progress line as rich draws it, on a console wide enough to show every column."""
    console = Console(file=io.StringIO(), width=200)
    console.print(bar.make_tasks_table(bar.tasks))
    return console.file.getvalue()


def _render(total: int | None, completed: float) -> str:
    bar = row_progress(True)
    bar.update(bar.add_task("work", total=total), completed=completed)
    return _line(bar)


def test_time_left_only_when_the_total_is_known() -> None:
    assert "eta" in _render(100, 10)
    line = _render(None, 10)
    assert "10/?" in line and "eta" not in line and "rows/s" in line


def test_rate_unit_scale_and_note() -> None:
    bar = row_progress(True)
    task = bar.add_task("generate", total=10, unit="queries", scale=35, note="kept 80.0%")
    bar.tasks[0].start_time -= 2.0  # two seconds in, 4 passages done: 2 passages/s, 70 queries/s
    bar.update(task, completed=4)
    line = _line(bar)
    assert "4/10" in line and "kept 80.0%" in line
    rate = int(line.split(" queries/s")[0].split()[-1])
    assert 60 <= rate <= 70  # the average since the start, as one update gives rich no recent speed
    eta = line.split("eta ")[1].split()[0]
    assert eta in ("0:00:03", "0:00:02")  # 6 passages left at 2/s, from the same average


def test_count_rows_is_cheap_or_none(tmp_path: Path) -> None:
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text('{"id": "a", "text": "x"}\n\n{"id": "b", "text": "y"}\n')
    tsv = tmp_path / "c.tsv"
    tsv.write_text('id\ttext\na\t"two\nlines"\nb\tz\n')  # a quoted newline is not a new row
    parquet = tmp_path / "c.parquet"
    pq.write_table(pa.table({"id": ["a", "b", "c"], "text": ["x", "y", "z"]}), parquet)
    assert (count_rows(jsonl), count_rows(tsv), count_rows(parquet)) == (2, 2, 3)
    assert count_rows(tmp_path) is None and count_rows(tmp_path / "missing.jsonl") is None


def test_count_rows_does_not_scan_a_large_text_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    big = tmp_path / "wiki.tsv"
    big.write_text("id\ttext\ttitle\n" + "".join(f"{i}\tt\tT\n" for i in range(50)))
    monkeypatch.setattr(xdr.data, "COUNT_TEXT_BYTES", big.stat().st_size - 1)
    assert count_rows(big) is None  # a second pass over an 18M-row TSV costs more than a total is worth
    parquet = tmp_path / "big.parquet"
    pq.write_table(pa.table({"id": [str(i) for i in range(50)], "text": ["t"] * 50}), parquet)
    monkeypatch.setattr(xdr.data, "COUNT_TEXT_BYTES", 0)
    assert count_rows(parquet) == 50  # the footer says it, whatever the size


class ConstantEncoder:
    spec = ModelSpec(name="const", path="/models/const")
    dim = 4

    def encode(self, texts: Sequence[str], kind: str, batch_size: int | None = 32, progress: bool = False,
               token_budget: int | None = None) -> np.ndarray:
        return np.ones((len(texts), self.dim), dtype=np.float32) / 2


def test_encode_progress_names_queries_and_counts_a_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    source = tmp_path / "q.jsonl"
    source.write_text("".join(json.dumps({"id": str(i), "lang": "de", "text": f"Frage {i}"}) + "\n" for i in range(5)))
    queries = (Query(str(i), "de", f"Frage {i}") for i in range(5))  # a stream: no len()
    encode_queries(queries, ConstantEncoder(), tmp_path / "emb", source=source, shard_size=2)
    line = capsys.readouterr().err
    assert "encode queries" in line and "querys" not in line
    assert "5/5" in line and "eta" in line  # the total came from the file, so the time left shows


def _models_list(width: int) -> str:
    from xdr.cli import models

    console = Console(file=io.StringIO(), width=width)
    models.out, before = console, models.out
    try:
        models.models_list()
    finally:
        models.out = before
    return console.file.getvalue()


@pytest.mark.parametrize("width", [60, 100, 200])
def test_models_list_shows_every_full_name_at_any_width(width: int, me5_dir: Path) -> None:
    from xdr.models.registry import list_models

    text = _models_list(width)
    lines = text.splitlines()
    assert all(len(line) <= width for line in lines)
    for m in list_models():
        assert any(m.name in line for line in lines), m.name
    assert "'query: ' / 'passage: '" in text  # the settings are there too, not squeezed away


def test_version(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from xdr.cli import main

    monkeypatch.setattr(sys, "argv", ["xdr", "--version"])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"xdr {__version__}"
