"""What a text encoder is, without torch: the stages that only call ``encode`` import this, not a model.

:class:`~xdr.models.encoder.Encoder` is the implementation; tests and replayed vectors stand in for it
through the same protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

import numpy as np

from xdr.config import ModelSpec

Kind = Literal["query", "passage"]


class TextEncoder(Protocol):
    """What the encode and search stages need from a model (``xdr.models.encoder.Encoder`` is one)."""

    @property
    def spec(self) -> ModelSpec: ...

    @property
    def dim(self) -> int: ...

    def encode(
        self, texts: Sequence[str], kind: Kind, batch_size: int | None = ..., progress: bool = False,
        token_budget: int | None = None,
    ) -> np.ndarray:
        """float32 [len(texts), dim], in input order; a forward pass takes at most ``batch_size`` texts and
        ``token_budget`` padded tokens."""
        ...


def stage_budget(spec: ModelSpec, kind: Kind, texts: int) -> dict[str, int | None]:
    """The batching the long stages use: ``texts`` full-length texts' worth of tokens per forward pass,
    with no cap on the number of texts, so short queries and passages pack into large batches (the speed
    that docs/benchmarks.md measures). ``--batch-size`` of encode, search and mine means this."""
    length = spec.query_max_length if kind == "query" else spec.passage_max_length
    return {"batch_size": None, "token_budget": texts * length}
