"""`xdr serve`: a search service and web page over an index (FastAPI on uvicorn, or Ray Serve replicas)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from xdr.cli.options import DeviceOpt, in_range
from xdr.errors import XdrError

app = typer.Typer()


@app.command(
    "serve",
    epilog="Example: xdr serve runs/demo/index --corpus examples/demo/corpus.jsonl --port 8000\n\n"
    "Example (2 Ray Serve replicas): xdr serve runs/idx --corpus corpus.jsonl --engine ray --replicas 2",
)
def serve_cmd(
    index_dir: Annotated[Path, typer.Argument(help="directory written by `xdr index` (plain, fused or multi-vector)")],
    corpus: Annotated[Path, typer.Option(help="the corpus the index was built from (texts of the hits)")],
    store: Annotated[Path | None, typer.Option(help="a `xdr maxsim-store` for max-sim re-ranking")] = None,
    generated: Annotated[Path | None, typer.Option(help="a generate artifact, to explain hits")] = None,
    texts_cache: Annotated[Path | None, typer.Option(
        help="directory of the corpus's text store, built on first start (default: <xdr cache>/texts)")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="default: the index's model")] = None,
    device: DeviceOpt = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(callback=in_range(0, 65535), help="port to listen on")] = 8000,
    max_batch: Annotated[int, typer.Option(callback=in_range(1), help="most questions per encoder call")] = 32,
    max_wait_ms: Annotated[float, typer.Option(
        callback=in_range(0.0), help="longest wait for more questions after the first")] = 5.0,
    max_queue: Annotated[int, typer.Option(
        callback=in_range(1), help="waiting questions beyond which requests get 429")] = 256,
    max_k: Annotated[int, typer.Option(callback=in_range(1), help="largest k a request may ask for")] = 100,
    nprobe: Annotated[int | None, typer.Option(callback=in_range(1), help="default IVF lists probed")] = None,
    ef_search: Annotated[int | None, typer.Option(callback=in_range(1), help="default HNSW beam width")] = None,
    engine: Annotated[str, typer.Option(help="uvicorn (one process) or ray (Ray Serve replicas)")] = "uvicorn",
    replicas: Annotated[int, typer.Option(callback=in_range(1), help="Ray Serve replicas (--engine ray)")] = 1,
) -> None:
    """Serve an index over HTTP: GET/POST /search, /passages/{id}, /metrics, /docs and a search page at /."""
    from xdr.serve import BatchSettings, ServeSettings

    if engine not in ("uvicorn", "ray"):
        raise XdrError(f"--engine: choose uvicorn or ray, not {engine!r}")
    if replicas > 1 and engine != "ray":
        raise XdrError("--replicas needs --engine ray")
    settings = ServeSettings(
        index=index_dir, corpus=corpus, texts_cache=texts_cache, store=store, generated=generated, model=model,
        device=device, nprobe=nprobe, ef_search=ef_search, max_k=max_k,
        batch=BatchSettings(max_batch=max_batch, max_wait_ms=max_wait_ms, max_queue=max_queue),
    )
    if engine == "ray":
        from xdr.serve import run_ray

        run_ray(settings, replicas, host, port)
    else:
        from xdr.serve import run_uvicorn

        run_uvicorn(settings, host, port)
