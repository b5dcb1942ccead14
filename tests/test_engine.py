"""The shard engine in this process: setup once, shards in order, finished shards counted and not redone, and
the stages' resume when a parallel run left its finished shards out of order. The Ray engine on a cluster is
in test_engine_cluster.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from test_encode import HashEncoder, corpus
from test_generate_run import FakeGenerator

from xdr.artifacts import Stage, shard_name
from xdr.cli.options import engine_settings
from xdr.config import ModelSpec
from xdr.embeddings import EmbeddingWriter, load_embeddings, store_params
from xdr.encode import encode_passages
from xdr.engine import EngineSettings, ShardTask, _Worker, worker_pool
from xdr.errors import XdrError
from xdr.generate import run_generation
from xdr.generate.artifact import shard_paths


def test_local_pool_builds_its_state_once_and_counts_finished_shards() -> None:
    built: list[int] = []

    def setup() -> dict[str, int]:
        built.append(1)
        return {"offset": 100}

    seen: list[int] = []
    tasks = [ShardTask(0, 3, [1, 2, 3]), ShardTask(1, 2), ShardTask(2, 1, [4])]  # shard 1: done before
    with worker_pool(None, setup) as pool:
        assert pool.ask(lambda state: state["offset"]) == 100
        report = pool.run(tasks, lambda state, rows, advance: [state["offset"] + r for r in rows], label="t",
                          on_done=lambda shard, result: seen.extend(result) or None, progress=False)
    assert built == [1]
    assert report.computed == [0, 2] and report.skipped == 1
    assert seen == [101, 102, 103, 104]


def test_encode_resumes_shards_finished_out_of_order(tmp_path: Path) -> None:
    """Parallel workers finish shards out of order: a killed driver can leave 0 and 2 done, 1 missing."""
    passages = corpus(10)
    full = encode_passages(passages, HashEncoder(), tmp_path / "full", shard_size=3, progress=False)
    out = tmp_path / "emb"
    encode_passages(passages, HashEncoder(), out, shard_size=3, progress=False)
    (out / "_DONE").unlink()
    for i in (1, 3):
        (out / shard_name(i, ".npy")).unlink()
    kept = {i: (out / shard_name(i, ".npy")).stat().st_ino for i in (0, 2)}
    enc = HashEncoder()
    encode_passages(passages, enc, out, shard_size=3, progress=False)
    assert enc.texts == [p.joined(" ") for p in passages[3:6] + passages[9:]]  # shards 1 and 3 only
    assert {i: (out / shard_name(i, ".npy")).stat().st_ino for i in (0, 2)} == kept
    ids, emb = load_embeddings(out)
    assert ids == [p.id for p in passages]
    np.testing.assert_array_equal(emb, load_embeddings(full)[1])


def test_generate_resumes_shards_finished_out_of_order(tmp_path: Path) -> None:
    passages = corpus(7)
    out = tmp_path / "gen"
    run_generation(passages, FakeGenerator(), out, langs=["de"], n=2, shard_size=2, filters=None, progress=False)
    before = {p.name: p.read_bytes() for p in shard_paths(out)}
    (out / "_DONE").unlink()
    shard_paths(out)[1].unlink()
    gen = FakeGenerator()
    run_generation(passages, gen, out, langs=["de"], n=2, shard_size=2, filters=None, progress=False)
    assert gen.calls == [(["p2", "p3"], "de")]
    assert {p.name: p.read_bytes() for p in shard_paths(out)} == before


def test_engine_options_are_checked() -> None:
    assert engine_settings("ray", "10.0.0.1:6379", 4, 2) == EngineSettings(
        kind="ray", address="10.0.0.1:6379", workers=4, threads=2)
    with pytest.raises(XdrError, match="go with --engine ray"):
        engine_settings("local", "10.0.0.1:6379")
    with pytest.raises(XdrError, match="local or ray"):
        engine_settings("spark", None)
    with pytest.raises(ValidationError):
        EngineSettings(kind="ray", workers=0)


def test_temp_files_of_lost_workers_are_removed_at_the_end(tmp_path: Path) -> None:
    """A Ray worker killed mid-write leaves its shard's temp file; the retried shard is written anew."""

    def compute(state: None, rows: list[int], advance: object) -> int:
        (tmp_path / ".part-00000.npy.abc.tmp").write_bytes(b"half")  # what the lost worker left
        (tmp_path / "part-00000.npy").write_bytes(b"whole")
        return len(rows)

    with worker_pool(None, lambda: None) as pool:
        pool.run([ShardTask(0, 1, [1])], compute, label="t", progress=False, out_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part-00000.npy"]


def test_a_store_is_never_marked_done_over_missing_shards(tmp_path: Path) -> None:
    """A worker that cannot see the output folder writes its shard elsewhere: the driver must not call the
    store finished."""
    spec = ModelSpec(name="m", path="m")
    writer = EmbeddingWriter(tmp_path / "emb", Stage.ENCODE, store_params(spec, "passage", 4, 2, normalized=False,
                                                                             source=None))
    writer.write(0, ["a", "b"], np.ones((2, 4), np.float32))
    with pytest.raises(XdrError, match="1 of 2 shards are not there"):
        writer.finish(rows=4, shards=2)
    assert not (tmp_path / "emb" / "_DONE").exists()


def test_ray_workers_resolve_relative_paths_like_the_driver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ray actor starts in a folder of Ray's; it moves to the driver's, so a relative --out is the same place."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # where Ray starts the actor
    worker = _Worker(lambda: Path.cwd(), None, str(tmp_path))  # the driver runs in tmp_path
    assert worker.state == tmp_path  # its setup already ran there
