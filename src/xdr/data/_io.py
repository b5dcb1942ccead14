"""Shared plumbing for the readers: opening files, iterating records, and checking fields.

Every reader reports a bad record the same way (file, 1-based line or row, field), so the checks live
here once rather than in each format module. Everything streams: a reader holds one record (or one
Parquet batch) at a time, never a whole corpus. Parsing is the libraries': json, csv, pyarrow and ijson
(JSON arrays too big to load). What stays hand-written is the located checks of :class:`Record` (no
validation library reports file:line:field for a streamed row without building a model per row) and
the split of headerless ``id<TAB>text`` lines, which are not CSV-quoted.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import ijson
import pyarrow as pa
import pyarrow.parquet as pq

from xdr.errors import DataError, XdrError
from xdr.langs import normalize_lang

PARQUET_BATCH_ROWS = 8192
TABLE_FORMATS = ("jsonl", "tsv", "csv", "parquet")


class RowError(DataError):
    """A bad record in a Parquet file, which has rows rather than lines: the message says 'row N'."""

    def __init__(self, path: str | Path, row: int, field: str | None, problem: str) -> None:
        super().__init__(path, row, field, problem)
        where = f"{path}: row {row}" + (f": field '{field}'" if field is not None else "")
        self.args = (f"{where}: {problem}",)


def json_type(value: Any) -> str:
    """The JSON name of a value's type, for messages a user can match against their file."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "list", dict: "object"}.get(type(value), type(value).__name__)


class Record:
    """One input record and where it came from; the getters turn bad values into located DataErrors."""

    __slots__ = ("line", "obj", "path", "prefix", "rows")

    def __init__(
        self, obj: dict[str, Any], path: str | Path, line: int | None, prefix: str = "", rows: bool = False
    ) -> None:
        self.obj, self.path, self.line, self.prefix, self.rows = obj, str(path), line, prefix, rows

    def error(self, field: str | None, problem: str) -> DataError:
        name = f"{self.prefix}{field}" if field is not None else (self.prefix.rstrip(".") or None)
        if self.rows and self.line is not None:
            return RowError(self.path, self.line, name, problem)
        return DataError(self.path, self.line, name, problem)

    def text(self, field: str, *, required: bool = True) -> str:
        """A string field; a required one must be present and not blank."""
        value = self.obj.get(field)
        if value is None:
            if required:
                raise self.error(field, "missing" if field not in self.obj else "is null")
            return ""
        if not isinstance(value, str):
            raise self.error(field, f"expected a string, got {json_type(value)}")
        if required and not value.strip():
            raise self.error(field, "empty")
        return value

    def ident(self, field: str) -> str:
        """An id: a non-empty string, or an integer (common in corpora), kept as its decimal string."""
        value = self.obj.get(field)
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return self.text(field)

    def answers(self, field: str = "answers") -> tuple[str, ...]:
        """An optional list of answer strings; absent or null means no answers."""
        value = self.obj.get(field)
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.error(field, f"expected a list of strings, got {json_type(value)}")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise self.error(f"{field}[{i}]", f"expected a string, got {json_type(item)}")
        return tuple(value)

    def lang(self, field: str = "lang") -> str:
        """A language code, normalised (``" ar"`` becomes ``"ar"``); an unknown code is an error."""
        raw = self.text(field)
        try:
            return normalize_lang(raw)
        except XdrError as e:
            raise self.error(field, str(e)) from None

    def records(self, field: str, *, required: bool = True) -> list[Record]:
        """A list of nested objects, each a Record whose errors name the full path (``ctxs[2].text``)."""
        value = self.obj.get(field)
        if value is None:
            if required:
                raise self.error(field, "missing" if field not in self.obj else "is null")
            return []
        if not isinstance(value, list):
            raise self.error(field, f"expected a list of objects, got {json_type(value)}")
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise self.error(f"{field}[{i}]", f"expected an object, got {json_type(item)}")
            out.append(Record(item, self.path, self.line, f"{self.prefix}{field}[{i}].", self.rows))
        return out


class UniqueIds:
    """Remembers the ids seen so far: a repeated id would silently shadow a record in every later stage.

    A set of 18M short strings costs a couple of GB; callers that know their input is clean can pass
    ``enabled=False``.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.seen: set[str] | None = set() if enabled else None

    def check(self, record: Record, field: str, value: str) -> str:
        if self.seen is not None:
            if value in self.seen:
                raise record.error(field, f"duplicate id {value!r}")
            self.seen.add(value)
        return value


def base_suffix(path: str | Path) -> str:
    """The format suffix, looking through a trailing ``.gz``: ``a.jsonl.gz`` -> ``.jsonl``."""
    p = Path(path)
    if p.suffix == ".gz":
        p = p.with_suffix("")
    return p.suffix.lower()


def open_text(path: str | Path) -> TextIO:
    """Open UTF-8 text, gzip-compressed when the name ends in ``.gz``; a BOM is dropped.

    ``newline=""`` keeps line endings as they are, which the csv module needs for quoted fields.
    """
    p = Path(path)
    try:
        if p.suffix == ".gz":
            return gzip.open(p, "rt", encoding="utf-8-sig", newline="")
        return open(p, encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise XdrError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise XdrError(f"{p}: is a directory, expected a file") from None


@contextlib.contextmanager
def read_errors(path: str | Path, line: Callable[[], int | None]) -> Iterator[None]:
    """Turn undecodable bytes and truncated ``.gz`` files into DataErrors located at ``line()``.

    Text is decoded in chunks, so a bad byte is on the reported line or a few after it.
    """
    try:
        yield
    except UnicodeDecodeError:
        raise DataError(path, line(), None, "not valid UTF-8 (here or a few lines below)") from None
    except (OSError, EOFError) as e:
        raise DataError(path, line(), None, f"cannot read: {e}") from None


def numbered_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line) pairs."""
    n = 0
    with open_text(path) as f, read_errors(path, lambda: n + 1):
        for n, line in enumerate(f, 1):
            yield n, line


def iter_jsonl(path: str | Path) -> Iterator[Record]:
    """One Record per non-blank line; each line must be a JSON object."""
    for n, line in numbered_lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(path, n, None, f"bad JSON: {e.msg} (column {e.colno})") from None
        if not isinstance(obj, dict):
            raise DataError(path, n, None, f"expected a JSON object, got {json_type(obj)}")
        yield Record(obj, path, n)


DELIMITERS = {"tsv": ("\t", "tab-separated"), "csv": (",", "comma-separated")}


def iter_delimited(
    path: str | Path, required: Sequence[str], *, fmt: str = "tsv", exact_header: Sequence[str] | None = None
) -> Iterator[Record]:
    """Records of a tab- (``fmt="tsv"``) or comma-separated (``"csv"``) file whose first row names the columns.

    Fields may be double-quoted with ``""`` escapes, as DPR's ``psgs_w100.tsv`` (and the XOR copy of it)
    writes text that contains quotes, and as every CSV writer does. Every row must have as many columns
    as the header. The csv module does the parsing; only the checks and locations are ours.
    """
    delimiter, separated = DELIMITERS[fmt]
    start = 1
    with open_text(path) as f, read_errors(path, lambda: start):
        reader = csv.reader(f, delimiter=delimiter)
        try:
            header = next(reader, None)
            if header is None:
                raise DataError(path, 1, None, "empty file; expected a header row")
            if exact_header is not None and tuple(header) != tuple(exact_header):
                raise DataError(
                    path, 1, None, f"header is {header}, expected exactly {list(exact_header)}"
                )
            for name in required:
                if name not in header:
                    raise DataError(path, 1, name, f"missing column (the header row is {header})")
            if len(set(header)) != len(header):
                raise DataError(path, 1, None, f"repeated column name in header {header}")
            start = reader.line_num + 1
            for row in reader:
                if row:
                    if len(row) != len(header):
                        raise DataError(
                            path, start, None,
                            f"expected {len(header)} {separated} columns ({', '.join(header)}), got {len(row)}",
                        )
                    yield Record(dict(zip(header, row, strict=True)), path, start)
                start = reader.line_num + 1
        except csv.Error as e:
            raise DataError(path, start, None, f"bad {fmt.upper()}: {e}") from None


def iter_id_text(path: str | Path) -> Iterator[Record]:
    """Records ``{"id", "text"}`` of a headerless two-column TSV (MS MARCO, MIRACL and Mr. TyDi topics).

    These files are not CSV-quoted (a question may start with a quote), so a line is split at its tab.
    """
    for n, line in numbered_lines(path):
        if not line.strip():
            continue
        cols = line.rstrip("\r\n").split("\t")
        if len(cols) != 2:
            raise DataError(path, n, None, f"expected 2 tab-separated columns (id, text), got {len(cols)}")
        yield Record({"id": cols[0], "text": cols[1]}, path, n)


def iter_parquet(path: str | Path, required: Sequence[str], optional: Sequence[str] = ()) -> Iterator[Record]:
    """Records of a Parquet file, read one record batch at a time; only the named columns are loaded."""
    try:
        pf = pq.ParquetFile(path)
    except FileNotFoundError:
        raise XdrError(f"{path}: no such file") from None
    except (pa.ArrowException, OSError) as e:
        raise DataError(path, None, None, f"not a readable Parquet file: {e}") from None
    names = pf.schema_arrow.names
    for name in required:
        if name not in names:
            raise DataError(path, None, name, f"missing column (the file has {names})")
    columns = [c for c in (*required, *optional) if c in names]
    row = 0
    for batch in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=columns):
        for obj in batch.to_pylist():
            row += 1
            yield Record(obj, path, row, rows=True)


def iter_table(
    path: str | Path, fmt: str, required: Sequence[str], optional: Sequence[str] = ()
) -> Iterator[Record]:
    """Records of a JSONL, TSV, CSV or Parquet file, so record-level formats need one reader, not four."""
    if fmt == "jsonl":
        return iter_jsonl(path)
    if fmt in DELIMITERS:
        return iter_delimited(path, required, fmt=fmt)
    if fmt == "parquet":
        return iter_parquet(path, required, optional)
    raise XdrError(f"{path}: unsupported format {fmt!r}; expected {', '.join(TABLE_FORMATS)}")


def table_format(path: str | Path) -> str:
    """jsonl, tsv, csv or parquet from the file name."""
    fmt = base_suffix(path).lstrip(".")
    if fmt not in TABLE_FORMATS:
        raise XdrError(f"{path}: cannot tell the format from the name; use .jsonl, .tsv, .csv or .parquet")
    return fmt


def load_json(path: str | Path) -> Any:
    """A whole JSON document, for files that are one object (SQuAD); bad JSON names its line."""
    with open_text(path) as f, read_errors(path, lambda: None):
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise DataError(path, e.lineno, None, f"bad JSON: {e.msg} (column {e.colno})") from None


def first_char(path: str | Path) -> str:
    """The first non-whitespace character of a text file ("" when there is none), to tell JSON kinds apart."""
    with open_text(path) as f, read_errors(path, lambda: None):
        while (c := f.read(1)) and c.isspace():
            pass
    return c


def open_binary(path: str | Path) -> BinaryIO:
    """Open bytes, gunzipping a ``.gz``, past a UTF-8 BOM (which JSON parsers reject)."""
    p = Path(path)
    try:
        f = gzip.open(p, "rb") if p.suffix == ".gz" else open(p, "rb")  # noqa: SIM115 (the caller closes it)
    except FileNotFoundError:
        raise XdrError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise XdrError(f"{p}: is a directory, expected a file") from None
    if f.read(3) != b"\xef\xbb\xbf":
        f.seek(0)
    return f


def iter_json_array(path: str | Path) -> Iterator[Record]:
    """The elements of a file holding one JSON array, decoded one at a time with ijson.

    DPR training files are single arrays of several GB, too big for ``json.load``; ijson (its C
    backend) streams them with memory for one element. It reports no line numbers, so a Record is
    located by its element index instead: errors name the field as ``[3].positive_ctxs[0].text``.
    """
    if first_char(path) != "[":
        raise DataError(path, None, None, "expected a JSON array ('[') at the start of the file")
    done = 0
    with open_binary(path) as f:
        try:
            for obj in ijson.items(f, "item", use_float=True):
                if not isinstance(obj, dict):
                    raise DataError(path, None, f"[{done}]", f"expected an object, got {json_type(obj)}")
                yield Record(obj, path, None, f"[{done}].")
                done += 1
        except ijson.JSONError as e:
            raw = e.args[0] if e.args else ""
            message = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            first_line = message.splitlines()[0] if message else type(e).__name__
            raise DataError(path, None, f"[{done}]", f"bad JSON: {first_line}") from None
        except (OSError, EOFError) as e:
            raise DataError(path, None, None, f"cannot read: {e}") from None
