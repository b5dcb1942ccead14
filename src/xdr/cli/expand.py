"""`xdr expand`: expand (and translate) queries with an LLM, for search-time query expansion."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from xdr.cli.options import (
    BaseUrlOpt,
    ConcurrencyOpt,
    DeviceOpt,
    FieldsOpt,
    GenBatchOpt,
    GgufOpt,
    LangOpt,
    RequestTimeoutOpt,
    in_range,
    out,
    parse_fields,
)

app = typer.Typer()


@app.command(
    "expand",
    epilog="Example: xdr expand queries.jsonl --generator openai --model qwen2.5 --base-url http://127.0.0.1:8080/v1 "
    "--strategy zero-shot,few-shot --order expand-translate --out runs/exp\n\n"
    "Then: xdr search runs/idx queries.jsonl --expansions runs/exp --combine concat --out runs/run",
)
def expand_cmd(
    queries: Annotated[Path, typer.Argument(help="query file (id, text[, lang]) or irds:<id>")],
    out_dir: Annotated[Path, typer.Option("--out", help="expansions directory (resumable)")],
    model: Annotated[str, typer.Option("--model", "-m", help="served model name or local LLM")],
    generator: Annotated[str, typer.Option(help="openai (a chat server) or hf (a local model)")] = "openai",
    strategy: Annotated[str, typer.Option(help="comma list of zero-shot, few-shot, cot, rar")] = "zero-shot",
    order: Annotated[str, typer.Option(help="expand, translate-expand or expand-translate (to English)")] = "expand",
    samples: Annotated[int, typer.Option(callback=in_range(1), help="expansions per query and strategy")] = 1,
    seed: Annotated[int, typer.Option(help="sampling seed")] = 42,
    shard_size: Annotated[int, typer.Option(callback=in_range(1), help="queries per shard")] = 100,
    exemplars: Annotated[Path | None, typer.Option(help="few-shot exemplars YAML (query, expansion, lang)")] = None,
    num_exemplars: Annotated[int, typer.Option(callback=in_range(1), help="exemplars per few-shot prompt")] = 3,
    base_url: BaseUrlOpt = "http://127.0.0.1:8000/v1",
    concurrency: ConcurrencyOpt = 8,
    timeout: RequestTimeoutOpt = 120.0,
    gguf_file: GgufOpt = None,
    batch_size: GenBatchOpt = 8,
    device: DeviceOpt = None,
    fields: FieldsOpt = None,
    lang: LangOpt = None,
) -> None:
    """Expand each query under each prompting strategy; prints the LLM calls planned, then the statistics."""
    from xdr.data import read_queries
    from xdr.expand import ExpandSettings, expansion_stats, plan_calls, run_expansion, stats_markdown
    from xdr.generate.llm import chat_backend

    settings = ExpandSettings(strategies=tuple(s.strip() for s in strategy.split(",") if s.strip()), order=order,
                              samples=samples, seed=seed, shard_size=shard_size, num_exemplars=num_exemplars)
    qs = list(read_queries(queries, fields=parse_fields(fields), lang=lang))
    out.print(f"{len(qs)} queries: at most {plan_calls(qs, settings)} LLM calls")
    options = ({"base_url": base_url, "concurrency": concurrency, "timeout": timeout} if generator == "openai"
               else {"gguf_file": gguf_file, "device": device, "batch_size": batch_size})
    backend = chat_backend(generator, model, **options)
    path = run_expansion(qs, backend, out_dir, settings, exemplars=exemplars, source=queries)
    out.print(stats_markdown(expansion_stats(path)))
    out.print(f"expansions: {path}")
