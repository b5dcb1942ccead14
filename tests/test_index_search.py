"""The index and search stages: exactness, approximate recall, refusals, and the two run writers."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import faiss
import numpy as np
import pytest

from xdr.config import ModelSpec
from xdr.data.runs import Run, write_trec, write_xor_json
from xdr.data.schema import Passage, Query
from xdr.embeddings import write_embeddings
from xdr.encode import encode_passages
from xdr.errors import MismatchError, XdrError
from xdr.index import DenseIndex, build_index, load_index
from xdr.search import search, search_vectors

SPEC = ModelSpec(name="toy", path="/models/toy", fingerprint="abc")
DIM = 32


class TableEncoder:
    """Looks each text up in a table, so a test decides exactly which vector a query gets."""

    def __init__(self, table: dict[str, np.ndarray], spec: ModelSpec = SPEC) -> None:
        self.spec, self.table = spec, table
        self.dim = len(next(iter(table.values())))

    def encode(
        self, texts: Sequence[str], kind: str, batch_size: int | None = 32, progress: bool = False,
        token_budget: int | None = None,
    ) -> np.ndarray:
        return np.stack([self.table[t] for t in texts]).astype(np.float32)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], np.ndarray, np.ndarray]:
    """Passages in 300 tight groups of 10 within 20 topics, queries near a group: each query has a clear
    top 10, as with real text, so approximate indexes are judged on finding it, not on breaking ties."""
    rng = np.random.default_rng(7)
    topics = rng.normal(size=(20, DIM))
    groups = topics[rng.integers(20, size=300)] + 0.5 * rng.normal(size=(300, DIM))
    vecs = unit(np.repeat(groups, 10, axis=0) + 0.1 * rng.normal(size=(3000, DIM)))
    queries = unit(groups[rng.integers(300, size=50)] + 0.1 * rng.normal(size=(50, DIM)))
    ids = [f"doc{i}" for i in range(len(vecs))]
    emb = write_embeddings(ids, vecs, SPEC, tmp_path_factory.mktemp("emb"), shard_size=700, progress=False)
    return emb, ids, vecs, queries


@pytest.fixture(scope="module")
def flat(data: tuple, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_index(data[0], tmp_path_factory.mktemp("flat"), progress=False)


def exact_top(vecs: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(queries @ vecs.T), axis=1, kind="stable")[:, :k]


def test_flat_index_equals_brute_force(data: tuple, flat: Path) -> None:
    _, ids, vecs, queries = data
    index = load_index(flat)
    assert (index.dim, index.ntotal, index.spec) == (DIM, 3000, SPEC)
    scores, found = index.search(queries, 10)
    top = exact_top(vecs, queries, 10)
    assert found.tolist() == [[ids[j] for j in row] for row in top]
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ vecs.T, top, axis=1), rtol=1e-5)

    assert (flat / "ids.txt").read_text().split("\n")[:-1] == ids
    meta = json.loads((flat / "meta.json").read_text())
    assert (meta["stage"], meta["ntotal"], meta["params"]["dim"]) == ("index", 3000, DIM)
    assert ModelSpec(**meta["params"]["model"]) == SPEC


def test_l2_metric_scores_are_negated_squared_distances(data: tuple, tmp_path: Path) -> None:
    _, ids, vecs, queries = data
    index = load_index(build_index(data[0], tmp_path / "l2", metric="l2", progress=False))
    scores, found = index.search(queries[:5], 3)
    dist = ((queries[:5, None, :] - vecs[None, :, :]) ** 2).sum(-1)
    top = np.argsort(dist, axis=1)[:, :3]
    assert found.tolist() == [[ids[j] for j in row] for row in top]
    np.testing.assert_allclose(scores, -np.take_along_axis(dist, top, axis=1), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("factory", "knobs"), [("HNSW16", {"ef_search": 64}), ("IVF16,PQ16x4", {"nprobe": 4})]
)
def test_approximate_factories_recall_the_exact_neighbours(
    data: tuple, tmp_path: Path, factory: str, knobs: dict[str, int]
) -> None:
    _, ids, vecs, queries = data
    out = build_index(data[0], tmp_path / "ann", factory, train_sample=2000, progress=False)
    assert json.loads((out / "meta.json").read_text())["params"]["factory"] == factory
    _, found = load_index(out, **knobs).search(queries, 10)
    exact = exact_top(vecs, queries, 10)
    recall = np.mean([len(set(f) & {ids[j] for j in e}) / 10 for f, e in zip(found, exact, strict=True)])
    assert recall >= 0.8


def test_empty_slots_are_dropped_from_runs(data: tuple, tmp_path: Path) -> None:
    _, _, _, queries = data
    index = load_index(build_index(data[0], tmp_path / "ivf", "IVF8,Flat", progress=False), nprobe=1)
    scores, found = index.search(queries[:3], 5000)  # k beyond ntotal is clamped; one list cannot fill it
    assert found.shape == (3, 3000)
    empty = np.equal(found, None)
    assert empty.any() and np.isneginf(scores[empty]).all() and np.isfinite(scores[~empty]).all()
    run = search_vectors(index, ["a", "b", "c"], queries[:3], 5000)
    assert [len(run[q]) for q in "abc"] == (~empty).sum(axis=1).tolist()


def _recall(found: np.ndarray, exact: np.ndarray, ids: list[str]) -> float:
    return float(np.mean([len(set(f) & {ids[j] for j in e}) / len(e) for f, e in zip(found, exact, strict=True)]))


@pytest.fixture(scope="module")
def spread(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], np.ndarray, np.ndarray]:
    """Vectors without cluster structure: an IVF list then holds few of a query's neighbours."""
    rng = np.random.default_rng(3)
    vecs, queries = unit(rng.normal(size=(3000, DIM))), unit(rng.normal(size=(40, DIM)))
    ids = [f"doc{i}" for i in range(len(vecs))]
    return write_embeddings(ids, vecs, SPEC, tmp_path_factory.mktemp("spread"), progress=False), ids, vecs, queries


def test_default_nprobe_is_exact_on_a_small_ivf_and_recorded(spread: tuple, tmp_path: Path) -> None:
    """FAISS's nprobe of 1 found a fraction of the neighbours on an IVF8 index; xdr's default probes all 8."""
    _, ids, vecs, queries = spread
    out = build_index(spread[0], tmp_path / "ivf8", "IVF8,Flat", progress=False)
    exact = exact_top(vecs, queries, 10)
    faiss_default = load_index(out, nprobe=1)
    xdr_default = load_index(out)
    assert xdr_default.settings == {"nprobe": 8} and xdr_default.defaulted == {"nprobe"}
    assert _recall(xdr_default.search(queries, 10)[1], exact, ids) == 1.0
    assert _recall(faiss_default.search(queries, 10)[1], exact, ids) < 0.9
    run = search_vectors(xdr_default, [f"q{i}" for i in range(len(queries))], queries, 10)
    assert run.settings["nprobe"] == 8 and run.settings["k"] == 10
    assert load_index(build_index(spread[0], tmp_path / "hnsw", "HNSW16", progress=False)).settings == {
        "efSearch": 128}
    with pytest.raises(XdrError, match="exceeds the index's 8 IVF lists"):
        load_index(out, nprobe=9)
    with pytest.raises(XdrError, match="positive integer"):
        load_index(out, nprobe=0)


def test_a_default_nprobe_far_from_exact_is_reported(
    spread: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xdr.errors import XdrWarning

    queries = spread[3]
    out = build_index(spread[0], tmp_path / "ivf64", "IVF64,Flat", progress=False)
    monkeypatch.setattr("xdr.index.dense.default_nprobe", lambda nlist: 1)
    table = {f"t{i}": q for i, q in enumerate(queries)}
    qs = [Query(f"q{i}", "en", f"t{i}") for i in range(len(queries))]
    with pytest.warns(XdrWarning, match=r"default nprobe 1 of 64 lists .* raise --nprobe"):
        search(load_index(out), qs, TableEncoder(table), k=10)
    index = load_index(out, nprobe=64)  # chosen by the user: no warning, and exhaustive is exact
    assert index.exact_recall(queries, 10) == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        search(index, qs, TableEncoder(table), k=10)


def test_query_dim_mismatch_names_both_dims(flat: Path) -> None:
    with pytest.raises(MismatchError, match=r"dim 16 .* has dim 32"):
        load_index(flat).search(np.zeros((2, 16), dtype=np.float32), 5)


def test_ef_construction_builds_a_better_graph_and_is_recorded(data: tuple, tmp_path: Path) -> None:
    _, ids, vecs, queries = data
    exact = exact_top(vecs, queries, 10)
    recall = {}
    for ef in (4, 200):
        out = build_index(data[0], tmp_path / f"ef{ef}", "HNSW4", ef_construction=ef, progress=False)
        assert json.loads((out / "meta.json").read_text())["params"]["ef_construction"] == ef
        index = load_index(out, ef_search=10)
        assert faiss.downcast_index(index.index).hnsw.efConstruction == ef  # saved with the graph
        _, found = index.search(queries, 10)
        recall[ef] = np.mean([len(set(f) & {ids[j] for j in e}) / 10 for f, e in zip(found, exact, strict=True)])
    assert recall[200] > recall[4] + 0.05, recall
    in_memory = DenseIndex.from_vectors(ids, vecs, SPEC, "HNSW4", ef_construction=200, ef_search=10)
    assert faiss.downcast_index(in_memory.index).hnsw.efConstruction == 200
    with pytest.raises(XdrError, match="efConstruction applies to HNSW indexes"):
        build_index(data[0], tmp_path / "flat-ef", ef_construction=200, progress=False)
    assert not (tmp_path / "flat-ef").exists()


def test_setting_a_knob_the_index_lacks_is_refused(flat: Path) -> None:
    with pytest.raises(XdrError, match="no nprobe setting"):
        load_index(flat, nprobe=8)


def test_bad_factory_and_untrainable_index_are_user_errors(data: tuple, tmp_path: Path) -> None:
    with pytest.raises(XdrError, match="bad FAISS factory string"):
        build_index(data[0], tmp_path / "bad", "NoSuchIndex7", progress=False)
    with pytest.raises(XdrError, match="cannot train 'IVF256,Flat' on 100 vectors"):
        build_index(data[0], tmp_path / "small", "IVF256,Flat", train_sample=100, progress=False)


def test_unfinished_artifacts_are_refused(data: tuple, flat: Path, tmp_path: Path) -> None:
    (tmp_path / "emb").mkdir()
    (tmp_path / "emb" / "meta.json").write_text(json.dumps({"stage": "encode", "params": {}}))
    with pytest.raises(XdrError, match="did not finish"):
        build_index(tmp_path / "emb", tmp_path / "idx", progress=False)
    (flat / "_DONE").rename(flat / "_DONE.bak")
    try:
        with pytest.raises(XdrError, match="did not finish"):
            load_index(flat)
    finally:
        (flat / "_DONE.bak").rename(flat / "_DONE")


def test_rebuilding_with_another_factory_in_place_is_refused(data: tuple, flat: Path) -> None:
    assert build_index(data[0], flat, progress=False) == flat  # finished and same settings: nothing to do
    with pytest.raises(MismatchError, match="factory"):
        build_index(data[0], flat, "HNSW16", progress=False)


def test_end_to_end_encode_index_search(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    passages = [Passage(f"p{i}", f"passage {i}", f"T{i}") for i in range(40)]
    table = {p.joined(): v for p, v in zip(passages, unit(rng.normal(size=(40, 8))), strict=True)}
    queries = [Query("q1", "ja", "東京"), Query("q2", "ru", "Москва")]
    table |= {"東京": table["T3 passage 3"] + 0.01, "Москва": table["T17 passage 17"] + 0.01}
    enc = TableEncoder(table)
    emb = encode_passages(passages, enc, tmp_path / "emb", shard_size=16, progress=False)
    run = search(build_index(emb, tmp_path / "idx", progress=False), queries, enc, k=3)
    assert [run[q.id][0][0] for q in queries] == ["p3", "p17"]
    assert all(len(ranked) == 3 for ranked in run.hits.values())
    assert run.scores()["q1"] == dict(run["q1"])


def test_search_refuses_an_encoder_from_another_vector_space(flat: Path) -> None:
    other = ModelSpec(name="toy", path="/models/toy", fingerprint="other-weights")
    enc = TableEncoder({"q": np.ones(DIM)}, spec=other)
    with pytest.raises(MismatchError, match="fingerprint: 'abc' vs 'other-weights'"):
        search(flat, [Query("q1", "en", "q")], enc)
    # prefixes and lengths are per use and do not change the space
    same = SPEC.model_copy(update={"query_prefix": "query: ", "query_max_length": 32})
    run = search(flat, [Query("q1", "en", "q")], TableEncoder({"q": np.ones(DIM)}, spec=same), k=4)
    assert len(run["q1"]) == 4


def test_search_refuses_duplicate_query_ids(flat: Path) -> None:
    enc = TableEncoder({"q": np.ones(DIM)})
    with pytest.raises(XdrError, match="duplicate query ids"):
        search(flat, [Query("q1", "en", "q"), Query("q1", "en", "q")], enc)


def test_trec_writer_format_is_exact(tmp_path: Path) -> None:
    run = Run({"q1": [("d7", 0.5), ("d2", 0.25)], "q2": [("d1", 1 / 3)]}, tag="me5")
    write_trec(run, tmp_path / "run.trec")
    assert (tmp_path / "run.trec").read_text() == (
        "q1 Q0 d7 1 0.5 me5\nq1 Q0 d2 2 0.25 me5\nq2 Q0 d1 1 0.333333333 me5\n"
    )
    with pytest.raises(XdrError, match="whitespace"):
        write_trec(Run({"q 1": [("d1", 1.0)]}), tmp_path / "bad.trec")
    assert not (tmp_path / "bad.trec").exists()


class CountingCorpus:
    """An iterable corpus that counts how often it is iterated and how many rows it yields."""

    def __init__(self, passages: list[Passage]) -> None:
        self.passages, self.iterations, self.rows = passages, 0, 0

    def __iter__(self) -> Iterator[Passage]:
        self.iterations += 1
        for p in self.passages:
            self.rows += 1
            yield p


def test_xor_json_has_texts_in_rank_order_from_one_corpus_pass(tmp_path: Path) -> None:
    corpus = CountingCorpus([Passage(f"d{i}", f"text {i}", f"title {i}") for i in range(100)])
    run = Run({"q1": [("d5", 0.9), ("d1", 0.8), ("d9", 0.1)], "q2": [("d1", 0.7)]})
    queries = [Query("q1", "ja", "?"), Query("q2", "te", "?")]
    texts = write_xor_json(run, queries, corpus, tmp_path / "xor.json")
    assert json.loads((tmp_path / "xor.json").read_text(encoding="utf-8")) == [
        {"id": "q1", "lang": "ja", "ctxs": ["text 5", "text 1", "text 9"]},
        {"id": "q2", "lang": "te", "ctxs": ["text 1"]},
    ]
    assert texts == {"d1": "text 1", "d5": "text 5", "d9": "text 9"}
    assert corpus.iterations == 1 and corpus.rows == 10  # stopped once d9, the last needed, was seen

    with pytest.raises(XdrError, match="1 passage ids of the run are not in the corpus"):
        write_xor_json(Run({"q1": [("gone", 1.0)]}), queries[:1], corpus, tmp_path / "bad.json")


def test_real_encoder_satisfies_the_pipeline(tiny_bert_dir: Path, tmp_path: Path) -> None:
    """The models package's Encoder, on a tiny random BERT: what the fakes stand in for really fits."""
    from xdr.models.encoder import Encoder

    encoder = Encoder.load(ModelSpec(name="tiny", path=str(tiny_bert_dir), normalize=True), device="cpu")
    passages = [Passage(f"p{i}", text, "T") for i, text in enumerate(["dense retrieval", "a fox", "pooling"])]
    emb = encode_passages(passages, encoder, tmp_path / "emb", shard_size=2, progress=False)
    queries = [Query("q1", "en", "a fox")]
    run = search(build_index(emb, tmp_path / "idx", progress=False), queries, encoder, k=3)
    assert sorted(docid for docid, _ in run["q1"]) == ["p0", "p1", "p2"]
    scores = [score for _, score in run["q1"]]
    assert scores == sorted(scores, reverse=True) and all(-1.001 <= s <= 1.001 for s in scores)
