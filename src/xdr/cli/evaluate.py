"""`xdr evaluate`: XOR-TyDi R@kt and ir-measures metrics of a run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from xdr.cli.options import FieldsOpt, LangOpt, out, parse_fields, parse_ints

app = typer.Typer()


@app.command(
    "evaluate",
    epilog="Example: xdr evaluate runs/run --queries q.jsonl --qrels qrels.txt --budgets 2000,5000 --out eval",
)
def evaluate_cmd(
    run_path: Annotated[Path, typer.Argument(help="run directory, run.trec or xor.json")],
    queries: Annotated[Path, typer.Option(help="queries with English answers (for R@kt) and languages")],
    out_dir: Annotated[Path, typer.Option("--out", help="writes report.json and report.md")],
    qrels: Annotated[Path | None, typer.Option(help="TREC qrels for nDCG@10, MRR@10, R@1, R@100")] = None,
    corpus: Annotated[Path | None, typer.Option(help="corpus: passage texts for R@kt")] = None,
    budgets: Annotated[str, typer.Option(help="R@kt token budgets")] = "2000,5000",
    measures: Annotated[str, typer.Option(help="ir-measures names")] = "nDCG@10,RR@10,R@1,R@100",
    fields: FieldsOpt = None,
    lang: LangOpt = None,
) -> None:
    """XOR-TyDi R@kt (official semantics) and ir-measures metrics, per language and macro-averaged.

    R@kt counts a hit only where an answer string is a substring of the NLTK-tokenized passages, as the
    official scorer does: an answer with punctuation ("Portland, Oregon") rarely matches even at rank 1,
    and the report counts such questions. Give --qrels for nDCG@10, MRR@10, R@1 and R@100, which judge
    passage ids instead; the report then leads with them.
    """
    from xdr.artifacts import ensure_writable
    from xdr.evaluate import evaluate_files

    ensure_writable(out_dir)

    report = evaluate_files(
        run_path, queries, qrels_path=qrels, corpus_path=corpus, token_budgets=parse_ints(budgets, "--budgets"),
        measures=[m.strip() for m in measures.split(",") if m.strip()],
        query_fields=parse_fields(fields), lang=lang,
    )
    report.write(out_dir)
    out.print(report.to_markdown())
    out.print(f"\nreport: {out_dir / 'report.json'}")
