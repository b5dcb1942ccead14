"""Standard IR measures (nDCG@10, RR@10, R@1, R@100, or any ir-measures string) per query.

ir-measures does the computing. What is added here is the denominator: a judged query (one in the qrels)
that the run does not rank at all scores 0 for every measure, the value of an empty ranking. Whether
ir-measures emits such a query depends on its provider, so we fill them in ourselves; averages are then
always over all judged queries and a system cannot gain by dropping hard ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import ir_measures
from ir_measures import Measure

from xdr.data.runs import RunScores
from xdr.data.trec import Qrels
from xdr.errors import XdrError

DEFAULT_MEASURES = ("nDCG@10", "RR@10", "R@1", "R@100")



def parse_measures(names: Sequence[str]) -> dict[str, Measure]:
    """Canonical name -> measure; ``MRR@10`` is accepted and reported as ir-measures' ``RR@10``."""
    out: dict[str, Measure] = {}
    for name in names:
        try:
            measure = ir_measures.parse_measure(name)
        except (ValueError, NameError) as e:
            raise XdrError(
                f"unknown measure {name!r} ({e}); use ir-measures syntax such as nDCG@10, RR@10"
            ) from e
        out[str(measure)] = measure
    return out


def ranking_to_run(ranked: Mapping[str, Sequence[str]]) -> dict[str, dict[str, float]]:
    """Ranked doc ids -> descending scores, so ir-measures sees exactly the given order (no score ties)."""
    run: dict[str, dict[str, float]] = {}
    for qid, docs in ranked.items():
        scores = {doc: float(len(docs) - i) for i, doc in enumerate(docs)}
        if len(scores) != len(docs):
            dup = next(d for i, d in enumerate(docs) if d in docs[:i])
            raise XdrError(f"query {qid!r} ranks document {dup!r} more than once")
        run[qid] = scores
    return run


def per_query_measures(qrels: Qrels, run: RunScores, measures: Sequence[str]) -> dict[str, dict[str, float]]:
    """``{measure: {qid: value}}`` for every query in ``qrels``; a query absent from ``run`` scores 0."""
    parsed = parse_measures(measures)
    out: dict[str, dict[str, float]] = {name: {} for name in parsed}
    qrels = {str(q): {str(d): int(r) for d, r in docs.items()} for q, docs in qrels.items()}
    judged_run = {
        str(q): {str(d): float(s) for d, s in docs.items()} for q, docs in run.items() if str(q) in qrels
    }
    for m in ir_measures.iter_calc(list(parsed.values()), qrels, judged_run):
        out[str(m.measure)][m.query_id] = float(m.value)
    for scores in out.values():
        for qid in qrels:
            scores.setdefault(qid, 0.0)
    return out
