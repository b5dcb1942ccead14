"""Generated-query vectors as a max-sim signal on XQuAD-R: re-ranking and the multi-vector index.

    python experiments/maxsim.py --shared ../shared/data [--generated experiments/artifacts/xqg-real-gen-n1]

Oracle part: the split, test queries and me5-small vectors of `xqg_oracle.py` (`lib.load_split`, same
cache in --work):
half of each paragraph's questions, in all six languages, play the generated queries; the other half
are tested. Every run goes through xdr's own artifacts and code: passage and generated-query embedding
stores, max-sim stores (float16, int8, PQ), a flat index, `rerank_maxsim`, and a multi-vector index.
Conditions: no augmentation, mean fusion + renorm at its best alpha (as in xqg_oracle.py), max-sim re-ranking
(beta x K sweep, the three store dtypes, over a plain and over a fused first stage) and the multi-vector
index; paired tests (t-test and Wilcoxon over queries, Holm). Latency per query on the CPU (single-vector
search, re-ranking at K = 100, multi-vector search; medians), on XQuAD-R and on a synthetic corpus of
--synthetic passages; store and index sizes, and projected sizes for the XOR corpus.

Real part (--generated, a `xdr generate` artifact, finished or not): its kept queries replace the oracle
half, on the same test queries; coverage (paragraphs with at least one kept query) is reported.
Writes docs/results/maxsim.md, maxsim.json and maxsim-beta.png.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from lib import (
    MEAN_ALPHAS,
    ROOT,
    TOP,
    OracleSplit,
    cached,
    digest,
    generated_spec,
    load_split,
    report,
    top_rows,
)
from threadpoolctl import threadpool_limits

from xdr.artifacts import is_done
from xdr.augment import fuse
from xdr.config import ModelSpec
from xdr.data.runs import Run
from xdr.embeddings import write_embeddings
from xdr.evaluate import Report, evaluate
from xdr.generate.artifact import generated_query_id, read_generated, shard_paths, split_generated_id
from xdr.index import build_index, load_index
from xdr.maxsim import GeneratedVectorStore, build_vector_store, rerank_maxsim, vector_store_info
from xdr.runtime import machine_info
from xdr.search import search_vectors

OUT = ROOT / "docs" / "results"
MEASURES = ["R@1", "RR@10"]
BUDGETS = [300]
BETAS = [0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0]
KS = [10, 20, 50, 100, 240]
BETA, K = 0.5, 100  # the setting
XOR = {"passages": 18_000_000, "per_passage": 35, "dim": 768}
COMMAND = "python experiments/maxsim.py --shared ../shared/data"
READING = "\n## Reading"  # hand-written; a rerun keeps it and rewrites everything above it


class Setting:
    """One set of generated queries (oracle or real) over the test split, as xdr artifacts in ``work``."""

    def __init__(self, split: OracleSplit, gen_ids: list[str], gvec: np.ndarray, work: Path) -> None:
        self.split, self.work = split, work
        spec = split.spec
        self.pids = split.pid
        if work.exists():  # artifacts are cheap here; rebuilding keeps them in step with the inputs
            shutil.rmtree(work)
        self.p_dir = write_embeddings(self.pids, split.pvec, spec, work / "emb", progress=False)
        self.g_dir = write_embeddings(gen_ids, gvec, spec, work / "gen-emb", kind="query", shard_size=1000,
                                      progress=False)
        self.owner = np.array([self.pids.index(split_generated_id(g)[0]) for g in gen_ids])
        self.gvec = gvec
        self.index = load_index(build_index(self.p_dir, work / "index", progress=False))
        self.stores = {
            name: GeneratedVectorStore(
                build_vector_store(self.g_dir, work / f"store-{name}", dtype=dtype, pq_m=m, progress=False))
            for name, dtype, m in (("float16", "float16", None), ("int8", "int8", None), ("pq48", "pq", 48))
            if dtype != "pq" or len(gen_ids) >= 256
        }
        self.multi = load_index(build_index(self.p_dir, work / "index-mv", generated=self.stores["float16"].path,
                                            beta=BETA, progress=False))
        self.qids = [q.id for q in split.test]

    def report(self, run: Run | np.ndarray, name: str) -> Report:
        """Evaluate a run (or a full score matrix) on the test queries, at depth 100 as in xqg_oracle.py."""
        s = self.split
        if isinstance(run, np.ndarray):
            return report(run, s.test, self.pids, qrels=s.test_qrels, texts=s.texts, measures=MEASURES,
                          budgets=BUDGETS, name=name)
        ranked = {q: [d for d, _ in run[q][:TOP]] for q in self.qids}
        return evaluate(ranked, s.test, qrels=s.test_qrels, passages=s.texts, measures=MEASURES,
                        token_budgets=BUDGETS, name=name)

    def first_stage(self, k: int, passages: np.ndarray | None = None) -> Run:
        """Top ``k`` of the plain index, or of a fused passage matrix (searched exactly, like a flat index)."""
        if passages is None:
            return search_vectors(self.index, self.qids, self.split.tvec, k)
        scores = self.split.tvec @ passages.T
        top = top_rows(scores, k)
        return Run({q: [(self.pids[j], float(scores[i, j])) for j in top[i]] for i, q in enumerate(self.qids)})

    def rerank(self, first: Run, beta: float, k: int, store: str = "float16") -> Run:
        return rerank_maxsim(first, self.split.tvec, self.stores[store], spec=self.split.spec, beta=beta, k=k)

    def fusion_sweep(self) -> tuple[float, Report, dict[str, dict[str, float]]]:
        """Mean fusion with re-normalisation (xqg_oracle.py's best form) over its alphas; the best on MRR@10."""
        sweep, best = {}, None
        for alpha in MEAN_ALPHAS:
            fused = fuse(self.split.pvec, self.owner, self.gvec, alpha, "mean", renormalize=True)
            rep = self.report(self.split.tvec @ fused.T, f"mean fusion + renorm, alpha = {alpha}")
            sweep[str(alpha)] = rep.macro
            if best is None or rep.macro["RR@10"] > best[1].macro["RR@10"]:
                best = (alpha, rep)
        assert best is not None
        return best[0], best[1], sweep


def conditions(st: Setting, label: str) -> dict[str, Any]:
    """Every quality comparison of one setting; reports are kept for the significance tables."""
    none = st.report(st.first_stage(240), "no augmentation")
    alpha, fusion, fusion_sweep = st.fusion_sweep()
    first = st.first_stage(max(KS))
    headline = st.report(st.rerank(first, BETA, K), f"max-sim re-ranking, beta = {BETA}, K = {K}")
    sweep: dict[str, dict[str, dict[str, float]]] = {}
    for k in KS:
        sweep[str(k)] = {}
        for beta in BETAS:
            sweep[str(k)][str(beta)] = st.report(st.rerank(first, beta, k), f"b={beta} K={k}").macro
        print(f"[{label}] K={k}: " + " ".join(f"{b}:{v['RR@10']:.2f}" for b, v in sweep[str(k)].items()), flush=True)
    fused = fuse(st.split.pvec, st.owner, st.gvec, alpha, "mean", renormalize=True)
    over_fused = st.report(st.rerank(st.first_stage(K, fused), BETA, K),
                           f"fusion (alpha = {alpha}) then max-sim re-ranking")
    dtypes = {name: st.report(st.rerank(first, BETA, K, name), f"max-sim, {name} store").macro
              for name in st.stores}
    multi = {}
    default_rows = st.multi.multi.rows_per_passage
    for rows in (default_rows, st.multi.ntotal):
        st.multi.configure(rows_per_passage=rows)
        name = f"multi-vector index, {f'{rows} × k rows' if rows == default_rows else 'all rows'}, beta = {BETA}"
        multi[name] = st.report(search_vectors(st.multi, st.qids, st.split.tvec, 100), name)
    st.multi.configure(rows_per_passage=default_rows)
    best_k, best_beta = max(((k, b) for k in sweep for b in sweep[k]), key=lambda kb: sweep[kb[0]][kb[1]]["RR@10"])
    return {
        "reports": {"none": none, "fusion": fusion, "maxsim": headline, "over_fused": over_fused, **multi},
        "fusion_alpha": alpha, "fusion_sweep": fusion_sweep, "sweep": sweep, "dtypes": dtypes,
        "best": {"K": int(best_k), "beta": float(best_beta), "macro": sweep[best_k][best_beta]},
        "multi_names": list(multi),
    }


# -------------------------------------------------------------------------------------------- latency
def median_ms(fn: Callable[[int], object], n: int, repeats: int) -> float:
    """Median wall time of ``fn(i)`` over ``n`` queries, each run ``repeats`` times (after one warm-up)."""
    fn(0)
    times = []
    for _ in range(repeats):
        for i in range(n):
            t = time.perf_counter()
            fn(i)
            times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def latency(index: Any, multi: Any, store: GeneratedVectorStore, spec: ModelSpec, tvec: np.ndarray, n: int,
            repeats: int) -> dict[str, float]:
    """ms per query, one query at a time: the three search paths (query encoding measured separately)."""
    def single(i: int) -> Run:
        return search_vectors(index, ["q"], tvec[i:i + 1], K)

    def rerank(i: int) -> Run:
        return rerank_maxsim(single(i), tvec[i:i + 1], store, spec=spec, beta=BETA, k=K)

    return {
        "single-vector search (k = 100)": median_ms(single, n, repeats),
        "single-vector + max-sim re-ranking (K = 100)": median_ms(rerank, n, repeats),
        "multi-vector search (k = 100)": median_ms(lambda i: search_vectors(multi, ["q"], tvec[i:i + 1], K), n,
                                                   repeats),
    }


def synthetic(work: Path, n: int, per: int, spec: ModelSpec, tvec: np.ndarray) -> dict[str, Any]:
    """Latency and sizes at a larger scale: random unit vectors, ``per`` generated queries per passage."""
    rng = np.random.default_rng(0)
    dim = tvec.shape[1]

    def unit(x: np.ndarray) -> np.ndarray:
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    if work.exists():
        shutil.rmtree(work)
    pids = [f"p{i}" for i in range(n)]
    p_dir = write_embeddings(pids, unit(rng.normal(size=(n, dim))), spec, work / "emb", progress=False)
    gids = [generated_query_id(p, "xx", k) for p in pids for k in range(per)]
    g_dir = write_embeddings(gids, unit(rng.normal(size=(n * per, dim))), spec, work / "gen-emb", kind="query",
                             progress=False)
    store = GeneratedVectorStore(build_vector_store(g_dir, work / "store", progress=False))
    index = load_index(build_index(p_dir, work / "index", progress=False))
    multi = load_index(build_index(p_dir, work / "index-mv", generated=store.path, progress=False))
    lat = latency(index, multi, store, spec, tvec, 100, 3)
    sizes = {"store (float16)": vector_store_info(store.path)["bytes_on_disk"],
             "flat index": (work / "index" / "index.faiss").stat().st_size,
             "multi-vector flat index": (work / "index-mv" / "index.faiss").stat().st_size}
    shutil.rmtree(work)
    return {"passages": n, "generated_per_passage": per, "vectors": n * per, "latency_ms": lat, "bytes": sizes}


def xor_projection() -> dict[str, float]:
    """Bytes for the XOR corpus: 18M passages x 35 generated queries x 768 dims (GB = 1e9 bytes)."""
    p, v, d = XOR["passages"], XOR["passages"] * XOR["per_passage"], XOR["dim"]
    lookup = p * (8 + 8 + 4)  # keys, rows, counts
    return {
        "generated vectors, float32 (`xdr encode --kind generated`)": v * d * 4 / 1e9,
        "store, float16": (v * d * 2 + lookup) / 1e9,
        "store, int8 (+ a float32 scale per vector)": (v * (d + 4) + lookup) / 1e9,
        "store, PQ96 (96 bytes per vector)": (v * 96 + lookup) / 1e9,
        "store, PQ48 (48 bytes per vector)": (v * 48 + lookup) / 1e9,
        "single-vector flat index (float32)": p * d * 4 / 1e9,
        "multi-vector flat index (float32)": (p + v) * d * 4 / 1e9,
        "multi-vector IVF-PQ96 index (codes + 8-byte ids)": (p + v) * (96 + 8) / 1e9,
    }


# ----------------------------------------------------------------------------------------------- real
def read_real(generated: Path, split: OracleSplit) -> tuple[list[str], list[str], dict[str, Any]]:
    """Kept queries of a generate artifact (finished or not), grouped by passage in corpus order."""
    order = {p: i for i, p in enumerate(split.pid)}
    rows = [g for g in read_generated(generated, partial=True) if g.query]
    rows.sort(key=lambda g: (order[g.docid], g.lang, g.k))
    ids = [generated_query_id(g.docid, g.lang, g.k) for g in rows]
    covered = {g.docid for g in rows}
    by_lang: dict[str, int] = {}
    for g in rows:
        by_lang[g.lang] = by_lang.get(g.lang, 0) + 1
    meta = json.loads((generated / "meta.json").read_text())
    coverage = {
        "artifact": str(generated), "finished": is_done(generated), "shards": len(shard_paths(generated)),
        "generator": meta["params"].get("generator"), "n": meta["params"].get("n"),
        "kept_queries": len(rows), "kept_by_lang": by_lang,
        "paragraphs_with_queries": len(covered), "paragraphs": len(split.pid),
        "test_queries_on_covered_paragraphs": sum(next(iter(split.test_qrels[q.id])) in covered for q in split.test),
    }
    return ids, [g.query for g in rows], coverage


# ------------------------------------------------------------------------------------------- document
def fmt(macro: dict[str, float]) -> str:
    return " | ".join(f"{macro[m]:.2f}" for m in ("R@1", "RR@10", "R@300t"))


def quality_section(res: dict[str, Any], title: str, intro: str = "") -> list[str]:
    r = res["reports"]
    base = r["none"].macro
    rows = [("no augmentation", r["none"]), (f"mean fusion + renorm, best alpha = {res['fusion_alpha']}", r["fusion"]),
            (f"max-sim re-ranking, beta = {BETA}, K = {K}", r["maxsim"]),
            (f"fusion first stage, then max-sim (beta = {BETA}, K = {K})", r["over_fused"]),
            *[(n, r[n]) for n in res["multi_names"]]]
    lines = [f"## {title}", "", *([intro, ""] if intro else []),
             "Macro averages over de, el, es, hi, tr, vi on the test half (Δ: to no augmentation).", "",
             "| system | R@1 | MRR@10 | R@300t | Δ MRR@10 |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {name} | {fmt(rep.macro)} | {rep.macro['RR@10'] - base['RR@10']:+.2f} |" for name, rep in rows]
    b = res["best"]
    lines += ["", f"Best cell of the β × K sweep (chosen on the test queries, so optimistic): β = {b['beta']}, "
              f"K = {b['K']}: " + fmt(b["macro"]).replace(" | ", " / ") + " (R@1 / MRR@10 / R@300t).", "",
              "### β × K sweep (MRR@10, plain first stage, float16 store)", "",
              "| K \\ β | " + " | ".join(str(x) for x in BETAS) + " |", "|---|" + "---:|" * len(BETAS)]
    lines += [f"| {k} | " + " | ".join(f"{res['sweep'][k][str(x)]['RR@10']:.2f}" for x in BETAS) + " |"
              for k in res["sweep"]]
    lines += ["", "### Store dtype (β = 0.5, K = 100)", "", "| store | R@1 | MRR@10 | R@300t |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {fmt(m)} |" for name, m in res["dtypes"].items()]
    lines += ["", f"### Max-sim re-ranking against the best fusion (alpha = {res['fusion_alpha']})", "",
              r["maxsim"].comparison_markdown(r["fusion"], digits=2),
              "### Max-sim re-ranking against no augmentation", "",
              r["maxsim"].comparison_markdown(r["none"], digits=2),
              f"### {res['multi_names'][0]} against max-sim re-ranking", "",
              r[res["multi_names"][0]].comparison_markdown(r["maxsim"], digits=2)]
    return lines


def summary(res: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in res.items() if k != "reports"}
    out["macro"] = {k: rep.macro for k, rep in res["reports"].items()}
    comps = {}
    for name, base in (("maxsim_vs_fusion", "fusion"), ("maxsim_vs_none", "none")):
        comps[name] = [asdict(c) for c in res["reports"]["maxsim"].compare(res["reports"][base]) if c.group == "avg"]
    out["tests_avg"] = comps
    return out


def plot(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    for k, by_beta in res["sweep"].items():
        ax.plot(BETAS, [by_beta[str(b)]["RR@10"] for b in BETAS], marker="o", label=f"max-sim, K = {k}")
    ax.axhline(res["reports"]["fusion"].macro["RR@10"], color="grey", ls="--",
               label=f"mean fusion + renorm, α = {res['fusion_alpha']}")
    ax.axhline(res["reports"]["none"].macro["RR@10"], color="black", lw=0.8, label="no augmentation")
    ax.set_xlabel("β")
    ax.set_ylabel("MRR@10 (macro, test half)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "xqg-oracle", help="embedding cache of xqg_oracle.py")
    ap.add_argument("--generated", type=Path, default=ROOT / "experiments" / "artifacts" / "xqg-real-gen-n1")
    ap.add_argument("--synthetic", type=int, default=50_000, help="passages of the latency corpus (0: skip)")
    a = ap.parse_args()
    faiss.omp_set_num_threads(1)  # latency of one query on one core: the machine is shared, and threads
    threadpool_limits(1)  # that wait for busy cores made a 1,700 x 384 product 40x slower here

    split = load_split(a.shared, a.work)
    pid = split.pid
    order = np.argsort(split.owner, kind="stable")  # stores want each passage's queries together
    gen_ids = [generated_query_id(pid[split.owner[j]], split.gen[j].lang, j) for j in order]
    oracle = Setting(split, gen_ids, split.gvec[order], a.work / "maxsim-oracle")
    res = conditions(oracle, "oracle")

    import torch

    from xdr.models.encoder import Encoder

    torch.set_num_threads(1)
    enc = Encoder.load(split.spec)
    texts = [q.text for q in split.test[:50]]
    encode_ms = median_ms(lambda i: enc.encode([texts[i]], "query", batch_size=1), len(texts), 2)
    lat = latency(oracle.index, oracle.multi, oracle.stores["float16"], split.spec, split.tvec, 300, 3)
    sizes = {name: vector_store_info(s.path) for name, s in oracle.stores.items()}
    index_bytes = {"flat index": (oracle.work / "index" / "index.faiss").stat().st_size,
                   "multi-vector flat index": (oracle.work / "index-mv" / "index.faiss").stat().st_size}
    syn = synthetic(a.work / "maxsim-synthetic", a.synthetic, 17, split.spec, split.tvec) if a.synthetic else None

    real = coverage = None
    if a.generated.exists() and shard_paths(a.generated):
        rids, rtexts, coverage = read_real(a.generated, split)
        if rids:
            enc32 = Encoder.load(generated_spec(split.spec))
            rvec = cached(a.work / f"real-{digest(rids + rtexts)}.npy",
                          lambda: enc32.encode(rtexts, "query", batch_size=64))
            real = conditions(Setting(split, rids, rvec, a.work / "maxsim-real"), "real")

    result = {
        "setup": {"command": COMMAND, "passages": len(pid), "test_queries": len(split.test),
                  "oracle_generated_queries": len(gen_ids), "model": split.spec.model_dump(),
                  "machine": machine_info(), "threads": 1},
        "oracle": summary(res), "real": summary(real) if real else None, "real_coverage": coverage,
        "latency_ms": {"encode one query (me5-small)": encode_ms, **lat}, "synthetic": syn,
        "store_sizes": sizes, "index_bytes": index_bytes, "xor_projection_gb": xor_projection(),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "maxsim.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    doc = OUT / "maxsim.md"
    kept = doc.read_text().partition(READING)[2] if doc.exists() else ""  # the hand-written reading survives
    doc.write_text("\n".join(document(result, res, real, a.generated)) + "\n" + (READING + kept if kept else ""))
    plot(res, OUT / "maxsim-beta.png")
    print(f"wrote {OUT / 'maxsim.md'}")
    return 0


def document(result: dict[str, Any], res: dict[str, Any], real: dict[str, Any] | None, generated: Path) -> list[str]:
    s = result["setup"]
    m = s["machine"]
    lines = [
        "# Generated-query vectors as a max-sim signal (#5)", "",
        f"Made by `{COMMAND}` (one command; about 30 minutes on 2 busy CPU cores). XQuAD-R, {s['passages']} English "
        f"paragraphs, me5-small (passages ≤ 256 tokens, generated queries encoded as queries at ≤ 32 tokens), "
        f"exact inner-product search, runs at depth 100, {s['test_queries']} test queries. The oracle split is "
        f"#3's (`experiments/xqg_oracle.py`): {s['oracle_generated_queries']} questions of the other half, in all "
        "six languages, play the generated queries.", "",
        "    score(q, p) = s(q, p) + β · max_i s(q, g_i)      (s(q, p) stands in for the max when p has no g_i)", "",
        "Significance: paired t-test and Wilcoxon signed-rank test over queries, Holm-corrected over every cell "
        "of a table; the avg row pools all queries.", "",
        *quality_section(res, "1. Oracle generation"), "",
    ]
    if real is not None:
        c = result["real_coverage"]
        intro = (
            f"Artifact `{c['artifact']}` ({'finished' if c['finished'] else 'unfinished'}, {c['shards']} shards, "
            f"generator {c['generator']}, n = {c['n']}): {c['kept_queries']} kept queries "
            f"({', '.join(f'{k} {v}' for k, v in sorted(c['kept_by_lang'].items()))}); "
            f"{c['paragraphs_with_queries']} of {c['paragraphs']} paragraphs have at least one, and "
            f"{c['test_queries_on_covered_paragraphs']} of {s['test_queries']} test queries ask about one of them. "
            "Paragraphs without queries are scored by s(q, p) alone (the no-generated-queries rule)."
        )
        lines += [*quality_section(real, "2. Real generation", intro), ""]
    else:
        generated = generated.relative_to(ROOT) if generated.is_relative_to(ROOT) else generated
        lines += ["## 2. Real generation — pending", "",
                  f"No generate artifact at `{generated}` yet. When the real generation run has shards there, run",
                  "", f"    {COMMAND} --generated {generated}", "",
                  "to add this section (it runs on an unfinished artifact and reports its coverage).", ""]
    lat = result["latency_ms"]
    lines += ["## 3. Latency per query (CPU)", "",
              f"One query at a time, median over queries × 3 repeats, FAISS and BLAS on 1 thread; {m['cpu']}, "
              f"{m['cores']} cores shared with another job (load {m['load_average_1m_at_start']:.1f} at start), "
              f"faiss {m.get('faiss')}, numpy {m['numpy']}. Re-ranking reads a float16 store; the multi-vector "
              "index is flat and retrieves ⌈rows / passages⌉ × k rows.", "",
              "| path | XQuAD-R (240 passages, 4,080 generated) |"
              + (" synthetic ({:,} passages, {:,} generated) |".format(result["synthetic"]["passages"],
                                                                        result["synthetic"]["vectors"])
                 if result["synthetic"] else ""),
              "|---|---:|" + ("---:|" if result["synthetic"] else "")]
    for name, v in lat.items():
        cell = ""
        if result["synthetic"]:
            syn = result["synthetic"]["latency_ms"].get(name)
            cell = " – |" if syn is None else f" {syn:.3f} ms |"
        lines.append(f"| {name} | {v:.3f} ms |{cell}")
    lines += ["", "## 4. Sizes", "", "| artifact (XQuAD-R, oracle) | passages | vectors | bytes / vector | on disk |",
              "|---|---:|---:|---:|---:|"]
    for name, info in result["store_sizes"].items():
        lines.append(f"| store, {name} | {info['passages']} | {info['vectors']} | {info['bytes_per_vector']} | "
                     f"{info['bytes_on_disk'] / 1e6:.2f} MB |")
    for name, b in result["index_bytes"].items():
        lines.append(f"| {name} | | | | {b / 1e6:.2f} MB |")
    if result["synthetic"]:
        for name, b in result["synthetic"]["bytes"].items():
            lines.append(f"| synthetic: {name} | {result['synthetic']['passages']} | | | {b / 1e6:.1f} MB |")
    lines += ["", f"Projected for the XOR corpus ({XOR['passages']:,} passages × {XOR['per_passage']} generated "
              f"queries × {XOR['dim']} dimensions; the lookup adds 20 bytes per passage):", "",
              "| artifact | GB |", "|---|---:|"]
    lines += [f"| {name} | {gb:,.1f} |" for name, gb in result["xor_projection_gb"].items()]
    return lines


if __name__ == "__main__":
    sys.exit(main())
