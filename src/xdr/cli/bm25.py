"""`xdr bm25`: a BM25 index over a corpus, for translated queries and hybrid search."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from xdr.cli.options import in_range, out

app = typer.Typer()


@app.command(
    "bm25",
    epilog="Example: xdr bm25 corpus.jsonl --out runs/bm25 && xdr search runs/idx queries.jsonl --expansions "
    "runs/exp --bm25 runs/bm25 --out runs/hybrid",
)
def bm25_cmd(
    corpus: Annotated[Path, typer.Argument(help="passages (English, for translated queries)")],
    out_dir: Annotated[Path, typer.Option("--out", help="BM25 index directory")],
    k1: Annotated[float, typer.Option(callback=in_range(0.0), help="term-frequency saturation")] = 1.5,
    b: Annotated[float, typer.Option(callback=in_range(0.0, 1.0), help="length normalisation")] = 0.75,
    stemmer: Annotated[str, typer.Option(help="Snowball stemmer language, or '' for none")] = "english",
    stopwords: Annotated[str, typer.Option(help="bm25s stop-word list (en, ...), or '' for none")] = "en",
) -> None:
    """Index a corpus for BM25 (bm25s, Lucene's variant): the sparse half of hybrid search."""
    from xdr.artifacts import ensure_writable
    from xdr.data import read_passages
    from xdr.index.bm25 import build_bm25

    ensure_writable(out_dir)
    path = build_bm25(read_passages(corpus), out_dir, source=corpus, k1=k1, b=b, stemmer=stemmer or None,
                      stopwords=stopwords or None)
    out.print(f"BM25 index: {path}")
