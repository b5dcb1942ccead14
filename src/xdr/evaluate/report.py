"""Evaluation results per query, per language and macro-averaged, as JSON and as a Markdown table.

Every number in a :class:`Report` is a percentage (per-query scores included: an R@kt hit is 100.0, an
nDCG of 0.5 is 50.0), so per-query scores, language means and mean differences share one scale; where
ir-measures would print 0.5, xdr prints 50.0, and every report says so (``"scale": "percent"`` in JSON,
"(%)" in Markdown headings). The
macro average is the unweighted mean over languages, as XOR-TyDi reports it; significance for the "avg"
row is a paired test over all queries pooled.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from xdr.artifacts import write_json_atomic, write_text_atomic
from xdr.errors import MismatchError, XdrError
from xdr.evaluate.significance import Comparison, paired_test, with_holm

AVG = "avg"
SCALE = "percent"  # recorded in every JSON report: ir-measures gives fractions, xdr reports them x 100
PERCENT = "(%)"  # after every score heading in Markdown, for the same reason


@dataclass(frozen=True)
class Report:
    """Per-query scores of one system; per-language and macro views are derived from them."""

    per_query: dict[str, dict[str, float]]
    langs: dict[str, str]
    name: str = "system"
    notes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = {q for scores in self.per_query.values() for q in scores} - self.langs.keys()
        if unknown:
            raise XdrError(f"no language known for {len(unknown)} queries, e.g. {sorted(unknown)[:3]}")

    @property
    def measures(self) -> tuple[str, ...]:
        return tuple(self.per_query)

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(sorted({self.langs[q] for scores in self.per_query.values() for q in scores}))

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        """Queries scored per measure and language (measures can differ: R@kt skips yes/no questions)."""
        out: dict[str, dict[str, int]] = {}
        for measure, scores in self.per_query.items():
            c: dict[str, int] = {}
            for q in scores:
                c[self.langs[q]] = c.get(self.langs[q], 0) + 1
            out[measure] = dict(sorted(c.items()))
        return out

    @property
    def per_language(self) -> dict[str, dict[str, float]]:
        """Mean per-query score per measure and language."""
        out: dict[str, dict[str, float]] = {}
        counts = self.counts
        for measure, scores in self.per_query.items():
            sums: dict[str, float] = {}
            for q, v in scores.items():
                sums[self.langs[q]] = sums.get(self.langs[q], 0.0) + v
            out[measure] = {lang: sums[lang] / n for lang, n in counts[measure].items()}
        return out

    @property
    def macro(self) -> dict[str, float]:
        """Unweighted mean over languages per measure (NaN when nothing was scored)."""
        return {
            m: sum(by_lang.values()) / len(by_lang) if by_lang else math.nan
            for m, by_lang in self.per_language.items()
        }

    def scores(self, measure: str, group: str = AVG) -> dict[str, float]:
        """Per-query scores of one measure, for one language or (``avg``) for all queries."""
        scores = self.per_query[measure]
        return dict(scores) if group == AVG else {q: v for q, v in scores.items() if self.langs[q] == group}

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "scale": SCALE,
            "measures": list(self.measures),
            "languages": list(self.languages),
            "macro": self.macro,
            "per_language": self.per_language,
            "counts": self.counts,
            "notes": self.notes,
            "per_query": self.per_query,
            "langs": self.langs,
        }

    def to_json(self, path: str | Path) -> None:
        """Write the report atomically: a killed run never leaves a truncated report behind."""
        write_json_atomic(path, self.to_dict())

    def write(self, out_dir: str | Path) -> Path:
        """``report.json`` and ``report.md`` in ``out_dir``, each written atomically."""
        out = Path(out_dir)
        self.to_json(out / "report.json")
        write_text_atomic(out / "report.md", self.to_markdown() + "\n")
        return out

    @classmethod
    def from_json(cls, path: str | Path) -> Report:
        """Read a report written by :meth:`to_json`, e.g. a baseline to test a new system against."""
        d = json.loads(Path(path).read_text(encoding="utf-8"))
        try:
            return cls(d["per_query"], d["langs"], d["name"], d.get("notes", {}))
        except KeyError as e:
            raise XdrError(f"{path}: not an xdr evaluation report (no {e.args[0]!r})") from e

    def paired_tests(self, baseline: Report, *, allow_partial: bool = False) -> list[Comparison]:
        """Paired tests against ``baseline`` for every measure x (language, avg) cell, uncorrected: the
        caller decides the family (one system's cells here, all systems' cells in ``xdr compare``)."""
        missing = [m for m in self.measures if m not in baseline.per_query]
        if missing:
            raise MismatchError(f"baseline {baseline.name!r} has no scores for {', '.join(missing)}")
        return [
            paired_test(
                baseline.scores(m, group), self.scores(m, group),
                measure=m, baseline_name=baseline.name, system_name=self.name, group=group,
                allow_partial=allow_partial,
            )
            for m in self.measures
            for group in (*self.languages, AVG)
        ]

    def compare(self, baseline: Report, *, allow_partial: bool = False) -> list[Comparison]:
        """Paired tests against ``baseline`` for every measure x (language, avg) cell, Holm over all cells."""
        return with_holm(self.paired_tests(baseline, allow_partial=allow_partial))

    def comparison_markdown(self, baseline: Report, *, digits: int = 1) -> str:
        """Each cell: score, difference to ``baseline`` and the Holm-corrected p-values of both paired tests.

        The table that experiments publish: the reader sees effect size and significance side by side,
        not only a dagger.
        """
        comps = {(c.measure, c.group): c for c in self.compare(baseline)}
        per_lang, macro = self.per_language, self.macro
        lines = [
            "| lang | " + " | ".join(f"{m} {PERCENT}" for m in self.measures) + " |",
            "|---|" + "---:|" * len(self.measures),
        ]
        for group in (*self.languages, AVG):
            cells = []
            for m in self.measures:
                value = macro[m] if group == AVG else per_lang[m].get(group, math.nan)
                c = comps[(m, group)]
                cells.append(
                    f"{value:.{digits}f} ({c.mean_diff:+.{digits}f}; "
                    f"t {format_p(c.t_pvalue_holm)}, W {format_p(c.wilcoxon_pvalue_holm)})"
                )
            label = f"**{AVG}**" if group == AVG else group
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
        lines.append(
            f"Score (difference to {baseline.name}; Holm-corrected p of the paired t-test and the Wilcoxon "
            f"signed-rank test over queries, corrected over all {len(comps)} cells). The avg row's score is the "
            "macro average; its difference and tests pool all queries."
        )
        return "\n".join(lines) + "\n"

    def to_markdown(
        self,
        baseline: Report | None = None,
        *,
        alpha: float = 0.05,
        test: Literal["t", "wilcoxon"] = "t",
        digits: int = 1,
    ) -> str:
        """Languages as rows plus an ``avg`` (macro) row, measures as columns.

        With ``baseline``, a cell gets a dagger when the paired ``test`` against the baseline, Holm-corrected
        over all cells of the table, has p < ``alpha``.
        """
        marks: dict[tuple[str, str], str] = {}
        if baseline is not None:
            for c in self.compare(baseline):
                p = c.t_pvalue_holm if test == "t" else c.wilcoxon_pvalue_holm
                marks[(c.measure, c.group)] = "†" if p < alpha else ""
        per_lang, macro = self.per_language, self.macro
        n_by_lang = {
            lang: len({q for s in self.per_query.values() for q in s if self.langs[q] == lang})
            for lang in self.languages
        }
        lines = [
            "| lang | n | " + " | ".join(f"{m} {PERCENT}" for m in self.measures) + " |",
            "|---|---:|" + "---:|" * len(self.measures),
        ]

        def cell(value: float | None, measure: str, group: str) -> str:
            text = "–" if value is None or math.isnan(value) else f"{value:.{digits}f}"
            return text + marks.get((measure, group), "")

        for lang in self.languages:
            cells = [cell(per_lang[m].get(lang), m, lang) for m in self.measures]
            lines.append(f"| {lang} | {n_by_lang[lang]} | " + " | ".join(cells) + " |")
        cells = [cell(macro[m], m, AVG) for m in self.measures]
        lines.append(f"| **{AVG}** | {sum(n_by_lang.values())} | " + " | ".join(cells) + " |")
        if baseline is not None:
            name = "paired t-test" if test == "t" else "Wilcoxon signed-rank test"
            lines.append("")
            lines.append(
                f"† differs from {baseline.name} with p < {alpha} ({name}, Holm-corrected over "
                f"{len(marks)} cells; avg row tests all queries pooled)."
            )
        lines.extend(self._caveats())
        return "\n".join(lines) + "\n"

    def _caveats(self) -> list[str]:
        """What the table cannot show: R@kt questions whose answers cannot match as written, R@kt left out."""
        out = []
        unmatchable = self.notes.get("rkt", {}).get("answers_cannot_match_as_written", 0)
        if unmatchable:
            out.append(f"\nR@kt: {unmatchable} questions have no answer that survives NLTK tokenization as written "
                       "(e.g. \"Portland, Oregon\"); the official rule counts them as misses even at rank 1.")
        if "rkt_left_out" in self.notes:
            out.append(f"\nR@kt left out: {self.notes['rkt_left_out']}.")
        return out


def format_p(p: float) -> str:
    """A p-value as tables print it: ``.031``, ``<.001``, ``–`` when untested."""
    return "–" if math.isnan(p) else "<.001" if p < 0.001 else f"{p:.3f}".lstrip("0")
