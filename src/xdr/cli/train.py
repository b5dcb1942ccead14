"""Training commands: `mine` hard negatives, `synthesize` pairs, `train` a dual encoder, `train-generator`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from xdr.cli.options import (
    BaseUrlOpt,
    BatchOpt,
    ConcurrencyOpt,
    DeviceOpt,
    DTypeOpt,
    ExemplarsOpt,
    GenBatchOpt,
    GeneratorOpt,
    GenModelOpt,
    GgufOpt,
    ModelOpt,
    NormalizeOpt,
    PLenOpt,
    PoolingOpt,
    PPrefixOpt,
    QLenOpt,
    QPrefixOpt,
    in_range,
    model_spec,
    out,
)
from xdr.langs import XQUAD_R_DEV_LANGS, parse_langs

app = typer.Typer()

PushOpt = Annotated[str | None, typer.Option(
    help="then upload the model to this Hugging Face Hub repo (OWNER/NAME) with a model card; token from "
    "HF_TOKEN or `hf auth login`, endpoint from HF_ENDPOINT")]


@app.command(
    "mine",
    epilog="Example: xdr mine xor_train.jsonl --lang ar --corpus psgs.tsv --model me5-small --out train.jsonl\n\n"
    "Example (BM25): xdr mine nq-train.json --corpus psgs.tsv --method bm25 --out nq-bm25.jsonl",
)
def mine_cmd(
    train: Annotated[Path, typer.Argument(help="queries with positives (DPR, Tevatron, SWIM-IR, SQuAD)")],
    corpus: Annotated[Path, typer.Option(help="passages to mine from")],
    out_path: Annotated[Path, typer.Option("--out", help="Tevatron JSONL (+ .meta.json)")],
    method: Annotated[str, typer.Option(help="dense (current model through FAISS) or bm25")] = "dense",
    model: ModelOpt = "me5-small",
    lang: Annotated[str | None, typer.Option(help="question language, for files that do not record it")] = None,
    index_dir: Annotated[Path | None, typer.Option("--index", help="existing index of --corpus")] = None,
    work_dir: Annotated[Path | None, typer.Option(help="keep the corpus embeddings/index here")] = None,
    depth: Annotated[int, typer.Option(callback=in_range(1), help="top results examined per query")] = 100,
    n_negatives: Annotated[int, typer.Option(callback=in_range(1), help="negatives kept per query")] = 30,
    skip_top: Annotated[int, typer.Option(callback=in_range(0), help="skip this many top non-positive results")] = 0,
    margin: Annotated[float | None, typer.Option(
        callback=in_range(0.0), help="drop negatives scoring within this of the positive")] = None,
    relative_margin: Annotated[float | None, typer.Option(
        callback=in_range(0.0, 1.0, hi_open=True), help="the same, relative to the positive")] = None,
    answer_check: Annotated[bool, typer.Option(help="drop negatives containing an answer")] = True,
    seed: Annotated[int, typer.Option()] = 42,
    batch_size: BatchOpt = 128,
    device: DeviceOpt = None,
) -> None:
    """Mine hard negatives, filtering false negatives by answer string and score margin."""
    from xdr.data import read_training
    from xdr.train.mine import MiningSettings, mine_hard_negatives

    encoder = None
    if method == "dense":
        from xdr.models.encoder import Encoder

        encoder = Encoder.load(model_spec(model), device=device)
    path = mine_hard_negatives(
        read_training(train, lang=lang or "en"), corpus, out_path,
        MiningSettings(
            method=method, depth=depth, n_negatives=n_negatives, skip_top=skip_top, margin=margin,
            relative_margin=relative_margin, answer_check=answer_check, seed=seed, batch_size=batch_size,
        ),
        encoder=encoder, index=index_dir, work_dir=work_dir, source=train, progress=True,
    )
    out.print(f"mined: {path}")


@app.command(
    "synthesize",
    epilog="Example: xdr synthesize corpus.jsonl --langs ja,te --sample-size 1000 --generator openai "
    "--model qwen2.5 --out swim.jsonl",
)
def synthesize_cmd(
    corpus: Annotated[Path, typer.Argument(help="English passages")],
    out_path: Annotated[Path, typer.Option("--out", help="SWIM-IR JSONL pairs (+ .meta.json)")],
    langs: Annotated[str, typer.Option(help="query languages")],
    sample_size: Annotated[int, typer.Option(callback=in_range(1), help="passages sampled per language")],
    strata: Annotated[str, typer.Option(help="length, title or none")] = "length",
    seed: Annotated[int, typer.Option()] = 42,
    work_dir: Annotated[Path | None, typer.Option(help="resumable generation artifacts")] = None,
    generator: GeneratorOpt = "seq2seq",
    model: GenModelOpt = None,
    batch_size: GenBatchOpt = 32,
    base_url: BaseUrlOpt = "http://127.0.0.1:8000/v1",
    concurrency: ConcurrencyOpt = 8,
    gguf_file: GgufOpt = None,
    exemplars: ExemplarsOpt = None,
    device: DeviceOpt = None,
) -> None:
    """SWIM-IR-style synthetic training pairs: one generated query per sampled passage and language."""
    codes = parse_langs(langs)
    from xdr.data import read_passages
    from xdr.generate import make_generator
    from xdr.train.synth import synthesize_pairs

    gen = make_generator(
        generator, model=model, base_url=base_url, concurrency=concurrency, gguf_file=gguf_file,
        exemplars=exemplars, batch_size=batch_size, device=device,
    )
    path = synthesize_pairs(
        read_passages(corpus), gen, out_path, langs=codes, sample_size=sample_size, seed=seed,
        strata=strata, work_dir=work_dir, source=corpus,
    )
    out.print(f"pairs: {path}")


@app.command(
    "train",
    epilog="Example (the xQG paper's xDR): xdr train --model bert-base-multilingual-cased --train ar:xor-train.json "
    "--negatives 7 --batch-size 128 --lr 1e-5 --epochs 40 --similarity dot --scale 1 --out runs/xdr\n\n"
    "Example (e5): xdr train --model me5-small --train de:xquad-train.json --dev-xquad-r ../shared/data/xquad-r "
    "--max-steps 200 --out runs/me5-ft",
)
def train_cmd(
    out_dir: Annotated[Path, typer.Option("--out", help="writes model/ (sentence-transformers layout) and meta.json")],
    train: Annotated[list[str], typer.Option(help="[LANG:]PATH of DPR, Tevatron, SWIM-IR or SQuAD data, repeatable")],
    model: ModelOpt = "me5-small",
    negatives: Annotated[int, typer.Option(
        callback=in_range(0), help="hard negatives per query (passages = 1 + N)")] = 1,
    loss: Annotated[str, typer.Option(help="mnrl, or cached-mnrl (GradCache: large batches, small memory)")] = "mnrl",
    mini_batch_size: Annotated[int, typer.Option(callback=in_range(1), help="cached-mnrl chunk size")] = 32,
    similarity: Annotated[str | None, typer.Option(help="dot or cos (default: cos if normalised)")] = None,
    scale: Annotated[float | None, typer.Option(
        callback=in_range(0.0, lo_open=True), help="1/temperature (default: 20 for cos, 1 for dot)")] = None,
    gather_across_devices: Annotated[bool, typer.Option(help="in-batch negatives from every GPU")] = False,
    epochs: Annotated[float, typer.Option(callback=in_range(0.0, lo_open=True), )] = 1.0,
    max_steps: Annotated[int | None, typer.Option(callback=in_range(1), )] = None,
    lr: Annotated[float, typer.Option(callback=in_range(0.0, lo_open=True), )] = 1e-5,
    warmup_steps: Annotated[int, typer.Option(callback=in_range(0), )] = 0,
    batch_size: Annotated[int, typer.Option(callback=in_range(1), help="queries per device and step")] = 32,
    grad_accum: Annotated[int, typer.Option(callback=in_range(1), )] = 1,
    seed: Annotated[int, typer.Option()] = 42,
    save_steps: Annotated[int, typer.Option(callback=in_range(1), help="checkpoint interval (resume point)")] = 500,
    dev_xquad_r: Annotated[Path | None, typer.Option(help="XQuAD-R dir: MRR@10 on its queries while training")] = None,
    dev_langs: Annotated[str, typer.Option(help="XQuAD-R languages for the dev set")] = ",".join(XQUAD_R_DEV_LANGS),
    pooling: PoolingOpt = None,
    normalize: NormalizeOpt = None,
    query_prefix: QPrefixOpt = None,
    passage_prefix: PPrefixOpt = None,
    query_max_length: QLenOpt = None,
    passage_max_length: PLenOpt = None,
    dtype: DTypeOpt = None,
    device: DeviceOpt = None,
    torch_compile: Annotated[bool, typer.Option("--compile/--no-compile", help="torch.compile (GPU speed)")] = False,
    attention: Annotated[str, typer.Option(help="sdpa, eager or flash_attention_2 (needs flash-attn)")] = "sdpa",
    fused_adamw: Annotated[bool, typer.Option(help="AdamW in one fused kernel (CUDA)")] = True,
    push_to_hub: PushOpt = None,
) -> None:
    """Fine-tune a dual encoder with contrastive InfoNCE over in-batch and hard negatives; resumes after a kill."""
    dev_codes = parse_langs(dev_langs, "--dev-langs")
    _check_push(push_to_hub)
    from xdr.train.args import DualTrainingConfig
    from xdr.train.dual import EvalSet, train_dual_encoder
    from xdr.train.sources import TrainingSource

    spec = model_spec(
        model, pooling=pooling, normalize=normalize, query_prefix=query_prefix, passage_prefix=passage_prefix,
        query_max_length=query_max_length, passage_max_length=passage_max_length, dtype=dtype,
    )
    eval_set = None
    if dev_xquad_r is not None:
        from xdr.data.squad import read_xquad_r

        eval_set = EvalSet.from_xquad_r(read_xquad_r(dev_xquad_r, dev_codes), spec.title_separator)
    path = train_dual_encoder(
        [TrainingSource.parse(t) for t in train], spec, out_dir,
        DualTrainingConfig(
            negatives_per_query=negatives, loss=loss, mini_batch_size=mini_batch_size, similarity=similarity,
            scale=scale, gather_across_devices=gather_across_devices, epochs=epochs, max_steps=max_steps, lr=lr,
            warmup_steps=warmup_steps, batch_size=batch_size, grad_accum=grad_accum, seed=seed, dtype=spec.dtype,
            device=device, torch_compile=torch_compile, attention=attention, fused_adamw=fused_adamw,
            save_steps=save_steps,
        ),
        eval_set=eval_set,
    )
    out.print(f"model: {path}")
    _push(path, push_to_hub)


@app.command(
    "train-generator",
    epilog="Example: xdr train-generator --model google/mt5-base --train de:../shared/data/xquad-r/de.json "
    "--train swim-ir.jsonl --max-steps 2000 --out runs/qgen",
)
def train_generator_cmd(
    out_dir: Annotated[Path, typer.Option("--out", help="writes model/ (the trained generator) and meta.json")],
    train: Annotated[list[str], typer.Option(help="[LANG:]PATH, repeatable; LANG for SQuAD/DPR files")],
    model: Annotated[str, typer.Option("--model", "-m", help="seq2seq checkpoint to fine-tune")] = "google/mt5-base",
    eval_fraction: Annotated[float, typer.Option(
        callback=in_range(0.0, 1.0, hi_open=True), help="passages held out for eval loss")] = 0.0,
    epochs: Annotated[float, typer.Option(callback=in_range(0.0, lo_open=True), )] = 3.0,
    max_steps: Annotated[int | None, typer.Option(callback=in_range(1), help="stop after this many steps")] = None,
    lr: Annotated[float, typer.Option(callback=in_range(0.0, lo_open=True), )] = 1e-4,
    batch_size: Annotated[int, typer.Option(callback=in_range(1), )] = 8,
    grad_accum: Annotated[int, typer.Option(callback=in_range(1), )] = 1,
    seed: Annotated[int, typer.Option()] = 42,
    save_steps: Annotated[int, typer.Option(callback=in_range(1), help="checkpoint interval (resume point)")] = 500,
    dtype: DTypeOpt = None,
    device: DeviceOpt = None,
    push_to_hub: PushOpt = None,
) -> None:
    """Fine-tune a seq2seq query generator on (passage, question, language) triples; resumes after a kill."""
    _check_push(push_to_hub)
    from xdr.train.args import GeneratorTrainingConfig
    from xdr.train.generator import train_generator
    from xdr.train.sources import TrainingSource

    path = train_generator(
        [TrainingSource.parse(t) for t in train], model, out_dir,
        GeneratorTrainingConfig(
            epochs=epochs, max_steps=max_steps, lr=lr, batch_size=batch_size, grad_accum=grad_accum, seed=seed,
            save_steps=save_steps, eval_fraction=eval_fraction, dtype=dtype or "auto", device=device,
        ),
    )
    out.print(f"generator: {path}")
    _push(path, push_to_hub)


def _check_push(repo: str | None) -> None:
    """A bad repository name or a missing token is refused before training, not hours after it."""
    if repo is not None:
        from xdr.models.hub import check_repo_id, hub_token

        check_repo_id(repo)
        hub_token()


def _push(model_dir: Path, repo: str | None) -> None:
    # Under torchrun every rank runs this command; the first one, which saved the model, pushes it.
    if repo is not None and os.environ.get("RANK", "0") == "0":
        from xdr.models.hub import push_model

        out.print(f"pushed: {push_model(model_dir, repo)}", soft_wrap=True)
