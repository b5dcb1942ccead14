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

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from xdr.artifacts import (
    atomic_path,
    is_done,
    mark_done,
    require_done,
    shard_name,
    start_artifact,
    update_meta,
)
from xdr.config import ModelSpec
from xdr.data.schema import Query
from xdr.encode import (
    IDS_SUFFIX,
    VECTORS_SUFFIX,
    TextEncoder,
    iter_shards,
    open_ids,
    read_ids,
    row_progress,
    write_ids,
)
from xdr.errors import MismatchError, XdrError

Fusion = Literal["sum", "mean"]
SEP = "::"  # generated-query id = docid::lang::k; docids may hold SEP, lang and k never do


def generated_query_id(docid: str, lang: str, k: int) -> str:
    return f"{docid}{SEP}{lang}{SEP}{k}"


def split_generated_id(qid: str) -> tuple[str, str]:
    """(docid, lang) of a generated-query id."""
    docid, lang, _ = qid.rsplit(SEP, 2)
    return docid, lang


def generated_as_queries(generated_dir: str | Path) -> Iterator[Query]:
    """The kept generated queries as Query records, ready for `encode_queries` (corpus order kept)."""
    from xdr.generate.store import read_generated

    for g in read_generated(generated_dir):
        yield Query(generated_query_id(g.docid, g.lang, g.k), g.lang, g.query or "")


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
            return owner, langs, self._encoder.encode(texts, "query", batch_size=256)
        return owner, langs, np.concatenate(parts)

    def leftover(self) -> str | None:
        """The id of the first row no passage claimed: generated queries out of corpus order."""
        return self._ids[self._i] if self._fill() else None


def augment(
    passage_dir: str | Path,
    query_dir: str | Path,
    out_dir: str | Path,
    *,
    encoder: TextEncoder | None = None,
    device: str | None = None,
    alpha: float = 0.01,
    mode: Fusion = "sum",
    langs: Iterable[str] | None = None,
    renormalize: bool = False,
    chunk_size: int = 2048,
    progress: bool = True,
) -> Path:
    """Write an augmented embedding store from a passage store and the generated queries.

    ``query_dir`` is either a store of generated queries encoded as queries (`xdr encode --kind
    generated`, worth it for alpha sweeps) or the generate artifact itself, whose queries are then
    encoded on the fly and never stored (630M queries x 768 floats would be 1.9 TB): by ``encoder``, or
    by the passages' model (on ``device``) as a query encoder with query max length 32, as in xQG. ``langs`` keeps only
    queries generated in those languages. Mixing vector spaces is refused.
    """
    pdir, qdir, out = Path(passage_dir), Path(query_dir), Path(out_dir)
    if not 0.0 <= alpha <= 1.0:
        raise XdrError(f"alpha must be in [0, 1], got {alpha}")
    pmeta, qmeta = require_done(pdir), require_done(qdir)
    pspec = ModelSpec(**pmeta["params"]["model"])
    if qmeta.get("stage") == "generate":
        if encoder is None:
            from xdr.models.encoder import Encoder

            encoder = Encoder.load(pspec.model_copy(update={"query_max_length": 32}), device=device)
        encoder.spec.check_same_space(pspec, "the query encoder")
        cursor = _QueryCursor(_generated_blocks(qdir), encoder)
        query_source: Any = {"generated": str(qdir.resolve()), "query_max_length": encoder.spec.query_max_length}
    else:
        ModelSpec(**qmeta["params"]["model"]).check_same_space(pspec, f"the generated-query embeddings {qdir}")
        if qmeta["params"]["kind"] != "query":
            raise XdrError(f"{qdir}: holds {qmeta['params']['kind']} embeddings; generated queries must be "
                           "encoded as queries (`xdr encode GENERATED --kind generated`)")
        cursor = _QueryCursor(iter_shards(qdir))
        query_source = {"embeddings": str(qdir.resolve()), "source": qmeta["params"].get("source")}
    keep = None if langs is None else sorted(set(langs))
    params = {
        "model": pmeta["params"]["model"], "kind": "passage", "dim": pmeta["params"]["dim"],
        "dtype": "float32", "normalized": renormalize or (pspec.normalize and alpha == 0.0),
        "shard_size": pmeta["params"]["shard_size"],
        "source": {"passages": str(pdir.resolve()), "queries": query_source},
        "alpha": alpha, "mode": mode, "langs": keep, "renormalize": renormalize,
    }
    start_artifact(out, "augment", params)
    if is_done(out):
        return out
    rows = fused_rows = n_shards = 0
    with row_progress(progress) as bar:
        task = bar.add_task("augment", total=pmeta.get("rows"))
        for i, (ids, emb) in enumerate(iter_shards(pdir)):
            done = (out / shard_name(i, VECTORS_SUFFIX)).exists()
            chunks = []
            for lo in range(0, len(ids), chunk_size):
                owner, qlangs, qvecs = cursor.take(ids[lo:lo + chunk_size], vectors=not done)
                mask = np.ones(len(owner), bool) if keep is None else np.isin(qlangs, keep)
                own = np.asarray(owner, np.int64)[mask]
                fused_rows += len(np.unique(own))
                if done:
                    continue
                chunks.append(fuse(emb[lo:lo + chunk_size], own,
                                   qvecs[mask] if len(own) else np.empty((0, emb.shape[1]), np.float32),
                                   alpha, mode, renormalize))
            if done:
                if read_ids(out / shard_name(i, IDS_SUFFIX)).to_pylist() != ids:
                    raise MismatchError(f"{out}: shard {i} came from other passages; remove the directory")
            else:
                with atomic_path(out / shard_name(i, IDS_SUFFIX)) as tmp, open_ids(tmp) as f:
                    write_ids(f, ids)
                with atomic_path(out / shard_name(i, VECTORS_SUFFIX)) as tmp, open(tmp, "wb") as f:
                    np.save(f, np.concatenate(chunks))
            rows += len(ids)
            n_shards += 1
            bar.advance(task, len(ids))
    stray = cursor.leftover()
    if stray is not None:
        raise XdrError(
            f"{qdir}: generated query {stray!r} belongs to no passage at its position; generated queries "
            "must follow the corpus order of the passage store and name only its passages"
        )
    update_meta(out, rows=rows, shards=n_shards, passages_with_queries=fused_rows)
    mark_done(out)
    return out
