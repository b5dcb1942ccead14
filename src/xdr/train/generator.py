"""Fine-tune a seq2seq model into an xQG question generator (``xdr train-generator``).

Training pairs are (passage, question, language). The model input is :func:`seq2seq_prompt`, the very
text :class:`~xdr.generate.seq2seq.Seq2SeqGenerator` feeds it at inference, so the trained model is asked
exactly what it learned to answer; the target is the question. Pairs come from any training file xdr
reads (XOR-TyDi gold paragraphs and XQuAD in SQuAD format, SWIM-IR, DPR, Tevatron) or from in-memory
:class:`TrainingExample` iterables.

Settings come as one :class:`~xdr.train.args.GeneratorTrainingConfig`. The artifact directory holds
``meta.json`` (stage, sources with fingerprints, the config as the run used it),
``checkpoints/`` while training (HF Trainer checkpoints with optimizer, scheduler and RNG states, so a
killed run resumes exactly where its last checkpoint left off), then ``model/`` (weights and tokenizer,
which ``Seq2SeqGenerator(model=...)`` loads) and ``_DONE``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch.utils.data import Dataset
from transformers import (
    AutoModelForSeq2SeqLM,
    DataCollatorForSeq2Seq,
    PreTrainedTokenizerBase,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    TrainerCallback,
)

from xdr.artifacts import Stage, input_fingerprint, is_done, start_artifact
from xdr.data.schema import Passage, TrainingExample
from xdr.errors import XdrError
from xdr.generate.seq2seq import FP16_PROBLEM, PROMPT, load_tokenizer, seq2seq_prompt
from xdr.runtime import resolve_device, resolve_dtype
from xdr.train.args import GeneratorTrainingConfig, trainer_arguments
from xdr.train.checkpoints import CHECKPOINTS_DIR, MODEL_DIR, clear_stage, publish_model, resume_point, train_or_resume
from xdr.train.sources import TrainingSource

log = logging.getLogger(__name__)

# Formats whose rows need not say what language their questions are in. A default there would, e.g.,
# pair "Generate a English question" with Japanese targets, so the language must be given.
UNLABELLED_FORMATS = ("squad", "dpr", "tevatron")

# A training file (its language required for SQuAD, DPR and Tevatron, refused for SWIM-IR, whose rows
# record it), or training examples in memory.
SourceLike = TrainingSource | Iterable[TrainingExample]


class QuestionPair(NamedTuple):
    """One training example of the generator: ask for ``question`` given ``passage`` and ``lang``."""

    passage: Passage
    question: str
    lang: str


def read_source(source: SourceLike) -> tuple[list[QuestionPair], dict[str, Any]]:
    """The question pairs of one source, and its provenance record for ``meta.json``.

    Each example yields its first positive only: in DPR and Tevatron files that is the gold passage,
    while later positives are often retrieved passages that merely contain the answer, about which the
    question was not written.
    """
    examples: Iterable[TrainingExample]
    if isinstance(source, TrainingSource):
        file = source.detected()
        if file.format == "swimir" and file.lang is not None:
            raise XdrError(f"{file.path}: SWIM-IR rows record their own language; give no language for this file")
        if file.format in UNLABELLED_FORMATS and file.lang is None:
            raise XdrError(f"{file.path}: {file.format} files do not record the question language; "
                           "give one (e.g. 'ja')")
        examples, record = file.examples(), file.record()
    else:
        examples, record = source, {"path": None}
    pairs = [QuestionPair(ex.positives[0], ex.query.text, ex.query.lang) for ex in examples if ex.positives]
    record["pairs"] = len(pairs)
    return pairs, record


def read_sources(sources: Sequence[SourceLike]) -> tuple[list[QuestionPair], list[dict[str, Any]]]:
    """All sources' pairs in order, with one provenance record per source."""
    pairs: list[QuestionPair] = []
    records = []
    for source in sources:
        more, record = read_source(source)
        pairs.extend(more)
        records.append(record)
    return pairs, records


def held_out(passage: Passage, fraction: float) -> bool:
    """Whether ``passage`` falls into the eval share ``fraction``.

    Decided by a hash of the passage text, so every question about one passage lands on the same side
    (eval measures unseen passages, not paraphrases of training ones), and the split is the same for every
    seed and hyper-parameter, which makes eval losses of different runs comparable.
    """
    digest = hashlib.sha256(f"{passage.title}\n{passage.text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def _data_digest(pairs: Iterable[QuestionPair]) -> str:
    """Identity of the training data itself; in-memory sources have no file to fingerprint."""
    h = hashlib.sha256()
    for p in pairs:
        h.update(json.dumps([p.lang, p.passage.title, p.passage.text, p.question]).encode())
    return h.hexdigest()


class QuestionGenerationDataset(Dataset):
    """Prompt -> question examples, tokenized on access.

    Lazy tokenization keeps only the texts in memory and starts training at once whatever the data size;
    a fast tokenizer encodes a batch in far less time than a training step takes. Inputs are encoded
    exactly as :func:`~xdr.generate.hf.seeded_generate` encodes them at inference (special tokens added,
    truncated to ``max_input_length``).
    """

    def __init__(
        self,
        pairs: Sequence[QuestionPair],
        tokenizer: PreTrainedTokenizerBase,
        *,
        max_input_length: int,
        max_target_length: int,
    ) -> None:
        self.pairs, self.tokenizer = pairs, tokenizer
        self.max_input_length, self.max_target_length = max_input_length, max_target_length

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        pair = self.pairs[i]
        prompt = seq2seq_prompt(pair.passage, pair.lang)
        enc = self.tokenizer(prompt, truncation=True, max_length=self.max_input_length)
        target = self.tokenizer(text_target=pair.question, truncation=True, max_length=self.max_target_length)
        labels = target["input_ids"]
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels}


def train_generator(
    sources: Sequence[SourceLike],
    model: str,
    out_dir: str | Path,
    config: GeneratorTrainingConfig | None = None,
    *,
    revision: str | None = None,
    eval_sources: Sequence[SourceLike] = (),
    resume: bool = True,
    callbacks: Sequence[TrainerCallback] = (),
) -> Path:
    """Fine-tune the seq2seq ``model`` (hub id or local directory, at ``revision``) on ``sources`` with
    ``config`` (default: :class:`GeneratorTrainingConfig`'s defaults); return the model dir.

    The eval set is ``eval_sources`` or, with ``config.eval_fraction``, the share of passages
    :func:`held_out` picks; eval loss is logged every ``eval_steps`` (default ``save_steps``) and at the
    end. A rerun with the same settings resumes from the last complete checkpoint (a finished one returns
    at once); other settings are refused, and ``resume=False`` discards the earlier run instead.
    Checkpoints are deleted once ``model/`` and ``_DONE`` are written: they hold optimizer states (about
    3x the weights) and nothing resumes from them. ``callbacks`` are passed to the Trainer.
    """
    config = config or GeneratorTrainingConfig()
    if config.eval_fraction and eval_sources:
        raise XdrError("give either eval sources or an eval fraction, not both")
    torch_device = resolve_device(config.device)
    torch_dtype = resolve_dtype(config.dtype, torch_device, fp16_problem=FP16_PROBLEM)
    out = Path(out_dir)
    args = trainer_arguments(
        Seq2SeqTrainingArguments, config, out / CHECKPOINTS_DIR, device=torch_device, dtype=torch_dtype,
        evaluate=bool(eval_sources or config.eval_fraction), fp16_problem=FP16_PROBLEM,
    )

    train_pairs, train_records = read_sources(sources)
    eval_pairs, eval_records = read_sources(eval_sources)
    if fraction := config.eval_fraction:
        eval_pairs = [p for p in train_pairs if held_out(p.passage, fraction)]
        train_pairs = [p for p in train_pairs if not held_out(p.passage, fraction)]
        if not eval_pairs:
            raise XdrError(f"eval_fraction {fraction} holds out no passage; raise it or give eval data")
    if eval_sources and not eval_pairs:
        raise XdrError("the eval sources hold no question with a passage")
    if not train_pairs:
        raise XdrError("no training pairs: the sources hold no question with a passage")

    if not resume:
        clear_stage(out)
    params = {
        "model": model,
        "revision": revision,
        "model_fingerprint": input_fingerprint(model) if Path(model).is_dir() else None,
        "prompt": PROMPT,
        "sources": train_records,
        "eval_sources": eval_records,
        "train_pairs": len(train_pairs),
        "eval_pairs": len(eval_pairs),
        "data_sha256": _data_digest([*train_pairs, *eval_pairs]),
        **config.recorded(torch_dtype),
    }
    start_artifact(out, Stage.TRAIN_GENERATOR, params)
    model_dir = out / MODEL_DIR
    if is_done(out):
        log.info("%s: already trained", out)
        return model_dir

    checkpoint, state, finished = resume_point(out)
    try:
        tokenizer = load_tokenizer(model, revision)
        network = AutoModelForSeq2SeqLM.from_pretrained(
            checkpoint if finished else model, revision=None if finished else revision, dtype=torch.float32
        )
    except (OSError, ValueError) as e:
        raise XdrError(f"cannot load {model!r} as a seq2seq model: {e}") from e
    # (m)T5's forward takes **kwargs, so the Trainer assumes its loss is already divided by the token
    # count of the whole accumulated batch; it is a per-batch mean, and would be summed over the
    # grad_accum batches: a loss and gradient grad_accum times too large. This makes the Trainer average.
    network.accepts_loss_kwargs = False

    def dataset(pairs: Sequence[QuestionPair]) -> QuestionGenerationDataset:
        return QuestionGenerationDataset(pairs, tokenizer, max_input_length=config.max_input_length,
                                         max_target_length=config.max_target_length)

    trainer = Seq2SeqTrainer(
        model=network,
        args=args,
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=network),
        train_dataset=dataset(train_pairs),
        eval_dataset=dataset(eval_pairs) if eval_pairs else None,
        processing_class=tokenizer,
        callbacks=list(callbacks),
    )
    outcome = train_or_resume(trainer, checkpoint, state, finished)
    if eval_pairs:
        outcome["eval_loss"] = trainer.evaluate()["eval_loss"]

    publish_model(out, lambda tmp: trainer.save_model(str(tmp)), lambda _: {"result": outcome})
    return model_dir
