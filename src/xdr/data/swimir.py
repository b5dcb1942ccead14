"""SWIM-IR synthetic training pairs: ``{_id, lang, code, query, title, text}`` per row.

Each row pairs a query written in language ``code`` with the Wikipedia passage ``_id`` it was
generated from (``lang`` holds the language's English name and is not used). Google's release is
JSONL; the Hugging Face copy (``nthakur/swim-ir-cross-lingual``) is Parquet; both are read.

Query ids are ``"<_id>-<code>"``, so the same passage's queries in several languages stay distinct.
Rows are (query, passage) pairs rather than a query set, so repeated ids are not treated as errors
here; the passage side yields each passage id once (the first occurrence).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from xdr.data._io import Record, iter_table, table_format
from xdr.data.schema import Passage, Query, TrainingExample

REQUIRED = ("_id", "code", "query", "text")
OPTIONAL = ("title",)


def _rows(path: str | Path, fmt: str | None) -> Iterator[Record]:
    return iter_table(path, fmt or table_format(path), REQUIRED, OPTIONAL)


def _passage(rec: Record) -> Passage:
    return Passage(id=rec.ident("_id"), text=rec.text("text"), title=rec.text("title", required=False))


def read_swimir(path: str | Path, fmt: str | None = None) -> Iterator[TrainingExample]:
    """Stream SWIM-IR rows as TrainingExamples: a query in its language with its one positive passage."""
    for rec in _rows(path, fmt):
        passage = _passage(rec)
        code = rec.lang("code")
        query = Query(id=f"{passage.id}-{code}", lang=code, text=rec.text("query"))
        yield TrainingExample(query=query, positives=(passage,))


def read_swimir_passages(path: str | Path, fmt: str | None = None) -> Iterator[Passage]:
    """Stream the distinct passages of a SWIM-IR file, e.g. to build an index over them."""
    seen: set[str] = set()
    for rec in _rows(path, fmt):
        passage = _passage(rec)
        if passage.id not in seen:
            seen.add(passage.id)
            yield passage
