"""`xdr compare`: several runs against a baseline, per language and macro-averaged, with paired tests."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from xdr.cli.options import out

app = typer.Typer()


@app.command(
    "compare",
    epilog="Example: xdr compare runs/bm25 runs/me5 runs/me5-xqg --queries q.jsonl --qrels qrels.txt "
    "--baseline 0 --correction holm --out runs/compare",
)
def compare_cmd(
    runs: Annotated[list[Path], typer.Argument(metavar="RUN", help="two or more run directories or TREC run files")],
    queries: Annotated[Path, typer.Option(help="queries with languages; they define the evaluation set")],
    qrels: Annotated[Path, typer.Option(help="TREC qrels")],
    measures: Annotated[str, typer.Option(help="ir-measures names")] = "nDCG@10,RR@10,R@1,R@100",
    baseline: Annotated[str, typer.Option(help="the run the others are tested against: a position or name")] = "0",
    test: Annotated[str, typer.Option(help="t (paired t-test) or wilcoxon (signed-rank)")] = "t",
    correction: Annotated[str, typer.Option(help="holm, bonferroni or none, over all tests")] = "holm",
    alpha: Annotated[float, typer.Option(help="significance level of the † marks")] = 0.05,
    out_dir: Annotated[Path | None, typer.Option("--out", help="writes comparison.json and comparison.md")] = None,
) -> None:
    """Scores of each run per language and macro-averaged, each tested against the baseline (PyTerrier's
    Experiment with baseline= and correction=); percentages, † where the corrected p < alpha."""
    from xdr.evaluate.compare import compare

    report = compare(  # compare() refuses an unknown test or correction in one line
        runs, queries, qrels, measures=[m.strip() for m in measures.split(",") if m.strip()],
        baseline=int(baseline) if baseline.isdigit() else baseline, test=test, correction=correction,
        alpha=alpha,
    )
    out.print(report.to_markdown(), highlight=False, markup=False, soft_wrap=True)
    if out_dir is not None:
        report.write(out_dir)
        out.print(f"comparison: {out_dir / 'comparison.json'}", soft_wrap=True)
