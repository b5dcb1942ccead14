"""Turn texts into vectors with a transformers checkpoint, as a :class:`~xdr.config.ModelSpec` describes.

Throughput comes from not computing on padding: texts are tokenised once, sorted by token count and cut
into batches, so each batch is nearly rectangular. Two limits shape a batch: ``batch_size`` texts (what
sentence-transformers calls a batch) and a ``token_budget`` of padded tokens; with the text limit lifted
(``batch_size=None``), short texts ride in large batches, which is what a GPU needs. Tokenisation (CPU)
is split from the forward pass so that on CUDA a background thread prepares the next batches in pinned
memory while the GPU runs the current one, and with ``tokenizer_workers`` the tokenising itself runs in
worker processes (:mod:`xdr.models.tokenize`), chunks ahead of the model.
"""

from __future__ import annotations

import os
import queue
import threading
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from xdr.config import ModelSpec
from xdr.data.schema import Passage
from xdr.errors import XdrError
from xdr.models.base import Kind
from xdr.models.registry import missing_model_error, resolve_spec
from xdr.models.tokenize import TokenizerPool, token_ids
from xdr.models.weights import max_positions
from xdr.runtime import resolve_device, resolve_dtype

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class Batch:
    """Padded token ids for some input rows; ``rows`` says where the vectors go in the output."""

    rows: np.ndarray
    input_ids: torch.Tensor
    attention_mask: torch.Tensor


def plan_batches(
    lengths: Sequence[int] | np.ndarray, token_budget: int, max_padding: float = 0.05,
    max_rows: int | None = None,
) -> list[np.ndarray]:
    """Group row indices, longest first, into nearly rectangular batches.

    A batch fills up to ``token_budget // 8`` padded tokens regardless (small matmuls waste more time
    than a little padding does), then keeps growing only while its padding stays under ``max_padding``
    of its real tokens, so runs of similar lengths form large batches and the long tail is not padded
    up. ``rows × longest`` never exceeds ``token_budget``, which bounds activation memory, and rows never
    exceed ``max_rows`` when it is given.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    sorted_len = lengths[order]
    min_tokens = token_budget // 8
    n = len(order)
    batches: list[np.ndarray] = []
    start = 0
    while start < n:
        longest = max(int(sorted_len[start]), 1)
        cap = max(min(token_budget // longest, max_rows or n), 1)
        end, real = start + 1, int(sorted_len[start])
        while end < n and end - start < cap:
            grown = real + int(sorted_len[end])
            rows = end - start + 1
            if rows * longest > min_tokens and rows * longest > (1 + max_padding) * grown:
                break
            real, end = grown, end + 1
        batches.append(order[start:end])
        start = end
    return batches


def _check_lengths(spec: ModelSpec, config: Any, tokenizer: PreTrainedTokenizerBase) -> None:
    """Refuse max lengths past the model's position table: a longer text then fails deep inside the model
    with a tensor-size error, hours into an encode."""
    positions = max_positions(config.to_dict())
    if positions is None:
        return
    for side, length in (("query", spec.query_max_length), ("passage", spec.passage_max_length)):
        if length > positions:
            raise XdrError(f"--{side}-max-length {length} exceeds the {positions} positions of {spec.name}; "
                           f"use at most {positions}")


AUTO_WORKERS_MIN_TEXTS = 8192  # below this, starting worker processes costs more than it saves (one encode chunk)


def auto_tokenizer_workers(device: torch.device, texts: int) -> int:
    """Tokenizer processes for ``texts`` texts when none are asked for: on CUDA, for large inputs, all
    cores but two (the encoding process and its batching thread), at most 8; none on a CPU, whose
    cores the model needs."""
    if device.type != "cuda" or texts < AUTO_WORKERS_MIN_TEXTS:
        return 0
    return max(0, min(8, (os.cpu_count() or 1) - 2))


class Encoder:
    """A loaded model plus the spec that says how to prefix, truncate, pool and normalise.

    ``tokenizer_workers`` is the number of processes that tokenise ahead of the model (0, the default:
    tokenise in this process; None: :func:`auto_tokenizer_workers` per call); the vectors are the same
    either way. The processes start on first use, with ``spawn`` (so a script that uses them needs the
    ``if __name__ == "__main__":`` guard that any multiprocessing needs), and stop with :meth:`close` or
    when the encoder is collected.
    """

    def __init__(
        self,
        spec: ModelSpec,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        device: torch.device,
        tokenizer_workers: int | None = 0,
    ) -> None:
        self.spec = spec
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        if tokenizer_workers is not None and (isinstance(tokenizer_workers, bool) or tokenizer_workers < 0):
            raise XdrError(f"tokenizer_workers must be 0 or more, not {tokenizer_workers!r}")
        self.tokenizer_workers = tokenizer_workers
        self._pool: TokenizerPool | None = None
        self._pool_finalizer: weakref.finalize | None = None
        self.dim: int = int(model.config.hidden_size)
        pad = tokenizer.pad_token_id
        self.pad_id: int = int(pad if pad is not None else 0)

    @classmethod
    def load(
        cls, model: ModelSpec | str, device: str | torch.device | None = None, *, tokenizer_workers: int | None = 0
    ) -> Encoder:
        """Load a model onto ``device`` (default: CUDA when available) in eval mode.

        ``model`` is a :class:`ModelSpec` or what ``--model`` takes: a registry name (``"me5-small"``), a
        hub id or a local directory, resolved with its registry defaults by
        :func:`~xdr.models.registry.resolve_spec`.
        """
        from transformers import AutoModel, AutoTokenizer

        spec = resolve_spec(model) if isinstance(model, str) else model
        dev = resolve_device(device)
        dtype = resolve_dtype(spec.dtype, dev)
        try:
            tokenizer = AutoTokenizer.from_pretrained(spec.path)
            try:
                model = AutoModel.from_pretrained(spec.path, dtype=dtype, attn_implementation="sdpa")
            except (ValueError, ImportError):  # architecture without an SDPA path
                model = AutoModel.from_pretrained(spec.path, dtype=dtype)
        except OSError as e:  # files vanished since resolve_spec, or weights not downloadable offline
            raise missing_model_error(spec.name, f"loading {spec.path} failed: {str(e)[:300]}") from e
        _check_lengths(spec, model.config, tokenizer)
        return cls(spec, model.to(dev).eval(), tokenizer, dev, tokenizer_workers)

    def with_spec(self, spec: ModelSpec) -> Encoder:
        """This encoder's loaded model and tokenizer under ``spec`` (e.g. another query max length or prefix).

        Saves loading the weights a second time to encode with other per-use settings. A spec of another
        vector space is refused (MismatchError), and so is one whose dtype would load other weights.
        """
        spec.check_same_space(self.spec, "the new spec")
        if resolve_dtype(spec.dtype, self.device) != self.model.dtype:
            raise XdrError(f"dtype {spec.dtype} differs from the loaded model's {self.model.dtype}; load the "
                           "model again with Encoder.load for another dtype")
        return type(self)(spec, self.model, self.tokenizer, self.device, self.tokenizer_workers)

    def close(self) -> None:
        """Stop the tokenizer processes, if any started; a later encode starts them again."""
        if self._pool_finalizer is not None:
            self._pool_finalizer()
        self._pool = self._pool_finalizer = None

    def _workers_pool(self, texts: int) -> TokenizerPool | None:
        workers = self.tokenizer_workers
        workers = auto_tokenizer_workers(self.device, texts) if workers is None else workers
        if not workers:
            return None
        if self._pool is None or self._pool.workers != workers:
            self.close()
            self._pool = TokenizerPool(self.tokenizer, workers)
            self._pool_finalizer = weakref.finalize(self, self._pool.close)
        return self._pool

    def prefix(self, kind: Kind) -> str:
        return self.spec.query_prefix if kind == "query" else self.spec.passage_prefix

    def max_length(self, kind: Kind) -> int:
        return self.spec.query_max_length if kind == "query" else self.spec.passage_max_length

    def tokenize(self, texts: Sequence[str], kind: Kind) -> list[list[int]]:
        """Token ids with the kind's prefix and special tokens, truncated to the kind's max length."""
        p = self.prefix(kind)
        return token_ids(self.tokenizer, [p + t for t in texts], self.max_length(kind))

    def collate(self, ids: Sequence[Sequence[int]], rows: np.ndarray, pin: bool = False) -> Batch:
        """Pad one batch into tensors (pinned when a GPU will copy them asynchronously)."""
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        input_ids = np.full((len(ids), int(lengths.max())), self.pad_id, dtype=np.int64)
        for i, x in enumerate(ids):
            input_ids[i, : len(x)] = x
        mask = (np.arange(input_ids.shape[1]) < lengths[:, None]).astype(np.int64)
        t_ids, t_mask = torch.from_numpy(input_ids), torch.from_numpy(mask)
        if pin:
            t_ids, t_mask = t_ids.pin_memory(), t_mask.pin_memory()
        return Batch(rows, t_ids, t_mask)

    def batches(
        self, texts: Sequence[str], kind: Kind, batch_size: int | None = 32, chunk_size: int = 16384, *,
        token_budget: int | None = None,
    ) -> Iterator[Batch]:
        """Length-sorted batches over ``texts``, tokenised ``chunk_size`` texts at a time, each within
        ``batch_size`` texts and ``token_budget`` padded tokens (see :meth:`encode`).

        Sorting within chunks keeps memory flat for huge inputs; a chunk of 16k texts already leaves
        almost no padding.
        """
        for name, value in (("batch_size", batch_size), ("token_budget", token_budget)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise XdrError(f"{name} must be a positive integer or None, not {value!r}")
        if token_budget is None:
            if batch_size is None:
                raise XdrError("give batch_size (texts per forward pass) or token_budget (tokens per forward pass)")
            token_budget = batch_size * self.max_length(kind)
        return self._planned(texts, kind, token_budget, batch_size, chunk_size)

    def _planned(
        self, texts: Sequence[str], kind: Kind, token_budget: int, max_rows: int | None, chunk_size: int
    ) -> Iterator[Batch]:
        pin = self.device.type == "cuda"
        starts = range(0, len(texts), chunk_size)
        chunks: Iterator[Sequence[Sequence[int]]]
        if pool := self._workers_pool(len(texts)):
            p = self.prefix(kind)
            prefixed = ([p + t for t in texts[s : s + chunk_size]] for s in starts)
            chunks = pool.tokenize_chunks(prefixed, self.max_length(kind))
        else:
            chunks = (self.tokenize(texts[s : s + chunk_size], kind) for s in starts)
        for start, ids in zip(starts, chunks, strict=True):
            for group in plan_batches([len(x) for x in ids], token_budget, max_rows=max_rows):
                yield self.collate([ids[i] for i in group], group + start, pin=pin)

    @torch.inference_mode()
    def embed(self, batch: Batch) -> torch.Tensor:
        """Forward one batch and pool it; the result stays on the device (float32)."""
        ids = batch.input_ids.to(self.device, non_blocking=True)
        mask = batch.attention_mask.to(self.device, non_blocking=True)
        hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        if self.spec.pooling == "cls":
            pooled = hidden[:, 0].float()
        else:  # sum in float32: bf16 sums over hundreds of tokens lose digits
            m = mask.unsqueeze(-1).float()
            pooled = (hidden.float() * m).sum(dim=1) / m.sum(dim=1)
        if self.spec.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=-1)
        return pooled

    def encode(
        self, texts: Sequence[str], kind: Kind, batch_size: int | None = 32, progress: bool = False, *,
        token_budget: int | None = None,
    ) -> np.ndarray:
        """Vectors for ``texts`` (float32, one row per text, in input order).

        ``batch_size`` is the most texts one forward pass takes, as in sentence-transformers.
        ``token_budget`` is the most tokens one forward pass takes, padding included (rows × longest
        text); by default it is ``batch_size`` texts of the kind's max length, which never limits before
        ``batch_size`` does. For throughput on a GPU pass ``batch_size=None, token_budget=...``: batches
        are then cut by tokens alone, so short texts ride in large batches (see :func:`plan_batches`).
        The vectors are the same either way. Passages arrive already joined (title and text) as plain
        strings; :meth:`encode_passages` joins them.
        """
        from tqdm.auto import tqdm

        if kind not in ("query", "passage"):
            raise ValueError(f"kind must be 'query' or 'passage', not {kind!r}")
        source = self.batches(texts, kind, batch_size, token_budget=token_budget)  # refuses bad limits now
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not len(texts):
            return out
        if self.device.type == "cuda":
            source = _prefetch(source, depth=4)
        pending: list[tuple[np.ndarray, torch.Tensor]] = []
        n_pending = 0
        with tqdm(total=len(texts), disable=not progress, unit="text", desc=f"encode {kind}") as bar:
            for batch in source:
                pending.append((batch.rows, self.embed(batch)))
                n_pending += len(batch.rows)
                bar.update(len(batch.rows))
                if n_pending >= 8192:  # one device sync per many batches, not per batch
                    _flush(pending, out)
                    n_pending = 0
            _flush(pending, out)
        return out

    def encode_queries(
        self, texts: str | Sequence[str], batch_size: int | None = 32, *, token_budget: int | None = None,
        progress: bool = False,
    ) -> np.ndarray:
        """Query vectors, float32 [len(texts), dim], with the spec's query prefix and max length.

        sentence-transformers' ``encode`` for the query side: a single string gives one vector [dim].
        ``batch_size`` and ``token_budget`` are as in :meth:`encode`.
        """
        if isinstance(texts, str):
            return self.encode_queries([texts], batch_size, token_budget=token_budget, progress=progress)[0]
        return self.encode(texts, "query", batch_size, progress, token_budget=token_budget)

    def encode_passages(
        self, passages: str | Passage | Sequence[str | Passage], batch_size: int | None = 32, *,
        token_budget: int | None = None, progress: bool = False,
    ) -> np.ndarray:
        """Passage vectors, float32 [len(passages), dim], with the spec's passage prefix and max length.

        A passage is a string or a :class:`~xdr.data.schema.Passage`, whose title and text are joined with
        the spec's title separator, as ``xdr encode`` joins them. A single one gives one vector [dim].
        """
        if isinstance(passages, (str, Passage)):
            return self.encode_passages([passages], batch_size, token_budget=token_budget, progress=progress)[0]
        sep = self.spec.title_separator
        texts = [p.joined(sep) if isinstance(p, Passage) else p for p in passages]
        return self.encode(texts, "passage", batch_size, progress, token_budget=token_budget)


def _flush(pending: list[tuple[np.ndarray, torch.Tensor]], out: np.ndarray) -> None:
    if pending:
        rows = np.concatenate([r for r, _ in pending])
        out[rows] = torch.cat([v for _, v in pending]).cpu().numpy()
        pending.clear()


_END = object()


def _prefetch(source: Iterator[Batch], depth: int) -> Iterator[Batch]:
    """Run ``source`` in a thread, ``depth`` batches ahead.

    The fast tokenizers release the GIL, so tokenising and padding overlap with the GPU forward rather
    than stalling it between batches.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in source:
                if not put(item):
                    return
            put(_END)
        except BaseException as e:  # re-raised in the consumer
            put(e)

    thread = threading.Thread(target=work, name="xdr-tokenize", daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
