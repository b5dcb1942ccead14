"""The CTranslate2 generator on a tiny random mT5 built on the fly: conversion, prompts, settings, seeding.

Greedy decoding must give exactly what the HF generator gives (same prompt, same tokens) and every token's
log-probability must match HF's (a greedy check alone misses a rescaled distribution); sampled queries are
compared only for the reproducibility CTranslate2 offers (see ``xdr.generate.ct2``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from test_generate_models import PASSAGES, _rows, _tokenizer
from transformers import MT5Config, MT5ForConditionalGeneration

from xdr.errors import XdrError
from xdr.generate import Sampling, Seq2SeqGenerator, run_generation, seq2seq_prompt

pytest.importorskip("ctranslate2")  # an optional backend: skipped where it is not installed
from xdr.generate.ct2 import CT2Seq2SeqGenerator, converted_dir


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()  # tiny matrices on a busy machine: extra threads only contend
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def mt5_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """test_generate_models' tiny mT5 with its own LM head, like the released mT5 checkpoints.

    transformers 5 ties every MT5's LM head to its embedding (MT5Config overrides ``tie_word_embeddings``);
    a checkpoint holding a different LM head is untied again on loading, as the released ones are.
    """
    tok = _tokenizer()
    config = MT5Config(
        vocab_size=len(tok), d_model=32, d_ff=64, d_kv=16, num_layers=2, num_decoder_layers=2, num_heads=2,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.pad_token_id,
    )
    torch.manual_seed(1)
    model = MT5ForConditionalGeneration(config)
    model.lm_head.weight = torch.nn.Parameter(torch.randn_like(model.lm_head.weight))
    out = tmp_path_factory.mktemp("mt5")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _ct2(mt5_dir: Path, cache: Path, **kwargs: object) -> CT2Seq2SeqGenerator:
    return CT2Seq2SeqGenerator(str(mt5_dir), cache_dir=cache, device="cpu", threads=1, **kwargs)


def test_ct2_greedy_equals_hf(mt5_dir: Path, tmp_path: Path) -> None:
    greedy = Sampling(top_k=1, max_new_tokens=12)
    hf = Seq2SeqGenerator(str(mt5_dir), sampling=greedy).generate(PASSAGES, "ja", 1, seed=0)
    ct2 = _ct2(mt5_dir, tmp_path, sampling=greedy, batch_size=2)
    assert ct2.generate(PASSAGES, "ja", 1, seed=0) == hf
    assert any(q for qs in hf for q in qs)  # not trivially equal because both are empty
    assert (converted_dir(str(mt5_dir), None, tmp_path) / "model.bin").exists()  # converted once, reused


def test_ct2_sampling_settings_and_seeding(mt5_dir: Path, tmp_path: Path) -> None:
    gen = _ct2(mt5_dir, tmp_path)
    out = gen.generate(PASSAGES, "ru", 4, seed=1)
    assert [len(q) for q in out] == [4] * len(PASSAGES)
    assert len(set(out[0])) > 1  # the n samples of one passage differ
    assert gen.config["kind"] == "seq2seq-ct2" and gen.config["compute_type"] == "float32"
    assert gen.config["sampling"]["top_k"] == 10 and gen.config["sampling"]["max_new_tokens"] == 32

    again = _ct2(mt5_dir, tmp_path)  # a fresh generator with the same seed repeats the same calls exactly
    assert again.generate(PASSAGES, "ru", 4, seed=1) == out
    assert gen.generate(PASSAGES, "ru", 4, seed=2) != out  # a new seed starts a freshly seeded translator


def test_ct2_in_a_generation_run(mt5_dir: Path, tmp_path: Path) -> None:
    args = {"langs": ["ja", "fi"], "n": 2, "seed": 3, "shard_size": 2}
    first = _rows(run_generation(PASSAGES, _ct2(mt5_dir, tmp_path / "cache"), tmp_path / "a", **args))
    keys = [(r["docid"], r["lang"], r["k"]) for r in first]
    assert keys == [(p.id, lang, k) for p in PASSAGES for lang in ("ja", "fi") for k in range(2)]
    assert {r["generator"] for r in first} == {str(mt5_dir)}
    # The same calls on a fresh generator (uninterrupted runs both) repeat the same queries.
    assert _rows(run_generation(PASSAGES, _ct2(mt5_dir, tmp_path / "cache"), tmp_path / "b", **args)) == first


def test_ct2_refuses_fp16(mt5_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(XdrError, match="float16"):
        _ct2(mt5_dir, tmp_path, compute_type="float16")


def test_ct2_scores_equal_hf(mt5_dir: Path, tmp_path: Path) -> None:
    """Teacher-forced log-probabilities match HF's: the same distribution is sampled, not only its argmax."""
    gen = _ct2(mt5_dir, tmp_path)
    tok = gen.tokenizer
    source = tok([seq2seq_prompt(PASSAGES[1], "fi")])["input_ids"][0]
    target = tok(["How deep is Lake Baikal?"])["input_ids"][0]
    scored = gen.translator(seed=0).score_batch(
        [tok.convert_ids_to_tokens(source)], [tok.convert_ids_to_tokens(target)]
    )[0].log_probs  # the target's tokens, then EOS
    model = MT5ForConditionalGeneration.from_pretrained(mt5_dir).eval()
    decoder_input = [model.config.decoder_start_token_id, *target]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([source]), decoder_input_ids=torch.tensor([decoder_input])).logits
    expected = logits[0].log_softmax(-1).gather(1, torch.tensor([*target, tok.eos_token_id])[:, None])[:, 0]
    assert torch.allclose(torch.tensor(scored), expected, atol=1e-4)
