"""Training: dense retrievers (``xdr train``), query generators (``xdr train-generator``), and their data
(hard-negative mining, synthetic pairs).

Names load on first use: the trainers import torch, transformers and sentence-transformers, which building
a config, parsing a training-file argument or mining negatives do not need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xdr.lazy import lazy_exports

if TYPE_CHECKING:
    from xdr.train.args import Attention, DualTrainingConfig, GeneratorTrainingConfig, Loss, Similarity, TrainingConfig
    from xdr.train.dual import EvalSet, train_dual_encoder, trained_spec
    from xdr.train.generator import QuestionPair, read_source, train_generator
    from xdr.train.sources import TrainingSource

_LAZY = {
    "Attention": "xdr.train.args",
    "TrainingConfig": "xdr.train.args",
    "DualTrainingConfig": "xdr.train.args",
    "GeneratorTrainingConfig": "xdr.train.args",
    "Loss": "xdr.train.args",
    "Similarity": "xdr.train.args",
    "TrainingSource": "xdr.train.sources",
    "EvalSet": "xdr.train.dual",
    "train_dual_encoder": "xdr.train.dual",
    "trained_spec": "xdr.train.dual",
    "QuestionPair": "xdr.train.generator",
    "read_source": "xdr.train.generator",
    "train_generator": "xdr.train.generator",
}


__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "Attention",
    "DualTrainingConfig",
    "EvalSet",
    "GeneratorTrainingConfig",
    "Loss",
    "QuestionPair",
    "Similarity",
    "TrainingConfig",
    "TrainingSource",
    "read_source",
    "train_dual_encoder",
    "train_generator",
    "trained_spec",
]
