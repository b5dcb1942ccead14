"""Max-sim over generated-query vectors (#5): the store, re-ranking, the multi-vector index, edge cases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from xdr.cli import app
from xdr.config import ModelSpec
from xdr.data.runs import Run
from xdr.data.schema import Query
from xdr.embeddings import write_embeddings
from xdr.errors import DataError, MismatchError, XdrError
from xdr.generate.artifact import generated_query_id
from xdr.index import MultiVector, build_index, load_index
from xdr.maxsim import GeneratedVectorStore, MaxSimReranker, build_vector_store, rerank_maxsim, vector_store_info
from xdr.maxsim import store as maxsim_store
from xdr.search import search, search_vectors

SPEC = ModelSpec(name="toy", path="toy", fingerprint="f1")
DIM = 16
BETA = 0.5


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


class Data:
    """Passages d0..d{n-1} with 0..12 generated queries each (d0 has none), written as embedding stores."""

    def __init__(self, root: Path, n: int = 50, per: int = 13, q_shard: int = 17, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.pids = [f"d{i}" for i in range(n)]
        self.pvec = unit(rng.normal(size=(n, DIM)))
        self.gen: dict[str, np.ndarray] = {}
        qids, qvec = [], []
        for i, p in enumerate(self.pids):
            g = unit(rng.normal(size=(i % per, DIM)))
            if len(g):
                self.gen[p] = g
            qids += [generated_query_id(p, "de", k) for k in range(len(g))]
            qvec += list(g)
        self.qids, self.qvec = qids, np.array(qvec, np.float32)
        self.p_dir = write_embeddings(self.pids, self.pvec, SPEC, root / "p", shard_size=9, progress=False)
        self.q_dir = write_embeddings(qids, self.qvec, SPEC, root / "q", kind="query", shard_size=q_shard,
                                      progress=False)
        self.queries = unit(rng.normal(size=(6, DIM)))

    def exact(self, q: np.ndarray, beta: float = BETA) -> dict[str, float]:
        """The issue's formula, by brute force."""
        out = {}
        for p, v in zip(self.pids, self.pvec, strict=True):
            s = float(q @ v)
            out[p] = s + beta * (float((self.gen[p] @ q).max()) if p in self.gen else s)
        return out


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    return Data(tmp_path_factory.mktemp("maxsim"))


@pytest.fixture(scope="module")
def fp16_store(data: Data, tmp_path_factory: pytest.TempPathFactory) -> GeneratedVectorStore:
    return GeneratedVectorStore(build_vector_store(data.q_dir, tmp_path_factory.mktemp("s16"), progress=False))


def first_stage(data: Data, k: int) -> Run:
    idx = load_index(build_index(data.p_dir, data.p_dir.parent / "idx", progress=False))
    return search_vectors(idx, [f"q{i}" for i in range(len(data.queries))], data.queries, k)


# ------------------------------------------------------------------------------------------- store
@pytest.mark.parametrize(("dtype", "tol"), [("float16", 1e-3), ("int8", 1e-2), ("pq", None)])
def test_store_round_trip_for_each_dtype(data: Data, tmp_path: Path, dtype: str, tol: float | None) -> None:
    store = GeneratedVectorStore(build_vector_store(data.q_dir, tmp_path / "s", dtype=dtype, pq_m=4,
                                                     progress=False))
    assert store.passages == len(data.gen) and store.vectors == len(data.qids)
    assert store.bytes_per_vector == {"float16": 2 * DIM, "int8": DIM + 4, "pq": 4}[dtype]
    rows = store.lookup(["d0", "d5", "d38", "nowhere"])
    assert rows[0] == -1 and rows[3] == -1  # d0 has no generated queries; "nowhere" is no passage
    for p, r in (("d5", rows[1]), ("d38", rows[2])):
        got = store.vectors_of(int(r))
        assert got.shape == data.gen[p].shape
        if tol is not None:
            np.testing.assert_allclose(got, data.gen[p], atol=tol)
        else:  # PQ: 4 bytes per 16-dim vector is lossy, but each query still finds its own vector first
            assert (np.argmax(got @ data.gen[p].T, axis=1) == np.arange(len(got))).mean() > 0.8
    info = vector_store_info(store.path)
    assert info["vectors"] == len(data.qids) and info["duplicates_dropped"] == 0


def test_passages_split_across_input_shards_stay_whole(data: Data, tmp_path: Path) -> None:
    """Input shards of 5 rows cut through passages with up to 12 queries; the carry keeps them whole."""
    src = write_embeddings(data.qids, data.qvec, SPEC, tmp_path / "q5", kind="query", shard_size=5,
                           progress=False)
    store = GeneratedVectorStore(build_vector_store(src, tmp_path / "s", progress=False))
    for p, g in data.gen.items():
        np.testing.assert_allclose(store.vectors_of(int(store.lookup([p])[0])), g, atol=1e-3)


def test_resume_after_a_kill_keeps_finished_shards(
    data: Data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written: list[int] = []
    real = maxsim_store._write_shard

    def dying(out: Path, i: int, *args: object) -> None:
        if i == 3:
            raise KeyboardInterrupt  # the kill
        written.append(i)
        real(out, i, *args)

    monkeypatch.setattr(maxsim_store, "_write_shard", dying)
    with pytest.raises(KeyboardInterrupt):
        build_vector_store(data.q_dir, tmp_path / "s", dtype="int8", progress=False)
    assert written == [0, 1, 2] and not (tmp_path / "s" / "_DONE").exists()
    with pytest.raises(XdrError, match="did not finish"):
        GeneratedVectorStore(tmp_path / "s")
    written.clear()
    monkeypatch.setattr(maxsim_store, "_write_shard", lambda out, i, *a: (written.append(i), real(out, i, *a)))
    resumed = GeneratedVectorStore(build_vector_store(data.q_dir, tmp_path / "s", dtype="int8", progress=False))
    assert written[0] == 3  # finished shards were not rewritten
    fresh = GeneratedVectorStore(build_vector_store(data.q_dir, tmp_path / "f", dtype="int8", progress=False))
    for p in data.gen:
        a, b = resumed.lookup([p])[0], fresh.lookup([p])[0]
        np.testing.assert_array_equal(resumed.vectors_of(int(a)), fresh.vectors_of(int(b)))
    with pytest.raises(MismatchError, match="other settings"):
        build_vector_store(data.q_dir, tmp_path / "s", dtype="float16", progress=False)


def test_duplicate_generated_queries_are_stored_once_and_change_no_score(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    g = unit(rng.normal(size=(3, DIM)))
    vecs = np.concatenate([g, g[:1], g[1:2] + 1e-7])  # the same two texts again, one with encoder noise
    ids = [generated_query_id("a", "de", k) for k in range(5)]
    store = GeneratedVectorStore(build_vector_store(
        write_embeddings(ids, vecs, SPEC, tmp_path / "q", kind="query", progress=False), tmp_path / "s",
        progress=False))
    assert store.vectors == 3 and store.meta["duplicates_dropped"] == 2
    q = unit(rng.normal(size=DIM))
    assert store.max_scores(q, np.array([0]))[0] == pytest.approx(float((vecs @ q).max()), abs=1e-3)


def test_malformed_generated_ids_name_the_file_and_line(tmp_path: Path) -> None:
    ids = [generated_query_id("a", "de", 0), "a-de-1"]
    src = write_embeddings(ids, unit(np.ones((2, DIM))), SPEC, tmp_path / "q", kind="query", progress=False)
    with pytest.raises(DataError, match=r"part-00000\.ids\.txt:2: field 'id'"):
        build_vector_store(src, tmp_path / "s", progress=False)


def test_queries_of_one_passage_must_be_contiguous(tmp_path: Path) -> None:
    ids = [generated_query_id(p, "de", k) for p, k in (("a", 0), ("b", 0), ("a", 1))]
    src = write_embeddings(ids, unit(np.eye(3, DIM)), SPEC, tmp_path / "q", kind="query", progress=False)
    with pytest.raises(XdrError, match="'a' appears twice"):
        build_vector_store(src, tmp_path / "s", progress=False)


def test_passage_embeddings_are_not_a_store_source(data: Data, tmp_path: Path) -> None:
    with pytest.raises(XdrError, match="encoded as queries"):
        build_vector_store(data.p_dir, tmp_path / "s", progress=False)


# -------------------------------------------------------------------------------------- re-ranking
def test_rerank_is_the_issues_formula_over_the_candidates(data: Data, fp16_store: GeneratedVectorStore) -> None:
    run = first_stage(data, k=len(data.pids))
    reranked = rerank_maxsim(run, data.queries, fp16_store, spec=SPEC, beta=BETA, k=len(data.pids))
    for i, q in enumerate(data.queries):
        exact = data.exact(q)
        got = reranked[f"q{i}"]
        assert [d for d, _ in got] == sorted(exact, key=lambda d: -exact[d])
        for d, score in got:
            assert score == pytest.approx(exact[d], abs=2e-3)
    short = rerank_maxsim(run, data.queries, fp16_store, spec=SPEC, beta=BETA, k=5)
    assert all(len(h) == 5 and {d for d, _ in h} == {d for d, _ in run[q][:5]} for q, h in short.hits.items())


def test_passages_without_generated_queries_use_their_own_score(fp16_store: GeneratedVectorStore) -> None:
    """d0 has no generated queries, "x" is not in the store at all: both score s + beta * s."""
    run = Run({"q": [("d0", 0.8), ("x", 0.7)]})
    q = unit(np.ones((1, DIM)))
    got = dict(rerank_maxsim(run, q, fp16_store, spec=SPEC, beta=BETA, k=2)["q"])
    assert got == pytest.approx({"d0": 0.8 * (1 + BETA), "x": 0.7 * (1 + BETA)})


def test_a_generated_query_that_copies_the_passage_scores_like_no_query(tmp_path: Path) -> None:
    """A copy's vector is the passage's (encoded as a query it is close to it); its max term is then s,
    exactly the rule for a passage with no generated queries, so a copy neither breaks nor games scoring."""
    rng = np.random.default_rng(2)
    p = unit(rng.normal(size=(2, DIM)))
    src = write_embeddings([generated_query_id("copy", "de", 0)], p[:1], SPEC, tmp_path / "q", kind="query",
                           progress=False)
    store = build_vector_store(src, tmp_path / "s", progress=False)
    q = unit(p[0] + p[1])
    s = q @ p.T
    run = Run({"q": [("copy", float(s[0])), ("none", float(s[1]))]})
    got = dict(rerank_maxsim(run, q[None], store, spec=SPEC, beta=BETA, k=2)["q"])
    assert got["copy"] == pytest.approx((1 + BETA) * s[0], abs=1e-3)
    assert got["none"] == pytest.approx((1 + BETA) * s[1], abs=1e-6)


def test_a_store_of_another_model_is_refused(data: Data, fp16_store: GeneratedVectorStore) -> None:
    other = SPEC.model_copy(update={"fingerprint": "other-weights"})
    run = first_stage(data, k=5)
    with pytest.raises(MismatchError, match="another model"):
        rerank_maxsim(run, data.queries, fp16_store, spec=other)
    p_other = write_embeddings(data.pids, data.pvec, other, data.p_dir.parent / "p-other", progress=False)
    with pytest.raises(MismatchError, match="another model"):
        build_index(p_other, data.p_dir.parent / "idx-other", generated=fp16_store.path, progress=False)


class TableEncoder:
    def __init__(self, table: dict[str, np.ndarray], spec: ModelSpec = SPEC) -> None:
        self.spec, self.table, self.dim = spec, table, DIM

    def encode(self, texts, kind, batch_size=32, progress=False, token_budget=None) -> np.ndarray:
        return np.stack([self.table[t] for t in texts])


def test_search_with_a_maxsim_reranker_encodes_once_reranks_and_cuts_to_k(
    data: Data, fp16_store: GeneratedVectorStore
) -> None:
    queries = [Query(f"q{i}", "de", f"text {i}") for i in range(len(data.queries))]
    enc = TableEncoder({q.text: v for q, v in zip(queries, data.queries, strict=True)})
    idx = load_index(build_index(data.p_dir, data.p_dir.parent / "idx", progress=False))
    run = search(idx, queries, enc, k=3, reranker=MaxSimReranker(fp16_store, beta=BETA, depth=len(data.pids)))
    for i, q in enumerate(data.queries):
        exact = data.exact(q)
        assert [d for d, _ in run[f"q{i}"]] == sorted(exact, key=lambda d: -exact[d])[:3]
    with pytest.raises(XdrError, match="must not exceed"):
        search(idx, queries, enc, k=10, reranker=MaxSimReranker(fp16_store, depth=5))
    with pytest.raises(MismatchError, match="another model"):
        search(idx, queries, TableEncoder(enc.table, SPEC.model_copy(update={"name": "x"})),
               reranker=MaxSimReranker(fp16_store))


# ------------------------------------------------------------------------------------ multi-vector
def test_multi_vector_index_equals_reranking_when_every_row_is_retrieved(
    data: Data, fp16_store: GeneratedVectorStore, tmp_path: Path
) -> None:
    idx = load_index(build_index(data.p_dir, tmp_path / "mv", generated=fp16_store.path, beta=BETA,
                                 progress=False))
    assert idx.ntotal == len(data.pids) + len(data.qids)
    idx.configure(rows_per_passage=idx.ntotal)  # every row: no term is missing
    run = search_vectors(idx, [f"q{i}" for i in range(len(data.queries))], data.queries, 10)
    for i, q in enumerate(data.queries):
        exact = data.exact(q)
        assert [d for d, _ in run[f"q{i}"]] == sorted(exact, key=lambda d: -exact[d])[:10]
    idx.configure(beta=0.0)  # beta 0: the passage rows alone decide
    plain = first_stage(data, k=10)
    assert search_vectors(idx, ["q0"], data.queries[:1], 10)["q0"] == plain["q0"]


def test_multi_vector_grouping_credits_unseen_rows_with_the_lowest_retrieved_score() -> None:
    # passages 0, 1, 2; passage 0 owns generated rows 3, 4; passage 1 none; passage 2 owns row 5
    mv = MultiVector(np.array([0, 2, 2, 3]), beta=1.0)
    scores = np.array([[0.95, 0.8, 0.7, -3.4e38]], np.float32)
    labels = np.array([[4, 1, 2, -1]])  # gen row of p0, passage p1, passage p2, a slot FAISS left empty
    s, p = mv.group(scores, labels, k=3)
    # p0: s unseen -> floor 0.7, m 0.95; p1: no queries -> 0.8 + 0.8; p2: s 0.7, m unseen -> floor 0.7
    assert p.tolist() == [[0, 1, 2]]
    np.testing.assert_allclose(s, [[1.65, 1.6, 1.4]], rtol=1e-6)


def test_multi_vector_refuses_a_store_with_passages_the_index_lacks(
    data: Data, fp16_store: GeneratedVectorStore, tmp_path: Path
) -> None:
    few = write_embeddings(data.pids[:10], data.pvec[:10], SPEC, tmp_path / "p10", progress=False)
    with pytest.raises(XdrError, match="not in the passage embeddings"):
        build_index(few, tmp_path / "mv", generated=fp16_store.path, progress=False)


# --------------------------------------------------------------------------------------------- CLI
@pytest.mark.slow
def test_cli_rerank_and_multi_vector_on_the_demo_corpus(me5_dir: Path, tmp_path: Path) -> None:
    """The demo questions in ar/de play generated queries for the first half of the passages (the rest
    have none); the other languages are searched, re-ranked and searched in a multi-vector index."""
    demo = Path(__file__).resolve().parents[1] / "examples" / "demo"
    qrels = dict(line.split()[::2] for line in (demo / "qrels.txt").read_text().splitlines())
    queries = [json.loads(line) for line in (demo / "queries.jsonl").read_text().splitlines()]
    corpus = [json.loads(line)["id"] for line in (demo / "corpus.jsonl").read_text().splitlines()]
    by_doc: dict[str, dict[str, list[str]]] = {}
    for q in queries:
        if q["lang"] in ("ar", "de"):
            by_doc.setdefault(qrels[q["id"]], {}).setdefault(q["lang"], []).append(q["text"])
    released = tmp_path / "gen.jsonl"
    released.write_text("".join(json.dumps({"docid": d, "text": "", "generated_queries": by_doc[d]}) + "\n"
                                for d in corpus[: len(corpus) // 2] if d in by_doc))
    test_q = tmp_path / "test.jsonl"
    test_q.write_text("".join(json.dumps(q) + "\n" for q in queries if q["lang"] not in ("ar", "de")))
    runner = CliRunner()

    def xdr(*args: object) -> None:
        r = runner.invoke(app, [str(a) for a in args])
        assert r.exit_code == 0, (args, r.output, r.exception)

    xdr("encode", demo / "corpus.jsonl", "--out", tmp_path / "emb")
    xdr("generate", "ingest", released, "--out", tmp_path / "gen")
    xdr("encode", tmp_path / "gen", "--kind", "generated", "--out", tmp_path / "gen-emb")
    xdr("maxsim-store", tmp_path / "gen-emb", "--dtype", "int8", "--out", tmp_path / "store")
    xdr("index", tmp_path / "emb", "--out", tmp_path / "idx")
    xdr("search", tmp_path / "idx", test_q, "--k", "5", "--out", tmp_path / "run")
    xdr("search", tmp_path / "idx", test_q, "--rerank", "maxsim", "--store", tmp_path / "store", "--k", "5",
        "--rerank-k", "20", "--out", tmp_path / "run-ms")
    xdr("index", tmp_path / "emb", "--with-generated", tmp_path / "store", "--out", tmp_path / "idx-mv")
    xdr("search", tmp_path / "idx-mv", test_q, "--k", "5", "--beta", "0.5", "--out", tmp_path / "run-mv")

    def top1(run: str) -> dict[str, str]:
        lines = (tmp_path / run / "run.trec").read_text().splitlines()
        assert len(lines) == 5 * sum(1 for _ in test_q.read_text().splitlines())
        return {q: d for q, _, d, rank, *_ in (x.split() for x in lines) if rank == "1"}

    def right(run: str) -> int:
        return sum(qrels[q] == d for q, d in top1(run).items())

    assert right("run-ms") >= right("run") - 1 and right("run-mv") >= right("run") - 1
    assert right("run-ms") > len(top1("run")) // 2  # sanity: it still answers most demo questions
