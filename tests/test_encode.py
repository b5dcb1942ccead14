"""The encode stage: sharding, resume after a crash, refusals, and the store readers."""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

import xdr.embeddings
from xdr.artifacts import shard_name
from xdr.config import ModelSpec
from xdr.data import read_passages
from xdr.data.schema import Passage, Query
from xdr.embeddings import iter_shards, load_embeddings, open_ids, read_ids, write_embeddings, write_ids
from xdr.encode import EncoderLoader, encode_passages, encode_queries
from xdr.errors import DataError, MismatchError, XdrError


class HashEncoder:
    """Hashed bag of words: deterministic, and it records every call so tests can count the work done."""

    def __init__(
        self, dim: int = 16, name: str = "fake", fail_after: int | None = None, sep: str = " "
    ) -> None:
        self.spec = ModelSpec(name=name, path=f"/models/{name}", title_separator=sep)
        self.dim = dim
        self.fail_after = fail_after
        self.calls: list[tuple[str, list[str]]] = []

    def encode(
        self, texts: Sequence[str], kind: str, batch_size: int | None = 32, progress: bool = False,
        token_budget: int | None = None,
    ) -> np.ndarray:
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise RuntimeError("simulated crash")
        self.calls.append((kind, list(texts)))
        out = np.full((len(texts), self.dim), 1e-3, dtype=np.float32)
        for row, text in enumerate(texts):
            for token in text.lower().split():
                h = zlib.crc32(token.encode())
                out[row, h % self.dim] += 1.0 if h & (1 << 20) else -1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    @property
    def texts(self) -> list[str]:
        return [t for _, texts in self.calls for t in texts]


def corpus(n: int, prefix: str = "p") -> list[Passage]:
    return [Passage(f"{prefix}{i}", f"text {i} about topic {i % 7}", f"Title {i % 3}") for i in range(n)]


def test_shards_split_at_shard_size_and_keep_input_order(tmp_path: Path) -> None:
    passages = corpus(23)
    enc = HashEncoder(sep=" | ")
    out = encode_passages(passages, enc, tmp_path / "emb", shard_size=5, chunk_size=2, progress=False)

    shards = list(iter_shards(out))
    assert [len(ids) for ids, _ in shards] == [5, 5, 5, 5, 3]
    ids, emb = load_embeddings(out)
    assert ids == [p.id for p in passages]
    assert enc.texts == [f"Title {i % 3} | text {i} about topic {i % 7}" for i in range(23)]
    assert emb.dtype == np.float32
    np.testing.assert_array_equal(emb, HashEncoder().encode(enc.texts, "passage"))
    assert {kind for kind, _ in enc.calls} == {"passage"}
    assert max(len(texts) for _, texts in enc.calls) == 2

    meta = json.loads((out / "meta.json").read_text())
    assert meta["stage"] == "encode"
    assert meta["rows"] == 23 and meta["shards"] == 5
    p = meta["params"]
    assert (p["kind"], p["shard_size"], p["dim"]) == ("passage", 5, 16)
    assert (p["dtype"], p["normalized"]) == ("float32", True)
    assert ModelSpec(**p["model"]) == enc.spec
    assert (out / "_DONE").exists()


def test_rerun_of_finished_store_does_no_work(tmp_path: Path) -> None:
    encode_passages(corpus(9), HashEncoder(), tmp_path / "emb", shard_size=4, progress=False)
    again = HashEncoder()
    encode_passages(corpus(9), again, tmp_path / "emb", shard_size=4, progress=False)
    assert again.calls == []


def test_resume_after_crash_skips_finished_shards_and_matches_clean_run(tmp_path: Path) -> None:
    passages = corpus(30)
    opts = {"shard_size": 7, "chunk_size": 3, "progress": False}  # 3 encoder calls per full shard
    crashing = HashEncoder(fail_after=7)
    with pytest.raises(RuntimeError, match="simulated crash"):
        encode_passages(passages, crashing, tmp_path / "emb", **opts)
    assert not (tmp_path / "emb" / "_DONE").exists()
    assert (tmp_path / "emb" / shard_name(1, ".npy")).exists()
    assert not (tmp_path / "emb" / shard_name(2, ".npy")).exists()

    resumed = HashEncoder()
    encode_passages(passages, resumed, tmp_path / "emb", **opts)
    assert resumed.texts == [p.joined() for p in passages[14:]]  # shards 0 and 1 not encoded again

    clean = encode_passages(passages, HashEncoder(), tmp_path / "clean", **opts)
    ids, emb = load_embeddings(tmp_path / "emb")
    clean_ids, clean_emb = load_embeddings(clean)
    assert ids == clean_ids == [p.id for p in passages]
    np.testing.assert_array_equal(emb, clean_emb)


def test_resume_rewrites_a_shard_killed_between_its_two_files(tmp_path: Path) -> None:
    out = encode_passages(corpus(12), HashEncoder(), tmp_path / "emb", shard_size=5, progress=False)
    (out / "_DONE").unlink()
    (out / shard_name(2, ".npy")).unlink()  # ids written, vectors not yet renamed
    stray = out / ".part-00002.npy.x1y2.tmp"
    stray.write_bytes(b"half a file")

    resumed = HashEncoder()
    encode_passages(corpus(12), resumed, out, shard_size=5, progress=False)
    assert resumed.texts == [p.joined() for p in corpus(12)[10:]]
    assert not stray.exists()
    assert load_embeddings(out)[0] == [p.id for p in corpus(12)]


def test_resume_with_other_settings_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        encode_passages(corpus(10), HashEncoder(fail_after=1), tmp_path / "emb", shard_size=4, progress=False)
    with pytest.raises(MismatchError, match="shard_size"):
        encode_passages(corpus(10), HashEncoder(), tmp_path / "emb", shard_size=5, progress=False)
    with pytest.raises(MismatchError, match="model"):
        encode_passages(corpus(10), HashEncoder(name="other"), tmp_path / "emb", shard_size=4, progress=False)
    with pytest.raises(MismatchError, match="source"):
        encode_passages(corpus(10), HashEncoder(), tmp_path / "emb", shard_size=4, source={"path": "b.jsonl"},
                        progress=False)


def test_resume_with_changed_input_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):  # one encoder call per shard: shards 0 and 1 finish
        encode_passages(corpus(10), HashEncoder(fail_after=2), tmp_path / "emb", shard_size=4, progress=False)
    with pytest.raises(MismatchError, match="input differs"):
        encode_passages(corpus(10, prefix="q"), HashEncoder(), tmp_path / "emb", shard_size=4, progress=False)
    with pytest.raises(MismatchError, match="shorter"):
        encode_passages(corpus(4), HashEncoder(), tmp_path / "emb", shard_size=4, progress=False)


def test_source_path_is_fingerprinted_so_a_changed_file_is_not_resumed(tmp_path: Path) -> None:
    src = tmp_path / "corpus.jsonl"
    src.write_text("x" * 10)
    with pytest.raises(RuntimeError):
        encode_passages(corpus(10), HashEncoder(fail_after=1), tmp_path / "emb", shard_size=4, source=src,
                        progress=False)
    assert json.loads((tmp_path / "emb" / "meta.json").read_text())["params"]["source"]["bytes"] == 10
    src.write_text("x" * 11)
    with pytest.raises(MismatchError, match="source"):
        encode_passages(corpus(10), HashEncoder(), tmp_path / "emb", shard_size=4, source=src, progress=False)


def test_empty_corpus_is_an_error_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(XdrError, match="empty corpus"):
        encode_passages(iter([]), HashEncoder(), tmp_path / "emb", progress=False)
    assert not (tmp_path / "emb").exists()


@pytest.mark.parametrize("dup_at", [3, 9], ids=["same-shard", "later-shard"])
def test_duplicate_ids_are_refused(tmp_path: Path, dup_at: int) -> None:
    passages = corpus(12)
    passages[dup_at] = Passage("p1", "another text")
    with pytest.raises(XdrError, match="duplicate id 'p1'"):
        encode_passages(passages, HashEncoder(), tmp_path / "emb", shard_size=5, progress=False)
    assert not (tmp_path / "emb" / "_DONE").exists()


def test_id_hash_collisions_are_not_mistaken_for_duplicates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(xdr.embeddings, "hash", lambda _: 42, raising=False)  # every id collides
    out = encode_passages(corpus(12), HashEncoder(), tmp_path / "emb", shard_size=5, progress=False)
    assert len(load_embeddings(out)[0]) == 12
    passages = corpus(12)
    passages[11] = Passage("p2", "again")
    with pytest.raises(XdrError, match="duplicate id 'p2': in shard 0 and again in shard 2"):
        encode_passages(passages, HashEncoder(), tmp_path / "dup", shard_size=5, progress=False)


def test_unfinished_store_is_refused_by_readers(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        encode_passages(corpus(10), HashEncoder(fail_after=2), tmp_path / "emb", shard_size=2, progress=False)
    with pytest.raises(XdrError, match="did not finish"):
        load_embeddings(tmp_path / "emb")


def test_encode_queries_uses_query_side(tmp_path: Path) -> None:
    queries = [Query("q1", "ja", "東京 は どこ"), Query("q2", "fi", "missä on Helsinki")]
    enc = HashEncoder()
    out = encode_queries(queries, enc, tmp_path / "q", progress=False)
    assert enc.calls == [("query", ["東京 は どこ", "missä on Helsinki"])]
    assert json.loads((out / "meta.json").read_text())["params"]["kind"] == "query"
    assert load_embeddings(out)[0] == ["q1", "q2"]


def test_non_finite_vectors_are_refused(tmp_path: Path) -> None:
    class NanEncoder(HashEncoder):
        def encode(
            self, texts: Sequence[str], kind: str, batch_size: int | None = 32, progress: bool = False,
            token_budget: int | None = None,
        ) -> np.ndarray:
            return np.full((len(texts), self.dim), np.nan, dtype=np.float32)

    with pytest.raises(XdrError, match="non-finite"):
        encode_passages(corpus(3), NanEncoder(), tmp_path / "emb", progress=False)


def test_id_files_round_trip_unicode_and_spaces(tmp_path: Path) -> None:
    ids = ["a", "", "with space", "日本語", "tab\there", "é" * 300]
    with open_ids(tmp_path / "ids.txt") as f:
        write_ids(f, ids[:3])
        write_ids(f, ids[3:])
    assert read_ids(tmp_path / "ids.txt").to_pylist() == ids
    with open_ids(tmp_path / "bad.txt") as f, pytest.raises(XdrError, match="newline"):
        write_ids(f, ["two\nlines"])


def test_ids_that_a_trec_run_cannot_hold_are_refused_before_encoding(tmp_path: Path) -> None:
    """An id with a space passed encode and index and failed only when search wrote run.trec."""
    enc = HashEncoder()
    for bad in ("with space", "tab\there", ""):
        with pytest.raises(XdrError, match="empty or contains whitespace"):
            encode_passages([Passage("ok", "text"), Passage(bad, "text")], enc, tmp_path / "e", progress=False)
        assert not enc.calls and not list((tmp_path / "e").glob("part-*"))


def test_a_malformed_record_in_the_first_shard_fails_before_the_model_loads(
    tmp_path: Path, tiny_bert_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[str] = []
    monkeypatch.setattr(EncoderLoader, "__call__", lambda self: loads.append("load") or HashEncoder())
    bad = tmp_path / "corpus.jsonl"
    bad.write_text('{"id": "a", "text": "fine"}\n{"id": "b", "txt": "typo"}\n')
    loader = EncoderLoader(ModelSpec(name="tiny", path=str(tiny_bert_dir)))
    with pytest.raises(DataError, match=f"{bad}:2"):
        encode_passages(read_passages(bad), loader, tmp_path / "emb", progress=False)
    assert loads == [] and not (tmp_path / "emb" / "_DONE").exists()
    bad.write_text('{"id": "a", "text": "fine"}\n')
    encode_passages(read_passages(bad), loader, tmp_path / "emb", progress=False)
    assert loads == ["load"]  # the stand-in is what a good corpus loads


def test_write_embeddings_stores_given_vectors(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(11, 8)).astype(np.float32)
    spec = ModelSpec(name="ext", path="/x", normalize=False)
    ids = [f"d{i}" for i in range(11)]
    stored_ids, stored = load_embeddings(write_embeddings(ids, vecs, spec, tmp_path / "emb", shard_size=4))
    assert stored_ids == ids
    np.testing.assert_array_equal(stored, vecs)
    with pytest.raises(XdrError, match="not unit length"):
        write_embeddings(["a"], vecs[:1] * 3, ModelSpec(name="n", path="/x"), tmp_path / "n", progress=False)


def test_progress_reports_throughput_on_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    encode_passages(corpus(5), HashEncoder(), tmp_path / "emb", progress=True)
    captured = capsys.readouterr()
    assert "rows/s" in captured.err and "5/5" in captured.err
    assert captured.out == ""


def test_the_encoder_recipe_carries_the_tokenizer_workers(tiny_bert_dir: Path) -> None:
    spec = ModelSpec(name="tiny", path=str(tiny_bert_dir))
    assert EncoderLoader(spec, "cpu", 2)().tokenizer_workers == 2  # the pool itself starts on first use
    assert EncoderLoader(spec, "cpu")().tokenizer_workers == 0
