"""What xdr's two HF-Trainer stages (`xdr train`, `xdr train-generator`) share: exact resume and an atomic
final save (their settings are in :mod:`xdr.train.args`).

Layout of a training artifact: ``meta.json``, ``checkpoints/checkpoint-N`` while it runs, then ``model/``
(built beside it and renamed into place complete) and ``_DONE``; the checkpoints are deleted once the model
is published, since they hold optimizer state three times the weights' size and nothing resumes from them
any more.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from xdr.artifacts import DONE, META, atomic_dir, mark_done, update_meta

log = logging.getLogger(__name__)

MODEL_DIR = "model"
CHECKPOINTS_DIR = "checkpoints"
TRAINER_STATE = "trainer_state.json"  # the Trainer's name; it writes this file last in a checkpoint


def _unpublished(out: Path) -> list[Path]:
    """Temp directories of a save that a kill interrupted (:func:`~xdr.artifacts.atomic_dir` names them)."""
    return list(out.glob(f".{MODEL_DIR}.*"))


def clear_stage(out: Path) -> None:
    """Remove what an earlier run of the stage left in ``out`` (and nothing else a user put there)."""
    for path in (out / CHECKPOINTS_DIR, out / MODEL_DIR, *_unpublished(out)):
        shutil.rmtree(path, ignore_errors=True)
    for name in (META, DONE):
        (out / name).unlink(missing_ok=True)


def _step(checkpoint: Path) -> int:
    return int(checkpoint.name.removeprefix(f"{PREFIX_CHECKPOINT_DIR}-"))


def trainer_state(checkpoint: Path) -> dict[str, Any]:
    return json.loads((checkpoint / TRAINER_STATE).read_text(encoding="utf-8"))


def last_checkpoint(directory: Path) -> Path | None:
    """The newest checkpoint the Trainer finished writing; incomplete ones are removed.

    The Trainer writes ``trainer_state.json`` last, and not atomically, so a kill during a save leaves a
    directory that ``transformers.trainer_utils.get_last_checkpoint`` would still pick, and resuming from
    it would fail or load torn weights. Without a parseable state file a checkpoint is not complete.
    """
    complete = []
    for d in directory.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        if not d.name.removeprefix(f"{PREFIX_CHECKPOINT_DIR}-").isdigit():
            continue
        try:
            trainer_state(d)
        except (OSError, ValueError):
            log.warning("removing %s: a kill interrupted its save", d)
            shutil.rmtree(d)
            continue
        complete.append(d)
    return max(complete, key=_step, default=None)


def resume_point(out: Path) -> tuple[Path | None, dict[str, Any], bool]:
    """(last complete checkpoint, its trainer state, whether it is the final step).

    Resumed from its final checkpoint, the Trainer would take one more step (it tests for the end only
    after a step), so a run killed after that checkpoint just takes its weights.
    """
    checkpoint = last_checkpoint(out / CHECKPOINTS_DIR)
    state = trainer_state(checkpoint) if checkpoint else {}
    return checkpoint, state, bool(state) and state["global_step"] >= state["max_steps"]


def train_or_resume(trainer: Any, checkpoint: Path | None, state: dict[str, Any], finished: bool) -> dict[str, Any]:
    """Run (or resume) the Trainer; returns the outcome recorded in meta.json."""
    if finished:
        log.info("%s is the final checkpoint: saving its weights", checkpoint)
        return {"global_step": state["global_step"]}
    if checkpoint is not None:
        log.info("resuming from %s", checkpoint)
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    return {"global_step": result.global_step, "train_loss": result.training_loss}


def publish_model(out: Path, save: Callable[[Path], None], meta: Callable[[Path], dict[str, Any]]) -> Path:
    """Save the model beside its final name and rename it, so ``model/`` is always complete; then record
    ``meta(model_dir)`` in meta.json, mark the stage done and delete the checkpoints.

    A ``model/`` already there was left by a run killed between that rename and ``_DONE``: it is replaced.
    """
    model_dir = out / MODEL_DIR
    for stale in _unpublished(out):
        shutil.rmtree(stale, ignore_errors=True)
    with atomic_dir(model_dir, replace=True) as tmp:
        save(tmp)
    update_meta(out, **meta(model_dir))
    mark_done(out)
    shutil.rmtree(out / CHECKPOINTS_DIR, ignore_errors=True)
    return model_dir
