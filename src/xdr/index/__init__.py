"""The index stage: FAISS indexes over embedding stores, plain, sharded or multi-vector."""

from __future__ import annotations

from xdr.index.build import build_index, default_train_sample
from xdr.index.dense import GPU_MAX_K, INDEX_FILE, DenseIndex, load_index
from xdr.index.multivector import MultiVector

__all__ = ["GPU_MAX_K", "INDEX_FILE", "DenseIndex", "MultiVector", "build_index", "default_train_sample", "load_index"]
