"""Overhead of xdr's search path over raw FAISS, on the same index and the same query vectors.

Builds an exact inner-product index with `xdr.index.build_index` over random unit vectors (by default
200k x 384, 2,000 queries, k = 100) and measures xdr's search path without query encoding
(`search_vectors`: dim check, FAISS search, row numbers mapped to passage ids, the ranked lists of a
`Run`) against raw FAISS `index.search` two ways:

  added      `search_vectors` over a stand-in index that replays FAISS's own answer at no cost: exactly
             the time xdr adds; overhead = best(added) / best(raw). This is the figure held to the
             5% target, because it stays meaningful on a shared, loaded machine.
  end_to_end `search_vectors` on the real index against raw FAISS, interleaved so drift in clock speed or
             load hits both alike; overhead = best(xdr) / best(raw) - 1. Other processes only ever add
             time, so the best of the repeats is the closest to the code's own cost; on a quiet machine
             both figures agree.

Writes benchmarks/results/search_overhead_cpu.json with the machine and its load; exit status 1 over
target.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np

from xdr.config import ModelSpec
from xdr.embeddings import write_embeddings
from xdr.index import INDEX_FILE, build_index, load_index
from xdr.runtime import machine_info
from xdr.search import search_vectors

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.05


class ReplayIndex:
    """Stands in for a FAISS index and returns a recorded answer, so that timing xdr over it measures
    only the work xdr adds (the copies it hands out count against xdr)."""

    def __init__(self, real: faiss.Index, scores: np.ndarray, labels: np.ndarray) -> None:
        self.d, self.ntotal, self._scores, self._labels = real.d, real.ntotal, scores, labels

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self._scores.copy(), self._labels.copy()


def timed(call: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    call()
    return time.perf_counter() - t0


def unit_vectors(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passages", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=2_000)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "search_overhead_cpu.json")
    a = ap.parse_args()

    rng = np.random.default_rng(0)
    corpus, queries = unit_vectors(rng, a.passages, a.dim), unit_vectors(rng, a.queries, a.dim)
    qids = [f"q{i}" for i in range(a.queries)]
    with tempfile.TemporaryDirectory() as tmp:
        spec = ModelSpec(name="random-unit-vectors", path="-")
        emb = write_embeddings([f"doc{i}" for i in range(a.passages)], corpus, spec, Path(tmp) / "emb",
                               progress=False)
        index_dir = build_index(emb, Path(tmp) / "index", use_gpu=False, progress=False)
        raw = faiss.read_index(str(index_dir / INDEX_FILE))
        dense = load_index(index_dir, use_gpu=False)

    raw_answer = raw.search(queries, a.k)  # also warms caches and thread pools
    replay = copy.copy(dense)
    replay.index = ReplayIndex(raw, *raw_answer)
    load_before = os.getloadavg()
    seconds: dict[str, list[float]] = {"raw": [], "xdr": [], "added": []}
    for _ in range(a.repeats):
        seconds["raw"].append(timed(lambda: raw.search(queries, a.k)))
        seconds["xdr"].append(timed(lambda: search_vectors(dense, qids, queries, a.k)))
        seconds["added"].extend(timed(lambda: search_vectors(replay, qids, queries, a.k)) for _ in range(5))

    best = {name: min(s) for name, s in seconds.items()}
    median = {name: statistics.median(s) for name, s in seconds.items()}
    overhead = best["added"] / best["raw"]
    result = {
        "benchmark": "search_overhead",
        "command": shlex.join(["python", "benchmarks/bench_search_overhead.py", *sys.argv[1:]]),
        "setup": {"passages": a.passages, "dim": a.dim, "queries": a.queries, "k": a.k, "index": "Flat (IP)",
                  "repeats": a.repeats, "faiss_threads": faiss.omp_get_max_threads()},
        "seconds_best": best,
        "seconds_median": median,
        "seconds_all": seconds,
        "overhead": {"added": overhead, "end_to_end": best["xdr"] / best["raw"] - 1},
        "target": TARGET,
        "within_target": overhead <= TARGET,
        "load_average_1m": {"before": load_before[0], "after": os.getloadavg()[0]},
        "machine": machine_info(),
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"raw faiss {best['raw']:.3f} s, xdr search_vectors {best['xdr']:.3f} s, of which xdr adds "
          f"{best['added']:.3f} s (best of {a.repeats}; load average {load_before[0]:.1f})")
    print(f"overhead {overhead:.1%} added, {result['overhead']['end_to_end']:+.1%} end to end "
          f"(target <= {TARGET:.0%}) -> {a.out}")
    return 0 if overhead <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
