"""`xdr generate`: query generation for passage augmentation (xQG), or reading released queries."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from xdr.cli.options import (
    BaseUrlOpt,
    ConcurrencyOpt,
    DeviceOpt,
    EngineOpt,
    ExemplarsOpt,
    GenBatchOpt,
    GeneratorOpt,
    GenModelOpt,
    GgufOpt,
    RayAddressOpt,
    RequestTimeoutOpt,
    ThreadsOpt,
    WorkersOpt,
    engine_settings,
    in_range,
    out,
)
from xdr.cli.tune import config_values
from xdr.langs import parse_langs

app = typer.Typer(
    help="Query generation for passage augmentation (xQG).\n\n"
    "Example: xdr generate run corpus.jsonl --langs ar,ja,te --n 5 --out runs/gen",
    no_args_is_help=True,
)


@app.command(
    "run",
    epilog="Example (the paper's mT5): xdr generate run corpus.jsonl --langs ar,bn,fi,ja,ko,ru,te --out gen\n\n"
    "Example (LLM server): xdr generate run corpus.jsonl --generator openai --model qwen2.5 "
    "--base-url http://127.0.0.1:8080/v1 --langs de,es --out gen",
)
def generate_run(
    ctx: typer.Context,
    corpus: Annotated[Path, typer.Argument(help="English passages")],
    out_dir: Annotated[Path, typer.Option("--out", help="generated-query directory (resumable)")],
    langs: Annotated[str, typer.Option(help="target languages")],
    generator: GeneratorOpt = "seq2seq",
    model: GenModelOpt = None,
    n: Annotated[int, typer.Option(callback=in_range(1), help="queries per passage and language")] = 5,
    seed: Annotated[int, typer.Option(help="sampling seed")] = 42,
    shard_size: Annotated[int, typer.Option(callback=in_range(1), help="passages per shard")] = 2000,
    batch_size: GenBatchOpt = 32,
    base_url: BaseUrlOpt = "http://127.0.0.1:8000/v1",
    concurrency: ConcurrencyOpt = 8,
    timeout: RequestTimeoutOpt = 120.0,
    gguf_file: GgufOpt = None,
    exemplars: ExemplarsOpt = None,
    no_filter: Annotated[bool, typer.Option("--no-filter", help="keep every parsed output")] = False,
    device: DeviceOpt = None,
    engine: EngineOpt = "local",
    ray_address: RayAddressOpt = None,
    workers: WorkersOpt = None,
    threads: ThreadsOpt = None,
    config: Annotated[Path | None, typer.Option(
        help="settings chosen by `xdr tune` (n); an option given here wins")] = None,
) -> None:
    """Generate questions for every passage in each target language (xQG / SWIM-IR)."""
    n = config_values(ctx, config, "generate", {"n": n})["n"]
    codes = parse_langs(langs)
    settings = engine_settings(engine, ray_address, workers, threads)
    from functools import partial

    from xdr.data import count_rows, read_passages
    from xdr.generate import FilterSettings, generation_stats, make_generator, run_generation, stats_table

    passages = read_passages(corpus)  # a missing or unreadable corpus fails before a model loads
    gen = partial(  # each worker loads the model: one that cannot be had stops there, before --out is made
        make_generator, generator, model=model, base_url=base_url, concurrency=concurrency, timeout=timeout,
        gguf_file=gguf_file, exemplars=exemplars, batch_size=batch_size, device=device,
    )
    path = run_generation(
        passages, gen, out_dir, langs=codes, n=n, seed=seed, shard_size=shard_size,
        filters=None if no_filter else FilterSettings(), total=count_rows(corpus), engine=settings,
    )
    out.print(stats_table(generation_stats(path)))
    out.print(f"generated: {path}")


@app.command("ingest", epilog="Example: xdr generate ingest xqg-augmented.jsonl.gz --out runs/gen")
def generate_ingest(
    released: Annotated[Path, typer.Argument(help="ielab/xor-tydi-xqg-augmented JSONL (.gz)")],
    out_dir: Annotated[Path, typer.Option("--out", help="generated-query directory")],
    langs: Annotated[str | None, typer.Option(help="keep only these languages")] = None,
) -> None:
    """Read the xQG paper's released generated queries instead of generating them."""
    codes = parse_langs(langs)
    from xdr.generate import generation_stats, ingest_xqg, stats_table

    path = ingest_xqg(released, out_dir, langs=codes)
    out.print(stats_table(generation_stats(path)))


@app.command("stats", epilog="Example: xdr generate stats runs/gen")
def generate_stats(gen_dir: Annotated[Path, typer.Argument(help="generated-query directory")]) -> None:
    """Per-language counts, duplicate, copy and wrong-language rates, mean length."""
    from xdr.generate import generation_stats, stats_table

    out.print(stats_table(generation_stats(gen_dir)))
