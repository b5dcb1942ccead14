"""`xdr augment`: fold generated queries into passage embeddings (xQG's offline augmentation)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from xdr.cli.options import (
    DeviceOpt,
    EngineOpt,
    RayAddressOpt,
    ThreadsOpt,
    WorkersOpt,
    engine_settings,
    in_range,
    out,
)
from xdr.langs import parse_langs

app = typer.Typer()


@app.command(
    "augment",
    epilog="Example: xdr augment runs/emb runs/gen --out runs/aug && xdr index runs/aug --out runs/idx\n\n"
    "Example (the xQG paper's form): xdr augment runs/emb runs/gen --mode sum --alpha 0.01 --no-renormalize "
    "--out runs/aug-paper",
)
def augment_cmd(
    ctx: typer.Context,
    passages: Annotated[Path, typer.Argument(help="passage embeddings (`xdr encode`)")],
    queries: Annotated[Path, typer.Argument(help="a `xdr generate` dir (encoded on the fly) or its embeddings")],
    out_dir: Annotated[Path, typer.Option("--out", help="augmented embeddings, indexable by `xdr index`")],
    alpha: Annotated[float, typer.Option(
        callback=in_range(0.0, 1.0), help="weight of the generated queries (paper: 0.01 with sum)")] = 0.3,
    mode: Annotated[str, typer.Option(help="mean, or sum (the paper's code; ranks by query count when "
                                           "counts vary)")] = "mean",
    langs: Annotated[str | None, typer.Option(help="fold in only queries in these languages")] = None,
    renormalize: Annotated[bool, typer.Option(help="L2-normalise the fused vectors")] = True,
    device: DeviceOpt = None,
    config: Annotated[Path | None, typer.Option(
        help="settings chosen by `xdr tune` (alpha); an option given here wins")] = None,
    engine: EngineOpt = "local",
    ray_address: RayAddressOpt = None,
    workers: WorkersOpt = None,
    threads: ThreadsOpt = None,
) -> None:
    """Fold generated queries into passage embeddings offline, so query latency does not change."""
    from xdr.cli.tune import config_values

    alpha = config_values(ctx, config, "augment", {"alpha": alpha})["alpha"]
    codes = parse_langs(langs)
    settings = engine_settings(engine, ray_address, workers, threads)
    from xdr.augment import FusionSettings, augment

    fusion = FusionSettings(alpha=alpha, mode=mode, langs=codes, renormalize=renormalize)
    path = augment(passages, queries, out_dir, fusion, device=device, engine=settings)
    out.print(f"augmented embeddings: {path}")
