"""Why a passage was found: its generated queries that come closest to the question, with language and score.

An xQG index (fused or multi-vector) or max-sim re-ranking finds a passage partly through the questions
generated for it. Showing the ones nearest the user's question (a Telugu paraphrase of it, say) makes a
hit explainable. The max-sim store keeps vectors only (identical queries once), so the texts come from
the generate artifact, copied into the text store; their vectors are encoded on demand, with the query
encoder at the generated-query length xQG uses, and kept in a bounded LRU cache.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from xdr.data.textstore import TextStore
from xdr.generate.artifact import GENERATED_QUERY_MAX_LENGTH
from xdr.models.base import TextEncoder, stage_budget


class Explainer:
    """The top ``top`` generated queries of each hit by inner product with the question's vector."""

    def __init__(self, texts: TextStore, encoder: TextEncoder, *, top: int = 3, cache_passages: int = 4096) -> None:
        self.texts, self.encoder, self.top = texts, encoder, top
        with_spec = getattr(encoder, "with_spec", None)  # Encoder reuses its weights under another length
        if with_spec is not None:
            self.encoder = with_spec(encoder.spec.model_copy(update={"query_max_length": GENERATED_QUERY_MAX_LENGTH}))
        self._cache: OrderedDict[str, tuple[list[tuple[str, str]], np.ndarray]] = OrderedDict()
        self._cache_size = cache_passages

    def _generated(self, docids: Sequence[str]) -> dict[str, tuple[list[tuple[str, str]], np.ndarray]]:
        """Each passage's ``(lang, query)`` rows and their vectors, encoding the uncached ones in one call."""
        todo = {d: self.texts.generated(d) for d in dict.fromkeys(docids) if d not in self._cache}
        texts = [q for rows in todo.values() for _, q in rows]
        vecs = (self.encoder.encode(texts, "query", **stage_budget(self.encoder.spec, "query", len(texts)))
                if texts else np.empty((0, self.encoder.dim), np.float32))
        at = 0
        for d, rows in todo.items():
            self._cache[d] = (rows, vecs[at:at + len(rows)])
            at += len(rows)
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        out = {}
        for d in docids:
            if d in self._cache:
                self._cache.move_to_end(d)
                out[d] = self._cache[d]
            else:  # evicted by this very call (more hits than the cache holds): encode again, unsaved
                rows = self.texts.generated(d)
                out[d] = (rows, self.encoder.encode([q for _, q in rows], "query"))
        return out

    def explain(self, query_vec: np.ndarray, docids: Sequence[str]) -> dict[str, list[dict[str, object]]]:
        """``{docid: [{"lang", "query", "score"}, ...]}``, best first; an empty list for a passage with none."""
        out: dict[str, list[dict[str, object]]] = {}
        for d, (rows, vecs) in self._generated(docids).items():
            if not rows:
                out[d] = []
                continue
            scores = vecs @ np.asarray(query_vec, np.float32)
            best = np.argsort(-scores, kind="stable")[:self.top]
            out[d] = [{"lang": rows[j][0], "query": rows[j][1], "score": round(float(scores[j]), 4)} for j in best]
        return out
