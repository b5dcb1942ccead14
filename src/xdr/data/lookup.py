"""Looking passages up by id in a streamed corpus, holding only the ones asked for."""

from __future__ import annotations

from collections.abc import Iterable

from xdr.data.schema import Passage
from xdr.errors import XdrError


def lookup_passages(passages: Iterable[Passage], ids: set[str]) -> dict[str, Passage]:
    """The passages with ``ids``, streaming the corpus once and stopping when all are found.

    A run over an 18M-passage corpus needs a few hundred thousand of them (for XOR-TyDi JSON, R@kt, hard
    negatives); this keeps only those in memory. Ids absent from the corpus are an error: the run (or
    index) and the corpus do not belong together.
    """
    found: dict[str, Passage] = {}
    for p in passages:
        if p.id in ids and p.id not in found:
            found[p.id] = p
            if len(found) == len(ids):
                break
    missing = ids - found.keys()
    if missing:
        raise XdrError(
            f"{len(missing)} passage ids of the run are not in the corpus (e.g. {min(missing)!r}); "
            "is it the corpus the index was built from?"
        )
    return found


def lookup_texts(passages: Iterable[Passage], ids: set[str]) -> dict[str, str]:
    """The texts (without titles) of ``ids``; see :func:`lookup_passages`."""
    return {i: p.text for i, p in lookup_passages(passages, ids).items()}
