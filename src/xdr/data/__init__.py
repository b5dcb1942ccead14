"""Readers for every input xdr takes, behind four calls: passages, queries, qrels and training examples.

All readers stream and validate: a bad record raises DataError naming the file, the 1-based line (or
Parquet row) and the field. The format comes from ``format=`` or is detected:

- ``irds:<id>``: an ir_datasets dataset (:mod:`xdr.data.irds`);
- a directory: a BEIR dataset's ``corpus.jsonl`` / ``queries.jsonl``, or a MIRACL corpus's
  ``docs-<n>.jsonl.gz`` shards, read in order;
- ``.parquet``: SWIM-IR if it has ``_id``/``code``/``query`` columns, else xdr's own layout;
- ``.tsv``: the XOR Wikipedia corpus if the header is exactly ``id text title``; BEIR qrels if it is
  ``query-id corpus-id score``; a headerless ``id<TAB>text`` file (``id-text``: MIRACL and Mr. TyDi
  topics, MS MARCO) if it has two columns and the first cell is not a column name; else a table with a
  header;
- ``.csv``: a table with a header;
- ``.jsonl``: by the first record's keys: Tevatron (``query_id``, ``positive_passages``), SWIM-IR
  (``_id``, ``code``, ``query``), XOR-TyDi questions (``question``, ``lang``), BEIR (``_id``,
  ``text``), Pyserini (``id``, ``contents``), MIRACL (``docid``, ``text``), else xdr's own;
- ``.json``: DPR if the document is a list, SQuAD if it is an object.

A trailing ``.gz`` is looked through for the text formats. Table formats take ``fields=`` to map other
column names (:mod:`xdr.data.generic`); queries without a language take ``lang=`` or are detected
(:mod:`xdr.data.language`). The sniffing above is hand-written: no library tells these IR layouts
apart, and each rule is one line.
"""

from __future__ import annotations

import csv
import itertools
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from xdr.data._io import base_suffix, first_char, iter_jsonl, open_text, read_errors
from xdr.data.dpr import read_dpr, read_tevatron
from xdr.data.generic import (
    GENERIC_FORMATS,
    read_generic_passages,
    read_generic_queries,
    write_passages,
    write_queries,
)
from xdr.data.irds import is_irds, read_irds_passages, read_irds_qrels, read_irds_queries
from xdr.data.lookup import lookup_passages, lookup_texts
from xdr.data.runs import Run, read_run, read_xor_submission, write_run, write_trec, write_xor_json
from xdr.data.schema import Passage, Query, TrainingExample
from xdr.data.squad import XQuADR, read_squad_paragraphs, read_squad_training, read_xquad_r
from xdr.data.swimir import read_swimir, read_swimir_passages
from xdr.data.trec import BEIR_QRELS_HEADER, read_beir_qrels, read_trec_qrels, write_qrels
from xdr.data.xor import WIKI_HEADER, read_question_translations, read_xor_questions, read_xor_wiki
from xdr.errors import DataError, XdrError

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

PASSAGE_FORMATS = (*GENERIC_FORMATS, "xor-wiki", "swimir", "squad", "irds")
QUERY_FORMATS = (*GENERIC_FORMATS, "xor", "irds")
TRAINING_FORMATS = ("dpr", "tevatron", "swimir", "squad")
SWIMIR_KEYS = {"_id", "code", "query"}
# A first cell like these is a header row, not a headerless file's first id.
ID_COLUMNS = {"id", "_id", "qid", "query_id", "query-id", "docid", "doc_id", "pid", "corpus-id"}
SHARD = re.compile(r"docs-(\d+)\.jsonl(\.gz)?")
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
    if {"_id", "text"} <= keys:
        return "beir"
    if {"id", "contents"} <= keys:
        return "pyserini"
    if {"docid", "text"} <= keys:
        return "miracl"
    return "jsonl"


def _tsv_format(path: str | Path) -> str:
    with open_text(path) as f, read_errors(path, lambda: 1):
        header = tuple(f.readline().rstrip("\r\n").split("\t"))
    if header == WIKI_HEADER:
        return "xor-wiki"
    if header == BEIR_QRELS_HEADER:
        return "beir-qrels"
    if len(header) == 2 and header[0].strip().lower() not in ID_COLUMNS and "id" not in header:
        return "id-text"
    return "tsv"


def detect_format(path: str | Path) -> str:
    """The format name of a file, from its suffix and first record (see the module docstring)."""
    if is_irds(path):
        return "irds"
    suffix = base_suffix(path)
    if suffix == ".parquet":
        if not Path(path).is_file():
            raise XdrError(f"{path}: no such file")
        try:
            names = pq.read_schema(path).names
        except (pa.ArrowException, OSError) as e:
            raise DataError(path, None, None, f"not a readable Parquet file: {e}") from None
        return "swimir" if set(names) >= SWIMIR_KEYS else "parquet"
    if suffix == ".tsv":
        return _tsv_format(path)
    if suffix == ".csv":
        return "csv"
    if suffix == ".jsonl":
        return _jsonl_format(path)
    if suffix == ".json":
        return {"[": "dpr", "{": "squad"}.get(first_char(path), "json")
    raise XdrError(
        f"{path}: cannot tell the format from the name (.jsonl .tsv .csv .parquet .json, or irds:<id>); "
        "pass format="
    )


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


def _dir_files(path: Path, what: str) -> list[Path]:
    """The files a dataset directory holds for ``what``: BEIR's ``<what>.jsonl``, or MIRACL's corpus shards."""
    for name in (f"{what}.jsonl", f"{what}.jsonl.gz"):
        if (path / name).is_file():
            return [path / name]
    shards = [p for p in path.iterdir() if SHARD.fullmatch(p.name)] if what == "corpus" else []
    if not shards:
        expected = f"{what}.jsonl" + (" or MIRACL's docs-<n>.jsonl.gz shards" if what == "corpus" else "")
        raise XdrError(f"{path}: is a directory without {expected}; give the file")
    return sorted(shards, key=lambda p: int(SHARD.fullmatch(p.name).group(1)))  # type: ignore[union-attr]


def _generic_format(path: str | Path, fmt: str, fields: Mapping[str, str] | None) -> str:
    """A headerless file cannot have its columns renamed: with ``fields`` its first row is a header."""
    if fields and fmt not in GENERIC_FORMATS:
        raise XdrError(f"{path}: fields= maps columns of {', '.join(GENERIC_FORMATS)} files, not {fmt!r}")
    return "tsv" if fields and fmt == "id-text" else fmt


def read_passages(
    path: str | Path, format: str | None = None, *, fields: Mapping[str, str] | None = None,
    check_duplicates: bool = True,
) -> Iterator[Passage]:
    """Stream a corpus. ``fields`` maps ``id``/``text``/``title`` to other column names. Duplicate ids are
    errors unless ``check_duplicates=False`` (saves memory)."""
    if not is_irds(path) and Path(path).is_dir():
        files = _dir_files(Path(path), "corpus")
        if len(files) > 1:  # shards of one corpus: ids are checked across all of them
            shards = (read_passages(f, format, fields=fields, check_duplicates=False) for f in files)
            return _unique(itertools.chain.from_iterable(shards), path, check_duplicates)
        path = files[0]
    fmt = _generic_format(path, format or detect_format(path), fields)
    if fmt in GENERIC_FORMATS:
        return read_generic_passages(path, fmt, fields=fields, check_duplicates=check_duplicates)
    if fmt == "irds":
        return read_irds_passages(str(path), check_duplicates=check_duplicates)
    if fmt == "xor-wiki":
        return read_xor_wiki(path, check_duplicates=check_duplicates)
    if fmt == "swimir":
        return read_swimir_passages(path)
    if fmt == "squad":
        return read_squad_paragraphs(path)
    raise _unsupported(path, fmt, "passages", PASSAGE_FORMATS)


def _unique(passages: Iterator[Passage], where: str | Path, check: bool) -> Iterator[Passage]:
    seen: set[str] = set()
    for p in passages:
        if check:
            if p.id in seen:
                raise XdrError(f"{where}: duplicate passage id {p.id!r} across its shards")
            seen.add(p.id)
        yield p


def read_queries(
    path: str | Path, format: str | None = None, *, fields: Mapping[str, str] | None = None,
    lang: str | None = None, check_duplicates: bool = True,
) -> Iterator[Query]:
    """Stream a query set. ``fields`` maps ``id``/``text``/``lang``/``answers`` to other column names;
    ``lang`` is the language of queries whose row has none (else it is detected, with a warning);
    duplicate ids are errors unless ``check_duplicates=False``."""
    if not is_irds(path) and Path(path).is_dir():
        path = _dir_files(Path(path), "queries")[0]
    fmt = _generic_format(path, format or detect_format(path), fields)
    if fmt in GENERIC_FORMATS:
        return read_generic_queries(path, fmt, fields=fields, lang=lang, check_duplicates=check_duplicates)
    if fmt == "irds":
        return read_irds_queries(str(path), lang=lang, check_duplicates=check_duplicates)
    if lang is not None:
        raise XdrError(f"{path}: lang= is for queries without a language; format {fmt!r} records one per row")
    if fmt == "xor":
        return read_xor_questions(path, check_duplicates=check_duplicates)
    raise _unsupported(path, fmt, "queries", QUERY_FORMATS)


def read_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """query id -> {doc id: relevance} from TREC qrels (``qid 0 docid rel``), a BEIR ``qrels/*.tsv``
    (header ``query-id corpus-id score``) or ``irds:<id>``."""
    if is_irds(path):
        return read_irds_qrels(str(path))
    if base_suffix(path) == ".tsv" and _tsv_format(path) == "beir-qrels":
        return read_beir_qrels(path)
    return read_trec_qrels(path)


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
