"""The generated-queries artifact: Parquet shards of one row per (passage, language, k).

Columns: ``docid, lang, k, query, generator, seed, keep, reason``. Rows are in corpus order, then
language (in the order the run was given), then ``k``; a shard holds every language of its passages, so
a later stage can merge-join the shards against the corpus in one streaming pass. Dropped rows stay in
the shards (``keep=False`` with a ``reason``) so statistics can be recomputed; readers take kept rows.

A kept generated query becomes a query of its own downstream (encoded, fused, max-sim scored) under the
id ``docid::lang::k``: this module owns that id format and the rule that generated queries are encoded
at :data:`GENERATED_QUERY_MAX_LENGTH` tokens, as in xQG.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import groupby, islice
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from xdr.artifacts import Stage, atomic_path, open_artifact, shard_name
from xdr.data.schema import Passage, Query
from xdr.errors import MismatchError, XdrError
from xdr.generate.filters import FilterSettings, filter_outputs

log = logging.getLogger(__name__)

STAGE = Stage.GENERATE
SUFFIX = ".parquet"
GENERATED_QUERY_MAX_LENGTH = 32  # xQG encodes generated queries at 32 tokens
SEP = "::"  # generated-query id = docid::lang::k; docids may hold SEP, lang and k never do
SCHEMA = pa.schema(
    [
        pa.field("docid", pa.string(), nullable=False),
        pa.field("lang", pa.string(), nullable=False),
        pa.field("k", pa.int32(), nullable=False),
        pa.field("query", pa.string()),  # null: the generator returned fewer than n outputs
        pa.field("generator", pa.string(), nullable=False),
        pa.field("seed", pa.int64()),  # per-(docid, lang) seed; null for ingested queries
        pa.field("keep", pa.bool_(), nullable=False),
        pa.field("reason", pa.string()),  # null when kept; otherwise one of filters.REASONS
    ]
)

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class QueryGroup:
    """The ``n`` outputs of one (passage, language); ``None`` marks an output that could not be parsed."""

    passage: Passage
    lang: str
    seed: int | None
    outputs: Sequence[str | None]


@dataclass(frozen=True, slots=True)
class GeneratedQuery:
    docid: str
    lang: str
    k: int
    query: str | None
    generator: str
    seed: int | None
    keep: bool
    reason: str | None


@dataclass(frozen=True, slots=True)
class ShardDone:
    """A shard's input records and its rows (kept or not): reported per shard, and summed, for progress."""

    records: int
    rows: int
    kept: int

    def __add__(self, other: ShardDone) -> ShardDone:
        return ShardDone(self.records + other.records, self.rows + other.rows, self.kept + other.kept)


def generated_query_id(docid: str, lang: str, k: int) -> str:
    return f"{docid}{SEP}{lang}{SEP}{k}"


def split_generated_id(qid: str) -> tuple[str, str, int]:
    """(docid, lang, k) of a generated-query id; ValueError when ``qid`` is not one."""
    docid, lang, k = qid.rsplit(SEP, 2)
    return docid, lang, int(k)


def shard_paths(out_dir: str | Path) -> list[Path]:
    """Completed shards in order (temp files of an interrupted write start with a dot and are skipped)."""
    return sorted(Path(out_dir).glob(f"part-*{SUFFIX}"))


def _table(groups: Iterable[QueryGroup], generator: str, filters: FilterSettings | None) -> pa.Table:
    rows = []
    for g in groups:
        reasons = filter_outputs(g.outputs, g.passage, g.lang, filters)
        for k, (query, reason) in enumerate(zip(g.outputs, reasons, strict=True)):
            rows.append((g.passage.id, g.lang, k, query, generator, g.seed, reason is None, reason))
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in SCHEMA.names]
    return pa.table(dict(zip(SCHEMA.names, columns, strict=True)), schema=SCHEMA)


def _check_resumed_shard(path: Path, shard: pa.Table, docids: list[str]) -> None:
    """A finished shard must hold the passages the input gives it now; else the input changed."""
    found = shard.column("docid").unique().to_pylist()
    if found != list(dict.fromkeys(docids)):
        raise MismatchError(
            f"{path}: holds other passages than the input gives this shard now (the input changed since the "
            "interrupted run); remove the directory or choose another --out"
        )


def shard_params(shard_size: int, filters: FilterSettings | None) -> dict[str, Any]:
    """The meta.json parameters every generate artifact shares (checked before anything is written)."""
    if shard_size < 1:
        raise XdrError(f"shard_size must be positive, not {shard_size}")
    return {"shard_size": shard_size, "filters": filters.as_dict() if filters else None}


def write_shards(
    out_dir: Path,
    records: Iterable[R],
    *,
    docid: Callable[[R], str],
    groups: Callable[[list[R]], Iterable[QueryGroup]],
    generator: str,
    shard_size: int,
    filters: FilterSettings | None,
    on_shard: Callable[[ShardDone], None] | None = None,
) -> None:
    """Write ``shard_size`` records per shard, each atomically; skip the shards a killed run finished.

    ``groups`` turns one shard's records into its query groups in row order; it is not called for a
    shard that already exists, so resuming costs only re-reading the input up to the first missing shard.
    ``on_shard`` hears about every shard, written or skipped, in order.
    """
    it = iter(records)
    i = 0
    while chunk := list(islice(it, shard_size)):
        path = out_dir / shard_name(i, SUFFIX)
        done = finished_shard(path, [docid(r) for r in chunk])
        if done is None:
            done = write_shard(path, len(chunk), groups(chunk), generator, filters)
        if on_shard is not None:
            on_shard(done)
        i += 1


def finished_shard(path: Path, docids: list[str]) -> ShardDone | None:
    """The counts of shard ``path`` if a killed run finished it (checked against the passages the input
    gives it now), else None."""
    if not path.exists():
        return None
    table = pq.read_table(path, columns=["docid", "keep"])
    _check_resumed_shard(path, table, docids)
    log.info("%s: done in an earlier run, skipped", path.name)
    return ShardDone(len(docids), table.num_rows, pc.sum(table["keep"]).as_py() or 0)


def write_shard(
    path: Path, records: int, groups: Iterable[QueryGroup], generator: str, filters: FilterSettings | None
) -> ShardDone:
    """Write one shard of ``records`` input records atomically (by the driver, or by a parallel worker)."""
    table = _table(groups, generator, filters)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    log.info("%s: %d passages, %d rows", path.name, records, table.num_rows)
    return ShardDone(records, table.num_rows, pc.sum(table["keep"]).as_py() or 0)


def read_generated(
    out_dir: str | Path, kept_only: bool = True, partial: bool = False, shards: int | None = None
) -> Iterator[GeneratedQuery]:
    """Stream the rows of a finished artifact, shard by shard, in row order.

    ``partial`` also reads a run that is still going or was stopped: its finished shards only (a shard
    file exists once it is complete), for experiments that report how much of the corpus was covered.
    ``shards`` reads only the first ones, so an experiment can pin its data while the run grows.
    """
    if not partial:
        open_artifact(out_dir, STAGE, what="a generate artifact (`xdr generate run`)")
    paths = shard_paths(out_dir)
    if shards is not None and not 0 < shards <= len(paths):
        raise XdrError(f"{out_dir}: asked for the first {shards} shards, it has {len(paths)} finished")
    for path in paths[:shards]:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=65536):
            for row in batch.to_pylist():
                if row["keep"] or not kept_only:
                    yield GeneratedQuery(**row)


def refilter(
    rows: Iterable[GeneratedQuery], passages: Mapping[str, Passage], settings: FilterSettings | None = None
) -> Iterator[GeneratedQuery]:
    """Re-decide ``keep``/``reason`` of stored rows under ``settings`` (default: today's rules).

    A run's shards outlive changes to the filters; since every output is stored, an experiment can apply
    one rule set to shards written under different ones without regenerating. ``rows`` must come in
    artifact order (each passage's languages together, ``k`` ascending), as ``read_generated(...,
    kept_only=False)`` yields them, because duplicates are judged against earlier outputs.
    """
    settings = settings or FilterSettings()
    for (docid, lang), group in groupby(rows, key=lambda g: (g.docid, g.lang)):
        if docid not in passages:
            raise XdrError(f"generated row for passage {docid!r}, which is not in the corpus given")
        items = list(group)
        reasons = filter_outputs([g.query for g in items], passages[docid], lang, settings)
        for g, reason in zip(items, reasons, strict=True):
            yield replace(g, keep=reason is None, reason=reason)


def generated_as_queries(out_dir: str | Path) -> Iterator[Query]:
    """The kept generated queries as Query records under their generated-query ids, in artifact order."""
    for g in read_generated(out_dir):
        yield Query(generated_query_id(g.docid, g.lang, g.k), g.lang, g.query or "")
