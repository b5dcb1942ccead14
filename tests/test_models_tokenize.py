"""Tokenising in worker processes: the same batches and vectors as in-process tokenising, and no leftovers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from xdr.config import ModelSpec
from xdr.errors import XdrError
from xdr.models import Encoder
from xdr.models.encoder import AUTO_WORKERS_MIN_TEXTS, auto_tokenizer_workers
from xdr.models.tokenize import TokenizerPool

TEXTS = [
    ("the lighthouse of alexandria was one of the seven wonders " * (i % 7 + 1)) + f"number {i}" for i in range(23)
] + ["", "a"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_worker_tokenising_gives_identical_batches_and_vectors(tiny_bert_dir: Path) -> None:
    spec = ModelSpec(name="tiny", path=str(tiny_bert_dir), passage_prefix="passage: ", passage_max_length=12)
    plain = Encoder.load(spec, device="cpu", tokenizer_workers=0)
    pooled = Encoder.load(spec, device="cpu", tokenizer_workers=2)
    try:
        # small chunks: several chunks in flight, each split over both workers
        a = list(plain.batches(TEXTS, "passage", batch_size=4, chunk_size=7))
        b = list(pooled.batches(TEXTS, "passage", batch_size=4, chunk_size=7))
        assert pooled._pool is not None and len(a) == len(b) > 4
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x.rows, y.rows)
            assert torch.equal(x.input_ids, y.input_ids) and torch.equal(x.attention_mask, y.attention_mask)
        assert (a[0].input_ids.shape[1] == 12) and any(bt.input_ids.shape[1] < 12 for bt in a)  # truncated, mixed
        np.testing.assert_array_equal(pooled.encode(TEXTS, "passage"), plain.encode(TEXTS, "passage"))
        pids = list(pooled._pool._executor._processes)
        assert len(pids) == 2 and all(_alive(p) for p in pids)
        reused = pooled.with_spec(spec)
        assert reused.tokenizer_workers == 2 and reused._pool is None  # each encoder owns its processes
    finally:
        pooled.close()
    assert not any(_alive(p) for p in pids)
    assert pooled._pool is None


def test_auto_workers_only_for_large_gpu_encodes(tiny_bert_dir: Path) -> None:
    assert auto_tokenizer_workers(torch.device("cpu"), 10**7) == 0
    assert auto_tokenizer_workers(torch.device("cuda"), AUTO_WORKERS_MIN_TEXTS - 1) == 0
    assert auto_tokenizer_workers(torch.device("cuda"), AUTO_WORKERS_MIN_TEXTS) == max(
        0, min(8, (os.cpu_count() or 1) - 2)
    )
    spec = ModelSpec(name="tiny", path=str(tiny_bert_dir))
    assert Encoder.load(spec, device="cpu").tokenizer_workers == 0  # opt-in: worker processes need a main guard
    auto = Encoder.load(spec, device="cpu", tokenizer_workers=None)
    auto.encode(TEXTS, "passage")
    assert auto._pool is None  # auto on a CPU: the model needs the cores
    with pytest.raises(XdrError, match="tokenizer_workers"):
        Encoder.load(spec, device="cpu", tokenizer_workers=-1)


def test_pool_stops_early_without_queued_work(tiny_bert_dir: Path) -> None:
    from transformers import AutoTokenizer

    pool = TokenizerPool(AutoTokenizer.from_pretrained(tiny_bert_dir), 1)
    try:
        chunks = pool.tokenize_chunks(([t] * 3 for t in TEXTS), max_length=8, ahead=3)
        first = next(chunks)
        assert [len(x) for x in first] == [8, 8, 8] and first[0].dtype == np.int64
        chunks.close()  # the consumer stops: queued chunks are cancelled, not tokenised
        assert pool.tokenize(["a b"], 8)[0].tolist() == AutoTokenizer.from_pretrained(tiny_bert_dir)("a b")["input_ids"]
    finally:
        pool.close()
