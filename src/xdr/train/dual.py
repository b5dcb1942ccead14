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

Settings come as one :class:`~xdr.train.args.DualTrainingConfig`. The artifact directory holds
``meta.json`` (stage ``train``, spec, sources with fingerprints, the config as the run used it),
``checkpoints/`` while training, then ``model/`` (sentence-transformers layout, which
:func:`xdr.models.registry.resolve_spec` reads: pooling, normalisation, prompts) and ``_DONE``.
Separate query/passage towers (sentence-transformers' ``Router``) are not supported: xdr's ``Encoder``
loads one transformers model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch

from xdr.artifacts import Stage, is_done, start_artifact
from xdr.config import ModelSpec
from xdr.data.schema import TrainingExample
from xdr.errors import XdrError
from xdr.models.registry import resolve_spec
from xdr.runtime import resolve_device, resolve_dtype
from xdr.train.args import Attention, DualTrainingConfig, Loss, Similarity, trainer_arguments
from xdr.train.checkpoints import CHECKPOINTS_DIR, MODEL_DIR, clear_stage, publish_model, resume_point, train_or_resume
from xdr.train.sources import TrainingSource

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from transformers import TrainerCallback

    from xdr.data.squad import XQuADR

log = logging.getLogger(__name__)

# A training file (its language only provenance here), or training examples in memory.
SourceLike = TrainingSource | Iterable[TrainingExample]


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
        examples: Iterable[TrainingExample]
        if isinstance(source, TrainingSource):
            file = source.detected()
            examples, record = file.examples(), file.record()
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


def _choice(kind: type[Loss] | type[Similarity], name: str, value: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise XdrError(f"{name} must be one of {', '.join(k.value for k in kind)}, not {value!r}") from None


def similarity_function(similarity: Similarity | str) -> Any:
    from sentence_transformers.util import cos_sim, dot_score

    return dot_score if _choice(Similarity, "similarity", similarity) == Similarity.DOT else cos_sim


def make_loss(
    model: SentenceTransformer,
    *,
    loss: Loss | str = Loss.MNRL,
    similarity: Similarity | str = Similarity.DOT,
    scale: float = 1.0,
    mini_batch_size: int | None = None,
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
    if _choice(Loss, "loss", loss) == Loss.MNRL:
        return MultipleNegativesRankingLoss(
            model, scale=scale, similarity_fct=fn, gather_across_devices=gather_across_devices
        )
    if mini_batch_size is None or mini_batch_size <= 0:
        raise XdrError(f"cached-mnrl needs a positive mini_batch_size, not {mini_batch_size}")
    return CachedMultipleNegativesRankingLoss(
        model, scale=scale, similarity_fct=fn, mini_batch_size=mini_batch_size,
        gather_across_devices=gather_across_devices,
    )


def _attention_kwargs(attention: Attention | str) -> dict[str, Any]:
    """transformers' ``attn_implementation`` for ``attention``; flash-attn is checked here, before loading."""
    attention = _choice(Attention, "attention", attention)
    if attention == Attention.FLASH_ATTENTION_2 and importlib.util.find_spec("flash_attn") is None:
        raise XdrError("attention flash_attention_2 needs the flash-attn package (pip install flash-attn) and "
                       "a CUDA GPU; use attention sdpa")
    return {"attn_implementation": attention.value}


def build_sentence_transformer(
    spec: ModelSpec, device: str | None = None, *, checkpoint: str | Path | None = None,
    attention: Attention | str = Attention.SDPA,
) -> SentenceTransformer:
    """A sentence-transformers model that embeds as ``spec`` says (pooling, normalisation, prompts).

    Weights come from ``spec.path`` in fp32 (mixed precision needs fp32 master weights), or from a
    sentence-transformers ``checkpoint`` of an earlier run. ``attention`` picks the attention kernels
    (:class:`~xdr.train.args.Attention`).
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    prompts = {"query": spec.query_prefix, "passage": spec.passage_prefix}
    similarity_fn_name = "cosine" if spec.normalize else "dot"
    model_kwargs = {"dtype": torch.float32, **_attention_kwargs(attention)}
    if checkpoint is not None:
        model = SentenceTransformer(str(checkpoint), device=device, model_kwargs=model_kwargs)
    else:
        try:
            transformer = Transformer(spec.path, max_seq_length=spec.passage_max_length, model_kwargs=model_kwargs)
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


# sentence-transformers' SimilarityFunction names
_ST_SIMILARITY = {Similarity.DOT: "dot", Similarity.COS: "cosine"}


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


def train_dual_encoder(
    sources: Sequence[SourceLike],
    spec: ModelSpec,
    out_dir: str | Path,
    config: DualTrainingConfig | None = None,
    *,
    eval_set: EvalSet | None = None,
    resume: bool = True,
    callbacks: Sequence[TrainerCallback] = (),
) -> Path:
    """Fine-tune ``spec``'s model on ``sources`` (files or in-memory examples) with ``config`` (default:
    :class:`DualTrainingConfig`'s defaults); return the model dir.

    With ``eval_set``, MRR@10 (and more) is computed every ``config.eval_steps`` (default ``save_steps``)
    and at the end. A rerun with the same settings resumes from the last complete checkpoint (a finished
    run returns at once); other settings are refused, and ``resume=False`` discards the earlier run
    instead. ``callbacks`` are passed to the Trainer.
    """
    if importlib.util.find_spec("datasets") is None:
        raise XdrError("training needs the `datasets` package: pip install 'sentence-transformers[train]'")
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    config = (config or DualTrainingConfig()).for_spec(spec)
    torch_device = resolve_device(config.device)
    torch_dtype = resolve_dtype(config.dtype, torch_device, fp16_problem="fp16 contrastive training is not supported")

    cols, records = _read_sources(sources, config.negatives_per_query, spec.title_separator)
    n_rows = len(cols.columns["anchor"])
    if not n_rows:
        raise XdrError("no training examples: the sources hold no query with a positive"
                       + (" and a hard negative" if config.negatives_per_query else ""))
    if cols.skipped:
        log.warning("skipped %d examples without a positive%s", cols.skipped,
                    " or without hard negatives" if config.negatives_per_query else "")

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
        **config.recorded(torch_dtype),
    }
    start_artifact(out, Stage.TRAIN, params)
    model_dir = out / MODEL_DIR
    if is_done(out):
        log.info("%s: already trained", out)
        return model_dir

    args = trainer_arguments(
        SentenceTransformerTrainingArguments, config, out / CHECKPOINTS_DIR, device=torch_device,
        dtype=torch_dtype, evaluate=eval_set is not None, fp16_problem="contrastive training needs bf16 or fp32",
    )

    checkpoint, state, finished = resume_point(out)
    torch.manual_seed(config.seed)  # any randomly initialised module (none for BERT-like towers) is seeded too
    model = build_sentence_transformer(spec, device=str(torch_device), checkpoint=checkpoint if finished else None,
                                       attention=config.attention)

    from datasets import Dataset

    names = list(cols.columns)
    train_dataset = Dataset.from_dict(cols.columns)
    evaluator = _evaluator(eval_set, spec, config.similarity, config.batch_size) if eval_set else None
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        loss=make_loss(model, loss=config.loss, similarity=config.similarity, scale=config.scale,
                       mini_batch_size=config.mini_batch_size, gather_across_devices=config.gather_across_devices),
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
    return resolve_spec(str(model_dir), query_max_length=start.query_max_length,
                        passage_max_length=start.passage_max_length, title_separator=start.title_separator)
