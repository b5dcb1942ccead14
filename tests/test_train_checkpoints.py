"""Publishing a trained model: complete or absent, whatever an earlier killed run left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from xdr.artifacts import is_done, read_meta, start_artifact
from xdr.train.checkpoints import clear_stage, publish_model


def _save(tmp: Path) -> None:
    (tmp / "weights.bin").write_bytes(b"new")


def test_publish_replaces_what_a_killed_publish_left(tmp_path: Path) -> None:
    out = tmp_path / "run"
    start_artifact(out, "train", {"lr": 1.0})
    (out / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    (out / "model").mkdir()  # renamed into place, then killed before _DONE
    (out / "model" / "weights.bin").write_bytes(b"old")
    (out / ".model.tmp").mkdir()  # killed while saving
    (out / ".model.abc123.tmp").mkdir()

    model_dir = publish_model(out, _save, lambda d: {"result": {"files": sorted(p.name for p in d.iterdir())}})
    assert model_dir == out / "model" and (model_dir / "weights.bin").read_bytes() == b"new"
    assert is_done(out) and read_meta(out)["result"] == {"files": ["weights.bin"]}
    assert sorted(p.name for p in out.iterdir()) == ["_DONE", "meta.json", "model"]


def test_a_failed_save_leaves_no_model(tmp_path: Path) -> None:
    out = tmp_path / "run"
    start_artifact(out, "train", {})

    def broken(tmp: Path) -> None:
        (tmp / "half.bin").write_bytes(b"")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        publish_model(out, broken, lambda d: {})
    # the .lock stays while this (writing) process lives; a later writer takes a dead one's over
    assert sorted(p.name for p in out.iterdir()) == [".lock", "meta.json"] and not is_done(out)


def test_clear_stage_keeps_what_the_user_put_there(tmp_path: Path) -> None:
    out = tmp_path / "run"
    start_artifact(out, "train", {})
    for name in ("checkpoints", "model", ".model.x1.tmp", ".model.x2.old"):
        (out / name).mkdir()
    (out / "notes.txt").write_text("mine")
    clear_stage(out)
    assert sorted(p.name for p in out.iterdir()) == [".lock", "notes.txt"]  # the lock is this writer's own
