"""The augment stage: the paper's sum fusion, the mean variant, and streaming over shards."""

from __future__ import annotations

import importlib
import json
import warnings

import numpy as np
import pytest
from pydantic import ValidationError

from xdr.augment import FusionSettings, augment, fuse
from xdr.config import ModelSpec
from xdr.embeddings import load_embeddings, write_embeddings
from xdr.errors import MismatchError, XdrError
from xdr.generate.artifact import generated_as_queries, generated_query_id, split_generated_id

SPEC = ModelSpec(name="fake", path="fake", fingerprint="f1", normalize=False)


def _stores(tmp_path, n_pass=7, dim=4, per_doc=None, shard_size=3):
    """A passage store and a generated-query store in corpus order (docid::lang::k ids)."""
    rng = np.random.default_rng(0)
    pids = [f"d{i}" for i in range(n_pass)]
    pvec = rng.normal(size=(n_pass, dim)).astype(np.float32)
    per_doc = per_doc or {p: [("de", 0), ("de", 1), ("ja", 0)] for p in pids}
    qids = [generated_query_id(p, lang, k) for p in pids for lang, k in per_doc.get(p, [])]
    qvec = rng.normal(size=(len(qids), dim)).astype(np.float32)
    write_embeddings(pids, pvec, SPEC, tmp_path / "p", shard_size=shard_size, progress=False)
    write_embeddings(qids, qvec, SPEC, tmp_path / "q", kind="query", shard_size=4, progress=False)
    return pids, pvec, qids, qvec


def _mean(alpha: float) -> FusionSettings:
    """Mean fusion without re-normalisation, so results compare with the plain formula."""
    return FusionSettings(alpha=alpha, mode="mean", renormalize=False)


def _expected(pids, pvec, qids, qvec, alpha, mode, langs=None, renormalize=False):
    out = pvec.copy()
    for i, p in enumerate(pids):
        rows = [j for j, q in enumerate(qids) if split_generated_id(q)[0] == p
                and (langs is None or split_generated_id(q)[1] in langs)]
        if rows:
            f = qvec[rows].sum(0) if mode == "sum" else qvec[rows].mean(0)
            out[i] = (1 - alpha) * pvec[i] + alpha * f
    return out / np.linalg.norm(out, axis=1, keepdims=True) if renormalize else out


def test_fuse_sum_is_the_papers_formula_and_mean_divides_by_the_count() -> None:
    p = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    q = np.array([[1.0, 1.0], [3.0, 1.0]], np.float32)
    owner = np.array([0, 0])
    s = fuse(p, owner, q, 0.1, "sum")
    np.testing.assert_allclose(s[0], 0.9 * p[0] + 0.1 * np.array([4.0, 2.0]), rtol=1e-6)
    m = fuse(p, owner, q, 0.1, "mean")
    np.testing.assert_allclose(m[0], 0.9 * p[0] + 0.1 * np.array([2.0, 1.0]), rtol=1e-6)
    # passage 1 has no generated queries: it keeps E(p) unscaled in both forms
    np.testing.assert_array_equal(s[1], p[1])
    np.testing.assert_array_equal(m[1], p[1])
    r = fuse(p, owner, q, 0.1, "mean", renormalize=True)
    np.testing.assert_allclose(np.linalg.norm(r, axis=1), 1.0, rtol=1e-6)


def test_sum_fusion_lets_the_query_count_decide_and_mean_does_not() -> None:
    """Why the mean variant exists: with unequal counts, sum scales passages by how many queries they kept."""
    p = np.array([[1.0, 0.0], [1.0, 0.0]], np.float32)  # identical passages
    q = np.tile(np.array([[1.0, 0.0]], np.float32), (6, 1))  # identical queries, 5 for d0 and 1 for d1
    owner = np.array([0, 0, 0, 0, 0, 1])
    query = np.array([1.0, 0.0], np.float32)
    s = fuse(p, owner, q, 0.1, "sum") @ query
    m = fuse(p, owner, q, 0.1, "mean") @ query
    assert s[0] > s[1]
    assert m[0] == pytest.approx(m[1])


@pytest.mark.parametrize(("mode", "renormalize"), [("sum", False), ("mean", False), ("mean", True)])
def test_augment_streams_shards_and_matches_the_formula(tmp_path, mode, renormalize) -> None:
    pids, pvec, qids, qvec = _stores(tmp_path)
    fusion = FusionSettings(alpha=0.3, mode=mode, renormalize=renormalize)
    out = augment(tmp_path / "p", tmp_path / "q", tmp_path / "a", fusion, chunk_size=2, progress=False)
    ids, emb = load_embeddings(out)
    assert ids == pids
    np.testing.assert_allclose(emb, _expected(pids, pvec, qids, qvec, 0.3, mode, renormalize=renormalize),
                               rtol=1e-5)


def test_the_default_is_the_measured_best_form_and_sum_over_uneven_counts_warns(tmp_path) -> None:
    """The default was the paper's sum at alpha 0.01, which let query counts rank passages."""
    from xdr.errors import XdrWarning

    assert (FusionSettings().mode, FusionSettings().alpha, FusionSettings().renormalize) == ("mean", 0.3, True)
    per_doc = {"d0": [("de", 0)], "d1": [("de", 0), ("de", 1), ("ja", 0)]}
    pids, pvec, qids, qvec = _stores(tmp_path, n_pass=3, per_doc=per_doc)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the default form says nothing
        _, emb = load_embeddings(augment(tmp_path / "p", tmp_path / "q", tmp_path / "a", progress=False))
    np.testing.assert_allclose(emb, _expected(pids, pvec, qids, qvec, 0.3, "mean", renormalize=True), rtol=1e-5)
    with pytest.warns(XdrWarning, match=r"uneven query counts \(1 to 3 per passage\)"):
        augment(tmp_path / "p", tmp_path / "q", tmp_path / "s", FusionSettings(alpha=0.01, mode="sum"),
                progress=False)


@pytest.mark.parametrize("langs", [["ja"], [" JA "], ["ja-JP", "ja"]])
def test_language_restriction_and_passages_without_queries(tmp_path, langs: list[str]) -> None:
    """Codes are normalised: a mixed-case or padded code once fused nothing."""
    per_doc = {"d0": [("de", 0), ("ja", 0)], "d2": [("ja", 0), ("ja", 1)], "d3": [("de", 0)]}
    pids, pvec, qids, qvec = _stores(tmp_path, n_pass=5, per_doc=per_doc)
    out = augment(tmp_path / "p", tmp_path / "q", tmp_path / "a",
                  FusionSettings(alpha=0.5, mode="mean", langs=langs, renormalize=False), progress=False)
    _, emb = load_embeddings(out)
    np.testing.assert_allclose(emb, _expected(pids, pvec, qids, qvec, 0.5, "mean", {"ja"}), rtol=1e-5)
    np.testing.assert_array_equal(emb[3], pvec[3])  # only a German query: untouched under --langs ja
    assert json.loads((out / "meta.json").read_text())["params"]["langs"] == ["ja"]


def test_fusion_settings_refuse_bad_values() -> None:
    with pytest.raises(ValidationError, match="alpha"):
        FusionSettings(alpha=1.5)
    with pytest.raises(XdrError, match="unknown language code 'jp'"):
        FusionSettings(langs=["jp"])


def test_queries_out_of_corpus_order_are_refused(tmp_path) -> None:
    rng = np.random.default_rng(1)
    write_embeddings(["d0", "d1"], rng.normal(size=(2, 3)), SPEC, tmp_path / "p", progress=False)
    qids = [generated_query_id("d1", "de", 0), generated_query_id("d0", "de", 0)]
    write_embeddings(qids, rng.normal(size=(2, 3)), SPEC, tmp_path / "q", kind="query", progress=False)
    with pytest.raises(XdrError, match="corpus order"):
        augment(tmp_path / "p", tmp_path / "q", tmp_path / "a", progress=False)


def test_another_models_queries_are_refused(tmp_path) -> None:
    rng = np.random.default_rng(2)
    write_embeddings(["d0"], rng.normal(size=(1, 3)), SPEC, tmp_path / "p", progress=False)
    other = SPEC.model_copy(update={"fingerprint": "f2"})
    write_embeddings([generated_query_id("d0", "de", 0)], rng.normal(size=(1, 3)), other, tmp_path / "q",
                     kind="query", progress=False)
    with pytest.raises(MismatchError, match="another model"):
        augment(tmp_path / "p", tmp_path / "q", tmp_path / "a", progress=False)


def test_resume_after_a_kill_keeps_finished_shards(tmp_path, monkeypatch) -> None:
    pids, pvec, qids, qvec = _stores(tmp_path, n_pass=8, shard_size=3)
    calls = {"n": 0}
    real = fuse

    def dying(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(importlib.import_module("xdr.augment"), "fuse", dying)  # the module, not xdr.augment()
    with pytest.raises(KeyboardInterrupt):
        augment(tmp_path / "p", tmp_path / "q", tmp_path / "a", _mean(0.2),
                    progress=False)
    assert (tmp_path / "a" / "part-00000.npy").exists() and not (tmp_path / "a" / "part-00001.npy").exists()
    calls["n"] = -100  # the rerun must not die, and must not fuse shard 0 again
    augment(tmp_path / "p", tmp_path / "q", tmp_path / "a", _mean(0.2),
                    progress=False)
    assert calls["n"] == -100 + 2  # shards 1 and 2 only
    ids, emb = load_embeddings(tmp_path / "a")
    assert ids == pids
    np.testing.assert_allclose(emb, _expected(pids, pvec, qids, qvec, 0.2, "mean"), rtol=1e-5)
    with pytest.raises(MismatchError):
        augment(tmp_path / "p", tmp_path / "q", tmp_path / "a", _mean(0.3),
                    progress=False)


def test_generated_queries_are_encoded_on_the_fly_and_equal_a_stored_store(tmp_path) -> None:
    """Augmenting from the generate artifact itself (no 1.9 TB query store) gives the same vectors."""
    from test_encode import HashEncoder, corpus
    from test_generate_run import FakeGenerator

    from xdr.encode import encode_passages, encode_queries
    from xdr.generate import run_generation

    passages = corpus(9)
    enc = HashEncoder()
    encode_passages(passages, enc, tmp_path / "p", shard_size=4, progress=False)
    run_generation(passages, FakeGenerator(), tmp_path / "gen", langs=["de", "ja"], n=3, filters=None)
    encode_queries(generated_as_queries(tmp_path / "gen"), enc, tmp_path / "q", progress=False)
    stored = augment(tmp_path / "p", tmp_path / "q", tmp_path / "a1", _mean(0.2),
                         progress=False)
    enc.calls.clear()
    direct = augment(tmp_path / "p", tmp_path / "gen", tmp_path / "a2", _mean(0.2),
                         encoder=enc, progress=False)
    assert {kind for kind, _ in enc.calls} == {"query"} and len(enc.texts) == 9 * 2 * 3
    np.testing.assert_allclose(load_embeddings(direct)[1], load_embeddings(stored)[1], rtol=1e-6)


def test_an_encoding_of_the_same_generate_run_beside_it_is_reused(tmp_path, monkeypatch) -> None:
    """augment over a generate dir re-encoded every query (79 s) although `xdr encode --kind generated` had
    stored them (augment from them takes 1 s); it now finds that encoding by the generate run's id."""
    from test_encode import HashEncoder, corpus
    from test_generate_run import FakeGenerator

    from xdr.config import ModelSpec as Spec
    from xdr.encode import encode_passages, encode_queries
    from xdr.generate import run_generation

    passages = corpus(6)
    enc = HashEncoder()
    enc.spec = Spec(name="fake", path="/models/fake", query_max_length=32)
    encode_passages(passages, enc, tmp_path / "p", progress=False)
    run_generation(passages, FakeGenerator(), tmp_path / "gen", langs=["de"], n=2, filters=None)
    encode_queries(generated_as_queries(tmp_path / "gen"), enc, tmp_path / "gen-emb", source=tmp_path / "gen",
                   progress=False)
    monkeypatch.setattr("xdr.models.encoder.Encoder.load", lambda *a, **k: pytest.fail("re-encoded"))
    out = augment(tmp_path / "p", tmp_path / "gen", tmp_path / "a", _mean(0.2), progress=False)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["params"]["source"]["queries"]["embeddings"]["path"] == str((tmp_path / "gen-emb").resolve())
    np.testing.assert_allclose(load_embeddings(out)[1], load_embeddings(
        augment(tmp_path / "p", tmp_path / "gen-emb", tmp_path / "b", _mean(0.2), progress=False))[1])
