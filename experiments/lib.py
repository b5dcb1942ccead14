"""What the experiment scripts share: embedding caches, the XQuAD-R dev data and its oracle split, and
the one way a score matrix becomes a ranking and a report.

Scripts import this module and xdr, never each other: a script stays runnable on its own, and a rule
(a cache key, a tie-break) changes in one place for all of them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from xdr.artifacts import atomic_path
from xdr.config import ModelSpec
from xdr.data.schema import Passage, Query
from xdr.data.squad import XQuADR, read_xquad_r
from xdr.generate.artifact import GENERATED_QUERY_MAX_LENGTH
from xdr.langs import XQUAD_R_DEV_LANGS

if TYPE_CHECKING:
    from xdr.evaluate import Report

ROOT = Path(__file__).resolve().parents[1]
TOP = 100  # every experiment ranks, caches and evaluates runs at this depth
MEAN_ALPHAS = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7]  # the oracle experiment's mean-fusion sweep, reused by max-sim


# ------------------------------------------------------------------------------------------------ caches
def cached(path: Path, make: Callable[[], np.ndarray]) -> np.ndarray:
    """``np.load(path)`` if it exists, else ``make()`` saved there: rerunning an experiment does not re-encode."""
    if path.exists():
        return np.load(path)
    arr = make()
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, arr)
    return arr


def digest(texts: Sequence[str]) -> str:
    """A short key for a list of texts, so a cache file names exactly what it holds."""
    return hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------------- data
def read_dev(shared: Path) -> tuple[XQuADR, list[Query]]:
    """XQuAD-R from ``shared`` (the data folder holding xquad-r/) with the questions of the six dev
    languages in one list, language by language."""
    data = read_xquad_r(shared / "xquad-r", XQUAD_R_DEV_LANGS)
    return data, [q for lang in XQUAD_R_DEV_LANGS for q in data.queries[lang]]


def generated_spec(spec: ModelSpec) -> ModelSpec:
    """``spec`` as it encodes generated queries."""
    return spec.model_copy(update={"query_max_length": GENERATED_QUERY_MAX_LENGTH})


def base_id(qid: str) -> str:
    """The question id shared by a question's six languages (query ids are ``<question id>-<lang>``)."""
    return qid.rsplit("-", 1)[0]


def split_halves(qrels: dict[str, dict[str, int]], swap: bool = False) -> tuple[dict[str, str], set[str]]:
    """Base question id -> paragraph, and the base ids that play generated queries: the first half of
    each paragraph's ids in sorted order (the larger half when odd), or the second half with ``swap``."""
    para = {}
    for qid, docs in qrels.items():
        para[base_id(qid)] = next(iter(docs))
    by_para: dict[str, list[str]] = {}
    for base, p in para.items():
        by_para.setdefault(p, []).append(base)
    generated = set()
    for ids in by_para.values():
        ids.sort()
        half = (len(ids) + 1) // 2
        generated.update(ids[half:] if swap else ids[:half])
    return para, generated


@dataclass
class OracleSplit:
    """The oracle split with its me5-small vectors: what every experiment on this split starts from."""

    spec: ModelSpec
    corpus: list[Passage]
    gen: list[Query]  # the half that plays generated queries
    test: list[Query]
    pvec: np.ndarray  # passages, in corpus order
    gvec: np.ndarray  # generated queries, encoded as queries at <= 32 tokens, in ``gen`` order
    tvec: np.ndarray  # test queries
    owner: np.ndarray  # corpus row of each generated query
    test_qrels: dict[str, dict[str, int]]

    @property
    def pid(self) -> list[str]:
        return [p.id for p in self.corpus]

    @property
    def texts(self) -> dict[str, str]:
        return {p.id: p.text for p in self.corpus}


def load_split(shared: Path, work: Path, swap: bool = False) -> OracleSplit:
    """Read XQuAD-R, split each paragraph's questions in halves (one plays the generated queries, in all six
    languages; the other is tested) and encode the three sets of texts, or read them from the cache in ``work``."""
    from xdr.models.encoder import Encoder
    from xdr.models.registry import resolve_spec

    tag = "-swap" if swap else ""
    data, queries = read_dev(shared)
    corpus, qrels = data.corpus, data.qrels
    para, gen_ids = split_halves(qrels, swap)
    gen = [q for q in queries if base_id(q.id) in gen_ids]
    test = [q for q in queries if base_id(q.id) not in gen_ids]

    spec = resolve_spec("me5-small", passage_max_length=256)
    enc = Encoder.load(spec)
    pvec = cached(work / "passages.npy", lambda: enc.encode([p.text for p in corpus], "passage", batch_size=16))
    enc32 = enc.with_spec(generated_spec(spec))
    gvec = cached(work / f"generated{tag}.npy", lambda: enc32.encode([q.text for q in gen], "query", batch_size=64))
    tvec = cached(work / f"test{tag}.npy", lambda: enc.encode([q.text for q in test], "query", batch_size=64))
    row = {p.id: i for i, p in enumerate(corpus)}
    owner = np.array([row[para[base_id(q.id)]] for q in gen])
    return OracleSplit(spec, corpus, gen, test, pvec, gvec, tvec, owner, {q.id: qrels[q.id] for q in test})


# ---------------------------------------------------------------------------------------------- scoring
def top_rows(scores: np.ndarray, k: int = TOP) -> np.ndarray:
    """Column numbers of each row's ``k`` best scores, best first; ties keep column (corpus) order.

    The rule of xdr's own sorts (`xdr.maxsim` re-ranking and multi-vector grouping, BM25 mining): a stable
    sort on the negated scores. FAISS's exact search keeps the same tied passages at depth ``k`` but may
    list them in another order, so only tied scores can rank differently from a flat index.
    """
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def ranking(scores: np.ndarray, qids: Sequence[str], pids: Sequence[str], k: int = TOP) -> dict[str, list[str]]:
    """Query id -> the ids of its ``k`` best passages, from scores [queries, passages] in those orders."""
    return {q: [pids[j] for j in row] for q, row in zip(qids, top_rows(scores, k), strict=True)}


def report(
    scores: np.ndarray, queries: Sequence[Query], pids: Sequence[str], *, qrels: dict[str, dict[str, int]],
    texts: dict[str, str], measures: Sequence[str], budgets: Sequence[int], name: str,
) -> Report:
    """Rank with :func:`ranking` at depth :data:`TOP` and evaluate the run."""
    from xdr.evaluate import evaluate

    ranked = ranking(scores, [q.id for q in queries], pids)
    return evaluate(ranked, list(queries), qrels=qrels, passages=texts, measures=list(measures),
                    token_budgets=list(budgets), name=name)


def maxsim_scores(dense: np.ndarray, gen: np.ndarray, owner: np.ndarray, beta: float) -> np.ndarray:
    """``s(q, p) + beta * max_i s(q, g_i)`` for every query and passage of an in-memory pool (``s(q, p)`` for
    the max term of a passage without generated queries), from the dense scores [queries, passages], the
    generated-query scores [queries, generated] and each generated query's passage column.

    `xdr.maxsim` scores the candidates of a run from a finished store of float16/int8/PQ codes; this scores
    the whole pool from float32 vectors, with no artifact in between.
    """
    best = np.full(dense.shape[::-1], -np.inf, dense.dtype)
    np.maximum.at(best, owner, gen.T)
    best = best.T
    return dense + beta * np.where(np.isinf(best), dense, best)


def hard_negatives(scores: np.ndarray, positive: Sequence[int], n: int) -> list[list[int]]:
    """Per query, the columns of the ``n`` best-scored passages other than its ``positive`` column.

    `xdr.train.mine` mines from texts it re-encodes into a FAISS index and writes JSONL; this takes the same
    top-ranked non-positives from a score matrix of cached vectors (no answer or margin filter).
    """
    return [[j for j in row if j != pos][:n] for row, pos in zip(top_rows(scores, n + 1), positive, strict=True)]
