"""The evaluate stage: XOR-TyDi R@kt, ir-measures metrics, per-language reports and significance tests.

:func:`evaluate` is the one entry point; the modules hold the parts (``rkt`` for the official R@kt,
``measures`` for ir-measures, ``significance`` for paired tests, ``report`` for output).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from xdr.artifacts import META, Stage, file_hash, open_artifact
from xdr.data import lookup_texts, read_passages, read_qrels, read_queries, read_run, read_xor_submission
from xdr.data.runs import RUN_FILE, XOR_FILE, Ranking, Run, RunScores, to_ranking
from xdr.data.schema import Query
from xdr.errors import MismatchError, XdrError, XdrWarning
from xdr.evaluate.measures import DEFAULT_MEASURES, per_query_measures, ranking_to_run
from xdr.evaluate.report import Report
from xdr.evaluate.rkt import DEFAULT_BUDGETS, recall_at_k_tokens, rkt_name, score_xor_submission
from xdr.evaluate.significance import Comparison, paired_test, with_holm

__all__ = [
    "DEFAULT_BUDGETS",
    "DEFAULT_MEASURES",
    "Comparison",
    "Report",
    "evaluate",
    "evaluate_files",
    "paired_test",
    "recall_at_k_tokens",
    "score_xor_submission",
    "with_holm",
]


def evaluate(
    run: Run | RunScores | Ranking,
    queries: Iterable[Query],
    *,
    qrels: Mapping[str, Mapping[str, int]] | None = None,
    passages: Mapping[str, str] | None = None,
    measures: Sequence[str] | None = None,
    token_budgets: Sequence[int] | None = None,
    name: str = "system",
    workers: int = 1,
) -> Report:
    """Score a run on ``queries``; the queries define the evaluation set.

    ``run`` is what :func:`xdr.search` returns, ``{qid: {docid: score}}`` (ranked by score) or
    ``{qid: [docid, ...]}`` (ranked as listed).

    R@kt needs ``passages`` (doc id -> the text the official scorer would tokenize) and defaults to
    R@2kt and R@5kt; ir-measures metrics need ``qrels`` and default to nDCG@10, RR@10, R@1, R@100. Only
    judged queries (those in ``qrels``) get ir-measures scores; a query the run lacks scores 0 everywhere.
    ``workers`` processes tokenize passages for R@kt.
    """
    run = to_ranking(run)
    queries = list(queries)
    langs: dict[str, str] = {}
    for q in queries:
        if q.id in langs:
            raise XdrError(f"query id {q.id!r} appears twice in the queries")
        langs[q.id] = q.lang
    if measures is None:
        measures = DEFAULT_MEASURES if qrels is not None else ()
    if token_budgets is None:
        token_budgets = DEFAULT_BUDGETS if passages is not None else ()
    if not measures and not token_budgets:
        raise XdrError("nothing to evaluate: give qrels (for ir-measures) and/or passages (for R@kt)")
    _check_overlap(run, langs, qrels if measures else None)

    per_query: dict[str, dict[str, float]] = {}
    notes: dict[str, Any] = {"queries": len(queries)}
    if token_budgets:
        if passages is None:
            raise XdrError("R@kt needs the passage texts of the run's doc ids; none were given")
        texts = {qid: [_passage(passages, qid, d) for d in run[qid]] for qid in langs if qid in run}
        rkt = recall_at_k_tokens(texts, queries, token_budgets, workers=workers)
        for b in rkt.budgets:
            per_query[rkt_name(b)] = {q: 100.0 * hit for q, hit in rkt.hits[b].items()}
        notes["rkt"] = {
            "skipped_no_answers": len(rkt.skipped_no_answers),
            "skipped_yes_no_only": len(rkt.skipped_yes_no),
            "not_in_run_counted_as_miss": len(rkt.not_in_run),
            # e.g. "Portland, Oregon" tokenizes to "Portland , Oregon": the official substring rule finds it
            # only where a passage happens to tokenize the same way, so these read as misses when ranked first
            "answers_cannot_match_as_written": len(rkt.unmatchable),
        }
    if measures:
        if qrels is None:
            raise XdrError(f"{', '.join(measures)} need relevance judgments (qrels); none were given")
        judged = {q: docs for q, docs in qrels.items() if q in langs}
        scores = per_query_measures(judged, ranking_to_run({q: run[q] for q in judged if q in run}), measures)
        for m, by_q in scores.items():
            per_query[m] = {q: 100.0 * v for q, v in by_q.items()}
        notes["measures"] = {
            "judged_queries": len(judged),
            "unjudged_queries_skipped": len(langs) - len(judged),
            "not_in_run_scored_0": sum(q not in run for q in judged),
        }
    # judged measures lead when there are qrels: they see the passage ids, R@kt only answer strings
    lead = [m for m in per_query if not m.endswith("t") or not m.startswith("R@")]
    per_query = {m: per_query[m] for m in [*lead, *(m for m in per_query if m not in lead)]}
    return Report(per_query, {q: langs[q] for s in per_query.values() for q in s}, name, notes)


def _check_overlap(run: Ranking, queries: Mapping[str, str], qrels: Mapping[str, Any] | None) -> None:
    """Refuse a run or qrels that share no query with the query file (every figure would read 0.0), and
    warn when they share only some: the missing ones count as misses, which may not be what was meant."""

    def e_g(ids: Iterable[str]) -> str:
        return ", ".join(repr(i) for i in sorted(ids)[:3])

    ranked = queries.keys() & run.keys()
    if not ranked:
        raise MismatchError(f"the run ranks none of the {len(queries)} queries (run ids e.g. {e_g(run)}; query ids "
                            f"e.g. {e_g(queries)}); are they for this query file?")
    problems = []
    if len(ranked) < len(queries):
        problems.append(f"{len(queries) - len(ranked)} of {len(queries)} queries have no ranking (scored as misses)")
    if extra := len(run.keys() - queries.keys()):
        problems.append(f"{extra} ranked query ids are not in the query file (ignored)")
    if qrels is not None:
        judged = queries.keys() & qrels.keys()
        if not judged:
            raise MismatchError(f"the qrels judge none of the {len(queries)} queries (qrels ids e.g. {e_g(qrels)}; "
                                f"query ids e.g. {e_g(queries)}); are they for this query file?")
        if len(judged) < len(queries):
            problems.append(f"{len(queries) - len(judged)} queries have no judgments (left out of the qrels measures)")
    if problems:
        warnings.warn(XdrWarning("; ".join(problems)), stacklevel=3)


def _run_files(run_path: Path) -> tuple[Path, Path | None]:
    """``run.trec`` and the ``xor.json`` that belongs with it (None if none does).

    In a search artifact both files must hash to what its meta recorded: an ``xor.json`` left by an
    earlier search into the same directory once paired with a new ``run.trec`` and read R@100t 17.0
    where the truth was 83.0. A directory without a meta (another tool's) is taken as it is.
    """
    if not run_path.is_dir():
        if run_path.suffix == ".json":
            return run_path, run_path
        return run_path, _paired_xor(run_path.parent, run_path)
    return run_path / RUN_FILE, _paired_xor(run_path, run_path / RUN_FILE)


def _paired_xor(directory: Path, trec: Path) -> Path | None:
    xor = directory / XOR_FILE
    if not (directory / META).exists():
        return xor if xor.exists() and trec.name == RUN_FILE else None
    meta = open_artifact(directory, Stage.SEARCH, what="a search output (`xdr search --out`)")
    files = meta.get("files", {})
    for name in (RUN_FILE, XOR_FILE):
        path = directory / name
        if name in files and (not path.exists() or file_hash(path) != files[name]):
            raise MismatchError(f"{path}: is not the file the search at {directory} wrote (changed or replaced "
                                "since); run the search again")
    if trec.name == RUN_FILE and xor.exists() and XOR_FILE not in files:
        warnings.warn(XdrWarning(f"{xor}: was not written by the search that wrote {trec}; ignoring it"),
                      stacklevel=3)
        return None
    return xor if XOR_FILE in files and trec.name == RUN_FILE else None


def _passage(passages: Mapping[str, str], qid: str, doc: str) -> str:
    try:
        return passages[doc]
    except KeyError:
        raise XdrError(f"query {qid!r} ranks document {doc!r}, which is not in the passage texts") from None


def evaluate_files(
    run_path: str | Path,
    queries_path: str | Path,
    *,
    qrels_path: str | Path | None = None,
    corpus_path: str | Path | None = None,
    token_budgets: Sequence[int] = DEFAULT_BUDGETS,
    measures: Sequence[str] | None = None,
    name: str | None = None,
    query_fields: Mapping[str, str] | None = None,
    lang: str | None = None,
) -> Report:
    """Evaluate the files a search wrote: a run directory, ``run.trec`` or an XOR-TyDi ``xor.json``.

    Passage texts for R@kt come from ``corpus_path`` (streamed once, keeping only the run's ids) or, for
    a run directory without a corpus, from its ``xor.json``. Without qrels only R@kt is computed; without
    any passage text only the ir-measures metrics are.
    """
    run_path = Path(run_path)
    trec, xor = _run_files(run_path)
    queries = list(read_queries(queries_path, fields=query_fields, lang=lang))
    qrels = read_qrels(qrels_path) if qrels_path is not None else None
    passages: dict[str, str] | None = None
    if trec.suffix == ".json":  # an XOR submission alone: ranked texts, no doc ids
        if qrels is not None:
            raise XdrError(f"{trec}: an XOR-TyDi JSON run has no passage ids for qrels; evaluate run.trec")
        preds = read_xor_submission(trec)
        ranked = {p.id: [f"{p.id}#{i}" for i in range(len(p.ctxs))] for p in preds}
        passages = {f"{p.id}#{i}": c for p in preds for i, c in enumerate(p.ctxs)}
    else:
        if not trec.exists():
            raise XdrError(f"{run_path}: no run.trec here; give the directory `xdr search --out` wrote")
        ranked = to_ranking(read_run(trec))
        if corpus_path is not None:
            needed = {d for docs in ranked.values() for d in docs}
            passages = lookup_texts(read_passages(corpus_path), needed)
        elif xor is not None and xor.exists():
            by_id = {p.id: p.ctxs for p in read_xor_submission(xor)}
            passages = {
                d: t for q, docs in ranked.items() for d, t in zip(docs, by_id.get(q, ()), strict=False)
            }
    budgets = list(token_budgets) if passages is not None else []
    if passages is None and token_budgets:
        why = "R@kt needs passage texts: give --corpus, or the run directory whose search wrote xor.json"
        if qrels is None:
            raise XdrError(f"{trec}: nothing to evaluate; {why}, and/or --qrels")
        warnings.warn(XdrWarning(f"{trec}: R@kt left out; {why}"), stacklevel=2)
    report = evaluate(
        ranked, queries, qrels=qrels, passages=passages, measures=measures if qrels is not None else (),
        token_budgets=budgets, name=name or run_path.name,
    )
    if passages is None and token_budgets:
        report.notes["rkt_left_out"] = "no passage texts (no --corpus and no xor.json from the search)"
    return report
