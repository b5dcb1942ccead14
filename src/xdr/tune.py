"""Tuning xQG's and query expansion's weights on a labelled dev set, with the gain measured held out.

What it tunes, jointly over a grid: α (the weight of generated queries fused into passages, ``xdr augment``),
β (max-sim's weight, ``xdr search --beta``), n (how many generated queries per passage are used: the first
n of each language, as a run with ``--n`` would have made them) and w (the weight of the expansions' mean
vector, ``xdr search --combine fuse --expansion-weight``). Everything is encoded once; each setting is
then numpy over the cached vectors: passages fused as :func:`xdr.augment.fuse` does (mean, re-normalised),
the query fused with its expansions the same way, exact inner-product search over the whole dev pool, and
max-sim over every passage (what ``--rerank-k`` at least the pool size gives).

Choosing a setting on the queries it is then scored on overstates its gain. :func:`tune` therefore
splits the queries into k folds, chooses on k-1 and scores the choice on the held-out fold, and reports
that held-out score against the defaults' on the same queries. Queries that share their relevant passages
(one question in several languages) stay in one fold, so a fold never sees its own question translated.
The settings written out are the best on all queries; the cross-validated score says what to expect.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from xdr.artifacts import atomic_path, write_json_atomic, write_text_atomic
from xdr.augment import fuse
from xdr.config import DEFAULT_BETA, ModelSpec
from xdr.embeddings import embeddings_meta, load_embeddings
from xdr.errors import XdrError
from xdr.expand import read_expansions
from xdr.generate.artifact import split_generated_id
from xdr.models.encoder import Encoder

SECTIONS = {"augment": ("alpha",), "generate": ("n",), "search": ("beta", "expansion_weight")}
PARAMS = ("alpha", "beta", "n", "expansion_weight")
METRICS = ("mrr@10", "r@1")
SETTINGS_FILE, REPORT_FILE, PLOT_FILE = "tuned.yaml", "report.json", "tune.png"


@dataclass(frozen=True)
class TuneData:
    """Cached vectors of a dev set: query rows ``qids`` (and their expansions' mean vector where
    ``has_expansion``), passage rows ``pids``, and generated-query vectors with their passage row
    (``owner``) and rank ``k`` within that passage and language."""

    qids: list[str]
    queries: np.ndarray
    pids: list[str]
    passages: np.ndarray
    generated: np.ndarray
    owner: np.ndarray
    k: np.ndarray
    qrels: dict[str, dict[str, int]]
    expansions: np.ndarray | None = None
    has_expansion: np.ndarray | None = None


@dataclass(frozen=True)
class Grid:
    alpha: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
    beta: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    n: tuple[int, ...] = (1, 2, 4, 8)
    expansion_weight: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6)

    def settings(self) -> list[tuple[float, float, int, float]]:
        return list(itertools.product(self.alpha, self.beta, self.n, self.expansion_weight))


DEFAULTS = {"alpha": 0.3, "beta": DEFAULT_BETA, "n": None, "expansion_weight": 0.0}


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _per_query(scores: np.ndarray, relevant: list[np.ndarray], metric: str) -> np.ndarray:
    """The metric of each query from a full score matrix (ties count in the query's favour)."""
    out = np.zeros(len(scores))
    for i, rel in enumerate(relevant):
        if len(rel):
            rank = 1 + int((scores[i] > scores[i, rel].max()).sum())
            out[i] = (1.0 / rank if rank <= 10 else 0.0) if metric == "mrr@10" else float(rank == 1)
    return out


def score_grid(data: TuneData, grid: Grid, metric: str = "mrr@10") -> tuple[list[tuple[Any, ...]], np.ndarray]:
    """Every setting of ``grid`` and its per-query metric: ``(settings, [len(settings), len(qids)])``."""
    if metric not in METRICS:
        raise XdrError(f"metric must be one of {', '.join(METRICS)}, not {metric!r}")
    if data.expansions is None and any(grid.expansion_weight):
        raise XdrError("an expansion weight above 0 needs the queries' expansions")
    col = {p: i for i, p in enumerate(data.pids)}
    relevant = [np.array([col[d] for d, r in data.qrels.get(q, {}).items() if r > 0 and d in col], np.int64)
                for q in data.qids]
    if not any(len(r) for r in relevant):
        raise XdrError("no query has a relevant passage in the pool: check the qrels and the passage ids")
    settings, rows = [], []
    queries = {}
    for w in grid.expansion_weight:
        q = data.queries.copy()
        if w and data.expansions is not None and data.has_expansion is not None:
            h = data.has_expansion
            q[h] = (1.0 - w) * q[h] + w * data.expansions[h]
        queries[w] = _unit(q)
    for n in grid.n:
        pick = data.k < n
        g, owner = data.generated[pick], data.owner[pick]
        order = np.argsort(owner, kind="stable")
        g, owner = g[order], owner[order]
        starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]]) if len(owner) else np.array([], np.int64)
        for alpha in grid.alpha:
            fused = fuse(data.passages, owner, g, alpha, "mean", renormalize=True)
            for w in grid.expansion_weight:
                dense = queries[w] @ fused.T
                maxg = dense.copy()
                if len(g):
                    maxg[:, owner[starts]] = np.maximum.reduceat(queries[w] @ g.T, starts, axis=1)
                for beta in grid.beta:
                    settings.append((alpha, beta, n, w))
                    rows.append(_per_query(dense + beta * maxg, relevant, metric))
    return settings, np.array(rows)


def _folds(data: TuneData, k: int, seed: int) -> np.ndarray:
    """A fold per query; queries with the same relevant passages share one."""
    groups = [frozenset(d for d, r in data.qrels.get(q, {}).items() if r > 0) or q for q in data.qids]
    unique = list(dict.fromkeys(groups))
    if len(unique) < k:
        raise XdrError(f"{k} folds need at least {k} groups of queries; there are {len(unique)}")
    rank = np.random.default_rng(seed).permutation(len(unique))
    fold_of = {g: int(rank[i]) % k for i, g in enumerate(unique)}
    return np.array([fold_of[g] for g in groups])


def tune(data: TuneData, grid: Grid | None = None, *, folds: int = 5, metric: str = "mrr@10",
         seed: int = 0) -> dict[str, Any]:
    """Cross-validated grid search: per fold the setting chosen on the others and its held-out score,
    the held-out mean against the defaults', the best setting on all queries, and each parameter's curve."""
    grid = grid or Grid()
    settings, scores = score_grid(data, grid, metric)
    default = {**DEFAULTS, "n": max(grid.n)}
    if data.expansions is None:
        default["expansion_weight"] = 0.0
    try:
        d = settings.index(tuple(default[p] for p in PARAMS))
    except ValueError:
        raise XdrError(f"the grid must hold the defaults {default} to compare against them") from None
    fold = _folds(data, folds, seed)
    per_fold, chosen_scores = [], np.zeros(len(data.qids))
    for f in range(folds):
        train, test = fold != f, fold == f
        best = int(np.argmax(scores[:, train].mean(axis=1)))
        chosen_scores[test] = scores[best, test]
        chosen = dict(zip(PARAMS, settings[best], strict=True))
        per_fold.append({"fold": f, "queries": int(test.sum()), "chosen": chosen,
                         "train": float(scores[best, train].mean()), "held_out": float(scores[best, test].mean()),
                         "default_held_out": float(scores[d, test].mean())})
    best = int(np.argmax(scores.mean(axis=1)))
    means = scores.mean(axis=1)
    curves = {p: {str(v): float(max(m for s, m in zip(settings, means, strict=True) if s[i] == v)) for v in values}
              for i, (p, values) in enumerate(zip(PARAMS, (grid.alpha, grid.beta, grid.n, grid.expansion_weight),
                                                  strict=True))}
    return {
        "metric": metric, "folds": folds, "seed": seed, "queries": len(data.qids), "grid": grid.__dict__,
        "per_fold": per_fold, "default": default,
        "held_out": {"tuned": float(chosen_scores.mean()), "default": float(scores[d].mean()),
                     "gain": float(chosen_scores.mean() - scores[d].mean())},
        "chosen": dict(zip(PARAMS, settings[best], strict=True)), "chosen_all_queries": float(means[best]),
        "curves": curves,
    }


def settings_file(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The chosen values as ``xdr augment --config`` / ``xdr search --config`` read them."""
    c = result["chosen"]
    return {"augment": {"alpha": c["alpha"]}, "generate": {"n": c["n"]},
            "search": {"beta": c["beta"], "expansion_weight": c["expansion_weight"]}}


def write_tune(result: dict[str, Any], out_dir: str | Path) -> Path:
    """``tuned.yaml`` (the settings), ``report.json`` (folds, held-out scores, curves) and ``tune.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    h = result["held_out"]
    head = (f"# chosen by xdr tune on {result['queries']} queries ({result['metric']}); {result['folds']}-fold "
            f"held-out {h['tuned']:.4f} vs default {h['default']:.4f}\n")
    write_text_atomic(out / SETTINGS_FILE, head + yaml.safe_dump(settings_file(result), sort_keys=False))
    write_json_atomic(out / REPORT_FILE, result)
    fig, axes = plt.subplots(1, len(PARAMS), figsize=(4 * len(PARAMS), 3.2), sharey=True)
    for ax, p in zip(axes, PARAMS, strict=True):
        xs = [float(v) for v in result["curves"][p]]
        ax.plot(xs, list(result["curves"][p].values()), marker="o")
        ax.axvline(float(result["chosen"][p]), color="grey", linestyle=":")
        ax.set_xlabel(p)
        ax.set_title(f"best over the others; chosen {result['chosen'][p]}", fontsize=8)
    axes[0].set_ylabel(result["metric"])
    fig.tight_layout()
    with atomic_path(out / PLOT_FILE) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return out


def load_tuned(path: str | Path, section: str) -> dict[str, Any]:
    """The settings ``xdr tune`` chose for one command (``augment`` or ``search``)."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise XdrError(f"{p}: cannot read the settings ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get(section, {}), dict):
        raise XdrError(f"{p}: not a settings file written by `xdr tune` (a mapping with a {section!r} mapping)")
    values = data.get(section, {})
    unknown = set(values) - set(SECTIONS[section])
    if unknown:
        raise XdrError(f"{p}: unknown {section} settings {', '.join(sorted(unknown))}")
    return values


def tune_data_from_files(
    passages: str | Path, generated: str | Path, queries: Sequence[Any], qrels: dict[str, dict[str, int]],
    *, expansions: str | Path | None = None, strategy: str | None = None, device: str | None = None,
) -> TuneData:
    """Load the passage store and the generated-query store (``xdr encode --kind generated``), and encode
    the queries (and their kept expansions of ``strategy``, averaged per query) once with the passages'
    model."""
    pids, pvec = load_embeddings(passages)
    gids, gvec = load_embeddings(generated)
    row = {p: i for i, p in enumerate(pids)}
    parsed = [split_generated_id(g) for g in gids]
    keep = np.array([d in row for d, _, _ in parsed], bool)
    gowner = np.array([row.get(d, -1) for d, _, _ in parsed], np.int64)[keep]
    k = np.array([kk for _, _, kk in parsed], np.int64)[keep]
    enc = Encoder.load(ModelSpec(**embeddings_meta(passages)["params"]["model"]), device=device)
    qvec = enc.encode([q.text for q in queries], "query")
    exp, has = None, None
    if expansions is not None:
        index = {q.id: i for i, q in enumerate(queries)}
        rows = [(index[e.qid], e.expansion or "") for e in read_expansions(expansions, strategy=strategy)
                if e.qid in index]
        owner = np.array([i for i, _ in rows], np.int64)
        vecs = enc.encode([t for _, t in rows], "query")
        counts = np.bincount(owner, minlength=len(queries)).astype(np.float32)
        exp = np.zeros_like(qvec)
        np.add.at(exp, owner, vecs)
        exp /= np.maximum(counts, 1.0)[:, None]
        has = counts > 0
    return TuneData([q.id for q in queries], qvec, pids, pvec, gvec[keep], gowner, k, qrels, exp, has)
