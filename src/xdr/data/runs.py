"""Runs: the one ranked-results type, and every file a run is read from or written to.

A :class:`Run` is what search returns. On disk a run is a TREC file (``qid Q0 docid rank score tag``) or an
XOR-Retrieve submission (JSON ``[{"id", "lang", "ctxs": [passage texts]}]``, ranked texts without ids).
Other shapes have names here too: :data:`RunScores` (``{qid: {docid: score}}``, what ir-measures takes)
and :data:`Ranking` (``{qid: [docid, ...]}``, best first).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xdr.artifacts import atomic_path
from xdr.data.lookup import lookup_texts
from xdr.data.schema import Passage, Query
from xdr.data.trec import check_token, number, rows
from xdr.errors import DataError, XdrError

RUN_COLUMNS = ("qid", "Q0", "docid", "rank", "score", "tag")
RUN_FILE, XOR_FILE = "run.trec", "xor.json"  # the names a search output directory gives its two runs
RunScores = Mapping[str, Mapping[str, float]]
Ranking = Mapping[str, Sequence[str]]


@dataclass
class Run:
    """Ranked hits per query: ``hits[qid]`` is ``[(docid, score), ...]``, best first, in query order."""

    hits: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    tag: str = "xdr"
    settings: dict[str, Any] = field(default_factory=dict)  # how it was searched (k, nprobe, re-ranking)

    def __getitem__(self, qid: str) -> list[tuple[str, float]]:
        return self.hits[qid]

    def scores(self) -> dict[str, dict[str, float]]:
        """The ``{qid: {docid: score}}`` form that ir-measures takes as a run."""
        return {qid: dict(ranked) for qid, ranked in self.hits.items()}

    def docids(self) -> set[str]:
        """Every passage the run retrieved (e.g. to look up their texts)."""
        return {docid for ranked in self.hits.values() for docid, _ in ranked}

    def head(self, k: int) -> Run:
        """The top ``k`` hits of every query."""
        return Run({qid: ranked[:k] for qid, ranked in self.hits.items()}, self.tag, dict(self.settings))


def to_ranking(run: Run | RunScores | Ranking) -> dict[str, list[str]]:
    """Ranked docids per query from any run shape: a :class:`Run`, ``{qid: {docid: score}}`` ranked by
    score (ties by docid, the rule TREC files are written with), or ``{qid: [docid, ...]}`` as given.

    Key order of a score dict never decides the ranking: ``{"d2": 0.1, "d1": 0.9}`` ranks d1 first.
    """
    if isinstance(run, Run):
        return {qid: [d for d, _ in ranked] for qid, ranked in run.hits.items()}
    out: dict[str, list[str]] = {}
    for qid, docs in run.items():
        if isinstance(docs, Mapping):
            out[qid] = [d for d, _ in sorted(docs.items(), key=lambda item: (-float(item[1]), item[0]))]
        elif isinstance(docs, str):
            raise XdrError(f"query {qid!r}: expected ranked doc ids or {{docid: score}}, got a string")
        else:
            out[qid] = [d if isinstance(d, str) else _hit_docid(qid, d) for d in docs]
    return out


def _hit_docid(qid: str, hit: object) -> str:
    """The docid of a ``(docid, score)`` pair, as ``Run.hits`` holds them."""
    if isinstance(hit, tuple) and len(hit) == 2 and isinstance(hit[0], str):
        return hit[0]
    raise XdrError(f"query {qid!r}: a ranked entry must be a doc id or a (docid, score) pair, not {hit!r}")


def read_run(path: str | Path) -> dict[str, dict[str, float]]:
    """query id -> {doc id: score}; ranks are checked to be integers, but scores decide the order."""
    run: dict[str, dict[str, float]] = {}
    for n, (qid, _, docid, rank, score, _) in rows(path, RUN_COLUMNS):
        number(path, n, "rank", rank, int)
        docs = run.setdefault(qid, {})
        if docid in docs:
            raise DataError(path, n, "docid", f"{docid!r} is retrieved twice for query {qid!r}")
        docs[docid] = number(path, n, "score", score, float)
    return run


def write_trec(run: Run, path: str | Path) -> Path:
    """Write ``run`` as a TREC file (atomically)."""
    write_run(path, run.scores(), tag=run.tag)
    return Path(path)


def write_run(path: str | Path, run: Mapping[str, Mapping[str, float]], tag: str = "xdr") -> None:
    """Write a run atomically; each query's docs are ranked by score (ties by doc id, for determinism)."""
    check_token("run tag", tag)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for qid, docs in run.items():
            check_token("query id", qid)
            ranked = sorted(docs.items(), key=lambda item: (-item[1], item[0]))
            for rank, (docid, score) in enumerate(ranked, 1):
                f.write(f"{qid} Q0 {check_token('doc id', docid)} {rank} {float(score):.9g} {tag}\n")


def write_xor_json(
    run: Run, queries: Iterable[Query], corpus: Iterable[Passage], path: str | Path
) -> dict[str, str]:
    """Write the XOR-Retrieve prediction file ``[{"id", "lang", "ctxs": [passage texts, best first]}]``
    and return the texts it looked up (docid → text), e.g. for display.

    The corpus is streamed once, keeping only the texts the run needs (an 18M-row corpus never sits in
    memory), and stops as soon as all are found. ``ctxs`` holds passage texts without titles, as in the
    official XOR-TyDi baselines.
    """
    texts = lookup_texts(corpus, run.docids())
    entries = []
    for q in queries:
        if q.id not in run.hits:
            raise XdrError(f"query {q.id!r} has no ranking in the run")
        entries.append({"id": q.id, "lang": q.lang, "ctxs": [texts[docid] for docid, _ in run.hits[q.id]]})
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(entries, f, ensure_ascii=False)
    return texts


@dataclass(frozen=True, slots=True)
class XorPrediction:
    id: str
    lang: str
    ctxs: tuple[str, ...]


def read_xor_submission(source: str | Path | Sequence[Mapping[str, Any]]) -> list[XorPrediction]:
    """Read an XOR-Retrieve prediction file: a JSON list of ``{"id", "lang", "ctxs"}``.

    ``ctxs`` are passage texts, as the official format specifies. DPR-style dicts are tolerated: from a
    dict only its ``"text"`` is used, never its ``"title"``, because the official scorer tokenizes exactly
    the ``ctxs`` strings and the XORQA/DPR conversions put the passage text there without the title.
    Ids are read as strings (the README's example uses a number).
    """
    path = str(source) if isinstance(source, (str, Path)) else "<predictions>"
    if isinstance(source, (str, Path)):
        try:
            items = json.loads(Path(source).read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(source, e.lineno, None, f"not valid JSON ({e.msg})") from e
    else:
        items = source
    if not isinstance(items, list):
        raise DataError(path, None, None, "expected a JSON list of {id, lang, ctxs} objects")
    out: list[XorPrediction] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        where = f"item {i}"
        if not isinstance(item, Mapping) or not {"id", "lang", "ctxs"} <= item.keys():
            raise DataError(path, None, None, f"{where}: needs the keys id, lang and ctxs")
        if not isinstance(item["ctxs"], list):
            raise DataError(path, None, "ctxs", f"{where}: ctxs must be a list of passages")
        qid = str(item["id"])
        if qid in seen:
            raise DataError(path, None, "id", f"{where}: question {qid!r} is predicted twice")
        seen.add(qid)
        ctxs: list[str] = []
        for ctx in item["ctxs"]:
            if isinstance(ctx, Mapping) and isinstance(ctx.get("text"), str):
                ctxs.append(ctx["text"])
            elif isinstance(ctx, str):
                ctxs.append(ctx)
            else:
                raise DataError(path, None, "ctxs", f"{where}: a ctx must be a string or a dict with 'text'")
        out.append(XorPrediction(qid, str(item["lang"]).strip(), tuple(ctxs)))
    return out
