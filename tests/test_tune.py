"""`xdr tune`: the grid's scores against a brute-force computation, folds that keep a question's languages
together, held-out choice per fold, the settings file that `xdr augment` / `xdr search` read, the plot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_generate_models import mt5_dir  # noqa: F401  (the tiny random mT5 fixture)
from typer.testing import CliRunner

from xdr.augment import fuse
from xdr.cli import app
from xdr.config import ModelSpec
from xdr.embeddings import write_embeddings
from xdr.errors import XdrError
from xdr.generate.artifact import generated_query_id
from xdr.tune import Grid, TuneData, _folds, load_tuned, score_grid, tune, write_tune

DIM, P, PER = 12, 30, 4
SPEC = ModelSpec(name="toy", path="toy", fingerprint="f1", normalize=True)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data() -> TuneData:
    """Queries in two 'languages' per passage; generated queries near the questions, so fusion helps."""
    rng = np.random.default_rng(3)
    passages = unit(rng.normal(size=(P, DIM)))
    topics = unit(rng.normal(size=(P, DIM)))  # what questions about a passage are near
    gen = unit(np.repeat(topics, PER, axis=0) + 0.3 * rng.normal(size=(P * PER, DIM)))
    owner, k = np.repeat(np.arange(P), PER), np.tile(np.arange(PER), P)
    qids, qvec, qrels = [], [], {}
    for i in range(P):
        for lang in ("de", "es"):
            qids.append(f"q{i}-{lang}")
            qvec.append(unit(topics[i] + 0.6 * passages[i] + 0.5 * rng.normal(size=DIM)))
            qrels[f"q{i}-{lang}"] = {f"d{i}": 1}
    q = np.array(qvec, np.float32)
    exp = unit(q + 0.5 * passages[np.repeat(np.arange(P), 2)])
    return TuneData(qids, q, [f"d{i}" for i in range(P)], passages, gen, owner, k, qrels, exp,
                    np.arange(2 * P) % 3 != 0)


def brute(data: TuneData, alpha: float, beta: float, n: int, w: float) -> np.ndarray:
    pick = data.k < n
    fused = fuse(data.passages, data.owner[pick], data.generated[pick], alpha, "mean", renormalize=True)
    q = data.queries.copy()
    q[data.has_expansion] = (1 - w) * q[data.has_expansion] + w * data.expansions[data.has_expansion]
    q = unit(q)
    out = []
    for i, qid in enumerate(data.qids):
        s = fused @ q[i]
        final = np.array([s[p] + beta * max(data.generated[pick][data.owner[pick] == p] @ q[i]) for p in range(P)])
        rel = int(next(iter(data.qrels[qid]))[1:])
        rank = 1 + int((final > final[rel]).sum())
        out.append(1 / rank if rank <= 10 else 0.0)
    return np.array(out)


def test_grid_scores_match_brute_force(data: TuneData) -> None:
    grid = Grid(alpha=(0.0, 0.4), beta=(0.0, 0.7), n=(1, 3), expansion_weight=(0.0, 0.5))
    settings, scores = score_grid(data, grid)
    assert len(settings) == 16 and scores.shape == (16, len(data.qids))
    for s, row in zip(settings, scores, strict=True):
        assert np.allclose(row, brute(data, *s)), s


def test_folds_keep_a_questions_languages_together(data: TuneData) -> None:
    fold = _folds(data, 5, seed=1)
    assert all(fold[2 * i] == fold[2 * i + 1] for i in range(P))
    assert set(fold.tolist()) == set(range(5))
    with pytest.raises(XdrError, match="at least 31 groups"):
        _folds(data, 31, seed=1)


def test_each_fold_is_scored_with_the_setting_chosen_without_it(data: TuneData) -> None:
    grid = Grid(alpha=(0.0, 0.3, 0.6), beta=(0.0, 0.5), n=(2, 4), expansion_weight=(0.0, 0.4))
    result = tune(data, grid, folds=3, seed=2)
    settings, scores = score_grid(data, grid)
    fold = _folds(data, 3, seed=2)
    held = np.zeros(len(data.qids))
    for f in result["per_fold"]:
        train, test = fold != f["fold"], fold == f["fold"]
        best = int(np.argmax(scores[:, train].mean(axis=1)))
        assert f["chosen"] == dict(zip(("alpha", "beta", "n", "expansion_weight"), settings[best], strict=True))
        held[test] = scores[best, test]
    assert result["held_out"]["tuned"] == pytest.approx(held.mean())
    default = settings.index((0.3, 0.5, 4, 0.0))
    assert result["held_out"]["default"] == pytest.approx(scores[default].mean())
    assert result["chosen"]["alpha"] > 0 and result["held_out"]["gain"] > 0  # fusion helps on this data
    with pytest.raises(XdrError, match="defaults"):
        tune(data, Grid(alpha=(0.1,), beta=(0.5,), n=(4,), expansion_weight=(0.0,)))


def test_settings_file_plot_and_config_options(data: TuneData, tmp_path: Path) -> None:
    grid = Grid(alpha=(0.0, 0.3, 0.6), beta=(0.0, 0.5), n=(4,), expansion_weight=(0.0, 0.4))
    out = write_tune(tune(data, grid, folds=3), tmp_path / "t")
    tuned = yaml.safe_load((out / "tuned.yaml").read_text())
    assert set(tuned) == {"augment", "generate", "search"}
    assert load_tuned(out / "tuned.yaml", "search") == tuned["search"]
    assert (out / "tune.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "report.json").read_text())["folds"] == 3
    (tmp_path / "bad.yaml").write_text("search: {gamma: 1}\n")
    with pytest.raises(XdrError, match="unknown search settings gamma"):
        load_tuned(tmp_path / "bad.yaml", "search")

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"augment": {"alpha": 0.45}}))
    p_dir = write_embeddings(data.pids, data.passages, SPEC, tmp_path / "p", progress=False)
    gids = [generated_query_id(f"d{o}", "de", int(k)) for o, k in zip(data.owner, data.k, strict=True)]
    g_dir = write_embeddings(gids, data.generated, SPEC, tmp_path / "g", kind="query", progress=False)
    runner = CliRunner()
    for extra, alpha in (([], 0.45), (["--alpha", "0.1"], 0.1)):
        target = tmp_path / f"aug{alpha}"
        r = runner.invoke(app, ["augment", str(p_dir), str(g_dir), "--config", str(config), "--out", str(target),
                                *extra])
        assert r.exit_code == 0, r.output
        assert json.loads((target / "meta.json").read_text())["params"]["alpha"] == alpha


def test_generate_takes_the_tuned_n(tmp_path: Path, mt5_dir: Path) -> None:  # noqa: F811
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"generate": {"n": 2}}))
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"p{i}", "text": f"Passage {i} about a river."}) + "\n"
                              for i in range(2)))
    runner = CliRunner()
    for extra, n in (([], 2), (["--n", "3"], 3)):  # the file's n, unless one is given
        target = tmp_path / f"gen{n}"
        r = runner.invoke(app, ["generate", "run", str(corpus), "--langs", "de", "--model", str(mt5_dir),
                                "--no-filter", "--config", str(config), "--out", str(target), *extra])
        assert r.exit_code == 0, r.output
        assert json.loads((target / "meta.json").read_text())["params"]["n"] == n
