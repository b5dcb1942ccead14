"""ir-measures values against hand computation, including queries the run leaves out."""

from __future__ import annotations

import math

import pytest

from xdr.errors import XdrError
from xdr.evaluate.measures import parse_measures, per_query_measures, ranking_to_run

QRELS = {"q1": {"d1": 1, "d2": 0, "d3": 2}, "q2": {"d4": 1}, "q3": {"d5": 1}}
RANKED = {"q1": ["d2", "d1", "d9", "d3"], "q2": ["d7", "d8"], "unjudged": ["d1"]}  # q3 not retrieved


def test_hand_computed_values():
    scores = per_query_measures(QRELS, ranking_to_run(RANKED), ["nDCG@10", "MRR@10", "R@1", "R@100", "P@2"])
    # q1: d2 (rel 0) at rank 1, d1 (rel 1) at 2, d9 unjudged at 3, d3 (rel 2) at 4; gains are the grades
    dcg = 1 / math.log2(3) + 2 / math.log2(5)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert scores["nDCG@10"]["q1"] == pytest.approx(dcg / idcg)
    assert scores["RR@10"] == {"q1": 0.5, "q2": 0.0, "q3": 0.0}  # MRR@10 is reported as RR@10
    assert scores["R@1"]["q1"] == 0.0 and scores["R@100"]["q1"] == 1.0
    assert scores["P@2"]["q1"] == 0.5
    # every judged query is scored (q3 is absent from the run: 0), the unjudged one is not
    for by_query in scores.values():
        assert set(by_query) == {"q1", "q2", "q3"}
        assert by_query["q2"] == by_query["q3"] == 0.0


def test_missing_queries_count_in_the_mean():
    scores = per_query_measures(QRELS, ranking_to_run({"q1": RANKED["q1"]}), ["R@100"])
    assert sum(scores["R@100"].values()) / len(scores["R@100"]) == pytest.approx(1 / 3)


def test_run_order_is_the_given_ranking():
    run = ranking_to_run({"q": ["b", "a", "c"]})
    assert sorted(run["q"], key=run["q"].get, reverse=True) == ["b", "a", "c"]
    assert per_query_measures({"q": {"a": 1}}, run, ["RR@10"])["RR@10"]["q"] == 0.5


def test_bad_inputs():
    with pytest.raises(XdrError, match="unknown measure"):
        parse_measures(["Foo@10"])
    with pytest.raises(XdrError, match="more than once"):
        ranking_to_run({"q": ["a", "b", "a"]})
    assert list(parse_measures(["nDCG@10", "MRR@10"])) == ["nDCG@10", "RR@10"]
