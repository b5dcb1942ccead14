"""The encode stage: texts in, an embedding store out (the layout is in :mod:`xdr.embeddings`).

Encoding streams the input shard by shard (on this process or on Ray workers, :mod:`xdr.engine`): a
killed run leaves only complete shards, and the rerun streams the input again, checks the ids of the
complete shards against it without encoding them, and encodes the missing ones.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sized
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from xdr.artifacts import Stage
from xdr.config import ModelSpec
from xdr.data import count_rows
from xdr.data.schema import Passage, Query
from xdr.embeddings import EmbeddingWriter, IdGuard, store_params, write_shard
from xdr.engine import Advance, EngineSettings, ShardTask, given, shard_count, worker_pool
from xdr.errors import XdrError
from xdr.models.base import Kind, TextEncoder, stage_budget

if TYPE_CHECKING:
    from typing_extensions import Unpack

PLURAL: dict[Kind, str] = {"passage": "passages", "query": "queries"}


@dataclass(frozen=True, slots=True)
class _ShardJob:
    """What every shard of one encode run shares; sent to the workers with each shard's rows."""

    out: Path
    kind: Kind
    batch_size: int
    chunk_size: int


def _encode_shard(job: _ShardJob, encoder: TextEncoder, shard: tuple[int, list[tuple[str, str]]],
                  advance: Advance) -> int:
    """Encode one shard and write it (ids, then vectors) under its own name; runs where the model is."""
    i, rows = shard
    emb = np.empty((len(rows), encoder.dim), dtype=np.float32)
    for start in range(0, len(rows), job.chunk_size):
        texts = [text for _, text in rows[start:start + job.chunk_size]]
        vecs = encoder.encode(texts, job.kind, progress=False, **stage_budget(encoder.spec, job.kind, job.batch_size))
        if not np.isfinite(vecs).all():
            raise XdrError(
                f"the model produced non-finite vectors for rows {start}..{start + len(texts) - 1} of shard {i}; "
                "a float16 model can overflow, try dtype float32 or bfloat16"
            )
        emb[start:start + len(texts)] = vecs
        advance(len(texts))
    write_shard(job.out, i, [rid for rid, _ in rows], emb)
    return len(rows)


@dataclass(frozen=True, slots=True)
class EncoderLoader:
    """A picklable recipe for an encoder: each worker of a run loads the weights once, where it runs
    (the driver of a Ray run never loads them). Stages take it wherever they take a loaded encoder."""

    spec: ModelSpec
    device: str | None = None
    tokenizer_workers: int | None = 0  # processes tokenising ahead of the model; None: on a GPU, by input size

    def __call__(self) -> TextEncoder:
        from xdr.models.encoder import Encoder

        return Encoder.load(self.spec, device=self.device, tokenizer_workers=self.tokenizer_workers)


def encoder_setup(encoder: TextEncoder | EncoderLoader) -> Callable[[], TextEncoder]:
    """The engine's worker setup for ``encoder``: load it from its recipe, or take the loaded one."""
    return encoder if isinstance(encoder, EncoderLoader) else partial(given, encoder)


def _dim(encoder: TextEncoder) -> int:
    return encoder.dim


def encode_records(
    records: Iterable[tuple[str, str]],
    encoder: TextEncoder | EncoderLoader,
    out_dir: str | Path,
    kind: Kind,
    *,
    shard_size: int = 100_000,
    batch_size: int = 64,
    chunk_size: int = 8192,
    source: str | Path | dict[str, Any] | None = None,
    total: int | None = None,
    progress: bool = True,
    engine: EngineSettings | None = None,
) -> Path:
    """Encode ``(id, text)`` records into an embedding store at ``out_dir``, resuming an unfinished one.

    ``encoder`` is a loaded encoder or an :class:`EncoderLoader`, which each worker of ``engine`` (default:
    this process) calls once; a loaded encoder is pickled to each Ray worker. ``chunk_size`` rows go to
    the encoder per call: many batches, so the encoder can bucket by length, yet few enough that the
    progress bar moves. Memory is bounded by one
    shard of texts and vectors per worker and shard in flight. ``source`` identifies the input in the
    meta; a path is fingerprinted, so that a changed input file is refused on resume instead of being
    mixed with the shards of the old one. The progress bar's ``total`` (for its time left) is, when not
    given, the path's row count if that is cheap to get (:func:`xdr.data.count_rows`); otherwise it shows
    the rate alone.
    """
    if shard_size <= 0 or chunk_size <= 0:
        raise XdrError(f"shard_size and chunk_size must be positive (got {shard_size}, {chunk_size})")
    out = Path(out_dir)
    it = iter(records)
    # the first shard is read (and so checked) before any model loads: a malformed line among the first
    # shard_size is reported in a second, not after the weights are in memory
    head = list(itertools.islice(it, shard_size))
    if not head:
        raise XdrError(f"empty corpus: no {kind} records to encode into {out}")
    spec = encoder.spec
    with worker_pool(engine, encoder_setup(encoder)) as pool:
        dim = pool.ask(_dim)
        writer = EmbeddingWriter(out, Stage.ENCODE, store_params(
            spec, kind, dim, shard_size, normalized=spec.normalize, source=source))
        if writer.finished:
            return out
        guard = IdGuard(out)
        if total is None and isinstance(source, (str, Path)):
            total = count_rows(source)
        counts = {"rows": 0, "shards": 0}

        def tasks() -> Iterator[ShardTask[tuple[int, list[tuple[str, str]]]]]:
            for i, rows in enumerate(_batched(itertools.chain(head, it), shard_size)):
                ids = [rid for rid, _ in rows]
                done = writer.shard_done(i)
                if done:
                    writer.check_kept(i, ids)
                guard.add(ids)
                counts["rows"] += len(rows)
                counts["shards"] += 1
                yield ShardTask(i, len(rows), None if done else (i, rows))

        job = _ShardJob(out, kind, batch_size, chunk_size)
        pool.run(tasks(), partial(_encode_shard, job), label=f"encode {PLURAL[kind]}", total_rows=total,
                 total_shards=shard_count(total, shard_size), progress=progress, out_dir=out)
    return writer.finish(rows=counts["rows"], shards=counts["shards"])


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
    engine: EngineSettings | None


def encode_passages(
    passages: Iterable[Passage], encoder: TextEncoder | EncoderLoader, out_dir: str | Path,
    **options: Unpack[EncodeOptions],
) -> Path:
    """Encode a corpus; each passage is seen as title + separator + text, per the model spec."""
    sep = encoder.spec.title_separator
    records = ((p.id, p.joined(sep)) for p in passages)
    return encode_records(records, encoder, out_dir, "passage", total=_len_or_none(passages), **options)


def encode_queries(
    queries: Iterable[Query], encoder: TextEncoder | EncoderLoader, out_dir: str | Path,
    **options: Unpack[EncodeOptions],
) -> Path:
    """Encode queries into the same store layout, e.g. generated queries that are searched later."""
    records = ((q.id, q.text) for q in queries)
    return encode_records(records, encoder, out_dir, "query", total=_len_or_none(queries), **options)
