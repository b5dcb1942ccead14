"""`xdr search`: questions in any language against an index, optionally expanded, re-ranked by max-sim and
fused with BM25 (`xdr bm25` builds the BM25 index)."""

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
    "--beta 0.5 --rerank-k 100 --out runs/run-maxsim\n\n"
    "Example (query expansion + hybrid): xdr search runs/idx queries.jsonl --expansions runs/exp --combine fuse "
    "--expansion-weight 0.3 --bm25 runs/bm25 --bm25-query expanded --hybrid rrf --out runs/run-hybrid",
)
def search_cmd(
    ctx: typer.Context,
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
    mmap: Annotated[bool, typer.Option(
        help="leave the index's vectors and IVF lists on disk, paged in as searches touch them (an index "
        "larger than memory; CPU only)")] = False,
    fields: FieldsOpt = None,
    lang: LangOpt = None,
    expansions: Annotated[Path | None, typer.Option(help="an `xdr expand` directory")] = None,
    combine: Annotated[str, typer.Option(
        help="concat (query + expansions as one text), fuse (weighted mean of vectors), none (BM25 only)")] = "concat",
    expansion_weight: Annotated[float, typer.Option(
        callback=in_range(0.0, 1.0), help="fuse: weight of the expansions' mean vector")] = 0.5,
    strategy: Annotated[str | None, typer.Option(help="the expansions' strategy, when it holds several")] = None,
    expansion_max_length: Annotated[int | None, typer.Option(
        callback=in_range(8), help="concat: tokens (default: the passage length); the expansion is cut first")] = None,
    bm25: Annotated[Path | None, typer.Option(help="an `xdr bm25` index: hybrid dense + BM25 search")] = None,
    bm25_query: Annotated[str, typer.Option(
        help="BM25 searches the LLM translation of the query alone (translation) or with its expansion "
        "(expanded), from --expansions")] = "translation",
    hybrid: Annotated[str, typer.Option(help="rrf (reciprocal rank) or score (min-max normalised)")] = "rrf",
    hybrid_weight: Annotated[float, typer.Option(
        callback=in_range(0.0, 1.0), help="score fusion: weight of BM25")] = 0.5,
    bm25_only: Annotated[bool, typer.Option("--bm25-only", help="rank by BM25 alone (no dense search)")] = False,
    config: Annotated[Path | None, typer.Option(
        help="settings chosen by `xdr tune` (beta, expansion weight); options given here win")] = None,
) -> None:
    """Search an index with questions in any language; writes TREC and XOR-TyDi submission runs."""
    from xdr.artifacts import ensure_writable
    from xdr.cli.tune import config_values
    from xdr.data import read_passages, read_queries
    from xdr.data.runs import RUN_FILE, XOR_FILE
    from xdr.index import load_index
    from xdr.maxsim import MaxSimReranker
    from xdr.models.encoder import Encoder
    from xdr.search import Hybrid, QueryExpansion, english_queries, search, search_bm25, write_search_output

    tuned = config_values(ctx, config, "search", {"beta": beta, "expansion_weight": expansion_weight})
    expansion_weight = tuned["expansion_weight"]
    if combine not in ("concat", "fuse", "none"):
        raise XdrError(f"--combine: concat, fuse or none, not {combine!r}")
    if bm25_query not in ("translation", "expanded"):
        raise XdrError(f"--bm25-query: translation or expanded, not {bm25_query!r}")
    if (bm25 is not None or bm25_only) and expansions is None:
        raise XdrError("BM25 searches the LLM's English translations: give --expansions (from `xdr expand`)")
    if bm25_only and bm25 is None:
        raise XdrError("--bm25-only needs --bm25")
    if rerank not in (None, "maxsim"):
        raise XdrError(f"--rerank: the one re-ranker is maxsim, not {rerank!r}")
    if (rerank is None) != (store is None):
        raise XdrError("--rerank maxsim and --store go together")
    ensure_writable(out_dir)
    idx = load_index(index_dir, nprobe=nprobe, ef_search=ef_search, use_gpu=not mmap, mmap=mmap)
    if beta is None and (rerank is not None or idx.multi is not None):  # a tuned beta where max-sim is used
        beta = tuned["beta"]
    if beta is not None and rerank is None:
        idx.configure(beta=beta)
    overrides = {"query_prefix": query_prefix, "query_max_length": query_max_length}
    if model is None:
        spec = idx.spec.model_copy(update={name: v for name, v in overrides.items() if v is not None})
    else:
        spec = model_spec(model, **overrides)
    qs = list(read_queries(queries, fields=parse_fields(fields), lang=lang))
    english = None
    if expansions is not None and bm25 is not None:
        english = english_queries(expansions, qs, expanded=bm25_query == "expanded", strategy=strategy)
    if bm25_only:
        run = search_bm25(bm25, english or {}, k)
    else:
        encoder = Encoder.load(spec, device=device)
        reranker = None
        if store is not None:
            reranker = MaxSimReranker(store, beta=DEFAULT_BETA if beta is None else beta, depth=rerank_k)
        expansion = None
        if expansions is not None and combine != "none":
            expansion = QueryExpansion(expansions=expansions, combine=combine, weight=expansion_weight,
                                       strategy=strategy, max_length=expansion_max_length)
        fusion = None
        if bm25 is not None:
            fusion = Hybrid(bm25, english or {}, method=hybrid, weight=hybrid_weight, depth=max(k, rerank_k))
        run = search(idx, qs, encoder, k=k, reranker=reranker, expansion=expansion, hybrid=fusion,
                     batch_size=batch_size, progress=True)
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
