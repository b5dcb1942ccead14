"""Readers for every input xdr takes, behind three calls: passages, queries and training examples.

All readers stream and validate: a bad record raises DataError naming the file, the 1-based line (or
Parquet row) and the field. The format comes from ``format=`` or is detected:

- ``.parquet``: SWIM-IR if it has ``_id``/``code``/``query`` columns, else xdr's own layout;
- ``.tsv``: the XOR Wikipedia corpus if the header is exactly ``id text title``, else xdr's own;
- ``.jsonl``: by the first record's keys: Tevatron (``query_id``, ``positive_passages``), SWIM-IR
  (``_id``, ``code``, ``query``), XOR-TyDi questions (``question``, ``lang``), else xdr's own;
- ``.json``: DPR if the document is a list, SQuAD if it is an object.

A trailing ``.gz`` is looked through for the text formats.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from xdr.data._io import base_suffix, iter_jsonl, open_text
from xdr.data.dpr import read_dpr, read_tevatron
from xdr.data.generic import read_generic_passages, read_generic_queries, write_passages, write_queries
from xdr.data.lookup import lookup_passages, lookup_texts
from xdr.data.runs import Run, read_run, read_xor_submission, write_run, write_trec, write_xor_json
from xdr.data.schema import Passage, Query, TrainingExample
from xdr.data.squad import XQuADR, read_squad_paragraphs, read_squad_training, read_xquad_r
from xdr.data.swimir import read_swimir, read_swimir_passages
from xdr.data.trec import read_qrels, write_qrels
from xdr.data.xor import WIKI_HEADER, read_question_translations, read_xor_questions, read_xor_wiki
from xdr.errors import XdrError

__all__ = [
    "Run",
    "XQuADR",
    "count_rows",
    "detect_format",
    "lookup_passages",
    "lookup_texts",
    "read_passages",
    "read_qrels",
    "read_queries",
    "read_question_translations",
    "read_run",
    "read_training",
    "read_xor_submission",
    "read_xquad_r",
    "write_passages",
    "write_qrels",
    "write_queries",
    "write_run",
    "write_trec",
    "write_xor_json",
]

PASSAGE_FORMATS = ("jsonl", "tsv", "parquet", "xor-wiki", "swimir", "squad")
QUERY_FORMATS = ("jsonl", "tsv", "parquet", "xor")
TRAINING_FORMATS = ("dpr", "tevatron", "swimir", "squad")
SWIMIR_KEYS = {"_id", "code", "query"}
COUNT_TEXT_BYTES = 64 << 20  # scanned in about a second; larger text files are not read an extra time


def _jsonl_format(path: str | Path) -> str:
    first = next(iter_jsonl(path), None)
    keys = set(first.obj) if first is not None else set()
    if {"query_id", "positive_passages"} <= keys:
        return "tevatron"
    if keys >= SWIMIR_KEYS:
        return "swimir"
    if {"question", "lang"} <= keys:
        return "xor"
    return "jsonl"


def _first_char(path: str | Path) -> str:
    with open_text(path) as f:
        while (c := f.read(1)) and c.isspace():
            pass
    return c


def detect_format(path: str | Path) -> str:
    """The format name of a file, from its suffix and first record (see the module docstring)."""
    suffix = base_suffix(path)
    if suffix == ".parquet":
        if not Path(path).is_file():
            raise XdrError(f"{path}: no such file")
        return "swimir" if set(pq.read_schema(path).names) >= SWIMIR_KEYS else "parquet"
    if suffix == ".tsv":
        with open_text(path) as f:
            header = tuple(f.readline().rstrip("\r\n").split("\t"))
        return "xor-wiki" if header == WIKI_HEADER else "tsv"
    if suffix == ".jsonl":
        return _jsonl_format(path)
    if suffix == ".json":
        return {"[": "dpr", "{": "squad"}.get(_first_char(path), "json")
    raise XdrError(f"{path}: cannot tell the format from the name (.jsonl .tsv .parquet .json); pass format=")


def count_rows(path: str | Path, format: str | None = None) -> int | None:
    """How many records ``read_passages`` / ``read_queries`` will yield, when that is cheap to know; else None.

    For progress totals. A Parquet file says so in its footer. An uncompressed JSONL or TSV file up to
    ``COUNT_TEXT_BYTES`` is scanned (TSV through the csv module: a quoted field may hold a newline). A larger
    or gzipped text file would cost a second pass over the input (the XOR corpus TSV has 18M rows), so it
    gets None, as do directories and formats whose rows are not one record each. A file the readers would
    refuse also gets None: they report it, with its line, when they read it.
    """
    p = Path(path)
    try:
        fmt = format or (detect_format(p) if p.is_file() else None)
        if fmt == "parquet":
            return pq.ParquetFile(p).metadata.num_rows
        if fmt not in ("jsonl", "xor", "tsv", "xor-wiki") or p.suffix == ".gz" or p.stat().st_size > COUNT_TEXT_BYTES:
            return None
        with open_text(p) as f:
            if fmt in ("tsv", "xor-wiki"):
                return max(sum(1 for row in csv.reader(f, delimiter="\t") if row) - 1, 0)  # less the header
            return sum(1 for line in f if line.strip())
    except (XdrError, ValueError, OSError, csv.Error, pa.ArrowException):
        return None


def _unsupported(path: str | Path, fmt: str, what: str, allowed: tuple[str, ...]) -> XdrError:
    return XdrError(f"{path}: format {fmt!r} does not hold {what}; {what} formats are {', '.join(allowed)}")


def read_passages(
    path: str | Path, format: str | None = None, *, check_duplicates: bool = True
) -> Iterator[Passage]:
    """Stream a corpus. Duplicate ids are errors unless ``check_duplicates=False`` (saves memory)."""
    fmt = format or detect_format(path)
    if fmt in ("jsonl", "tsv", "parquet"):
        return read_generic_passages(path, fmt, check_duplicates=check_duplicates)
    if fmt == "xor-wiki":
        return read_xor_wiki(path, check_duplicates=check_duplicates)
    if fmt == "swimir":
        return read_swimir_passages(path)
    if fmt == "squad":
        return read_squad_paragraphs(path)
    raise _unsupported(path, fmt, "passages", PASSAGE_FORMATS)


def read_queries(
    path: str | Path, format: str | None = None, *, check_duplicates: bool = True
) -> Iterator[Query]:
    """Stream a query set; duplicate ids are errors unless ``check_duplicates=False``."""
    fmt = format or detect_format(path)
    if fmt in ("jsonl", "tsv", "parquet"):
        return read_generic_queries(path, fmt, check_duplicates=check_duplicates)
    if fmt == "xor":
        return read_xor_questions(path, check_duplicates=check_duplicates)
    raise _unsupported(path, fmt, "queries", QUERY_FORMATS)


def read_training(
    path: str | Path, format: str | None = None, *, lang: str = "en"
) -> Iterator[TrainingExample]:
    """Stream training examples. ``lang`` is the query language for formats that do not record one
    (DPR, SQuAD, Tevatron rows without ``lang``)."""
    fmt = format or detect_format(path)
    if fmt == "dpr":
        return read_dpr(path, lang=lang)
    if fmt == "tevatron":
        return read_tevatron(path, lang=lang)
    if fmt == "swimir":
        return read_swimir(path)
    if fmt == "squad":
        return read_squad_training(path, lang)
    raise _unsupported(path, fmt, "training examples", TRAINING_FORMATS)
