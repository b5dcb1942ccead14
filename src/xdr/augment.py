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
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from xdr.artifacts import META, Stage, input_identity, is_done, open_artifact, read_meta, run_id
from xdr.config import ModelSpec
from xdr.embeddings import EmbeddingWriter, embeddings_meta, iter_shards, store_params
from xdr.errors import XdrError, XdrWarning
from xdr.generate.artifact import GENERATED_QUERY_MAX_LENGTH, generated_as_queries, split_generated_id
from xdr.langs import normalize_lang
from xdr.models.base import TextEncoder, stage_budget
from xdr.models.encoder import Encoder
from xdr.progress import row_progress

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


Block = tuple[list[str], "np.ndarray | list[str]"]  # row ids and either their vectors or their texts


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

    Rows come as vectors (a query embedding store) or as texts (a generate artifact); texts are encoded
    only for the passages that are fused, so a resumed run does not encode the finished shards' queries.
    """

    def __init__(self, blocks: Iterator[Block], encoder: TextEncoder | None = None) -> None:
        self._blocks, self._encoder = blocks, encoder
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

    def take(self, docids: Sequence[str], vectors: bool = True) -> tuple[list[int], list[str], np.ndarray]:
        """Rows for ``docids`` (in that order): (owner position, lang, vectors if asked for)."""
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
                rows = self._rows[self._i:j]
                (texts.extend if isinstance(rows, list) else parts.append)(rows)
                self._i = j
        if not vectors or not owner:
            return owner, langs, np.empty((0, 0), np.float32)
        if texts:
            assert self._encoder is not None
            return owner, langs, self._encoder.encode(texts, "query", **stage_budget(self._encoder.spec, "query", 256))
        return owner, langs, np.concatenate(parts)

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


def augment(
    passage_dir: str | Path,
    query_dir: str | Path,
    out_dir: str | Path,
    fusion: FusionSettings | None = None,
    *,
    encoder: TextEncoder | None = None,
    device: str | None = None,
    chunk_size: int = 2048,
    progress: bool = True,
) -> Path:
    """Write an augmented embedding store from a passage store and the generated queries.

    ``query_dir`` is either a store of generated queries encoded as queries (`xdr encode --kind
    generated`, worth it for alpha sweeps; found and used automatically when it sits beside the generate
    artifact, see :func:`encoded_generated`) or the generate artifact itself, whose queries are then
    encoded on the fly and never stored (630M queries x 768 floats would be 1.9 TB): by ``encoder``, or
    by the passages' model (on ``device``) as a query encoder with the generated-query max length, as in
    xQG. Mixing vector spaces is refused.
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
    if qmeta.get("stage") == Stage.GENERATE:
        if encoder is None:
            spec = pspec.model_copy(update={"query_max_length": GENERATED_QUERY_MAX_LENGTH})
            encoder = Encoder.load(spec, device=device)
        encoder.spec.check_same_space(pspec, "the query encoder")
        cursor = _QueryCursor(_generated_blocks(qdir), encoder)
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
    writer = EmbeddingWriter(out, Stage.AUGMENT, params)
    if writer.finished:
        return out
    rows = fused_rows = n_shards = 0
    fewest, most = np.iinfo(np.int64).max, 0  # queries per passage that has any
    with row_progress(progress) as bar:
        task = bar.add_task(f"augment (query vectors from {qdir})" if reused else "augment", total=pmeta.get("rows"))
        for i, (ids, emb) in enumerate(iter_shards(pdir)):
            done = i < writer.kept
            chunks = []
            for lo in range(0, len(ids), chunk_size):
                owner, qlangs, qvecs = cursor.take(ids[lo:lo + chunk_size], vectors=not done)
                mask = np.ones(len(owner), bool) if keep is None else np.isin(qlangs, keep)
                own = np.asarray(owner, np.int64)[mask]
                per_passage = np.unique(own, return_counts=True)[1]
                fused_rows += len(per_passage)
                if len(per_passage):
                    fewest, most = min(fewest, int(per_passage.min())), max(most, int(per_passage.max()))
                if done:
                    continue
                chunks.append(fuse(emb[lo:lo + chunk_size], own,
                                   qvecs[mask] if len(own) else np.empty((0, emb.shape[1]), np.float32),
                                   alpha, mode, renormalize))
            if done:
                writer.check_kept(i, ids)
            else:
                writer.write(i, ids, np.concatenate(chunks))
            rows += len(ids)
            n_shards += 1
            bar.advance(task, len(ids))
    stray = cursor.leftover()
    if stray is not None:
        raise XdrError(
            f"{qdir}: generated query {stray!r} belongs to no passage at its position; generated queries "
            "must follow the corpus order of the passage store and name only its passages"
        )
    if mode == "sum" and fused_rows and fewest < most:
        warnings.warn(XdrWarning(
            f"sum fusion over uneven query counts ({fewest} to {most} per passage): the count, not the content, "
            "will rank passages; mean fusion with --renormalize does not (docs/results/xqg.md)"
        ), stacklevel=2)
    return writer.finish(rows=rows, shards=n_shards, passages_with_queries=fused_rows,
                         queries_per_passage={"min": fewest if fused_rows else 0, "max": most})
