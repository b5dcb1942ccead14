"""`xdr plan`: GPU-hours, wall time, disk and peak memory of a pipeline, per stage, before running it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from xdr.cli.options import in_range, out
from xdr.errors import XdrError

app = typer.Typer()


@app.command(
    "plan",
    epilog="Example (XOR-TyDi, 8 GPUs): xdr plan --passages 18200000 --passage-tokens 128 "
    "--langs ar,bn,fi,ja,ko,ru,te --n 5 --encoder bert-base --gpu H200 --gpus 8 --queries 2110\n\n"
    "Example (count a corpus): xdr plan corpus.jsonl --langs ja,ko --n 5 --cpu",
)
def plan_cmd(
    corpus: Annotated[Path | None, typer.Argument(help="corpus to count (else --passages/--passage-tokens)")] = None,
    passages: Annotated[int | None, typer.Option(callback=in_range(1), help="passages in the corpus")] = None,
    passage_tokens: Annotated[float | None, typer.Option(callback=in_range(1), help="mean tokens a passage")] = None,
    langs: Annotated[str | None, typer.Option(help="languages to generate queries in, comma-separated")] = None,
    n: Annotated[int, typer.Option(callback=in_range(0), help="generated queries per passage and language")] = 5,
    generator: Annotated[str, typer.Option(help="generator with measured rates: mt5-base")] = "mt5-base",
    encoder: Annotated[str, typer.Option(help="me5-small or bert-base")] = "me5-small",
    gpu: Annotated[str, typer.Option(help="GPU kind, matched against the rates' devices (e.g. H200)")] = "H200",
    gpus: Annotated[int, typer.Option(callback=in_range(1), help="GPUs in the cluster")] = 1,
    cpu: Annotated[bool, typer.Option("--cpu", help="plan for CPUs only")] = False,
    queries: Annotated[int, typer.Option(callback=in_range(0), help="queries to search")] = 0,
    factory: Annotated[str, typer.Option(help="FAISS factory of the index (rates for Flat, IVF-PQ, HNSW)")] = "Flat",
    maxsim: Annotated[bool, typer.Option("--maxsim", help="also store generated-query vectors for max-sim")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the plan as JSON")] = False,
) -> None:
    """Estimate each stage's GPU-hours, wall time, disk and peak memory from xdr's measured rates."""
    from xdr.langs import parse_langs
    from xdr.plan import Workload, plan
    from xdr.plan.estimate import corpus_stats

    if corpus is not None:
        counted, mean = corpus_stats(str(corpus))
        passages, passage_tokens = passages or counted, passage_tokens or mean
    if passages is None or passage_tokens is None:
        raise XdrError("give a corpus, or --passages and --passage-tokens")
    codes = tuple(parse_langs(langs) or ()) if langs else ()
    w = Workload(passages=passages, passage_tokens=passage_tokens, langs=codes, n=n, generator=generator,
                 encoder=encoder, gpu=None if cpu else gpu, gpus=gpus, queries=queries,
                 factory=factory, maxsim=maxsim)
    result = plan(w)
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
    else:
        out.print(result.to_markdown(), markup=False, highlight=False, soft_wrap=True)
