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
        self, texts: Sequence[str], kind: Kind, batch_size: int = ..., progress: bool = False
    ) -> np.ndarray:
        """float32 [len(texts), dim], in input order."""
        ...
