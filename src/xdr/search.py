"""The search stage: queries against an index, optionally expanded, re-ranked and fused with BM25.

The steps, in order, each optional and each composable with the others:

1. **Query expansion** (:class:`QueryExpansion`, from an ``xdr expand`` artifact): ``concat`` encodes the
   query followed by its kept expansions as one text, at ``max_length`` tokens (default: the model's
   passage length). The query comes first and the tokenizer truncates from the end, so the expansion is
   cut first and the query is never cut (unless it alone is longer than the limit). ``fuse`` encodes the
   query and each expansion on their own and takes ``(1 - w) * q + w * mean(e)``, re-normalised when
   the model normalises: xQG's passage-side fusion (:mod:`xdr.augment`), on the query side. A query
   without a kept expansion is searched as it is; how many were is recorded.
2. **First stage**: a dense index, plain or xQG-fused.
3. **Re-ranking** (e.g. :class:`xdr.maxsim.MaxSimReranker`): the index gives ``reranker.depth`` candidates
   per query, the re-ranker re-scores them from the same (expanded) query vectors.
4. **Hybrid** (:class:`Hybrid`): the dense ranking is fused with a BM25 ranking (:mod:`xdr.index.bm25`)
   of English query texts (the LLM's translations, with or without the expansion) by reciprocal rank
   (``rrf``: ``sum 1 / (60 + rank)``) or by min-max-normalised scores (``score``:
   ``(1 - w) * dense + w * bm25``, a missing score counting as 0). :func:`search_bm25` is BM25 alone.

The top ``k`` are kept; every setting goes into the run's settings, hence its ``meta.json``.

The search artifact (:func:`write_search_output`) is a directory with ``run.trec``, ``xor.json`` when a
corpus gives the passage texts, ``meta.json`` (the index's and the queries' identity, the settings, and a
hash of each file) and ``_DONE``. Both files are written under temp names and renamed together, so a
rerun on the same ``--out`` never leaves an old ``xor.json`` beside a new ``run.trec``; evaluate checks
the hashes before pairing them.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

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
from xdr.expand.artifact import read_expansions
from xdr.index.bm25 import BM25Index
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


class QueryExpansion(BaseModel):
    """How an ``xdr expand`` artifact's expansions join the query (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    expansions: Path
    combine: Literal["concat", "fuse"] = "concat"
    weight: float = Field(default=0.5, ge=0.0, le=1.0, description="fuse: weight of the expansions")
    strategy: str | None = Field(default=None, description="the artifact's strategy to use (needed if several)")
    max_length: int | None = Field(default=None, ge=8, description="concat: tokens (default: passage length)")

    def texts(self) -> dict[str, list[str]]:
        """The kept expansions of each query id, in sample order."""
        return _kept(self.expansions, self.strategy, lambda e: e.expansion)

    def describe(self) -> dict[str, Any]:
        return {**self.model_dump(mode="json"), "expansions": input_identity(self.expansions)}


def _kept(path: Path, strategy: str | None, text: Callable[[Any], str | None]) -> dict[str, list[str]]:
    """``text(row)`` of the kept rows of ``strategy``, per query id in sample order, where not empty."""
    rows = list(read_expansions(path))
    strategies = sorted({e.strategy for e in rows})
    if strategy is None and len(strategies) > 1:
        raise XdrError(f"{path}: holds the strategies {', '.join(strategies)}; choose one (--strategy)")
    if strategy is not None and strategy not in strategies:
        raise XdrError(f"{path}: has no kept expansions of strategy {strategy!r} (has {', '.join(strategies)})")
    out: dict[str, list[str]] = {}
    for e in rows:
        if (strategy is None or e.strategy == strategy) and (t := text(e)):
            out.setdefault(e.qid, []).append(t)
    return out


def english_queries(
    expansions: str | Path, queries: Sequence[Query], *, expanded: bool, strategy: str | None = None
) -> dict[str, str]:
    """The English text BM25 searches with, per query: the LLM's translation of the query (``expanded``:
    of the query and its kept expansions). English queries are their own translation; a query with
    no translation is left out (it gets no BM25 ranking)."""
    if expanded:
        got = _kept(Path(expansions), strategy, lambda e: e.english)
    else:  # one translation per query, whatever the strategy, standing even when its expansions were dropped
        got = {}
        for e in read_expansions(expansions, kept_only=False):
            if e.translation:
                got.setdefault(e.qid, [e.translation])
    if not expanded and not got and any(q.lang != "en" for q in queries):
        raise XdrError(f"{expansions}: has no translations of the queries alone (made by --order translate-expand)")
    out = {q.id: q.text for q in queries if q.lang == "en"}
    for qid, texts in got.items():
        out[qid] = " ".join(dict.fromkeys(texts)) if expanded else texts[0]
    return out


class Hybrid:
    """Fuses the dense ranking with a BM25 ranking of ``texts`` (query id -> English text)."""

    def __init__(self, bm25: BM25Index | str | Path, texts: dict[str, str], *, method: str = "rrf",
                 weight: float = 0.5, depth: int = 100, rrf_k: int = 60) -> None:
        if method not in ("rrf", "score"):
            raise XdrError(f"hybrid fusion is rrf or score, not {method!r}")
        if not 0.0 <= weight <= 1.0 or depth < 1:
            raise XdrError("hybrid weight must be in [0, 1] and depth positive")
        self.bm25 = bm25 if isinstance(bm25, BM25Index) else BM25Index(bm25)
        self.texts, self.method, self.weight, self.depth, self.rrf_k = texts, method, weight, depth, rrf_k

    def fuse(self, dense: Run, k: int) -> Run:
        sparse = search_bm25(self.bm25, self.texts, self.depth)
        hits = {qid: fuse_rankings(ranked, sparse.hits.get(qid, []), self.method, self.weight, self.rrf_k)[:k]
                for qid, ranked in dense.hits.items()}
        return Run(hits, dense.tag)

    def describe(self) -> dict[str, Any]:
        return {"method": self.method, "weight": self.weight, "depth": self.depth, "rrf_k": self.rrf_k,
                "bm25": self.bm25.describe(), "bm25_queries": len(self.texts)}


def _minmax(ranked: list[tuple[str, float]]) -> dict[str, float]:
    if not ranked:
        return {}
    s = np.array([x for _, x in ranked], np.float64)
    span = s.max() - s.min()
    norm = (s - s.min()) / span if span > 0 else np.ones_like(s)
    return dict(zip((d for d, _ in ranked), norm.tolist(), strict=True))


def fuse_rankings(dense: list[tuple[str, float]], sparse: list[tuple[str, float]], method: str, weight: float,
              rrf_k: int) -> list[tuple[str, float]]:
    if method == "rrf":
        a = {d: 1.0 / (rrf_k + r) for r, (d, _) in enumerate(dense, 1)}
        b = {d: 1.0 / (rrf_k + r) for r, (d, _) in enumerate(sparse, 1)}
        wa, wb = 1.0, 1.0
    else:
        a, b, wa, wb = _minmax(dense), _minmax(sparse), 1.0 - weight, weight
    docs = list(dict.fromkeys([*a, *b]))
    scores = [wa * a.get(d, 0.0) + wb * b.get(d, 0.0) for d in docs]
    order = sorted(range(len(docs)), key=lambda i: -scores[i])  # stable: dense order breaks ties
    return [(docs[i], scores[i]) for i in order]


def search_bm25(bm25: BM25Index | str | Path, texts: dict[str, str], k: int = 100, *, tag: str = "bm25") -> Run:
    """BM25 alone: the top ``k`` passages for each query id's text (English, for an English corpus)."""
    index = bm25 if isinstance(bm25, BM25Index) else BM25Index(bm25)
    qids = list(texts)
    hits = dict(zip(qids, index.search([texts[q] for q in qids], k), strict=True))
    return Run(hits, tag, {"bm25": index.describe(), "k": k, "bm25_queries": len(qids)})


def encode_queries(
    encoder: TextEncoder, queries: Sequence[Query], expansion: QueryExpansion | None = None, *,
    batch_size: int = 128, progress: bool = False,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The query vectors, expanded as ``expansion`` says; and what was done, for the run's settings."""
    budget = stage_budget(encoder.spec, "query", batch_size)
    if expansion is None:
        return encoder.encode([q.text for q in queries], "query", progress=progress, **budget), {}
    found = expansion.texts()
    record = {**expansion.describe(), "expanded_queries": sum(q.id in found for q in queries)}
    if expansion.combine == "concat":
        length = expansion.max_length or encoder.spec.passage_max_length
        enc = encoder.with_spec(encoder.spec.model_copy(update={"query_max_length": length}))  # type: ignore[attr-defined]
        texts = [" ".join([q.text, *found.get(q.id, [])]) for q in queries]
        return enc.encode(texts, "query", progress=progress, **stage_budget(enc.spec, "query", batch_size)), record
    emb = encoder.encode([q.text for q in queries], "query", progress=progress, **budget)
    extra = [(i, t) for i, q in enumerate(queries) for t in found.get(q.id, [])]
    if not extra:
        return emb, record
    vecs = encoder.encode([t for _, t in extra], "query", progress=progress, **budget)
    owner = np.array([i for i, _ in extra])
    counts = np.bincount(owner, minlength=len(queries)).astype(np.float32)
    sums = np.zeros_like(emb)
    np.add.at(sums, owner, vecs)
    has = counts > 0
    w = expansion.weight
    emb[has] = (1.0 - w) * emb[has] + w * sums[has] / counts[has, None]
    if encoder.spec.normalize:
        emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    return emb, record


def search(
    index: str | Path | DenseIndex,
    queries: str | Sequence[str] | Sequence[Query],
    encoder: TextEncoder,
    k: int = 100,
    *,
    reranker: Reranker | None = None,
    expansion: QueryExpansion | None = None,
    hybrid: Hybrid | None = None,
    batch_size: int = 128,
    progress: bool = False,
    tag: str = "xdr",
) -> Run:
    """Encode ``queries`` (expanded if asked), retrieve the top ``k`` passages of each, re-rank them and
    fuse them with BM25 if asked (the steps of the module docstring, in that order).

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
    emb, expanded = encode_queries(encoder, queries, expansion, batch_size=batch_size, progress=progress)
    qids = [q.id for q in queries]
    depth = max(k, reranker.depth if reranker is not None else 0, hybrid.depth if hybrid is not None else 0)
    _warn_if_far_from_exact(dense, emb, depth)
    run = search_vectors(dense, qids, emb, depth, tag=tag)
    settings = {**run.settings, "k": k, **({"expansion": expanded} if expanded else {})}
    if reranker is not None:
        run = reranker.rerank(run.head(reranker.depth), emb, encoder.spec)
        settings["rerank"] = reranker.describe()
    if hybrid is not None:
        run = hybrid.fuse(run, k)
        settings["hybrid"] = hybrid.describe()
    run = run.head(k)
    run.settings = settings
    return run


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
