"""Tokenisation in worker processes, ahead of the model, so a GPU encoder is not waiting on one CPU core.

A fast (Rust) tokenizer parallelises inside one batch call, but turning its encodings into Python lists
holds the GIL, and so does everything else the encoding process does between forward passes; on an H200
BERT-base encoding stalled on the host at about 3.7 busy cores out of 16. Worker processes each hold a copy
of the tokenizer and return token ids as flat int32 arrays (cheap to pickle), pieces of a chunk in
parallel, chunks ahead of the one being encoded. The ids are exactly those of :func:`token_ids` in the
calling process, so vectors do not change. ``concurrent.futures`` does the pool; what is hand-written is
the split into pieces, the look-ahead and the array packing.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

PIECE = 2048  # texts per task: large enough to amortise a round trip, small enough to spread a chunk


def token_ids(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids with special tokens, truncated to ``max_length``: the one tokenisation rule of encoding."""
    enc = tokenizer(
        list(texts), truncation=True, max_length=max_length, return_attention_mask=False, return_token_type_ids=False
    )
    return enc["input_ids"]


_worker_tokenizer: Any = None


def _start_worker(tokenizer: PreTrainedTokenizerBase) -> None:
    global _worker_tokenizer
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one core per worker; the pool is the parallelism
    _worker_tokenizer = tokenizer


def _tokenize_piece(texts: list[str], max_length: int) -> tuple[np.ndarray, np.ndarray]:
    ids = token_ids(_worker_tokenizer, texts, max_length)
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter((t for x in ids for t in x), dtype=np.int32, count=int(lengths.sum()))
    return flat, lengths


def _unpack(flat: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    return np.split(flat.astype(np.int64), np.cumsum(lengths)[:-1])


class TokenizerPool:
    """``workers`` processes that tokenise with copies of ``tokenizer``; :meth:`close` ends them.

    Processes start with ``spawn``: the encoding process may hold CUDA and OpenMP state that a fork would
    copy half-initialised.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be positive, not {workers}")
        self.workers = workers
        self._executor = ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
            initargs=(tokenizer,),
        )

    def _submit(self, texts: Sequence[str], max_length: int) -> list[Future]:
        step = max(1, min(PIECE, -(-len(texts) // self.workers)))
        return [
            self._executor.submit(_tokenize_piece, list(texts[i : i + step]), max_length)
            for i in range(0, len(texts), step)
        ]

    def tokenize(self, texts: Sequence[str], max_length: int) -> list[np.ndarray]:
        """:func:`token_ids` of ``texts`` (as int64 arrays), computed by the workers."""
        return next(self.tokenize_chunks([texts], max_length))

    def tokenize_chunks(
        self, chunks: Iterable[Sequence[str]], max_length: int, ahead: int = 2
    ) -> Iterator[list[np.ndarray]]:
        """Token ids of each chunk, in order, with up to ``ahead`` further chunks already being tokenised."""
        pending: deque[list[Future]] = deque()
        source = iter(chunks)
        try:
            for chunk in source:
                pending.append(self._submit(chunk, max_length))
                if len(pending) > ahead:
                    yield [x for f in pending.popleft() for x in _unpack(*f.result())]
            while pending:
                yield [x for f in pending.popleft() for x in _unpack(*f.result())]
        finally:
            for futures in pending:  # a consumer that stops early leaves no work queued
                for f in futures:
                    f.cancel()

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
