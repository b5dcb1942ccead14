"""The Python API a new user reaches for: an index from numpy vectors, search with plain strings, the
sentence-transformers-like encode methods, batch_size as a number of texts, and Encoder.load by name."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

import xdr
from xdr.config import ModelSpec
from xdr.data.schema import Passage, Query
from xdr.embeddings import write_embeddings
from xdr.errors import XdrError
from xdr.index import DenseIndex, build_index, load_index
from xdr.index.dense import IN_MEMORY
from xdr.search import search, search_vectors

SPEC = ModelSpec(name="toy", path="/models/toy", fingerprint="abc")


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def vectors() -> tuple[list[str], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    return [f"d{i}" for i in range(400)], unit(rng.normal(size=(400, 16))), unit(rng.normal(size=(12, 16)))


@pytest.mark.parametrize("factory", ["Flat", "IVF4,Flat", "HNSW8"])
def test_from_vectors_searches_like_an_index_built_on_disk(
    vectors: tuple, tmp_path: Path, factory: str
) -> None:
    ids, vecs, queries = vectors
    emb = write_embeddings(ids, vecs, SPEC, tmp_path / "emb", shard_size=150, progress=False)
    on_disk = load_index(build_index(emb, tmp_path / "idx", factory, train_sample=300, progress=False),
                         use_gpu=False)
    in_memory = DenseIndex.from_vectors(ids, vecs, SPEC, factory, train_sample=300, use_gpu=False)
    assert (in_memory.ntotal, in_memory.dim, in_memory.spec, in_memory.factory) == (400, 16, SPEC, factory)
    assert in_memory.settings == on_disk.settings  # the same defaults for nprobe / efSearch
    qids = [f"q{i}" for i in range(len(queries))]
    got, want = search_vectors(in_memory, qids, queries, 20), search_vectors(on_disk, qids, queries, 20)
    assert got.hits.keys() == want.hits.keys()
    for q in qids:
        assert [d for d, _ in got[q]] == [d for d, _ in want[q]]
        np.testing.assert_allclose([s for _, s in got[q]], [s for _, s in want[q]], rtol=1e-5)
    assert got.settings["index"] == IN_MEMORY


def test_from_vectors_refuses_what_it_cannot_index(vectors: tuple) -> None:
    ids, vecs, _ = vectors
    with pytest.raises(XdrError, match="one vector per id"):
        DenseIndex.from_vectors(ids[:-1], vecs, SPEC)
    with pytest.raises(XdrError, match="duplicate passage id 'd0'"):
        DenseIndex.from_vectors(["d0", *ids[1:-1], "d0"], vecs, SPEC)
    with pytest.raises(XdrError, match="bad FAISS factory"):
        DenseIndex.from_vectors(ids, vecs, SPEC, "NoSuchIndex")
    with pytest.raises(XdrError, match="unknown metric"):
        DenseIndex.from_vectors(ids, vecs, SPEC, metric="cos")  # type: ignore[arg-type]
    with pytest.raises(XdrError, match="cannot train"):
        DenseIndex.from_vectors(ids[:3], vecs[:3], SPEC, "IVF64,Flat")
    assert xdr.DenseIndex is DenseIndex


class WordEncoder:
    """A vector per text from its words' hashes, enough to check which strings search encoded."""

    spec, dim = SPEC, 16

    def __init__(self) -> None:
        self.seen: list[str] = []

    def encode(self, texts: Sequence[str], kind: str, batch_size: int | None = 32, progress: bool = False,
               token_budget: int | None = None) -> np.ndarray:
        self.seen.extend(texts)
        rows = [np.random.default_rng(sum(map(ord, t))).normal(size=self.dim) for t in texts]
        return unit(np.stack(rows))


def test_search_takes_one_string_or_a_list_of_strings(vectors: tuple) -> None:
    ids, vecs, _ = vectors
    index = DenseIndex.from_vectors(ids, vecs, SPEC, use_gpu=False)
    enc = WordEncoder()
    one = search(index, "Wer schrieb Faust?", enc, k=5)
    assert list(one.hits) == ["q0"] and len(one["q0"]) == 5 and enc.seen == ["Wer schrieb Faust?"]
    two = search(index, ["Wer schrieb Faust?", "Who wrote Hamlet?"], enc, k=5)
    assert list(two.hits) == ["q0", "q1"] and two["q0"] == one["q0"]
    records = search(index, [Query("x", "de", "Wer schrieb Faust?")], enc, k=5)
    assert records["x"] == one["q0"]
    with pytest.raises(XdrError, match="query 0: expected a string or a Query, not int"):
        search(index, [3], enc)  # type: ignore[list-item]
    with pytest.raises(XdrError, match="no queries"):
        search(index, [], enc)


@pytest.fixture(scope="module")
def tiny(tiny_bert_dir: Path):
    from xdr.models.encoder import Encoder

    spec = ModelSpec(name="tiny", path=str(tiny_bert_dir), query_prefix="query: ", passage_prefix="passage: ",
                     title_separator=" | ", query_max_length=16, passage_max_length=32)
    return Encoder.load(spec, device="cpu")


TEXTS = ["the quick brown fox", "dense retrieval encodes queries", "a", "cross lingual retrieval finds passages",
         "mean pooling averages token vectors", "the lazy dog"]


def test_encode_queries_and_passages_are_encode_by_kind(tiny) -> None:
    q = tiny.encode_queries(TEXTS, batch_size=4)
    assert q.dtype == np.float32 and q.shape == (len(TEXTS), tiny.dim)
    np.testing.assert_array_equal(q, tiny.encode(TEXTS, "query", batch_size=4))
    np.testing.assert_array_equal(tiny.encode_passages(TEXTS), tiny.encode(TEXTS, "passage"))
    np.testing.assert_array_equal(tiny.encode_queries("the lazy dog"), q[-1])  # one string: one vector
    passages = [Passage("p1", "a fox jumps", "Fox"), Passage("p2", "untitled text")]
    np.testing.assert_array_equal(
        tiny.encode_passages([*passages, "plain string"]),
        tiny.encode(["Fox | a fox jumps", "untitled text", "plain string"], "passage"),
    )
    assert tiny.encode_passages(passages[0]).shape == (tiny.dim,)


def test_batch_size_is_a_number_of_texts_and_the_token_budget_its_own_option(tiny) -> None:
    texts = [f"word {i}" for i in range(10)]  # equal lengths, well under the max length
    assert [len(b.rows) for b in tiny.batches(texts, "query", batch_size=4)] == [4, 4, 2]
    # a token budget alone packs short texts into one batch; with a text limit both apply
    assert [len(b.rows) for b in tiny.batches(texts, "query", batch_size=None, token_budget=1000)] == [10]
    n_tokens = len(tiny.tokenize(texts[:1], "query")[0])
    assert [len(b.rows) for b in tiny.batches(texts, "query", None, token_budget=3 * n_tokens)] == [3, 3, 3, 1]
    assert [len(b.rows) for b in tiny.batches(texts, "query", 2, token_budget=1000)] == [2] * 5
    want = tiny.encode(texts, "query", batch_size=1)
    for kwargs in ({"batch_size": 4}, {"batch_size": None, "token_budget": 1000}):
        np.testing.assert_allclose(tiny.encode(texts, "query", **kwargs), want, atol=1e-5)
    for bad in ({"batch_size": 0}, {"batch_size": None}, {"batch_size": 2, "token_budget": -1}):
        with pytest.raises(XdrError, match=r"batch_size|token_budget"):
            tiny.encode(texts, "query", **bad)


def test_encoder_load_takes_a_name_or_a_path(tiny_bert_dir: Path) -> None:
    from xdr.models.encoder import Encoder
    from xdr.models.registry import resolve_spec

    enc = Encoder.load(str(tiny_bert_dir), device="cpu")
    assert enc.spec == resolve_spec(str(tiny_bert_dir))
    np.testing.assert_array_equal(enc.encode_queries(TEXTS), Encoder.load(enc.spec, device="cpu").encode_queries(TEXTS))


def test_new_names_are_exported_without_loading_torch() -> None:
    code = ("import sys, xdr; from xdr import compare, ComparisonReport; "
            "assert 'torch' not in sys.modules; assert 'compare' in xdr.__all__ and 'ComparisonReport' in xdr.__all__")
    subprocess.run([sys.executable, "-c", code], check=True)
