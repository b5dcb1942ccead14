"""The index stage: FAISS indexes over embedding stores, plain or multi-vector."""

from __future__ import annotations

from xdr.index.dense import INDEX_FILE, DenseIndex, build_index, load_index
from xdr.index.multivector import MultiVector

__all__ = ["INDEX_FILE", "DenseIndex", "MultiVector", "build_index", "load_index"]
