"""Record-per-row corpus and query files (JSONL, TSV, CSV, Parquet) under any column names, and the writers.

Corpus records: ``id``, ``text`` and optionally ``title``. Query records: ``id``, ``text`` and optionally
``lang`` and ``answers``. ``fields`` maps these names to the file's own (``{"id": "_id", "text":
"contents"}``); the common layouts are presets, picked by detection (see :mod:`xdr.data`): BEIR
(``_id``, ``title``, ``text``), Pyserini (``id``, ``contents``), MIRACL (``docid``, ``title``, ``text``).
Errors name the file's own column, since that is what the user sees in the file. A query without a
language gets one from :mod:`xdr.data.language` (``lang=`` for the file, or detection).

In JSONL and Parquet ``answers`` is a list of strings; in TSV/CSV it is a JSON list in one cell
(``["Paris", "City of Paris"]``), because answers may contain any separator character. An empty cell
means no answers. TSV and CSV files need a header row naming the columns, in any order, and follow CSV
quoting as DPR's TSVs do: a cell that starts with ``"`` is a quoted cell (``""`` inside it is one quote,
and it may hold tabs or newlines). The ``id-text`` format is a headerless two-column TSV (MS MARCO,
MIRACL and Mr. TyDi topics). Ids may be strings or integers; they are kept as strings.

The writers produce JSONL or Parquet (chosen by the suffix), streaming in batches, under a temp name
that is renamed only when the whole file is written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from xdr.artifacts import atomic_path
from xdr.data._io import DELIMITERS, Record, UniqueIds, iter_id_text, iter_table, table_format
from xdr.data.language import QueryLanguages, file_language
from xdr.data.schema import Passage, Query
from xdr.errors import XdrError

PASSAGE_SCHEMA = pa.schema([("id", pa.string()), ("title", pa.string()), ("text", pa.string())])
QUERY_SCHEMA = pa.schema(
    [("id", pa.string()), ("lang", pa.string()), ("text", pa.string()), ("answers", pa.list_(pa.string()))]
)
WRITE_BATCH_ROWS = 10_000
PASSAGE_FIELDS = ("id", "text", "title")
QUERY_FIELDS = ("id", "text", "lang", "answers")
# Column names of the common layouts; BEIR's queries use the same ``_id``/``text`` as its corpus.
PRESETS: dict[str, dict[str, str]] = {
    "beir": {"id": "_id"},
    "pyserini": {"text": "contents"},
    "miracl": {"id": "docid"},
}
GENERIC_FORMATS = ("jsonl", "tsv", "csv", "parquet", "id-text", *PRESETS)


def field_map(
    names: tuple[str, ...], fields: Mapping[str, str] | None, fmt: str | None = None
) -> dict[str, str]:
    """xdr's field name -> the file's column name: identity, then the format's preset, then ``fields``."""
    unknown = set(fields or {}) - set(names)
    if unknown:
        raise XdrError(f"fields: unknown field {sorted(unknown)[0]!r}; the fields here are {', '.join(names)}")
    mapping = {n: n for n in names}
    mapping.update({k: v for k, v in PRESETS.get(fmt or "", {}).items() if k in names})
    mapping.update(fields or {})
    for name, column in mapping.items():
        if not isinstance(column, str) or not column.strip():
            raise XdrError(f"fields: {name!r} must map to a column name, got {column!r}")
    return mapping


def _records(
    path: str | Path, fmt: str | None, required: tuple[str, ...], optional: tuple[str, ...]
) -> Iterator[Record]:
    """Records in the format's table layout; presets are JSONL with other column names."""
    fmt = fmt or table_format(path)
    if fmt == "id-text":
        return iter_id_text(path)
    return iter_table(path, "jsonl" if fmt in PRESETS else fmt, required, optional)


def passages_from_records(
    records: Iterable[Record], check_duplicates: bool = True, fields: Mapping[str, str] | None = None
) -> Iterator[Passage]:
    """Passages from records with ``id``, ``text`` and optional ``title`` (or the columns ``fields`` names)."""
    f = field_map(PASSAGE_FIELDS, fields)
    ids = UniqueIds(check_duplicates)
    for rec in records:
        pid = ids.check(rec, f["id"], rec.ident(f["id"]))
        yield Passage(id=pid, text=rec.text(f["text"]), title=rec.text(f["title"], required=False))


def read_generic_passages(
    path: str | Path, fmt: str | None = None, *, fields: Mapping[str, str] | None = None,
    check_duplicates: bool = True,
) -> Iterator[Passage]:
    """Stream a corpus file (``id``, ``text``, ``title``, or the columns ``fields`` names)."""
    f = field_map(PASSAGE_FIELDS, fields, fmt)
    records = _records(path, fmt, (f["id"], f["text"]), (f["title"],))
    return passages_from_records(records, check_duplicates, f)


def _cell_answers(rec: Record, field: str) -> None:
    """Decode the JSON list a TSV/CSV ``answers`` cell holds, in place, so ``Record.answers`` checks it."""
    cell = rec.obj.get(field)
    if cell is None or not cell.strip():
        rec.obj[field] = None
        return
    try:
        rec.obj[field] = json.loads(cell)
    except json.JSONDecodeError:
        problem = 'expected a JSON list of strings such as ["Paris"], or an empty cell'
        raise rec.error(field, problem) from None


def read_generic_queries(
    path: str | Path, fmt: str | None = None, *, fields: Mapping[str, str] | None = None,
    lang: str | None = None, check_duplicates: bool = True,
) -> Iterator[Query]:
    """Stream a query file (``id``, ``text``, ``lang``, ``answers``, or the columns ``fields`` names).

    A row without a language takes ``lang``, or a detected one (see :mod:`xdr.data.language`).
    """
    f = field_map(QUERY_FIELDS, fields, fmt)
    languages = QueryLanguages(str(path), file_language(lang))
    return _queries(path, fmt or table_format(path), f, languages, check_duplicates)


def _queries(
    path: str | Path, fmt: str, f: dict[str, str], languages: QueryLanguages, check_duplicates: bool
) -> Iterator[Query]:
    ids = UniqueIds(check_duplicates)
    try:
        for rec in _records(path, fmt, (f["id"], f["text"]), (f["lang"], f["answers"])):
            if fmt in DELIMITERS:
                _cell_answers(rec, f["answers"])
            qid = ids.check(rec, f["id"], rec.ident(f["id"]))
            text = rec.text(f["text"])
            own = rec.lang(f["lang"]) if rec.obj.get(f["lang"]) is not None else None
            try:
                code = languages(text, own)
            except XdrError as e:
                raise rec.error(f["lang"], str(e)) from None
            yield Query(id=qid, lang=code, text=text, answers=rec.answers(f["answers"]))
    finally:
        languages.report()


def _write(path: str | Path, rows: Iterable[dict[str, Any]], schema: pa.Schema, batch_rows: int) -> int:
    """Write dict rows as JSONL or Parquet in batches, atomically; returns the number of rows."""
    fmt = table_format(path)
    if fmt not in ("jsonl", "parquet") or Path(path).suffix == ".gz":
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
