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

from collections.abc import Iterator
from pathlib import Path

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
