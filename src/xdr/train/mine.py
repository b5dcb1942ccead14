"""Hard-negative mining: training queries with positives in, Tevatron-style training JSONL out.

For every query the corpus is ranked (dense: FAISS with the current model; ``bm25``: bm25s with an
English analyzer), the top ``depth`` results are examined in rank order and candidates are dropped, each
for the first reason that applies (the counts per reason go to the sidecar meta):

- ``positive``: one of the query's positives (same id, or the same text under another id);
- ``skip_top``: the first ``skip_top`` remaining candidates (the top ranks hold most false negatives);
- ``no_match``: BM25 only, a candidate sharing no term with the query (score 0 is not a *hard* negative);
- ``answer``: its text contains one of the query's answers, case-sensitively, as R@kt counts a hit
  (``yes``/``no`` answers are not looked for, as in R@kt; R@kt matches on tokenized text, this on raw
  text, so an answer whose tokenization differs from its text may slip through here);
- ``margin``: scores too close to the positive, with the semantics of sentence-transformers'
  ``mine_hard_negatives``: against the *lowest* score of the query's positives ``s+``, a candidate ``s``
  is dropped when ``s + margin > s+`` (absolute) or ``s > s+ - |s+| * relative_margin`` (relative);
  queries whose positive cannot be scored (BM25 with a positive outside the corpus) skip this filter;
- ``surplus``: survivors beyond ``n_negatives`` (``sampling="top"`` keeps the best ranked, ``"random"``
  a seeded sample per query, in rank order).

Output rows: ``{query_id, query, lang, answers, positive_passages, negative_passages}`` with passages
``{docid, title, text}`` (negatives also carry ``score``), read by ``xdr.data.read_training`` as format
``tevatron``. A query is written even when no negative survived (its positives still train with
in-batch negatives); the meta counts such queries.

BM25 indexes passages (title + text) with an English analyzer (lower-casing, English stopwords, Snowball
English stemming), so it is only useful for English queries or English translations of the queries
(``search_texts`` maps query ids to the text to search with); non-English queries mostly share no term
with the corpus and get no negatives.

Mining is one pass and not resumable: a rerun recomputes everything and replaces the output atomically.
The dense method's embedding store and index are resumable themselves when ``work_dir`` is given (and are
reused by a rerun); without it they go to a temporary directory that is removed afterwards.

Memory: the queries, the top-``depth`` candidate ids and the texts of the candidates are held; the
corpus is streamed (dense) or held with its BM25 index (``bm25``; bm25s keeps everything in memory).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from xdr.artifacts import Stage, atomic_path, input_fingerprint, write_sidecar_meta
from xdr.data import lookup_passages, read_passages
from xdr.data.schema import Passage, TrainingExample
from xdr.data.xor import span_answers
from xdr.encode import encode_passages
from xdr.errors import XdrError
from xdr.index import DenseIndex, build_index, load_index
from xdr.models.base import TextEncoder, stage_budget

Method = Literal["dense", "bm25"]
Sampling = Literal["top", "random"]
REASONS = ("positive", "skip_top", "no_match", "answer", "margin", "surplus")
QUERY_CHUNK = 4096  # queries encoded and searched per call


class BM25Settings(BaseModel):
    """BM25 parameters; the defaults are Anserini/Pyserini's (k1 0.9, b 0.4), which DPR's negatives used."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    k1: float = Field(default=0.9, ge=0.0, allow_inf_nan=False)
    b: float = Field(default=0.4, ge=0.0, le=1.0)
    method: str = "lucene"
    stopwords: str | None = "en"
    stemmer: str | None = "english"


class MiningSettings(BaseModel):
    """How negatives are chosen; recorded in the mined file's sidecar meta. See the module docstring for
    the filters, in the order they apply."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: Method = "dense"
    depth: int = Field(default=100, ge=1, description="results examined per query, positives included")
    n_negatives: int | None = Field(default=30, ge=1, description="negatives kept per query (None: all)")
    skip_top: int = Field(default=0, ge=0, description="top non-positive results skipped")
    margin: float | None = Field(default=None, ge=0.0, allow_inf_nan=False)
    relative_margin: float | None = Field(default=None, ge=0.0, lt=1.0)
    answer_check: bool = True
    sampling: Sampling = "top"
    seed: int = 42
    batch_size: int = Field(default=128, ge=1, description="queries per encoder call (dense)")
    bm25: BM25Settings = BM25Settings()


def _query_seed(seed: int, qid: str) -> int:
    """Per-query seed of random sampling: a query's negatives do not depend on the other queries."""
    return int.from_bytes(hashlib.blake2b(f"xdr.mine\x1f{seed}\x1f{qid}".encode(), digest_size=8).digest(), "big")


@dataclass
class _Ranked:
    """Per query: candidate ids and scores (best first) and the lowest positive score, if known."""

    ids: list[list[str]]
    scores: list[list[float]]
    positive_scores: list[float | None]
    info: dict[str, Any]


def _stream_corpus(corpus: str | Path | Sequence[Passage]) -> Iterator[Passage]:
    if isinstance(corpus, str | Path):
        return read_passages(corpus, check_duplicates=False)
    return iter(corpus)


def _dense_rank(
    examples: Sequence[TrainingExample], texts: Sequence[str], corpus: str | Path | Sequence[Passage],
    encoder: TextEncoder | None, index: str | Path | DenseIndex | None,
    work_dir: str | Path | None, depth: int, batch_size: int, progress: bool,
) -> _Ranked:
    if encoder is None:
        raise XdrError("dense mining needs an encoder (the model whose negatives are wanted)")
    built, tmp_work = index is None, work_dir is None
    with contextlib.ExitStack() as stack:
        if index is None:
            if work_dir is None:
                work_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="xdr-mine-"))
            wd = Path(work_dir)
            source = input_fingerprint(corpus) if isinstance(corpus, str | Path) else None
            emb = encode_passages(_stream_corpus(corpus), encoder, wd / "embeddings",
                                  source=source, batch_size=batch_size, progress=progress)
            index = build_index(emb, wd / "index", "Flat", progress=progress)
        dense = index if isinstance(index, DenseIndex) else load_index(index)
        dense.spec.check_same_space(encoder.spec, f"the index at {dense.path} (index vs mining encoder)")
        sep = encoder.spec.title_separator
        ids: list[list[str]] = []
        scores: list[list[float]] = []
        pos_scores: list[float | None] = []
        for start in range(0, len(examples), QUERY_CHUNK):
            chunk = examples[start:start + QUERY_CHUNK]
            budget = stage_budget(encoder.spec, "query", batch_size)
            q = encoder.encode(texts[start:start + QUERY_CHUNK], "query", **budget)
            s, i = dense.search(q, depth)
            for row_ids, row_scores in zip(i.tolist(), s.tolist(), strict=True):
                kept = [(d, sc) for d, sc in zip(row_ids, row_scores, strict=True) if d is not None]
                ids.append([d for d, _ in kept])
                scores.append([sc for _, sc in kept])
            owner = np.repeat(np.arange(len(chunk)), [len(e.positives) for e in chunk])
            p = encoder.encode([p.joined(sep) for e in chunk for p in e.positives], "passage",
                               **stage_budget(encoder.spec, "passage", batch_size))
            qs = q[owner]
            ps = -np.square(qs - p).sum(1) if dense.metric == "l2" else (qs * p).sum(1)
            mins = np.full(len(chunk), np.inf)
            np.minimum.at(mins, owner, ps)
            pos_scores.extend(float(x) for x in mins)
        info = {
            "model": encoder.spec.model_dump(), "metric": dense.metric, "factory": dense.factory,
            "index": None if built and tmp_work else str(dense.path), "index_built": built,
            "work_dir": str(work_dir) if built and not tmp_work else None,
        }
    return _Ranked(ids, scores, pos_scores, info)


def _bm25_rank(
    examples: Sequence[TrainingExample], texts: Sequence[str], passages: Sequence[Passage],
    settings: BM25Settings, depth: int,
) -> _Ranked:
    try:
        import bm25s
    except ImportError as e:
        raise XdrError("BM25 mining needs bm25s: pip install bm25s PyStemmer") from e
    stemmer = None
    if settings.stemmer:
        try:
            import Stemmer
        except ImportError as e:
            raise XdrError("BM25 stemming needs PyStemmer: pip install PyStemmer (or set stemmer=None)") from e
        stemmer = Stemmer.Stemmer(settings.stemmer)
    tok = bm25s.tokenization.Tokenizer(stopwords=settings.stopwords or [], stemmer=stemmer)
    doc_tokens = tok.tokenize([p.joined() for p in passages], update_vocab=True, return_as="ids",
                              show_progress=False)
    retriever = bm25s.BM25(k1=settings.k1, b=settings.b, method=settings.method)
    retriever.index(doc_tokens, show_progress=False)
    row = {p.id: i for i, p in enumerate(passages)}
    doc_ids = np.array([p.id for p in passages], dtype=object)
    q_tokens = tok.tokenize(list(texts), update_vocab=False, return_as="ids", show_progress=False)
    k = min(depth, len(passages))
    ids: list[list[str]] = []
    scores: list[list[float]] = []
    pos_scores: list[float | None] = []
    for ex, qt in zip(examples, q_tokens, strict=True):
        s = retriever.get_scores_from_ids(qt)
        top = np.argpartition(-s, k - 1)[:k] if k < len(s) else np.arange(len(s))
        top = top[np.lexsort((top, -s[top]))]  # best first; ties by corpus order
        ids.append(doc_ids[top].tolist())
        scores.append(s[top].astype(float).tolist())
        known = [float(s[row[p.id]]) for p in ex.positives if p.id in row]
        pos_scores.append(min(known) if len(known) == len(ex.positives) else None)
    info = {"bm25": settings.model_dump(), "bm25s": version("bm25s"),
            "pystemmer": version("PyStemmer") if stemmer is not None else None}
    return _Ranked(ids, scores, pos_scores, info)


def _passage_json(p: Passage, score: float | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {"docid": p.id, "title": p.title, "text": p.text}
    if score is not None:
        d["score"] = round(score, 6)
    return d


def mine_hard_negatives(
    examples: Iterable[TrainingExample],
    corpus: str | Path | Iterable[Passage],
    out_path: str | Path,
    settings: MiningSettings | None = None,
    *,
    encoder: TextEncoder | None = None,
    index: str | Path | DenseIndex | None = None,
    work_dir: str | Path | None = None,
    search_texts: Mapping[str, str] | None = None,
    source: str | Path | None = None,
    progress: bool = False,
) -> Path:
    """Mine hard negatives for ``examples`` from ``corpus`` into Tevatron JSONL at ``out_path``.

    ``corpus`` is a file (any passage format ``read_passages`` detects) or passages in memory. Dense
    mining encodes the queries with ``encoder`` and searches ``index`` (an index directory or a loaded
    DenseIndex made with the same model) or, without one, an exact index it builds over the corpus in
    ``work_dir``. ``settings`` says how many results are examined and which are kept (see the module
    docstring for the filters). ``search_texts`` replaces the text searched for some query ids (e.g.
    English translations for BM25); the written query stays the original. ``source`` (the training
    file) is fingerprinted into the meta. Returns ``out_path``.
    """
    s = settings or MiningSettings()
    method, depth, n_negatives, skip_top = s.method, s.depth, s.n_negatives, s.skip_top
    margin, relative_margin, answer_check = s.margin, s.relative_margin, s.answer_check
    if method == "bm25" and index is not None:
        raise XdrError("an index is for dense mining; BM25 indexes the corpus itself")
    out = Path(out_path)
    exs: list[TrainingExample] = []
    no_positive = 0
    seen: set[str] = set()
    for e in examples:
        if not e.positives:
            no_positive += 1
            continue
        if e.query.id in seen:
            raise XdrError(f"duplicate query id {e.query.id!r} in the training examples")
        seen.add(e.query.id)
        exs.append(e)
    if not exs:
        raise XdrError("no training examples with a positive passage to mine negatives for")
    texts = [(search_texts or {}).get(e.query.id, e.query.text) for e in exs]
    corpus_src: str | Path | list[Passage] = corpus if isinstance(corpus, str | Path) else list(corpus)

    if method == "dense":
        ranked = _dense_rank(exs, texts, corpus_src, encoder, index, work_dir, depth, s.batch_size, progress)
        needed = {d for row in ranked.ids for d in row}
        texts_of = lookup_passages(_stream_corpus(corpus_src), needed)
    else:
        passages = list(_stream_corpus(corpus_src))
        if not passages:
            raise XdrError("empty corpus: nothing to mine negatives from")
        ranked = _bm25_rank(exs, texts, passages, s.bm25, depth)
        texts_of = {p.id: p for p in passages}

    dropped: Counter[str] = Counter()
    written = negatives_total = without_negatives = candidates = 0
    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for ex, ids, scores, pos in zip(exs, ranked.ids, ranked.scores, ranked.positive_scores, strict=True):
            pos_ids = {p.id for p in ex.positives}
            pos_texts = {p.text for p in ex.positives}
            answers = span_answers(ex.query.answers) if answer_check else []
            survivors: list[tuple[Passage, float]] = []
            skipped = 0
            for docid, score in zip(ids, scores, strict=True):
                candidates += 1
                p = texts_of[docid]
                if docid in pos_ids or p.text in pos_texts:
                    reason = "positive"
                elif skipped < skip_top:
                    skipped += 1
                    reason = "skip_top"
                elif method == "bm25" and score <= 0:
                    reason = "no_match"
                elif any(a in p.text for a in answers):
                    reason = "answer"
                elif pos is not None and (
                    (margin is not None and score + margin > pos)
                    or (relative_margin is not None and score > pos - abs(pos) * relative_margin)
                ):
                    reason = "margin"
                else:
                    survivors.append((p, score))
                    continue
                dropped[reason] += 1
            chosen = survivors
            if n_negatives is not None and len(survivors) > n_negatives:
                if s.sampling == "top":
                    chosen = survivors[:n_negatives]
                else:
                    rng = np.random.default_rng(_query_seed(s.seed, ex.query.id))
                    pick = np.sort(rng.choice(len(survivors), size=n_negatives, replace=False))
                    chosen = [survivors[i] for i in pick]
                dropped["surplus"] += len(survivors) - len(chosen)
            row = {
                "query_id": ex.query.id,
                "query": ex.query.text,
                "lang": ex.query.lang,
                "answers": list(ex.query.answers),
                "positive_passages": [_passage_json(p) for p in ex.positives],
                "negative_passages": [_passage_json(p, s) for p, s in chosen],
            }
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            written += 1
            negatives_total += len(chosen)
            without_negatives += not chosen

    inputs: dict[str, Any] = {
        "corpus": input_fingerprint(corpus) if isinstance(corpus, str | Path) else {"in_memory": len(corpus_src)}
    }
    if source is not None:
        inputs["training"] = input_fingerprint(source)
    params = {
        "method": method, **ranked.info, "depth": depth, "n_negatives": n_negatives, "skip_top": skip_top,
        "margin": margin, "relative_margin": relative_margin, "answer_check": answer_check,
        "sampling": s.sampling, "seed": s.seed, "search_texts": len(search_texts) if search_texts else 0,
    }
    counts = {
        "queries": written, "skipped_no_positive": no_positive, "candidates": candidates,
        "dropped": {r: dropped.get(r, 0) for r in REASONS}, "negatives": negatives_total,
        "queries_without_negatives": without_negatives,
        "positive_score_unknown": sum(1 for p in ranked.positive_scores if p is None),
    }
    write_sidecar_meta(out, Stage.MINE, params, inputs=inputs, counts=counts)
    return out
