"""Generator training on a tiny random mT5 built on the fly: inputs, learning, exact resume, sources.

The model is random and tiny, so these tests prove plumbing and that gradients flow, never quality.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoTokenizer,
    DataCollatorForSeq2Seq,
    MT5Config,
    MT5ForConditionalGeneration,
    PreTrainedTokenizerFast,
    TrainerCallback,
)

from xdr.artifacts import is_done, read_meta
from xdr.data.schema import Passage, Query, TrainingExample
from xdr.errors import MismatchError, XdrError
from xdr.generate.seq2seq import Seq2SeqGenerator, seq2seq_prompt
from xdr.train.args import GeneratorTrainingConfig
from xdr.train.checkpoints import last_checkpoint
from xdr.train.generator import (
    QuestionGenerationDataset,
    QuestionPair,
    held_out,
    read_source,
    train_generator,
)
from xdr.train.sources import TrainingSource

PAIRS = [
    QuestionPair(Passage(pid, text, title), question, lang)
    for pid, title, text, question, lang in [
        ("p1", "Lighthouse", "The Pharos of Alexandria was completed in the third century BC.",
         "When was the Pharos finished?", "en"),
        ("p2", "Lake Baikal", "Lake Baikal is the deepest lake on Earth.", "Which lake is deepest?", "ru"),
        ("p3", "", "Honey bees perform the waggle dance.", "What do honey bees perform?", "ja"),
        ("p4", "Sauna", "A traditional smoke sauna has no chimney.", "What has no chimney?", "fi"),
        ("p5", "Waggle dance", "The waggle run tells how far away the food is.", "What does it tell?", "ja"),
        ("p6", "Lighthouse", "The lighthouse stood on the island of Pharos.", "Where did it stand?", "ar"),
    ]
]


def _examples(pairs: list[QuestionPair]) -> list[TrainingExample]:
    return [
        TrainingExample(Query(f"q{i}", p.lang, p.question), (p.passage,)) for i, p in enumerate(pairs)
    ]


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    # Tiny matrices on a busy 2-core machine: extra OpenMP threads only contend.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def mt5_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts = [seq2seq_prompt(p.passage, p.lang) + " " + p.question for p in PAIRS]
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    special = {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"}
    trainer = trainers.UnigramTrainer(vocab_size=200, special_tokens=[*special.values()], unk_token="<unk>")
    tok.train_from_iterator(texts * 3, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, **special)
    config = MT5Config(
        vocab_size=len(tokenizer), d_model=32, d_ff=64, d_kv=16, num_layers=2, num_decoder_layers=2,
        num_heads=2, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,  # as in google/mt5-*
    )
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("mt5")
    MT5ForConditionalGeneration(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _loss(model_dir: Path, pairs: list[QuestionPair]) -> float:
    """Mean loss of the model at ``model_dir`` on ``pairs``, through the training dataset and collator."""
    gen = Seq2SeqGenerator(str(model_dir), device="cpu")
    data = QuestionGenerationDataset(pairs, gen.tokenizer, max_input_length=64, max_target_length=16)
    batch = DataCollatorForSeq2Seq(gen.tokenizer, model=gen.model)([data[i] for i in range(len(data))])
    with torch.no_grad():
        return gen.model(**batch).loss.item()


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(model_dir / "model.safetensors")


FAST: dict[str, Any] = {
    "batch_size": 2, "max_input_length": 64, "max_target_length": 16, "device": "cpu", "logging_steps": 100
}


def _train(
    sources: list[Any], model: Path, out: Path, *, callbacks: Sequence[TrainerCallback] = (), resume: bool = True,
    eval_sources: Sequence[Any] = (), **settings: Any,
) -> Path:
    """``train_generator`` with the FAST settings, overridden by ``settings``."""
    config = GeneratorTrainingConfig(**{**FAST, **settings})
    return train_generator(sources, str(model), out, config, callbacks=callbacks, resume=resume,
                           eval_sources=eval_sources)


def test_inputs_are_the_generator_prompts_and_labels_the_questions(mt5_dir: Path) -> None:
    gen = Seq2SeqGenerator(str(mt5_dir), device="cpu")
    tok = gen.tokenizer
    data = QuestionGenerationDataset(PAIRS, tok, max_input_length=512, max_target_length=64)
    assert len(data) == len(PAIRS)
    for item, pair in zip(data, PAIRS, strict=True):
        prompt = seq2seq_prompt(pair.passage, pair.lang)
        assert item["input_ids"] == tok(prompt)["input_ids"]  # as seeded_generate encodes at inference
        assert item["labels"] == tok(pair.question)["input_ids"]
    assert tok.decode(data[0]["input_ids"]) == (
        "Generate a English question for this passage: Lighthouse "
        "The Pharos of Alexandria was completed in the third century BC."
    )
    assert tok.decode(data[1]["labels"]) == "Which lake is deepest?"

    batch = DataCollatorForSeq2Seq(tok, model=gen.model)([data[0], data[2]])
    assert batch["input_ids"].shape == batch["attention_mask"].shape
    labels = batch["labels"][1]
    assert tok.decode(labels[labels != -100]) == "What do honey bees perform?"  # the loss skips padding
    assert (batch["decoder_input_ids"][:, 0] == tok.pad_token_id).all()  # T5 starts decoding from <pad>

    short = QuestionGenerationDataset(PAIRS, tok, max_input_length=8, max_target_length=3)
    assert all(len(item["input_ids"]) == 8 and len(item["labels"]) == 3 for item in short)


def test_training_reduces_the_loss_and_writes_the_artifact(mt5_dir: Path, tmp_path: Path) -> None:
    pairs = PAIRS[:4]
    before = _loss(mt5_dir, pairs)
    model_dir = _train([_examples(pairs)], mt5_dir, tmp_path / "gen", max_steps=30, lr=1e-2, seed=1, save_steps=100)
    after = _loss(model_dir, pairs)
    # About 21 -> 1 (0.75-1.05 over seeds 1-5). Half the loss of a uniform guess, ln(vocab size), can only
    # be reached by learning the questions, not merely by shrinking the random init's huge logits.
    uniform = math.log(len(AutoTokenizer.from_pretrained(mt5_dir)))
    assert after < 0.5 * uniform < before, (before, after, uniform)

    out = tmp_path / "gen"
    assert model_dir == out / "model" and is_done(out)
    assert not (out / "checkpoints").exists() and not list(out.glob(".*"))
    meta = read_meta(out)
    assert meta["stage"] == "train-generator" and meta["xdr_version"]
    assert meta["params"]["seed"] == 1 and meta["params"]["dtype"] == "float32"
    assert meta["params"]["sources"] == [{"path": None, "pairs": 4}]
    assert meta["result"]["global_step"] == 30
    # The result loads in the generator and generates.
    questions = Seq2SeqGenerator(str(model_dir), device="cpu").generate([PAIRS[0].passage], "ja", 2, seed=0)
    assert len(questions[0]) == 2

    # A finished artifact returns at once; other settings are refused.
    again = _train([_examples(pairs)], mt5_dir, out, max_steps=30, lr=1e-2, seed=1)
    assert again == model_dir  # save_steps is no training setting: changing it is no mismatch
    with pytest.raises(MismatchError, match="lr"):
        _train([_examples(pairs)], mt5_dir, out, max_steps=30, lr=1e-3, seed=1)


class Losses(TrainerCallback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float], **kwargs: Any) -> None:
        if "loss" in logs:
            self.losses.append(logs["loss"])


def test_gradient_accumulation_averages_the_loss(mt5_dir: Path, tmp_path: Path) -> None:
    losses = Losses()
    _train([_examples(PAIRS[:4])], mt5_dir, tmp_path / "gen", max_steps=1, grad_accum=2, lr=1e-9, seed=0,
           callbacks=[losses], logging_steps=1)
    # The first step's loss is the untrained model's (give or take dropout), not grad_accum times it.
    assert losses.losses[0] == pytest.approx(_loss(mt5_dir, PAIRS[:4]), rel=0.2)


class KillAt(TrainerCallback):
    """Raise at the end of step ``step``, or (``None``) after the final checkpoint, like a kill there."""

    def __init__(self, step: int | None) -> None:
        self.step = step

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.step:
            raise RuntimeError("killed")

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        raise RuntimeError("killed")


class Steps(TrainerCallback):
    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.steps.append(state.global_step)


@pytest.mark.parametrize(
    ("kill_at", "resumed_from", "resumed_steps"), [(5, 4, [5, 6, 7, 8]), (None, 8, [])], ids=["mid", "end"]
)
def test_killed_run_resumes_exactly(
    mt5_dir: Path, tmp_path: Path, kill_at: int | None, resumed_from: int, resumed_steps: list[int]
) -> None:
    # 6 pairs in batches of 2: 3 steps an epoch; checkpoints every 2 steps, 8 steps in all. Killed at
    # step 5 (resumes mid-epoch from checkpoint-4) or after the final checkpoint, before the model is saved.
    # The model has dropout, so an exact match also needs the RNG states restored.
    args: dict[str, Any] = {"max_steps": 8, "save_steps": 2, "lr": 1e-3, "seed": 7}
    sources = [_examples(PAIRS)]
    full = _train(sources, mt5_dir, tmp_path / "full", **args)

    out = tmp_path / "resumed"
    with pytest.raises(RuntimeError, match="killed"):
        _train(sources, mt5_dir, out, callbacks=[KillAt(kill_at)], **args)
    assert not is_done(out) and not (out / "model").exists()
    assert last_checkpoint(out / "checkpoints") == out / "checkpoints" / f"checkpoint-{resumed_from}"

    steps = Steps()
    resumed = _train(sources, mt5_dir, out, callbacks=[steps], **args)
    assert steps.steps == resumed_steps  # continued from the checkpoint, not from 0
    a, b = _weights(full), _weights(resumed)
    assert a.keys() == b.keys()
    # Exact on CPU: same kernels in the same order, and the RNG, optimizer and data order are restored.
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert read_meta(out)["result"]["global_step"] == 8


def test_incomplete_checkpoint_is_skipped(tmp_path: Path) -> None:
    good, torn = tmp_path / "checkpoint-2", tmp_path / "checkpoint-4"
    good.mkdir(), torn.mkdir()
    (good / "trainer_state.json").write_text("{}")
    (torn / "trainer_state.json").write_text('{"global_st')  # killed while writing it
    assert last_checkpoint(tmp_path) == good
    assert not torn.exists()


def test_no_resume_starts_over(mt5_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "gen"
    args: dict[str, Any] = {"max_steps": 2, "save_steps": 100, "seed": 3}
    _train([_examples(PAIRS[:2])], mt5_dir, out, lr=1e-3, **args)
    _train([_examples(PAIRS[:2])], mt5_dir, out, lr=2e-3, resume=False, **args)
    assert read_meta(out)["params"]["lr"] == 2e-3 and is_done(out)


def test_fp16_is_refused(mt5_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(XdrError, match="float16"):
        _train([_examples(PAIRS)], mt5_dir, tmp_path / "a", dtype="float16")
    assert not (tmp_path / "a").exists()  # refused before anything was written
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")  # the Trainer would honour it
    with pytest.raises(XdrError, match="float16"):
        _train([_examples(PAIRS)], mt5_dir, tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_empty_data_and_bad_settings_are_refused(mt5_dir: Path, tmp_path: Path) -> None:
    def train(sources: list[Any], **kwargs: Any) -> Path:
        return _train(sources, mt5_dir, tmp_path / "gen", **kwargs)

    with pytest.raises(XdrError, match="no training pairs"):
        train([[]])
    with pytest.raises(XdrError, match="no training pairs"):  # examples without a passage count for nothing
        train([[TrainingExample(Query("q", "en", "Why?"), ())]])
    with pytest.raises(XdrError, match="eval sources hold no question"):
        train([_examples(PAIRS)], eval_sources=[[]])
    with pytest.raises(XdrError, match="lr must be positive"):
        train([_examples(PAIRS)], lr=0.0)
    with pytest.raises(XdrError, match="not both"):
        train([_examples(PAIRS)], eval_sources=[_examples(PAIRS)], eval_fraction=0.1)
    assert not (tmp_path / "gen").exists()


def test_eval_split_keeps_a_passage_on_one_side(mt5_dir: Path, tmp_path: Path) -> None:
    passages = [Passage(f"d{i}", f"Passage number {i} about bees.", "Bees") for i in range(40)]
    share = [held_out(p, 0.25) for p in passages]
    assert 0 < sum(share) < len(passages)
    again = Passage("other-id", passages[0].text, passages[0].title)
    assert held_out(again, 0.25) == share[0]  # by content: the same paragraph from another file agrees

    pairs = [QuestionPair(p, f"What is passage {i} about?", "de") for i, p in enumerate(passages[:8])]
    _train([_examples(pairs)], mt5_dir, tmp_path / "gen", max_steps=2, eval_fraction=0.3, save_steps=100)
    meta = read_meta(tmp_path / "gen")
    n_eval = sum(held_out(p.passage, 0.3) for p in pairs)
    assert meta["params"]["eval_pairs"] == n_eval and meta["params"]["train_pairs"] == 8 - n_eval
    assert meta["result"]["eval_loss"] > 0


XQUAD = {
    "version": "1.1",
    "data": [
        {
            "title": "Sauna_(Finnland)",
            "paragraphs": [
                {
                    "context": "Eine Rauchsauna hat keinen Schornstein.",
                    "qas": [
                        {"id": "q1", "question": "Hat eine Rauchsauna einen Schornstein?",
                         "answers": [{"text": "keinen", "answer_start": 20}]},
                        {"id": "q2", "question": "Was fehlt einer Rauchsauna?",
                         "answers": [{"text": "Schornstein", "answer_start": 27}]},
                    ],
                },
                {
                    "context": "Die Sauna ist heiß.",
                    "qas": [{"id": "q3", "question": "Wie ist die Sauna?",
                             "answers": [{"text": "heiß", "answer_start": 14}]}],
                },
            ],
        }
    ],
}


def test_squad_source_gives_triples_in_the_given_language(tmp_path: Path) -> None:
    path = tmp_path / "xquad.de.json"
    path.write_text(json.dumps(XQUAD, ensure_ascii=False), encoding="utf-8")
    pairs, record = read_source(TrainingSource(path, lang="de"))
    sauna = Passage("000-00", "Eine Rauchsauna hat keinen Schornstein.", "Sauna (Finnland)")
    assert pairs == [
        QuestionPair(sauna, "Hat eine Rauchsauna einen Schornstein?", "de"),
        QuestionPair(sauna, "Was fehlt einer Rauchsauna?", "de"),
        QuestionPair(Passage("000-01", "Die Sauna ist heiß.", sauna.title), "Wie ist die Sauna?", "de"),
    ]
    assert seq2seq_prompt(pairs[0].passage, pairs[0].lang) == (
        "Generate a German question for this passage: "
        "Sauna (Finnland) Eine Rauchsauna hat keinen Schornstein."
    )
    assert record["format"] == "squad" and record["lang"] == "de" and record["pairs"] == 3
    assert record["path"] == str(path) and record["bytes"] == path.stat().st_size
    # XOR-TyDi gold paragraphs are SQuAD files too: the language is the user's to give, never guessed.
    with pytest.raises(XdrError, match="question language"):
        read_source(TrainingSource(path, format="squad"))


def test_swimir_source_takes_the_language_from_the_rows(tmp_path: Path) -> None:
    path = tmp_path / "swim.jsonl"
    rows = [
        {"_id": "w1", "code": "ja", "lang": "Japanese", "query": "サウナ?", "title": "Sauna", "text": "Hot."},
        {"_id": "w2", "code": "te", "lang": "Telugu", "query": "తేనెటీగ?", "title": "Bee", "text": "Bzz."},
    ]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    pairs, record = read_source(TrainingSource(path))
    got = [(p.passage.id, p.passage.title, p.question, p.lang) for p in pairs]
    assert got == [("w1", "Sauna", "サウナ?", "ja"), ("w2", "Bee", "తేనెటీగ?", "te")]
    assert record["format"] == "swimir" and record["lang"] is None
    with pytest.raises(XdrError, match="own language"):
        read_source(TrainingSource(path, lang="ja"))
