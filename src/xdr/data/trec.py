"""TREC's whitespace-column files: the line parser, the id check, and qrels (``qid 0 docid rel``), plus
BEIR's qrels (a TSV with the header ``query-id corpus-id score``).

Columns are separated by any whitespace, so ids must not contain any; the writers refuse such ids
rather than produce a file that reads back differently. Qrels are small, so they are read into a dict,
the shape ir_measures takes. Run files (``qid Q0 docid rank score tag``) are in :mod:`xdr.data.runs`.
These few lines stay hand-written: ir_measures reads TREC qrels too, but without the file:line errors.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path

from xdr.artifacts import atomic_path
from xdr.data._io import iter_delimited, numbered_lines
from xdr.errors import DataError, XdrError

QRELS_COLUMNS = ("qid", "iter", "docid", "rel")
BEIR_QRELS_HEADER = ("query-id", "corpus-id", "score")
Qrels = Mapping[str, Mapping[str, int]]


def rows(path: str | Path, columns: tuple[str, ...]) -> Iterator[tuple[int, list[str]]]:
    for n, line in numbered_lines(path):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != len(columns):
            raise DataError(
                path, n, None, f"expected {len(columns)} columns ({' '.join(columns)}), got {len(parts)}"
            )
        yield n, parts


def number(path: str | Path, line: int, field: str, value: str, kind: type[int] | type[float]) -> float:
    try:
        number = kind(value)
    except ValueError:
        expected = "an integer" if kind is int else "a number"
        raise DataError(path, line, field, f"expected {expected}, got {value!r}") from None
    if not math.isfinite(number):
        raise DataError(path, line, field, f"expected a finite number, got {value!r}")
    return number


def _judge(qrels: dict[str, dict[str, int]], path: str | Path, n: int, names: tuple[str, str, str],
           qid: str, docid: str, rel: str) -> None:
    docs = qrels.setdefault(qid, {})
    if docid in docs:
        raise DataError(path, n, names[1], f"{docid!r} is judged twice for query {qid!r}")
    docs[docid] = int(number(path, n, names[2], rel, int))


def read_trec_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """query id -> {doc id: relevance}; a repeated (query, doc) pair is an error."""
    qrels: dict[str, dict[str, int]] = {}
    for n, (qid, _, docid, rel) in rows(path, QRELS_COLUMNS):
        _judge(qrels, path, n, ("qid", "docid", "rel"), qid, docid, rel)
    return qrels


def read_beir_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """BEIR's ``qrels/<split>.tsv``; errors name its columns."""
    qrels: dict[str, dict[str, int]] = {}
    for rec in iter_delimited(path, BEIR_QRELS_HEADER, exact_header=BEIR_QRELS_HEADER):
        qid, docid, rel = (rec.text(c) for c in BEIR_QRELS_HEADER)
        _judge(qrels, path, rec.line or 0, BEIR_QRELS_HEADER, qid, docid, rel)
    return qrels


def check_token(what: str, value: str) -> str:
    if not value or any(c.isspace() for c in value):
        raise XdrError(f"cannot write {what} {value!r} to a TREC file: it is empty or contains whitespace")
    return value


def write_qrels(path: str | Path, qrels: Mapping[str, Mapping[str, int]]) -> None:
    """Write qrels atomically, in the mapping's order."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for qid, docs in qrels.items():
            check_token("query id", qid)
            for docid, rel in docs.items():
                f.write(f"{qid} 0 {check_token('doc id', docid)} {int(rel)}\n")


