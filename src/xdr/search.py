"""The search stage: queries against an index, written as a TREC run and an XOR-TyDi submission."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xdr.artifacts import atomic_path
from xdr.data import lookup_texts, write_run
from xdr.data.schema import Passage, Query
from xdr.encode import TextEncoder
from xdr.errors import XdrError
from xdr.index import DenseIndex, load_index


@dataclass
class Run:
    """Ranked hits per query: ``hits[qid]`` is ``[(docid, score), ...]``, best first, in query order."""

    hits: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    tag: str = "xdr"

    def __getitem__(self, qid: str) -> list[tuple[str, float]]:
        return self.hits[qid]

    def scores(self) -> dict[str, dict[str, float]]:
        """The ``{qid: {docid: score}}`` form that ir-measures takes as a run."""
        return {qid: dict(ranked) for qid, ranked in self.hits.items()}


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
    batch_size: int = 128,
    progress: bool = False,
    tag: str = "xdr",
) -> Run:
    """Encode ``queries`` and retrieve the top ``k`` passages of each.

    The encoder must share the index's vector space (same model, weights, pooling, normalisation);
    vectors from another model give scores that rank nothing, so that is refused rather than run.
    """
    if not queries:
        raise XdrError("no queries to search")
    dense = index if isinstance(index, DenseIndex) else load_index(index)
    dense.spec.check_same_space(encoder.spec, f"the index at {dense.path} (index vs query encoder)")
    emb = encoder.encode([q.text for q in queries], "query", batch_size=batch_size, progress=progress)
    return search_vectors(dense, [q.id for q in queries], emb, k, tag=tag)


def write_trec(run: Run, path: str | Path) -> Path:
    """Write the run as ``qid Q0 docid rank score tag`` lines (atomically, via the TREC module)."""
    write_run(path, run.scores(), tag=run.tag)
    return Path(path)


def write_xor_json(
    run: Run, queries: Iterable[Query], corpus: Iterable[Passage], path: str | Path
) -> dict[str, str]:
    """Write the XOR-Retrieve prediction file ``[{"id", "lang", "ctxs": [passage texts, best first]}]``
    and return the texts it looked up (docid → text), e.g. for display.

    The corpus is streamed once, keeping only the texts the run needs (an 18M-row corpus never sits in
    memory), and stops as soon as all are found. ``ctxs`` holds passage texts without titles, as in the
    official XOR-TyDi baselines.
    """
    texts = lookup_texts(corpus, {docid for ranked in run.hits.values() for docid, _ in ranked})
    entries = []
    for q in queries:
        if q.id not in run.hits:
            raise XdrError(f"query {q.id!r} has no ranking in the run")
        entries.append({"id": q.id, "lang": q.lang, "ctxs": [texts[docid] for docid, _ in run.hits[q.id]]})
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(entries, f, ensure_ascii=False)
    return texts
