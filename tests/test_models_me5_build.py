"""How ``me5.build`` publishes its directory (with a stand-in for the slow dequantisation)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from xdr.artifacts import sha256_file
from xdr.models import me5


def _fake_write(content: str):
    def write(d: Path) -> None:
        (d / "weights.txt").write_text(content)
        files = {"weights.txt": {"bytes": len(content), "sha256": sha256_file(d / "weights.txt")}}
        (d / me5.MANIFEST).write_text(json.dumps({"format": me5.FORMAT_VERSION, "files": files}))
    return write


def test_build_publishes_replaces_and_keeps_an_intact_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "m"
    monkeypatch.setattr(me5, "_write_into", _fake_write("first"))
    assert me5.build(target) == target and (target / "weights.txt").read_text() == "first"
    assert oct(target.stat().st_mode & 0o777) == "0o755"  # a shared cache stays readable
    monkeypatch.setattr(me5, "_write_into", _fake_write("second"))
    me5.build(target)  # intact: a no-op
    assert (target / "weights.txt").read_text() == "first"
    me5.build(target, force=True)
    assert (target / "weights.txt").read_text() == "second"
    (target / "weights.txt").write_text("damaged")
    monkeypatch.setattr(me5, "_write_into", _fake_write("third"))
    me5.build(target)
    assert (target / "weights.txt").read_text() == "third"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temp or trash dirs left behind


def test_failed_build_keeps_the_old_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "m"
    monkeypatch.setattr(me5, "_write_into", _fake_write("first"))
    me5.build(target)

    def fail(d: Path) -> None:
        (d / "half").write_text("x")
        raise OSError("disk full")

    monkeypatch.setattr(me5, "_write_into", fail)
    with pytest.raises(OSError, match="disk full"):  # even though an intact copy is there
        me5.build(target, force=True)
    assert (target / "weights.txt").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


@pytest.mark.parametrize("intact", [True, False])
def test_concurrent_build_that_finished_first_is_kept_when_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, intact: bool
) -> None:
    """Publishing fails when another process renamed its copy into place first: an intact one is kept."""
    import xdr.artifacts

    target = tmp_path / "m"
    real_replace = os.replace

    def other_process_wins(src: str | Path, dst: str | Path) -> None:
        if Path(dst) == target:
            target.mkdir()
            _fake_write("other")(target)
            if not intact:
                (target / "weights.txt").write_text("half")
            raise OSError(39, "Directory not empty")
        real_replace(src, dst)

    monkeypatch.setattr(me5, "_write_into", _fake_write("mine"))
    monkeypatch.setattr(xdr.artifacts.os, "replace", other_process_wins)
    if intact:
        assert me5.build(target) == target
        assert (target / "weights.txt").read_text() == "other"
    else:
        with pytest.raises(OSError, match="not empty"):
            me5.build(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
