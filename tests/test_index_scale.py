"""Indexes for large corpora: sample sizes, streamed builds, sharded indexes, memory-mapped loading and
the GPU FAISS result limit."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import faiss
import numpy as np
import pytest

from xdr.config import ModelSpec
from xdr.embeddings import write_embeddings
from xdr.errors import XdrError, XdrWarning
from xdr.index import GPU_MAX_K, DenseIndex, build_index, default_train_sample, load_index
from xdr.index.build import TRAINED_FILE
from xdr.search import search_vectors

SPEC = ModelSpec(name="toy", path="/models/toy", fingerprint="abc")
DIM = 16


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(40, DIM))
    vecs = unit(centres[rng.integers(40, size=2500)] + 0.3 * rng.normal(size=(2500, DIM)))
    queries = unit(centres[rng.integers(40, size=20)] + 0.3 * rng.normal(size=(20, DIM)))
    ids = [f"d{i}" for i in range(len(vecs))]
    emb = write_embeddings(ids, vecs, SPEC, tmp_path_factory.mktemp("emb"), shard_size=300, progress=False)
    return emb, ids, vecs, queries


class Killed(Exception):
    """Stands in for a kill in the middle of a build."""


def exact(vecs: np.ndarray, queries: np.ndarray, ids: list[str], k: int) -> list[list[str]]:
    return [[ids[j] for j in row] for row in np.argsort(-(queries @ vecs.T), axis=1, kind="stable")[:, :k]]


def test_default_train_sample_follows_faiss_guidance() -> None:
    def rows(factory: str, n: int) -> int:
        return default_train_sample(faiss.index_factory(DIM, factory, faiss.METRIC_INNER_PRODUCT), n)

    assert rows("Flat", 10**7) == 0 and rows("HNSW32", 10**7) == 0  # nothing to train
    assert rows("IVF4096,PQ8", 10**8) == 64 * 4096  # within FAISS's 30-256 per list
    assert rows("IVF65536,Flat", 10**8) == 39 * 65536  # the cap never goes below FAISS's minimum per list
    assert rows("IVF16384,Flat", 10**8) == 1 << 20  # capped
    assert rows("IVF16,Flat", 10**8) == 1 << 16  # small IVF: enough for an 8-bit PQ too
    assert rows("PQ8", 10**8) == 1 << 16
    assert rows("IVF4096,PQ8", 5000) == 5000  # never more than the store holds


def test_build_records_the_resolved_sample(store: tuple, tmp_path: Path) -> None:
    out = build_index(store[0], tmp_path / "ivf", "IVF8,Flat", progress=False)
    params = json.loads((out / "meta.json").read_text())["params"]
    assert params["train_sample"] == 2500 and params["shards"] == 1
    with pytest.raises(XdrError, match="train_sample must be positive"):
        build_index(store[0], tmp_path / "bad", "IVF8,Flat", train_sample=0, progress=False)


@pytest.mark.parametrize("factory", ["Flat", "IVF8,Flat"])
def test_a_sharded_index_searches_like_one_index(store: tuple, tmp_path: Path, factory: str) -> None:
    emb, ids, vecs, queries = store
    one = load_index(build_index(emb, tmp_path / "one", factory, progress=False))
    out = build_index(emb, tmp_path / "three", factory, shards=3, progress=False)
    assert sorted(p.name for p in out.glob("*.faiss")) == ["part-00000.faiss", "part-00001.faiss", "part-00002.faiss"]
    assert not (out / TRAINED_FILE).exists()
    parts = [faiss.read_index(str(p)).ntotal for p in sorted(out.glob("part-*.faiss"))]
    assert sum(parts) == 2500 and min(parts) >= 600  # contiguous, about equal
    three = load_index(out)
    assert (three.ntotal, three.nlist) == (2500, one.nlist)
    assert three.settings == one.settings  # an IVF's default nprobe reaches every shard
    scores, found = three.search(queries, 10)
    assert found.tolist() == exact(vecs, queries, ids, 10)
    np.testing.assert_allclose(scores, one.search(queries, 10)[0], rtol=1e-5)
    run = search_vectors(three, [f"q{i}" for i in range(len(queries))], queries, 10)
    assert run["q0"][0][0] == found[0][0]


def test_nprobe_reaches_every_shard(store: tuple, tmp_path: Path) -> None:
    emb, _, _, queries = store
    out = build_index(emb, tmp_path / "ivf", "IVF8,Flat", shards=2, progress=False)
    narrow, wide = load_index(out, nprobe=1), load_index(out, nprobe=8)
    assert narrow.settings == {"nprobe": 1}
    hits = lambda index: int((index.search(queries, 2500)[1] != None).sum())  # noqa: E731, E711
    assert hits(narrow) < hits(wide) == 2500 * len(queries)


def test_a_killed_sharded_build_resumes_with_the_missing_shards(
    store: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import xdr.index.build as build

    emb, ids, vecs, queries = store
    written: list[str] = []
    crashed: list[bool] = []
    real = build._write

    def crash_on_second(index: faiss.Index, path: Path, on_gpu: bool) -> None:
        if path.name == "part-00001.faiss" and not crashed:
            crashed.append(True)
            raise Killed
        written.append(path.name)
        real(index, path, on_gpu)

    monkeypatch.setattr(build, "_write", crash_on_second)
    out = tmp_path / "idx"
    with pytest.raises(Killed):
        build_index(emb, out, "IVF8,Flat", shards=3, progress=False)
    assert (out / "part-00000.faiss").exists() and (out / TRAINED_FILE).exists() and not (out / "_DONE").exists()
    assert written == [TRAINED_FILE, "part-00000.faiss"]
    first = (out / "part-00000.faiss").stat().st_mtime_ns
    written[:] = ["resumed"]
    build_index(emb, out, "IVF8,Flat", shards=3, progress=False)
    # the quantizer is read back, shard 0 kept: only the missing shards are built
    assert written == ["resumed", "part-00001.faiss", "part-00002.faiss"]
    assert (out / "part-00000.faiss").stat().st_mtime_ns == first
    assert load_index(out, nprobe=8).search(queries, 10)[1].tolist() == exact(vecs, queries, ids, 10)


def test_sharding_is_refused_where_it_cannot_work(store: tuple, tmp_path: Path) -> None:
    with pytest.raises(XdrError, match="9 shards into 10 index shards"):
        build_index(store[0], tmp_path / "many", shards=10, progress=False)
    with pytest.raises(XdrError, match="positive integer"):
        build_index(store[0], tmp_path / "zero", shards=0, progress=False)


def test_mmap_loading_gives_the_same_results(store: tuple, tmp_path: Path) -> None:
    emb, _, _, queries = store
    for factory in ("Flat", "IVF8,Flat", "HNSW16"):
        out = build_index(emb, tmp_path / factory.replace(",", "_"), factory, shards=2, progress=False)
        in_ram, mapped = load_index(out), load_index(out, mmap=True)
        np.testing.assert_array_equal(mapped.search(queries, 10)[1], in_ram.search(queries, 10)[1])


def test_gpu_searches_past_the_gpu_k_limit_run_on_a_cpu_copy(
    store: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checked on the CPU by the rule itself: an index that says it is on a GPU must not hand FAISS a k
    beyond GPU_MAX_K; the search moves to a CPU copy (made once, with a warning) and returns the full answer."""
    _, ids, vecs, queries = store
    dense = DenseIndex.from_vectors(ids, vecs, SPEC, use_gpu=False)
    asked = []

    class GpuLike(faiss.IndexFlatIP):  # stands in for a GPU index: fails past the limit as GPU FAISS does
        def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
            asked.append(k)
            if k > GPU_MAX_K:
                raise RuntimeError("k > GPU_MAX_K")
            return super().search(q, k)

    gpu_like = GpuLike(DIM)
    gpu_like.add(vecs)
    copies = []
    monkeypatch.setattr(faiss, "index_gpu_to_cpu", lambda index: copies.append(index) or dense.index, raising=False)
    on_gpu = DenseIndex(gpu_like, dense._ids, SPEC, "ip", "Flat", "gpu-index", True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert on_gpu.search(queries, GPU_MAX_K)[1].shape == (20, GPU_MAX_K)
    with pytest.warns(XdrWarning, match="at most 2048 rows per query; searching 2500 on a CPU copy"):
        _, found = on_gpu.search(queries, 2500)
    assert found.tolist() == dense.search(queries, 2500)[1].tolist()
    on_gpu.search(queries, 2400)
    assert asked == [GPU_MAX_K] and len(copies) == 1  # the copy is made once and reused


def test_streamed_build_peak_memory_is_the_index_plus_the_shards_in_flight(tmp_path: Path) -> None:
    """A flat index over 76 MB of vectors in 15 MB shards: FAISS's own growth peaks at ~1.6x the index;
    the build stays near the index plus the shard being added and the one being read."""
    n, dim, shard = 52_125, 384, 10_425  # 5 shards: the last one makes FAISS reallocate
    rng = np.random.default_rng(0)
    vecs = unit(rng.normal(size=(n, dim)))
    emb = write_embeddings([f"d{i}" for i in range(n)], vecs, SPEC, tmp_path / "emb", shard_size=shard,
                           progress=False)
    del vecs
    script = textwrap.dedent("""
        import re, sys
        import faiss, numpy, pyarrow
        from xdr.index import build_index
        def hwm():  # this process's own RSS high-water mark (ru_maxrss would include the parent's at fork)
            return int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) / 1024
        base = hwm()
        build_index(sys.argv[1], sys.argv[2], progress=False)
        print(hwm() - base)
    """)
    done = subprocess.run([sys.executable, "-c", script, str(emb), str(tmp_path / "idx")], capture_output=True,
                          text=True, check=True)
    grew_mb = float(done.stdout.strip().splitlines()[-1])
    index_mb, shard_mb = n * dim * 4 / 2**20, shard * dim * 4 / 2**20
    assert grew_mb < index_mb + 3 * shard_mb, (grew_mb, index_mb)  # measured: index + 2.3 shards; 3.6 without


def test_cli_builds_a_sharded_index_and_search_records_nprobe(tiny_bert_dir: Path, tmp_path: Path) -> None:
    """`xdr index --shards` and `xdr search --nprobe` end to end: the knob in force is in the search
    artifact's meta (efSearch takes the same path: `DenseIndex.settings` into the run's settings)."""
    from xdr.models.encoder import Encoder

    spec = ModelSpec(name="tiny", path=str(tiny_bert_dir), normalize=True)
    texts = [f"passage number {i} about {w}" for i, w in enumerate(["rivers", "mountains", "cities", "songs"] * 30)]
    vecs = Encoder.load(spec, device="cpu").encode(texts, "passage")
    emb = write_embeddings([f"p{i}" for i in range(len(texts))], vecs, spec, tmp_path / "emb", shard_size=40,
                           progress=False)
    q = tmp_path / "q.jsonl"
    q.write_text('{"id": "1", "lang": "en", "text": "about rivers"}\n')

    def xdr(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "xdr", *args], capture_output=True, text=True, check=False)

    idx, run = tmp_path / "idx", tmp_path / "run"
    r = xdr("index", str(emb), "--out", str(idx), "--factory", "IVF4,Flat", "--shards", "3", "--no-gpu")
    assert r.returncode == 0, r.stderr
    assert json.loads((idx / "meta.json").read_text())["params"]["shards"] == 3
    r = xdr("search", str(idx), str(q), "--k", "5", "--nprobe", "2", "--out", str(run))
    assert r.returncode == 0, r.stderr
    assert json.loads((run / "meta.json").read_text())["params"]["nprobe"] == 2
    assert len((run / "run.trec").read_text().splitlines()) == 5
    r = xdr("index", str(emb), "--out", str(tmp_path / "bad"), "--shards", "0")
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_pq_indexes_skip_polysemous_training() -> None:
    """FAISS's factory asks for polysemous training of PQ codes, which xdr's search never uses and which
    took over 250 s where the training itself took 34 s (IVF16,PQ16 on 5,000 vectors, one thread)."""
    from xdr.index.dense import _new_index

    for factory in ("IVF4,PQ4", "PQ4"):
        index = _new_index(DIM, factory, "ip")
        ivf = faiss.try_extract_index_ivf(index)
        assert not faiss.downcast_index(ivf if ivf is not None else index).do_polysemous_training
