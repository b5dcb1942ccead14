"""The models stage: offline-built me5-small, the model registry, the text-encoder protocol and the encoder.

``Encoder`` is imported lazily: it pulls in torch (seconds), which registry look-ups and stages that only
need the :class:`TextEncoder` protocol do not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xdr.lazy import lazy_exports
from xdr.models.base import Kind, TextEncoder
from xdr.models.registry import ModelInfo, build, list_models, resolve_spec, verify

if TYPE_CHECKING:
    from xdr.models.encoder import Encoder

__all__ = ["Encoder", "Kind", "ModelInfo", "TextEncoder", "build", "list_models", "resolve_spec", "verify"]


__getattr__ = lazy_exports(__name__, {"Encoder": "xdr.models.encoder"})
