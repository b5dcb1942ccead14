"""xdr's own corpus and query-set files, in JSONL, TSV or Parquet, and the writers that produce them.

Corpus records: ``id``, ``text`` and optionally ``title``. Query records: ``id``, ``lang``, ``text``
and optionally ``answers``. In JSONL and Parquet ``answers`` is a list of strings; in TSV it is a JSON
list in one cell (``["Paris", "City of Paris"]``), because answers may contain any separator
character. An empty TSV cell means no answers. TSV files need a header row naming the columns, in
any order, and follow CSV quoting as DPR's TSVs do: a cell that starts with ``"`` is a quoted cell
(``""`` inside it is one quote, and it may hold tabs or newlines). Ids may be strings or integers;
they are kept as strings.

The writers produce JSONL or Parquet (chosen by the suffix), streaming in batches, under a temp name
that is renamed only when the whole file is written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from xdr.artifacts import atomic_path
from xdr.data._io import Record, UniqueIds, iter_table, table_format
from xdr.data.schema import Passage, Query
from xdr.errors import XdrError

PASSAGE_SCHEMA = pa.schema([("id", pa.string()), ("title", pa.string()), ("text", pa.string())])
QUERY_SCHEMA = pa.schema(
    [("id", pa.string()), ("lang", pa.string()), ("text", pa.string()), ("answers", pa.list_(pa.string()))]
)
WRITE_BATCH_ROWS = 10_000


def passages_from_records(records: Iterable[Record], check_duplicates: bool = True) -> Iterator[Passage]:
    """Passages from records with ``id``, ``text`` and optional ``title``, whatever file they came from."""
    ids = UniqueIds(check_duplicates)
    for rec in records:
        pid = ids.check(rec, "id", rec.ident("id"))
        yield Passage(id=pid, text=rec.text("text"), title=rec.text("title", required=False))


def read_generic_passages(
    path: str | Path, fmt: str | None = None, *, check_duplicates: bool = True
) -> Iterator[Passage]:
    """Stream a corpus file (``id``, ``text``, ``title``) in JSONL, TSV or Parquet."""
    fmt = fmt or table_format(path)
    return passages_from_records(iter_table(path, fmt, ("id", "text"), ("title",)), check_duplicates)


def _tsv_answers(rec: Record) -> None:
    """Decode the JSON list a TSV ``answers`` cell holds, in place, so ``Record.answers`` checks it."""
    cell = rec.obj.get("answers")
    if cell is None or not cell.strip():
        rec.obj["answers"] = None
        return
    try:
        rec.obj["answers"] = json.loads(cell)
    except json.JSONDecodeError:
        problem = 'expected a JSON list of strings such as ["Paris"], or an empty cell'
        raise rec.error("answers", problem) from None


def read_generic_queries(
    path: str | Path, fmt: str | None = None, *, check_duplicates: bool = True
) -> Iterator[Query]:
    """Stream a query file (``id``, ``lang``, ``text``, ``answers``) in JSONL, TSV or Parquet."""
    fmt = fmt or table_format(path)
    ids = UniqueIds(check_duplicates)
    for rec in iter_table(path, fmt, ("id", "lang", "text"), ("answers",)):
        if fmt == "tsv":
            _tsv_answers(rec)
        qid = ids.check(rec, "id", rec.ident("id"))
        yield Query(id=qid, lang=rec.lang("lang"), text=rec.text("text"), answers=rec.answers("answers"))


def _write(path: str | Path, rows: Iterable[dict[str, Any]], schema: pa.Schema, batch_rows: int) -> int:
    """Write dict rows as JSONL or Parquet in batches, atomically; returns the number of rows."""
    fmt = table_format(path)
    if fmt == "tsv" or Path(path).suffix == ".gz":
        raise XdrError(f"{path}: xdr writes .jsonl or .parquet files (uncompressed)")
    n = 0
    with atomic_path(path) as tmp:
        if fmt == "jsonl":
            with open(tmp, "w", encoding="utf-8") as f:
                for row in rows:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
                    n += 1
        else:
            with pq.ParquetWriter(tmp, schema) as writer:
                batch: list[dict[str, Any]] = []
                for row in rows:
                    batch.append(row)
                    if len(batch) >= batch_rows:
                        writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                        n += len(batch)
                        batch = []
                if batch or n == 0:  # an empty file still gets its schema
                    writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                    n += len(batch)
    return n


def write_passages(
    path: str | Path, passages: Iterable[Passage], *, batch_rows: int = WRITE_BATCH_ROWS
) -> int:
    """Write passages to ``.jsonl`` or ``.parquet``; nothing appears at ``path`` unless all were written."""
    rows = ({"id": p.id, "title": p.title, "text": p.text} for p in passages)
    return _write(path, rows, PASSAGE_SCHEMA, batch_rows)


def write_queries(
    path: str | Path, queries: Iterable[Query], *, batch_rows: int = WRITE_BATCH_ROWS
) -> int:
    """Write queries to ``.jsonl`` or ``.parquet``; nothing appears at ``path`` unless all were written."""
    rows = ({"id": q.id, "lang": q.lang, "text": q.text, "answers": list(q.answers)} for q in queries)
    return _write(path, rows, QUERY_SCHEMA, batch_rows)
