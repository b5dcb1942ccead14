"""Paired tests: pairing by id, mismatches, NaNs, ties, tiny samples and Holm."""

from __future__ import annotations

import math
import random

import pytest
from scipy import stats

from xdr.errors import MismatchError, XdrError
from xdr.evaluate.significance import Comparison, bonferroni, correct, holm, paired_test, with_holm

BASE = {f"q{i}": float(i % 5) for i in range(20)}
SYS = {q: v + (1.0 if i % 3 else -0.5) for i, (q, v) in enumerate(BASE.items())}


def test_pairs_by_query_id_not_position():
    c = paired_test(BASE, SYS, measure="m")
    items = list(SYS.items())
    random.Random(0).shuffle(items)
    shuffled = paired_test(BASE, dict(items), measure="m")
    assert (shuffled.t_pvalue, shuffled.wilcoxon_pvalue, shuffled.mean_diff) == (
        c.t_pvalue, c.wilcoxon_pvalue, c.mean_diff)
    qids = sorted(BASE)
    b, s = [BASE[q] for q in qids], [SYS[q] for q in qids]
    assert c.t_pvalue == pytest.approx(stats.ttest_rel(s, b).pvalue)
    assert c.wilcoxon_pvalue == pytest.approx(stats.wilcoxon(s, b).pvalue)
    assert c.mean_diff == pytest.approx(sum(s) / 20 - sum(b) / 20) and c.n == 20


def test_wilcoxon_exact_small_sample():
    # four positive differences: the exact two-sided p is 2 / 2**4
    c = paired_test({"a": 0, "b": 0, "c": 0, "d": 0}, {"a": 1, "b": 2, "c": 3, "d": 4}, measure="m")
    assert c.wilcoxon_pvalue == pytest.approx(0.125)


def test_mismatched_query_sets():
    partial = {q: v for q, v in SYS.items() if q != "q0"} | {"new": 1.0}
    with pytest.raises(MismatchError, match="different queries"):
        paired_test(BASE, partial, measure="m")
    c = paired_test(BASE, partial, measure="m", allow_partial=True)
    assert (c.n, c.unpaired) == (19, 2)


def test_nan_pairs_are_dropped_and_counted():
    s = dict(SYS, q1=math.nan, q2=math.nan)
    b = dict(BASE, q3=math.nan)
    c = paired_test(b, s, measure="m")
    assert (c.n, c.dropped_nan) == (17, 3)
    assert not math.isnan(c.t_pvalue)


def test_identical_systems_give_p_one():
    c = paired_test(BASE, dict(BASE), measure="m")
    assert (c.t_pvalue, c.wilcoxon_pvalue, c.mean_diff) == (1.0, 1.0, 0.0)


def test_constant_shift_is_significant():
    c = paired_test(BASE, {q: v + 1 for q, v in BASE.items()}, measure="m")
    assert c.t_pvalue == 0.0 and c.wilcoxon_pvalue < 1e-4


@pytest.mark.parametrize("n", [0, 1])
def test_too_few_pairs_give_nan(n):
    b = {f"q{i}": 0.0 for i in range(n)}
    c = paired_test(b, {q: 1.0 for q in b}, measure="m")
    assert c.n == n and math.isnan(c.t_pvalue) and math.isnan(c.wilcoxon_pvalue)


def test_holm():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    out = holm([0.02, math.nan, 0.5])  # NaN is not part of the family (m = 2)
    assert out[0] == pytest.approx(0.04) and math.isnan(out[1]) and out[2] == pytest.approx(0.5)
    assert holm([0.9, 0.8]) == [1.0, 1.0]


def test_with_holm_fills_corrected_pvalues():
    comps = [Comparison("m", "b", "s", 10, 0.1, p, p / 2) for p in (0.01, 0.02, 0.2)]
    out = with_holm(comps)
    assert [c.t_pvalue_holm for c in out] == pytest.approx([0.03, 0.04, 0.2])
    assert [c.wilcoxon_pvalue_holm for c in out] == pytest.approx([0.015, 0.02, 0.1])


def test_bonferroni_and_correct():
    assert bonferroni([0.01, math.nan, 0.3]) == pytest.approx([0.02, math.nan, 0.6], nan_ok=True)
    assert bonferroni([0.6, 0.01]) == [1.0, 0.02]
    ps = [0.01, 0.04, 0.03, 0.005]
    assert correct(ps, "holm") == holm(ps) and correct(ps, "bonferroni") == bonferroni(ps)
    assert correct(ps, "none") == ps
    with pytest.raises(XdrError, match="unknown correction 'fdr'"):
        correct(ps, "fdr")  # type: ignore[arg-type]
    c = Comparison("m", "b", "s", 10, 0.1, 0.01, 0.02)
    assert (c.pvalue("t"), c.pvalue("wilcoxon")) == (0.01, 0.02)
