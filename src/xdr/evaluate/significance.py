"""Paired significance tests between two systems' per-query scores, with Holm correction.

Scores are paired by query id, never by position, so two runs written in different orders still compare
the right queries. The rules for the awkward cases, in one place:

- Different query sets are refused (:class:`MismatchError`) unless ``allow_partial=True``, which tests
  the shared queries and records how many were left out in ``Comparison.unpaired``.
- A pair with a NaN on either side is dropped and counted in ``Comparison.dropped_nan``.
- All differences zero: the systems agree on every query, so both p-values are 1.0 (scipy would
  otherwise return NaN or raise, depending on the version).
- Fewer than two pairs: nothing can be tested; both p-values are NaN and a correction leaves them out.

The corrections (Holm, Bonferroni) are written out because scipy offers only FDR control
(``false_discovery_control``), not family-wise error control; each is a few lines.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from scipy import stats

from xdr.errors import MismatchError, XdrError

Test = Literal["t", "wilcoxon"]
Correction = Literal["holm", "bonferroni", "none"]
TESTS: tuple[Test, ...] = ("t", "wilcoxon")
CORRECTIONS: tuple[Correction, ...] = ("holm", "bonferroni", "none")


@dataclass(frozen=True, slots=True)
class Comparison:
    """One paired comparison; ``mean_diff`` is system minus baseline in the scores' own units."""

    measure: str
    baseline: str
    system: str
    n: int
    mean_diff: float
    t_pvalue: float
    wilcoxon_pvalue: float
    t_pvalue_holm: float = math.nan
    wilcoxon_pvalue_holm: float = math.nan
    group: str = "all"
    dropped_nan: int = 0
    unpaired: int = 0

    def pvalue(self, test: Test) -> float:
        """The uncorrected p-value of ``test`` ("t" or "wilcoxon")."""
        return self.t_pvalue if test == "t" else self.wilcoxon_pvalue


def paired_test(
    baseline: Mapping[str, float],
    system: Mapping[str, float],
    *,
    measure: str,
    baseline_name: str = "baseline",
    system_name: str = "system",
    group: str = "all",
    allow_partial: bool = False,
) -> Comparison:
    """Paired t-test and Wilcoxon signed-rank test (zero differences dropped, scipy's default)."""
    shared = baseline.keys() & system.keys()
    unpaired = len(baseline.keys() | system.keys()) - len(shared)
    if unpaired and not allow_partial:
        only_b = sorted(baseline.keys() - system.keys())
        only_s = sorted(system.keys() - baseline.keys())
        raise MismatchError(
            f"{measure}: {baseline_name} and {system_name} were scored on different queries "
            f"({len(only_b)} only in {baseline_name}, e.g. {only_b[:3]}; {len(only_s)} only in "
            f"{system_name}, e.g. {only_s[:3]}); evaluate both on the same questions"
        )
    qids = sorted(shared)
    b = np.array([baseline[q] for q in qids], dtype=float)
    s = np.array([system[q] for q in qids], dtype=float)
    keep = ~(np.isnan(b) | np.isnan(s))
    b, s = b[keep], s[keep]
    n = len(b)
    diff = s - b
    mean_diff = float(diff.mean()) if n else math.nan
    if n < 2:
        t_p = w_p = math.nan
    elif not diff.any():
        t_p = w_p = 1.0
    else:
        with warnings.catch_warnings():
            # a constant non-zero difference makes scipy warn about precision; its p-value (0) is the limit
            warnings.simplefilter("ignore", RuntimeWarning)
            t_p = float(stats.ttest_rel(s, b).pvalue)
            w_p = float(stats.wilcoxon(s, b).pvalue)
    return Comparison(
        measure=measure, baseline=baseline_name, system=system_name, n=n, mean_diff=mean_diff,
        t_pvalue=t_p, wilcoxon_pvalue=w_p, group=group, dropped_nan=int((~keep).sum()), unpaired=unpaired,
    )


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in input order; NaN entries stay NaN and are not in the family."""
    idx = [i for i, p in enumerate(pvalues) if not math.isnan(p)]
    m = len(idx)
    out = [math.nan] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: pvalues[i])):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def with_holm(comparisons: Sequence[Comparison]) -> list[Comparison]:
    """The comparisons with Holm-corrected p-values, treating all of them as one family (per test)."""
    t_adj = holm([c.t_pvalue for c in comparisons])
    w_adj = holm([c.wilcoxon_pvalue for c in comparisons])
    return [
        replace(c, t_pvalue_holm=t, wilcoxon_pvalue_holm=w)
        for c, t, w in zip(comparisons, t_adj, w_adj, strict=True)
    ]


def bonferroni(pvalues: Sequence[float]) -> list[float]:
    """Bonferroni adjusted p-values (``min(1, m p)``); NaN entries stay NaN and are not in the family."""
    m = sum(not math.isnan(p) for p in pvalues)
    return [p if math.isnan(p) else min(1.0, m * p) for p in pvalues]


def correct(pvalues: Sequence[float], correction: Correction) -> list[float]:
    """``pvalues`` adjusted for multiple comparisons as one family: ``holm``, ``bonferroni`` or ``none``."""
    if correction == "holm":
        return holm(pvalues)
    if correction == "bonferroni":
        return bonferroni(pvalues)
    if correction == "none":
        return list(pvalues)
    raise XdrError(f"unknown correction {correction!r}; choose one of {', '.join(CORRECTIONS)}")
