"""The trainer's speed settings compute what the plain path computes: attention kernels, fused AdamW."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import torch

from xdr.config import ModelSpec
from xdr.errors import XdrError
from xdr.models.registry import resolve_spec
from xdr.train.args import Attention, DualTrainingConfig, trainer_arguments
from xdr.train.dual import build_sentence_transformer, make_loss

QUERIES = ["which fox question", "a dense vector query about cross lingual pools"]
PASSAGES = ["the fox passage", "token pool passage text " * 4, "negative about dense", "lingual"]


@pytest.fixture
def spec(tiny_bert_dir: Path) -> ModelSpec:
    return resolve_spec(str(tiny_bert_dir), pooling="mean", normalize=False, query_max_length=8,
                        passage_max_length=24)


def _loss_and_grads(spec: ModelSpec, attention: str) -> tuple[float, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = build_sentence_transformer(spec, device="cpu", attention=attention)
    assert model[0].auto_model.config._attn_implementation == attention
    model.train()
    loss_fn = make_loss(model, loss="mnrl", similarity="dot", scale=1.0)
    features = [model.tokenize(QUERIES), model.tokenize(PASSAGES[:2]), model.tokenize(PASSAGES[2:])]
    assert (features[1]["attention_mask"] == 0).any()  # padded batches: the mask path is exercised
    loss = loss_fn(features, None)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.item(), grads


def test_sdpa_attention_matches_eager_loss_and_gradients(spec: ModelSpec) -> None:
    loss_sdpa, grads_sdpa = _loss_and_grads(spec, "sdpa")
    loss_eager, grads_eager = _loss_and_grads(spec, "eager")
    assert loss_sdpa == pytest.approx(loss_eager, rel=1e-5)
    assert grads_sdpa.keys() == grads_eager.keys() and len(grads_sdpa) > 10
    for name, g in grads_sdpa.items():
        torch.testing.assert_close(g, grads_eager[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.skipif(importlib.util.find_spec("flash_attn") is not None, reason="flash-attn is installed")
def test_flash_attention_needs_its_package(spec: ModelSpec) -> None:
    with pytest.raises(XdrError, match="flash-attn"):
        build_sentence_transformer(spec, device="cpu", attention="flash_attention_2")
    with pytest.raises(XdrError, match="attention must be one of"):
        build_sentence_transformer(spec, device="cpu", attention="xformers")


def _optimizer_kwargs(config: DualTrainingConfig, tmp_path: Path) -> tuple[type, dict[str, Any]]:
    from sentence_transformers import SentenceTransformerTrainingArguments
    from transformers import Trainer

    args = trainer_arguments(SentenceTransformerTrainingArguments, config, tmp_path, device=torch.device("cpu"),
                             dtype=torch.float32, evaluate=False, fp16_problem="")
    return Trainer.get_optimizer_cls_and_kwargs(args)  # the rule the Trainer builds its optimizer by


def test_fused_adamw_setting_steps_like_the_unfused_optimizer(tmp_path: Path) -> None:
    fused_cls, fused_kwargs = _optimizer_kwargs(DualTrainingConfig(), tmp_path)
    plain_cls, plain_kwargs = _optimizer_kwargs(DualTrainingConfig(fused_adamw=False), tmp_path)
    assert fused_kwargs.get("fused") is True and not plain_kwargs.get("fused")
    torch.manual_seed(0)
    start = [torch.randn(5, 7), torch.randn(7)]
    params = {}
    for name, cls, kwargs in (("fused", fused_cls, fused_kwargs), ("plain", plain_cls, plain_kwargs)):
        ps = [torch.nn.Parameter(p.clone()) for p in start]
        opt = cls(ps, **{**kwargs, "lr": 1e-2})
        for step in range(3):
            for p in ps:
                p.grad = torch.sin(p.detach() * (step + 1))
            opt.step()
        params[name] = ps
    for a, b in zip(params["fused"], params["plain"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
        assert not torch.equal(a, start[0] if a.dim() == 2 else start[1])  # the steps did move the weights


def test_speed_settings_are_resumable_and_typed() -> None:
    config = DualTrainingConfig(attention="eager", fused_adamw=False, torch_compile=True)
    assert config.attention is Attention.EAGER
    recorded = config.recorded(torch.float32)
    assert not {"attention", "fused_adamw", "torch_compile"} & recorded.keys()
    with pytest.raises(XdrError, match="attention must be"):
        DualTrainingConfig(attention="paged")
