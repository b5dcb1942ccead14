"""`xdr encode`: passages, queries or generated queries into sharded embeddings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from xdr.cli.options import (
    BatchOpt,
    DeviceOpt,
    DTypeOpt,
    EngineOpt,
    FieldsOpt,
    LangOpt,
    ModelOpt,
    NormalizeOpt,
    PLenOpt,
    PoolingOpt,
    PPrefixOpt,
    QLenOpt,
    QPrefixOpt,
    RayAddressOpt,
    ThreadsOpt,
    WorkersOpt,
    engine_settings,
    in_range,
    model_spec,
    out,
    parse_fields,
)
from xdr.errors import XdrError

app = typer.Typer()


@app.command(
    "encode", epilog="Example: xdr encode corpus.jsonl --model me5-small --passage-max-length 256 --out emb\n\n"
    "Example (a Ray cluster, docs/scale.md): xdr encode corpus.parquet --out /shared/emb --engine ray "
    "--ray-address HEAD:6379"
)
def encode_cmd(
    source: Annotated[Path, typer.Argument(help="corpus (or queries with --kind query)")],
    out_dir: Annotated[Path, typer.Option("--out", help="embedding directory (resumable)")],
    model: ModelOpt = "me5-small",
    kind: Annotated[str, typer.Option(help="passage, query, or generated (a `xdr generate` dir)")] = "passage",
    fmt: Annotated[str | None, typer.Option("--format", help="input format (default: detect)")] = None,
    fields: FieldsOpt = None,
    lang: LangOpt = None,
    shard_size: Annotated[int, typer.Option(callback=in_range(1), help="rows per output shard")] = 100_000,
    batch_size: BatchOpt = 64,
    device: DeviceOpt = None,
    pooling: PoolingOpt = None,
    normalize: NormalizeOpt = None,
    query_prefix: QPrefixOpt = None,
    passage_prefix: PPrefixOpt = None,
    query_max_length: QLenOpt = None,
    passage_max_length: PLenOpt = None,
    dtype: DTypeOpt = None,
    engine: EngineOpt = "local",
    ray_address: RayAddressOpt = None,
    workers: WorkersOpt = None,
    threads: ThreadsOpt = None,
    tokenizer_workers: Annotated[int | None, typer.Option(callback=in_range(0), help=(
        "processes tokenising ahead of the model (default: on a GPU, all cores but two, at most 8; "
        "none on a CPU, whose cores the model needs)"))] = None,
) -> None:
    """Encode a corpus into sharded embeddings; after a kill, run it again to resume."""
    from xdr.data import read_passages, read_queries
    from xdr.encode import EncoderLoader, encode_passages, encode_queries
    from xdr.generate.artifact import GENERATED_QUERY_MAX_LENGTH, generated_as_queries

    spec = model_spec(
        model, pooling=pooling, normalize=normalize, query_prefix=query_prefix, passage_prefix=passage_prefix,
        query_max_length=query_max_length, passage_max_length=passage_max_length, dtype=dtype,
    )
    if kind == "generated" and query_max_length is None:
        spec = spec.model_copy(update={"query_max_length": GENERATED_QUERY_MAX_LENGTH})
    columns = parse_fields(fields)
    if lang is not None and kind != "query":
        raise XdrError("--lang is the language of queries; it goes with --kind query")
    settings = engine_settings(engine, ray_address, workers, threads)
    encoder = EncoderLoader(spec, device, tokenizer_workers)  # loaded once per worker, where it runs
    options = {"shard_size": shard_size, "batch_size": batch_size, "source": source, "engine": settings}
    if kind == "passage":
        path = encode_passages(read_passages(source, format=fmt, fields=columns), encoder, out_dir, **options)
    elif kind == "query":
        queries = read_queries(source, format=fmt, fields=columns, lang=lang)
        path = encode_queries(queries, encoder, out_dir, **options)
    elif kind == "generated":
        path = encode_queries(generated_as_queries(source), encoder, out_dir, **options)
    else:
        raise XdrError(f"--kind must be passage, query or generated, not {kind!r}")
    out.print(f"embeddings: {path}")
