"""Transformers plumbing shared by the seq2seq and local-LLM generators: loading, seeded sampling.

HF's sampler draws every row of a batch from one global random generator, so a query would depend on the
other passages in its batch. :class:`SeededSampler` instead picks each row's next token with that row's
own random stream (seeded from docid, language and k), which makes a query a function of its seed, the
model and the input only: not of batch size, batch neighbours, shard size or resume point.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import torch
from transformers import LogitsProcessor, LogitsProcessorList, PreTrainedModel, PreTrainedTokenizerBase

from xdr.errors import XdrError
from xdr.models.registry import missing_model_error


@contextmanager
def loading(model: str) -> Iterator[None]:
    """Turn a checkpoint that cannot be fetched or read (offline, misspelt id, missing files) into xdr's
    one-line error that says how to get it, the same one encoders give."""
    try:
        yield
    except OSError as e:  # transformers reports hub, cache and id errors as OSError
        raise missing_model_error(model, str(e).splitlines()[0][:300]) from e


@dataclass(frozen=True)
class Sampling:
    """Sampling settings; ``top_k=None`` samples from the whole vocabulary."""

    top_k: int | None = 10
    top_p: float = 1.0
    temperature: float = 1.0
    max_new_tokens: int = 32

    def __post_init__(self) -> None:
        if self.top_k is not None and self.top_k < 1:
            raise XdrError(f"top_k must be a positive integer or None, not {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise XdrError(f"top_p must be in (0, 1], not {self.top_p}")
        if self.temperature <= 0.0:
            raise XdrError(f"temperature must be positive, not {self.temperature} (use top_k=1 for greedy)")
        if self.max_new_tokens < 1:
            raise XdrError(f"max_new_tokens must be positive, not {self.max_new_tokens}")


Seeding = Literal["numpy", "philox"]
_MASK32 = np.uint64(0xFFFFFFFF)
_PHILOX_M = (np.uint64(0xD2511F53), np.uint64(0xCD9E8D57))
_PHILOX_W = (np.uint64(0x9E3779B9), np.uint64(0xBB67AE85))


def philox4x32(counter: np.ndarray, key: np.ndarray, rounds: int = 10) -> np.ndarray:
    """Philox4x32 (Salmon et al., SC'11; Random123's ``philox4x32_R``), vectorised over leading axes.

    ``counter`` is ``[..., 4]`` and ``key`` ``[..., 2]`` 32-bit words; returns ``[..., 4]`` uint32. numpy
    ships Philox only as a sequential bit generator (one object per stream), which is what makes per-row
    streams slow; this evaluates every (key, counter) pair at once.
    """
    c = [np.asarray(counter[..., i], dtype=np.uint64) for i in range(4)]
    k0, k1 = (np.asarray(key[..., i], dtype=np.uint64) for i in range(2))
    for r in range(rounds):
        if r:
            k0, k1 = (k0 + _PHILOX_W[0]) & _MASK32, (k1 + _PHILOX_W[1]) & _MASK32
        p0, p1 = _PHILOX_M[0] * c[0], _PHILOX_M[1] * c[2]
        c = [(p1 >> np.uint64(32)) ^ c[1] ^ k0, p1 & _MASK32, (p0 >> np.uint64(32)) ^ c[3] ^ k1, p0 & _MASK32]
    return np.stack(np.broadcast_arrays(*c), axis=-1).astype(np.uint32)


def row_uniforms(row_seeds: Sequence[int], steps: int, seeding: Seeding = "numpy") -> torch.Tensor:
    """``len(row_seeds)`` x ``steps`` uniforms in [0, 1), float64: row ``r``'s stream is a function of
    ``row_seeds[r]`` alone.

    ``"numpy"`` (the default, what every xdr release drew) seeds one ``numpy.random.default_rng`` per row:
    about a hundred microseconds a row. ``"philox"`` draws step ``t`` of row ``r`` as Philox4x32-10 of
    counter ``(t, 0, 0, 0)`` under key ``row_seeds[r]``, all rows and steps in one vectorised call: as
    independent of batching, about five times cheaper on a CPU, but other numbers, hence other queries.
    """
    if seeding == "numpy":
        return torch.from_numpy(np.stack([np.random.default_rng(s).random(steps) for s in row_seeds]))
    seeds = np.asarray(row_seeds, dtype=np.uint64)[:, None]  # rows x 1 keys against 1 x steps counters
    key = np.stack([seeds & _MASK32, seeds >> np.uint64(32)], axis=-1)
    counter = np.zeros((1, steps, 4), dtype=np.uint64)
    counter[..., 0] = np.arange(steps, dtype=np.uint64)
    words = philox4x32(counter, key).astype(np.uint64)
    mantissa = (words[..., 0] >> np.uint64(5)) * np.uint64(1 << 26) + (words[..., 1] >> np.uint64(6))
    return torch.from_numpy(mantissa.astype(np.float64) / float(1 << 53))


def seeded_choice(scores: torch.Tensor, u: torch.Tensor, sampling: Sampling) -> torch.Tensor:
    """Each row's token under ``sampling``, picked by inverse CDF with that row's uniform ``u[r]`` in [0, 1).

    The one sampling rule of both decode paths (HF ``generate`` with :class:`SeededSampler`, and
    :class:`~xdr.generate.decode.StaticDecoder`), so the same scores and uniforms give the same tokens.
    """
    k = min(sampling.top_k or scores.shape[-1], scores.shape[-1])
    values, indices = (scores / sampling.temperature).topk(k, dim=-1)  # sorted, best first
    probs = torch.softmax(values.double(), dim=-1)
    if sampling.top_p < 1.0:  # nucleus: keep the smallest prefix whose mass reaches top_p (always the best one)
        probs = probs * ((probs.cumsum(-1) - probs) < sampling.top_p)
    cdf = probs.cumsum(-1)
    choice = torch.searchsorted(cdf, (u.to(cdf.device) * cdf[:, -1])[:, None]).clamp_(max=k - 1)
    return indices.gather(1, choice)[:, 0]


class SeededSampler(LogitsProcessor):
    """Sample row ``r``'s next token with uniforms drawn from ``row_seeds[r]``; keep only that token.

    The returned scores are 0 for the chosen token and -inf elsewhere, so HF's own sampler (which runs
    after this processor, together with its top-k/top-p warpers) can only pick it. Rows follow HF's
    layout: prompt-major, ``num_return_sequences`` consecutive rows per prompt.
    """

    def __init__(self, row_seeds: Sequence[int], sampling: Sampling, seeding: Seeding = "numpy") -> None:
        self.uniforms = row_uniforms(row_seeds, sampling.max_new_tokens, seeding)
        self.sampling = sampling
        self.step = 0

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if scores.shape[0] != self.uniforms.shape[0]:
            raise RuntimeError(f"SeededSampler got {scores.shape[0]} rows, expected {self.uniforms.shape[0]}")
        token = seeded_choice(scores, self.uniforms[:, self.step], self.sampling)
        self.step += 1
        chosen = torch.full_like(scores, float("-inf"))
        return chosen.scatter_(1, token[:, None], 0.0)


class BatchDecoder(Protocol):
    """A decode loop that stands in for HF ``generate`` plus :class:`SeededSampler` on one padded batch."""

    def generate(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, n: int, uniforms: torch.Tensor, pad_id: int
    ) -> torch.Tensor:
        """``len(input_ids) * n`` rows of new token ids, ``pad_id`` after EOS; ``uniforms`` is one row each."""
        ...


def seeded_generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    seeds: Sequence[Sequence[int]],
    sampling: Sampling,
    *,
    batch_size: int,
    max_input_length: int | None = None,
    add_special_tokens: bool = True,
    decoder: BatchDecoder | None = None,
    seeding: Seeding = "numpy",
) -> list[list[str]]:
    """``len(seeds[i])`` sampled continuations of ``texts[i]``, one per seed, decoded and stripped.

    Texts are batched longest first so a batch pads little; results come back in input order. Decoder-only
    models need ``tokenizer.padding_side == "left"``; their prompt is cut from the output. A ``decoder``
    (encoder-decoder models) replaces HF ``generate`` and must draw the same tokens from the same seeds;
    ``seeding`` says how a seed becomes uniforms (:func:`row_uniforms`).
    """
    if not texts:
        return []
    n = len(seeds[0])
    if any(len(s) != n for s in seeds):
        raise ValueError("every text needs the same number of seeds")
    truncate = max_input_length is not None
    encoded = tokenizer(
        list(texts), truncation=truncate, max_length=max_input_length, add_special_tokens=add_special_tokens
    )["input_ids"]
    order = sorted(range(len(texts)), key=lambda i: -len(encoded[i]))
    results: list[list[str]] = [[] for _ in texts]
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        enc = tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, return_tensors="pt").to(model.device)
        row_seeds = [s for i in batch for s in seeds[i]]
        if decoder is not None:
            uniforms = row_uniforms(row_seeds, sampling.max_new_tokens, seeding)
            out = decoder.generate(enc["input_ids"], enc["attention_mask"], n, uniforms, tokenizer.pad_token_id)
        else:
            with torch.inference_mode():
                out = model.generate(
                    **enc,
                    do_sample=True,
                    top_k=sampling.top_k or 0,
                    top_p=sampling.top_p,
                    temperature=sampling.temperature,
                    num_return_sequences=n,
                    max_new_tokens=sampling.max_new_tokens,
                    logits_processor=LogitsProcessorList([SeededSampler(row_seeds, sampling, seeding)]),
                    pad_token_id=tokenizer.pad_token_id,
                )
        if not model.config.is_encoder_decoder:
            out = out[:, enc["input_ids"].shape[1] :]
        decoded = [t.strip() for t in tokenizer.batch_decode(out, skip_special_tokens=True)]
        for j, i in enumerate(batch):
            results[i] = decoded[j * n : (j + 1) * n]
    return results
