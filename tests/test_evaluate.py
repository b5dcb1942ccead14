"""evaluate(): R@kt and ir-measures together, per-language and macro views, JSON and Markdown reports."""

from __future__ import annotations

import json
import math

import pytest

from xdr.data.schema import Query
from xdr.errors import MismatchError, XdrError
from xdr.evaluate import Report, evaluate
from xdr.evaluate.nltk_punkt import ensure_nltk_punkt


@pytest.fixture(scope="module", autouse=True)
def _nltk_data(tmp_path_factory: pytest.TempPathFactory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDR_CACHE", str(tmp_path_factory.mktemp("xdr_cache")))
        ensure_nltk_punkt()
        yield


QUERIES = [
    Query("a1", "ar", "?", ("Paris",)),
    Query("a2", "ar", "?", ("Berlin",)),
    Query("a3", "ar", "?", ("yes",)),  # yes/no only: no R@kt, but judged for ir-measures
    Query("f1", "fi", "?", ("Oslo",)),
]
PASSAGES = {
    "p": "Paris is in France.", "b": "Berlin is in Germany.", "o": "Oslo is in Norway.", "x": "Nothing.",
}
RUN = {"a1": ["x", "p"], "a2": ["p", "x"], "a3": ["b"], "f1": ["o"]}
QRELS = {"a1": {"p": 1}, "a2": {"b": 1}, "a3": {"b": 1}, "f1": {"o": 1}}


def test_evaluate_both_families():
    r = evaluate(
        RUN, QUERIES, qrels=QRELS, passages=PASSAGES, measures=["RR@10", "R@1"], token_budgets=[2, 100]
    )
    assert r.measures == ("RR@10", "R@1", "R@2t", "R@100t")  # judged measures lead when there are qrels
    # R@2t: a1's first two tokens are "Nothing ." (miss), f1's are "Oslo is" (hit)
    assert r.per_query["R@2t"] == {"a1": 0.0, "a2": 0.0, "f1": 100.0}
    assert r.per_query["R@100t"] == {"a1": 100.0, "a2": 0.0, "f1": 100.0}
    assert r.per_query["RR@10"] == {"a1": 50.0, "a2": 0.0, "a3": 100.0, "f1": 100.0}
    assert r.counts == {"R@2t": {"ar": 2, "fi": 1}, "R@100t": {"ar": 2, "fi": 1},
                        "RR@10": {"ar": 3, "fi": 1}, "R@1": {"ar": 3, "fi": 1}}
    assert r.per_language["R@100t"] == {"ar": 50.0, "fi": 100.0}
    assert r.macro["R@100t"] == 75.0
    assert r.per_language["RR@10"] == pytest.approx({"ar": 50.0, "fi": 100.0})
    assert r.macro["R@1"] == pytest.approx((100 / 3 + 100) / 2)
    assert r.notes["rkt"]["skipped_yes_no_only"] == 1


def test_defaults_and_missing_queries():
    r = evaluate({"a1": ["p"]}, QUERIES, qrels=QRELS, passages=PASSAGES)
    assert r.measures == ("nDCG@10", "RR@10", "R@1", "R@100", "R@2kt", "R@5kt")
    assert r.per_query["R@2kt"] == {"a1": 100.0, "a2": 0.0, "f1": 0.0}  # absent questions are misses
    assert r.per_query["R@100"] == {"a1": 100.0, "a2": 0.0, "a3": 0.0, "f1": 0.0}
    assert r.notes["measures"]["not_in_run_scored_0"] == 3
    assert r.notes["rkt"]["not_in_run_counted_as_miss"] == 2


def test_evaluate_refuses_what_it_cannot_score():
    with pytest.raises(XdrError, match="nothing to evaluate"):
        evaluate(RUN, QUERIES)
    with pytest.raises(XdrError, match="qrels"):
        evaluate(RUN, QUERIES, measures=["nDCG@10"])
    with pytest.raises(XdrError, match="passage texts"):
        evaluate(RUN, QUERIES, token_budgets=[2000])
    with pytest.raises(XdrError, match="not in the passage texts"):
        evaluate({"a1": ["missing"]}, QUERIES, passages=PASSAGES)
    with pytest.raises(XdrError, match="twice"):
        evaluate(RUN, [*QUERIES, QUERIES[0]], passages=PASSAGES)


def test_json_round_trip(tmp_path):
    r = evaluate(RUN, QUERIES, qrels=QRELS, passages=PASSAGES, name="bm25")
    path = tmp_path / "out" / "report.json"
    r.to_json(path)
    d = json.loads(path.read_text(encoding="utf-8"))
    assert d["name"] == "bm25" and d["scale"] == "percent" and d["languages"] == ["ar", "fi"]
    assert d["macro"]["R@5kt"] == r.macro["R@5kt"] and d["per_query"]["RR@10"]["a1"] == 50.0
    assert [p.name for p in path.parent.iterdir()] == ["report.json"]  # no temp file left behind
    back = Report.from_json(path)
    assert back.per_language == r.per_language and back.notes == r.notes
    (tmp_path / "other.json").write_text("{}", encoding="utf-8")
    with pytest.raises(XdrError, match="not an xdr evaluation report"):
        Report.from_json(tmp_path / "other.json")


def test_markdown_table():
    """Scores are percentages, where ir-measures prints fractions: every heading says so."""
    r = Report({"R@2kt": {"a1": 100.0, "a2": 0.0, "f1": 100.0}, "nDCG@10": {"a1": 50.0, "f1": 25.0}},
               {"a1": "ar", "a2": "ar", "f1": "fi"}, "sys")
    assert r.to_markdown() == (
        "| lang | n | R@2kt (%) | nDCG@10 (%) |\n"
        "|---|---:|---:|---:|\n"
        "| ar | 2 | 50.0 | 50.0 |\n"
        "| fi | 1 | 100.0 | 25.0 |\n"
        "| **avg** | 3 | 75.0 | 37.5 |\n"
    )


def _scores(offset: float, n: int = 30) -> dict[str, float]:
    return {f"{lang}{i}": float((i * 7) % 11) + (offset if lang == "ar" else 0.0)
            for lang in ("ar", "fi") for i in range(n)}


def test_markdown_daggers_against_baseline():
    langs = {q: q[:2] for q in _scores(0)}
    base = Report({"m": _scores(0)}, langs, "base")
    better = Report({"m": _scores(5)}, langs, "new")  # ar improves by 5 on every query, fi is unchanged
    comps = {c.group: c for c in better.compare(base)}
    assert comps["ar"].t_pvalue_holm < 0.05 and comps["fi"].t_pvalue_holm == 1.0
    assert comps["avg"].n == 60 and comps["avg"].mean_diff == pytest.approx(2.5)
    lines = better.to_markdown(base).splitlines()
    assert lines[2].startswith("| ar | 30 |") and lines[2].endswith("† |")
    assert lines[3].startswith("| fi | 30 |") and "†" not in lines[3]
    assert lines[4].endswith("† |")  # all queries pooled: +2.5 on average, significant
    assert "Holm-corrected over 3 cells" in lines[-1] and "base" in lines[-1]
    assert "Wilcoxon" in better.to_markdown(base, test="wilcoxon")


def test_compare_needs_the_same_measures_and_queries():
    langs = {q: q[:2] for q in _scores(0)}
    base = Report({"other": _scores(0)}, langs, "base")
    with pytest.raises(MismatchError, match="no scores for m"):
        Report({"m": _scores(0)}, langs).compare(base)
    fewer = Report({"m": {q: v for q, v in _scores(0).items() if q != "ar0"}}, langs)
    with pytest.raises(MismatchError, match="different queries"):
        fewer.compare(Report({"m": _scores(0)}, langs))


def test_report_needs_a_language_for_every_query():
    with pytest.raises(XdrError, match="no language"):
        Report({"m": {"q": 1.0}}, {})
    assert math.isnan(Report({"m": {}}, {}).macro["m"])


def test_comparison_table_shows_difference_and_both_holm_p_values():
    langs = {f"q{i}": "de" if i < 10 else "ja" for i in range(20)}
    base = Report({"R@1": {q: 0.0 for q in langs}}, langs, "none")
    # de: every query improves by 100 (significant); ja: unchanged (p = 1)
    system = Report({"R@1": {q: 100.0 if langs[q] == "de" else 0.0 for q in langs}}, langs, "mean a=0.3")
    table = system.comparison_markdown(base)
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")}
    assert "100.0 (+100.0; t <.001, W " in rows["de"]
    assert "0.0 (+0.0; t 1.000, W 1.000)" in rows["ja"]
    assert "50.0 (+50.0;" in rows["**avg**"]
    assert table.startswith("| lang | R@1 (%) |")
    assert "corrected over all 3 cells" in table


def test_a_score_dict_is_ranked_by_score_not_by_key_order() -> None:
    """{docid: score} with keys in docid order once ranked d0 first although it scored lowest."""
    queries = [Query("q", "de", "?")]
    qrels = {"q": {"d9": 1}}
    by_score = {"q": {"d0": 0.1, "d1": 0.2, "d9": 0.9}}  # keys sorted by docid, best last
    report = evaluate(by_score, queries, qrels=qrels, measures=["RR@10", "nDCG@10"])
    assert report.macro["RR@10"] == pytest.approx(100.0)
    assert report.macro["nDCG@10"] == pytest.approx(100.0)
    # ties by docid, as TREC files are written: d1 before d2 at equal scores
    tie = evaluate({"q": {"d2": 0.5, "d1": 0.5}}, queries, qrels={"q": {"d1": 1}}, measures=["RR@10"])
    assert tie.macro["RR@10"] == pytest.approx(100.0)


def test_evaluate_accepts_the_run_that_search_returns() -> None:
    from xdr.data.runs import Run

    queries = [Query("q1", "de", "?"), Query("q2", "el", "?")]
    run = Run({"q1": [("d1", 0.9), ("d2", 0.5)], "q2": [("d3", 0.8), ("d2", 0.7)]})
    report = evaluate(run, queries, qrels={"q1": {"d2": 1}, "q2": {"d3": 1}}, measures=["RR@10"])
    assert report.macro["RR@10"] == pytest.approx((50.0 + 100.0) / 2)
    assert report.macro["RR@10"] == evaluate(run.scores(), queries, qrels={"q1": {"d2": 1}, "q2": {"d3": 1}},
                                             measures=["RR@10"]).macro["RR@10"]


def test_a_trec_run_without_texts_says_why_r_at_kt_is_left_out(tmp_path) -> None:
    from xdr.errors import XdrWarning
    from xdr.evaluate import evaluate_files

    (tmp_path / "run.trec").write_text("a1 Q0 p1 1 0.9 x\n")
    queries = tmp_path / "q.jsonl"
    queries.write_text(json.dumps({"id": "a1", "lang": "ar", "text": "?", "answers": ["Paris"]}) + "\n")
    qrels = tmp_path / "qrels.txt"
    qrels.write_text("a1 0 p1 1\n")
    with pytest.warns(XdrWarning, match="R@kt left out; R@kt needs passage texts"):
        report = evaluate_files(tmp_path / "run.trec", queries, qrels_path=qrels)
    assert report.notes["rkt_left_out"] and report.macro["RR@10"] == 100.0
    with pytest.raises(XdrError, match="nothing to evaluate; R@kt needs passage texts"):
        evaluate_files(tmp_path / "run.trec", queries)


def test_runs_and_qrels_that_match_no_query_are_refused_and_partial_matches_warned() -> None:
    """Both once gave every metric 0.0 with no word."""
    from xdr.errors import XdrWarning

    queries = [Query("q1", "de", "?"), Query("q2", "de", "?")]
    with pytest.raises(MismatchError, match="the run ranks none of the 2 queries"):
        evaluate({"x1": ["d1"]}, queries, qrels={"q1": {"d1": 1}})
    with pytest.raises(MismatchError, match="the qrels judge none of the 2 queries"):
        evaluate({"q1": ["d1"]}, queries, qrels={"x1": {"d1": 1}})
    with pytest.warns(XdrWarning, match="1 of 2 queries have no ranking.*1 ranked query ids are not in the query"):
        evaluate({"q1": ["d1"], "x9": ["d1"]}, queries, qrels={"q1": {"d1": 1}, "q2": {"d1": 1}})
