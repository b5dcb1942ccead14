"""Import the queries the xQG authors released (``ielab/xor-tydi-xqg-augmented``) as a generate artifact.

The released JSONL has one passage per line: ``{"docid", "text", "generated_queries": {lang: [query,
...]}}`` (``title`` optional). Converting it to the same shards as :func:`run_generation` lets the
paper's own queries and ours go through the same filters, statistics and augmentation.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from xdr.artifacts import input_fingerprint, is_done, start_artifact
from xdr.data.schema import Passage
from xdr.errors import DataError, XdrError
from xdr.generate.artifact import STAGE, QueryGroup, shard_params, write_shards
from xdr.generate.filters import FilterSettings
from xdr.generate.run import DEFAULT_FILTERS
from xdr.generate.stats import finish
from xdr.langs import normalize_lang

RELEASED = "ielab/xor-tydi-xqg-augmented"

Record = tuple[Passage, dict[str, list[str]]]


def _open(path: Path) -> IO[str]:
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else path.open(encoding="utf-8")


def _parse(path: Path, line: int, raw: str, required: list[str]) -> Record:
    try:
        row: Any = json.loads(raw)
    except json.JSONDecodeError as e:
        raise DataError(path, line, None, f"not valid JSON ({e.msg})") from None
    if not isinstance(row, dict):
        raise DataError(path, line, None, "expected a JSON object")
    docid = row.get("docid")
    if isinstance(docid, int) and not isinstance(docid, bool):
        docid = str(docid)
    if not isinstance(docid, str) or not docid:
        raise DataError(path, line, "docid", "missing or not a non-empty string")
    for field in ("text", "title"):
        if not isinstance(row.get(field, ""), str):
            raise DataError(path, line, field, "not a string")
    generated = row.get("generated_queries")
    if not isinstance(generated, dict):
        raise DataError(path, line, "generated_queries", "missing or not an object of language -> queries")
    queries: dict[str, list[str]] = {}
    for key, values in generated.items():
        field = f"generated_queries.{key}"
        try:
            lang = normalize_lang(key)
        except XdrError as e:
            raise DataError(path, line, field, str(e)) from None
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise DataError(path, line, field, "not a list of strings")
        queries[lang] = values
    for lang in required:
        if lang not in queries:
            raise DataError(path, line, f"generated_queries.{lang}", "missing (requested language)")
    return Passage(docid, row.get("text", ""), row.get("title", "")), queries


def read_released(path: str | Path, required: Iterable[str] = ()) -> Iterator[Record]:
    """Stream (passage, {lang: queries}) from the released JSONL (optionally gzipped); blank lines skipped.

    A row without one of the ``required`` languages is a :class:`DataError`.
    """
    p, need = Path(path), list(required)
    with _open(p) as f:
        for line, raw in enumerate(f, start=1):
            if raw.strip():
                yield _parse(p, line, raw, need)


def ingest_xqg(
    path: str | Path,
    out_dir: str | Path,
    *,
    langs: Iterable[str] | None = None,
    shard_size: int = 2000,
    filters: FilterSettings | None = DEFAULT_FILTERS,
) -> Path:
    """Convert the released JSONL into generate shards (``generator`` = the dataset id, ``seed`` null).

    ``langs`` selects and orders languages, and every passage must have them; by default each passage
    contributes all its languages in code order.
    """
    src = Path(path)
    codes = list(dict.fromkeys(normalize_lang(c) for c in langs)) if langs is not None else None
    out = Path(out_dir)
    params = {
        "generator": RELEASED,
        "source": input_fingerprint(src),
        "langs": codes,
        **shard_params(shard_size, filters),
    }
    start_artifact(out, STAGE, params)
    if is_done(out):
        return out

    def groups(chunk: list[Record]) -> Iterator[QueryGroup]:
        for passage, queries in chunk:
            for lang in codes or sorted(queries):
                yield QueryGroup(passage, lang, None, queries[lang])

    write_shards(
        out, read_released(src, codes or ()), docid=lambda r: r[0].id, groups=groups, generator=RELEASED,
        shard_size=shard_size, filters=filters,
    )
    finish(out)
    return out
