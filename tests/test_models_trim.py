"""Vocabulary trimming (xdr.models.trim) and the int8 transport form (xdr.models.pack)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from xdr.errors import XdrError

REPO = Path(__file__).resolve().parents[1]
TINY_CORPUS = [  # the first four sentences of conftest.TINY_CORPUS, which trained the tiny WordPiece
    "The quick brown fox jumps over the lazy dog.",
    "Dense retrieval encodes queries and passages into one vector space.",
    "Cross-lingual retrieval finds English passages for questions in other languages.",
    "A tokenizer splits text into word pieces before the model sees it.",
]
XQUAD_R = REPO.parent / "shared" / "data" / "xquad-r"
MIB = 1 << 20
FALLBACK = [  # covered text when the XQuAD-R data is absent
    "The Normans were the people who in the 10th and 11th centuries gave their name to Normandy.",
    "Die Normannen gaben der Normandie im 10. und 11. Jahrhundert ihren Namen.",
    "नॉर्मन वे लोग थे जिन्होंने नॉर्मंडी को अपना नाम दिया।",
    "Οι Νορμανδοί έδωσαν το όνομά τους στη Νορμανδία.",
    "Los normandos dieron su nombre a Normandía.",
    "Normanlar adlarını Normandiya'ya verdiler.",
    "Người Norman đã đặt tên cho vùng Normandy.",
]


def _encoder(path: Path, **overrides):
    from xdr.models import Encoder, resolve_spec

    return Encoder.load(resolve_spec(str(path), **overrides), device="cpu")


def _mapped(full_ids: list[list[int]], kept: list[int]) -> list[list[int]]:
    new_id = {old: new for new, old in enumerate(kept)}
    return [[new_id[i] for i in ids] for ids in full_ids]


# ------------------------------------------------------------------------------------------- tiny BERT


@pytest.fixture(scope="module")
def tiny_trimmed(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from xdr.models.trim import trim_model

    return trim_model(tiny_bert_dir, TINY_CORPUS, tmp_path_factory.mktemp("tt") / "m")


def test_tiny_trim_identical(tiny_bert_dir: Path, tiny_trimmed: Path) -> None:
    from xdr.models.trim import read_trim

    info = read_trim(tiny_trimmed)
    config = json.loads((tiny_trimmed / "config.json").read_text())
    assert config["vocab_size"] == info["pieces"] == len(info["kept_ids"]) < 300
    assert info["tokenizer_model"] == "WordPiece"
    full, trimmed = _encoder(tiny_bert_dir, pooling="mean"), _encoder(tiny_trimmed, pooling="mean")
    texts = TINY_CORPUS
    for kind in ("query", "passage"):
        assert trimmed.tokenize(texts, kind) == _mapped(full.tokenize(texts, kind), info["kept_ids"])
        np.testing.assert_allclose(trimmed.encode(texts, kind), full.encode(texts, kind), atol=1e-5)


def test_untrim_returns_a_trained_trimmed_model_to_the_full_vocabulary(
    tiny_bert_dir: Path, tiny_trimmed: Path, tmp_path: Path
) -> None:
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from xdr.models.trim import read_trim, untrim_model

    # "fine-tune" the trimmed model: every weight moves; the trainer's output has no trim.json
    trained = tmp_path / "trained"
    shutil.copytree(tiny_trimmed, trained)
    (trained / "trim.json").unlink()
    moved = {k: v + 0.01 * torch.randn_like(v) for k, v in load_file(trained / "model.safetensors").items()}
    save_file(moved, trained / "model.safetensors")
    with pytest.raises(XdrError, match="not a trimmed model"):
        untrim_model(trained, tiny_bert_dir, tmp_path / "x")
    with pytest.raises(XdrError, match="fingerprint"):
        untrim_model(trained, tiny_trimmed, tmp_path / "x", trim_info=tiny_trimmed)

    back = untrim_model(trained, tiny_bert_dir, tmp_path / "full", trim_info=tiny_trimmed)
    kept = read_trim(tiny_trimmed)["kept_ids"]
    source, out = load_file(tiny_bert_dir / "model.safetensors"), load_file(back / "model.safetensors")
    emb = "embeddings.word_embeddings.weight"
    dropped = sorted(set(range(source[emb].shape[0])) - set(kept))
    assert dropped and torch.equal(out[emb][dropped], source[emb][dropped])  # rows the run never had
    assert torch.equal(out[emb][kept], moved[emb])
    assert all(torch.equal(out[k], moved[k]) for k in out if k != emb)
    # covered text encodes as the trained trimmed model does; other text tokenises as the source does
    full, small = _encoder(back, pooling="mean"), _encoder(trained, pooling="mean")
    np.testing.assert_allclose(full.encode(TINY_CORPUS, "passage"), small.encode(TINY_CORPUS, "passage"), atol=1e-5)
    other = ["zebras quarrel about xylophones"]
    assert full.tokenize(other, "query") == _encoder(tiny_bert_dir).tokenize(other, "query")
    assert full.tokenize(other, "query") != [[kept[i] for i in ids] for ids in small.tokenize(other, "query")]


def test_tiny_unknown_word_becomes_unk(tiny_trimmed: Path) -> None:
    """WordPiece: a word that cannot be spelled from the kept pieces is one [UNK]."""
    enc = _encoder(tiny_trimmed)
    unk = enc.tokenizer.unk_token_id
    ids = enc.tokenize(["the fox zzzqqq"], "query")[0]
    assert ids.count(unk) == 1 and len(ids) == 5  # [CLS] the fox [UNK] [SEP]
    assert max(ids) < enc.model.config.vocab_size


def test_keep_special_false_keeps_only_what_is_needed(tiny_bert_dir: Path, tmp_path: Path) -> None:
    from xdr.models.trim import read_trim, trim_model

    d = trim_model(tiny_bert_dir, ["the fox"], tmp_path / "m", keep_special=False, extra_pieces=["dog"])
    vocab = json.loads((d / "tokenizer.json").read_text())["model"]["vocab"]
    assert {"[CLS]", "[SEP]", "[PAD]", "[UNK]", "the", "fox", "dog"} <= set(vocab)
    assert "[MASK]" not in vocab and len(vocab) == read_trim(d)["pieces"] == 7
    enc = _encoder(d)
    assert enc.tokenizer.convert_ids_to_tokens(enc.tokenize(["the dog"], "query")[0]) == [
        "[CLS]", "the", "dog", "[SEP]"]


def test_refuses_bad_input(tiny_bert_dir: Path, tmp_path: Path) -> None:
    from xdr.models.trim import trim_model

    with pytest.raises(XdrError, match="no texts"):
        trim_model(tiny_bert_dir, [], tmp_path / "a")
    with pytest.raises(XdrError, match="not in the tokenizer"):
        trim_model(tiny_bert_dir, ["fox"], tmp_path / "b", extra_pieces=["no-such-piece-xyz"])
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "x").write_text("")
    with pytest.raises(XdrError, match="not empty"):
        trim_model(tiny_bert_dir, ["fox"], tmp_path / "c")


# ------------------------------------------------------------------------------------------- me5-small


def _xquad_texts() -> tuple[list[str], list[str], dict[str, list[str]]]:
    """(all trimming texts, passages, questions by language), prefixed as the E5 spec does."""
    if not XQUAD_R.is_dir():
        return FALLBACK, FALLBACK, {"de": FALLBACK[1:2], "hi": FALLBACK[2:3]}
    from xdr.data import read_xquad_r

    x = read_xquad_r(XQUAD_R)
    passages = [p.joined(" ") for p in x.corpus]
    questions = {lang: [q.text for q in qs] for lang, qs in x.queries.items()}
    texts = ["passage: " + p for p in passages]
    texts += ["query: " + q for qs in questions.values() for q in qs]
    return texts, passages, questions


@pytest.fixture(scope="module")
def me5_trimmed(me5_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    from xdr.models.pack import pack_model
    from xdr.models.trim import trim_model

    texts, passages, questions = _xquad_texts()
    root = tmp_path_factory.mktemp("me5trim")
    trimmed = trim_model(me5_dir, texts, root / "m")
    pack = pack_model(trimmed, root / "m.xdrpack")
    return trimmed, pack, passages, questions


def _sample(passages: list[str], questions: dict[str, list[str]]) -> tuple[list[str], list[str]]:
    qs = [q for lang in ("de", "hi", "el") for q in questions.get(lang, [])[:6]]
    return passages[:4], qs


@pytest.fixture(scope="module")
def me5_reference(me5_trimmed):
    """The trimmed model's vectors for a sample of covered texts (encoding is the slow part)."""
    trimmed, _, passages, questions = me5_trimmed
    ps, qs = _sample(passages, questions)
    enc = _encoder(trimmed)
    return ps, qs, enc.encode(ps, "passage"), enc.encode(qs, "query")


def test_me5_trim_identical(me5_dir: Path, me5_trimmed, me5_reference) -> None:
    from xdr.models.trim import read_trim

    trimmed, _, passages, questions = me5_trimmed
    info = read_trim(trimmed)
    assert info["tokenizer_model"] == "Unigram"
    assert info["source"]["weights_sha256"] == json.loads((me5_dir / "manifest.json").read_text())[
        "files"]["model.safetensors"]["sha256"]
    full, small = _encoder(me5_dir), _encoder(trimmed)
    assert small.spec.pooling == "mean" and small.spec.query_prefix == "query: "  # ST files came along
    # Token ids map 1:1 on every covered text (tokenizing is cheap; encoding only a sample).
    all_q = [q for qs in questions.values() for q in qs]
    assert small.tokenize(passages, "passage") == _mapped(full.tokenize(passages, "passage"), info["kept_ids"])
    assert small.tokenize(all_q, "query") == _mapped(full.tokenize(all_q, "query"), info["kept_ids"])
    ps, qs, ref_ps, ref_qs = me5_reference
    np.testing.assert_allclose(ref_ps, full.encode(ps, "passage"), atol=1e-5)
    np.testing.assert_allclose(ref_qs, full.encode(qs, "query"), atol=1e-5)


def test_me5_pack_size(me5_trimmed, capsys: pytest.CaptureFixture) -> None:
    from xdr.models.trim import read_trim

    trimmed, pack, _, _ = me5_trimmed
    info = read_trim(trimmed)
    size = pack.stat().st_size
    with capsys.disabled():
        print(f"\n[trim] me5-small: {info['pieces']} of {info['source']['tokenizer_pieces']} pieces, "
              f"{info['texts']} texts; trimmed fp32 {(trimmed / 'model.safetensors').stat().st_size / MIB:.1f} "
              f"MiB, packed int8/fp16 {size / MIB:.1f} MiB")
    assert size < 64 * MIB


def test_me5_unpack_deterministic_and_close(me5_trimmed, me5_reference, tmp_path: Path, capsys) -> None:
    from xdr.models.pack import pack_model, read_pack_info, rebuilt_sha256, unpack_model

    trimmed, pack, _, _ = me5_trimmed
    a = unpack_model(pack, tmp_path / "a")
    again = pack_model(trimmed, tmp_path / "again.xdrpack")
    b = unpack_model(again, tmp_path / "b")
    assert pack.read_bytes() == again.read_bytes()
    info = read_pack_info(pack)
    assert rebuilt_sha256(a) == rebuilt_sha256(b) == info["rebuilt_sha256"]
    assert info["source_sha256"] == rebuilt_sha256(trimmed) != info["rebuilt_sha256"]  # int8 is lossy
    ps, qs, ref_ps, ref_qs = me5_reference
    got = _encoder(a)
    cos = np.concatenate([  # unit vectors
        (ref_ps * got.encode(ps, "passage")).sum(1), (ref_qs * got.encode(qs, "query")).sum(1)
    ])
    with capsys.disabled():
        print(f"\n[trim] unpack(pack) vs trimmed: min cosine {cos.min():.7f}, mean {cos.mean():.7f}")
    assert cos.min() >= 0.999


def test_unpack_refuses_tampered_pack(tiny_trimmed: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    from xdr.models.pack import PACK_KEY, pack_model, read_pack_info, unpack_model

    pack = pack_model(tiny_trimmed, tmp_path / "t.xdrpack", other="int8")
    unpack_model(pack, tmp_path / "ok")
    tensors, info = load_file(str(pack)), read_pack_info(pack)
    name = next(k for k in tensors if k.endswith(".q8"))
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] += 1
    save_file(tensors, str(tmp_path / "bad.xdrpack"), metadata={PACK_KEY: json.dumps(info)})
    with pytest.raises(XdrError, match="rebuilt weights hash"):
        unpack_model(tmp_path / "bad.xdrpack", tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_me5_uncovered_text(me5_dir: Path, tmp_path: Path) -> None:
    """Unigram: uncovered words re-segment into kept pieces; spans no kept piece can spell become <unk>."""
    from xdr.models.trim import trim_model

    corpus = ["The Normans were the people who in the 10th and 11th centuries gave their name to Normandy."]
    trimmed = trim_model(me5_dir, corpus, tmp_path / "m", prefixes=("query: ",))
    full, small = _encoder(me5_dir), _encoder(trimmed)
    unk = small.tokenizer.unk_token_id

    def pieces(enc, text: str) -> list[str]:
        return enc.tokenizer.convert_ids_to_tokens(enc.tokenize([text], "query")[0])[4:-1]  # no prefix

    # Covered words: same pieces as the full model.
    assert pieces(small, "the people gave") == pieces(full, "the people gave")
    # "names" is not in the corpus: the full model's "▁names" is gone, kept "▁name" + "s" spell it.
    assert pieces(full, "names") == ["▁names"]
    assert pieces(small, "names") == ["▁name", "s"]
    assert unk not in small.tokenize(["names"], "query")[0]
    # "gaven": "▁gave" is kept but no kept piece spells "n": the rest is one (fused) <unk>.
    ids = small.tokenize(["gaven"], "query")[0]
    assert small.tokenizer.convert_ids_to_tokens(ids)[4:-1] == ["▁gave", "<unk>"]
    assert ids[-2] == unk
    # A script with no kept piece at all: <unk>, and encoding still works.
    ids = small.tokenize(["北京 the"], "query")[0]
    assert unk in ids and max(ids) < small.model.config.vocab_size
    assert small.encode(["北京 the"], "query").shape == (1, small.dim)


def test_failed_write_leaves_no_output_directory(
    tiny_bert_dir: Path, tiny_trimmed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Models are published with atomic_dir: a failure while writing leaves neither ``out`` nor temp dirs."""
    from xdr.models import trim

    def fail(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(trim, "save_weights", fail)
    with pytest.raises(OSError, match="disk full"):
        trim.trim_model(tiny_bert_dir, TINY_CORPUS, tmp_path / "t")
    (tmp_path / "u").mkdir()  # an empty output directory given in advance stays as it was
    with pytest.raises(OSError, match="disk full"):
        trim.untrim_model(tiny_trimmed, tiny_bert_dir, tmp_path / "u")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["u"] and not any((tmp_path / "u").iterdir())
