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
from typing import Protocol

import numpy as np
import torch
from transformers import LogitsProcessor, LogitsProcessorList, PreTrainedModel, PreTrainedTokenizerBase

from xdr.errors import XdrError


@contextmanager
def loading(model: str) -> Iterator[None]:
    """Turn a checkpoint that cannot be fetched or read (offline, misspelt id, missing files) into xdr's
    one-line error that says how to get it, the same one encoders give."""
    from xdr.models.registry import missing_model_error

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


def row_uniforms(row_seeds: Sequence[int], steps: int) -> torch.Tensor:
    """``len(row_seeds)`` x ``steps`` uniforms in [0, 1), float64: row ``r`` draws its stream from ``row_seeds[r]``."""
    return torch.from_numpy(np.stack([np.random.default_rng(s).random(steps) for s in row_seeds]))


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

    def __init__(self, row_seeds: Sequence[int], sampling: Sampling) -> None:
        self.uniforms = row_uniforms(row_seeds, sampling.max_new_tokens)
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
) -> list[list[str]]:
    """``len(seeds[i])`` sampled continuations of ``texts[i]``, one per seed, decoded and stripped.

    Texts are batched longest first so a batch pads little; results come back in input order. Decoder-only
    models need ``tokenizer.padding_side == "left"``; their prompt is cut from the output. A ``decoder``
    (encoder-decoder models) replaces HF ``generate`` and must draw the same tokens from the same seeds.
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
            uniforms = row_uniforms(row_seeds, sampling.max_new_tokens)
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
                    logits_processor=LogitsProcessorList([SeededSampler(row_seeds, sampling)]),
                    pad_token_id=tokenizer.pad_token_id,
                )
        if not model.config.is_encoder_decoder:
            out = out[:, enc["input_ids"].shape[1] :]
        decoded = [t.strip() for t in tokenizer.batch_decode(out, skip_special_tokens=True)]
        for j, i in enumerate(batch):
            results[i] = decoded[j * n : (j + 1) * n]
    return results
