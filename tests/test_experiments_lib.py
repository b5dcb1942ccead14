"""experiments/lib.py: its in-memory copies agree with the library code they stand in for."""

from __future__ import annotations

import itertools
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from conftest import load_script

from xdr.config import ModelSpec
from xdr.data.runs import Run
from xdr.embeddings import write_embeddings
from xdr.generate.artifact import generated_query_id
from xdr.maxsim import build_vector_store, rerank_maxsim

REPO = Path(__file__).resolve().parents[1]
SPEC = ModelSpec(name="toy", path="toy", fingerprint="f1")


@pytest.fixture(scope="module")
def lib() -> ModuleType:
    """experiments/lib.py, which the scripts import as ``lib`` (experiments/ is not a package)."""
    return load_script("experiments/lib.py", "experiments_lib")


def tied_unit_vectors(n: int, seed: int) -> np.ndarray:
    """Unit vectors in 4 dimensions with entries in {0, ±0.5, ±1}: exact in float16, so products are exact
    and many scores tie."""
    halves = [np.array(v) * 0.5 for v in itertools.product((-1, 1), repeat=4)]
    axes = [s * np.eye(4)[i] for i in range(4) for s in (-1, 1)]
    pool = np.array(halves + axes, np.float32)
    return pool[np.random.default_rng(seed).integers(len(pool), size=n)]


def test_ranking_breaks_ties_by_corpus_order_as_xdr_sorts_do(lib: ModuleType, tmp_path: Path) -> None:
    passages, queries = tied_unit_vectors(40, 0), tied_unit_vectors(30, 1)
    pids = [f"p{i}" for i in range(len(passages))]
    qids = [f"q{i}" for i in range(len(queries))]
    scores = queries @ passages.T
    assert any(len(set(row[:11])) < 11 for row in np.sort(-scores, axis=1))  # the check has ties to break
    # re-ranking with beta 0 sorts a corpus-order candidate list by the first stage's scores alone
    g_dir = write_embeddings([generated_query_id("p0", "de", 0)], passages[:1], SPEC, tmp_path / "gen",
                             kind="query", progress=False)
    store = build_vector_store(g_dir, tmp_path / "store", progress=False)
    first = Run({q: [(p, float(s)) for p, s in zip(pids, row, strict=True)] for q, row in zip(qids, scores,
                                                                                                 strict=True)})
    reranked = rerank_maxsim(first, queries, store, spec=SPEC, beta=0.0, k=len(pids))
    assert lib.ranking(scores, qids, pids, 10) == {q: [d for d, _ in reranked[q][:10]] for q in qids}


def test_maxsim_scores_equal_rerank_maxsim(lib: ModuleType, tmp_path: Path) -> None:
    passages, queries = tied_unit_vectors(12, 2), tied_unit_vectors(5, 3)
    pids = [f"p{i}" for i in range(len(passages))]
    counts = [i % 4 for i in range(len(passages))]  # p0, p4, p8 have no generated queries
    gen = np.concatenate([tied_unit_vectors(c, 10 + i) for i, c in enumerate(counts)])
    owner = np.repeat(np.arange(len(passages)), counts)
    gids = [generated_query_id(pids[o], "de", k) for o, k in zip(owner, itertools.count(), strict=False)]
    g_dir = write_embeddings(gids, gen, SPEC, tmp_path / "gen", kind="query", progress=False)
    store = build_vector_store(g_dir, tmp_path / "store", progress=False)
    dense = queries @ passages.T
    qids = [f"q{i}" for i in range(len(queries))]
    first = Run({q: [(p, float(s)) for p, s in zip(pids, row, strict=True)] for q, row in zip(qids, dense,
                                                                                                 strict=True)})
    expected = rerank_maxsim(first, queries, store, spec=SPEC, beta=0.5, k=len(pids))
    got = lib.maxsim_scores(dense, queries @ gen.T, owner, 0.5)
    for i, q in enumerate(qids):
        assert dict(expected[q]) == {p: float(got[i, j]) for j, p in enumerate(pids)}


def test_hard_negatives_are_the_best_non_positives(lib: ModuleType) -> None:
    scores = np.array([[0.9, 0.5, 0.7, 0.7], [0.1, 0.2, 0.3, 0.4]], np.float32)
    assert lib.hard_negatives(scores, [0, 3], 2) == [[2, 3], [2, 1]]  # a tie keeps column order


def test_cached_makes_once(lib: ModuleType, tmp_path: Path) -> None:
    calls = []

    def make() -> np.ndarray:
        calls.append(1)
        return np.arange(3, dtype=np.float32)

    path = tmp_path / "sub" / "x.npy"
    first, again = lib.cached(path, make), lib.cached(path, make)
    assert calls == [1] and np.array_equal(first, again)
    assert [p.name for p in path.parent.iterdir()] == ["x.npy"]  # no temp file left behind
