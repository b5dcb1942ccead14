"""xdr: cross-lingual dense retrieval, from training to augmented indexes to XOR-TyDi evaluation.

The stages' entry points are re-exported here and loaded on first use, so ``import xdr`` stays fast (it
does not import torch); ``from xdr import search`` loads only what search needs. See
``docs/architecture.md`` for where each concept lives.

Three entry points share their name with the module that defines them (``search``, ``augment``,
``evaluate``). Python's import system sets ``xdr.search`` to the submodule when it is first imported;
the package's module class keeps the function there instead, so ``xdr.search(...)`` always works.
Import a stage module's other names with ``from xdr.search import search_vectors``.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from xdr.version import __version__

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "ModelSpec": "xdr.config",
    "XdrError": "xdr.errors",
    "DataError": "xdr.errors",
    "MismatchError": "xdr.errors",
    "Passage": "xdr.data.schema",
    "Query": "xdr.data.schema",
    "read_passages": "xdr.data",
    "read_queries": "xdr.data",
    "read_qrels": "xdr.data",
    "Run": "xdr.data.runs",
    "read_run": "xdr.data.runs",
    "write_trec": "xdr.data.runs",
    "write_xor_json": "xdr.data.runs",
    "resolve_spec": "xdr.models.registry",
    "Encoder": "xdr.models.encoder",
    "TextEncoder": "xdr.models.base",
    "encode_passages": "xdr.encode",
    "encode_queries": "xdr.encode",
    "load_embeddings": "xdr.embeddings",
    "write_embeddings": "xdr.embeddings",
    "run_generation": "xdr.generate",
    "read_generated": "xdr.generate",
    "augment": "xdr.augment",
    "FusionSettings": "xdr.augment",
    "build_vector_store": "xdr.maxsim",
    "MaxSimReranker": "xdr.maxsim",
    "build_index": "xdr.index",
    "load_index": "xdr.index",
    "DenseIndex": "xdr.index",
    "search": "xdr.search",
    "search_vectors": "xdr.search",
    "evaluate": "xdr.evaluate",
    "evaluate_files": "xdr.evaluate",
    "Report": "xdr.evaluate",
    "compare": "xdr.evaluate.compare",
    "ComparisonReport": "xdr.evaluate.compare",
}

__all__ = [
    "ComparisonReport",
    "DataError",
    "DenseIndex",
    "Encoder",
    "FusionSettings",
    "MaxSimReranker",
    "MismatchError",
    "ModelSpec",
    "Passage",
    "Query",
    "Report",
    "Run",
    "TextEncoder",
    "XdrError",
    "__version__",
    "augment",
    "build_index",
    "build_vector_store",
    "compare",
    "encode_passages",
    "encode_queries",
    "evaluate",
    "evaluate_files",
    "load_embeddings",
    "load_index",
    "read_generated",
    "read_passages",
    "read_qrels",
    "read_queries",
    "read_run",
    "resolve_spec",
    "run_generation",
    "search",
    "search_vectors",
    "write_embeddings",
    "write_trec",
    "write_xor_json",
]

if TYPE_CHECKING:
    from xdr.augment import FusionSettings, augment
    from xdr.config import ModelSpec
    from xdr.data import read_passages, read_qrels, read_queries
    from xdr.data.runs import Run, read_run, write_trec, write_xor_json
    from xdr.data.schema import Passage, Query
    from xdr.embeddings import load_embeddings, write_embeddings
    from xdr.encode import encode_passages, encode_queries
    from xdr.errors import DataError, MismatchError, XdrError
    from xdr.evaluate import Report, evaluate, evaluate_files
    from xdr.evaluate.compare import ComparisonReport, compare
    from xdr.generate import read_generated, run_generation
    from xdr.index import DenseIndex, build_index, load_index
    from xdr.maxsim import MaxSimReranker, build_vector_store
    from xdr.models.base import TextEncoder
    from xdr.models.encoder import Encoder
    from xdr.models.registry import resolve_spec
    from xdr.search import search, search_vectors


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'xdr' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


class _Package(types.ModuleType):
    """Keeps an exported entry point from being replaced by its same-named submodule on import."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _EXPORTS.get(name) == f"{__name__}.{name}":
            self.__dict__.pop(name, None)  # resolved again, to the function, by __getattr__
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
