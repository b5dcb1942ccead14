"""Loading a package's public names on first use, so that importing the package stays cheap.

``xdr``, ``xdr.models``, ``xdr.generate`` and ``xdr.train`` re-export names whose modules import torch or
transformers (seconds); a module-level ``__getattr__`` (PEP 562) built here loads them when first asked.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports ``exports[name]`` (a module path) on demand."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return __getattr__
