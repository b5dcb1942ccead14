"""xQG with the real offline generator on XQuAD-R: fusion of generated queries, against no augmentation.

    python experiments/xqg_real.py --shared ../shared/data --generated experiments/artifacts/xqg-real-gen-n1
    python experiments/xqg_real.py --shared ../shared/data --generated experiments/artifacts/xqg-real-gen \
        --out docs/results/xqg-real-n8

The generate artifact may be unfinished (the generator needs hours on two CPU cores): its finished shards
are read and the experiment runs on the paragraphs they cover. The pool is those paragraphs only, and
the test queries are all their questions in de, el, es, hi, tr and vi, so every passage in the index has
generated queries and none is favoured by having them (with partial coverage on the full pool, fused
passages compete with plain ones; experiments/maxsim.py saw that distort the comparison). No human
question is used to generate or fuse anything, so there is no split: every question is a test query.

Settings, with me5-small (mean pooling, normalised, passages <= 256 tokens, generated queries encoded as
queries at <= 32 tokens, as `xdr augment` does):
* the mean fusion with re-normalisation (the oracle experiment's recommended form) over alpha, all generated
  languages;
* the paper's plain sum at alpha = 0.01;
* at the best alpha: all generated languages, only the query's own language, only English, and all but
  English (the query's language varies per query, so that index is built per language; the English
  conditions need a run that generated English);
* for a run with n > 1 per language, the number of generated queries: the first n' of each passage and
  language for n' in 1, 2, 3, 4, 5, 8 (so the sets are nested), fused at the best alpha and scored by
  max-sim at the best beta, each against no augmentation.
Every stored output is judged by today's filters (`refilter`): long runs span changes to the rules.
Writes docs/results/xqg-real.md and .json: macro tables and per-language tables against no augmentation
with paired t-test and Wilcoxon p-values (Holm-corrected).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from lib import ROOT, cached, digest, generated_spec, maxsim_scores, read_dev, report

from xdr.artifacts import is_done
from xdr.augment import fuse
from xdr.evaluate import Report
from xdr.evaluate.significance import Comparison, paired_test, with_holm
from xdr.generate.artifact import read_generated, refilter, shard_paths
from xdr.langs import XQUAD_R_DEV_LANGS
from xdr.models.encoder import Encoder
from xdr.models.registry import resolve_spec

MEASURES = ["R@1", "RR@10"]
BUDGETS = [100, 300]
ALPHAS = [0.05, 0.1, 0.2, 0.3, 0.5]
PAPER_SUM_ALPHA = 0.01
BETAS = [0.1, 0.25, 0.5, 1.0]
N_SWEEP = [1, 2, 3, 4, 5, 8]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--generated", type=Path, default=ROOT / "experiments" / "artifacts" / "xqg-real-gen-n1")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "xqg-real")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "xqg-real")
    a = ap.parse_args()

    data, queries = read_dev(a.shared)
    stored = read_generated(a.generated, kept_only=False, partial=True)
    every_row = list(refilter(stored, {p.id: p for p in data.corpus}))
    gen = [g for g in every_row if g.keep and g.query]
    covered = {g.docid for g in gen}
    corpus = [p for p in data.corpus if p.id in covered]
    if not corpus:
        sys.exit(f"{a.generated}: no finished shard with kept queries yet")
    pid = [p.id for p in corpus]
    row = {p: i for i, p in enumerate(pid)}
    test = [q for q in queries if next(iter(data.qrels[q.id])) in row]
    qrels = {q.id: data.qrels[q.id] for q in test}
    texts = {p.id: p.text for p in corpus}

    spec = resolve_spec("me5-small", passage_max_length=256)
    enc = Encoder.load(spec)
    enc32 = enc.with_spec(generated_spec(spec))
    pvec = cached(a.work / f"passages-{digest(pid)}.npy",
                  lambda: enc.encode([p.text for p in corpus], "passage", batch_size=16))
    gtexts = [g.query for g in gen]
    gvec = cached(a.work / f"generated-{digest(gtexts)}.npy", lambda: enc32.encode(gtexts, "query", batch_size=64))
    tvec = cached(a.work / f"test-{digest([q.text for q in test])}.npy",
                  lambda: enc.encode([q.text for q in test], "query", batch_size=64))
    owner = np.array([row[g.docid] for g in gen])
    glang = np.array([g.lang for g in gen])
    qlang = np.array([q.lang for q in test])

    def score(scores: np.ndarray, name: str) -> Report:
        return report(scores, test, pid, qrels=qrels, texts=texts, measures=MEASURES, budgets=BUDGETS, name=name)

    def fused(alpha: float, keep: np.ndarray, mode: str = "mean") -> np.ndarray:
        return fuse(pvec, owner[keep], gvec[keep], alpha, mode, renormalize=mode == "mean")

    everything = np.ones(len(gen), bool)
    base = score(tvec @ pvec.T, "no augmentation")
    sweep = {alpha: score(tvec @ fused(alpha, everything).T, f"mean+renorm a={alpha}") for alpha in ALPHAS}
    best_alpha = max(sweep, key=lambda x: sweep[x].macro["RR@10"])
    paper = score(tvec @ fused(PAPER_SUM_ALPHA, everything, "sum").T, f"sum a={PAPER_SUM_ALPHA} (paper)")

    def by_query_lang(select: Any, name: str) -> Report:
        """Each query language gets its own index, fused from the generated queries ``select(lang)`` keeps."""
        scores = np.empty((len(test), len(pid)), np.float32)
        for lang in XQUAD_R_DEV_LANGS:
            rows = qlang == lang
            scores[rows] = tvec[rows] @ fused(best_alpha, select(lang)).T
        return score(scores, name)

    langs = {
        "all generated languages": sweep[best_alpha],
        "query's language only": by_query_lang(lambda lang: glang == lang, "query's language only"),
    }
    has_en = bool((glang == "en").any())
    if has_en:
        langs["English only"] = by_query_lang(lambda lang: glang == "en", "English only")
        langs["all but English"] = by_query_lang(lambda lang: glang != "en", "all but English")

    def maxsim(beta: float, keep: np.ndarray) -> np.ndarray:
        """Max-sim over the whole pool (re-ranking with K = pool size) with the generated queries ``keep`` selects."""
        return maxsim_scores(tvec @ pvec.T, tvec @ gvec[keep].T, owner[keep], beta)

    sims = {beta: score(maxsim(beta, everything), f"max-sim b={beta}") for beta in BETAS}
    sims_no_en = score(maxsim(0.5, glang != "en"), "max-sim b=0.5, all but English") if has_en else None
    best_beta = max(sims, key=lambda b: sims[b].macro["RR@10"])

    meta = json.loads((a.generated / "meta.json").read_text())["params"]
    ks = np.array([g.k for g in gen])
    nsweep = {n: (score(tvec @ fused(best_alpha, ks < n).T, f"mean+renorm a={best_alpha}, n={n}"),
                  score(maxsim(best_beta, ks < n), f"max-sim b={best_beta}, n={n}"))
              for n in N_SWEEP if meta["n"] > 1 and n <= meta["n"]}

    shards = shard_paths(a.generated)
    kept = Counter(g.lang for g in gen)
    every = Counter(g.lang for g in every_row)
    setup = {
        "command": "python " + " ".join(sys.argv), "generated": str(a.generated), "shards": len(shards),
        "finished": is_done(a.generated), "generator": meta["generator"], "n": meta["n"],
        "paragraphs": len(corpus), "articles": len({p.split("-")[0] for p in pid}), "test_queries": len(test),
        "generated_kept": dict(kept), "generated_all": dict(every), "best_alpha": best_alpha, "best_beta": best_beta,
    }
    tests = n_sweep_tests(base, nsweep)
    result = {"setup": setup, "none": base.macro, "sweep": {str(k): v.macro for k, v in sweep.items()},
              "paper_sum": paper.macro, "languages": {k: v.macro for k, v in langs.items()},
              "maxsim": {str(k): v.macro for k, v in sims.items()}, "maxsim_no_en": sims_no_en and sims_no_en.macro,
              "n_sweep": {str(n): {"fusion": f.macro, "maxsim": m.macro} for n, (f, m) in nsweep.items()},
              "n_sweep_tests": [{"system": c.system, "measure": c.measure, "diff": c.mean_diff,
                                 "t_holm": c.t_pvalue_holm, "wilcoxon_holm": c.wilcoxon_pvalue_holm} for c in tests],
              "per_language": {r.name: r.per_language
                               for r in [base, *sweep.values(), paper, *langs.values(), *sims.values()]}}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = document(setup, base, sweep, paper, langs, sims, sims_no_en, nsweep, tests)
    a.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {a.out.with_suffix('.md')}")
    return 0


def n_sweep_tests(base: Report, nsweep: dict[int, tuple[Report, Report]]) -> list[Comparison]:
    """Each n's fusion and max-sim against no augmentation on R@1 and MRR@10 over all queries, Holm over
    the whole table (the paper's claim is about which n gives a significant gain)."""
    return with_holm([paired_test(base.scores(m), r.scores(m), measure=m, baseline_name=base.name, system_name=r.name)
                      for pair in nsweep.values() for r in pair for m in ("R@1", "RR@10")])


def row_of(name: str, r: Report, base: Report) -> str:
    cells = [f"{v:.2f} ({v - base.macro[m]:+.2f})" for m, v in r.macro.items()]
    return f"| {name} | " + " | ".join(cells) + " |"


def document(setup: dict[str, Any], base: Report, sweep: dict[float, Report], paper: Report,
             langs: dict[str, Report], sims: dict[float, Report], sims_no_en: Report | None,
             nsweep: dict[int, tuple[Report, Report]], tests: list[Comparison]) -> list[str]:
    s = setup
    rates = ", ".join(f"{lang} {s['generated_kept'].get(lang, 0)}/{n}"
                      for lang, n in sorted(s["generated_all"].items()))
    head = "| setting | " + " | ".join(base.macro) + " |"
    rule = "|---|" + "---:|" * len(base.macro)
    lines = [
        "# xQG with the real offline generator (XQuAD-R, me5-small)", "",
        f"Made by `{s['command']}`. Generator: {s['generator']} (Qwen2.5-Coder-1.5B-Instruct, summarize-then-ask), "
        f"n = {s['n']} per language; the run was {'finished' if s['finished'] else 'unfinished'} "
        f"({s['shards']} shards): it covers **{s['paragraphs']} of the 240 paragraphs** ({s['articles']} articles). "
        f"Pool: those paragraphs; test queries: all {s['test_queries']} of their questions in de, el, es, hi, tr, vi. "
        f"Kept / generated per language: {rates}.", "",
        "Macro over the six languages; in brackets the difference to no augmentation.", "",
        head, rule, row_of("no augmentation", base, base),
        *(row_of(f"mean + renorm, α = {alpha}", r, base) for alpha, r in sweep.items()),
        row_of(f"sum, α = {PAPER_SUM_ALPHA} (the paper's form)", paper, base), "",
        f"## Which languages to fuse (mean + renorm, α = {s['best_alpha']})", "",
        head, rule, row_of("no augmentation", base, base), *(row_of(k, r, base) for k, r in langs.items()), "",
    ]
    fusion = sweep[s["best_alpha"]]
    lines += ["## Max-sim re-ranking with the same vectors (#5), K = the whole pool", "",
              head, rule, row_of("no augmentation", base, base),
              row_of(f"best fusion (mean + renorm, α = {s['best_alpha']})", fusion, base),
              *(row_of(f"max-sim, β = {beta}", r, base) for beta, r in sims.items()),
              *([row_of("max-sim, β = 0.5, all but English", sims_no_en, base)] if sims_no_en else []), ""]
    if nsweep:
        p = {(c.system, c.measure): c for c in tests}

        def cell(r: Report, m: str) -> str:
            c = p[(r.name, m)]
            return f"{r.macro[m]:.2f} ({c.mean_diff:+.2f}; t {c.t_pvalue_holm:.3f}, W {c.wilcoxon_pvalue_holm:.3f})"

        lines += [f"## Number of generated queries per language (α = {s['best_alpha']}, β = {s['best_beta']})", "",
                  "The first n of each passage's and language's samples, judged by the filters, so the sets are "
                  "nested. Each cell: score (difference to no augmentation; Holm-corrected p of the paired t-test "
                  "and Wilcoxon test over all queries, corrected over the table).", "",
                  "| n | fusion R@1 | fusion MRR@10 | max-sim R@1 | max-sim MRR@10 |", "|---:|---:|---:|---:|---:|",
                  f"| none | {base.macro['R@1']:.2f} | {base.macro['RR@10']:.2f} | | |",
                  *(f"| {n} | {cell(f, 'R@1')} | {cell(f, 'RR@10')} | {cell(m, 'R@1')} | {cell(m, 'RR@10')} |"
                    for n, (f, m) in nsweep.items()), ""]
    best_sim = max(sims.values(), key=lambda r: r.macro["RR@10"])
    comparisons = [(f"mean + renorm, α = {s['best_alpha']}, all languages", fusion, base, "no augmentation"),
                   *((k, v, base, "no augmentation") for k, v in langs.items() if k != "all generated languages"),
                   (best_sim.name, best_sim, fusion, "the best fusion")]
    for name, r, ref, ref_name in comparisons:
        lines += [f"## {name} vs {ref_name}, per language", "",
                  "Each cell: score, difference, and Holm-corrected p of the paired t-test / Wilcoxon test.", "",
                  r.comparison_markdown(ref, digits=2), ""]
    return lines


if __name__ == "__main__":
    sys.exit(main())
