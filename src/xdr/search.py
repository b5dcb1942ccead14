"""The search stage: queries against an index, optionally followed by a re-ranking step.

A re-ranker (e.g. :class:`xdr.maxsim.MaxSimReranker`) is composed after the first stage: the index gives
``reranker.depth`` candidates per query, the re-ranker re-scores them from the same query vectors, and
the top ``k`` are kept.

The search artifact (:func:`write_search_output`) is a directory with ``run.trec``, ``xor.json`` when a
corpus gives the passage texts, ``meta.json`` (the index's and the queries' identity, the settings, and a
hash of each file) and ``_DONE``. Both files are written under temp names and renamed together, so a
rerun on the same ``--out`` never leaves an old ``xor.json`` beside a new ``run.trec``; evaluate checks
the hashes before pairing them.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from xdr.artifacts import (
    DONE,
    META,
    Stage,
    atomic_path,
    ensure_writable,
    file_hash,
    input_identity,
    mark_done,
    start_artifact,
    take_lock,
    update_meta,
)
from xdr.config import ModelSpec
from xdr.data.runs import RUN_FILE, XOR_FILE, Run, write_trec, write_xor_json
from xdr.data.schema import Passage, Query
from xdr.errors import XdrError, XdrWarning
from xdr.index.dense import DenseIndex, load_index
from xdr.models.base import TextEncoder, stage_budget


class Reranker(Protocol):
    """A step after the first stage: re-scores the top ``depth`` candidates of each query."""

    depth: int

    def check(self, spec: ModelSpec, metric: str, where: str) -> None:
        """Refuse a first stage (query encoder, index metric) whose scores it cannot use."""
        ...

    def rerank(self, run: Run, query_emb: np.ndarray, spec: ModelSpec) -> Run:
        """The run's candidates re-scored, best first; ``query_emb`` in the run's query order."""
        ...

    def describe(self) -> dict[str, Any]:
        """The re-ranker's settings, recorded in the run."""
        ...


FAR_FROM_EXACT = 0.9  # recall of the exhaustive top k below which a defaulted nprobe is reported


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
    return Run(hits, tag, {"index": str(index.path), "k": k, **index.settings})


def _warn_if_far_from_exact(index: DenseIndex, query_emb: np.ndarray, k: int) -> None:
    """Approximate search with a default nprobe can lose much of the exact ranking; say so, with the fix.
    Checked on the first search of a loaded index only: a service or a loop must not pay it every call."""
    if "nprobe" not in index.defaulted or index.recall_checked:
        return
    index.recall_checked = True
    recall = index.exact_recall(query_emb, k)
    if recall is not None and recall < FAR_FROM_EXACT:
        warnings.warn(XdrWarning(
            f"{index.path}: IVF search with the default nprobe {index.settings['nprobe']} of {index.nlist} lists "
            f"finds {recall:.0%} of the exhaustive top {k} on a sample of queries; raise --nprobe"
        ), stacklevel=3)


_UNKNOWN_LANG = "und"  # ISO 639-2 "undetermined": the language of a query given as a bare string


def _as_queries(queries: str | Sequence[str] | Sequence[Query]) -> list[Query]:
    """``Query`` records as given, or for bare strings records with ids ``q0``, ``q1``, ... in order.

    A single string is one query (never a sequence of one-character queries); the language of a bare
    string is unknown (``und``), which search does not need.
    """
    if isinstance(queries, str):
        queries = [queries]
    out: list[Query] = []
    for i, q in enumerate(queries):
        if isinstance(q, Query):
            out.append(q)
        elif isinstance(q, str):
            out.append(Query(f"q{i}", _UNKNOWN_LANG, q))
        else:
            raise XdrError(f"query {i}: expected a string or a Query, not {type(q).__name__}")
    return out


def search(
    index: str | Path | DenseIndex,
    queries: str | Sequence[str] | Sequence[Query],
    encoder: TextEncoder,
    k: int = 100,
    *,
    reranker: Reranker | None = None,
    batch_size: int = 128,
    progress: bool = False,
    tag: str = "xdr",
) -> Run:
    """Encode ``queries``, retrieve the top ``k`` passages of each, and re-rank them if asked.

    ``queries`` are :class:`Query` records, a list of strings or one string; strings get the ids ``q0``,
    ``q1``, ... in order and the language ``und``. The encoder must share the index's vector space
    (same model, weights, pooling, normalisation); vectors from another model give scores that rank
    nothing, so that is refused rather than run.
    """
    queries = _as_queries(queries)
    if not queries:
        raise XdrError("no queries to search")
    dense = index if isinstance(index, DenseIndex) else load_index(index)
    dense.spec.check_same_space(encoder.spec, f"the index at {dense.path} (index vs query encoder)")
    if reranker is not None:
        if k > reranker.depth:
            raise XdrError(f"k ({k}) must not exceed rerank_k ({reranker.depth}): only re-ranked candidates "
                           "are kept")
        reranker.check(encoder.spec, dense.metric, str(dense.path))
    emb = encoder.encode([q.text for q in queries], "query", progress=progress,
                         **stage_budget(encoder.spec, "query", batch_size))
    qids = [q.id for q in queries]
    depth = k if reranker is None else reranker.depth
    _warn_if_far_from_exact(dense, emb, depth)
    first = search_vectors(dense, qids, emb, depth, tag=tag)
    if reranker is None:
        return first
    reranked = reranker.rerank(first, emb, encoder.spec)
    reranked.settings = {**first.settings, "k": k, "rerank": reranker.describe()}
    return reranked.head(k)


def write_search_output(
    run: Run, queries: Sequence[Query], out_dir: str | Path, *, corpus: Iterable[Passage] | None = None,
    inputs: dict[str, Any] | None = None,
) -> dict[str, str] | None:
    """Write the search artifact at ``out_dir``, replacing any earlier one there as a whole; returns the
    passage texts looked up for ``xor.json`` (None without a corpus).

    ``inputs`` names what was searched (e.g. ``{"index": dir, "queries": file}``); paths are recorded by
    identity (an artifact's run id, a file's content hash).
    """
    d = ensure_writable(out_dir, create=True)
    take_lock(d)
    for stale in (DONE, META, RUN_FILE, XOR_FILE):  # a new search replaces the old one whole
        (d / stale).unlink(missing_ok=True)
    recorded = {k: input_identity(v) if isinstance(v, str | Path) else v for k, v in (inputs or {}).items()}
    start_artifact(d, Stage.SEARCH, {**run.settings, **recorded, "queries_searched": len(run.hits)})
    texts = None
    with contextlib.ExitStack() as stack:  # both files are renamed into place only if both were written
        trec = stack.enter_context(atomic_path(d / RUN_FILE))
        write_trec(run, trec)
        files = {RUN_FILE: file_hash(trec)}
        if corpus is not None:
            xor = stack.enter_context(atomic_path(d / XOR_FILE))
            texts = write_xor_json(run, queries, corpus, xor)
            files[XOR_FILE] = file_hash(xor)
    update_meta(d, files=files)
    mark_done(d)
    return texts
