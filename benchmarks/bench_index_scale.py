"""Indexes at scale: build time and peak memory of `xdr.index.build_index` on a synthetic store, and the
recall/latency trade-off of IVF-PQ and HNSW.

A clustered synthetic store (by default 5M x 384, unit vectors around 20k cluster centres that are
themselves grouped into 500 topics; IVF is meaningless on uniform vectors) is written shard by shard as
an xdr embedding store in a temp directory, never held whole. For each factory (Flat, IVF-PQ, HNSW) a
child process builds the index and reports its wall time and its RSS high-water mark
(VmHWM); a second child loads it and searches 1,000 queries from the same distribution at
k = 100 over an nprobe / efSearch sweep: recall@100 against exact search (computed by streaming the
shards through `faiss.knn`) and milliseconds per query. The peer: the same builds the way a FAISS user
writes them without xdr (load the whole store, then `index.add`), at `--peer-size` rows, beside xdr's
streamed build of the same rows; memory is the figure compared, as a ratio.

Writes benchmarks/results/index_scale_<size>.json (with the machine and its load) and a recall-vs-latency
plot beside it (.png). Run niced on a shared machine; FAISS uses `--threads` threads.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NPROBES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
EF_SEARCHES = (16, 32, 64, 128, 256, 512)


def _rss_mb() -> float:
    """This process's RSS high-water mark. Not ``resource.getrusage``: a child's ``ru_maxrss`` starts from
    its parent's at fork."""
    with open("/proc/self/status") as f:
        return int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1)) / 1024


def _centres(dim: int, clusters: int, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((max(clusters // 40, 1), dim), dtype=np.float32)
    c = topics[rng.integers(len(topics), size=clusters)] + 0.8 * rng.standard_normal((clusters, dim), dtype=np.float32)
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def _points(centres, n: int, rng, noise: float):
    import numpy as np

    x = centres[rng.integers(len(centres), size=n)]
    x = x + (noise / np.sqrt(centres.shape[1])) * rng.standard_normal(x.shape, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def write_store(out: Path, size: int, dim: int, shard: int, clusters: int, noise: float) -> Path:
    """The synthetic store, written shard by shard through xdr's embedding-store writer."""
    import numpy as np

    from xdr.artifacts import Stage
    from xdr.config import ModelSpec
    from xdr.embeddings import EmbeddingWriter, store_params

    spec = ModelSpec(name="synthetic", path="synthetic", fingerprint=f"clusters{clusters}-noise{noise}", normalize=True)
    params = store_params(spec, "passage", dim, shard, normalized=True, source={"synthetic": size})
    writer = EmbeddingWriter(out, Stage.ENCODE, params)
    if writer.finished:
        return out
    centres = _centres(dim, clusters, 0)
    n = 0
    for n, lo in enumerate(range(0, size, shard), 1):
        if n - 1 < writer.kept:
            continue
        rows = min(shard, size - lo)
        writer.write(n - 1, [f"d{i}" for i in range(lo, lo + rows)],
                     _points(centres, rows, np.random.default_rng([1, n]), noise))
    return writer.finish(rows=size, shards=n)


def exact_top(store: Path, queries, k: int):
    """Exact top-k rows per query, streaming the store's shards through FAISS's brute-force search."""
    import faiss
    import numpy as np

    from xdr.embeddings import iter_shards

    heap = faiss.ResultHeap(len(queries), k, keep_max=True)
    offset = 0
    for _, emb in iter_shards(store):
        d, i = faiss.knn(queries, emb, k, metric=faiss.METRIC_INNER_PRODUCT)
        heap.add_result(d, np.where(i >= 0, i + offset, -1))
        offset += len(emb)
    heap.finalize()
    return heap.I


def child_build(a: dict) -> dict:
    """Build one index in this process; its RSS high-water mark is the build's peak memory."""
    import faiss

    faiss.omp_set_num_threads(a["threads"])
    base = _rss_mb()
    t0 = time.perf_counter()
    if a["peer"]:  # what one writes without xdr: the whole store in memory, then one add
        from xdr.embeddings import load_embeddings

        _, x = load_embeddings(a["store"])
        index = faiss.index_factory(x.shape[1], a["factory"], faiss.METRIC_INNER_PRODUCT)
        if not index.is_trained:
            import numpy as np

            index.train(x[np.sort(np.random.default_rng(0).choice(len(x), a["train_sample"], replace=False))])
        index.add(x)
        faiss.write_index(index, str(Path(a["out"]) / "index.faiss"))
    else:
        from xdr.index import build_index

        build_index(a["store"], a["out"], a["factory"], use_gpu=False, progress=False, train_sample=a["train_sample"])
    return {"build_s": time.perf_counter() - t0, "peak_rss_mb": _rss_mb(), "rss_before_mb": base,
            "index_mb": sum(f.stat().st_size for f in Path(a["out"]).glob("*.faiss")) / 2**20}


def child_search(a: dict) -> dict:
    """Load one index and sweep its knob: recall@k against the exact top k, and ms per query."""
    import faiss
    import numpy as np

    from xdr.index import load_index

    faiss.omp_set_num_threads(a["threads"])
    index = load_index(a["out"], use_gpu=False)
    queries = np.load(a["queries"])
    exact = np.load(a["exact"])
    truth = [{f"d{j}" for j in row} for row in exact]
    points = []
    for value in a["sweep"] or [None]:
        if value is not None:
            index.configure(**{a["knob"]: value})
        index.search(queries[:10], a["k"])  # warm-up
        t0 = time.perf_counter()
        _, ids = index.search(queries, a["k"])
        ms = (time.perf_counter() - t0) * 1000 / len(queries)
        recall = float(np.mean([len(truth[i] & set(row)) / a["k"] for i, row in enumerate(ids.tolist())]))
        points.append({a["knob"] or "exact": value, "recall": round(recall, 4), "ms_per_query": round(ms, 3)})
    return {"sweep": points, "load_peak_rss_mb": _rss_mb()}


def _child(kind: str, args: dict) -> dict:
    cmd = [sys.executable, __file__, f"--child-{kind}", json.dumps(args)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args["threads"])}
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if done.returncode:
        raise RuntimeError(f"{kind} {args.get('factory')}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for name, r in results["indexes"].items():
        pts = r["search"]["sweep"]
        ax.plot([p["ms_per_query"] for p in pts], [p["recall"] for p in pts], "o-", label=f"{name} ({r['factory']})")
        knob = next(k for k in pts[0] if k not in ("recall", "ms_per_query"))
        for p in pts:
            if p[knob] is not None:
                ax.annotate(str(p[knob]), (p["ms_per_query"], p["recall"]), fontsize=7, xytext=(3, -8),
                            textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel(f"ms per query (1,000 queries, k = 100, {results['threads']} threads)")
    ax.set_ylabel("recall@100 vs exact")
    ax.set_title(f"{results['size']:,} x {results['dim']} synthetic vectors")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=5_000_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--shard-size", type=int, default=100_000)
    ap.add_argument("--clusters", type=int, default=20_000)
    ap.add_argument("--noise", type=float, default=1.0, help="norm of a point's offset from its centre")
    ap.add_argument("--queries", type=int, default=1_000)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--ivf", default="IVF4096,PQ64", help="the IVF-PQ factory")
    ap.add_argument("--hnsw", default="HNSW32", help="the HNSW factory")
    ap.add_argument("--skip", default="", help="comma-separated of flat,ivfpq,hnsw to leave out")
    ap.add_argument("--peer-size", type=int, default=1_000_000, help="rows of the naive-build comparison (0: none)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=None, help="kept when given; a temp dir otherwise")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()

    import faiss
    import numpy as np

    from xdr.index import default_train_sample
    from xdr.runtime import machine_info

    out = a.out or ROOT / "benchmarks" / "results" / f"index_scale_{a.size // 1000}k.json"
    work = a.workdir or Path(tempfile.mkdtemp(prefix="xdr-index-scale-"))
    try:
        results = {"benchmark": "index_scale", "command": shlex.join(["python", *sys.argv]), "size": a.size,
                   "dim": a.dim, "k": a.k, "queries": a.queries, "clusters": a.clusters, "noise": a.noise,
                   "threads": a.threads, "machine": machine_info(), "indexes": {}}
        t0 = time.perf_counter()
        store = write_store(work / "store", a.size, a.dim, a.shard_size, a.clusters, a.noise)
        results["store_write_s"] = round(time.perf_counter() - t0, 1)
        results["store_mb"] = round(sum(f.stat().st_size for f in store.glob("*.npy")) / 2**20, 1)
        queries = _points(_centres(a.dim, a.clusters, 0), a.queries, np.random.default_rng(99), a.noise)
        np.save(work / "queries.npy", queries)
        faiss.omp_set_num_threads(a.threads)
        t0 = time.perf_counter()
        np.save(work / "exact.npy", exact_top(store, queries, a.k))
        results["exact_search_s"] = round(time.perf_counter() - t0, 1)
        print(f"store {results['store_write_s']} s, exact top-{a.k} {results['exact_search_s']} s", flush=True)
        plan = {"flat": ("Flat", None, ()), "ivfpq": (a.ivf, "nprobe", NPROBES),
                "hnsw": (a.hnsw, "ef_search", EF_SEARCHES)}
        for name, (factory, knob, sweep) in plan.items():
            if name in a.skip.split(","):
                continue
            empty = faiss.index_factory(a.dim, factory, faiss.METRIC_INNER_PRODUCT)
            nlist = getattr(faiss.try_extract_index_ivf(empty), "nlist", None)
            args = {"store": str(store), "out": str(work / name), "factory": factory, "threads": a.threads,
                    "train_sample": default_train_sample(empty, a.size) or None, "peer": False}
            build = _child("build", args)
            print(name, build, flush=True)
            sweep = [v for v in sweep if nlist is None or v <= nlist]
            search = _child("search", {**args, "queries": str(work / "queries.npy"), "exact": str(work / "exact.npy"),
                                       "k": a.k, "knob": knob, "sweep": sweep})
            print(name, search, flush=True)
            results["indexes"][name] = {"factory": factory, "train_sample": args["train_sample"], **build,
                                        "search": search}
            shutil.rmtree(work / name)
        if a.peer_size:
            results["peer"] = peer(a, work)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
        plot(results, out.with_suffix(".png"))
        print(f"wrote {out} and {out.with_suffix('.png')}")
    finally:
        if a.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def peer(a: argparse.Namespace, work: Path) -> dict:
    """xdr's streamed build against load-everything-then-add, on the same ``--peer-size`` rows."""
    import faiss

    from xdr.index import default_train_sample

    store = write_store(work / "peer-store", a.peer_size, a.dim, a.shard_size, a.clusters, a.noise)
    rows = {}
    for factory in ("Flat", a.ivf):
        sample = default_train_sample(faiss.index_factory(a.dim, factory, faiss.METRIC_INNER_PRODUCT), a.peer_size)
        pair = {}
        for who in ("xdr", "faiss"):
            args = {"store": str(store), "out": str(work / f"peer-{who}"), "factory": factory, "threads": a.threads,
                    "train_sample": sample or None, "peer": who == "faiss"}
            Path(args["out"]).mkdir(exist_ok=True)
            pair[who] = _child("build", args)
            shutil.rmtree(args["out"])
        pair["peak_rss_ratio_xdr_to_faiss"] = round(pair["xdr"]["peak_rss_mb"] / pair["faiss"]["peak_rss_mb"], 3)
        pair["build_time_ratio_xdr_to_faiss"] = round(pair["xdr"]["build_s"] / pair["faiss"]["build_s"], 3)
        print(factory, pair, flush=True)
        rows[factory] = pair
    shutil.rmtree(store)
    return {"size": a.peer_size, "builds": rows}


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] in ("--child-build", "--child-search"):
        fn = child_build if sys.argv[1] == "--child-build" else child_search
        print(json.dumps(fn(json.loads(sys.argv[2]))))
        sys.exit(0)
    sys.exit(main())
