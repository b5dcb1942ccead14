"""Fine-tune a seq2seq model into an xQG question generator (``xdr train-generator``).

Training pairs are (passage, question, language). The model input is :func:`seq2seq_prompt`, the very
text :class:`~xdr.generate.seq2seq.Seq2SeqGenerator` feeds it at inference, so the trained model is asked
exactly what it learned to answer; the target is the question. Pairs come from any training file xdr
reads (XOR-TyDi gold paragraphs and XQuAD in SQuAD format, SWIM-IR, DPR, Tevatron) or from in-memory
:class:`TrainingExample` iterables.

The artifact directory holds ``meta.json`` (stage, sources with fingerprints, hyper-parameters, seed),
``checkpoints/`` while training (HF Trainer checkpoints with optimizer, scheduler and RNG states, so a
killed run resumes exactly where its last checkpoint left off), then ``model/`` (weights and tokenizer,
which ``Seq2SeqGenerator(model=...)`` loads) and ``_DONE``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch.utils.data import Dataset
from transformers import (
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    DataCollatorForSeq2Seq,
    PreTrainedTokenizerBase,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    TrainerCallback,
)
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from xdr.artifacts import DONE, META, input_fingerprint, is_done, mark_done, start_artifact, update_meta
from xdr.config import DType
from xdr.data import detect_format, read_training
from xdr.data.schema import Passage, TrainingExample
from xdr.errors import XdrError
from xdr.generate.hf import resolve_device, resolve_dtype
from xdr.generate.seq2seq import FP16_PROBLEM, PROMPT, seq2seq_prompt
from xdr.langs import normalize_lang

log = logging.getLogger(__name__)

STAGE = "train-generator"
MODEL_DIR = "model"
CHECKPOINTS_DIR = "checkpoints"
TRAINER_STATE = "trainer_state.json"  # the Trainer's name; it writes this file last in a checkpoint
# Formats whose rows need not say what language their questions are in. A default there would, e.g.,
# pair "Generate a English question" with Japanese targets, so the language must be given.
UNLABELLED_FORMATS = ("squad", "dpr", "tevatron")


class Source(NamedTuple):
    """A training file: ``format`` as :func:`xdr.data.read_training` names it (``None``: detect), and
    ``lang`` the question language, required for SQuAD, DPR and Tevatron, refused for SWIM-IR (whose
    rows record it)."""

    path: str | Path
    format: str | None = None
    lang: str | None = None


SourceLike = Source | tuple[str | Path, str | None, str | None] | Iterable[TrainingExample]


class QuestionPair(NamedTuple):
    """One training example of the generator: ask for ``question`` given ``passage`` and ``lang``."""

    passage: Passage
    question: str
    lang: str


def _is_file(source: SourceLike) -> bool:
    return isinstance(source, tuple) and bool(source) and isinstance(source[0], str | os.PathLike)


def read_source(source: SourceLike) -> tuple[list[QuestionPair], dict[str, Any]]:
    """The question pairs of one source, and its provenance record for ``meta.json``.

    Each example yields its first positive only: in DPR and Tevatron files that is the gold passage,
    while later positives are often retrieved passages that merely contain the answer, about which the
    question was not written.
    """
    examples: Iterable[TrainingExample]
    if _is_file(source):
        path, fmt, lang = Source(*source)
        if not Path(path).exists():
            raise XdrError(f"{path}: no such file")
        fmt = fmt or detect_format(path)
        if fmt == "swimir" and lang is not None:
            raise XdrError(f"{path}: SWIM-IR rows record their own language; give no language for this file")
        if fmt in UNLABELLED_FORMATS and lang is None:
            raise XdrError(f"{path}: {fmt} files do not record the question language; give one (e.g. 'ja')")
        examples = read_training(path, fmt, lang=lang or "en")  # "en" only for SWIM-IR, which ignores it
        record: dict[str, Any] = {
            **input_fingerprint(path), "format": fmt, "lang": normalize_lang(lang) if lang else None
        }
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


def _step(checkpoint: Path) -> int:
    return int(checkpoint.name.removeprefix(f"{PREFIX_CHECKPOINT_DIR}-"))


def _trainer_state(checkpoint: Path) -> dict[str, Any]:
    return json.loads((checkpoint / TRAINER_STATE).read_text(encoding="utf-8"))


def last_checkpoint(directory: Path) -> Path | None:
    """The newest checkpoint the Trainer finished writing; incomplete ones are removed.

    The Trainer writes ``trainer_state.json`` last, and not atomically, so a kill during a save leaves a
    directory that ``transformers.trainer_utils.get_last_checkpoint`` would still pick, and resuming from
    it would fail or load torn weights. Without a parseable state file a checkpoint is not complete.
    """
    complete = []
    for d in directory.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        if not d.name.removeprefix(f"{PREFIX_CHECKPOINT_DIR}-").isdigit():
            continue
        try:
            _trainer_state(d)
        except (OSError, ValueError):
            log.warning("removing %s: a kill interrupted its save", d)
            shutil.rmtree(d)
            continue
        complete.append(d)
    return max(complete, key=_step, default=None)


def _require_positive(**values: float | None) -> None:
    """Refuse a non-positive setting here, with its xdr name, rather than deep inside the Trainer."""
    for name, value in values.items():
        if value is not None and value <= 0:
            raise XdrError(f"{name} must be positive, not {value}")


def _clear(out: Path) -> None:
    """Remove what an earlier run of this stage left in ``out`` (and nothing else a user put there)."""
    for name in (CHECKPOINTS_DIR, MODEL_DIR, f".{MODEL_DIR}.tmp"):
        shutil.rmtree(out / name, ignore_errors=True)
    for name in (META, DONE):
        (out / name).unlink(missing_ok=True)


def train_generator(
    sources: Sequence[SourceLike],
    model: str,
    out_dir: str | Path,
    *,
    revision: str | None = None,
    epochs: float = 3.0,
    max_steps: int | None = None,
    lr: float = 1e-4,
    batch_size: int = 8,
    grad_accum: int = 1,
    max_input_length: int = 512,
    max_target_length: int = 64,
    seed: int = 42,
    dtype: DType = "auto",
    device: str | None = None,
    eval_sources: Sequence[SourceLike] = (),
    eval_fraction: float = 0.0,
    save_steps: int = 500,
    keep_checkpoints: int = 2,
    logging_steps: int = 50,
    resume: bool = True,
    callbacks: Sequence[TrainerCallback] = (),
) -> Path:
    """Fine-tune the seq2seq ``model`` (hub id or local directory) on ``sources``; return the model dir.

    ``max_steps`` overrides ``epochs``. ``dtype``: ``auto`` trains with bf16 autocast on a GPU that has it
    and in fp32 elsewhere; ``float16`` is refused (mT5 overflows). Weights are always loaded in fp32, as
    mixed precision needs fp32 master weights whatever dtype a checkpoint was stored in. ``device``
    ``cpu`` forces CPU training; otherwise the Trainer uses the GPU if there is one.

    The eval set is ``eval_sources`` or, with ``eval_fraction``, the share of passages :func:`held_out`
    picks; eval loss is logged every ``save_steps`` and at the end. A rerun with the same settings resumes
    from the last complete checkpoint (a finished one returns at once); other settings are refused, and
    ``resume=False`` discards the earlier run instead. Checkpoints are deleted once ``model/`` and
    ``_DONE`` are written: they hold optimizer states (about 3x the weights) and nothing resumes from them.
    ``callbacks`` are passed to the Trainer.
    """
    _require_positive(
        epochs=epochs, max_steps=max_steps, lr=lr, batch_size=batch_size, grad_accum=grad_accum,
        max_input_length=max_input_length, max_target_length=max_target_length, save_steps=save_steps,
        keep_checkpoints=keep_checkpoints, logging_steps=logging_steps,
    )
    if not 0.0 <= eval_fraction < 1.0:
        raise XdrError(f"eval_fraction must be in [0, 1), not {eval_fraction}")
    if eval_fraction and eval_sources:
        raise XdrError("give either eval sources or an eval fraction, not both")
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device, fp16_problem=FP16_PROBLEM)
    out = Path(out_dir)
    args = Seq2SeqTrainingArguments(
        output_dir=str(out / CHECKPOINTS_DIR),
        num_train_epochs=epochs,
        max_steps=max_steps or -1,
        learning_rate=lr,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size,
        gradient_accumulation_steps=grad_accum,
        seed=seed,
        data_seed=seed,
        bf16=torch_dtype == torch.bfloat16,
        use_cpu=torch_device.type == "cpu",
        dataloader_pin_memory=torch_device.type == "cuda",
        save_strategy="steps",
        save_steps=save_steps,
        save_total_limit=keep_checkpoints,
        eval_strategy="steps" if eval_sources or eval_fraction else "no",
        eval_steps=save_steps,
        logging_steps=logging_steps,
        report_to="none",
    )
    if args.mixed_precision == "fp16":  # set by ACCELERATE_MIXED_PRECISION, which the Trainer honours
        raise XdrError(f"float16 is not supported: {FP16_PROBLEM}; unset ACCELERATE_MIXED_PRECISION")

    train_pairs, train_records = read_sources(sources)
    eval_pairs, eval_records = read_sources(eval_sources)
    if eval_fraction:
        eval_pairs = [p for p in train_pairs if held_out(p.passage, eval_fraction)]
        train_pairs = [p for p in train_pairs if not held_out(p.passage, eval_fraction)]
        if not eval_pairs:
            raise XdrError(f"eval_fraction {eval_fraction} holds out no passage; raise it or give eval data")
    if eval_sources and not eval_pairs:
        raise XdrError("the eval sources hold no question with a passage")
    if not train_pairs:
        raise XdrError("no training pairs: the sources hold no question with a passage")

    if not resume:
        _clear(out)
    params = {
        "model": model,
        "revision": revision,
        "model_fingerprint": input_fingerprint(model) if Path(model).is_dir() else None,
        "prompt": PROMPT,
        "sources": train_records,
        "eval_sources": eval_records,
        "eval_fraction": eval_fraction,
        "train_pairs": len(train_pairs),
        "eval_pairs": len(eval_pairs),
        "data_sha256": _data_digest([*train_pairs, *eval_pairs]),
        "epochs": epochs,
        "max_steps": max_steps,
        "lr": lr,
        "batch_size": batch_size,
        "grad_accum": grad_accum,
        "max_input_length": max_input_length,
        "max_target_length": max_target_length,
        "seed": seed,
        "dtype": str(torch_dtype).removeprefix("torch."),
    }
    start_artifact(out, STAGE, params)
    model_dir = out / MODEL_DIR
    if is_done(out):
        log.info("%s: already trained", out)
        return model_dir

    checkpoint = last_checkpoint(out / CHECKPOINTS_DIR)
    state = _trainer_state(checkpoint) if checkpoint else {}
    # Resumed from its final checkpoint, the Trainer would take one more step (it tests for the end only
    # after a step), so a run killed after that checkpoint just takes its weights.
    finished = bool(state) and state["global_step"] >= state["max_steps"]
    try:
        tokenizer = AutoTokenizer.from_pretrained(model, revision=revision)
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
        return QuestionGenerationDataset(
            pairs, tokenizer, max_input_length=max_input_length, max_target_length=max_target_length
        )

    trainer = Seq2SeqTrainer(
        model=network,
        args=args,
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=network),
        train_dataset=dataset(train_pairs),
        eval_dataset=dataset(eval_pairs) if eval_pairs else None,
        processing_class=tokenizer,
        callbacks=list(callbacks),
    )
    if finished:
        log.info("%s is the final checkpoint: saving its weights", checkpoint)
        outcome: dict[str, Any] = {"global_step": state["global_step"]}
    else:
        if checkpoint is not None:
            log.info("resuming from %s", checkpoint)
        result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        outcome = {"global_step": result.global_step, "train_loss": result.training_loss}
    if eval_pairs:
        outcome["eval_loss"] = trainer.evaluate()["eval_loss"]

    # Written beside the final name and renamed, so a model/ directory is always a complete one.
    tmp = out / f".{MODEL_DIR}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    trainer.save_model(str(tmp))
    shutil.rmtree(model_dir, ignore_errors=True)  # left by a run killed between this rename and _DONE
    os.replace(tmp, model_dir)
    update_meta(out, result=outcome)
    mark_done(out)
    shutil.rmtree(out / CHECKPOINTS_DIR, ignore_errors=True)
    return model_dir
