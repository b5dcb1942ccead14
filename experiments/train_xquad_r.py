"""Fine-tuning on synthetic (SWIM-IR-style) vs human queries, cross-validated on XQuAD-R by article.

    python experiments/train_xquad_r.py --shared ../shared/data --generated runs/generate/xquad-r
    python experiments/train_xquad_r.py --smoke          # 1 fold of 2 test articles, 2 steps, writes runs/ only

The 48 articles of XQuAD-R (the "AAA" of paragraph ids "AAA-PP") are shuffled with --seed and dealt into
--folds folds; each fold is tested once by a model trained on the other folds, so no test paragraph or
question (in any language) is seen in training. Starting point: me5-small (mean pooling, normalised,
passages <= 256 tokens, title + text as the trainer joins them). Conditions:

* ``none``: me5-small as is;
* ``human``: the train folds' human questions in de, el, es, hi, tr, vi, each paired with its English
  paragraph;
* ``synthetic``: the kept rows of a generate artifact (--generated) whose docid is a train-fold paragraph,
  at most --synthetic-per-lang per (paragraph, language), in whatever languages the artifact holds;
* ``both``: human + synthetic.

A condition may carry a size: ``human-n40``, ``synthetic-n80``, ``both-n40`` train on nested random subsets of
at most that many pairs of each source they use (so the score can be plotted against the number of pairs);
``human-matched`` takes, in each fold, as many human pairs as that fold has synthetic ones, and
``both-matched`` adds all the synthetic ones to those: a comparison at equal size, since the human data is
~40x larger than what a CPU-bound generation run makes. ``human-matched2`` takes twice as many (the size of
``both-matched``, with ``human-matched``'s pairs as its first half): adding synthetic pairs against adding
as many more human ones.

Hard negatives (--negatives per query) are train-fold paragraphs other than the positive: the base model's
top-scored ones (--hard-negatives base, default) or random ones. Training is InfoNCE with in-batch and hard
negatives, cosine x 20 (E5's tau = 0.05); each (condition, fold) is a resumable train artifact in
--work/<condition>/fold<k> (a finished one returns at once), and each fold's top-100 ranking is cached next
to it. Each fold's test queries (all six languages) are ranked against the FULL 240-paragraph pool (not only
the test fold's paragraphs: the other paragraphs are distractors, as at test time). Fold reports are merged
into one per condition (every query is tested exactly once) and compared per language with R@1, RR@10 and
R@300t (paired t-test and Wilcoxon, Holm): each unsized condition against ``none``, synthetic/both against
human at full and at matched size, and both-matched against synthetic and human-matched2.

Macro RR@10 and R@1 against the number of training pairs of each source (sized, matched and full
conditions) are plotted when sized conditions ran. --generated-shards N uses only the first N finished
shards of --generated, which pins an experiment's data while the run grows.

--xqg checks xQG (as in xqg_real.py) on top of each model of --xqg-conditions (default: all): the kept queries of
--xqg-generated (default --generated), judged by today's filters, are folded into the passage vectors
(mean fusion, alpha 0.3, re-normalised, encoded as queries at <= 32 tokens). Generation covers only part
of the pool, and on the full pool the fused passages would compete with plain ones (coverage, not the
method, would be measured), so both sides of this comparison use the covered paragraphs as the pool and
the test queries whose paragraph is covered: ``<condition>@covered`` (plain) against
``<condition>+xqg`` (fused). A --model trimmed by ``xdr models trim`` (what a GPU run carries) cannot spell
generated text outside the vocabulary it was trimmed on, so for these rankings every model, trained or
not, is first put back on its source's full vocabulary (``untrim_model``; identical on covered text), unless
--no-untrim says the trimmed model was trimmed on the generated questions too (a GPU run, where the full
model cannot travel).

Writes docs/results/training.md, .json and .png (smoke: runs/train-xquad-r-smoke/). Without --generated,
the smoke run makes a tiny fake generate artifact under its work dir so the synthetic path is exercised;
the full run skips synthetic/both when --generated is missing.

On a GPU machine that lacks the evaluation dependencies, ``--rank-only --model DIR`` trains and ranks (DIR:
me5-small rebuilt by ``xdr models unpack``) and stops; run the same command here without those two flags on
the returned --work directory and it evaluates the cached rankings without training again
(experiments/gpu_session.sh does both halves).

TODO: --translations (alignment pairs from xor-tydi/question_translations, dropping rows whose source
question is an XOR dev question) is not implemented yet.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from lib import ROOT, TOP, cached, digest, generated_spec, hard_negatives, ranking, read_dev

from xdr.artifacts import write_text_atomic
from xdr.augment import fuse
from xdr.config import ModelSpec
from xdr.data.schema import Passage, Query, TrainingExample
from xdr.generate.artifact import generated_query_id, split_generated_id
from xdr.langs import XQUAD_R_DEV_LANGS
from xdr.models.encoder import Encoder
from xdr.models.registry import resolve_spec
from xdr.models.trim import TRIM_FILE, untrim_model

if TYPE_CHECKING:
    from xdr.evaluate import Report

MEASURES = ["R@1", "RR@10"]
BUDGETS = [300]
XQG_ALPHA = 0.3


SOURCES = ("human", "synthetic", "both")


def parse_condition(cond: str) -> tuple[str, int | str | None]:
    """(source, size): size is None (all pairs), an int cap per source, or "matched[<k>]" (k x the fold's
    synthetic pairs)."""
    source, _, size = cond.partition("-")
    if cond == "none" or (source in SOURCES and not size):
        return cond, None
    if source in SOURCES and size.startswith("matched") and size[7:] in ("", *"23456789") and source != "synthetic":
        return source, size
    if source in SOURCES and size.startswith("n") and size[1:].isdigit() and int(size[1:]) > 0:
        return source, int(size[1:])
    raise SystemExit(f"--conditions: unknown condition {cond!r} (none, human, synthetic, both, optionally "
                     "-n<pairs>, or human-matched[k] / both-matched[k])")


def article(pid: str) -> str:
    return pid.split("-", 1)[0]


def make_folds(articles: Sequence[str], k: int, seed: int) -> list[list[str]]:
    order = sorted(articles)
    random.Random(seed).shuffle(order)
    return [sorted(order[i::k]) for i in range(k)]


class FakeGenerator:
    """Smoke only: a trivial "question" per (paragraph, language) from the paragraph's first words."""

    name = "fake"
    config: ClassVar[dict[str, Any]] = {"kind": "fake-smoke", "version": 1}

    def generate(self, passages: Sequence[Passage], lang: str, n: int, seed: int) -> list[list[str]]:
        return [[f"[{lang}] {' '.join(p.text.split()[k:k + 8])}?" for k in range(n)] for p in passages]


def read_synthetic(generated: Path, cap: int, shards: int | None = None) -> list[Query]:
    """Kept generated queries as Query records with id ``docid::lang::k``, at most ``cap`` per (docid, lang)."""
    from xdr.generate.artifact import read_generated

    seen: dict[tuple[str, str], int] = {}
    out = []
    for g in read_generated(generated, partial=True, shards=shards):
        if not g.query:
            continue
        n = seen.get((g.docid, g.lang), 0)
        if n >= cap:
            continue
        seen[(g.docid, g.lang)] = n + 1
        out.append(Query(generated_query_id(g.docid, g.lang, g.k), g.lang, g.query))
    return out


def read_xqg(generated: Path, passages: dict[str, Passage]) -> list[tuple[str, str]]:
    """(paragraph id, query) of every kept generated query, judged by today's filters (long runs span
    changes to the rules), for the XQuAD-R paragraphs only."""
    from xdr.generate.artifact import read_generated, refilter

    rows = [g for g in read_generated(generated, kept_only=False, partial=True) if g.docid in passages]
    return [(g.docid, g.query) for g in refilter(rows, passages) if g.keep and g.query]


class StepTimer:
    """A TrainerCallback that records the wall time of every optimizer step."""

    def __new__(cls) -> Any:
        from transformers import TrainerCallback

        class _Timer(TrainerCallback):
            def __init__(self) -> None:
                self.times: list[float] = []
                self._t = 0.0

            def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                self._t = time.perf_counter()

            def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                self.times.append(time.perf_counter() - self._t)

        return _Timer()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--generated", type=Path, help="generate artifact with queries for the XQuAD-R pool")
    ap.add_argument("--work", type=Path, help="default runs/train-xquad-r (smoke: runs/train-xquad-r-smoke)")
    ap.add_argument("--out", type=Path, help="output stem; default docs/results/training (smoke: under runs/)")
    ap.add_argument("--conditions", default="none,human,synthetic,both")
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--max-steps", type=int, default=None, help="overrides --epochs")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--warmup", type=float, default=0.1, help="fraction of the steps")
    ap.add_argument("--negatives", type=int, default=1, help="hard negatives per query")
    ap.add_argument("--hard-negatives", choices=["base", "random"], default="base")
    ap.add_argument("--scale", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--synthetic-per-lang", type=int, default=3, help="cap per (paragraph, language)")
    ap.add_argument("--generated-shards", type=int, default=None, help="only the first N shards of --generated")
    ap.add_argument("--xqg", action="store_true", help="also evaluate models with xQG augmentation")
    ap.add_argument("--xqg-generated", type=Path, default=None, help="generate artifact for --xqg")
    ap.add_argument("--xqg-conditions", default=None, help="conditions checked by --xqg (default: all)")
    ap.add_argument("--no-untrim", action="store_true",
                    help="xQG with a trimmed --model as it is (trimmed on the generated questions too)")
    ap.add_argument("--smoke", action="store_true", help="1 fold of 2 test articles, 2 steps, no plot, runs/ only")
    ap.add_argument("--mini-batch-size", type=int, default=None,
                    help="GradCache (cached-mnrl): the same loss as --batch-size in memory for this many texts")
    ap.add_argument("--model", default="me5-small", help="starting model: me5-small or a local directory")
    ap.add_argument("--rank-only", action="store_true", help="train and cache rankings, skip evaluation")
    a = ap.parse_args()

    work = a.work or ROOT / "runs" / ("train-xquad-r-smoke" if a.smoke else "train-xquad-r")
    out = a.out or (work / "training" if a.smoke else ROOT / "docs" / "results" / "training")
    max_steps = 2 if a.smoke else a.max_steps
    conditions = [c for c in a.conditions.split(",") if c]
    for c in conditions:
        parse_condition(c)

    data, queries = read_dev(a.shared)
    corpus, qrels = data.corpus, data.qrels
    pid = [p.id for p in corpus]
    by_id = {p.id: p for p in corpus}
    texts = {p.id: p.text for p in corpus}  # what R@300t tokenizes
    folds = make_folds({article(p) for p in pid}, a.folds, a.seed)
    # (test articles, train articles) per fold; smoke: 2 test articles, 2 train articles
    splits = [(f, sorted(x for g in folds if g is not f for x in g)) for f in folds]
    if a.smoke:
        splits = [(folds[0][:2], folds[1][:2])]
        folds = [folds[0][:2]]
    para_of = {q.id: next(iter(qrels[q.id])) for q in queries}

    generated = a.generated
    if generated is None and a.smoke:
        from xdr.generate import run_generation

        generated = run_generation(corpus, FakeGenerator(), work / "fake-generated", langs=XQUAD_R_DEV_LANGS,
                                   n=1, seed=a.seed, filters=None)
    synthetic: list[Query] = read_synthetic(generated, a.synthetic_per_lang, a.generated_shards) if generated else []
    if not synthetic:
        dropped = [c for c in conditions if parse_condition(c)[0] in ("synthetic", "both")
                   or isinstance(parse_condition(c)[1], str)]
        if dropped:
            print(f"no --generated queries: skipping {', '.join(dropped)}", flush=True)
        conditions = [c for c in conditions if c not in dropped]
    syn_para = {q.id: split_generated_id(q.id)[0] for q in synthetic}
    unknown = {d for d in syn_para.values() if d not in by_id}
    if unknown:
        print(f"warning: {len(unknown)} generated docids are not XQuAD-R paragraphs, e.g. {sorted(unknown)[:3]}")
        synthetic = [q for q in synthetic if syn_para[q.id] in by_id]

    xqg_queries = read_xqg(a.xqg_generated or generated, by_id) if a.xqg and (a.xqg_generated or generated) else []
    xqg_conditions = set(a.xqg_conditions.split(",")) if a.xqg_conditions else None
    covered = sorted({para for para, _ in xqg_queries}, key=pid.index)
    cov_row = {p: i for i, p in enumerate(covered)}
    xqg_owner = np.array([cov_row[para] for para, _ in xqg_queries], dtype=np.int64)
    xqg_key = digest([f"{para}\t{text}" for para, text in xqg_queries])

    @functools.cache
    def trim_source() -> str | None:
        """The full-vocabulary model a trimmed --model came from, else None."""
        trim = Path(spec().path) / TRIM_FILE
        return json.loads(trim.read_text())["source"]["path"] if trim.exists() else None

    def full_vocabulary(model: Path | None) -> Encoder | None:
        """``model`` (None: the starting model) as an encoder at full vocabulary; None: base() will do."""
        from xdr.train.dual import trained_spec

        if trim_source() is None or a.no_untrim:
            return None if model is None else Encoder.load(trained_spec(model, spec()))
        if model is None:
            return Encoder.load(resolve_spec(trim_source(), passage_max_length=256))
        full = model.parent / "model-full"
        if not full.exists():
            untrim_model(model, trim_source(), full, trim_info=spec().path)
        return Encoder.load(trained_spec(full, spec()))

    # the model is loaded only when something is not cached: an evaluation of returned rankings needs none
    @functools.cache
    def spec() -> ModelSpec:
        return resolve_spec(a.model, passage_max_length=256)

    @functools.cache
    def base() -> Encoder:
        return Encoder.load(spec())

    @functools.cache
    def pvec0() -> np.ndarray:
        return cached(work / "base" / f"passages-{digest(pid)}.npy",
                      lambda: base().encode([p.joined(spec().title_separator) for p in corpus], "passage",
                                            batch_size=16))

    def base_queries(qs: list[Query], name: str) -> np.ndarray:
        return cached(work / "base" / f"{name}-{digest([q.text for q in qs])}.npy",
                      lambda: base().encode([q.text for q in qs], "query", batch_size=64))

    def examples(qs: list[Query], positive: dict[str, str], train_rows: np.ndarray, name: str,
                 rng: random.Random) -> list[TrainingExample]:
        """Each query with its paragraph and --negatives train-fold paragraphs other than it."""
        if a.hard_negatives == "base" and a.negatives:
            column = {pid[j]: c for c, j in enumerate(train_rows)}
            scores = base_queries(qs, name) @ pvec0()[train_rows].T
            mined = hard_negatives(scores, [column[positive[q.id]] for q in qs], a.negatives)
            negs = [[pid[train_rows[c]] for c in row] for row in mined]
        else:
            negs = [rng.sample([pid[j] for j in train_rows if pid[j] != positive[q.id]], a.negatives) for q in qs]
        return [TrainingExample(query=q, positives=(by_id[positive[q.id]],), negatives=tuple(by_id[n] for n in ns))
                for q, ns in zip(qs, negs, strict=True)]

    def rank(enc: Encoder | None, test: list[Query], variants: list[str]) -> dict[str, dict[str, list[str]]]:
        """Top-TOP rankings of ``test``: ``plain`` over the full pool; ``covered`` and ``xqg`` over the
        paragraphs the xQG artifact covers, for the test queries whose paragraph is covered, without and
        with the generated queries fused in."""
        enc = enc or base()

        def top(qv: np.ndarray, qs: list[Query], vecs: np.ndarray, ids: list[str]) -> dict[str, list[str]]:
            return ranking(qv @ vecs.T, [q.id for q in qs], ids, TOP)

        def passages(ids: list[str]) -> np.ndarray:
            if enc is base():
                return pvec0()[[pid.index(p) for p in ids]]
            return enc.encode([by_id[p].joined(spec().title_separator) for p in ids], "passage", batch_size=16)

        out = {}
        if "plain" in variants:
            out["plain"] = top(enc.encode([q.text for q in test], "query", batch_size=64), test, passages(pid), pid)
        qs = [q for q in test if para_of[q.id] in cov_row]
        if "xqg" in variants and not qs:  # no test paragraph of this fold is covered
            out["covered"] = out["xqg"] = {}
        elif "xqg" in variants:  # only what the covered pool needs: its passages and its queries
            enc32 = enc.with_spec(generated_spec(enc.spec))
            gv = enc32.encode([text for _, text in xqg_queries], "query", batch_size=64)
            cv = passages(covered)
            tv = enc.encode([q.text for q in qs], "query", batch_size=64)
            out["covered"] = top(tv, qs, cv, covered)
            out["xqg"] = top(tv, qs, fuse(cv, xqg_owner, gv, XQG_ALPHA, "mean", renormalize=True), covered)
        return out

    def train_fold(cond: str, k: int, train_articles: list[str]) -> Path | None:
        source, size = parse_condition(cond)
        if source == "none":
            return None
        train_rows = np.array([i for i, p in enumerate(pid) if article(p) in train_articles])
        train_paras = {pid[i] for i in train_rows}
        rng = random.Random(f"{a.seed}-{cond}-{k}")
        exs: list[TrainingExample] = []
        sq = [q for q in synthetic if syn_para[q.id] in train_paras]
        if source in ("human", "both"):
            hq = [q for q in queries if para_of[q.id] in train_paras]
            cap = len(sq) * int(size[7:] or 1) if isinstance(size, str) else size
            if cap is not None:  # nested subsets: a smaller size's pairs are a prefix of a larger one's
                hq = random.Random(f"{a.seed}-sizes-human-{k}").sample(hq, len(hq))[:cap]
            exs += examples(hq, para_of, train_rows, f"human-fold{k}-{len(hq)}", rng)
        if source in ("synthetic", "both"):
            if isinstance(size, int):
                sq = random.Random(f"{a.seed}-sizes-{k}").sample(sq, len(sq))[:size]
            exs += examples(sq, syn_para, train_rows, f"synthetic-fold{k}-{len(sq)}", rng)
        random.Random(f"{a.seed}-shuffle-{cond}-{k}").shuffle(exs)
        steps = max_steps or math.ceil(a.epochs * len(exs) / a.batch_size)
        from xdr.train.args import DualTrainingConfig
        from xdr.train.dual import train_dual_encoder

        timer = StepTimer()
        t0 = time.perf_counter()
        config = DualTrainingConfig(
            negatives_per_query=a.negatives, similarity="cos", scale=a.scale, epochs=a.epochs,
            loss="cached-mnrl" if a.mini_batch_size else "mnrl", mini_batch_size=a.mini_batch_size or 32,
            max_steps=max_steps, lr=a.lr, warmup_steps=int(a.warmup * steps), batch_size=a.batch_size, seed=a.seed,
            save_steps=max(50, steps // 4), logging_steps=10,
        )
        model = train_dual_encoder([exs], spec(), work / cond / f"fold{k}", config, callbacks=[timer])
        if timer.times:
            write_text_atomic(work / cond / f"fold{k}" / "steps.json", json.dumps(timer.times))
        done = f" ({np.mean(timer.times):.1f} s/step over {len(timer.times)})" if timer.times else " (cached)"
        print(f"{cond} fold{k}: {len(exs)} pairs, {steps} steps, {time.perf_counter() - t0:.0f} s{done}", flush=True)
        return model

    rankings: dict[str, list[tuple[dict[str, dict[str, list[str]]], list[Query]]]] = {}
    for cond in conditions:
        with_xqg = bool(xqg_queries) and (xqg_conditions is None or cond in xqg_conditions)
        for k, (test_articles, train_articles) in enumerate(splits):
            assert not set(test_articles) & set(train_articles)
            test = [q for q in queries if article(para_of[q.id]) in test_articles]
            fold = work / cond / f"fold{k}"
            caches = {"plain": fold / f"ranking-{digest([*test_articles, cond, ''])}.json"}
            if with_xqg:
                caches |= {v: fold / f"ranking-{v}-{digest([*test_articles, cond, xqg_key])}.json"
                           for v in ("covered", "xqg")}
            missing = [v for v, c in caches.items() if not c.exists()]
            if missing:  # a fold whose rankings are all cached needs no model (they may come from another machine)
                model = train_fold(cond, k, train_articles)
                if "xqg" in missing:
                    enc = full_vocabulary(model)
                else:
                    from xdr.train.dual import trained_spec

                    enc = None if model is None else Encoder.load(trained_spec(model, spec()))
                for v, hits in rank(enc, test, missing).items():
                    write_text_atomic(caches[v], json.dumps(hits))
            rankings.setdefault(cond, []).append(({v: json.loads(c.read_text()) for v, c in caches.items()}, test))
    if a.rank_only:
        print(f"rankings cached under {work}; evaluate them by running again without --rank-only", flush=True)
        return 0

    from xdr.evaluate import Report, evaluate

    reports: dict[str, Report] = {}
    counts: dict[str, int] = {}
    step_times: list[float] = []
    for cond, folds_ranked in rankings.items():
        per_variant: dict[str, dict[str, dict[str, float]]] = {}
        langs: dict[str, str] = {}
        for ranked, test in folds_ranked:
            for v, ranked_ in ranked.items():
                qs = [q for q in test if q.id in ranked_]
                if not qs:
                    continue
                rep = evaluate(ranked_, qs, qrels={q.id: qrels[q.id] for q in qs}, passages=texts,
                               measures=MEASURES, token_budgets=BUDGETS, name=cond)
                for m, s in rep.per_query.items():
                    per_variant.setdefault(v, {}).setdefault(m, {}).update(s)
                langs.update(rep.langs)
        for v, per_query in per_variant.items():
            name = {"plain": cond, "covered": f"{cond}@covered", "xqg": f"{cond}+xqg"}[v]
            reports[name] = Report(per_query, {q: langs[q] for q in per_query[MEASURES[0]]}, name)
        rows = [json.loads(m.read_text())["params"]["rows"] for m in sorted((work / cond).glob("fold*/meta.json"))]
        if rows:
            counts[cond] = round(float(np.mean(rows)))
        step_times += [t for f in sorted((work / cond).glob("fold*/steps.json")) for t in json.loads(f.read_text())]
        for name in (cond, f"{cond}@covered", f"{cond}+xqg"):
            if name in reports:
                print(f"{name:>16} " + "  ".join(f"{m} {v:6.2f}" for m, v in reports[name].macro.items()), flush=True)

    write(a, work, out, folds, reports, counts, step_times, len(synthetic), generated, len(covered))
    return 0


NOTES = "## How it was run, and what it says"


def write(a: argparse.Namespace, work: Path, out: Path, folds: list[list[str]], reports: dict[str, Report],
          counts: dict[str, int], step_times: list[float], n_syn: int,
          generated: Path | None, n_covered: int) -> None:
    command = "python " + " ".join(sys.argv)
    n_queries = len(next(iter(reports.values())).langs)
    result = {
        "setup": {"command": command, "folds": folds, "test_queries": n_queries, "synthetic_queries": n_syn,
                  "xqg_covered_paragraphs": n_covered,
                  "generated": str(generated) if generated else None,
                  "train_rows_per_fold": counts, "seconds_per_step": float(np.mean(step_times)) if step_times else None,
                  "args": {k: str(v) for k, v in vars(a).items()}},
        "macro": {n: r.macro for n, r in reports.items()},
        "per_language": {n: r.per_language for n, r in reports.items()},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    for r in reports.values():  # per-query scores: large, so beside the rankings, not in docs/
        r.to_json(work / "reports" / f"{r.name.replace('+', '-')}.report.json")
    lines = [
        "# Fine-tuning me5-small on synthetic vs human queries (XQuAD-R, cross-validated by article)",
        "",
        f"Made by `{command}`. {len(folds)} fold(s) over articles; {n_queries} test queries (de, el, es, hi, "
        "tr, vi), each ranked once, by the model whose training folds exclude its article, against the full "
        "240-paragraph English pool. Macro averages over languages.",
        *([f"Starting model: me5-small trimmed to XQuAD-R's vocabulary ({a.model}: `bash experiments/gpu_session.sh "
           f"prepare`, then `xdr models unpack .carry/me5-xq.safetensors --out {a.model}`), the form that travels to "
           "the GPU machine; it encodes XQuAD-R text exactly as me5-small does."]
          if (Path(a.model) / TRIM_FILE).exists() else []),
        *([f"Rows `<condition>@covered` and `<condition>+xqg` (xQG, #3): the pool is the {n_covered} paragraphs "
           "that the xQG generate artifact covers and the test queries are those of their questions, without "
           "and with the generated queries fused in (mean, α = 0.3, re-normalised)."] if n_covered else []),
        "",
        "| condition | train pairs (mean per fold) | " + " | ".join(next(iter(reports.values())).macro) + " |",
        "|---|---:|" + "---:|" * (len(MEASURES) + len(BUDGETS)),
    ]
    for n, r in reports.items():
        lines.append(f"| {n} | {counts.get(n, '')} | " + " | ".join(f"{v:.2f}" for v in r.macro.values()) + " |")
    plain = [n for n in reports if "@" not in n and "+" not in n]
    # sized runs are the curve (table and plot); per-language tests for the full and size-matched ones
    pairs = [(n, "none") for n in plain if n != "none" and not isinstance(parse_condition(n)[1], int)]
    pairs += [("synthetic", "human"), ("both", "human"), ("both", "synthetic"), ("synthetic", "human-matched"),
              ("both-matched", "human-matched"), ("both-matched", "synthetic"), ("both-matched", "human-matched2")]
    pairs = [(x, y) for x, y in pairs if x in reports and y in reports]
    pairs += [(n, n.replace("+xqg", "@covered")) for n in reports if n.endswith("+xqg")]
    for sys_name, base_name in pairs:
        table = reports[sys_name].comparison_markdown(reports[base_name], digits=2)
        lines += ["", f"## {sys_name} vs {base_name}", "", table]
    md = out.with_suffix(".md")
    old = md.read_text() if md.exists() else ""
    notes = old[old.index(NOTES):] if NOTES in old else ""  # the hand-written reading survives a rerun
    md.write_text("\n".join(lines) + "\n" + ("\n" + notes if notes else ""))
    if any(isinstance(parse_condition(n)[1], int) for n in plain) and not a.smoke:
        plot(reports, counts, out.with_suffix(".png"))
    print(f"wrote {out.with_suffix('.md')}")


def plot(reports: dict[str, Report], counts: dict[str, int], path: Path) -> None:
    """Macro score against training pairs per fold, one line per source, none as the floor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    for ax, m in zip(axes, ("RR@10", "R@1"), strict=True):
        for source, color in zip(SOURCES, ("C0", "C1", "C2"), strict=True):
            pts = sorted((counts[n], r.macro[m]) for n, r in reports.items()
                         if n in counts and parse_condition(n)[0] == source)
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", color=color, label=source)
        if "none" in reports:
            ax.axhline(reports["none"].macro[m], color="grey", ls=":", lw=1, label="none")
        ax.set_xscale("log")
        ax.set_xlabel("training pairs per fold")
        ax.set_ylabel(f"macro {m}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
