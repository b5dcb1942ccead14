"""Index commands: `maxsim-store` for generated-query vectors, `index` for a FAISS index over passages."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from xdr.cli.options import EngineOpt, RayAddressOpt, WorkersOpt, engine_settings, in_range, out
from xdr.config import DEFAULT_BETA

app = typer.Typer()


@app.command(
    "maxsim-store",
    epilog="Example: xdr encode runs/gen --kind generated --out runs/gen-emb && "
    "xdr maxsim-store runs/gen-emb --dtype int8 --out runs/gen-store",
)
def maxsim_store_cmd(
    embeddings: Annotated[Path, typer.Argument(help="generated queries encoded by `xdr encode --kind generated`")],
    out_dir: Annotated[Path, typer.Option("--out", help="store directory (resumable)")],
    dtype: Annotated[str, typer.Option(help="float16, int8 (per-vector scale) or pq")] = "float16",
    pq_m: Annotated[int | None, typer.Option(callback=in_range(1), help="PQ bytes per vector (default dim/8)")] = None,
    engine: EngineOpt = "local",
    ray_address: RayAddressOpt = None,
    workers: WorkersOpt = None,
) -> None:
    """Compress generated-query vectors into a memory-mapped store for max-sim re-ranking."""
    settings = engine_settings(engine, ray_address, workers)
    from xdr.maxsim import build_vector_store, vector_store_info

    path = build_vector_store(embeddings, out_dir, dtype=dtype, pq_m=pq_m, engine=settings)
    info = vector_store_info(path)
    out.print(f"store: {path} ({info['passages']} passages, {info['vectors']} vectors, "
              f"{info['duplicates_dropped']} duplicates dropped, {info['bytes_per_vector']} bytes/vector)")


@app.command(
    "index",
    epilog="Example: xdr index runs/emb --out runs/idx --factory IVF4096,PQ64\n\n"
    "Example (18M passages, 4 shards): xdr index runs/emb --out runs/idx --factory IVF65536,PQ64 --shards 4\n\n"
    "Example (graph): xdr index runs/emb --out runs/idx-hnsw --factory HNSW32 --ef-construction 200\n\n"
    "Example (multi-vector): xdr index runs/emb --with-generated runs/gen-store --out runs/idx-mv",
)
def index_cmd(
    embeddings: Annotated[Path, typer.Argument(help="directory written by `xdr encode`")],
    out_dir: Annotated[Path, typer.Option("--out", help="index directory")],
    factory: Annotated[str, typer.Option(help="FAISS factory: Flat (exact), HNSW32, IVF4096,PQ64")] = "Flat",
    gpu: Annotated[bool, typer.Option("--gpu/--no-gpu", help="build on the GPU when FAISS has one")] = True,
    with_generated: Annotated[Path | None, typer.Option(
        help="a `xdr maxsim-store`: index its vectors too, grouped back into passages")] = None,
    beta: Annotated[float, typer.Option(callback=in_range(0.0),
        help="multi-vector score: s + beta * max over generated queries")] = DEFAULT_BETA,
    shards: Annotated[int, typer.Option(callback=in_range(1),
        help="FAISS indexes over contiguous row ranges, built one at a time (resumable) and searched as one")] = 1,
    train_sample: Annotated[int | None, typer.Option(callback=in_range(1),
        help="rows to train IVF/PQ on (default: 64 per IVF list, at least 39, up to ~1M)")] = None,
    ef_construction: Annotated[int | None, typer.Option(callback=in_range(1),
        help="HNSW build beam (FAISS default 40; more is slower to build, higher recall)")] = None,
) -> None:
    """Build a FAISS inner-product index over encoded passages (and their generated queries), streaming
    the embedding store shard by shard."""
    from xdr.index import build_index

    path = build_index(embeddings, out_dir, factory=factory, use_gpu=gpu, generated=with_generated, beta=beta,
                       shards=shards, train_sample=train_sample, ef_construction=ef_construction)
    out.print(f"index: {path}")
