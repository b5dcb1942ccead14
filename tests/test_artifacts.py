"""The artifact contract every stage relies on: atomic writes, resumable params, unfinished refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from xdr.artifacts import atomic_path, mark_done, require_done, start_artifact, write_text_atomic
from xdr.errors import MismatchError, XdrError


def test_a_failed_write_leaves_nothing_and_a_good_one_is_readable_by_others(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "out.txt") as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    write_text_atomic(tmp_path / "out.txt", "whole")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "out.txt").read_text() == "whole"
    assert os.stat(tmp_path / "out.txt").st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600


def test_resume_needs_the_same_params_and_unfinished_artifacts_are_refused(tmp_path: Path) -> None:
    start_artifact(tmp_path / "a", "encode", {"shard_size": 10})
    start_artifact(tmp_path / "a", "encode", {"shard_size": 10})  # a resume: accepted
    with pytest.raises(MismatchError, match="shard_size"):
        start_artifact(tmp_path / "a", "encode", {"shard_size": 20})
    with pytest.raises(XdrError, match="did not finish"):
        require_done(tmp_path / "a")
    mark_done(tmp_path / "a")
    assert require_done(tmp_path / "a")["params"] == {"shard_size": 10}
