"""The augment stage (xQG): fold generated queries' embeddings into each passage embedding, offline.

    E'(p) = (1 - alpha) * E(p) + alpha * F({E(q) : q generated for p})

with F = sum, exactly as the xQG paper's code computes it (alpha = 0.01 over 7 languages x 5 queries),
or F = mean. The sum form lets the *number* of generated queries decide the ranking when that number
varies between passages (after filtering), because e5-style cosine scores sit in a narrow band; the
mean form does not. A passage with no generated queries keeps E(p) unscaled, or every augmented
passage would outrank it.

Both stores stream: passages and generated queries are in corpus order (generation writes them so),
so the two are merge-joined shard by shard and memory is bounded by one chunk. The output has the
embedding-store layout (one output shard per passage shard) so `xdr index` reads it directly; a killed
run resumes at the first missing shard.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from xdr.artifacts import META, Stage, input_identity, is_done, open_artifact, read_meta, run_id, shard_name
from xdr.config import ModelSpec
from xdr.embeddings import (
    IDS_SUFFIX,
    VECTORS_SUFFIX,
    EmbeddingWriter,
    embeddings_meta,
    iter_shard_ids,
    iter_shards,
    read_ids,
    store_params,
    write_shard,
)
from xdr.encode import EncoderLoader, encoder_setup
from xdr.engine import Advance, EngineSettings, ShardTask, given, worker_pool
from xdr.errors import XdrError, XdrWarning
from xdr.generate.artifact import GENERATED_QUERY_MAX_LENGTH, generated_as_queries, split_generated_id
from xdr.langs import normalize_lang
from xdr.models.base import TextEncoder, stage_budget

Fusion = Literal["sum", "mean"]


class FusionSettings(BaseModel):
    """How generated queries are folded into a passage vector; recorded in the augment artifact's meta.

    The defaults (mean at alpha 0.3, re-normalised) are what ``docs/results/xqg.md`` measured best: +1.62
    MRR@10 on XQuAD-R with oracle queries, +1.36 with the offline generator. The xQG paper's form, sum at
    alpha 0.01, lets the *number* of kept queries decide the ranking once filters make it uneven (MRR@10
    fell from 89.6 to 80.2 on a user's corpus); it stays available for reproduction.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    alpha: float = Field(default=0.3, ge=0.0, le=1.0, description="weight of the generated queries")
    mode: Fusion = "mean"
    langs: tuple[str, ...] | None = Field(default=None, description="fold in only queries in these languages")
    renormalize: bool = True

    @field_validator("langs")
    @classmethod
    def _codes(cls, langs: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return None if langs is None else tuple(sorted({normalize_lang(x) for x in langs}))
EMBEDDING_INPUTS = (Stage.ENCODE,)  # generated queries encoded by `xdr encode --kind generated`


def fuse(
    passages: np.ndarray, owner: np.ndarray, queries: np.ndarray, alpha: float, mode: Fusion,
    renormalize: bool = False,
) -> np.ndarray:
    """Fuse query vectors into passage vectors; ``owner[j]`` is the passage row of query row ``j``."""
    n = len(passages)
    counts = np.bincount(owner, minlength=n).astype(np.float32)
    sums = np.zeros_like(passages)
    np.add.at(sums, owner, queries)
    if mode == "mean":
        sums /= np.maximum(counts, 1.0)[:, None]
    elif mode != "sum":
        raise XdrError(f"unknown fusion {mode!r}; choose sum or mean")
    has = counts > 0
    out = passages.copy()
    out[has] = (1.0 - alpha) * passages[has] + alpha * sums[has]
    if renormalize:
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out


Rows = np.ndarray | list[str]  # query vectors, or query texts to encode
Block = tuple[list[str], Rows]  # row ids and their rows


def _generated_blocks(generated_dir: Path, size: int = 65536) -> Iterator[Block]:
    """Kept generated queries as (ids, texts) blocks, in corpus order, for encoding on the fly."""
    ids: list[str] = []
    texts: list[str] = []
    for q in generated_as_queries(generated_dir):
        ids.append(q.id)
        texts.append(q.text)
        if len(ids) == size:
            yield ids, texts
            ids, texts = [], []
    if ids:
        yield ids, texts


class _QueryCursor:
    """Reads query rows in order, handing out each passage's contiguous run of rows.

    Rows come as vectors (a query embedding store) or as texts (a generate artifact); texts are encoded by
    the worker that fuses their shard, so a resumed run does not encode the finished shards' queries.
    """

    def __init__(self, blocks: Iterator[Block]) -> None:
        self._blocks = blocks
        self._ids: list[str] = []
        self._rows: np.ndarray | list[str] = []
        self._docs: list[str] = []
        self._i = 0

    def _fill(self) -> bool:
        while self._i >= len(self._ids):
            nxt = next(self._blocks, None)
            if nxt is None:
                return False
            self._ids, self._rows = nxt
            self._docs = [split_generated_id(q)[0] for q in self._ids]
            self._i = 0
        return True

    def take(self, docids: Sequence[str], rows: bool = True) -> tuple[list[int], list[str], Rows]:
        """Rows for ``docids`` (in that order): (owner position, lang, their texts or vectors if asked for)."""
        owner: list[int] = []
        langs: list[str] = []
        parts: list[np.ndarray] = []
        texts: list[str] = []
        for pos, doc in enumerate(docids):
            while self._fill() and self._docs[self._i] == doc:
                j = self._i
                while j < len(self._ids) and self._docs[j] == doc:
                    j += 1
                owner.extend([pos] * (j - self._i))
                langs.extend(split_generated_id(q)[1] for q in self._ids[self._i:j])
                if rows:
                    block = self._rows[self._i:j]
                    (texts.extend if isinstance(block, list) else parts.append)(block)
                self._i = j
        return owner, langs, np.concatenate(parts) if parts else texts

    def leftover(self) -> str | None:
        """The id of the first row no passage claimed: generated queries out of corpus order."""
        return self._ids[self._i] if self._fill() else None


def encoded_generated(generated_dir: Path, spec: ModelSpec) -> Path | None:
    """A finished `xdr encode --kind generated` of this very generate run (by run id), beside it, made by
    ``spec``'s model at the generated-query length: encoding 630M queries again would cost hours."""
    want = run_id(generated_dir)
    for d in sorted(generated_dir.parent.iterdir()):
        if d == generated_dir or not (d / META).is_file() or not is_done(d):
            continue
        p = read_meta(d).get("params", {})
        source, model = p.get("source"), p.get("model")
        if (isinstance(source, dict) and source.get("run_id") == want and p.get("kind") == "query"
                and isinstance(model, dict) and model.get("query_max_length") == GENERATED_QUERY_MAX_LENGTH
                and ModelSpec(**model).space() == spec.space()):
            return d
    return None


Chunk = tuple[int, int, np.ndarray, Rows]  # passage rows [lo, hi) of a shard, owner of each query row, the rows


@dataclass(frozen=True, slots=True)
class _ShardJob:
    """What every shard of one augment run shares; sent to the workers with each shard's query rows."""

    passages: Path
    out: Path
    alpha: float
    mode: Fusion
    renormalize: bool


def _fuse_shard(job: _ShardJob, encoder: TextEncoder | None, shard: tuple[int, list[Chunk]], advance: Advance) -> int:
    """Fuse one passage shard with its query rows (encoding texts here, where the model is) and write it."""
    i, chunks = shard
    ids = read_ids(job.passages / shard_name(i, IDS_SUFFIX)).to_pylist()
    emb = np.load(job.passages / shard_name(i, VECTORS_SUFFIX))
    fused = []
    for lo, hi, own, rows in chunks:
        if isinstance(rows, list):
            if rows:
                assert encoder is not None
                rows = encoder.encode(rows, "query", **stage_budget(encoder.spec, "query", 256))
            else:
                rows = np.empty((0, emb.shape[1]), np.float32)
        fused.append(fuse(emb[lo:hi], own, rows, job.alpha, job.mode, job.renormalize))
        advance(hi - lo)
    write_shard(job.out, i, ids, np.concatenate(fused))
    return len(ids)


def augment(
    passage_dir: str | Path,
    query_dir: str | Path,
    out_dir: str | Path,
    fusion: FusionSettings | None = None,
    *,
    encoder: TextEncoder | EncoderLoader | None = None,
    device: str | None = None,
    chunk_size: int = 2048,
    progress: bool = True,
    engine: EngineSettings | None = None,
) -> Path:
    """Write an augmented embedding store from a passage store and the generated queries.

    ``query_dir`` is either a store of generated queries encoded as queries (`xdr encode --kind
    generated`, worth it for alpha sweeps; found and used automatically when it sits beside the generate
    artifact, see :func:`encoded_generated`) or the generate artifact itself, whose queries are then
    encoded on the fly and never stored (630M queries x 768 floats would be 1.9 TB): by ``encoder``, or
    by the passages' model (on ``device``) as a query encoder with the generated-query max length, as in
    xQG. Mixing vector spaces is refused. Shards are fused by the workers of ``engine`` (default: this
    process); the driver streams the query ids and texts (or vectors) to them, one shard at a time.
    """
    pdir, qdir, out = Path(passage_dir), Path(query_dir), Path(out_dir)
    fusion = fusion or FusionSettings()
    alpha, mode, renormalize = fusion.alpha, fusion.mode, fusion.renormalize
    pmeta = embeddings_meta(pdir)
    qmeta = open_artifact(qdir, Stage.GENERATE, *EMBEDDING_INPUTS, what="generated queries or their embeddings")
    pspec = ModelSpec(**pmeta["params"]["model"])
    reused = encoded_generated(qdir, pspec) if qmeta.get("stage") == Stage.GENERATE and encoder is None else None
    if reused is not None:  # the same queries, already encoded by the same model: read, don't re-encode
        qdir, qmeta = reused, embeddings_meta(reused)
    setup: Callable[[], TextEncoder | None] = partial(given, None)
    if qmeta.get("stage") == Stage.GENERATE:
        if encoder is None:
            encoder = EncoderLoader(pspec.model_copy(update={"query_max_length": GENERATED_QUERY_MAX_LENGTH}), device)
        encoder.spec.check_same_space(pspec, "the query encoder")
        setup = encoder_setup(encoder)
        cursor = _QueryCursor(_generated_blocks(qdir))
        query_source: Any = {"generated": input_identity(qdir), "query_max_length": encoder.spec.query_max_length}
    else:
        ModelSpec(**qmeta["params"]["model"]).check_same_space(pspec, f"the generated-query embeddings {qdir}")
        if qmeta["params"]["kind"] != "query":
            raise XdrError(f"{qdir}: holds {qmeta['params']['kind']} embeddings; generated queries must be "
                           "encoded as queries (`xdr encode GENERATED --kind generated`)")
        cursor = _QueryCursor(iter_shards(qdir))
        query_source = {"embeddings": input_identity(qdir), "source": qmeta["params"].get("source")}
    keep = None if fusion.langs is None else list(fusion.langs)
    params = store_params(
        pspec, "passage", pmeta["params"]["dim"], pmeta["params"]["shard_size"],
        normalized=renormalize or (pspec.normalize and alpha == 0.0),
        source={"passages": input_identity(pdir), "queries": query_source},
    )
    params.update(alpha=alpha, mode=mode, langs=keep, renormalize=renormalize)
    counts = {"rows": 0, "shards": 0, "fused": 0, "fewest": int(np.iinfo(np.int64).max), "most": 0}

    def tasks() -> Iterator[ShardTask[tuple[int, list[Chunk]]]]:
        for i, ids in enumerate(iter_shard_ids(pdir)):
            done = writer.shard_done(i)
            chunks: list[Chunk] = []
            for lo in range(0, len(ids), chunk_size):
                hi = min(lo + chunk_size, len(ids))
                owner, qlangs, rows = cursor.take(ids[lo:hi], rows=not done)
                mask = np.ones(len(owner), bool) if keep is None else np.isin(qlangs, keep)
                own = np.asarray(owner, np.int64)[mask]
                per_passage = np.unique(own, return_counts=True)[1]
                counts["fused"] += len(per_passage)
                if len(per_passage):
                    counts["fewest"] = min(counts["fewest"], int(per_passage.min()))
                    counts["most"] = max(counts["most"], int(per_passage.max()))
                if not done:
                    kept = [t for t, m in zip(rows, mask, strict=True) if m] if isinstance(rows, list) else rows[mask]
                    chunks.append((lo, hi, own, kept))
            if done:
                writer.check_kept(i, ids)
            counts["rows"] += len(ids)
            counts["shards"] += 1
            yield ShardTask(i, len(ids), None if done else (i, chunks))

    with worker_pool(engine, setup) as pool:
        writer = EmbeddingWriter(out, Stage.AUGMENT, params)
        if writer.finished:
            return out
        label = f"augment (query vectors from {qdir})" if reused else "augment"
        job = _ShardJob(pdir, out, alpha, mode, renormalize)
        pool.run(tasks(), partial(_fuse_shard, job), label=label, total_rows=pmeta.get("rows"),
                 total_shards=pmeta.get("shards"), progress=progress, out_dir=out)
    stray = cursor.leftover()
    if stray is not None:
        raise XdrError(
            f"{qdir}: generated query {stray!r} belongs to no passage at its position; generated queries "
            "must follow the corpus order of the passage store and name only its passages"
        )
    fused_rows, fewest, most = counts["fused"], counts["fewest"], counts["most"]
    if mode == "sum" and fused_rows and fewest < most:
        warnings.warn(XdrWarning(
            f"sum fusion over uneven query counts ({fewest} to {most} per passage): the count, not the content, "
            "will rank passages; mean fusion with --renormalize does not (docs/results/xqg.md)"
        ), stacklevel=2)
    return writer.finish(rows=counts["rows"], shards=counts["shards"], passages_with_queries=fused_rows,
                         queries_per_passage={"min": fewest if fused_rows else 0, "max": most})
