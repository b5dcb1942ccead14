"""Generated-query vectors as a max-sim signal: the compressed vector store and re-ranking with it."""

from __future__ import annotations

from xdr.maxsim.rerank import MaxSimReranker, rerank_maxsim
from xdr.maxsim.store import (
    GeneratedVectorStore,
    build_vector_store,
    docid_keys,
    open_vector_store,
    vector_store_info,
)

__all__ = [
    "GeneratedVectorStore",
    "MaxSimReranker",
    "build_vector_store",
    "docid_keys",
    "open_vector_store",
    "rerank_maxsim",
    "vector_store_info",
]
