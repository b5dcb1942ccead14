"""Dual-encoder training on a tiny random BERT: columns, learning, exact resume, GradCache, loading.

The model is random and tiny, so these tests prove plumbing and that gradients flow, never quality.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from xdr.artifacts import is_done, read_meta
from xdr.config import ModelSpec
from xdr.data.schema import Passage, Query, TrainingExample
from xdr.errors import MismatchError, XdrError
from xdr.models.encoder import Encoder
from xdr.models.registry import resolve_spec
from xdr.train.args import DualTrainingConfig
from xdr.train.dual import (
    EvalSet,
    build_columns,
    build_sentence_transformer,
    make_loss,
    train_dual_encoder,
)
from xdr.train.sources import TrainingSource

WORDS = ["fox", "dog", "dense", "vector", "token", "pool", "cross", "lingual"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Any:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _examples(n_neg: int = 2) -> list[TrainingExample]:
    return [
        TrainingExample(
            Query(f"q{i}", "en", f"which {w} question"),
            (Passage(f"p{i}", f"the {w} passage text", f"title {w}"),),
            tuple(Passage(f"n{i}-{k}", f"negative {k} about {w}") for k in range(n_neg)),
        )
        for i, w in enumerate(WORDS)
    ]


@pytest.fixture
def spec(tiny_bert_dir: Path) -> ModelSpec:
    return resolve_spec(str(tiny_bert_dir), pooling="cls", normalize=False, query_prefix="query: ",
                        passage_prefix="passage: ", query_max_length=8, passage_max_length=24)


def _features(model: Any, spec: ModelSpec, examples: list[TrainingExample], n_neg: int) -> list[dict]:
    """A batch as the Trainer hands it to the loss: one feature dict per column, in column order."""
    from xdr.train.dual import _collator

    cols = build_columns(examples, n_neg, spec.title_separator).columns
    rows = [dict(zip(cols, values, strict=True)) for values in zip(*cols.values(), strict=True)]
    batch = _collator(model, spec, list(cols))(rows)
    return [{k.removeprefix(f"{name}_"): v for k, v in batch.items() if k.startswith(f"{name}_")} for name in cols]


def test_columns_put_hard_negatives_in_order_and_cycle() -> None:
    ex = _examples(n_neg=2)
    ex.append(TrainingExample(Query("nopos", "en", "q"), ()))
    ex.append(TrainingExample(Query("noneg", "en", "q"), (Passage("p", "t"),)))
    cols, skipped = build_columns(ex, 3)
    assert list(cols) == ["anchor", "positive", "negative_1", "negative_2", "negative_3"]
    assert skipped == 2
    assert cols["anchor"][1] == "which dog question"
    assert cols["positive"][1] == "title dog the dog passage text"
    assert [cols[f"negative_{k}"][1] for k in (1, 2, 3)] == [
        "negative 0 about dog", "negative 1 about dog", "negative 0 about dog"  # cycled: only two exist
    ]
    cols0, skipped0 = build_columns(ex, 0)
    assert list(cols0) == ["anchor", "positive"] and skipped0 == 1


def test_collator_tokenises_each_column_as_the_encoder_does(spec: ModelSpec) -> None:
    """Training sees exactly the token ids inference will: the query prefix and length for the anchor
    column, the passage ones for positives and hard negatives (title joined as Passage.joined does)."""
    model = build_sentence_transformer(spec, device="cpu")
    examples = _examples(2)[:3]
    examples[0] = TrainingExample(Query("q", "en", " ".join(["fox"] * 40)), (Passage("p", " ".join(["the"] * 60)),),
                                  (Passage("n", "negative about token"), Passage("m", "cross lingual")))
    features = _features(model, spec, examples, 2)
    enc = Encoder.load(spec, device="cpu")
    cols = build_columns(examples, 2).columns
    for (name, texts), feat in zip(cols.items(), features, strict=True):
        kind = "query" if name == "anchor" else "passage"
        for row, ids in enumerate(enc.tokenize(texts, kind)):
            got = feat["input_ids"][row][feat["attention_mask"][row].bool()].tolist()
            assert got == ids, (name, row)
    assert features[0]["input_ids"].shape[1] == spec.query_max_length  # the long query was cut
    assert features[1]["input_ids"].shape[1] == spec.passage_max_length
    assert model.tokenizer.decode(features[3]["input_ids"][0], skip_special_tokens=True).startswith("passage")


@pytest.mark.parametrize(("similarity", "scale"), [("dot", 1.0), ("cos", 20.0)])
def test_cached_loss_matches_plain_loss(tiny_bert_dir: Path, similarity: str, scale: float) -> None:
    """GradCache gives the same loss and parameter gradients as one big forward (dropout off: the two
    losses embed in different chunks, so they would draw different dropout masks)."""
    spec = resolve_spec(str(tiny_bert_dir), pooling="mean", normalize=True, query_max_length=8,
                        passage_max_length=24)
    model = build_sentence_transformer(spec, device="cpu").eval()
    features = _features(model, spec, _examples(2), 2)

    def loss_and_grads(name: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model.zero_grad()
        loss = make_loss(model, loss=name, similarity=similarity, scale=scale, mini_batch_size=3)(features, None)
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain, plain_grads = loss_and_grads("mnrl")
    cached, cached_grads = loss_and_grads("cached-mnrl")
    torch.testing.assert_close(cached, plain)
    assert plain_grads.keys() == cached_grads.keys() and len(plain_grads) > 10
    for name, grad in plain_grads.items():
        # Summed gradients (token-type embeddings, LayerNorm biases: summed over every token) differ in
        # float reduction order between the two losses, so the absolute tolerance scales with the tensor:
        # fp32 noise reaches ~1e-5 of the largest entry (seen in CI), a misaligned cache is off by ~1.
        atol = max(1e-6, 1e-4 * float(grad.abs().max()))
        torch.testing.assert_close(cached_grads[name], grad, rtol=1e-4, atol=atol, msg=name)


def _train(spec: ModelSpec, out: Path, *, eval_set: EvalSet | None = None, callbacks: list[Any] | None = None,
           **settings: Any) -> Path:
    fast: dict[str, Any] = dict(negatives_per_query=2, max_steps=6, batch_size=4, lr=1e-3, save_steps=2,
                                logging_steps=1, seed=3)
    config = DualTrainingConfig(**{**fast, **settings})
    return train_dual_encoder([_examples(2)], spec, out, config, eval_set=eval_set, callbacks=callbacks or ())


def _batch_loss(model: Any, spec: ModelSpec) -> float:
    model.eval()
    with torch.no_grad():
        return float(make_loss(model, similarity="cos", scale=20.0)(_features(model, spec, _examples(2), 2), None))


def test_training_lowers_loss_and_loads_through_registry(tiny_bert_dir: Path, tmp_path: Path) -> None:
    """E5-style: mean pooling, normalised, cosine with scale 20. (A random tiny BERT's CLS vectors are
    nearly identical for every input, so CLS + dot product would need many more steps to move.)"""
    from sentence_transformers import SentenceTransformer

    spec = resolve_spec(str(tiny_bert_dir), pooling="mean", normalize=True, query_prefix="query: ",
                        passage_prefix="passage: ", query_max_length=8, passage_max_length=24)

    before = _batch_loss(build_sentence_transformer(spec, device="cpu"), spec)
    dev = EvalSet({"q0": "which fox question", "q1": "which dog question"},
                  {"p0": "title fox the fox passage text", "p1": "title dog the dog passage text",
                   "p2": "title token the token passage text"}, {"q0": {"p0"}, "q1": {"p1"}})
    model_dir = _train(spec, tmp_path / "run", max_steps=12, batch_size=8, eval_set=dev)
    after = _batch_loss(SentenceTransformer(str(model_dir), device="cpu"), spec)
    assert after < before - 0.2, (before, after)

    meta = read_meta(tmp_path / "run")
    assert is_done(tmp_path / "run") and meta["stage"] == "train"
    assert meta["params"]["spec"] == spec.model_dump() and meta["params"]["seed"] == 3
    assert meta["params"]["rows"] == len(WORDS) and meta["params"]["negatives_per_query"] == 2
    assert meta["result"]["global_step"] == 12
    assert meta["params"]["similarity"] == "cos" and meta["params"]["scale"] == 20.0
    assert 0.0 <= meta["result"]["eval"]["dev_cosine_mrr@10"] <= 1.0
    assert not (tmp_path / "run" / "checkpoints").exists()

    trained = resolve_spec(str(model_dir))
    assert (trained.pooling, trained.normalize) == ("mean", True)
    assert (trained.query_prefix, trained.passage_prefix) == ("query: ", "passage: ")
    assert ModelSpec(**meta["model_spec"]).query_max_length == spec.query_max_length
    # xdr's Encoder and sentence-transformers embed the trained model identically (same max lengths)
    enc = Encoder.load(ModelSpec(**meta["model_spec"]), device="cpu")
    st = SentenceTransformer(str(model_dir), device="cpu")
    passages = ["title fox the fox passage text", "negative 1 about dog"]
    np.testing.assert_allclose(enc.encode(passages, "passage"), st.encode(passages, prompt="passage: "),
                               rtol=1e-4, atol=1e-5)
    st.max_seq_length = spec.query_max_length
    queries = ["which fox question", "fox"]
    np.testing.assert_allclose(enc.encode(queries, "query"), st.encode(queries, prompt="query: "),
                               rtol=1e-4, atol=1e-5)

    # a finished run returns at once; other settings are refused
    assert _train(spec, tmp_path / "run", max_steps=12, batch_size=8, eval_set=dev) == model_dir
    with pytest.raises(MismatchError):
        _train(spec, tmp_path / "run", max_steps=13)


class _Kill(TrainerCallback):
    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if state.global_step == 3:
            raise KeyboardInterrupt  # after checkpoint-2 was saved, before checkpoint-4


def test_killed_run_resumes_to_the_same_weights(spec: ModelSpec, tmp_path: Path) -> None:
    """Resume restores weights, optimizer, scheduler, RNG (dropout) and data order from checkpoint-2:
    on one CPU thread the result is bitwise equal to an uninterrupted run."""
    straight = _train(spec, tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        _train(spec, tmp_path / "b", callbacks=[_Kill()])
    assert sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir()) == ["checkpoint-2"]
    assert not is_done(tmp_path / "b")
    resumed = _train(spec, tmp_path / "b")
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert read_meta(tmp_path / "b")["result"]["global_step"] == 6
    trained = resolve_spec(str(resumed))
    assert (trained.pooling, trained.normalize) == ("cls", False)  # DPR-style: CLS, dot product


def test_compiled_run_resumes_an_eager_one_and_saves_plain_weights(spec: ModelSpec, tmp_path: Path) -> None:
    """``torch_compile`` is a speed knob, not a setting: it resumes an eager run's checkpoint, and the saved
    model has the eager model's keys (no ``_orig_mod.`` prefix). Fused kernels round differently and Adam
    turns a rounding difference in a tiny gradient into a full step, so the weights agree within the
    four remaining steps' bound of 2 · lr each, not bitwise."""
    straight = _train(spec, tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        _train(spec, tmp_path / "b", callbacks=[_Kill()])
    resumed = _train(spec, tmp_path / "b", torch_compile=True)
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= 2 * 1e-3 * 4, worst
    assert read_meta(tmp_path / "b")["result"]["global_step"] == 6


class _KillAtEnd(TrainerCallback):
    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        raise KeyboardInterrupt  # the final checkpoint is written, model/ and _DONE are not


def test_run_killed_after_its_last_checkpoint_saves_that_checkpoint(spec: ModelSpec, tmp_path: Path) -> None:
    straight = _train(spec, tmp_path / "a", max_steps=2)
    with pytest.raises(KeyboardInterrupt):
        _train(spec, tmp_path / "b", max_steps=2, callbacks=[_KillAtEnd()])
    assert not is_done(tmp_path / "b") and (tmp_path / "b" / "checkpoints" / "checkpoint-2").is_dir()
    resumed = _train(spec, tmp_path / "b", max_steps=2)  # takes no further step
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert read_meta(tmp_path / "b")["result"]["global_step"] == 2
    assert resolve_spec(str(resumed)).query_prefix == "query: "


def test_bad_settings_are_refused(spec: ModelSpec, tmp_path: Path) -> None:
    with pytest.raises(XdrError, match="normalising"):
        _train(spec, tmp_path / "x", similarity="cos")
    with pytest.raises(XdrError, match="loss"):
        _train(spec, tmp_path / "x", loss="triplet")
    with pytest.raises(XdrError, match="no training examples"):
        train_dual_encoder([_examples(0)], spec, tmp_path / "x", DualTrainingConfig(negatives_per_query=1))


def test_reads_training_files(spec: ModelSpec, tmp_path: Path) -> None:
    rows = [{"query_id": f"q{i}", "query": ex.query.text,
             "positive_passages": [{"docid": p.id, "title": p.title, "text": p.text} for p in ex.positives],
             "negative_passages": [{"docid": p.id, "title": p.title, "text": p.text} for p in ex.negatives]}
            for i, ex in enumerate(_examples(2))]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    config = DualTrainingConfig(negatives_per_query=1, max_steps=1, batch_size=4)
    model_dir = train_dual_encoder([TrainingSource(path)], spec, tmp_path / "run", config)
    source = read_meta(tmp_path / "run")["params"]["sources"][0]
    assert source["format"] == "tevatron" and source["rows"] == len(WORDS)
    assert (model_dir / "model.safetensors").exists()
