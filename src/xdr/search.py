"""The search stage: queries against an index, optionally followed by a re-ranking step.

A re-ranker (e.g. :class:`xdr.maxsim.MaxSimReranker`) is composed after the first stage: the index gives
``reranker.depth`` candidates per query, the re-ranker re-scores them from the same query vectors, and
the top ``k`` are kept. Runs are written by :mod:`xdr.data.runs` (TREC and XOR-TyDi submission JSON).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from xdr.config import ModelSpec
from xdr.data.runs import Run
from xdr.data.schema import Query
from xdr.errors import XdrError
from xdr.index.dense import DenseIndex, load_index
from xdr.models.base import TextEncoder


class Reranker(Protocol):
    """A step after the first stage: re-scores the top ``depth`` candidates of each query."""

    depth: int

    def check(self, spec: ModelSpec, metric: str, where: str) -> None:
        """Refuse a first stage (query encoder, index metric) whose scores it cannot use."""
        ...

    def rerank(self, run: Run, query_emb: np.ndarray, spec: ModelSpec) -> Run:
        """The run's candidates re-scored, best first; ``query_emb`` in the run's query order."""
        ...


def search_vectors(
    index: DenseIndex, qids: Sequence[str], query_emb: np.ndarray, k: int = 100, *, tag: str = "xdr"
) -> Run:
    """Search with query vectors already computed (e.g. an encode store of generated queries)."""
    if len(qids) != len(query_emb):
        raise XdrError(f"need one vector per query: {len(qids)} ids, {len(query_emb)} vectors")
    if len(set(qids)) != len(qids):
        raise XdrError("duplicate query ids: a run keeps one ranking per query id")
    scores, ids = index.search(query_emb, k)
    hits = {
        qid: [(docid, score) for docid, score in zip(row_ids, row_scores, strict=True) if docid is not None]
        for qid, row_ids, row_scores in zip(qids, ids.tolist(), scores.tolist(), strict=True)
    }
    return Run(hits, tag)


def search(
    index: str | Path | DenseIndex,
    queries: Sequence[Query],
    encoder: TextEncoder,
    k: int = 100,
    *,
    reranker: Reranker | None = None,
    batch_size: int = 128,
    progress: bool = False,
    tag: str = "xdr",
) -> Run:
    """Encode ``queries``, retrieve the top ``k`` passages of each, and re-rank them if asked.

    The encoder must share the index's vector space (same model, weights, pooling, normalisation);
    vectors from another model give scores that rank nothing, so that is refused rather than run.
    """
    if not queries:
        raise XdrError("no queries to search")
    dense = index if isinstance(index, DenseIndex) else load_index(index)
    dense.spec.check_same_space(encoder.spec, f"the index at {dense.path} (index vs query encoder)")
    if reranker is not None:
        if k > reranker.depth:
            raise XdrError(f"k ({k}) must not exceed rerank_k ({reranker.depth}): only re-ranked candidates "
                           "are kept")
        reranker.check(encoder.spec, dense.metric, str(dense.path))
    emb = encoder.encode([q.text for q in queries], "query", batch_size=batch_size, progress=progress)
    qids = [q.id for q in queries]
    if reranker is None:
        return search_vectors(dense, qids, emb, k, tag=tag)
    first = search_vectors(dense, qids, emb, reranker.depth, tag=tag)
    return reranker.rerank(first, emb, encoder.spec).head(k)
