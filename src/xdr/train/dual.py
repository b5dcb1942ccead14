"""Train a dual encoder (one shared tower for queries and passages) with in-batch and hard negatives.

Built on sentence-transformers: :class:`SentenceTransformerTrainer` (a transformers ``Trainer``, hence
checkpoints with optimizer, scheduler and RNG states and exact resume), its InfoNCE losses
(``MultipleNegativesRankingLoss``; ``CachedMultipleNegativesRankingLoss``, GradCache, for batches larger
than memory allows) and its ``InformationRetrievalEvaluator`` for MRR@10 on a dev set during training.

Each training example becomes one row ``anchor, positive, negative_1 .. negative_N``: the query, its first
positive (the gold passage in DPR/Tevatron files) and its first ``N`` hard negatives (cycled when a query
has fewer; queries without any are skipped when ``N > 0``). For query ``i`` of a batch of ``B`` the loss
scores ``B·(1+N)`` passages: every positive and hard negative in the batch; with ``gather_across_devices``
those of all devices, ``W·B·(1+N)``. Its target is column ``rank·B + i`` (see ``tests/test_train_ddp.py``).

Scoring follows the model: ``similarity="dot"`` with ``scale=1`` is DPR/Tevatron (τ = 1); ``"cos"`` with
``scale=20`` is E5's τ = 0.05. Cosine needs ``spec.normalize`` (xdr searches by dot product, so a model
trained on cosine must also normalise when it encodes).

Prefixes and lengths come from the :class:`~xdr.config.ModelSpec`: queries get ``query_prefix`` and are
cut at ``query_max_length`` tokens, passages ``passage_prefix`` and ``passage_max_length``, as
:class:`~xdr.models.encoder.Encoder` does at inference.

The artifact directory holds ``meta.json`` (stage ``train``, spec, sources with fingerprints,
hyper-parameters, seed), ``checkpoints/`` while training, then ``model/`` (sentence-transformers layout,
which :func:`xdr.models.registry.resolve_spec` reads: pooling, normalisation, prompts) and ``_DONE``.
Separate query/passage towers (sentence-transformers' ``Router``) are not supported: xdr's ``Encoder``
loads one transformers model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import torch

from xdr.artifacts import input_fingerprint, is_done, start_artifact
from xdr.config import DType, ModelSpec
from xdr.data import detect_format, read_training
from xdr.data.schema import TrainingExample
from xdr.errors import XdrError
from xdr.runtime import resolve_device, resolve_dtype
from xdr.train.checkpoints import (
    MODEL_DIR,
    clear_stage,
    publish_model,
    require_positive,
    resume_point,
    train_or_resume,
    trainer_arguments,
)

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from transformers import TrainerCallback

    from xdr.data.squad import XQuADR

log = logging.getLogger(__name__)

STAGE = "train"
LOSSES = ("mnrl", "cached-mnrl")
SIMILARITIES = ("dot", "cos")
Loss = Literal["mnrl", "cached-mnrl"]
Similarity = Literal["dot", "cos"]


class DualSource(NamedTuple):
    """A training file; ``format`` as :func:`xdr.data.read_training` names it (``None``: detect) and
    ``lang`` the query language for formats that do not record it (only provenance here)."""

    path: str | Path
    format: str | None = None
    lang: str | None = None


SourceLike = DualSource | tuple[str | Path, str | None, str | None] | Iterable[TrainingExample]


@dataclass(frozen=True)
class EvalSet:
    """A dev retrieval task: query id → text, passage id → text (title already joined), query → relevant ids."""

    queries: dict[str, str]
    corpus: dict[str, str]
    qrels: dict[str, set[str]]
    name: str = "dev"

    @classmethod
    def from_xquad_r(cls, data: XQuADR, title_separator: str = " ", name: str = "dev") -> EvalSet:
        """All languages' queries of an XQuAD-R split against its pool (relevance > 0)."""
        queries = {q.id: q.text for qs in data.queries.values() for q in qs}
        corpus = {p.id: p.joined(title_separator) for p in data.corpus}
        qrels = {q: {p for p, rel in ps.items() if rel > 0} for q, ps in data.qrels.items() if q in queries}
        return cls(queries, corpus, {q: ps for q, ps in qrels.items() if ps}, name)

    def digest(self) -> str:
        h = hashlib.sha256()
        for obj in (sorted(self.queries.items()), sorted(self.corpus.items()),
                    sorted((q, sorted(ps)) for q, ps in self.qrels.items())):
            h.update(json.dumps(obj, ensure_ascii=False).encode())
        return h.hexdigest()


class ExampleColumns(NamedTuple):
    """Training rows as columns (``anchor``, ``positive``, ``negative_1`` ..), and how many examples
    were skipped for lack of a positive or of any hard negative."""

    columns: dict[str, list[str]]
    skipped: int


def column_names(negatives_per_query: int) -> list[str]:
    return ["anchor", "positive", *(f"negative_{k}" for k in range(1, negatives_per_query + 1))]


def build_columns(
    examples: Iterable[TrainingExample], negatives_per_query: int, title_separator: str = " "
) -> ExampleColumns:
    """One row per example: query, first positive, first ``negatives_per_query`` negatives (cycled)."""
    names = column_names(negatives_per_query)
    columns: dict[str, list[str]] = {n: [] for n in names}
    skipped = 0
    for ex in examples:
        if not ex.positives or (negatives_per_query and not ex.negatives):
            skipped += 1
            continue
        columns["anchor"].append(ex.query.text)
        columns["positive"].append(ex.positives[0].joined(title_separator))
        for k in range(negatives_per_query):
            neg = ex.negatives[k % len(ex.negatives)]
            columns[f"negative_{k + 1}"].append(neg.joined(title_separator))
    return ExampleColumns(columns, skipped)


def _read_sources(
    sources: Sequence[SourceLike], negatives_per_query: int, title_separator: str
) -> tuple[ExampleColumns, list[dict[str, Any]]]:
    merged: dict[str, list[str]] = {n: [] for n in column_names(negatives_per_query)}
    skipped = 0
    records: list[dict[str, Any]] = []
    for source in sources:
        if isinstance(source, tuple) and source and isinstance(source[0], str | os.PathLike):
            path, fmt, lang = DualSource(*source)
            if not Path(path).exists():
                raise XdrError(f"{path}: no such file")
            fmt = fmt or detect_format(path)
            examples: Iterable[TrainingExample] = read_training(path, fmt, lang=lang or "en")
            record: dict[str, Any] = {**input_fingerprint(path), "format": fmt, "lang": lang}
        else:
            examples, record = source, {"path": None}
        columns, skip = build_columns(examples, negatives_per_query, title_separator)
        for name, values in columns.items():
            merged[name].extend(values)
        skipped += skip
        record.update(rows=len(columns["anchor"]), skipped=skip)
        records.append(record)
    return ExampleColumns(merged, skipped), records


def _columns_digest(columns: dict[str, list[str]]) -> str:
    h = hashlib.sha256()
    for row in zip(*columns.values(), strict=True):
        h.update(json.dumps(row, ensure_ascii=False).encode())
    return h.hexdigest()


def similarity_function(similarity: Similarity) -> Any:
    from sentence_transformers.util import cos_sim, dot_score

    if similarity not in SIMILARITIES:
        raise XdrError(f"similarity must be one of {', '.join(SIMILARITIES)}, not {similarity!r}")
    return dot_score if similarity == "dot" else cos_sim


def make_loss(
    model: SentenceTransformer,
    *,
    loss: Loss = "mnrl",
    similarity: Similarity = "dot",
    scale: float = 1.0,
    mini_batch_size: int = 32,
    gather_across_devices: bool = False,
) -> torch.nn.Module:
    """InfoNCE over in-batch and hard negatives: ``-log softmax(scale · sim(q_i, ·))[positive_i]``.

    ``cached-mnrl`` computes the same loss and gradients with GradCache, embedding ``mini_batch_size``
    texts at a time, so memory no longer grows with the batch (gradient accumulation would not do: it
    splits the softmax, and with it the negatives each query sees).
    """
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MultipleNegativesRankingLoss,
    )

    fn = similarity_function(similarity)
    if scale <= 0:
        raise XdrError(f"scale must be positive, not {scale}")
    if loss == "mnrl":
        return MultipleNegativesRankingLoss(
            model, scale=scale, similarity_fct=fn, gather_across_devices=gather_across_devices
        )
    if loss == "cached-mnrl":
        if mini_batch_size <= 0:
            raise XdrError(f"mini_batch_size must be positive, not {mini_batch_size}")
        return CachedMultipleNegativesRankingLoss(
            model, scale=scale, similarity_fct=fn, mini_batch_size=mini_batch_size,
            gather_across_devices=gather_across_devices,
        )
    raise XdrError(f"loss must be one of {', '.join(LOSSES)}, not {loss!r}")


def build_sentence_transformer(
    spec: ModelSpec, device: str | None = None, *, checkpoint: str | Path | None = None
) -> SentenceTransformer:
    """A sentence-transformers model that embeds as ``spec`` says (pooling, normalisation, prompts).

    Weights come from ``spec.path`` in fp32 (mixed precision needs fp32 master weights), or from a
    sentence-transformers ``checkpoint`` of an earlier run.
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    prompts = {"query": spec.query_prefix, "passage": spec.passage_prefix}
    similarity_fn_name = "cosine" if spec.normalize else "dot"
    if checkpoint is not None:
        model = SentenceTransformer(str(checkpoint), device=device, model_kwargs={"dtype": torch.float32})
    else:
        try:
            transformer = Transformer(spec.path, max_seq_length=spec.passage_max_length,
                                      model_kwargs={"dtype": torch.float32})
        except (OSError, ValueError) as e:
            raise XdrError(f"cannot load {spec.path!r} as a transformers encoder: {str(e)[:300]}") from e
        pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode=spec.pooling)
        modules = [transformer, pooling, *([Normalize()] if spec.normalize else [])]
        model = SentenceTransformer(modules=modules, device=device)
    model.prompts = prompts
    model.similarity_fn_name = similarity_fn_name
    model.max_seq_length = spec.passage_max_length
    return model


def _collator(model: SentenceTransformer, spec: ModelSpec, names: Sequence[str]) -> Any:
    """Tokenise each column with its own prefix and max length (queries vs passages)."""
    from sentence_transformers.sentence_transformer.data_collator import SentenceTransformerDataCollator

    @dataclass
    class ColumnCollator(SentenceTransformerDataCollator):
        column_prompts: dict[str, str] = field(default_factory=dict)
        column_max_length: dict[str, int] = field(default_factory=dict)

        def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
            batch: dict[str, Any] = {}
            for name in features[0]:
                pre = self.preprocess_fn(
                    [row[name] for row in features],
                    prompt=self.column_prompts.get(name) or None,
                    max_length=self.column_max_length[name],
                )
                for key, value in pre.items():
                    batch[f"{name}_{key}"] = value
            return batch

    prompts = {n: spec.query_prefix if n == "anchor" else spec.passage_prefix for n in names}
    lengths = {n: spec.query_max_length if n == "anchor" else spec.passage_max_length for n in names}
    return ColumnCollator(preprocess_fn=model.preprocess, column_prompts=prompts, column_max_length=lengths)


_ST_SIMILARITY = {"dot": "dot", "cos": "cosine"}  # sentence-transformers' SimilarityFunction names


def _evaluator(eval_set: EvalSet, spec: ModelSpec, similarity: Similarity, batch_size: int) -> Any:
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    name = _ST_SIMILARITY[similarity]
    return InformationRetrievalEvaluator(
        eval_set.queries, eval_set.corpus, eval_set.qrels, name=eval_set.name,
        query_prompt=spec.query_prefix or None, corpus_prompt=spec.passage_prefix or None,
        score_functions={name: similarity_function(similarity)}, main_score_function=name,
        mrr_at_k=[10], ndcg_at_k=[10], accuracy_at_k=[1, 5, 20], precision_recall_at_k=[20, 100],
        map_at_k=[100], batch_size=batch_size, write_csv=False,
    )


def mrr_key(eval_set: EvalSet, similarity: Similarity) -> str:
    """The Trainer's metric name for the dev MRR@10."""
    return f"eval_{eval_set.name}_{_ST_SIMILARITY[similarity]}_mrr@10"


def train_dual_encoder(
    sources: Sequence[SourceLike],
    spec: ModelSpec,
    out_dir: str | Path,
    *,
    negatives_per_query: int = 1,
    loss: Loss = "mnrl",
    similarity: Similarity | None = None,
    scale: float | None = None,
    mini_batch_size: int = 32,
    gather_across_devices: bool = False,
    epochs: float = 1.0,
    max_steps: int | None = None,
    lr: float = 1e-5,
    warmup_steps: int = 0,
    weight_decay: float = 0.0,
    batch_size: int = 32,
    grad_accum: int = 1,
    seed: int = 42,
    dtype: DType = "auto",
    device: str | None = None,
    torch_compile: bool = False,
    eval_set: EvalSet | None = None,
    eval_steps: int | None = None,
    save_steps: int = 500,
    keep_checkpoints: int = 2,
    logging_steps: int = 50,
    resume: bool = True,
    callbacks: Sequence[TrainerCallback] = (),
) -> Path:
    """Fine-tune ``spec``'s model on ``sources`` (files or in-memory examples); return the model dir.

    ``similarity`` defaults to ``cos`` for normalising specs, else ``dot``; ``scale`` (1/τ) to 20 for cos,
    1 for dot. ``batch_size`` is per device: each query sees ``batch_size · (1 + negatives_per_query)``
    passages, times the device count with ``gather_across_devices``. ``grad_accum`` does not add
    negatives (each micro-batch has its own softmax); for big batches use ``loss="cached-mnrl"`` with a
    small ``mini_batch_size``. ``max_steps`` overrides ``epochs``. ``dtype`` ``auto``: bf16 autocast on a
    GPU that has it, fp32 elsewhere. ``torch_compile`` runs the model through ``torch.compile`` (the Trainer's
    ``torch_compile``): fused kernels for the throughput the MFU benchmark asks of a GPU; it changes no
    setting of the run, so a run may resume with or without it. With ``eval_set``, MRR@10 (and more) is computed every
    ``eval_steps`` (default ``save_steps``) and at the end.

    A rerun with the same settings resumes from the last complete checkpoint (a finished run returns at
    once); other settings are refused, and ``resume=False`` discards the earlier run instead.
    """
    if importlib.util.find_spec("datasets") is None:
        raise XdrError("training needs the `datasets` package: pip install 'sentence-transformers[train]'")
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments


    require_positive(epochs=epochs, max_steps=max_steps, lr=lr, batch_size=batch_size, grad_accum=grad_accum,
                      save_steps=save_steps, keep_checkpoints=keep_checkpoints, logging_steps=logging_steps,
                      eval_steps=eval_steps, mini_batch_size=mini_batch_size)
    if negatives_per_query < 0:
        raise XdrError(f"negatives_per_query must be 0 or more, not {negatives_per_query}")
    similarity = similarity or ("cos" if spec.normalize else "dot")
    similarity_function(similarity)  # validates
    if similarity == "cos" and not spec.normalize:
        raise XdrError("similarity 'cos' needs a normalising model (xdr retrieves by dot product); "
                       "use similarity 'dot' or set normalize")
    scale = scale if scale is not None else (20.0 if similarity == "cos" else 1.0)
    require_positive(scale=scale)
    if loss not in LOSSES:
        raise XdrError(f"loss must be one of {', '.join(LOSSES)}, not {loss!r}")
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device, fp16_problem="fp16 contrastive training is not supported")

    cols, records = _read_sources(sources, negatives_per_query, spec.title_separator)
    n_rows = len(cols.columns["anchor"])
    if not n_rows:
        raise XdrError("no training examples: the sources hold no query with a positive"
                       + (" and a hard negative" if negatives_per_query else ""))
    if cols.skipped:
        log.warning("skipped %d examples without a positive%s", cols.skipped,
                    " or without hard negatives" if negatives_per_query else "")

    out = Path(out_dir)
    if not resume:
        clear_stage(out)
    params = {
        "spec": spec.model_dump(),
        "sources": records,
        "rows": n_rows,
        "skipped": cols.skipped,
        "data_sha256": _columns_digest(cols.columns),
        "eval_set": {"name": eval_set.name, "queries": len(eval_set.queries), "corpus": len(eval_set.corpus),
                     "sha256": eval_set.digest()} if eval_set else None,
        "negatives_per_query": negatives_per_query,
        "loss": loss,
        "mini_batch_size": mini_batch_size if loss == "cached-mnrl" else None,
        "similarity": similarity,
        "scale": scale,
        "gather_across_devices": gather_across_devices,
        "epochs": epochs,
        "max_steps": max_steps,
        "lr": lr,
        "warmup_steps": warmup_steps,
        "weight_decay": weight_decay,
        "batch_size": batch_size,
        "grad_accum": grad_accum,
        "seed": seed,
        "dtype": str(torch_dtype).removeprefix("torch."),
    }
    start_artifact(out, STAGE, params)
    model_dir = out / MODEL_DIR
    if is_done(out):
        log.info("%s: already trained", out)
        return model_dir

    args = trainer_arguments(
        SentenceTransformerTrainingArguments, out, epochs=epochs, max_steps=max_steps, lr=lr,
        batch_size=batch_size, grad_accum=grad_accum, seed=seed, dtype=torch_dtype, device=torch_device,
        save_steps=save_steps, keep_checkpoints=keep_checkpoints, evaluate=eval_set is not None,
        eval_steps=eval_steps, logging_steps=logging_steps, fp16_problem="contrastive training needs bf16 or fp32",
        warmup_steps=warmup_steps, weight_decay=weight_decay, torch_compile=torch_compile,
        dataloader_drop_last=gather_across_devices,  # all_gather needs equal batches on every device
    )

    checkpoint, state, finished = resume_point(out)
    torch.manual_seed(seed)  # any randomly initialised module (none for BERT-like towers) is seeded too
    model = build_sentence_transformer(spec, device=str(torch_device), checkpoint=checkpoint if finished else None)

    from datasets import Dataset

    names = list(cols.columns)
    train_dataset = Dataset.from_dict(cols.columns)
    evaluator = _evaluator(eval_set, spec, similarity, batch_size) if eval_set else None
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        loss=make_loss(model, loss=loss, similarity=similarity, scale=scale, mini_batch_size=mini_batch_size,
                       gather_across_devices=gather_across_devices),
        evaluator=evaluator,
        data_collator=_collator(model, spec, names),
        callbacks=list(callbacks),
    )
    outcome = train_or_resume(trainer, checkpoint, state, finished)
    if evaluator is not None:
        metrics = evaluator(model)
        outcome["eval"] = {k: float(v) for k, v in metrics.items()}

    if trainer.is_world_process_zero():  # other ranks of a distributed run hold the same weights
        publish_model(
            out, lambda tmp: model.save_pretrained(str(tmp)),
            lambda d: {"result": outcome, "model_spec": trained_spec(d, spec).model_dump()},
        )
    return model_dir


def trained_spec(model_dir: str | Path, start: ModelSpec) -> ModelSpec:
    """The spec of a trained model: read from its files, with the start spec's lengths and separator."""
    from xdr.models.registry import resolve_spec

    return resolve_spec(str(model_dir), query_max_length=start.query_max_length,
                        passage_max_length=start.passage_max_length, title_separator=start.title_separator)
