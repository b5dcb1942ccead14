"""The settings of xdr's two trainers, one frozen, validated object per run.

:class:`TrainingConfig` holds what every HF-Trainer run has (schedule, batch, seed, precision,
checkpointing); :class:`DualTrainingConfig` (``xdr train``) and :class:`GeneratorTrainingConfig`
(``xdr train-generator``) extend it. A config is checked when it is built, so a bad value is refused with
its xdr name before any data is read or any directory is made, and :func:`trainer_arguments` is the one
place where it becomes a transformers ``TrainingArguments``.

``meta.json`` records :meth:`TrainingConfig.recorded`: the config itself, minus the fields in
``RESUMABLE``, which do not change what a run computes (device, checkpoint and log intervals), so that a
rerun may change them and still resume.

Only pydantic is imported here: the command line builds a config without loading torch.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import ErrorDetails

from xdr.config import DType, ModelSpec
from xdr.errors import XdrError

if TYPE_CHECKING:
    import torch

Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
PositiveInt = Annotated[int, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
NonNegativeInt = Annotated[int, Field(ge=0)]


class Loss(str, Enum):
    """``mnrl``: InfoNCE over in-batch and hard negatives; ``cached-mnrl``: the same with GradCache."""

    MNRL = "mnrl"
    CACHED_MNRL = "cached-mnrl"

    def __str__(self) -> str:
        return self.value


class Attention(str, Enum):
    """The attention kernels of the encoder: ``sdpa`` (PyTorch's fused attention: flash or memory-efficient
    kernels on a GPU, in bf16), ``eager`` (transformers' matmul-softmax-matmul), or ``flash_attention_2``
    (the flash-attn package; sentence-transformers then also drops padding: variable-length batches are
    packed into one sequence, so no FLOP is spent on pad tokens)."""

    SDPA = "sdpa"
    EAGER = "eager"
    FLASH_ATTENTION_2 = "flash_attention_2"

    def __str__(self) -> str:
        return self.value


class Similarity(str, Enum):
    """How the dual-encoder loss scores a query against a passage."""

    DOT = "dot"
    COS = "cos"

    def __str__(self) -> str:
        return self.value


def _problem(error: ErrorDetails) -> str:
    """One line per bad field, in xdr's words where pydantic's would be vaguer."""
    name = ".".join(str(part) for part in error["loc"])
    ctx = error.get("ctx", {})
    if error["type"] == "extra_forbidden":
        return f"unknown setting {name!r}"
    if error["type"] == "missing":
        return f"{name} is required"
    if error["type"] == "greater_than" and ctx.get("gt") == 0:
        need = "must be positive"
    elif error["type"] == "greater_than_equal" and ctx.get("ge") == 0:
        need = "must be 0 or more"
    elif error["type"] in ("enum", "literal_error"):
        need = f"must be {ctx['expected']}"
    else:
        need = error["msg"].removeprefix("Input ").removeprefix("Value error, ")
    return f"{name} {need}, not {error['input']!r}"


class TrainingConfig(BaseModel):
    """What every trainer run is given; each trainer's config sets its own defaults for the schedule
    (``epochs``, ``lr``, ``batch_size``). ``max_steps`` overrides ``epochs``; ``batch_size`` is per device.
    ``dtype`` ``auto`` trains with bf16 autocast on a GPU that has it and in fp32 elsewhere; weights are
    loaded in fp32 whatever the dtype, as mixed precision needs fp32 master weights."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Settings a resumed run may change: they do not change what the run computes.
    RESUMABLE: ClassVar[frozenset[str]] = frozenset(
        {"device", "save_steps", "eval_steps", "keep_checkpoints", "logging_steps"}
    )

    epochs: Positive
    max_steps: PositiveInt | None = Field(default=None, description="stop after this many steps")
    lr: Positive
    batch_size: PositiveInt
    grad_accum: PositiveInt = Field(default=1, description="batches whose gradients make one step")
    seed: int = 42
    dtype: DType = "auto"
    device: str | None = Field(default=None, description="cpu, cuda or cuda:N (default: the GPU if any)")
    save_steps: PositiveInt = Field(default=500, description="checkpoint interval: the resume points")
    eval_steps: PositiveInt | None = Field(default=None, description="evaluation interval (default: save_steps)")
    keep_checkpoints: PositiveInt = 2
    logging_steps: PositiveInt = 50

    @model_validator(mode="wrap")
    @classmethod
    def _as_user_error(cls, data: Any, handler: Any) -> Any:
        """A bad setting is the user's to fix: an XdrError, one line naming every bad field, not a traceback."""
        try:
            return handler(data)
        except ValidationError as e:
            raise XdrError("; ".join(_problem(err) for err in e.errors())) from None

    def recorded(self, dtype: torch.dtype) -> dict[str, Any]:
        """The settings ``meta.json`` records and a resume must match: the config with ``dtype`` resolved
        (``auto`` is bfloat16 on one machine and float32 on another), without the ``RESUMABLE`` ones."""
        resolved = self.model_copy(update={"dtype": str(dtype).removeprefix("torch.")})
        return resolved.model_dump(mode="json", exclude=set(self.RESUMABLE))

    def trainer_kwargs(self) -> dict[str, Any]:
        """This config's settings under their transformers ``TrainingArguments`` names."""
        return {
            "num_train_epochs": self.epochs,
            "max_steps": self.max_steps or -1,
            "learning_rate": self.lr,
            "per_device_train_batch_size": self.batch_size,
            "per_device_eval_batch_size": self.batch_size,
            "gradient_accumulation_steps": self.grad_accum,
            "seed": self.seed,
            "data_seed": self.seed,
            "save_steps": self.save_steps,
            "save_total_limit": self.keep_checkpoints,
            "eval_steps": self.eval_steps or self.save_steps,
            "logging_steps": self.logging_steps,
        }


class DualTrainingConfig(TrainingConfig):
    """``xdr train``: a dual encoder with InfoNCE over in-batch and hard negatives.

    ``similarity`` defaults to ``cos`` for a normalising model, else ``dot``; ``scale`` (1/τ) to 20 for cos
    and 1 for dot; ``mini_batch_size`` to 32 with ``cached-mnrl`` (see :meth:`for_spec`). Each query sees
    ``batch_size · (1 + negatives_per_query)`` passages, times the device count with
    ``gather_across_devices``. ``grad_accum`` adds no negatives (each micro-batch has its own softmax): for
    big batches use ``cached-mnrl`` with a small ``mini_batch_size`` (GradCache: the loss and gradients of
    the whole batch, ``mini_batch_size`` texts in memory at a time, for one extra forward pass).

    Speed settings, which a run may resume with or without since they compute the same loss up to
    rounding: ``torch_compile`` runs the model through ``torch.compile``; ``attention`` picks the attention
    kernels (see :class:`Attention`); ``fused_adamw`` steps AdamW in one fused kernel (the Trainer's
    ``adamw_torch_fused``) rather than one per tensor.
    """

    RESUMABLE: ClassVar[frozenset[str]] = TrainingConfig.RESUMABLE | {"torch_compile", "attention", "fused_adamw"}

    epochs: Positive = 1.0
    lr: Positive = 1e-5
    batch_size: PositiveInt = Field(default=32, description="queries per device and step")
    negatives_per_query: NonNegativeInt = Field(default=1, description="hard negatives per query")
    loss: Loss = Loss.MNRL
    similarity: Similarity | None = None
    scale: Positive | None = Field(default=None, description="1/temperature of the softmax")
    mini_batch_size: PositiveInt | None = Field(default=None, description="texts GradCache embeds at a time")
    gather_across_devices: bool = Field(default=False, description="in-batch negatives from every device")
    warmup_steps: NonNegativeInt = 0
    weight_decay: NonNegative = 0.0
    torch_compile: bool = False
    attention: Attention = Attention.SDPA
    fused_adamw: bool = True

    def for_spec(self, spec: ModelSpec) -> DualTrainingConfig:
        """The settings a run of ``spec`` uses: defaults that depend on the model filled in, and
        ``mini_batch_size`` cleared unless ``cached-mnrl`` uses it (so that it is no setting of the run)."""
        similarity = self.similarity or (Similarity.COS if spec.normalize else Similarity.DOT)
        if similarity == Similarity.COS and not spec.normalize:
            raise XdrError("similarity 'cos' needs a normalising model (xdr retrieves by dot product); "
                           "use similarity 'dot' or set normalize")
        return self.model_copy(update={
            "similarity": similarity,
            "scale": self.scale if self.scale is not None else (20.0 if similarity == Similarity.COS else 1.0),
            "mini_batch_size": (self.mini_batch_size or 32) if self.loss == Loss.CACHED_MNRL else None,
        })

    def trainer_kwargs(self) -> dict[str, Any]:
        return {
            **super().trainer_kwargs(),
            "warmup_steps": self.warmup_steps,
            "weight_decay": self.weight_decay,
            "torch_compile": self.torch_compile,
            "optim": "adamw_torch_fused" if self.fused_adamw else "adamw_torch",
            "dataloader_drop_last": self.gather_across_devices,  # all_gather needs equal batches on every device
        }


class GeneratorTrainingConfig(TrainingConfig):
    """``xdr train-generator``: a seq2seq model fine-tuned into an xQG question generator. ``float16`` is
    refused when training starts (mT5 overflows). With ``eval_fraction``, that share of the passages is held
    out for the eval loss (see :func:`xdr.train.generator.held_out`)."""

    epochs: Positive = 3.0
    lr: Positive = 1e-4
    batch_size: PositiveInt = 8
    max_input_length: PositiveInt = Field(default=512, description="prompt tokens kept")
    max_target_length: PositiveInt = Field(default=64, description="question tokens kept")
    eval_fraction: float = Field(default=0.0, ge=0.0, lt=1.0, description="share of passages held out")


def trainer_arguments(
    cls: type, config: TrainingConfig, output_dir: Path, *, device: torch.device, dtype: torch.dtype,
    evaluate: bool, fp16_problem: str,
) -> Any:
    """``cls`` (a ``TrainingArguments`` class) for ``config``, with xdr's checkpointing and precision rules."""
    import torch

    args = cls(
        output_dir=str(output_dir),
        bf16=dtype == torch.bfloat16,
        use_cpu=device.type == "cpu",
        dataloader_pin_memory=device.type == "cuda",
        save_strategy="steps",
        eval_strategy="steps" if evaluate else "no",
        report_to="none",
        **config.trainer_kwargs(),
    )
    if args.mixed_precision == "fp16":  # set by ACCELERATE_MIXED_PRECISION, which the Trainer honours
        raise XdrError(f"float16 is not supported: {fp16_problem}; unset ACCELERATE_MIXED_PRECISION")
    return args
