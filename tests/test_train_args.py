"""Trainer configs: validation at construction, the settings a run uses, the Trainer arguments they map to,
and the round trip through ``meta.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError

from xdr.artifacts import read_meta
from xdr.data.schema import Passage, Query, TrainingExample
from xdr.errors import XdrError
from xdr.models.registry import resolve_spec
from xdr.train.args import (
    DualTrainingConfig,
    GeneratorTrainingConfig,
    Loss,
    Similarity,
    TrainingConfig,
    trainer_arguments,
)


@pytest.mark.parametrize(
    ("cls", "settings", "message"),
    [
        (DualTrainingConfig, {"lr": 0.0}, "lr must be positive, not 0.0"),
        (DualTrainingConfig, {"lr": float("inf")}, "lr should be a finite number"),
        (DualTrainingConfig, {"batch_size": 0}, "batch_size must be positive, not 0"),
        (DualTrainingConfig, {"max_steps": -1}, "max_steps must be positive"),
        (DualTrainingConfig, {"scale": -1.0}, "scale must be positive"),
        (DualTrainingConfig, {"mini_batch_size": 0}, "mini_batch_size must be positive"),
        (DualTrainingConfig, {"negatives_per_query": -1}, "negatives_per_query must be 0 or more, not -1"),
        (DualTrainingConfig, {"loss": "triplet"}, "loss must be 'mnrl' or 'cached-mnrl', not 'triplet'"),
        (DualTrainingConfig, {"similarity": "l2"}, "similarity must be 'dot' or 'cos'"),
        (DualTrainingConfig, {"dtype": "fp8"}, "dtype must be 'auto', 'float32', 'bfloat16' or 'float16'"),
        (DualTrainingConfig, {"learning_rate": 1e-5}, "unknown setting 'learning_rate'"),
        (GeneratorTrainingConfig, {"eval_fraction": 1.0}, "eval_fraction should be less than 1"),
        (GeneratorTrainingConfig, {"max_target_length": 0}, "max_target_length must be positive"),
        (GeneratorTrainingConfig, {"torch_compile": True}, "unknown setting 'torch_compile'"),
    ],
)
def test_a_bad_setting_is_a_user_error_naming_the_field(
    cls: type[TrainingConfig], settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(XdrError) as info:
        cls(**settings)
    assert str(info.value).startswith(message)


def test_every_bad_field_is_named_on_one_line() -> None:
    with pytest.raises(XdrError) as info:
        DualTrainingConfig(batch_size=0, grad_accum=0)
    assert str(info.value) == "batch_size must be positive, not 0; grad_accum must be positive, not 0"


def test_configs_are_frozen_and_take_choices_by_name() -> None:
    config = DualTrainingConfig(loss="cached-mnrl", similarity="dot")
    assert config.loss is Loss.CACHED_MNRL and config.similarity is Similarity.DOT and config.loss == "cached-mnrl"
    with pytest.raises(ValidationError):
        config.lr = 1.0  # type: ignore[misc]
    assert (config.epochs, config.lr, config.batch_size) == (1.0, 1e-5, 32)
    generator = GeneratorTrainingConfig()
    assert (generator.epochs, generator.lr, generator.batch_size) == (3.0, 1e-4, 8)


def test_for_spec_fills_in_what_depends_on_the_model(tiny_bert_dir: Path) -> None:
    e5 = resolve_spec(str(tiny_bert_dir), pooling="mean", normalize=True)
    dpr = resolve_spec(str(tiny_bert_dir), pooling="cls", normalize=False)
    ran = DualTrainingConfig(mini_batch_size=8).for_spec(e5)
    assert (ran.similarity, ran.scale, ran.mini_batch_size) == (Similarity.COS, 20.0, None)  # mnrl has no mini-batch
    ran = DualTrainingConfig(loss="cached-mnrl").for_spec(dpr)
    assert (ran.similarity, ran.scale, ran.mini_batch_size) == (Similarity.DOT, 1.0, 32)
    ran = DualTrainingConfig(similarity="dot", scale=5.0, loss="cached-mnrl", mini_batch_size=4).for_spec(e5)
    assert (ran.similarity, ran.scale, ran.mini_batch_size) == (Similarity.DOT, 5.0, 4)
    with pytest.raises(XdrError, match="normalising"):
        DualTrainingConfig(similarity="cos").for_spec(dpr)


def test_recorded_resolves_the_dtype_and_leaves_out_resumable_settings() -> None:
    config = GeneratorTrainingConfig(lr=3e-4, save_steps=7, device="cpu", logging_steps=1)
    recorded = config.recorded(torch.bfloat16)
    assert recorded["dtype"] == "bfloat16" and recorded["lr"] == 3e-4
    assert not recorded.keys() & GeneratorTrainingConfig.RESUMABLE
    assert "torch_compile" in DualTrainingConfig.RESUMABLE
    assert GeneratorTrainingConfig.model_validate(recorded) == config.model_copy(
        update={"dtype": "bfloat16", "save_steps": 500, "device": None, "logging_steps": 50}
    )


def test_trainer_arguments_map_the_config() -> None:
    from sentence_transformers import SentenceTransformerTrainingArguments

    config = DualTrainingConfig(
        epochs=2.0, lr=3e-5, batch_size=6, grad_accum=2, seed=9, save_steps=40, keep_checkpoints=3,
        logging_steps=5, warmup_steps=10, weight_decay=0.01, gather_across_devices=True,
    )
    args = trainer_arguments(SentenceTransformerTrainingArguments, config, Path("out/checkpoints"),
                             device=torch.device("cpu"), dtype=torch.float32, evaluate=True, fp16_problem="-")
    assert args.output_dir == "out/checkpoints"
    assert (args.num_train_epochs, args.max_steps, args.learning_rate) == (2.0, -1, 3e-5)
    assert (args.per_device_train_batch_size, args.per_device_eval_batch_size) == (6, 6)
    assert (args.gradient_accumulation_steps, args.seed, args.data_seed) == (2, 9, 9)
    assert (args.save_steps, args.save_total_limit, args.eval_steps, args.logging_steps) == (40, 3, 40, 5)
    assert (args.warmup_steps, args.weight_decay, args.dataloader_drop_last) == (10, 0.01, True)
    assert args.use_cpu and not args.bf16 and args.eval_strategy == "steps"


def test_the_recorded_config_reruns_the_same_run(tiny_bert_dir: Path, tmp_path: Path) -> None:
    """meta.json holds the config as the run used it; read back, it is a config that resumes that run."""
    from xdr.train.dual import train_dual_encoder

    spec = resolve_spec(str(tiny_bert_dir), pooling="mean", normalize=True, query_max_length=8,
                        passage_max_length=16)
    examples = [TrainingExample(Query(f"q{i}", "en", f"question {w}"), (Passage(f"p{i}", f"passage {w}"),))
                for i, w in enumerate(["fox", "dog", "pool", "token"])]
    config = DualTrainingConfig(max_steps=1, batch_size=4, lr=1e-3, loss="cached-mnrl", negatives_per_query=0,
                                save_steps=7, device="cpu")
    model_dir = train_dual_encoder([examples], spec, tmp_path / "run", config)

    params = read_meta(tmp_path / "run")["params"]
    fields = DualTrainingConfig.model_fields
    recorded = DualTrainingConfig.model_validate({k: v for k, v in params.items() if k in fields})
    assert recorded == config.for_spec(spec).model_copy(update={"dtype": "float32", "save_steps": 500, "device": None})
    assert (recorded.similarity, recorded.scale, recorded.mini_batch_size) == (Similarity.COS, 20.0, 32)
    assert train_dual_encoder([examples], spec, tmp_path / "run", recorded) == model_dir  # done: same settings
