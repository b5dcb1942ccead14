"""Max-sim re-ranking: a step composed after a first-stage search (``search(..., reranker=...)``).

The first stage (a plain or xQG-fused index) gives candidates with scores ``s``; each is re-scored by
``s + beta * max_i s(q, g_i)`` over its generated-query vectors from a store (:mod:`xdr.maxsim.store`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from xdr.config import DEFAULT_BETA, ModelSpec
from xdr.data.runs import Run
from xdr.errors import MismatchError, XdrError
from xdr.maxsim.store import GeneratedVectorStore, open_vector_store


def rerank_maxsim(
    run: Run, query_emb: np.ndarray, store: str | Path | GeneratedVectorStore, *, spec: ModelSpec,
    beta: float = DEFAULT_BETA, k: int = 100,
) -> Run:
    """Re-score the top ``k`` candidates of each query by ``s + beta * max_i s(q, g_i)``, best first.

    ``query_emb`` holds the query vectors in the run's query order, made by the encoder with ``spec``
    (checked against the store's model); ``s`` is the first stage's score, fused or not. The re-ranked
    run holds the ``k`` candidates only: the first stage's scores below them are on another scale.
    """
    st = open_vector_store(store)
    st.check_space(spec, "the query encoder")
    if not beta >= 0:
        raise XdrError(f"beta must be >= 0, got {beta}")
    if k <= 0:
        raise XdrError(f"k must be positive (got {k})")
    q = np.asarray(query_emb, np.float32)
    if q.ndim != 2 or len(q) != len(run.hits) or q.shape[1] != st.dim:
        raise MismatchError(f"need one {st.dim}-dim query vector per ranked query: {len(run.hits)} queries, "
                            f"vectors of shape {q.shape}")
    docs = list(dict.fromkeys(d for ranked in run.hits.values() for d, _ in ranked[:k]))
    row_of = dict(zip(docs, st.lookup(docs).tolist(), strict=True))
    hits: dict[str, list[tuple[str, float]]] = {}
    for (qid, ranked), vec in zip(run.hits.items(), q, strict=True):
        cand = ranked[:k]
        s = np.array([sc for _, sc in cand], np.float32)
        m = st.max_scores(vec, np.array([row_of[d] for d, _ in cand], np.int64))
        final = s + beta * np.where(np.isnan(m), s, m)
        order = np.argsort(-final, kind="stable")
        hits[qid] = [(cand[j][0], float(final[j])) for j in order]
    return Run(hits, run.tag)


class MaxSimReranker:
    """Re-ranks the top ``depth`` first-stage candidates by max-sim; see :func:`rerank_maxsim`."""

    def __init__(
        self, store: str | Path | GeneratedVectorStore, *, beta: float = DEFAULT_BETA, depth: int = 100
    ) -> None:
        if not beta >= 0:
            raise XdrError(f"beta must be >= 0, got {beta}")
        if depth <= 0:
            raise XdrError(f"rerank depth must be positive (got {depth})")
        self.store, self.beta, self.depth = open_vector_store(store), beta, depth

    def check(self, spec: ModelSpec, metric: str, where: str) -> None:
        """Refuse a first stage whose scores cannot be added to max-sim's inner products."""
        if metric != "ip":
            raise XdrError(f"{where}: max-sim adds inner products; a {metric} index cannot be re-ranked")
        self.store.check_space(spec, "the query encoder")

    def rerank(self, run: Run, query_emb: np.ndarray, spec: ModelSpec) -> Run:
        return rerank_maxsim(run, query_emb, self.store, spec=spec, beta=self.beta, k=self.depth)

    def describe(self) -> dict[str, Any]:
        return {"method": "maxsim", "store": str(self.store.path), "beta": self.beta, "depth": self.depth}
