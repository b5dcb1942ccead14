"""Several systems against a baseline on one query set: per-language and macro scores, paired significance.

The counterpart of PyTerrier's ``Experiment(runs, topics, qrels, measures, baseline=0, correction="holm")``
for runs that already exist (files or :class:`~xdr.data.runs.Run` objects). Nothing statistical is
computed here: each run is scored by :func:`xdr.evaluate.evaluate`, each system is tested against the
baseline by :meth:`Report.paired_tests`, and the p-values of all of them, as one family, are corrected by
:func:`~xdr.evaluate.significance.correct`. The package does not re-export this module (it imports
the package's :func:`evaluate`); ``xdr.compare`` and ``xdr.ComparisonReport`` are its public names.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from xdr.artifacts import write_json_atomic, write_text_atomic
from xdr.data import read_qrels, read_queries
from xdr.data.runs import Ranking, Run, RunScores, read_run, to_ranking
from xdr.data.schema import Query
from xdr.errors import XdrError
from xdr.evaluate import evaluate
from xdr.evaluate.measures import DEFAULT_MEASURES
from xdr.evaluate.report import AVG, PERCENT, SCALE, Report, format_p
from xdr.evaluate.significance import CORRECTIONS, TESTS, Comparison, Correction, Test, correct, with_holm

RunLike = Run | RunScores | Ranking | str | Path
_TEST_NAMES = {"t": "paired t-test", "wilcoxon": "Wilcoxon signed-rank test"}


@dataclass(frozen=True)
class ComparisonReport:
    """Each system's :class:`Report` and its paired tests against the baseline.

    ``comparisons`` holds every non-baseline system's test per measure and group (each language, and
    ``avg`` pooling all queries), with both tests' raw and Holm p-values as :meth:`Report.compare` gives
    them; ``pvalues`` holds, in the same order, the chosen ``test``'s p-value after the chosen
    ``correction`` over all of them, and decides which cells are marked significant.
    """

    reports: dict[str, Report]
    baseline: str
    comparisons: tuple[Comparison, ...]
    pvalues: tuple[float, ...]
    test: Test = "t"
    correction: Correction = "holm"
    alpha: float = 0.05

    @property
    def systems(self) -> tuple[str, ...]:
        return tuple(self.reports)

    @property
    def measures(self) -> tuple[str, ...]:
        return self.reports[self.baseline].measures

    @property
    def languages(self) -> tuple[str, ...]:
        return self.reports[self.baseline].languages

    def pvalue(self, system: str, measure: str, group: str = AVG) -> float:
        """The corrected p-value of ``system`` against the baseline in one cell (NaN: not testable)."""
        for c, p in zip(self.comparisons, self.pvalues, strict=True):
            if (c.system, c.measure, c.group) == (system, measure, group):
                return p
        raise KeyError((system, measure, group))

    def significant(self, system: str, measure: str, group: str = AVG) -> bool:
        return system != self.baseline and self.pvalue(system, measure, group) < self.alpha

    def to_dict(self) -> dict[str, Any]:
        return {
            "scale": SCALE,
            "baseline": self.baseline,
            "test": self.test,
            "correction": self.correction,
            "alpha": self.alpha,
            "measures": list(self.measures),
            "languages": list(self.languages),
            "systems": {
                name: {"macro": r.macro, "per_language": r.per_language, "counts": r.counts, "notes": r.notes}
                for name, r in self.reports.items()
            },
            "comparisons": [
                {**asdict(c), "p": p, "significant": p < self.alpha}
                for c, p in zip(self.comparisons, self.pvalues, strict=True)
            ],
        }

    def to_json(self, path: str | Path) -> None:
        write_json_atomic(path, self.to_dict())

    def write(self, out_dir: str | Path) -> Path:
        """``comparison.json`` and ``comparison.md`` in ``out_dir``, each written atomically."""
        out = Path(out_dir)
        self.to_json(out / "comparison.json")
        write_text_atomic(out / "comparison.md", self.to_markdown())
        return out

    def to_markdown(self, *, digits: int = 1) -> str:
        """A macro table (systems x measures, with the difference to the baseline and its p-value), then
        one table per measure with languages as rows and systems as columns; † marks p < alpha."""
        base = self.reports[self.baseline]

        def score(name: str, measure: str, group: str) -> str:
            r = self.reports[name]
            value = r.macro[measure] if group == AVG else r.per_language[measure].get(group, math.nan)
            text = "–" if math.isnan(value) else f"{value:.{digits}f}"
            return text + ("†" if self.significant(name, measure, group) else "")

        lines = [f"## Macro average over languages {PERCENT}", "",
                 "| system | " + " | ".join(self.measures) + " |", "|---|" + "---:|" * len(self.measures)]
        for name in self.systems:
            if name == self.baseline:
                cells = [score(name, m, AVG) for m in self.measures]
                lines.append(f"| {name} (baseline) | " + " | ".join(cells) + " |")
                continue
            cells = [
                f"{score(name, m, AVG)} ({self.reports[name].macro[m] - base.macro[m]:+.{digits}f}, "
                f"p {format_p(self.pvalue(name, m))})"
                for m in self.measures
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        for m in self.measures:
            counts = base.counts[m]
            lines += ["", f"## {m} {PERCENT}", "", "| lang | n | " + " | ".join(self.systems) + " |",
                      "|---|---:|" + "---:|" * len(self.systems)]
            for lang in self.languages:
                cells = [score(name, m, lang) for name in self.systems]
                lines.append(f"| {lang} | {counts.get(lang, 0)} | " + " | ".join(cells) + " |")
            cells = [score(name, m, AVG) for name in self.systems]
            lines.append(f"| **{AVG}** | {sum(counts.values())} | " + " | ".join(cells) + " |")
        family = "uncorrected" if self.correction == "none" else (
            f"{self.correction.capitalize()}-corrected over all {len(self.comparisons)} tests")
        lines += [
            "",
            f"† differs from {self.baseline} with p < {self.alpha} ({_TEST_NAMES[self.test]} over queries, "
            f"{family}, one per system, measure and row). Scores are percentages (ir-measures' "
            "fractions × 100); avg is the macro average over languages, and its test pools all queries.",
        ]
        return "\n".join(lines) + "\n"


def run_name(path: str | Path) -> str:
    """A short name for a run file: its directory's name for ``DIR`` or ``DIR/run.trec``, else the file's stem."""
    p = Path(path)
    if p.is_dir() or p.name == "run.trec":
        return (p if p.is_dir() else p.parent).resolve().name
    return p.stem


def load_ranking(run: RunLike) -> dict[str, list[str]]:
    """Ranked doc ids per query from a run directory (``run.trec`` inside), a TREC run file or a run object."""
    if not isinstance(run, (str, Path)):
        return to_ranking(run)
    path = Path(run)
    trec = path / "run.trec" if path.is_dir() else path
    if trec.suffix == ".json":
        raise XdrError(f"{trec}: an XOR-TyDi JSON run has no passage ids for qrels; compare the run.trec")
    if not trec.is_file():
        raise XdrError(f"{path}: no such run; give a run directory (`xdr search --out`) or a TREC run file")
    return to_ranking(read_run(trec))


def compare(
    runs: Mapping[str, RunLike] | Sequence[str | Path],
    queries: Iterable[Query] | str | Path,
    qrels: Mapping[str, Mapping[str, int]] | str | Path,
    measures: Sequence[str] | None = None,
    baseline: int | str = 0,
    test: Test = "t",
    correction: Correction = "holm",
    *,
    alpha: float = 0.05,
) -> ComparisonReport:
    """Score each run on ``queries`` and test every other run against ``baseline`` (a position or name).

    ``runs`` maps names to runs (a run directory, a TREC file, a :class:`~xdr.data.runs.Run` or a
    ``{qid: {docid: score}}`` / ``{qid: [docid, ...]}`` dict); a list of paths is named by
    :func:`run_name`. ``queries`` and ``qrels`` are records or files; the queries give the languages
    and, as in :func:`~xdr.evaluate.evaluate`, define the evaluation set. ``measures`` are ir-measures
    names (default nDCG@10, RR@10, R@1, R@100), reported as percentages. The family for ``correction``
    is every test made: each non-baseline system × measure × (each language, all queries pooled).
    """
    named = dict(runs) if isinstance(runs, Mapping) else _named(runs)
    if len(named) < 2:
        raise XdrError(f"comparing needs at least two runs, got {len(named)}")
    names = list(named)
    if isinstance(baseline, int) and not isinstance(baseline, bool):
        if not 0 <= baseline < len(names):
            raise XdrError(f"baseline {baseline} is not a run position (0..{len(names) - 1})")
        baseline = names[baseline]
    elif baseline not in named:
        raise XdrError(f"baseline {baseline!r} is not one of the runs ({', '.join(names)})")
    if test not in TESTS:
        raise XdrError(f"unknown test {test!r}; choose one of {', '.join(TESTS)}")
    if correction not in CORRECTIONS:
        raise XdrError(f"unknown correction {correction!r}; choose one of {', '.join(CORRECTIONS)}")
    if not 0 < alpha < 1:
        raise XdrError(f"alpha must be between 0 and 1, not {alpha}")
    qs = list(read_queries(queries) if isinstance(queries, (str, Path)) else queries)
    judgments = read_qrels(qrels) if isinstance(qrels, (str, Path)) else qrels
    measures = list(measures or DEFAULT_MEASURES)
    reports = {
        name: evaluate(load_ranking(run), qs, qrels=judgments, measures=measures, name=name)
        for name, run in named.items()
    }
    base = reports[baseline]
    comparisons = with_holm([c for name, r in reports.items() if name != baseline for c in r.paired_tests(base)])
    pvalues = correct([c.pvalue(test) for c in comparisons], correction)
    return ComparisonReport(reports, baseline, tuple(comparisons), tuple(pvalues), test, correction, alpha)


def _named(paths: Sequence[str | Path]) -> dict[str, str | Path]:
    """Runs named by :func:`run_name`, or by the paths as given where two short names would collide."""
    short = [run_name(p) for p in paths]
    names = short if len(set(short)) == len(short) else [str(p) for p in paths]
    if len(set(names)) != len(names):
        raise XdrError("the same run is given twice")
    return dict(zip(names, paths, strict=True))
