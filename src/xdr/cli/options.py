"""What the command modules share: option definitions, the model-spec helper, small parsers, the console."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from xdr.errors import XdrError

if TYPE_CHECKING:
    from xdr.config import ModelSpec
    from xdr.engine import EngineSettings

out = Console()

# Model settings shared by `encode`, `search` and `train`; None means "the model's registry default".
ModelOpt = Annotated[str, typer.Option("--model", "-m", help="registry name, HF hub id or local directory")]
PoolingOpt = Annotated[str | None, typer.Option(help="cls or mean")]
NormalizeOpt = Annotated[bool | None, typer.Option("--normalize/--no-normalize", help="L2-normalise")]
QPrefixOpt = Annotated[str | None, typer.Option(help="text put before every query")]
PPrefixOpt = Annotated[str | None, typer.Option(help="text put before every passage")]
def in_range(
    lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False
) -> Callable[[float | None], float | None]:
    """An option callback refusing NaN, infinities and values outside the range, before any work is done:
    ``--beta nan`` once wrote NaN scores and ``--batch-size 0`` was accepted."""

    def check(value: float | None) -> float | None:
        if value is None:
            return value
        if not math.isfinite(value):
            raise typer.BadParameter(f"must be a finite number, not {value}")
        low = lo is not None and (value < lo or (lo_open and value == lo))
        high = hi is not None and (value > hi or (hi_open and value == hi))
        if low or high:
            left, right = "(" if lo_open else "[", ")" if hi_open else "]"
            span = f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"
            raise typer.BadParameter(f"must be in {span}, not {value}")
        return value

    return check


MIN_TOKENS = 2  # a length of 1 leaves no room for a word beside the model's special tokens
QLenOpt = Annotated[int | None, typer.Option(help="query max tokens", callback=in_range(MIN_TOKENS))]
PLenOpt = Annotated[int | None, typer.Option(help="passage max tokens", callback=in_range(MIN_TOKENS))]
DTypeOpt = Annotated[str | None, typer.Option(help="auto (fp32 on CPU, bf16 on GPU), float32, bfloat16")]
DeviceOpt = Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 (default: cuda if available)")]
BatchOpt = Annotated[int, typer.Option(help="token budget per forward pass, in full-length texts",
                                       callback=in_range(1))]

# Generator options shared by `generate run` and `synthesize` (see xdr.generate.make_generator).
GenBatchOpt = Annotated[int, typer.Option(callback=in_range(1), help="passages per forward pass (local models)")]
GeneratorOpt = Annotated[str, typer.Option(help="seq2seq (mT5, HF), ct2 (mT5, CTranslate2), openai, hf-llm")]
GenModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="checkpoint or served model")]
BaseUrlOpt = Annotated[str, typer.Option(help="OpenAI-compatible endpoint")]
ConcurrencyOpt = Annotated[int, typer.Option(
    help="parallel requests (openai), each on its own prompt: a prompt's samples go one after another, so a "
    "server's prompt cache serves them", callback=in_range(1))]
RequestTimeoutOpt = Annotated[float, typer.Option(
    "--timeout", help="seconds one request may take (openai); a CPU server needs minutes",
    callback=in_range(0.0, lo_open=True))]
GgufOpt = Annotated[str | None, typer.Option(help="GGUF file inside --model (hf-llm)")]
ExemplarsOpt = Annotated[Path | None, typer.Option(help="few-shot exemplars YAML (LLM generators)")]

# Input options shared by `encode`, `search` and `evaluate` (see xdr.data.read_passages / read_queries).
FieldsOpt = Annotated[str | None, typer.Option(
    "--fields", help="the file's column names, e.g. id=_id,text=contents,title=title (default: detected)")]
LangOpt = Annotated[str | None, typer.Option(
    "--lang", help="language of queries without one (default: detected per query, with a warning; und: none)")]


# Where the long stages (generate run, encode, augment, maxsim-store) run their shards (see xdr.engine).
EngineOpt = Annotated[str, typer.Option(help="local (this process) or ray (workers on a Ray cluster)")]
RayAddressOpt = Annotated[str | None, typer.Option(
    help="Ray cluster address, e.g. 10.0.0.1:6379 (default: $RAY_ADDRESS, else a Ray started on this machine)")]
WorkersOpt = Annotated[int | None, typer.Option(
    callback=in_range(1), help="Ray workers (default: one per GPU, else one per --threads CPUs)")]
ThreadsOpt = Annotated[int | None, typer.Option(
    callback=in_range(1), help="CPU threads per worker (default: local all, ray 1)")]


def engine_settings(
    engine: str, ray_address: str | None, workers: int | None = None, threads: int | None = None
) -> EngineSettings:
    """The engine options as one settings object; Ray-only options without ``--engine ray`` are refused."""
    from xdr.engine import EngineSettings

    if engine not in ("local", "ray"):
        raise XdrError(f"--engine must be local or ray, not {engine!r}")
    if engine == "local" and (ray_address is not None or workers is not None):
        raise XdrError("--ray-address and --workers go with --engine ray")
    return EngineSettings(kind=engine, address=ray_address, workers=workers, threads=threads)


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
