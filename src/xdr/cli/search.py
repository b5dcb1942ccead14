"""`xdr search`: questions in any language against an index, optionally re-ranked by max-sim."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from xdr.cli.options import (
    BatchOpt,
    DeviceOpt,
    FieldsOpt,
    LangOpt,
    QLenOpt,
    QPrefixOpt,
    in_range,
    model_spec,
    out,
    parse_fields,
)
from xdr.config import DEFAULT_BETA
from xdr.errors import XdrError

app = typer.Typer()


@app.command(
    "search",
    epilog="Example: xdr search runs/idx queries.jsonl --corpus corpus.jsonl --k 100 --out runs/run --show 3\n\n"
    "Example (max-sim re-ranking): xdr search runs/idx queries.jsonl --rerank maxsim --store runs/gen-store "
    "--beta 0.5 --rerank-k 100 --out runs/run-maxsim",
)
def search_cmd(
    index_dir: Annotated[Path, typer.Argument(help="directory written by `xdr index`")],
    queries: Annotated[Path, typer.Argument(
        help="query file (id, text[, lang, answers]; lang detected when absent) or irds:<id>")],
    out_dir: Annotated[Path, typer.Option("--out", help="writes run.trec (+ xor.json with --corpus)")],
    corpus: Annotated[Path | None, typer.Option(help="corpus, streamed once, for passage texts")] = None,
    k: Annotated[int, typer.Option(callback=in_range(1), help="passages per query")] = 100,
    show: Annotated[int, typer.Option(
        callback=in_range(0), help="print the top-N passages of the first queries per language")] = 0,
    model: Annotated[str | None, typer.Option("--model", "-m", help="default: the index's model")] = None,
    batch_size: BatchOpt = 128,
    device: DeviceOpt = None,
    query_prefix: QPrefixOpt = None,
    query_max_length: QLenOpt = None,
    rerank: Annotated[str | None, typer.Option(help="maxsim: re-score candidates with --store")] = None,
    store: Annotated[Path | None, typer.Option(help="a `xdr maxsim-store` for --rerank maxsim")] = None,
    rerank_k: Annotated[int, typer.Option(callback=in_range(1), help="first-stage candidates re-ranked")] = 100,
    beta: Annotated[float | None, typer.Option(
        callback=in_range(0.0), help=f"max-sim weight (default {DEFAULT_BETA}, or the index's)")] = None,
    nprobe: Annotated[int | None, typer.Option(callback=in_range(1),
        help="IVF lists probed (default: all of up to 16, else about sqrt(lists)); more is slower and closer "
        "to exact")] = None,
    ef_search: Annotated[int | None, typer.Option(
        callback=in_range(1), help="HNSW beam width (default 128); more is slower and "
                                                 "closer to exact")] = None,
    fields: FieldsOpt = None,
    lang: LangOpt = None,
) -> None:
    """Search an index with questions in any language; writes TREC and XOR-TyDi submission runs."""
    from xdr.artifacts import ensure_writable
    from xdr.data import read_passages, read_queries
    from xdr.data.runs import RUN_FILE, XOR_FILE
    from xdr.index import load_index
    from xdr.maxsim import MaxSimReranker
    from xdr.models.encoder import Encoder
    from xdr.search import search, write_search_output

    if rerank not in (None, "maxsim"):
        raise XdrError(f"--rerank: the one re-ranker is maxsim, not {rerank!r}")
    if (rerank is None) != (store is None):
        raise XdrError("--rerank maxsim and --store go together")
    ensure_writable(out_dir)
    idx = load_index(index_dir, nprobe=nprobe, ef_search=ef_search)
    if beta is not None and rerank is None:
        idx.configure(beta=beta)
    overrides = {"query_prefix": query_prefix, "query_max_length": query_max_length}
    if model is None:
        spec = idx.spec.model_copy(update={name: v for name, v in overrides.items() if v is not None})
    else:
        spec = model_spec(model, **overrides)
    qs = list(read_queries(queries, fields=parse_fields(fields), lang=lang))
    encoder = Encoder.load(spec, device=device)
    reranker = None
    if store is not None:
        reranker = MaxSimReranker(store, beta=DEFAULT_BETA if beta is None else beta, depth=rerank_k)
    run = search(idx, qs, encoder, k=k, reranker=reranker, batch_size=batch_size, progress=True)
    texts = write_search_output(
        run, qs, out_dir, corpus=read_passages(corpus) if corpus is not None else None,
        inputs={"index": index_dir, "queries": queries, "model": spec.model_dump()},
    )
    out.print(f"run: {out_dir / RUN_FILE}")
    if texts is not None:
        out.print(f"run: {out_dir / XOR_FILE}")
        if show:
            _show(run, qs, texts, show)


def _show(run, queries, texts, n: int) -> None:
    """The top ``n`` passages of the first query in each language, for a quick look at a run."""
    seen: set[str] = set()
    for q in queries:
        if q.lang in seen:
            continue
        seen.add(q.lang)
        out.print(f"\n[bold]{q.lang}[/bold] {q.text}")
        for rank, (docid, score) in enumerate(run[q.id][:n], 1):
            out.print(f"  {rank}. [{score:.3f}] {docid}: {texts.get(docid, '')[:160]}")
