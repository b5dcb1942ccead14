"""What the HTTP service does, without HTTP: load an index, its encoder and texts once, answer batches.

:class:`Service` holds everything a request needs and answers a *batch* of requests with one encoder call
and one FAISS search per group of equal search settings (:meth:`Service.search_batch`), which is what the
micro-batcher (:mod:`xdr.serve.batcher`) calls. Searching goes through :func:`xdr.search.search_vectors`
and :class:`xdr.maxsim.MaxSimReranker`, the same code as ``xdr search``; the service adds only the
grouping by settings and the response shape.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from xdr.artifacts import Stage, input_identity, read_meta
from xdr.config import DEFAULT_BETA, ModelSpec
from xdr.data import read_passages
from xdr.data.language import UNDETERMINED, detect_language
from xdr.data.runs import Run
from xdr.data.textstore import TextStore, open_text_store
from xdr.errors import XdrError
from xdr.generate.artifact import read_generated
from xdr.index import DenseIndex, load_index
from xdr.maxsim import MaxSimReranker
from xdr.models.base import TextEncoder, stage_budget
from xdr.models.encoder import Encoder
from xdr.models.registry import resolve_spec
from xdr.search import search_vectors
from xdr.serve.batcher import BatchSettings
from xdr.serve.explain import Explainer

IndexKind = Literal["plain", "xqg-fused", "multi-vector"]


class ServeSettings(BaseModel):
    """Everything ``xdr serve`` is started with; frozen, and shown at ``/info``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    index: Path
    corpus: Path = Field(description="the corpus the index was built from, for the passages' texts")
    texts_cache: Path | None = Field(default=None, description="where text stores are kept (default: the xdr cache)")
    store: Path | None = Field(default=None, description="a max-sim store (`xdr maxsim-store`) for re-ranking")
    generated: Path | None = Field(default=None, description="a generate artifact, to explain hits")
    model: str | None = Field(default=None, description="query encoder (default: the index's model)")
    device: str | None = None
    nprobe: int | None = Field(default=None, ge=1)
    ef_search: int | None = Field(default=None, ge=1)
    batch: BatchSettings = BatchSettings()
    max_k: int = Field(default=100, ge=1, description="largest k a request may ask for")
    max_query_chars: int = Field(default=1000, ge=1)
    max_batch_queries: int = Field(default=64, ge=1, description="most queries in one POST /search")
    rerank_depth: int = Field(default=100, ge=1, description="first-stage candidates re-ranked by max-sim")
    explain_top: int = Field(default=3, ge=1, description="generated queries shown per hit")


@dataclass(frozen=True)
class SearchRequest:
    """One question, validated by the HTTP layer."""

    text: str
    k: int = 10
    lang: str | None = None
    nprobe: int | None = None
    ef_search: int | None = None
    rerank: bool = False
    beta: float | None = None
    explain: bool = False


def index_kind(index: DenseIndex) -> IndexKind:
    """Plain, xQG-fused (built from an `xdr augment` store) or multi-vector (with generated-query rows)."""
    if index.multi is not None:
        return "multi-vector"
    emb = read_meta(index.path)["params"].get("embeddings", {})
    return "xqg-fused" if emb.get("stage") == Stage.AUGMENT.value else "plain"


class Service:
    """An index, its query encoder, the texts and the optional max-sim store and explainer, loaded once."""

    def __init__(self, settings: ServeSettings, encoder: TextEncoder) -> None:
        self.settings, self.encoder = settings, encoder
        self.index = load_index(settings.index, nprobe=settings.nprobe, ef_search=settings.ef_search)
        self.index.spec.check_same_space(encoder.spec, f"the index at {settings.index} (index vs query encoder)")
        self.kind = index_kind(self.index)
        self.defaults = dict(self.index.settings)
        self.reranker = None
        if settings.store is not None:
            self.reranker = MaxSimReranker(settings.store, depth=settings.rerank_depth)
            self.reranker.check(encoder.spec, self.index.metric, str(settings.index))
        self.texts = self._open_texts()
        self.explainer = Explainer(self.texts, encoder, top=settings.explain_top) if self.texts.has_generated else None

    @classmethod
    def load(cls, settings: ServeSettings) -> Service:
        """Load the query encoder (the index's model unless ``settings.model`` names one) and everything else."""
        meta = read_meta(settings.index) if (settings.index / "meta.json").exists() else None
        if meta is None:
            raise XdrError(f"{settings.index}: not an index (`xdr index`)")
        spec = ModelSpec(**meta["params"]["model"]) if settings.model is None else resolve_spec(settings.model)
        return cls(settings, Encoder.load(spec, device=settings.device))

    def _open_texts(self) -> TextStore:
        """The given text store, or the corpus's cached one (built on first use, with the generated queries)."""
        s = self.settings
        if s.generated is None:
            return open_text_store(s.corpus, lambda: read_passages(s.corpus), cache_dir=s.texts_cache)
        gen_dir = s.generated
        return open_text_store(
            s.corpus, lambda: read_passages(s.corpus),
            generated=lambda: ((g.docid, g.lang, g.query or "") for g in read_generated(gen_dir)),
            generated_identity=input_identity(gen_dir), cache_dir=s.texts_cache,
        )

    def check(self, r: SearchRequest) -> None:
        """Refuse, before it joins a batch, a request whose settings this index or service cannot honour."""
        if r.k > self.settings.max_k:
            raise XdrError(f"k must be at most {self.settings.max_k}, not {r.k}")
        if r.nprobe is not None:
            if self.index.nlist is None:
                raise XdrError(f"nprobe applies to IVF indexes; this one is {self.index.factory!r}")
            if r.nprobe > self.index.nlist:
                raise XdrError(f"nprobe {r.nprobe} exceeds the index's {self.index.nlist} IVF lists")
        if r.ef_search is not None and "efSearch" not in self.defaults:
            raise XdrError(f"efSearch applies to HNSW indexes; this one is {self.index.factory!r}")
        if r.rerank and self.reranker is None:
            raise XdrError("re-ranking needs a max-sim store (xdr serve --store)")
        if r.beta is not None and self.reranker is None and self.index.multi is None:
            raise XdrError("beta applies to max-sim re-ranking or a multi-vector index")
        if r.explain and self.explainer is None:
            raise XdrError("explaining hits needs the generated queries (xdr serve --generated)")

    def info(self) -> dict[str, Any]:
        passages = self.index.multi.passages if self.index.multi is not None else self.index.ntotal
        return {
            "index": str(self.settings.index), "kind": self.kind, "passages": passages,
            "model": self.encoder.spec.name, "metric": self.index.metric, "settings": self.defaults,
            "rerank": self.reranker is not None, "explain": self.explainer is not None,
            "max_k": self.settings.max_k, "batch": self.settings.batch.model_dump(),
        }

    def _first_stage(self, reqs: list[SearchRequest], emb: np.ndarray) -> list[list[tuple[str, float]]]:
        """One FAISS search per group of requests with the same knobs, each to the group's deepest depth."""
        groups: dict[tuple[Any, ...], list[int]] = defaultdict(list)
        for i, r in enumerate(reqs):
            beta = r.beta if self.index.multi is not None and not r.rerank else None
            groups[(r.nprobe, r.ef_search, beta)].append(i)
        ranked: list[list[tuple[str, float]]] = [[] for _ in reqs]
        base_beta = self.index.multi.beta if self.index.multi is not None else None
        for (nprobe, ef, beta), rows in groups.items():
            self.index.configure(nprobe=nprobe or self.defaults.get("nprobe"),
                                 ef_search=ef or self.defaults.get("efSearch"),
                                 beta=beta if beta is not None else base_beta)
            depth = max(self._depth(reqs[i]) for i in rows)
            run = search_vectors(self.index, [str(i) for i in rows], emb[rows], depth)
            for i in rows:
                ranked[i] = run[str(i)]
        return ranked

    def _depth(self, r: SearchRequest) -> int:
        return max(r.k, self.reranker.depth) if r.rerank and self.reranker is not None else r.k

    def search_batch(self, reqs: list[SearchRequest]) -> list[dict[str, Any]]:
        """Answer requests together: one encoder call, one search per settings group, then per request."""
        start = time.perf_counter()
        texts = [r.text for r in reqs]
        emb = self.encoder.encode(texts, "query", **stage_budget(self.encoder.spec, "query", len(texts)))
        ranked = self._first_stage(reqs, emb)
        out = []
        for i, r in enumerate(reqs):
            hits = ranked[i]
            if r.rerank:
                assert self.reranker is not None  # refused by check()
                rr = MaxSimReranker(self.reranker.store, beta=DEFAULT_BETA if r.beta is None else r.beta,
                                    depth=self.reranker.depth)
                hits = rr.rerank(Run({"q": hits[:rr.depth]}), emb[i:i + 1], self.encoder.spec)["q"]
            out.append(self._response(r, hits[:r.k], emb[i]))
        took = round((time.perf_counter() - start) * 1000, 2)
        for o in out:
            o["took_ms"] = took
        return out

    def _response(self, r: SearchRequest, hits: list[tuple[str, float]], vec: np.ndarray) -> dict[str, Any]:
        lang = r.lang or detect_language(r.text)
        passages = self.texts.passages([d for d, _ in hits])
        why = self.explainer.explain(vec, [d for d, _ in hits]) if r.explain and self.explainer else {}
        rows = []
        for rank, (docid, score) in enumerate(hits, 1):
            p = passages.get(docid)
            hit: dict[str, Any] = {"rank": rank, "docid": docid, "score": round(float(score), 5),
                                   "title": p.title if p else "", "text": p.text if p else ""}
            if r.explain and self.explainer:
                hit["generated"] = why.get(docid, [])
            rows.append(hit)
        settings = {k: v for k, v in (("nprobe", r.nprobe), ("efSearch", r.ef_search)) if v is not None}
        settings = {**self.defaults, **settings, "rerank": r.rerank}
        if r.rerank:
            settings["beta"] = DEFAULT_BETA if r.beta is None else r.beta
        return {"query": r.text, "lang": lang, "lang_detected": r.lang is None and lang != UNDETERMINED,
                "k": r.k, "settings": settings, "hits": rows}
