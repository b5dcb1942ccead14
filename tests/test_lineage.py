"""Lineage: a stage notices that an input was rebuilt or edited, a directory has one writer at a time, and
a killed writer's temp files do not outlive the next run. Each case once gave wrong figures with exit 0."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from xdr.artifacts import input_fingerprint, mark_done, run_id, start_artifact, take_lock
from xdr.augment import FusionSettings, augment
from xdr.config import ModelSpec
from xdr.data.runs import Run
from xdr.data.schema import Passage, Query
from xdr.embeddings import write_embeddings
from xdr.encode import encode_passages
from xdr.errors import MismatchError, XdrError, XdrWarning
from xdr.evaluate import evaluate_files
from xdr.generate.artifact import generated_query_id
from xdr.index import build_index
from xdr.search import write_search_output

SPEC = ModelSpec(name="toy", path="/models/toy", fingerprint="abc", normalize=False)


class CharEncoder:
    """Deterministic vectors from character counts, so an edited text gets another vector."""

    spec, dim = SPEC, 8

    def encode(self, texts, kind, batch_size=0, progress=False, token_budget=None) -> np.ndarray:
        return np.array([[t.count(c) for c in "aeiounst"] for t in texts], np.float32)


def _stores(root: Path, scale: float = 1.0) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    pids = [f"d{i}" for i in range(6)]
    qids = [generated_query_id(p, "de", k) for p in pids for k in range(2)]
    p = write_embeddings(pids, rng.normal(size=(6, 4)), SPEC, root / "p", shard_size=2, progress=False)
    q = write_embeddings(qids, scale * rng.normal(size=(12, 4)), SPEC, root / "q", kind="query", shard_size=3,
                         progress=False)
    return p, q


def test_index_over_a_rebuilt_augment_output_is_refused_not_skipped(tmp_path: Path) -> None:
    """The rerun exited 0 in 1 s and kept the index of the old alpha (RR@10 42.7 against 48.5)."""
    p, q = _stores(tmp_path)
    aug = augment(p, q, tmp_path / "aug", FusionSettings(alpha=0.1), progress=False)
    build_index(aug, tmp_path / "idx", progress=False)
    build_index(aug, tmp_path / "idx", progress=False)  # the same input: skipped, as before
    for f in aug.iterdir():  # rebuilt in place with another alpha
        f.unlink()
    augment(p, q, aug, FusionSettings(alpha=0.5), progress=False)
    with pytest.raises(MismatchError, match=r"other inputs than now .*embeddings"):
        build_index(aug, tmp_path / "idx", progress=False)


def test_augment_resumed_after_its_generate_input_was_rebuilt_is_refused(tmp_path: Path) -> None:
    p, q = _stores(tmp_path)
    (tmp_path / "aug").mkdir()
    with pytest.raises(KeyboardInterrupt), pytest.MonkeyPatch.context() as mp:
        mp.setattr("xdr.embeddings.EmbeddingWriter.finish", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
        augment(p, q, tmp_path / "aug", progress=False)
    for f in q.iterdir():
        f.unlink()
    _stores(tmp_path / "other", scale=2.0)
    for f in (tmp_path / "other" / "q").iterdir():  # another query set lands where the old one was
        os.replace(f, q / f.name)
    with pytest.raises(MismatchError, match=r"other inputs than now .*source"):
        augment(p, q, tmp_path / "aug", progress=False)


def test_an_input_edited_in_place_with_the_same_size_and_mtime_is_refused(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    rows = [{"id": f"d{i}", "text": f"text number {i} about seas"} for i in range(6)]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    passages = [Passage(r["id"], r["text"]) for r in rows]
    with pytest.raises(KeyboardInterrupt), pytest.MonkeyPatch.context() as mp:
        mp.setattr("xdr.embeddings.EmbeddingWriter.finish", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
        encode_passages(passages, CharEncoder(), tmp_path / "emb", shard_size=2, source=corpus, progress=False)
    st = corpus.stat()
    edited = corpus.read_text().replace("seas", "moon")  # same length
    corpus.write_text(edited)
    os.utime(corpus, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert corpus.stat().st_size == st.st_size and corpus.stat().st_mtime_ns == st.st_mtime_ns
    passages = [Passage(r["id"], r["text"].replace("seas", "moon")) for r in rows]
    with pytest.raises(MismatchError, match=r"other inputs than now .*source"):
        encode_passages(passages, CharEncoder(), tmp_path / "emb", shard_size=2, source=corpus, progress=False)


def test_a_reused_search_out_never_pairs_an_old_xor_json_with_a_new_run(tmp_path: Path) -> None:
    """A second search into the same --out kept the first one's xor.json; evaluate read R@100t 17 for 83."""
    corpus = [Passage("d1", "Paris is the capital"), Passage("d2", "Berlin is a city")]
    queries = [Query("q1", "de", "?", ("Paris",))]
    out = tmp_path / "run"
    write_search_output(Run({"q1": [("d2", 0.9), ("d1", 0.1)]}), queries, out, corpus=corpus)
    old_xor = (out / "xor.json").read_bytes()
    write_search_output(Run({"q1": [("d1", 0.9), ("d2", 0.1)]}), queries, out)  # no corpus: no xor.json
    assert not (out / "xor.json").exists()
    (out / "xor.json").write_bytes(old_xor)  # a stale file put back by hand
    with pytest.warns(XdrWarning, match="was not written by the search"), \
            pytest.raises(XdrError, match="nothing to evaluate"):
        evaluate_files(out, _queries_file(tmp_path, queries), token_budgets=[5])
    write_search_output(Run({"q1": [("d1", 0.9), ("d2", 0.1)]}), queries, out, corpus=corpus)
    report = evaluate_files(out, _queries_file(tmp_path, queries), token_budgets=[5])
    assert report.macro["R@5t"] == 100.0
    (out / "run.trec").write_text("q1 Q0 d2 1 0.9 xdr\n")
    with pytest.raises(MismatchError, match=r"is not the file the search .* wrote"):
        evaluate_files(out, _queries_file(tmp_path, queries), token_budgets=[5])
    meta = json.loads((out / "meta.json").read_text())
    assert meta["stage"] == "search" and set(meta["files"]) == {"run.trec", "xor.json"}


def _queries_file(tmp_path: Path, queries: list[Query]) -> Path:
    path = tmp_path / "q.jsonl"
    path.write_text("".join(json.dumps({"id": q.id, "lang": q.lang, "text": q.text, "answers": list(q.answers)})
                            + "\n" for q in queries))
    return path


def test_a_second_writer_is_refused_while_the_first_lives_and_a_dead_ones_lock_is_taken(tmp_path: Path) -> None:
    d = tmp_path / "a"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from xdr.artifacts import take_lock; "
                               f"take_lock({str(d)!r}); print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        d.mkdir()
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(XdrError, match=f"another xdr process \\(PID {holder.pid}\\)"):
            start_artifact(d, "encode", {"x": 1})
    finally:
        holder.kill()
        holder.wait()
    start_artifact(d, "encode", {"x": 1})  # the holder is gone: its lock is stale
    assert (d / ".lock").read_text() == str(os.getpid())
    mark_done(d)
    assert not (d / ".lock").exists() and len(run_id(d)) == 32


def test_temp_files_of_a_killed_run_are_removed_by_the_next(tmp_path: Path) -> None:
    d = tmp_path / "idx"
    start_artifact(d, "index", {"factory": "Flat"})
    (d / ".index.faiss.abc123.tmp").write_bytes(b"x" * 1000)  # what a killed build leaves
    (d / ".lock").write_text("999999999")  # and its lock, whose process is gone
    take_lock(d)
    start_artifact(d, "index", {"factory": "Flat"})
    assert not list(d.glob(".*.tmp"))


def test_content_fingerprint_sees_an_edit_that_keeps_size_and_mtime(tmp_path: Path) -> None:
    f = tmp_path / "c.tsv"
    f.write_text("id\ttext\n1\tabc\n")
    before = input_fingerprint(f)
    st = f.stat()
    f.write_text("id\ttext\n1\tabd\n")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert input_fingerprint(f) != before and input_fingerprint(f)["bytes"] == before["bytes"]
