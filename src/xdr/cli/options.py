"""What the command modules share: option definitions, the model-spec helper, small parsers, the console."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from xdr.errors import XdrError

if TYPE_CHECKING:
    from xdr.config import ModelSpec

out = Console()

# Model settings shared by `encode`, `search` and `train`; None means "the model's registry default".
ModelOpt = Annotated[str, typer.Option("--model", "-m", help="registry name, HF hub id or local directory")]
PoolingOpt = Annotated[str | None, typer.Option(help="cls or mean")]
NormalizeOpt = Annotated[bool | None, typer.Option("--normalize/--no-normalize", help="L2-normalise")]
QPrefixOpt = Annotated[str | None, typer.Option(help="text put before every query")]
PPrefixOpt = Annotated[str | None, typer.Option(help="text put before every passage")]
QLenOpt = Annotated[int | None, typer.Option(help="query max tokens")]
PLenOpt = Annotated[int | None, typer.Option(help="passage max tokens")]
DTypeOpt = Annotated[str | None, typer.Option(help="auto (fp32 on CPU, bf16 on GPU), float32, bfloat16")]
DeviceOpt = Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 (default: cuda if available)")]
BatchOpt = Annotated[int, typer.Option(help="token budget per forward pass, in full-length texts")]

# Generator options shared by `generate run` and `synthesize` (see xdr.generate.make_generator).
GeneratorOpt = Annotated[str, typer.Option(help="seq2seq (mT5, HF), ct2 (mT5, CTranslate2), openai, hf-llm")]
GenModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="checkpoint or served model")]
BaseUrlOpt = Annotated[str, typer.Option(help="OpenAI-compatible endpoint")]
ConcurrencyOpt = Annotated[int, typer.Option(help="parallel requests (openai)")]
GgufOpt = Annotated[str | None, typer.Option(help="GGUF file inside --model (hf-llm)")]
ExemplarsOpt = Annotated[Path | None, typer.Option(help="few-shot exemplars YAML (LLM generators)")]

# Input options shared by `encode`, `search` and `evaluate` (see xdr.data.read_passages / read_queries).
FieldsOpt = Annotated[str | None, typer.Option(
    "--fields", help="the file's column names, e.g. id=_id,text=contents,title=title (default: detected)")]
LangOpt = Annotated[str | None, typer.Option(
    "--lang", help="language of queries without one (default: detected per query, with a warning; und: none)")]


def model_spec(model: str, **overrides: object) -> ModelSpec:
    """The model's spec with the options the user gave (None: not given) in place of its defaults."""
    from xdr.models.registry import resolve_spec

    return resolve_spec(model, **{k: v for k, v in overrides.items() if v is not None})


def parse_fields(spec: str | None, option: str = "--fields") -> dict[str, str] | None:
    """``id=_id,text=contents`` as a mapping from xdr's field names to the file's; None when not given."""
    if spec is None:
        return None
    fields: dict[str, str] = {}
    for part in spec.split(","):
        if not part.strip():
            continue
        name, sep, column = part.partition("=")
        if not sep or not name.strip() or not column.strip():
            raise XdrError(f"{option}: expected name=column pairs such as id=_id,text=contents, got {part!r}")
        fields[name.strip()] = column.strip()
    if not fields:
        raise XdrError(f"{option}: no name=column pairs in {spec!r}")
    return fields


def parse_ints(csv: str, what: str) -> list[int]:
    try:
        return [int(x) for x in csv.split(",") if x.strip()]
    except ValueError as e:
        raise XdrError(f"{what}: expected comma-separated integers, got {csv!r}") from e
