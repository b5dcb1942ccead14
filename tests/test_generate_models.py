"""Generators on tiny random HF models built on the fly (no downloads): prompts, sampling settings, seeds.

The models are random, so their questions are noise: these tests prove plumbing, never quality.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    MT5Config,
    MT5ForConditionalGeneration,
    PreTrainedTokenizerFast,
)

from xdr.data.schema import Passage
from xdr.errors import XdrError
from xdr.generate import HFChatBackend, LLMGenerator, Prompt, Sampling, Seq2SeqGenerator, run_generation
from xdr.generate.artifact import shard_paths
from xdr.generate.prompts import build_messages, load_exemplars, render_plain

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

PASSAGES = [
    Passage("d1", "The Pharos of Alexandria was completed in the third century BC.", "Lighthouse"),
    Passage("d2", "Lake Baikal is the deepest lake in the world, 1,640 metres deep. " * 3, "Lake Baikal"),
    Passage("d3", "Honey bees perform the waggle dance.", ""),
    Passage("d4", "A traditional smoke sauna has no chimney. " * 5, "Sauna"),
    Passage("d5", "The length of the waggle run tells how far away the food is.", "Waggle dance"),
]


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    # Tiny matrices on a busy 2-core machine: extra OpenMP threads only contend (100x slower here).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _tokenizer() -> PreTrainedTokenizerFast:
    texts = [p.joined() for p in PASSAGES] + [e.passage + e.question for e in load_exemplars()]
    texts.append("Generate a Japanese Russian question for this passage: Summary: Question: Language:")
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    special = {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"}
    trainer = trainers.UnigramTrainer(vocab_size=300, special_tokens=[*special.values()], unk_token="<unk>")
    tok.train_from_iterator(texts * 3, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **special)


@pytest.fixture(scope="module")
def mt5_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tok = _tokenizer()
    config = MT5Config(
        vocab_size=len(tok), d_model=32, d_ff=64, d_kv=16, num_layers=2, num_decoder_layers=2, num_heads=2,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.pad_token_id,
        initializer_factor=0.1,  # small weights give flat logits, hence varied samples
    )
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("mt5")
    MT5ForConditionalGeneration(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tok = _tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=4096, pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id, bos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("llama")
    LlamaForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


class RecordingTokenizer:
    """Delegates to a real tokenizer and keeps the texts it was asked to encode."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer, self.texts = tokenizer, []

    def __call__(self, texts: list[str], **kwargs: Any) -> Any:
        self.texts.extend(texts)
        return self.tokenizer(texts, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tokenizer, name)


def _spy(monkeypatch: pytest.MonkeyPatch, owner: Any) -> tuple[RecordingTokenizer, list[dict[str, Any]]]:
    """Record the texts ``owner`` tokenizes and the arguments of each ``generate`` call of its model."""
    recorder = RecordingTokenizer(owner.tokenizer)
    monkeypatch.setitem(owner.__dict__, "tokenizer", recorder)
    calls: list[dict[str, Any]] = []
    real = owner.model.generate

    def generate(**kwargs: Any) -> Any:
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(owner.model, "generate", generate)
    return recorder, calls


def test_seq2seq_prompts_and_sampling_settings(mt5_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gen = Seq2SeqGenerator(str(mt5_dir), batch_size=2, decode="hf")  # the HF path shows its settings
    recorder, calls = _spy(monkeypatch, gen)
    out = gen.generate(PASSAGES, "ja", 3, seed=7)

    assert recorder.texts == [
        "Generate a Japanese question for this passage: Lighthouse "
        "The Pharos of Alexandria was completed in the third century BC.",
        f"Generate a Japanese question for this passage: Lake Baikal {PASSAGES[1].text}",
        "Generate a Japanese question for this passage:  Honey bees perform the waggle dance.",
        f"Generate a Japanese question for this passage: Sauna {PASSAGES[3].text}",
        "Generate a Japanese question for this passage: Waggle dance "
        "The length of the waggle run tells how far away the food is.",
    ]
    assert [len(c["input_ids"]) for c in calls] == [2, 2, 1]
    widths = [c["input_ids"].shape[1] for c in calls]
    assert widths == sorted(widths, reverse=True)  # longest inputs first: little padding
    settings = [(c["do_sample"], c["top_k"], c["num_return_sequences"], c["max_new_tokens"]) for c in calls]
    assert settings == [(True, 10, 3, 32)] * 3
    assert [len(q) for q in out] == [3] * len(PASSAGES)
    assert all(isinstance(q, str) for qs in out for q in qs)
    assert gen.model.dtype == torch.float32
    assert json.loads(json.dumps(gen.config)) == gen.config  # survives meta.json, so a resume matches
    assert gen.config["dtype"] == "float32" and gen.config["sampling"]["top_k"] == 10


def test_seq2seq_truncates_inputs(mt5_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gen = Seq2SeqGenerator(str(mt5_dir), max_input_length=8, decode="hf")
    _, calls = _spy(monkeypatch, gen)
    gen.generate(PASSAGES, "ru", 1, seed=0)
    assert calls[0]["input_ids"].shape[1] == 8


def test_seq2seq_seed_decides_queries_not_batching(mt5_dir: Path) -> None:
    wide = Seq2SeqGenerator(str(mt5_dir), batch_size=8).generate(PASSAGES, "ru", 4, seed=1)
    narrow = Seq2SeqGenerator(str(mt5_dir), batch_size=1).generate(PASSAGES[::-1], "ru", 4, seed=1)
    alone = Seq2SeqGenerator(str(mt5_dir)).generate(PASSAGES[2:3], "ru", 4, seed=1)
    assert narrow[::-1] == wide
    assert alone[0] == wide[2]
    assert len(set(wide[0])) > 1  # the n samples of one passage differ
    other = Seq2SeqGenerator(str(mt5_dir)).generate(PASSAGES, "ru", 4, seed=2)
    assert all(a != b for a, b in zip(other, wide, strict=True))


def test_seq2seq_refuses_fp16(mt5_dir: Path) -> None:
    with pytest.raises(XdrError, match="float16"):
        Seq2SeqGenerator(str(mt5_dir), dtype="float16")


class KilledAfter:
    """Delegates to a generator and raises after ``calls`` generate calls, like a crash mid-run."""

    def __init__(self, inner: Seq2SeqGenerator, calls: int) -> None:
        self.inner, self.left = inner, calls
        self.name, self.config = inner.name, inner.config

    def generate(self, passages: list[Passage], lang: str, n: int, seed: int) -> list[list[str]]:
        if self.left == 0:
            raise RuntimeError("killed")
        self.left -= 1
        return self.inner.generate(passages, lang, n, seed)


def _rows(out: Path) -> list[dict[str, Any]]:
    return [row for path in shard_paths(out) for row in pq.read_table(path).to_pylist()]


def test_seq2seq_resumed_run_equals_uninterrupted(mt5_dir: Path, tmp_path: Path) -> None:
    args = {"langs": ["ja", "fi"], "n": 2, "seed": 3, "shard_size": 2}
    full = run_generation(PASSAGES, Seq2SeqGenerator(str(mt5_dir), batch_size=4), tmp_path / "full", **args)

    resumed = tmp_path / "resumed"
    killed = KilledAfter(Seq2SeqGenerator(str(mt5_dir), batch_size=1), calls=5)  # dies in shard 3's 2nd lang
    with pytest.raises(RuntimeError, match="killed"):
        run_generation(PASSAGES, killed, resumed, **args)
    # no temp files; the killed writer's lock stays until its process ends (the next writer takes it over)
    assert len(shard_paths(resumed)) == 2 and [p.name for p in resumed.glob(".*")] == [".lock"]
    run_generation(PASSAGES, Seq2SeqGenerator(str(mt5_dir), batch_size=3), resumed, **args)

    rows = _rows(resumed)
    assert rows == _rows(full)
    keys = [(r["docid"], r["lang"], r["k"]) for r in rows]
    assert keys == [(p.id, lang, k) for p in PASSAGES for lang in ("ja", "fi") for k in range(2)]


def test_hf_chat_backend_plain_prompt(llama_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = HFChatBackend(str(llama_dir), batch_size=2)
    recorder, calls = _spy(monkeypatch, backend)
    gen = LLMGenerator(backend, num_exemplars=1)
    out = gen.generate(PASSAGES[:3], "ru", 2, seed=5)

    shots = load_exemplars()[2:3]  # the Russian exemplar comes first for a Russian target
    assert recorder.texts == [render_plain(build_messages(p, "ru", shots)) for p in PASSAGES[:3]]
    assert [c["num_return_sequences"] for c in calls] == [2, 2]
    assert all(c["do_sample"] and c["top_k"] == 50 and c["max_new_tokens"] == 256 for c in calls)
    assert out == [[None, None]] * 3  # a random model never writes "Summary: ...\nQuestion: ..."; each keeps its k
    assert json.loads(json.dumps(gen.config)) == gen.config


def test_hf_chat_backend_chat_template_and_seeds(llama_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sampling = Sampling(top_k=5, max_new_tokens=6)
    backend = HFChatBackend(str(llama_dir), batch_size=1, sampling=sampling)
    backend.tokenizer.chat_template = CHAT_TEMPLATE
    recorder, _ = _spy(monkeypatch, backend)
    messages = build_messages(PASSAGES[0], "fi", [])
    prompts = [Prompt(messages, [11, 12, 13]), Prompt(build_messages(PASSAGES[2], "fi", []), [11, 14, 15])]
    answers = backend.complete(prompts)

    turns = "".join(f"<|{m['role']}|>{m['content']}\n" for m in messages)
    assert recorder.texts[0] == turns + "<|assistant|>"
    assert [len(a) for a in answers] == [3, 3]
    together = HFChatBackend(str(llama_dir), batch_size=4, sampling=sampling)
    together.tokenizer.chat_template = CHAT_TEMPLATE
    assert together.complete(prompts[::-1])[::-1] == answers  # per-seed sampling: batching changes nothing


def test_hf_chat_backend_passes_gguf_file(monkeypatch: pytest.MonkeyPatch, llama_dir: Path) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []

    def loader(name: str, **kwargs: Any) -> Any:
        seen.append((name, kwargs))
        raise ImportError("no gguf")

    tokenizer, model = _tokenizer(), LlamaForCausalLM.from_pretrained(llama_dir)
    monkeypatch.setattr("xdr.generate.llm.AutoTokenizer.from_pretrained", lambda name, **kw: tokenizer)
    monkeypatch.setattr("xdr.generate.llm.AutoModelForCausalLM.from_pretrained", loader)
    with pytest.raises(XdrError, match="pip install gguf"):  # the model loads on construction
        HFChatBackend("org/model-GGUF", gguf_file="model.Q4_K_M.gguf", device="cpu")
    kwargs = {"dtype": torch.float32, "revision": None, "gguf_file": "model.Q4_K_M.gguf"}
    assert seen == [("org/model-GGUF", kwargs)]
    monkeypatch.setattr("xdr.generate.llm.AutoModelForCausalLM.from_pretrained", lambda name, **kw: model)
    backend = HFChatBackend("org/model-GGUF", gguf_file="model.Q4_K_M.gguf", device="cpu")
    assert backend.config["gguf_file"] == "model.Q4_K_M.gguf"


def _eos_prone(gen: Seq2SeqGenerator) -> Seq2SeqGenerator:
    """Give EOS a large logit on some inputs, so rows stop at different steps and some run to the end."""
    eos = gen.tokenizer.eos_token_id
    with torch.no_grad():
        head = gen.model.lm_head.weight
        head[eos] = head[5] * 3
    return gen


@pytest.mark.parametrize(
    ("sampling", "min_stops"),
    [(Sampling(), 4), (Sampling(top_k=None, top_p=0.9, temperature=0.7, max_new_tokens=12), 1)],
    ids=["topk", "topp"],
)
def test_static_decoder_draws_what_hf_generate_draws(
    mt5_dir: Path, sampling: Sampling, min_stops: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    hf = _eos_prone(Seq2SeqGenerator(str(mt5_dir), batch_size=2, decode="hf", sampling=sampling))
    static = _eos_prone(Seq2SeqGenerator(str(mt5_dir), batch_size=2, decode="static", sampling=sampling))
    assert hf.decoder is None and static.decoder is not None
    outputs: list[torch.Tensor] = []
    real = static.decoder.generate
    monkeypatch.setattr(static.decoder, "generate", lambda *a, **kw: outputs.append(real(*a, **kw)) or outputs[-1])
    expected = hf.generate(PASSAGES, "ja", 4, seed=7)  # batches of mixed lengths, 4 samples a passage
    assert static.generate(PASSAGES, "ja", 4, seed=7) == expected
    eos = static.tokenizer.eos_token_id
    stops = {int((row == eos).nonzero()[0]) if (row == eos).any() else -1 for out in outputs for row in out}
    assert -1 in stops and len(stops) >= min_stops  # top-k: rows stopped at different steps, some ran to the end
    # another batch size and order: the same queries (per-row seeds, batch-independent)
    static.batch_size = 3
    assert static.generate(PASSAGES[::-1], "ja", 4, seed=7)[::-1] == expected
    assert static.generate(PASSAGES[1:2], "ja", 4, seed=7) == expected[1:2]


def test_static_decoder_tokens_equal_hf_tokens(mt5_dir: Path) -> None:
    """Token for token, pad after EOS included, on a T5 whose decoder output is scaled before its LM head."""
    from transformers import T5Config, T5ForConditionalGeneration

    from xdr.generate.decode import StaticDecoder
    from xdr.generate.hf import SeededSampler, row_uniforms

    tok = _tokenizer()
    config = T5Config(
        vocab_size=len(tok), d_model=32, d_ff=64, d_kv=16, num_layers=2, num_decoder_layers=2, num_heads=2,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.pad_token_id,
        initializer_factor=0.1, feed_forward_proj="gated-gelu", tie_word_embeddings=True,
    )
    torch.manual_seed(1)
    model = T5ForConditionalGeneration(config).eval()
    assert model.config.scale_decoder_outputs
    sampling = Sampling(top_k=20, max_new_tokens=10)
    enc = tok([p.text for p in PASSAGES[:3]], padding=True, return_tensors="pt")
    seeds = list(range(6))
    with torch.inference_mode():
        hf = model.generate(
            **enc, do_sample=True, top_k=20, num_return_sequences=2, max_new_tokens=10,
            logits_processor=[SeededSampler(seeds, sampling)], pad_token_id=tok.pad_token_id,
        )[:, 1:]
    args = (enc["input_ids"], enc["attention_mask"], 2, row_uniforms(seeds, 10), tok.pad_token_id)
    ours = StaticDecoder(model, sampling).generate(*args)
    assert torch.equal(ours[:, : hf.shape[1]], hf) and (ours[:, hf.shape[1] :] == tok.pad_token_id).all()
    # padded to fixed shapes (as for CUDA graphs): filler rows after a larger batch, masked key padding
    fixed = StaticDecoder(model, sampling, fixed_shapes=True)
    wide = tok([p.text for p in PASSAGES], padding=True, return_tensors="pt")
    fixed.generate(wide["input_ids"], wide["attention_mask"], 2, row_uniforms(range(10), 10), tok.pad_token_id)
    assert torch.equal(fixed.generate(*args), ours)
    assert list(fixed._buffers) == [(5, 2, 128)]  # one shape (5 passages, 128 keys) served both batches


def test_static_decoder_refuses_what_it_cannot_match(mt5_dir: Path, llama_dir: Path) -> None:
    from xdr.generate.decode import unsupported_reason

    gen = Seq2SeqGenerator(str(mt5_dir), decode="hf")
    assert unsupported_reason(gen.model) is None
    gen.model.generation_config.repetition_penalty = 1.3  # an extra processor ahead of the seeded sampler
    assert "repetition_penalty" in (unsupported_reason(gen.model) or "")
    assert "not a T5-family" in (unsupported_reason(LlamaForCausalLM.from_pretrained(llama_dir)) or "")


def test_philox_matches_known_answers_and_keeps_batch_independence(mt5_dir: Path) -> None:
    import numpy as np

    from xdr.generate.hf import philox4x32, row_uniforms

    # Random123's known-answer vectors for philox4x32-10
    counter = np.array([[0, 0, 0, 0], [0xFFFFFFFF] * 4, [0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344]])
    key = np.array([[0, 0], [0xFFFFFFFF] * 2, [0xA4093822, 0x299F31D0]])
    expected = [
        [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8],
        [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD],
        [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1],
    ]
    assert philox4x32(counter.astype(np.uint64), key.astype(np.uint64)).tolist() == expected
    seeds = [3, 2**62 + 5, 3]
    u = row_uniforms(seeds, 6, "philox")
    assert u.dtype == torch.float64 and ((u >= 0) & (u < 1)).all()
    assert torch.equal(u[0], u[2]) and not torch.equal(u[0], u[1])  # a function of the row's seed alone
    assert torch.equal(row_uniforms(seeds[1:2], 6, "philox")[0], u[1])

    gen = Seq2SeqGenerator(str(mt5_dir), batch_size=4, seeding="philox")
    assert gen.config["seeding"] == "philox" and "seeding" not in Seq2SeqGenerator(str(mt5_dir)).config
    out = gen.generate(PASSAGES, "ru", 3, seed=1)
    assert Seq2SeqGenerator(str(mt5_dir), batch_size=1, decode="hf", seeding="philox").generate(
        PASSAGES[::-1], "ru", 3, seed=1
    )[::-1] == out
    assert out != Seq2SeqGenerator(str(mt5_dir), batch_size=4).generate(PASSAGES, "ru", 3, seed=1)
