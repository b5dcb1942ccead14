"""Retriever training data in the two common layouts: DPR JSON and Tevatron JSONL.

- DPR (``biencoder-nq-train.json``, XOR's DPR-format data): one JSON array of
  ``{question, answers, positive_ctxs, negative_ctxs, hard_negative_ctxs}``, each ctx
  ``{title, text, passage_id?}``. The array is streamed element by element (see
  ``_io.iter_json_array``), so multi-GB files (and ``.json.gz``) need no more memory than one example.
  Query ids are the element's 0-based position in the array, as the file has none. A ctx without
  ``passage_id`` gets ``"<query id>-pos<j>"`` / ``"<query id>-neg<j>"``. Negatives are the
  ``hard_negative_ctxs``; the random ``negative_ctxs`` are not kept, since in-batch negatives already
  play their part.
- Tevatron (``{query_id, query, positive_passages, negative_passages}``, passages
  ``{docid, title, text}``, optional ``answers`` and ``lang``).

Neither layout records a language unless a Tevatron row has ``lang``, so readers take ``lang``.
Examples without any positive are skipped, as DPR's own loader does: there is nothing to train on.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from xdr.data._io import Record, UniqueIds, iter_json_array, iter_jsonl
from xdr.data.schema import Passage, Query, TrainingExample
from xdr.langs import normalize_lang


def _ctx(rec: Record, id_field: str, fallback_id: str | None) -> Passage:
    has_id = rec.obj.get(id_field) is not None
    pid = rec.ident(id_field) if fallback_id is None or has_id else fallback_id
    return Passage(id=pid, text=rec.text("text"), title=rec.text("title", required=False))


def read_dpr(path: str | Path, *, lang: str = "en") -> Iterator[TrainingExample]:
    """Stream a DPR training JSON file (optionally ``.gz``) as TrainingExamples."""
    code = normalize_lang(lang)
    for i, rec in enumerate(iter_json_array(path)):
        qid = str(i)
        query = Query(id=qid, lang=code, text=rec.text("question"), answers=rec.answers("answers"))
        positives = tuple(
            _ctx(c, "passage_id", f"{qid}-pos{j}") for j, c in enumerate(rec.records("positive_ctxs"))
        )
        negatives = tuple(
            _ctx(c, "passage_id", f"{qid}-neg{j}")
            for j, c in enumerate(rec.records("hard_negative_ctxs", required=False))
        )
        if positives:
            yield TrainingExample(query=query, positives=positives, negatives=negatives)


def read_tevatron(
    path: str | Path, *, lang: str = "en", check_duplicates: bool = True
) -> Iterator[TrainingExample]:
    """Stream a Tevatron-style training JSONL file as TrainingExamples."""
    default = normalize_lang(lang)
    ids = UniqueIds(check_duplicates)
    for rec in iter_jsonl(path):
        qid = ids.check(rec, "query_id", rec.ident("query_id"))
        code = rec.lang("lang") if rec.obj.get("lang") is not None else default
        query = Query(id=qid, lang=code, text=rec.text("query"), answers=rec.answers("answers"))
        positives = tuple(_ctx(c, "docid", None) for c in rec.records("positive_passages"))
        negatives = tuple(_ctx(c, "docid", None) for c in rec.records("negative_passages", required=False))
        if positives:
            yield TrainingExample(query=query, positives=positives, negatives=negatives)
