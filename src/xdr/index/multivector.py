"""Multi-vector indexes: passages and their generated queries as rows of one index, grouped back.

Layout on top of a dense index: the passages' rows come first, then the store's generated-query rows in
passage order, with ``generated_offsets.npy`` (int64 [passages + 1]) giving each passage's share. A query
retrieves ``rows_per_passage * k`` rows; :class:`MultiVector` groups them into passages and scores each
with the max-sim formula of :mod:`xdr.maxsim`, so every consumer of an index (search, mine) sees passages.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import faiss
import numpy as np
from rich.progress import Progress

from xdr.artifacts import atomic_path
from xdr.embeddings import iter_shard_ids
from xdr.errors import XdrError
from xdr.maxsim.store import GeneratedVectorStore

OFFSETS_FILE = "generated_offsets.npy"


def add_generated(index: faiss.Index, store: GeneratedVectorStore, emb_dir: Path, out: Path, bar: Progress) -> None:
    """Add the store's vectors after all passage rows, in passage order, and record each passage's share."""
    passage_ids = iter_shard_ids(emb_dir)
    task = bar.add_task("index generated queries", total=store.vectors)
    counts = []
    for c, vecs in generated_for_passages(store, passage_ids):
        index.add(vecs)
        counts.append(c)
        bar.advance(task, len(vecs))
    offsets = np.concatenate(([0], np.cumsum(np.concatenate(counts)))).astype(np.int64)
    with atomic_path(out / OFFSETS_FILE) as tmp, open(tmp, "wb") as f:
        np.save(f, offsets)


def generated_for_passages(
    store: GeneratedVectorStore, passage_ids: Iterable[list[str]]
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Merge-join the store with the passages, shard by shard: ``(counts per passage, their vectors)``.

    Both are in corpus order (generation writes them so); a store passage that is not next in the passage
    order is refused, since its rows would be credited to no passage.
    """
    shards = store.iter_shards()
    s_ids: list[str] = []
    s_counts = np.empty(0, np.int32)
    s_vecs = np.empty((0, store.dim), np.float32)
    j = o = 0  # next store passage in the current store shard, and its first vector
    for ids in passage_ids:
        counts = np.zeros(len(ids), np.int32)
        parts = []
        for n, pid in enumerate(ids):
            while j >= len(s_ids):
                nxt = next(shards, None)
                if nxt is None:
                    break
                s_ids, s_counts, s_vecs = nxt
                j = o = 0
            if j < len(s_ids) and s_ids[j] == pid:
                c = int(s_counts[j])
                counts[n] = c
                parts.append(s_vecs[o:o + c])
                j, o = j + 1, o + c
        yield counts, np.concatenate(parts) if parts else np.empty((0, store.dim), np.float32)
    stray = s_ids[j] if j < len(s_ids) else next((ids[0] for ids, *_ in shards if ids), None)
    if stray is not None:
        raise XdrError(f"{store.path}: passage {stray!r} is not in the passage embeddings at its position; the "
                       "store must follow their corpus order and name only their passages")


class MultiVector:
    """Groups the rows of a multi-vector index (passages, then generated queries) back into passages.

    Row ``r < passages`` is passage ``r``; generated row ``passages + j`` belongs to the passage ``p``
    with ``offsets[p] <= j < offsets[p + 1]``. A query retrieves ``rows_per_passage * k`` rows and scores
    each passage met by ``s + beta * m`` as in re-ranking. A term whose rows were not retrieved is credited
    with the lowest retrieved score (an upper bound on it under exact search); a passage without
    generated queries uses ``s`` for ``m``.
    """

    def __init__(self, offsets: np.ndarray, beta: float, rows_per_passage: int | None = None) -> None:
        if not beta >= 0:
            raise XdrError(f"beta must be >= 0, got {beta}")
        self.offsets = np.asarray(offsets, np.int64)
        self.beta = beta
        total = self.passages + int(self.offsets[-1])
        self.rows_per_passage = rows_per_passage or -(-total // max(self.passages, 1))

    @property
    def passages(self) -> int:
        return len(self.offsets) - 1

    def with_settings(self, beta: float | None = None, rows_per_passage: int | None = None) -> MultiVector:
        """The same grouping with another max-sim weight or retrieval depth."""
        return MultiVector(self.offsets, self.beta if beta is None else beta,
                           rows_per_passage or self.rows_per_passage)

    def group(self, scores: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Row hits to passage hits: scores float32 [n, k'] and passage rows (-1 where empty)."""
        n = self.passages
        kk = min(k, n)
        out_s = np.full((len(scores), kk), -np.inf, np.float32)
        out_p = np.full((len(scores), kk), -1, np.int64)
        for i, (sc, lab) in enumerate(zip(scores, labels, strict=True)):
            ok = lab >= 0
            sc, lab = sc[ok], lab[ok]
            if not len(lab):
                continue
            floor = sc.min()
            gen = lab >= n
            owner = np.where(gen, np.searchsorted(self.offsets, lab - n, side="right") - 1, lab)
            cand, inv = np.unique(owner, return_inverse=True)
            s = np.full(len(cand), floor, np.float32)
            s[inv[~gen]] = sc[~gen]
            m = np.full(len(cand), -np.inf, np.float32)
            np.maximum.at(m, inv[gen], sc[gen])
            none = self.offsets[cand + 1] == self.offsets[cand]
            m = np.where(np.isfinite(m), m, np.where(none, s, floor))
            final = s + self.beta * m
            top = np.argsort(-final, kind="stable")[:kk]
            out_s[i, :len(top)], out_p[i, :len(top)] = final[top], cand[top]
        return out_s, out_p
