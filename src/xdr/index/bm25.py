"""A BM25 index over an (English) corpus, for translated queries and for hybrid search.

Scoring, the sparse matrix and its files are bm25s's (Lucene's BM25 variant by default); tokenization is
bm25s's too, with an English stop-word list and the Snowball stemmer (PyStemmer). What stays here is the
artifact around it: the docids in corpus order, the settings in ``meta.json`` (a query must be tokenized
as the corpus was), ``_DONE``, and a directory that appears whole or not at all. bm25s indexes from
token lists in memory, so building needs the corpus's tokens in RAM (about its text size); searching
loads the sparse matrix only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import bm25s
import numpy as np
import Stemmer

from xdr.artifacts import Stage, atomic_dir, input_identity, mark_done, open_artifact, start_artifact
from xdr.data.schema import Passage
from xdr.embeddings import read_ids, write_ids_file
from xdr.errors import XdrError

STAGE = Stage.BM25
IDS = "docids.txt"
DEFAULTS: dict[str, Any] = {"k1": 1.5, "b": 0.75, "method": "lucene", "stopwords": "en", "stemmer": "english"}


def _tokenize(texts: Sequence[str], settings: dict[str, Any], ids: bool) -> Any:
    stemmer = Stemmer.Stemmer(settings["stemmer"]) if settings["stemmer"] else None
    return bm25s.tokenize(list(texts), stopwords=settings["stopwords"], stemmer=stemmer, return_ids=ids,
                          show_progress=False)


def build_bm25(
    passages: Iterable[Passage], out_dir: str | Path, *, source: str | Path | None = None, **settings: Any
) -> Path:
    """Index ``passages`` (title + text) into ``out_dir``; ``settings`` override :data:`DEFAULTS`.

    ``source`` (the corpus file) is recorded by content hash. The directory is built beside its final
    name and renamed into place, so a killed build leaves no index that looks complete.
    """
    unknown = set(settings) - set(DEFAULTS)
    if unknown:
        raise XdrError(f"unknown BM25 settings: {', '.join(sorted(unknown))} (known: {', '.join(DEFAULTS)})")
    s = {**DEFAULTS, **settings}
    docids, texts = [], []
    for p in passages:
        docids.append(p.id)
        texts.append(p.joined(" "))
    if not docids:
        raise XdrError("no passages to index")
    retriever = bm25s.BM25(k1=s["k1"], b=s["b"], method=s["method"])
    retriever.index(_tokenize(texts, s, ids=True), show_progress=False)
    out = Path(out_dir)
    with atomic_dir(out, replace=True) as tmp:
        retriever.save(tmp, show_progress=False)
        write_ids_file(tmp / IDS, docids)
        corpus = {"corpus": input_identity(source)} if source is not None else {}
        start_artifact(tmp, STAGE, {**s, **corpus, "passages": len(docids)})
        mark_done(tmp)
    return out


class BM25Index:
    """A loaded BM25 index: :meth:`search` takes query texts and gives ranked ``(docid, score)`` lists."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        meta = open_artifact(self.path, STAGE, what="a BM25 index (`xdr bm25`)")
        self.settings = {k: meta["params"][k] for k in DEFAULTS}
        self.docids = np.asarray(read_ids(self.path / IDS).to_pylist(), dtype=object)
        self.retriever = bm25s.BM25.load(self.path, show_progress=False)

    def search(self, texts: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
        """The top ``k`` passages of each text with a positive score (none share a term with the query)."""
        if not texts:
            return []
        tokens = _tokenize(texts, self.settings, ids=False)
        rows, scores = self.retriever.retrieve(tokens, k=min(k, len(self.docids)), show_progress=False)
        return [[(str(self.docids[r]), float(s)) for r, s in zip(rr, ss, strict=True) if s > 0]
                for rr, ss in zip(rows.tolist(), scores.tolist(), strict=True)]

    def describe(self) -> dict[str, Any]:
        return {"index": str(self.path), **self.settings}
