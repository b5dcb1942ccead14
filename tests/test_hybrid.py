"""Search-time query expansion (concat, fuse), BM25 on translations, hybrid fusion (rrf, score), and their
composition with a plain index, an xQG-fused index and max-sim re-ranking."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from xdr.augment import fuse
from xdr.cli import app
from xdr.config import ModelSpec
from xdr.data.schema import Passage, Query
from xdr.embeddings import write_embeddings
from xdr.errors import XdrError
from xdr.expand import ExpandSettings, run_expansion
from xdr.expand.prompts import TRANSLATE_SYSTEM
from xdr.generate.artifact import generated_query_id
from xdr.generate.llm import Prompt
from xdr.index import build_index, load_index
from xdr.index.bm25 import BM25Index, build_bm25
from xdr.maxsim import MaxSimReranker, build_vector_store, rerank_maxsim
from xdr.search import Hybrid, QueryExpansion, english_queries, fuse_rankings, search, search_bm25, search_vectors

SPEC = ModelSpec(name="toy", path="toy", fingerprint="f1", normalize=True)
DIM = 8
CORPUS = [
    Passage("d0", "Lake Baikal in Siberia is the deepest lake in the world, 1642 metres deep.", "Lake Baikal"),
    Passage("d1", "Gabriel García Márquez wrote One Hundred Years of Solitude in 1967.", ""),
    Passage("d2", "Honey bees dance to tell the hive where flowers are.", "Waggle dance"),
    Passage("d3", "The Eiffel Tower was built for the 1889 World's Fair in Paris.", ""),
]
QUERIES = [Query("q1", "de", "Wie tief ist der Baikalsee?"), Query("q2", "es", "¿Quién escribió esa novela?"),
           Query("q3", "de", "Warum tanzen Bienen?")]
ANSWERS = {
    "Wie tief ist der Baikalsee?": ("How deep is Lake Baikal?", "Siberia deepest lake"),
    "¿Quién escribió esa novela?": ("Who wrote that novel?", "García Márquez solitude"),
    "Warum tanzen Bienen?": ("Why do bees dance?", ""),  # an empty expansion: dropped
}


class Canned:
    """A chat back end that translates and expands from ANSWERS (in process: no server needed here)."""

    name, config = "canned", {"kind": "canned"}

    def complete(self, prompts: Sequence[Prompt]) -> list[list[str]]:
        out = []
        for p in prompts:
            text = p.messages[-1]["content"]
            if p.messages[0]["content"] == TRANSLATE_SYSTEM:
                out.append([ANSWERS[text][0] for _ in p.seeds])
            else:
                query = text.split("Query: ", 1)[1]
                exp = next(e for source, (t, e) in ANSWERS.items() if query in (source, t))
                out.append([f"{exp} {k}".strip() if exp else "" for k in range(len(p.seeds))])
        return out


def same(a: list[tuple[str, float]], b: list[tuple[str, float]]) -> bool:
    """The same ranking with the same scores (to float32 precision)."""
    return [d for d, _ in a] == [d for d, _ in b] and np.allclose([x for _, x in a], [x for _, x in b], atol=1e-5)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


class HashEncoder:
    """Deterministic vectors per text; remembers what it encoded and at which query length."""

    def __init__(self, spec: ModelSpec = SPEC, log: list[tuple[int, list[str]]] | None = None) -> None:
        self.spec, self.dim, self.log = spec, DIM, log if log is not None else []

    def vec(self, text: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "big")
        return unit(np.random.default_rng(seed).normal(size=DIM))

    def encode(self, texts, kind, batch_size=32, progress=False, token_budget=None) -> np.ndarray:
        self.log.append((self.spec.query_max_length, list(texts)))
        return np.stack([self.vec(t) for t in texts])

    def with_spec(self, spec: ModelSpec) -> HashEncoder:
        return HashEncoder(spec, self.log)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("hybrid")
    enc = HashEncoder()
    pvec = np.stack([enc.vec(p.text) for p in CORPUS])
    p_dir = write_embeddings([p.id for p in CORPUS], pvec, SPEC, root / "p", progress=False)
    gids = [generated_query_id(p.id, "de", k) for p in CORPUS[:3] for k in range(2)]
    gvec = unit(np.random.default_rng(1).normal(size=(len(gids), DIM)))
    g_dir = write_embeddings(gids, gvec, SPEC, root / "g", kind="query", progress=False)
    owner = np.repeat(np.arange(3), 2)
    fused = fuse(pvec, owner, gvec, 0.3, "mean", renormalize=True)
    return {
        "root": root, "enc": enc, "plain": load_index(build_index(p_dir, root / "idx", progress=False)),
        "fused": load_index(build_index(write_embeddings([p.id for p in CORPUS], fused, SPEC, root / "f",
                                                         progress=False), root / "fidx", progress=False)),
        "store": build_vector_store(g_dir, root / "store", progress=False),
        "bm25": build_bm25(CORPUS, root / "bm25"),
        "te": run_expansion(QUERIES, Canned(), root / "te", ExpandSettings(order="translate-expand", samples=2),
                            progress=False),
    }


def test_rrf_and_score_fusion_exactly() -> None:
    dense = [("a", 0.9), ("b", 0.5), ("c", 0.1)]
    sparse = [("c", 12.0), ("d", 2.0)]
    rrf = dict(fuse_rankings(dense, sparse, "rrf", 0.5, 60))
    assert rrf == pytest.approx({"a": 1 / 61, "b": 1 / 62, "c": 1 / 63 + 1 / 61, "d": 1 / 62})
    assert [d for d, _ in fuse_rankings(dense, sparse, "rrf", 0.5, 60)] == ["c", "a", "b", "d"]
    score = dict(fuse_rankings(dense, sparse, "score", 0.25, 60))
    assert score == pytest.approx({"a": 0.75, "b": 0.75 * 0.5, "c": 0.25, "d": 0.0})


def test_bm25_index_ranks_english_translations(world: dict[str, Any], tmp_path: Path) -> None:
    bm = BM25Index(world["bm25"])
    assert [d for d, _ in bm.search(["how deep is lake baikal"], 4)[0]][:1] == ["d0"]
    assert bm.search(["the of and"], 4) == [[]]  # stop words only: no passage scores
    assert json.loads((world["bm25"] / "meta.json").read_text())["params"]["passages"] == 4
    texts = english_queries(world["te"], QUERIES, expanded=False)
    assert texts == {"q1": "How deep is Lake Baikal?", "q2": "Who wrote that novel?", "q3": "Why do bees dance?"}
    expanded = english_queries(world["te"], QUERIES, expanded=True)
    assert expanded["q2"] == "Who wrote that novel? García Márquez solitude 0 Who wrote that novel? García " \
        "Márquez solitude 1" and "q3" not in expanded  # q3's expansions were empty
    run = search_bm25(world["bm25"], expanded, k=2)
    assert run["q2"][0][0] == "d1" and run["q1"][0][0] == "d0"
    with pytest.raises(XdrError, match="not a BM25 index"):
        BM25Index(world["root"] / "idx")


def test_fuse_expansion_is_the_weighted_renormalised_mean(world: dict[str, Any]) -> None:
    enc = world["enc"]
    exp = QueryExpansion(expansions=world["te"], combine="fuse", weight=0.3)
    run = search(world["plain"], QUERIES, enc, k=4, expansion=exp)
    q = enc.vec(QUERIES[0].text)
    e = (enc.vec("Siberia deepest lake 0") + enc.vec("Siberia deepest lake 1")) / 2
    want = search_vectors(world["plain"], ["q1"], unit(0.7 * q + 0.3 * e)[None], 4)
    assert same(run["q1"], want["q1"])
    plain = search(world["plain"], QUERIES, enc, k=4)
    assert run["q3"] == plain["q3"]  # no kept expansion: searched as it is
    assert run.settings["expansion"]["expanded_queries"] == 2 and run.settings["expansion"]["combine"] == "fuse"


def test_concat_puts_the_query_first_at_the_passage_length(world: dict[str, Any]) -> None:
    log: list[tuple[int, list[str]]] = []
    spec = SPEC.model_copy(update={"query_max_length": 32, "passage_max_length": 200})
    search(world["plain"], QUERIES, HashEncoder(spec, log), k=2,
           expansion=QueryExpansion(expansions=world["te"]))
    length, texts = log[-1]
    assert length == 200
    assert texts[0] == "Wie tief ist der Baikalsee? Siberia deepest lake 0 Siberia deepest lake 1"
    assert texts[2] == "Warum tanzen Bienen?"
    search(world["plain"], QUERIES, HashEncoder(spec, log), k=2,
           expansion=QueryExpansion(expansions=world["te"], max_length=64))
    assert log[-1][0] == 64


def test_concat_truncation_cuts_the_expansion_never_the_query(tiny_bert_dir: Path) -> None:
    from xdr.models.encoder import Encoder

    enc = Encoder.load(ModelSpec(name="tiny", path=str(tiny_bert_dir), fingerprint="t", query_max_length=12))
    query = "dense retrieval encodes queries"
    ids = enc.tokenize([f"{query} {'passage text ' * 40}"], "query")[0]
    alone = enc.tokenize([query], "query")[0]
    assert len(ids) == 12 and ids[: len(alone) - 1] == alone[:-1]


def test_every_step_composes_fused_index_maxsim_expansion_hybrid(world: dict[str, Any]) -> None:
    enc = world["enc"]
    exp = QueryExpansion(expansions=world["te"], combine="fuse", weight=0.3)
    texts = english_queries(world["te"], QUERIES, expanded=True)
    rr = MaxSimReranker(world["store"], beta=0.5, depth=4)
    hy = Hybrid(world["bm25"], texts, method="rrf", depth=4)
    run = search(world["fused"], QUERIES, enc, k=3, reranker=rr, expansion=exp, hybrid=hy)
    emb = np.stack([unit(0.7 * enc.vec(QUERIES[0].text) + 0.3 * (enc.vec("Siberia deepest lake 0")
                                                                 + enc.vec("Siberia deepest lake 1")) / 2)])
    dense = rerank_maxsim(search_vectors(world["fused"], ["q1"], emb, 4), emb, world["store"], spec=SPEC, k=4)
    sparse = search_bm25(world["bm25"], {"q1": texts["q1"]}, 4)
    assert same(run["q1"], fuse_rankings(dense["q1"], sparse["q1"], "rrf", 0.5, 60)[:3])
    assert set(run.settings) >= {"expansion", "rerank", "hybrid", "index"} and run.settings["k"] == 3
    assert run.settings["hybrid"]["bm25"]["index"] == str(world["bm25"])


def test_several_strategies_need_a_choice(tmp_path: Path) -> None:
    path = run_expansion(QUERIES, Canned(), tmp_path / "x", ExpandSettings(strategies=("zero-shot", "rar")),
                         progress=False)
    with pytest.raises(XdrError, match="choose one"):
        QueryExpansion(expansions=path).texts()
    assert set(QueryExpansion(expansions=path, strategy="rar").texts()) == {"q1", "q2"}
    with pytest.raises(XdrError, match="translate-expand"):
        english_queries(path, QUERIES, expanded=False)


@pytest.mark.slow
def test_cli_bm25_and_hybrid_search_with_expansions(me5_dir: Path, tmp_path: Path, world: dict[str, Any]) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": p.id, "title": p.title, "text": p.text}) + "\n" for p in CORPUS))
    queries = tmp_path / "q.jsonl"
    queries.write_text("".join(json.dumps({"id": q.id, "lang": q.lang, "text": q.text}) + "\n" for q in QUERIES))
    runner = CliRunner()
    for args in (["bm25", str(corpus), "--out", str(tmp_path / "bm25")],
                 ["encode", str(corpus), "--model", "me5-small", "--out", str(tmp_path / "emb")],
                 ["index", str(tmp_path / "emb"), "--out", str(tmp_path / "idx")]):
        r = runner.invoke(app, args)
        assert r.exit_code == 0, r.output
    common = [str(tmp_path / "idx"), str(queries), "--expansions", str(world["te"]), "--k", "3"]
    config = tmp_path / "tuned.yaml"
    config.write_text("search: {expansion_weight: 0.2, beta: 0.3}\n")
    r = runner.invoke(app, ["search", *common, "--combine", "fuse", "--config", str(config), "--bm25",
                            str(tmp_path / "bm25"), "--bm25-query", "expanded", "--hybrid", "score",
                            "--out", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    params = json.loads((tmp_path / "run" / "meta.json").read_text())["params"]
    assert params["expansion"]["weight"] == 0.2 and params["hybrid"]["method"] == "score"
    r = runner.invoke(app, ["search", *common, "--bm25", str(tmp_path / "bm25"), "--bm25-only",
                            "--out", str(tmp_path / "bm"), "--corpus", str(corpus)])
    assert r.exit_code == 0, r.output
    first = (tmp_path / "bm" / "run.trec").read_text().splitlines()[0].split()
    assert first[:3] == ["q1", "Q0", "d0"]
