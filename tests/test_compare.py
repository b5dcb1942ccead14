"""compare() and `xdr compare`: several runs against a baseline, with the statistics of xdr.evaluate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from xdr.data import read_qrels, read_queries
from xdr.data.runs import Run, write_run
from xdr.errors import XdrError
from xdr.evaluate import evaluate, paired_test, with_holm
from xdr.evaluate.compare import compare, run_name
from xdr.evaluate.significance import bonferroni

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo"
QUERIES = list(read_queries(DEMO / "queries.jsonl"))
QRELS = read_qrels(DEMO / "qrels.txt")
DOCS = [f"d{i:02d}" for i in range(1, 41)]
MEASURES = ["RR@10", "R@1"]


def _run(rank_of_relevant) -> dict[str, dict[str, float]]:
    """A run that puts each query's relevant passage at ``rank_of_relevant(i, query)`` (1-based)."""
    run = {}
    for i, q in enumerate(QUERIES):
        rel = next(iter(QRELS[q.id]))
        others = [d for d in DOCS if d != rel]
        at = rank_of_relevant(i, q) - 1
        ranked = [*others[:at], rel, *others[at:]]
        run[q.id] = {d: float(100 - r) for r, d in enumerate(ranked[:20])}
    return run


# weak: the relevant passage at rank 1-4; strong: rank 1 except in Japanese; same: the weak run again
WEAK = _run(lambda i, q: 1 + i % 4)
STRONG = _run(lambda i, q: 3 if q.lang == "ja" else 1)


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("runs")
    dirs = []
    for name, run in (("weak", WEAK), ("strong", STRONG)):
        (root / name).mkdir()
        write_run(root / name / "run.trec", run)
        dirs.append(root / name)
    write_run(root / "same.trec", WEAK)
    return [*dirs, root / "same.trec"]


def test_p_values_are_paired_test_and_holm_over_every_cell(run_dirs: list[Path]) -> None:
    report = compare(run_dirs, QUERIES, QRELS, measures=MEASURES)
    assert report.systems == ("weak", "strong", "same") and report.baseline == "weak"
    reports = {n: evaluate(r, QUERIES, qrels=QRELS, measures=MEASURES, name=n)
               for n, r in (("weak", WEAK), ("strong", STRONG), ("same", WEAK))}
    groups = [*reports["weak"].languages, "avg"]
    direct = with_holm([
        paired_test(reports["weak"].scores(m, g), reports[s].scores(m, g), measure=m, baseline_name="weak",
                    system_name=s, group=g)
        for s in ("strong", "same") for m in MEASURES for g in groups
    ])
    assert len(report.comparisons) == 2 * len(MEASURES) * 10  # 9 languages + avg
    assert list(report.comparisons) == direct
    assert list(report.pvalues) == [c.t_pvalue_holm for c in direct]
    assert report.significant("strong", "R@1", "avg") and report.significant("strong", "R@1", "de")
    assert not report.significant("strong", "R@1", "ja")  # ja: both rank it below 1 often, never better
    assert not report.significant("same", "RR@10", "avg") and report.pvalue("same", "RR@10") == 1.0
    assert report.reports["strong"].macro["R@1"] == pytest.approx(800 / 9)


def test_test_correction_and_baseline_options(run_dirs: list[Path]) -> None:
    runs = {"a": run_dirs[0], "b": Run({q: sorted(d.items(), key=lambda x: -x[1]) for q, d in STRONG.items()})}
    plain = compare(runs, DEMO / "queries.jsonl", DEMO / "qrels.txt", MEASURES, correction="none")
    assert list(plain.pvalues) == [c.t_pvalue for c in plain.comparisons]
    bonf = compare(runs, QUERIES, QRELS, MEASURES, correction="bonferroni")
    assert list(bonf.pvalues) == bonferroni([c.t_pvalue for c in plain.comparisons])
    wil = compare(runs, QUERIES, QRELS, MEASURES, test="wilcoxon")
    assert list(wil.pvalues) == [c.wilcoxon_pvalue_holm for c in wil.comparisons]
    flipped = compare({"a": WEAK, "b": STRONG}, QUERIES, QRELS, MEASURES, baseline="b")
    assert flipped.baseline == "b" and {c.system for c in flipped.comparisons} == {"a"}
    assert flipped.comparisons[-1].mean_diff < 0 and flipped.significant("a", "R@1")
    for kwargs, problem in (({"baseline": 2}, "not a run position"), ({"baseline": "c"}, "not one of the runs"),
                            ({"test": "z"}, "unknown test"), ({"correction": "fdr"}, "unknown correction")):
        with pytest.raises(XdrError, match=problem):
            compare(runs, QUERIES, QRELS, MEASURES, **kwargs)
    with pytest.raises(XdrError, match="at least two runs"):
        compare({"a": WEAK}, QUERIES, QRELS)
    with pytest.raises(XdrError, match="no such run"):
        compare([run_dirs[0], run_dirs[0].parent / "missing"], QUERIES, QRELS)


def test_report_json_and_markdown_say_percent(run_dirs: list[Path], tmp_path: Path) -> None:
    report = compare(run_dirs[:2], QUERIES, QRELS, measures=MEASURES)
    report.write(tmp_path / "cmp")
    d = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert d["scale"] == "percent" and d["baseline"] == "weak" and d["correction"] == "holm"
    assert d["systems"]["strong"]["macro"]["R@1"] == pytest.approx(800 / 9)
    assert len(d["comparisons"]) == 20 and all({"p", "significant", "t_pvalue_holm"} <= c.keys()
                                                 for c in d["comparisons"])
    md = (tmp_path / "cmp" / "comparison.md").read_text()
    assert md == report.to_markdown()
    assert "## Macro average over languages (%)" in md and "## R@1 (%)" in md
    assert sorted(p.name for p in (tmp_path / "cmp").iterdir()) == ["comparison.json", "comparison.md"]


def test_run_names_come_from_directories_and_files(run_dirs: list[Path]) -> None:
    assert [run_name(p) for p in run_dirs] == ["weak", "strong", "same"]
    assert run_name(run_dirs[0] / "run.trec") == "weak"
    twice = compare([run_dirs[0], run_dirs[0] / "run.trec"], QUERIES, QRELS, MEASURES)  # short names collide
    assert twice.systems == (str(run_dirs[0]), str(run_dirs[0] / "run.trec"))


def test_cli_prints_language_and_macro_rows_with_markers(run_dirs: list[Path], tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "xdr", "compare", *map(str, run_dirs[:2]), "--queries", str(DEMO / "queries.jsonl"),
         "--qrels", str(DEMO / "qrels.txt"), "--measures", "RR@10,R@1", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    r1 = lines.index("## R@1 (%)")
    rows = {line.split("|")[1].strip(): line for line in lines[r1:] if line.startswith("| ")}
    assert rows["de"].startswith("| de | 8 |") and rows["de"].rstrip().endswith("100.0† |")
    assert "†" not in rows["ja"] and rows["**avg**"].rstrip().endswith("88.9† |")
    macro = next(line for line in lines if line.startswith("| strong |"))
    assert "88.9† (+" in macro and "p <.001" in macro
    assert "Holm-corrected over all 20 tests" in r.stdout
    assert json.loads((tmp_path / "out" / "comparison.json").read_text())["scale"] == "percent"
    bad = subprocess.run(
        [sys.executable, "-m", "xdr", "compare", str(run_dirs[0]), str(run_dirs[1]), "--queries",
         str(DEMO / "queries.jsonl"), "--qrels", str(DEMO / "qrels.txt"), "--correction", "fdr"],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert bad.returncode == 2 and bad.stderr.startswith("error: unknown correction 'fdr'")
