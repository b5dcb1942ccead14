"""Generative query expansion on XQuAD-R (the query side), alone and with passage-side xQG, dense and BM25.

    # plan only: the LLM calls it will make, then stop
    python experiments/expansion.py --plan
    # the real run (llama.cpp server from experiments/llm_server.sh, parallel slots if it has them)
    nice -n 19 python experiments/expansion.py --base-url http://127.0.0.1:8080/v1 --model qwen
    # the end-to-end check with a stub LLM on a few questions (numbers mean nothing)
    python experiments/expansion.py --stub --per-lang 2 --per-lang-best 2 --pool subset --out /tmp/exp

Queries: a fixed, stratified subset of XQuAD-R's questions in de, el, es, hi, tr, vi. Questions are
ordered by a hash of their id and the same questions are taken in every language: the first
``--per-lang`` compare the four strategies (order ``expand``), the next ``--per-lang-best`` (disjoint,
so the strategy is not chosen on the queries it is then scored on) test the best strategy in both
orders and every combination. Each LLM run is an ``xdr expand`` artifact under ``--llm`` (committed, so a
later session resumes it): rerunning the script keeps the finished shards and reuses the vectors cached
under ``--work``.

Conditions (me5-small; the pool is the 240 paragraphs, or with ``--pool subset`` the paragraphs of the
chosen questions): dense without expansion; dense + expansion (concat, fuse) per strategy; BM25 (bm25s
over the English paragraphs) on the translation of the query, on translate-expand and on
expand-translate; hybrid (dense + BM25, RRF); xQG-fused passages (``--generated``, the real-generation
artifact) and max-sim, each with and without expansion. α, β and the expansion weight come from
``xdr.tune`` cross-validated on the best-strategy queries, never picked on them directly.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from lib import ROOT, cached, digest, generated_spec, maxsim_scores, read_dev, report
from scipy.stats import spearmanr

from xdr.augment import fuse
from xdr.data.schema import Query
from xdr.data.squad import read_xquad_r
from xdr.evaluate import Report, evaluate
from xdr.evaluate.significance import paired_test, with_holm
from xdr.expand import ExpandSettings, expansion_stats, plan_calls, read_expansions, run_expansion, stats_markdown
from xdr.expand.prompts import STRATEGIES, TRANSLATE_SYSTEM
from xdr.generate.artifact import read_generated
from xdr.generate.llm import OpenAIChatBackend, Prompt
from xdr.index.bm25 import BM25Index, build_bm25
from xdr.langs import XQUAD_R_DEV_LANGS
from xdr.models.encoder import Encoder
from xdr.models.registry import resolve_spec
from xdr.search import fuse_rankings
from xdr.tune import Grid, TuneData, tune

MEASURES = ["R@1", "RR@10"]
BUDGETS = [100, 300]
NON_LATIN = {"el", "hi"}


class StubChat:
    """A stand-in LLM for checking the script end to end: translates with XQuAD-R's own English question,
    expands with the query plus chatty framing. Its numbers mean nothing."""

    name, config = "stub", {"kind": "stub"}

    def __init__(self, english: dict[str, str]) -> None:
        self.english = english

    def complete(self, prompts: Sequence[Prompt]) -> list[list[str]]:
        out = []
        for p in prompts:
            text = p.messages[-1]["content"]
            if p.messages[0]["content"] == TRANSLATE_SYSTEM:
                answer = "Here is the translation: " + self.english.get(text.split("\n")[0], text)
            else:
                answer = f"Sure, here is the expansion: {text.split('Query: ', 1)[1]} history facts"
            out.append([answer] * len(p.seeds))
        return out


def subset(queries: list[Query], start: int, count: int) -> list[Query]:
    """The same ``count`` questions in every language, by a hash of their id (from the ``start``-th), one
    question's languages after another: any prefix of the run's shards is stratified by language."""
    bases = sorted({q.id.rsplit("-", 1)[0] for q in queries}, key=lambda b: hashlib.sha256(b.encode()).hexdigest())
    rank = {b: i for i, b in enumerate(bases[start:start + count])}
    chosen = [q for q in queries if q.id.rsplit("-", 1)[0] in rank]
    return sorted(chosen, key=lambda q: rank[q.id.rsplit("-", 1)[0]])


def kept(path: Path, strategy: str, column: str, partial: bool = False) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for e in read_expansions(path, strategy=strategy, kept_only=column != "translation", partial=partial):
        if text := getattr(e, column):
            out.setdefault(e.qid, []).append(text)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--generated", type=Path, default=ROOT / "experiments" / "artifacts" / "xqg-real-gen")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "expansion", help="cached vectors, the BM25 index")
    ap.add_argument("--llm", type=Path, default=None,
                    help="the LLM runs (`xdr expand` artifacts; default experiments/artifacts/expansion, "
                    "or WORK/llm with --stub so a stub never touches the committed runs)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "expansion")
    ap.add_argument("--per-lang", type=int, default=50, help="questions per language for the strategies")
    ap.add_argument("--per-lang-best", type=int, default=150, help="questions per language for the rest")
    ap.add_argument("--pool", choices=["all", "subset"], default="all")
    ap.add_argument("--model", default="qwen")
    ap.add_argument("--base-url", default="http://127.0.0.1:8080/v1")
    ap.add_argument(
        "--concurrency", type=int, default=1, help="requests at once (batching did not pay on 2 CPU threads)"
    )
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per LLM request (the server may be paused)")
    ap.add_argument("--stub", action="store_true", help="a stand-in LLM (checks the script; numbers mean nothing)")
    ap.add_argument("--plan", action="store_true", help="print the LLM calls planned and stop")
    ap.add_argument("--partial", action="store_true",
                    help="report the strategies on the finished shards of a run still going, asking the LLM nothing")
    a = ap.parse_args()
    if a.llm is None:
        a.llm = a.work / "llm" if a.stub else ROOT / "experiments" / "artifacts" / "expansion"

    data, queries = read_dev(a.shared)
    strat_q, best_q = subset(queries, 0, a.per_lang), subset(queries, a.per_lang, a.per_lang_best)
    runs = {"strategies": (strat_q, ExpandSettings(strategies=STRATEGIES, order="expand", shard_size=12))}
    plan = {"strategies": plan_calls(strat_q, runs["strategies"][1])}
    for order in ("translate-expand", "expand-translate"):
        plan[order] = plan_calls(best_q, ExpandSettings(strategies=("zero-shot",), order=order))
    print(f"LLM calls planned (at most): {plan} = {sum(plan.values())}", flush=True)
    if a.plan:
        return 0
    english: dict[str, str] = {}
    if a.stub:
        en = {q.id.rsplit("-", 1)[0]: q.text for q in read_xquad_r(a.shared / "xquad-r", ["en"]).queries["en"]}
        english = {q.text: en[q.id.rsplit("-", 1)[0]] for q in queries}
    backend = StubChat(english) if a.stub else OpenAIChatBackend(
        a.model, a.base_url, concurrency=a.concurrency, timeout=a.timeout)
    a.work.mkdir(parents=True, exist_ok=True)
    if a.partial:
        done = {e.qid for e in read_expansions(a.llm / "strategies", kept_only=False, partial=True)}
        strat_q = [q for q in strat_q if q.id in done]
    else:
        run_expansion(strat_q, backend, a.llm / "strategies", runs["strategies"][1])

    corpus = data.corpus if a.pool == "all" else [
        p for p in data.corpus if p.id in {next(iter(data.qrels[q.id])) for q in strat_q + best_q}]
    pid, texts = [p.id for p in corpus], {p.id: p.text for p in corpus}
    spec = resolve_spec("me5-small", passage_max_length=256)
    enc = Encoder.load(spec)
    pvec = cached(a.work / f"passages-{digest(pid)}.npy", lambda: enc.encode([p.text for p in corpus], "passage"))

    def qvecs(qs: list[Query]) -> np.ndarray:
        texts_ = [q.text for q in qs]
        return cached(a.work / f"q-{digest(texts_)}.npy", lambda: enc.encode(texts_, "query"))

    def score(scores_or_ranking: Any, qs: list[Query], name: str) -> Report:
        if isinstance(scores_or_ranking, np.ndarray):
            return report(scores_or_ranking, qs, pid, qrels=data.qrels, texts=texts, measures=MEASURES,
                          budgets=BUDGETS, name=name)
        return evaluate(scores_or_ranking, qs, qrels=data.qrels, passages=texts, measures=MEASURES,
                        token_budgets=BUDGETS, name=name)

    def concat(qs: list[Query], exp: dict[str, list[str]]) -> np.ndarray:
        """Query + expansions as one text at the passage length, as `xdr search --combine concat` does."""
        joined = [" ".join([q.text, *exp.get(q.id, [])]) for q in qs]
        wide = enc.with_spec(spec.model_copy(update={"query_max_length": spec.passage_max_length}))
        return cached(a.work / f"concat-{digest(joined)}.npy", lambda: wide.encode(joined, "query"))

    def fused(qs: list[Query], exp: dict[str, list[str]], w: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(1 - w) q + w mean(e)`` renormalised, as `xdr search --combine fuse` does; and the mean, the mask."""
        flat = [(i, t) for i, q in enumerate(qs) for t in exp.get(q.id, [])]
        e = cached(a.work / f"exp-{digest([t for _, t in flat])}.npy",
                   lambda: enc.encode([t for _, t in flat], "query"))
        owner = np.array([i for i, _ in flat], np.int64)
        counts = np.bincount(owner, minlength=len(qs))
        mean = np.zeros((len(qs), pvec.shape[1]), np.float32)
        np.add.at(mean, owner, e)
        mean /= np.maximum(counts, 1)[:, None]
        has = counts > 0
        out = qvecs(qs).copy()
        out[has] = (1 - w) * out[has] + w * mean[has]
        return out / np.linalg.norm(out, axis=1, keepdims=True), mean, has

    # ---- 1. strategies (first subset)
    svec = qvecs(strat_q)
    base_s = score(svec @ pvec.T, strat_q, "dense")
    strat: dict[str, dict[str, Report]] = {}
    for s in STRATEGIES:
        exp = kept(a.llm / "strategies", s, "expansion", a.partial)
        strat[s] = {"concat": score(concat(strat_q, exp) @ pvec.T, strat_q, f"{s} concat"),
                    "fuse": score(fused(strat_q, exp)[0] @ pvec.T, strat_q, f"{s} fuse")}
    best = max(STRATEGIES, key=lambda s: max(r.macro["RR@10"] for r in strat[s].values()))
    lengths = np.array([len(q.text.split()) for q in strat_q])
    short = {q.id for q, n in zip(strat_q, lengths, strict=True) if n <= np.median(lengths)}
    by_length = {s: {half: float(np.mean([v for q, v in strat[s]["concat"].scores("RR@10").items()
                                          if (q in short) == (half == "short")]) - np.mean(
        [v for q, v in base_s.scores("RR@10").items() if (q in short) == (half == "short")]))
        for half in ("short", "long")} for s in STRATEGIES}
    if a.partial:
        stats = {"strategies": expansion_stats(a.llm / "strategies")}
        lines = strategy_lines(a, strat, base_s, by_length, plan, llm_seconds(stats), best)
        lines += cost_lines(stats)
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
        print(f"wrote {a.out.with_suffix('.md')}")
        return 0

    # ---- 2. best strategy, both orders (second subset)
    for order in ("translate-expand", "expand-translate"):
        run_expansion(best_q, backend, a.llm / f"{order}-{best}", ExpandSettings(strategies=(best,), order=order,
                                                                                  shard_size=60))
    te, et = a.llm / f"translate-expand-{best}", a.llm / f"expand-translate-{best}"
    bvec = qvecs(best_q)
    exp_b = kept(et, best, "expansion")
    _, exp_mean, has = fused(best_q, exp_b)
    results: dict[str, Report] = {"dense": score(bvec @ pvec.T, best_q, "dense")}
    results["dense + expansion (concat)"] = score(concat(best_q, exp_b) @ pvec.T, best_q, "concat")

    # α, β, w cross-validated on these queries (xdr.tune), over xQG's generated queries where there are any
    row = {p: i for i, p in enumerate(pid)}
    gen = [g for g in read_generated(a.generated, partial=True) if g.docid in row] if a.generated.exists() else []
    gtexts = [g.query or "" for g in gen]
    enc32 = enc.with_spec(generated_spec(spec))
    gvec = cached(a.work / f"gen-{digest(gtexts)}.npy", lambda: enc32.encode(gtexts, "query")) if gen else \
        np.zeros((0, pvec.shape[1]), np.float32)
    owner, gk = np.array([row[g.docid] for g in gen], np.int64), np.array([g.k for g in gen], np.int64)
    grid = Grid(alpha=(0.0, 0.1, 0.2, 0.3, 0.5), beta=(0.0, 0.25, 0.5, 1.0), n=(int(gk.max(initial=0)) + 1,),
                expansion_weight=(0.0, 0.2, 0.3, 0.5, 0.7))
    tuned = tune(TuneData([q.id for q in best_q], bvec, pid, pvec, gvec, owner, gk, data.qrels, exp_mean, has),
                 grid, folds=5)
    alpha, beta, w = (tuned["chosen"][k] for k in ("alpha", "beta", "expansion_weight"))
    wq = fused(best_q, exp_b, w)[0]
    results[f"dense + expansion (fuse, w={w})"] = score(wq @ pvec.T, best_q, "fuse")

    bm25 = BM25Index(a.work / "bm25") if (a.work / "bm25" / "_DONE").exists() else BM25Index(
        build_bm25(data.corpus, a.work / "bm25"))

    def bm25_rank(text: dict[str, list[str]], depth: int = 100) -> dict[str, list[tuple[str, float]]]:
        qids = [q.id for q in best_q if q.id in text]
        hits = bm25.search([" ".join(dict.fromkeys(text[q])) for q in qids], depth)
        return {q: [(d, s) for d, s in h if d in row] for q, h in zip(qids, hits, strict=True)}

    sparse = {"BM25, translation": bm25_rank(kept(te, best, "translation")),
              "BM25, translate-expand": bm25_rank(kept(te, best, "english")),
              "BM25, expand-translate": bm25_rank(kept(et, best, "english"))}
    for name, hits in sparse.items():
        results[name] = score({q.id: [d for d, _ in hits.get(q.id, [])] for q in best_q}, best_q, name)

    def ranked(scores: np.ndarray) -> dict[str, list[tuple[str, float]]]:
        top = np.argsort(-scores, axis=1, kind="stable")[:, :100]
        return {q.id: [(pid[j], float(scores[i, j])) for j in top[i]] for i, q in enumerate(best_q)}

    for dense_name, mat in (("dense", bvec @ pvec.T), ("dense + expansion", wq @ pvec.T)):
        hyb = {q.id: [d for d, _ in fuse_rankings(ranked(mat)[q.id], sparse["BM25, expand-translate"].get(q.id, []),
                                                   "rrf", 0.5, 60)] for q in best_q}
        results[f"hybrid RRF: {dense_name} + BM25 expand-translate"] = score(hyb, best_q, "hybrid")
    fp = fuse(pvec, owner, gvec, alpha, "mean", renormalize=True)
    results[f"xQG-fused (α={alpha})"] = score(bvec @ fp.T, best_q, "xqg")
    results[f"xQG-fused (α={alpha}) + expansion"] = score(wq @ fp.T, best_q, "xqg+qe")
    for qname, q in (("", bvec), (" + expansion", wq)):
        results[f"max-sim (β={beta}){qname}"] = score(maxsim_scores(q @ pvec.T, q @ gvec.T, owner, beta), best_q, "ms")

    write(a, results, strat, base_s, by_length, tuned, plan, [a.llm / "strategies", te, et], best)
    return 0


def write(a: argparse.Namespace, results: dict[str, Report], strat: dict[str, dict[str, Report]], base_s: Report,
          by_length: dict[str, dict[str, float]], tuned: dict[str, Any], plan: dict[str, int],
          artifacts: list[Path], best: str) -> None:
    base = results["dense"]
    tests = with_holm([paired_test(base.scores(m), r.scores(m), measure=m, baseline_name="dense", system_name=name)
                       for name, r in results.items() if name != "dense" for m in MEASURES])
    p = {(c.system, c.measure): c for c in tests}
    stats = {art.name: expansion_stats(art) for art in artifacts}
    seconds = llm_seconds(stats)
    head = "| condition | " + " | ".join(base.macro) + " |"
    lines = strategy_lines(a, strat, base_s, by_length, plan, seconds, best)
    lines += ["## Conditions (second subset, best strategy), macro; difference to dense, Holm-corrected p (t / W)", "",
              head, "|---|" + "---:|" * len(base.macro)]
    for name, r in results.items():
        cells = [f"{v:.2f}" + (f" ({p[(name, m)].mean_diff:+.2f}; {p[(name, m)].t_pvalue_holm:.3f} / "
                               f"{p[(name, m)].wilcoxon_pvalue_holm:.3f})" if name != "dense" and m in MEASURES else "")
                 for m, v in r.macro.items()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "## Per language (RR@10): gains and scripts", "", "| condition | " + " | ".join(
        f"{lang}{'*' if lang in NON_LATIN else ''}" for lang in XQUAD_R_DEV_LANGS) + " |",
        "|---|" + "---:|" * len(XQUAD_R_DEV_LANGS)]
    for name, r in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{r.per_language['RR@10'].get(lang, float('nan')):.2f}"
                                                 for lang in XQUAD_R_DEV_LANGS) + " |")
    lines += answers(results, by_length)
    h = tuned["held_out"]
    lines += ["", "\\* non-Latin script.", "", f"## Tuning (xdr.tune, {tuned['folds']}-fold CV over questions)", "",
              f"Chosen: {tuned['chosen']}; held-out {tuned['metric']} {h['tuned']:.4f} vs defaults {h['default']:.4f}.",
              ""]
    lines += cost_lines(stats)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    a.out.with_suffix(".json").write_text(json.dumps(
        {"macro": {k: r.macro for k, r in results.items()}, "per_language": {k: r.per_language for k, r in
                                                                             results.items()},
         "strategies": {s: {c: r.macro for c, r in by.items()} for s, by in strat.items()}, "by_length": by_length,
         "tune": tuned, "plan": plan, "llm_seconds": seconds, "expansions": stats}, indent=2) + "\n")
    print(f"wrote {a.out.with_suffix('.md')}")


def strategy_lines(a: argparse.Namespace, strat: dict[str, dict[str, Report]], base_s: Report,
                   by_length: dict[str, dict[str, float]], plan: dict[str, int], seconds: float,
                   best: str) -> list[str]:
    """The title and the strategies section: macro and per-language scores, and the gain by query length."""
    stub = ", STUB LLM: numbers mean nothing" if a.stub else ""
    head = "| condition | " + " | ".join(base_s.macro) + " |"
    langs = [lang for lang in XQUAD_R_DEV_LANGS if lang in base_s.per_language["RR@10"]]
    n = len(base_s.scores("RR@10"))
    lines = [f"# Generative query expansion on XQuAD-R (me5-small{stub})", "",
             f"Made by `python {' '.join(sys.argv)}`. LLM calls planned: {plan}; the runs' LLM calls took "
             f"{seconds:.0f} s (their recorded wall time, over every session that added a shard).", "",
             f"## Strategies (order expand; first subset, {n} questions), macro, difference to dense", "", head,
             "|---|" + "---:|" * len(base_s.macro),
             "| dense | " + " | ".join(f"{v:.2f}" for v in base_s.macro.values()) + " |"]
    lines += [f"| {s} {c} | " + " | ".join(f"{v:.2f} ({v - base_s.macro[m]:+.2f})" for m, v in r.macro.items()) + " |"
              for s, by in strat.items() for c, r in by.items()]
    lines += ["", "Per language, RR@10 (\\* non-Latin script):", "",
              "| condition | " + " | ".join(f"{lang}{'*' if lang in NON_LATIN else ''}" for lang in langs) + " |",
              "|---|" + "---:|" * len(langs)]
    for name, r in [("dense", base_s), *((f"{s} {c}", r) for s, by in strat.items() for c, r in by.items())]:
        lines.append(f"| {name} | " + " | ".join(f"{r.per_language['RR@10'][lang]:.2f}" for lang in langs) + " |")
    lines += ["", f"Best strategy: **{best}**. MRR@10 gain of concat over dense, by query length (words, split at the "
              "median):", "", "| strategy | short | long |", "|---|---:|---:|",
              *(f"| {s} | {v['short']:+.3f} | {v['long']:+.3f} |" for s, v in by_length.items()), ""]
    return lines


def llm_seconds(stats: dict[str, dict[str, Any]]) -> float:
    """The LLM time the runs recorded shard by shard, not this invocation's: a resumed run asks for little."""
    return sum(float(st["cost"]["seconds"]) for st in stats.values())


def cost_lines(stats: dict[str, dict[str, Any]]) -> list[str]:
    """LLM calls, seconds per query and what each filter kept or dropped, per run."""
    lines = ["## LLM cost and expansions kept", ""]
    for name, st in stats.items():
        lines += [f"### {name}", "", stats_markdown(st)]
    return lines


def answers(results: dict[str, Report], by_length: dict[str, dict[str, float]]) -> list[str]:
    """The paper's four claims, answered from this run's numbers (RR@10)."""
    def find(prefix: str) -> Report:
        return next(r for name, r in results.items() if name.startswith(prefix))

    dense, bm_t = results["dense"], results["BM25, translation"]
    te, et = results["BM25, translate-expand"], results["BM25, expand-translate"]
    qe, xqg = find("dense + expansion (fuse"), find("xQG-fused")
    both = next(r for name, r in results.items() if name.startswith("xQG-fused") and name.endswith("+ expansion"))
    short = max(by_length, key=lambda s: by_length[s]["short"])
    long = max(by_length, key=lambda s: by_length[s]["long"])
    lines = ["", "## The paper's claims on this data (RR@10)", "",
             f"- **Does the query's length decide the best strategy?** Best concat gain on short queries: {short} "
             f"({by_length[short]['short']:+.3f}); on long ones: {long} ({by_length[long]['long']:+.3f})."]
    for name, system, base in (("dense + expansion", qe, dense), ("BM25 expand-translate", et, bm_t)):
        gain = {lang: system.per_language["RR@10"][lang] - base.per_language["RR@10"][lang] for lang in
                XQUAD_R_DEV_LANGS}
        rho = spearmanr([base.per_language["RR@10"][lang] for lang in XQUAD_R_DEV_LANGS], list(gain.values()))[0]
        nl = np.mean([gain[lang] for lang in XQUAD_R_DEV_LANGS if lang in NON_LATIN])
        lat = np.mean([gain[lang] for lang in XQUAD_R_DEV_LANGS if lang not in NON_LATIN])
        lines.append(f"- **Larger gains for weak languages and non-Latin scripts?** {name}: Spearman ρ between a "
                     f"language's baseline and its gain {rho:+.2f} (negative: weaker languages gain more); mean gain "
                     f"non-Latin {nl:+.2f} vs Latin {lat:+.2f}.")
    order = with_holm([paired_test(te.scores(m), et.scores(m), measure=m, baseline_name=te.name,
                                   system_name=et.name) for m in MEASURES])
    lines.append("- **Does expand-then-translate beat translate-then-expand (BM25)?** " + "; ".join(
        f"{c.measure}: {c.mean_diff:+.2f} (Holm p t {c.t_pvalue_holm:.3f}, W {c.wilcoxon_pvalue_holm:.3f})"
        for c in order) + ".")
    g = {k: r.macro["RR@10"] - dense.macro["RR@10"] for k, r in (("qe", qe), ("xqg", xqg), ("both", both))}
    lines.append(f"- **Do query expansion and xQG add up?** Expansion alone {g['qe']:+.2f}, xQG alone {g['xqg']:+.2f} "
                 f"(sum {g['qe'] + g['xqg']:+.2f}); both {g['both']:+.2f}.")
    return lines


if __name__ == "__main__":
    sys.exit(main())
