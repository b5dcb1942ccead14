"""The encode stage: texts in, an embedding store out (the layout is in :mod:`xdr.embeddings`).

Encoding streams the input shard by shard: a killed run leaves only complete shards, and the rerun
streams the input again, checks the ids of the complete shards against it without encoding them, and
carries on with the first missing shard.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sized
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
from rich.progress import Progress, TaskID

from xdr.artifacts import Stage
from xdr.data import count_rows
from xdr.data.schema import Passage, Query
from xdr.embeddings import EmbeddingWriter, IdGuard, store_params
from xdr.errors import XdrError
from xdr.models.base import Kind, TextEncoder, stage_budget
from xdr.progress import row_progress

if TYPE_CHECKING:
    from typing_extensions import Unpack

PLURAL: dict[Kind, str] = {"passage": "passages", "query": "queries"}


def _encode_shard(
    rows: list[tuple[str, str]], encoder: TextEncoder, kind: Kind, batch_size: int, chunk_size: int,
    progress: Progress, task: TaskID,
) -> np.ndarray:
    emb = np.empty((len(rows), encoder.dim), dtype=np.float32)
    for start in range(0, len(rows), chunk_size):
        texts = [text for _, text in rows[start:start + chunk_size]]
        vecs = encoder.encode(texts, kind, progress=False, **stage_budget(encoder.spec, kind, batch_size))
        if not np.isfinite(vecs).all():
            raise XdrError(
                f"the model produced non-finite vectors for rows {start}..{start + len(texts) - 1} of this "
                "shard; a float16 model can overflow, try dtype float32 or bfloat16"
            )
        emb[start:start + len(texts)] = vecs
        progress.advance(task, len(texts))
    return emb


def encode_records(
    records: Iterable[tuple[str, str]],
    encoder: TextEncoder,
    out_dir: str | Path,
    kind: Kind,
    *,
    shard_size: int = 100_000,
    batch_size: int = 64,
    chunk_size: int = 8192,
    source: str | Path | dict[str, Any] | None = None,
    total: int | None = None,
    progress: bool = True,
) -> Path:
    """Encode ``(id, text)`` records into an embedding store at ``out_dir``, resuming an unfinished one.

    ``chunk_size`` rows go to the encoder per call: many batches, so the encoder can bucket by length,
    yet few enough that the progress bar moves. Memory is bounded by one shard of texts and vectors.
    ``source`` identifies the input in the meta; a path is fingerprinted (size, mtime), so that a changed
    input file is refused on resume instead of being mixed with the shards of the old one. The progress
    bar's ``total`` (for its time left) is, when not given, the path's row count if that is cheap to get
    (:func:`xdr.data.count_rows`); otherwise it shows the rate alone.
    """
    if shard_size <= 0 or chunk_size <= 0:
        raise XdrError(f"shard_size and chunk_size must be positive (got {shard_size}, {chunk_size})")
    out = Path(out_dir)
    it = iter(records)
    first = next(it, None)
    if first is None:
        raise XdrError(f"empty corpus: no {kind} records to encode into {out}")
    writer = EmbeddingWriter(out, Stage.ENCODE, store_params(
        encoder.spec, kind, encoder.dim, shard_size, normalized=encoder.spec.normalize, source=source))
    if writer.finished:
        return out
    guard = IdGuard(out)
    if total is None and isinstance(source, (str, Path)):
        total = count_rows(source)
    label = f"encode {PLURAL[kind]}"
    rows_total = n_shards = 0
    with row_progress(progress) as bar:
        task = bar.add_task(label, total=total)
        shards = _batched(itertools.chain([first], it), shard_size)
        for i, rows in enumerate(shards):
            ids = [rid for rid, _ in rows]
            if i < writer.kept:
                writer.check_kept(i, ids)
                bar.update(task, description=f"{label} (kept {i + 1} done shards)")
                bar.advance(task, len(rows))
            guard.add(ids)
            if i >= writer.kept:
                writer.write(i, ids, _encode_shard(rows, encoder, kind, batch_size, chunk_size, bar, task))
            rows_total += len(rows)
            n_shards += 1
    return writer.finish(rows=rows_total, shards=n_shards)


def _batched(it: Iterator[tuple[str, str]], n: int) -> Iterator[list[tuple[str, str]]]:
    while batch := list(itertools.islice(it, n)):
        yield batch


def _len_or_none(x: object) -> int | None:
    return len(x) if isinstance(x, Sized) else None


class EncodeOptions(TypedDict, total=False):
    """The keyword options of :func:`encode_records` that its wrappers pass through."""

    shard_size: int
    batch_size: int
    chunk_size: int
    source: str | Path | dict[str, Any] | None
    progress: bool


def encode_passages(
    passages: Iterable[Passage], encoder: TextEncoder, out_dir: str | Path, **options: Unpack[EncodeOptions]
) -> Path:
    """Encode a corpus; each passage is seen as title + separator + text, per the model spec."""
    sep = encoder.spec.title_separator
    records = ((p.id, p.joined(sep)) for p in passages)
    return encode_records(records, encoder, out_dir, "passage", total=_len_or_none(passages), **options)


def encode_queries(
    queries: Iterable[Query], encoder: TextEncoder, out_dir: str | Path, **options: Unpack[EncodeOptions]
) -> Path:
    """Encode queries into the same store layout, e.g. generated queries that are searched later."""
    records = ((q.id, q.text) for q in queries)
    return encode_records(records, encoder, out_dir, "query", total=_len_or_none(queries), **options)
