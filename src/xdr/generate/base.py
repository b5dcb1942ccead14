"""The generator contract and the seeds that make generation reproducible per passage.

Seeds are derived from ``(run seed, docid, language[, k])`` by hashing rather than drawn from one running
generator, so the queries of a passage do not depend on which passages came before it, how they were
batched, or where an interrupted run was resumed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from xdr.data.schema import Passage

_SEED_BITS = 63  # fits a signed int64 Parquet column and numpy's SeedSequence


@runtime_checkable
class Generator(Protocol):
    """Writes questions for passages; ``name`` and ``config`` go into the artifact's meta.json."""

    @property
    def name(self) -> str:
        """Short identity stored in every row's ``generator`` column (e.g. the checkpoint id)."""
        ...

    @property
    def config(self) -> dict[str, Any]:
        """Every setting that changes the output; a resume with a different config is refused."""
        ...

    def generate(self, passages: Sequence[Passage], lang: str, n: int, seed: int) -> list[list[str | None]]:
        """Return up to ``n`` raw questions in ``lang`` per passage, in passage order, sample k in place k.

        ``None`` in place k means sample k's answer could not be parsed (LLM generators), and a list
        shorter than ``n`` lacks its last samples; the runner records both as ``unparsed`` rows, so they
        are counted, not lost, and a row's k stays the seed that produced it.
        """
        ...


def _hash_seed(*parts: object) -> int:
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> (64 - _SEED_BITS)


def passage_seed(seed: int, docid: str, lang: str) -> int:
    """The seed of one (passage, language): stored in the ``seed`` column of its rows."""
    return _hash_seed("xdr.generate", seed, docid, lang)


def row_seed(pseed: int, k: int) -> int:
    """The seed of the ``k``-th query of a (passage, language) whose seed is ``pseed``."""
    return _hash_seed(pseed, k)
